"""Signatures: the attestor's EIP-712 report signatures and transaction signatures. The one place that turns a
private key into a signature; keys themselves are held by the role that owns them (``attestor.keys``,
``api.keys``) and passed in.
"""

from __future__ import annotations

from typing import Any, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys as eth_keys_keys

from ..protocol.crypto import SECP256K1_HALF_N, SECP256K1_N


def sign_digest(digest: bytes, private_key: bytes) -> bytes:
    """65-byte ``r || s || v`` signature (v = 27/28, low s) as OpenZeppelin ``ECDSA.recover`` expects."""
    sig = eth_keys_keys.PrivateKey(private_key).sign_msg_hash(digest)
    r, s, v = sig.r, sig.s, sig.v
    if s > SECP256K1_HALF_N:  # normalise, EIP-2
        s = SECP256K1_N - s
        v ^= 1
    return bytes(r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v + 27]))


def address_of(private_key: bytes) -> str:
    """Checksummed address of a private key."""
    return str(eth_keys_keys.PrivateKey(private_key).public_key.to_checksum_address())


def account(private_key: bytes | str) -> LocalAccount:
    """A signer for ``private_key`` (bytes or hex)."""
    acct: LocalAccount = Account.from_key(private_key)
    return acct


def new_account() -> LocalAccount:
    """A fresh random key."""
    acct: LocalAccount = Account.create()
    return acct


def decrypt_keystore(keystore: dict[str, Any], password: str) -> LocalAccount:
    """The account of an encrypted JSON keystore (web3 secret storage)."""
    return account(bytes(Account.decrypt(keystore, password)))


def encrypt_keystore(
    private_key: bytes, password: str, *, kdf: Literal["scrypt", "pbkdf2"] = "scrypt", iterations: int | None = None
) -> dict[str, Any]:
    """An encrypted JSON keystore of ``private_key`` (web3 secret storage; ``kdf`` scrypt or pbkdf2)."""
    out: dict[str, Any] = Account.encrypt(private_key, password, kdf=kdf, iterations=iterations)
    return out


def sign_transaction(signer: LocalAccount, tx: dict[str, Any]) -> tuple[bytes, str]:
    """(raw signed transaction, 0x transaction hash)."""
    signed = signer.sign_transaction(tx)
    return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()
