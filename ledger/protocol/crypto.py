"""Hashing and signature recovery of the protocol: keccak-256 and secp256k1 ``ecrecover`` as the contracts do them.

Verification only: nothing here holds or uses a private key (signing is ``ledger.chain.signing``).
"""

from __future__ import annotations

from eth_keys import keys as eth_keys_keys
from eth_utils import keccak, to_checksum_address

from .errors import ProtocolError

try:  # coincurve recovers ~2x faster than through eth_keys' wrappers; the auditor recovers every report
    import coincurve as _coincurve
except ImportError:  # pragma: no cover - coincurve is a pinned dependency
    _coincurve = None  # type: ignore[assignment]

try:  # safe-pysha3 hashes ~10x faster than eth_utils' keccak wrapper; Merkle trees hash thousands of nodes
    from sha3 import keccak_256 as _keccak_256

    def keccak256(data: bytes) -> bytes:
        """keccak-256 of ``data``."""
        return bytes(_keccak_256(data).digest())

except ImportError:  # pragma: no cover - same digests, slower

    def keccak256(data: bytes) -> bytes:
        """keccak-256 of ``data``."""
        return bytes(keccak(data))


ZERO_HASH = b"\x00" * 32

# secp256k1 group order; signatures with s above half of it are malleable and rejected (EIP-2).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2


def recover_signer(digest: bytes, signature: bytes) -> str:
    """Checksummed address that signed ``digest``; rejects malformed and high-s signatures like OZ ECDSA."""
    if len(signature) != 65:
        raise ProtocolError(f"signature must be 65 bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if s > SECP256K1_HALF_N:
        raise ProtocolError("signature has a high s value (malleable)")
    if v not in (27, 28):
        raise ProtocolError(f"signature v must be 27 or 28, got {v}")
    if _coincurve is not None:
        try:
            pub = _coincurve.PublicKey.from_signature_and_message(
                bytes(signature[:64]) + bytes([v - 27]), bytes(digest), hasher=None
            )
        except Exception as e:  # coincurve raises ValueError/TypeError for invalid points and digests
            raise ProtocolError("signature does not recover to a public key") from e
        return to_checksum_address(keccak256(pub.format(compressed=False)[1:])[-20:])
    try:
        sig = eth_keys_keys.Signature(vrs=(v - 27, r, s))
        pub_key = sig.recover_public_key_from_msg_hash(digest)
    except Exception as e:  # eth_keys raises several types for invalid points
        raise ProtocolError("signature does not recover to a public key") from e
    return pub_key.to_checksum_address()
