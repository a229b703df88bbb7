"""Settlement calldata and state, written down once (the contract side is ILeaseEscrow.sol's header).

The escrow keeps ONE storage slot per lease on the settlement path: the commitment
``keccak256(abi.encode(terms, ckpt, lastReportHash))``. Whoever settles (or closes, tops up, disputes,
releases) passes the three words; the contract checks them against the commitment. They are public:

- ``terms``: the ``leaseTerms`` view (packed nodeId, startS, durationS, gpuCount, mode, status, price);
  ``mode`` is the billing basis (``ledger.protocol.economics.BillingMode``: 0 reserved, 1 metered, 2 SM-active);
- ``ckpt`` and ``lastReportHash``: the lease's last ``CheckpointsSettled`` record (before any, the
  lease's initial checkpoint, :func:`initial_ckpt`, and a zero hash).

This module packs settlement entries, decodes the records of ``CheckpointsSettled`` and rebuilds a
lease's state from them. Integers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from eth_utils import keccak

from .crypto import ZERO_HASH
from .errors import ProtocolError
from .report import MeteringReport, window_struct_hash

ENTRY_SIZE = 231
ENTRY_SIZE_WITH_LAST = 263
RECORD_SIZE = 84
FLAG_LAST_HASH = 1

_M32 = (1 << 32) - 1
_M48 = (1 << 48) - 1
_M96 = (1 << 96) - 1
_LOW_S = (1 << 255) - 1


# --- the packed words --------------------------------------------------------------------------------


def terms_node(terms: int) -> int:
    return terms & _M32


def terms_start_s(terms: int) -> int:
    """Activation time, unix seconds (0 while Open)."""
    return (terms >> 32) & _M32


def terms_duration_s(terms: int) -> int:
    return (terms >> 64) & _M32


def terms_gpus(terms: int) -> int:
    return (terms >> 96) & 0xFFFF


def terms_mode(terms: int) -> int:
    """The billing basis: 0 reserved (allocated time), 1 metered (busy time), 2 SM-active time."""
    return (terms >> 112) & 0xF


def terms_status(terms: int) -> int:
    return (terms >> 116) & 0xF


def terms_price(terms: int) -> int:
    return (terms >> 120) & _M96


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The fields of a ``ckpt`` word: seq[31:0] | cumBusyMs[79:32] | cumAllocatedMs[127:80] |
    cumEnergyMj[175:128] | cumSmActiveMs[223:176] | settledAt[255:224] (unix s of the block that settled it)."""

    seq: int
    cum_busy_ms: int
    cum_allocated_ms: int
    cum_energy_mj: int
    cum_sm_active_ms: int
    settled_at: int

    @classmethod
    def of(cls, ckpt: int) -> "Checkpoint":
        return cls(
            seq=ckpt & _M32,
            cum_busy_ms=(ckpt >> 32) & _M48,
            cum_allocated_ms=(ckpt >> 80) & _M48,
            cum_energy_mj=(ckpt >> 128) & _M48,
            cum_sm_active_ms=(ckpt >> 176) & _M48,
            settled_at=ckpt >> 224,
        )

    @property
    def word(self) -> int:
        """The packed ``ckpt`` word (the inverse of :meth:`of`)."""
        return (
            self.seq
            | self.cum_busy_ms << 32
            | self.cum_allocated_ms << 80
            | self.cum_energy_mj << 128
            | self.cum_sm_active_ms << 176
            | self.settled_at << 224
        )


def initial_ckpt(terms: int) -> int:
    """A lease's checkpoint before its first settlement: 0 while Open; once Active, the settlement clock
    starts at activation (``settledAt`` = the activation time)."""
    start_s = terms_start_s(terms)
    if start_s == 0:
        return 0
    return Checkpoint(0, 0, 0, 0, 0, start_s).word


def commitment(terms: int, ckpt: int, last_hash: bytes) -> bytes:
    """``keccak256(abi.encode(terms, ckpt, lastReportHash))``, the lease's ``stateHash``."""
    return keccak(terms.to_bytes(32, "big") + ckpt.to_bytes(32, "big") + bytes(last_hash))


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What a settlement entry (and every call that needs the checkpoint) must carry for a lease."""

    lease_id: int
    terms: int
    ckpt: int
    last_hash: bytes = ZERO_HASH

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint.of(self.ckpt)

    def commitment(self) -> bytes:
        return commitment(self.terms, self.ckpt, self.last_hash)


# --- entries -----------------------------------------------------------------------------------------


def compact_signature(signature: bytes) -> tuple[bytes, bytes]:
    """EIP-2098 ``(r, vs)`` of a 65-byte ``r || s || v`` signature (v 27/28 or 0/1)."""
    if len(signature) != 65:
        raise ProtocolError(f"signature must be 65 bytes, got {len(signature)}")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise ProtocolError(f"signature v must be 27/28 or 0/1, got {signature[64]}")
    s = int.from_bytes(signature[32:64], "big")
    if s >> 255:
        raise ProtocolError("signature s does not fit EIP-2098 (high bit set)")
    return bytes(signature[:32]), ((v << 255) | s).to_bytes(32, "big")


def _fit(name: str, value: int, bits: int) -> int:
    if value >> bits:
        raise ProtocolError(f"{name}={value} does not fit the {bits}-bit field of a settlement entry")
    return value


# (field, bits) a settlement entry gives each report field it carries
ENTRY_FIELD_BITS: tuple[tuple[str, int], ...] = (
    ("leaseId", 32),
    ("seq", 32),
    ("windowEndMs", 48),
    ("cumBusyMs", 48),
    ("cumEnergyMj", 48),
    ("cumAllocatedMs", 48),
    ("cumSmActiveMs", 48),
)


def check_settleable(report: MeteringReport) -> None:
    """Raise :class:`ProtocolError` if a settlement entry cannot carry ``report`` (leaseId and seq below
    2^32, times and cumulative counters below 2^48: the escrow could never settle it)."""
    for name, bits in ENTRY_FIELD_BITS:
        _fit(name, getattr(report, name), bits)


def encode_entry(report: MeteringReport, signature: bytes, state: LeaseState) -> bytes:
    """The settlement entry of a signed report for a lease in ``state`` (layout: ILeaseEscrow.sol).

    The last report hash is left out when it equals the report's ``prevReportHash`` (a consecutive
    checkpoint): the contract then uses the latter for both.
    """
    if report.leaseId != state.lease_id:
        raise ProtocolError(f"report is for lease {report.leaseId}, state for lease {state.lease_id}")
    check_settleable(report)
    r, vs = compact_signature(signature)
    head = (
        (report.leaseId << 224)
        | (report.seq << 192)
        | (report.windowEndMs << 144)
        | (report.cumBusyMs << 96)
        | (report.cumEnergyMj << 48)
        | report.cumAllocatedMs
    )
    with_last = bytes(state.last_hash) != bytes(report.prevReportHash)
    out = (
        head.to_bytes(32, "big")
        + report.cumSmActiveMs.to_bytes(6, "big")
        + bytes([FLAG_LAST_HASH if with_last else 0])
        + bytes(report.prevReportHash)
        + window_struct_hash(report)
        + r
        + vs
        + state.terms.to_bytes(32, "big")
        + state.ckpt.to_bytes(32, "big")
    )
    if with_last:
        out += bytes(state.last_hash)
    return out


def encode_entries(items: Iterable[tuple[MeteringReport, bytes, LeaseState]]) -> bytes:
    """Entries back to back, for ``settleBatch``."""
    return b"".join(encode_entry(r, s, st) for r, s, st in items)


# --- records -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    """One record of a ``CheckpointsSettled`` event: a settled checkpoint and the lease's new ckpt."""

    lease_id: int
    report_hash: bytes
    ckpt: int
    charged: int

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint.of(self.ckpt)

    def as_args(self) -> dict[str, int | bytes]:
        """Event-style arguments (names of the protocol's fields where they are the report's)."""
        c = self.checkpoint
        return {
            "leaseId": self.lease_id,
            "seq": c.seq,
            "reportHash": self.report_hash,
            "ckpt": self.ckpt,
            "charged": self.charged,
            "cumBusyMs": c.cum_busy_ms,
            "cumAllocatedMs": c.cum_allocated_ms,
            "cumEnergyMj": c.cum_energy_mj,
            "cumSmActiveMs": c.cum_sm_active_ms,
            "settledAt": c.settled_at,
        }


def decode_records(data: bytes) -> list[SettlementRecord]:
    """The records of a ``CheckpointsSettled(bytes records)`` event."""
    if len(data) % RECORD_SIZE:
        raise ProtocolError(f"CheckpointsSettled records are {len(data)} bytes, not a multiple of {RECORD_SIZE}")
    out = []
    for i in range(0, len(data), RECORD_SIZE):
        rec = data[i : i + RECORD_SIZE]
        out.append(
            SettlementRecord(
                lease_id=int.from_bytes(rec[0:4], "big"),
                report_hash=bytes(rec[4:36]),
                ckpt=int.from_bytes(rec[36:68], "big"),
                charged=int.from_bytes(rec[68:84], "big"),
            )
        )
    return out
