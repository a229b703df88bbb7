"""The metering protocol, written down once: report type, EIP-712 hashing, signatures, sample leaves.

Everything here is shared by the attestor (which builds and signs reports), the contracts' client (which
submits them), the bridge (which checks and stores them) and auditors (which re-derive them). Integers
only: no float is ever hashed, signed or paid.

Units: times are unix milliseconds, energy millijoules, power milliwatts, utilization basis points
(0..10_000), memory MiB.

The EIP-712 domain is name ``ComputeLedger``, version ``1``, the chain id and, as verifying contract, the
``LeaseEscrow`` address. The struct hash of a report is also its identity in the hash chain
(``prevReportHash`` of report ``seq`` is the struct hash of report ``seq - 1``).
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, fields, replace
from enum import IntFlag
from typing import Any, Iterable, Mapping, Sequence

from eth_abi import encode as abi_encode
from eth_keys import keys as eth_keys_keys
from eth_utils import keccak, to_checksum_address

try:  # coincurve recovers ~2x faster than through eth_keys' wrappers; the auditor recovers every report
    import coincurve as _coincurve
except ImportError:  # pragma: no cover - coincurve is a pinned dependency
    _coincurve = None  # type: ignore[assignment]

try:  # safe-pysha3 hashes ~10x faster than eth_utils' keccak wrapper; Merkle trees hash thousands of nodes
    from sha3 import keccak_256 as _keccak_256  # type: ignore[import-untyped]

    def _keccak(data: bytes) -> bytes:
        return _keccak_256(data).digest()  # type: ignore[no-any-return]

except ImportError:  # pragma: no cover - same digests, slower

    def _keccak(data: bytes) -> bytes:
        return keccak(data)

DOMAIN_NAME = "ComputeLedger"
DOMAIN_VERSION = "1"

ZERO_HASH = b"\x00" * 32

# secp256k1 group order; signatures with s above half of it are malleable and rejected (EIP-2).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2


class ReportFlag(IntFlag):
    """Bits of ``MeteringReport.flags`` and of a sample's ``flags``."""

    NONE = 0
    ENERGY_RESET = 1 << 0  # the energy counter went backwards: a new epoch began inside the window
    SAMPLE_GAP = 1 << 1  # at least one sampling period was missed
    FIELD_NOT_SUPPORTED = 1 << 2  # some NVML field answered NotSupported: recorded as missing, not zero
    SIMULATED = 1 << 3  # readings come from the simulated GPU source, not from hardware
    GPU_LOST = 1 << 4  # a GPU of the lease stopped answering (fell off the bus, XID 79, ...)
    ECC_ERROR = 1 << 5  # uncorrected ECC errors were seen
    CLOCK_ADJUSTED = 1 << 6  # the wall clock jumped; windows are still closed on monotonic time


# The signed type is nested: what settlement needs on-chain is in MeteringReport itself, the rest of the
# window in WindowDetail, so the contract takes one 32-byte hashStruct(WindowDetail) instead of nine fields.
# The meaning of every field is the DESIGN's; only the grouping is for gas.
WINDOW_TYPE_STRING = (
    "WindowDetail("
    "bytes32 gpuSetHash,"
    "uint64 busyMs,"
    "uint64 energyMj,"
    "uint64 allocatedMs,"
    "uint32 maxMemUsedMiB,"
    "uint32 sampleCount,"
    "bytes32 samplesRoot,"
    "uint32 flags,"
    "bytes32 configHash"
    ")"
)
_REPORT_CORE_STRING = (
    "MeteringReport("
    "uint256 leaseId,"
    "uint64 seq,"
    "bytes32 prevReportHash,"
    "uint64 windowStartMs,"
    "uint64 windowEndMs,"
    "uint64 cumBusyMs,"
    "uint64 cumEnergyMj,"
    "uint64 cumAllocatedMs,"
    "WindowDetail window"
    ")"
)
# EIP-712 encodeType: the primary type, then the referenced types. Solidity: LeaseEscrowBase.REPORT_TYPEHASH.
REPORT_TYPE_STRING = _REPORT_CORE_STRING + WINDOW_TYPE_STRING
REPORT_TYPEHASH = keccak(text=REPORT_TYPE_STRING)
WINDOW_TYPEHASH = keccak(text=WINDOW_TYPE_STRING)


def _parse_fields(type_string: str) -> tuple[tuple[str, str], ...]:
    body = type_string[type_string.index("(") + 1 : -1]
    return tuple((part.split(" ")[1], part.split(" ")[0]) for part in body.split(","))


# (field name, ABI type) of WindowDetail, and of MeteringReport's own fields without `window`.
WINDOW_FIELDS: tuple[tuple[str, str], ...] = _parse_fields(WINDOW_TYPE_STRING)
REPORT_CORE_FIELDS: tuple[tuple[str, str], ...] = tuple(
    f for f in _parse_fields(_REPORT_CORE_STRING) if f[0] != "window"
)
# Every field of a report, flat (the JSON form and the Python dataclass): core fields, then the window's.
REPORT_FIELDS: tuple[tuple[str, str], ...] = REPORT_CORE_FIELDS + WINDOW_FIELDS

# The same types as EIP-712 JSON (eth_account / ethers / wallets).
EIP712_REPORT_TYPES: dict[str, list[dict[str, str]]] = {
    "MeteringReport": [{"name": n, "type": t} for n, t in REPORT_CORE_FIELDS]
    + [{"name": "window", "type": "WindowDetail"}],
    "WindowDetail": [{"name": n, "type": t} for n, t in WINDOW_FIELDS],
}

DOMAIN_TYPE_STRING = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
DOMAIN_TYPEHASH = keccak(text=DOMAIN_TYPE_STRING)

# A raw sample, the leaf of a report's Merkle tree (OpenZeppelin StandardMerkleTree with these types).
SAMPLE_LEAF_TYPES: tuple[str, ...] = (
    "uint16",  # gpuIndex: position of the GPU in the node's registered GPU list
    "uint64",  # tsMs
    "uint16",  # gpuUtilBps
    "uint16",  # memUtilBps
    "uint32",  # powerMw
    "uint64",  # energyMj: the GPU's total-energy counter
    "uint32",  # memUsedMiB
    "uint32",  # flags (ReportFlag bits)
)

_UINT_BITS = {"uint16": 16, "uint32": 32, "uint64": 64, "uint256": 256}


class ProtocolError(ValueError):
    """A report, sample or signature that does not fit the protocol."""


@dataclass(frozen=True, slots=True)
class MeteringReport:
    """One window of one lease on one node, with cumulative counters since the lease started."""

    leaseId: int
    seq: int
    prevReportHash: bytes
    windowStartMs: int
    windowEndMs: int
    cumBusyMs: int
    cumEnergyMj: int
    cumAllocatedMs: int
    gpuSetHash: bytes
    busyMs: int
    energyMj: int
    allocatedMs: int
    maxMemUsedMiB: int
    sampleCount: int
    samplesRoot: bytes
    flags: int
    configHash: bytes

    def __post_init__(self) -> None:
        for name, typ in REPORT_FIELDS:
            value = getattr(self, name)
            if typ == "bytes32":
                if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
                    raise ProtocolError(f"{name} must be 32 bytes")
            else:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ProtocolError(f"{name} must be an integer")
                if value < 0 or value >= 1 << _UINT_BITS[typ]:
                    raise ProtocolError(f"{name}={value} does not fit {typ}")

    def values(self) -> tuple[Any, ...]:
        """Field values in type-string order (bytes32 as bytes)."""
        return tuple(getattr(self, name) for name, _ in REPORT_FIELDS)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict: integers as numbers, bytes32 as 0x-hex."""
        out: dict[str, Any] = {}
        for name, typ in REPORT_FIELDS:
            v = getattr(self, name)
            out[name] = "0x" + bytes(v).hex() if typ == "bytes32" else v
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MeteringReport":
        """Inverse of :meth:`to_json`; raises :class:`ProtocolError` on a missing or malformed field."""
        kwargs: dict[str, Any] = {}
        for name, typ in REPORT_FIELDS:
            if name not in data:
                raise ProtocolError(f"missing field {name}")
            v = data[name]
            if typ == "bytes32":
                kwargs[name] = hex_to_bytes32(v, name)
            else:
                if isinstance(v, str) and v.isdigit():
                    v = int(v)
                if not isinstance(v, int) or isinstance(v, bool):
                    raise ProtocolError(f"{name} must be an integer")
                kwargs[name] = v
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "MeteringReport":
        return replace(self, **changes)


def hex_to_bytes32(value: Any, name: str = "value") -> bytes:
    if isinstance(value, (bytes, bytearray)):
        b = bytes(value)
    elif isinstance(value, str):
        s = value[2:] if value.startswith(("0x", "0X")) else value
        try:
            b = bytes.fromhex(s)
        except ValueError as e:
            raise ProtocolError(f"{name} is not hex") from e
    else:
        raise ProtocolError(f"{name} must be a 0x-hex string")
    if len(b) != 32:
        raise ProtocolError(f"{name} must be 32 bytes")
    return b


def _words(report: MeteringReport, fields_: Sequence[tuple[str, str]]) -> bytes:
    # Every field is static (uintN or bytes32), so abi.encode is one 32-byte word per field; the ranges
    # were checked when the report was built.
    return b"".join(
        bytes(getattr(report, n)) if typ == "bytes32" else getattr(report, n).to_bytes(32, "big") for n, typ in fields_
    )


def window_struct_hash(report: MeteringReport) -> bytes:
    """EIP-712 ``hashStruct`` of the report's ``WindowDetail`` (what a settlement entry carries)."""
    return _keccak(WINDOW_TYPEHASH + _words(report, WINDOW_FIELDS))


def report_struct_hash(report: MeteringReport) -> bytes:
    """EIP-712 ``hashStruct(report)``; also the report's link in the per-lease hash chain."""
    return _keccak(REPORT_TYPEHASH + _words(report, REPORT_CORE_FIELDS) + window_struct_hash(report))


def report_typed_message(report: MeteringReport) -> dict[str, Any]:
    """The report as an EIP-712 message of :data:`EIP712_REPORT_TYPES` (bytes32 as 0x-hex)."""
    j = report.to_json()
    msg: dict[str, Any] = {n: j[n] for n, _ in REPORT_CORE_FIELDS}
    msg["window"] = {n: j[n] for n, _ in WINDOW_FIELDS}
    return msg


def domain_separator(chain_id: int, verifying_contract: str) -> bytes:
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                DOMAIN_TYPEHASH,
                keccak(text=DOMAIN_NAME),
                keccak(text=DOMAIN_VERSION),
                chain_id,
                to_checksum_address(verifying_contract),
            ],
        )
    )


def typed_data_digest(domain_sep: bytes, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain_sep + struct_hash)


def report_digest(report: MeteringReport, chain_id: int, verifying_contract: str) -> bytes:
    """The 32-byte EIP-712 digest the attestor signs and the escrow recovers from."""
    return typed_data_digest(domain_separator(chain_id, verifying_contract), report_struct_hash(report))


def sign_digest(digest: bytes, private_key: bytes) -> bytes:
    """65-byte ``r || s || v`` signature (v = 27/28, low s) as OpenZeppelin ``ECDSA.recover`` expects."""
    sig = eth_keys_keys.PrivateKey(private_key).sign_msg_hash(digest)
    r, s, v = sig.r, sig.s, sig.v
    if s > SECP256K1_HALF_N:  # normalise, EIP-2
        s = SECP256K1_N - s
        v ^= 1
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v + 27])


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
        return to_checksum_address(_keccak(pub.format(compressed=False)[1:])[-20:])
    try:
        sig = eth_keys_keys.Signature(vrs=(v - 27, r, s))
        pub_key = sig.recover_public_key_from_msg_hash(digest)
    except Exception as e:  # eth_keys raises several types for invalid points
        raise ProtocolError("signature does not recover to a public key") from e
    return pub_key.to_checksum_address()


def address_of(private_key: bytes) -> str:
    return eth_keys_keys.PrivateKey(private_key).public_key.to_checksum_address()


# --- GPU identity -----------------------------------------------------------------------------------


def gpu_uuid_hash(uuid: str) -> bytes:
    """keccak256 of the GPU UUID string as NVML prints it (``GPU-xxxxxxxx-...``)."""
    return keccak(text=uuid)


def gpu_set_hash(uuid_hashes: Iterable[bytes]) -> bytes:
    """keccak256(abi.encodePacked(sorted keccak(UUID)...)): binds a report to a set of registered GPUs."""
    hs = sorted(bytes(h) for h in uuid_hashes)
    for h in hs:
        if len(h) != 32:
            raise ProtocolError("GPU UUID hashes must be 32 bytes")
    return keccak(b"".join(hs))


def config_hash(attestor_version: str, driver_version: str, nvml_version: str, policy: Mapping[str, int]) -> bytes:
    """Hash of what produced a report: attestor and driver versions and the sampling policy (integers)."""
    items = ";".join(f"{k}={int(policy[k])}" for k in sorted(policy))
    return keccak(text=f"attestor={attestor_version};driver={driver_version};nvml={nvml_version};{items}")


# --- Samples and the Merkle tree (OpenZeppelin StandardMerkleTree) ----------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one GPU. Missing fields (NotSupported) are 0 with FIELD_NOT_SUPPORTED in flags."""

    gpuIndex: int
    tsMs: int
    gpuUtilBps: int
    memUtilBps: int
    powerMw: int
    energyMj: int
    memUsedMiB: int
    flags: int

    def values(self) -> tuple[int, ...]:
        return (
            self.gpuIndex,
            self.tsMs,
            self.gpuUtilBps,
            self.memUtilBps,
            self.powerMw,
            self.energyMj,
            self.memUsedMiB,
            self.flags,
        )

    def to_list(self) -> list[int]:
        return list(self.values())

    @classmethod
    def from_values(cls, values: Sequence[int]) -> "Sample":
        if len(values) != len(SAMPLE_LEAF_TYPES):
            raise ProtocolError(f"a sample has {len(SAMPLE_LEAF_TYPES)} fields, got {len(values)}")
        for v, t in zip(values, SAMPLE_LEAF_TYPES):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 1 << _UINT_BITS[t]:
                raise ProtocolError(f"sample field {v!r} does not fit {t}")
        return cls(*values)


SAMPLE_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Sample))


# abi.encode of static uints of at most 64 bits: one 32-byte big-endian word each (24 zero bytes + 8).
_SAMPLE_WORDS = struct.Struct(">" + "24xQ" * len(SAMPLE_LEAF_TYPES))
_SAMPLE_LIMITS: tuple[int, ...] = tuple(1 << _UINT_BITS[t] for t in SAMPLE_LEAF_TYPES)
assert SAMPLE_LEAF_TYPES == ("uint16", "uint64", "uint16", "uint16", "uint32", "uint64", "uint32", "uint32")


def sample_leaf(sample: Sample) -> bytes:
    """OpenZeppelin standard leaf: keccak256(bytes.concat(keccak256(abi.encode(values)))).

    Raises :class:`ProtocolError` when a field does not fit its type.
    """
    values = sample.values()
    g, ts, gu, mu, p, e, mem, f = values
    # One test for the leaf types (u16, u64, u16, u16, u32, u64, u32, u32); a negative value shifts to -1.
    if (g | gu | mu) >> 16 or (p | mem | f) >> 32 or (ts | e) >> 64:
        bad = next(v for v, limit in zip(values, _SAMPLE_LIMITS) if not 0 <= v < limit)
        raise ProtocolError(f"sample field {bad!r} does not fit its type")
    return _keccak(_keccak(_SAMPLE_WORDS.pack(*values)))


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return _keccak(a + b) if a < b else _keccak(b + a)


class MerkleTree:
    """The tree OpenZeppelin's ``StandardMerkleTree.of(values, types)`` builds (leaves sorted by hash).

    Root and proofs are byte-for-byte those of ``@openzeppelin/merkle-tree`` and verify with
    ``MerkleProof.verify`` on-chain.
    """

    __slots__ = ("_tree", "_leaf_pos")

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ProtocolError("a Merkle tree needs at least one leaf")
        ordered = sorted(leaves)
        n = len(ordered)
        tree: list[bytes] = [b""] * (2 * n - 1)
        for i, leaf in enumerate(ordered):
            tree[len(tree) - 1 - i] = leaf
        for i in range(len(tree) - 1 - n, -1, -1):
            tree[i] = _hash_pair(tree[2 * i + 1], tree[2 * i + 2])
        self._tree = tree
        self._leaf_pos = {leaf: len(tree) - 1 - i for i, leaf in enumerate(ordered)}

    @classmethod
    def of_samples(cls, samples: Sequence[Sample]) -> "MerkleTree":
        return cls([sample_leaf(s) for s in samples])

    @property
    def root(self) -> bytes:
        return self._tree[0]

    def proof(self, leaf: bytes) -> list[bytes]:
        """Sibling hashes from ``leaf`` up to the root; raises KeyError for a leaf not in the tree."""
        i = self._leaf_pos[leaf]
        out: list[bytes] = []
        while i > 0:
            sibling = i - 1 if i % 2 == 0 else i + 1
            out.append(self._tree[sibling])
            i = (i - 1) // 2
        return out


def samples_root(samples: Sequence[Sample]) -> bytes:
    """Merkle root of a window's samples; ZERO_HASH for a window without samples."""
    if not samples:
        return ZERO_HASH
    # MerkleTree's layout without the proof index: leaves sorted, reversed at the end of the array.
    ordered = sorted(sample_leaf(s) for s in samples)
    n = len(ordered)
    tree = [b""] * (n - 1) + ordered[::-1]
    k = _keccak
    for i in range(n - 2, -1, -1):
        a, b = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = k(a + b) if a < b else k(b + a)
    return tree[0]


def verify_proof(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """Same rule as OpenZeppelin ``MerkleProof.verify``."""
    h = leaf
    for p in proof:
        h = _hash_pair(h, p)
    return h == root


def report_as_dict(report: MeteringReport) -> dict[str, Any]:
    return asdict(report)
