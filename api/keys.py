"""The only module of the bridge that touches private keys and API-key secrets.

- Managed accounts' keys are encrypted at rest with AES-256-GCM under a key derived from the server
  secret (HKDF-SHA256); the account address is the associated data, so a ciphertext moved to another row
  does not decrypt.
- API keys are ``cl_<id>_<secret>``: 128 bits of random secret, stored as SHA-256 (a random secret needs
  no slow hash), compared in constant time.
- Keys are turned into signers here (``ledger.chain.signing``); transactions are signed by the chain
  layer's sender.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF
from eth_account.signers.local import LocalAccount

from ledger.chain.signing import account, decrypt_keystore

from .errors import ApiError

_KEY_VERSION = b"\x01"


class KeyBox:
    """Encrypts and decrypts managed accounts' private keys with the server secret."""

    def __init__(self, server_secret: str) -> None:
        key = HKDF(server_secret.encode(), 32, b"compute-ledger/managed-keys/v1", SHA256)
        assert isinstance(key, bytes)  # one key asked (num_keys=1)
        self._key: bytes = key

    def seal(self, address: str, private_key: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce)
        cipher.update(address.lower().encode())
        ct, tag = cipher.encrypt_and_digest(private_key)
        return bytes(_KEY_VERSION + nonce + tag + ct)

    def open(self, address: str, blob: bytes) -> LocalAccount:
        if not blob or blob[:1] != _KEY_VERSION:
            raise ApiError(500, "key_unreadable", "a managed key has an unknown format")
        nonce, tag, ct = blob[1:13], blob[13:29], blob[29:]
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce)
        cipher.update(address.lower().encode())
        try:
            key = cipher.decrypt_and_verify(ct, tag)
        except ValueError as e:
            raise ApiError(500, "key_unreadable", "a managed key does not decrypt with this server secret") from e
        return account(key)


def account_from_key(key: bytes | str) -> LocalAccount:
    """The signer of a raw key (the relayer's, the dev faucet's)."""
    return account(key)


def load_keystore(path: Path, password: str) -> LocalAccount:
    return decrypt_keystore(json.loads(path.read_text()), password)


def new_api_key() -> tuple[str, str, bytes]:
    """(key_id, full token to give out once, hash to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(24)
    token = f"cl_{key_id}_{secret}"
    return key_id, token, hash_secret(secret)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_api_key(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "cl" or len(parts[1]) != 16 or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored)
