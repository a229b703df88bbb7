"""The node's attestor key: the only module that holds it.

The key lives in an encrypted Web3 Secret Storage keystore (``eth_account.Account.encrypt``; scrypt by
default, pbkdf2 with few iterations only for tests). The password comes from a file or an environment
variable, never from a command-line flag (flags are visible to every user through ``ps``). The key never
appears in a log line, an exception message or a ``repr``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Literal

from ledger.chain.signing import address_of, decrypt_keystore, encrypt_keystore, sign_digest

from .errors import KeystoreError

DEFAULT_PASSWORD_ENV = "COMPUTE_LEDGER_ATTESTOR_PASSWORD"


class Signer:
    """Signs EIP-712 digests with the node key. ``repr`` shows the address only."""

    __slots__ = ("_key", "address")

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise KeystoreError("a private key is 32 bytes")
        self._key = bytes(private_key)
        self.address: str = address_of(self._key)

    def sign(self, digest: bytes) -> bytes:
        """65-byte ``r || s || v`` signature of a 32-byte digest (low s, v in 27/28)."""
        return sign_digest(digest, self._key)

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Signer cannot be pickled")


def read_password(password_file: Path | None = None, password_env: str | None = None) -> str:
    """The keystore password from a file (first line) or an environment variable; raises KeystoreError."""
    if password_file is not None:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except OSError as e:
            raise KeystoreError(f"cannot read password file {password_file}: {e.strerror}") from None
        pw = text.splitlines()[0] if text else ""
    else:
        name = password_env or DEFAULT_PASSWORD_ENV
        pw = os.environ.get(name, "")
        if not pw:
            raise KeystoreError(f"no keystore password: set ${name} or pass --password-file")
    if not pw:
        raise KeystoreError("the keystore password is empty")
    return pw


def create_keystore(
    path: Path,
    password: str,
    *,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    iterations: int | None = None,
    private_key: bytes | None = None,
    overwrite: bool = False,
) -> str:
    """Write a new encrypted keystore (mode 0600) and return its address. Refuses to overwrite by default."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeystoreError(f"{path} already exists; refusing to overwrite a key")
    key = secrets.token_bytes(32) if private_key is None else private_key
    try:
        data = encrypt_keystore(key, password, kdf=kdf, iterations=iterations)
    except Exception:
        raise KeystoreError("cannot encrypt the key (invalid key or kdf parameters)") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return address_of(key)


def load_signer(path: Path, password: str) -> Signer:
    """Decrypt the keystore at ``path``; raises :class:`KeystoreError` (wrong password, missing, corrupt)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise KeystoreError(f"cannot read keystore {path}: {e.strerror}") from None
    except ValueError:
        raise KeystoreError(f"keystore {path} is not JSON") from None
    try:
        key = bytes(decrypt_keystore(data, password).key)
    except Exception:
        # The underlying message may quote key material in some versions: never chain it.
        raise KeystoreError(f"cannot decrypt keystore {path}: wrong password or corrupt file") from None
    return Signer(key)
