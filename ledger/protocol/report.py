"""The metering protocol, written down once: report type, EIP-712 hashing, signatures, sample leaves.

Everything here is shared by the attestor (which builds and signs reports), the contracts' client (which
submits them), the bridge (which checks and stores them) and auditors (which re-derive them). Integers
only: no float is ever hashed, signed or paid.

Units: times are unix milliseconds (durations ms), energy millijoules, power milliwatts, memory MiB.

The EIP-712 domain is name ``ComputeLedger``, version ``2`` (the protocol's version: version 2 brought
interval samples from the driver's own buffers, SM activity and the SM-active billing basis), the chain id
and, as verifying contract, the ``LeaseEscrow`` address. The struct hash of a report is also its identity in
the hash chain (``prevReportHash`` of report ``seq`` is the struct hash of report ``seq - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntFlag
from typing import Any, Iterable, Mapping, Sequence

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from .crypto import ZERO_HASH, keccak256 as _keccak
from .errors import ProtocolError
from .samples import UINT_BITS as _UINT_BITS

DOMAIN_NAME = "ComputeLedger"
DOMAIN_VERSION = "2"


class ReportFlag(IntFlag):
    """Bits of ``MeteringReport.flags`` and of a sample's ``flags``."""

    NONE = 0
    ENERGY_RESET = 1 << 0  # the energy counter went backwards: a new epoch began inside the window
    SAMPLE_GAP = 1 << 1  # some time of the window is in no sample's interval (the attestor was down), not billed
    FIELD_NOT_SUPPORTED = 1 << 2  # some NVML field answered NotSupported: recorded as missing, not zero
    SIMULATED = 1 << 3  # readings come from the simulated driver (attestor.simdriver), not from hardware
    GPU_LOST = 1 << 4  # a GPU of the lease stopped answering (fell off the bus, XID 79, ...)
    ECC_ERROR = 1 << 5  # uncorrected ECC errors were seen
    CLOCK_ADJUSTED = 1 << 6  # the clock the driver stamps with stepped back: an overlapping interval was dropped
    UTIL_HOLE = 1 << 7  # the driver's utilization buffer lost samples (read too late): that time is not covered
    UTIL_POLLED = 1 << 8  # no utilization buffer: busy time comes from polling util.gpu (aliases with periodic loads)
    NO_GPM = 1 << 9  # the GPU has no GPM (pre-Hopper): SM and tensor activity are not measured


# The signed type is nested: what settlement needs on-chain is in MeteringReport itself (the lease, the chain
# link, where the window ends and the cumulative counters the escrow bills and bounds), the rest of the
# window in WindowDetail, so the contract takes one 32-byte hashStruct(WindowDetail) instead of twelve fields.
WINDOW_TYPE_STRING = (
    "WindowDetail("
    "uint64 windowStartMs,"
    "bytes32 gpuSetHash,"
    "uint64 busyMs,"
    "uint64 smActiveMs,"
    "uint64 tensorActiveMs,"
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
    "uint64 windowEndMs,"
    "uint64 cumBusyMs,"
    "uint64 cumEnergyMj,"
    "uint64 cumAllocatedMs,"
    "uint64 cumSmActiveMs,"
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


@dataclass(frozen=True, slots=True)
class MeteringReport:
    """One window of one lease on one node, with cumulative counters since the lease started."""

    leaseId: int
    seq: int
    prevReportHash: bytes
    windowEndMs: int
    cumBusyMs: int
    cumEnergyMj: int
    cumAllocatedMs: int
    cumSmActiveMs: int
    windowStartMs: int
    gpuSetHash: bytes
    busyMs: int
    smActiveMs: int
    tensorActiveMs: int
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
        """JSON-safe dict: bytes32 as 0x-hex; integers as :func:`json_uint` writes them (uint64 and uint256 as
        decimal strings, since JavaScript numbers lose digits above 2^53; narrower ones as numbers)."""
        out: dict[str, Any] = {}
        for name, typ in REPORT_FIELDS:
            v = getattr(self, name)
            out[name] = "0x" + bytes(v).hex() if typ == "bytes32" else json_uint(v, typ)
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
                kwargs[name] = uint_of_json(v, name)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "MeteringReport":
        return replace(self, **changes)


JSON_STRING_BITS = 53
"""Integers of a type wider than this many bits travel in JSON as decimal strings (JavaScript's numbers are
exact only up to 2^53); narrower ones as numbers. Readers accept either for any width."""


def json_uint(value: int, typ: str) -> int | str:
    """An integer of ABI type ``typ`` as the protocol's JSON writes it."""
    return str(value) if _UINT_BITS[typ] > JSON_STRING_BITS else value


def uint_of_json(value: Any, name: str = "value") -> int:
    """An integer from JSON: a number, or a string of decimal digits (no sign, no spaces, at most 78 digits);
    :class:`ProtocolError` otherwise."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 78:
            raise ProtocolError(f"{name} must be an integer or a string of decimal digits")
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{name} must be an integer")
    return value


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
