"""The money rules, written down once: billing bases, fees, what a checkpoint charges, and the one fold of a
lease's money from its events.

The escrow contract enforces these rules; this module is their Python statement, used by every party that
must predict or re-check them (the bridge quoting an escrow, the relayer deciding what is worth settling, the
bridge's lease document, the auditor). Amounts are integers in the token's smallest unit (wei for ETH), times
in ms unless the name says otherwise, rates in basis points.

The fold (:func:`fold_lease`) reads the escrow's events of one lease in chain order and gives back what
happened to its money; the bridge serves it and the auditor checks it against what the reports justify, so
both read the same events the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

from .errors import ProtocolError
from .settlement import Checkpoint

ETH = "0x0000000000000000000000000000000000000000"
"""The token address that means native ETH (offers, leases, balances, withdrawals)."""

BPS = 10_000


class NodeFeature(IntFlag):
    """What a node's GPUs can measure, registered on-chain with the node (``CapacityRegistry`` ``features``)."""

    NONE = 0
    GPM = 1  # SM and tensor activity (NVML GPM, Hopper and later): SM-active offers need it


class BillingMode(IntEnum):
    """What an offer bills per GPU-second: allocated GPU time (``reserved``), busy GPU time (``metered``:
    the driver's utilization samples, i.e. time with at least one kernel running) or SM-active GPU time
    (``sm_active``: GPM's SM activity, the share of the GPU's SMs that ran, times time: pay for the compute
    used). The number is the ``mode`` field of the lease's ``terms`` word."""

    RESERVED = 0
    METERED = 1
    SM_ACTIVE = 2

    @property
    def label(self) -> str:
        """The name the HTTP API uses (``reserved``, ``metered``, ``sm_active``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> BillingMode:
        """From the API's name (any case) or the contract's number; :class:`ProtocolError` otherwise."""
        if isinstance(value, BillingMode):
            return value
        if isinstance(value, str) and not value.isdigit():
            try:
                return cls[value.upper().replace("-", "_")]
            except KeyError as e:
                raise ProtocolError(f"unknown billing mode {value!r}") from e
        try:
            return cls(int(value))  # type: ignore[call-overload]
        except (TypeError, ValueError) as e:
            raise ProtocolError(f"unknown billing mode {value!r}") from e


class LeaseStatus(IntEnum):
    """The escrow's lease states (``None``: no such lease)."""

    NONE = 0
    OPEN = 1
    ACTIVE = 2
    CLOSED = 3
    EXPIRED = 4
    EXHAUSTED = 5

    @property
    def label(self) -> str:
        """The name the HTTP API uses (``Open``, ``Active``, ...)."""
        return self.name.capitalize()

    @property
    def finished(self) -> bool:
        return self in (LeaseStatus.CLOSED, LeaseStatus.EXPIRED, LeaseStatus.EXHAUSTED)


class Outcome(IntEnum):
    """Outcomes the escrow records in Reputation."""

    COMPLETED = 0
    NO_SHOW = 1
    DISPUTE_WON = 2
    DISPUTE_LOST = 3


# --- escrow and fees -----------------------------------------------------------------------------------


def lease_escrow(price_per_gpu_second: int, gpu_count: int, duration_s: int) -> int:
    """What ``openLease`` escrows: price × GPUs × seconds (the most the lease can ever be charged)."""
    return price_per_gpu_second * gpu_count * duration_s


def lease_fee(escrowed: int, fee_bps: int) -> int:
    """The platform fee ``openLease`` escrows on top of ``escrowed`` (rounded down, as the contract does)."""
    return escrowed * fee_bps // BPS


def top_up_fee(escrowed_before: int, amount: int, fee_bps: int) -> int:
    """The fee ``topUp`` adds with ``amount``: the fee on the new escrow minus the fee already held."""
    return lease_fee(escrowed_before + amount, fee_bps) - lease_fee(escrowed_before, fee_bps)


@dataclass(frozen=True, slots=True)
class LeaseQuote:
    """What opening a lease costs: ``escrowed`` + ``fee`` = ``total``."""

    escrowed: int
    fee: int
    total: int
    fee_bps: int


def quote_lease(price_per_gpu_second: int, gpu_count: int, duration_s: int, fee_bps: int) -> LeaseQuote:
    escrowed = lease_escrow(price_per_gpu_second, gpu_count, duration_s)
    fee = lease_fee(escrowed, fee_bps)
    return LeaseQuote(escrowed=escrowed, fee=fee, total=escrowed + fee, fee_bps=fee_bps)


# --- what is billed ------------------------------------------------------------------------------------


def billable(mode: int, *, busy_ms: int, allocated_ms: int, sm_active_ms: int) -> int:
    """Billable GPU-ms of cumulative counters under a billing mode: allocated time (reserved), busy time
    (metered) or SM-active time (sm_active). The escrow bills exactly this from a report's cumulative
    counters."""
    m = int(mode)
    if m == BillingMode.RESERVED:
        return allocated_ms
    if m == BillingMode.METERED:
        return busy_ms
    if m == BillingMode.SM_ACTIVE:
        return sm_active_ms
    raise ProtocolError(f"unknown billing mode {mode!r}")


def checkpoint_billable(mode: int, ck: Checkpoint) -> int:
    """:func:`billable` of a checkpoint word's cumulative counters."""
    return billable(mode, busy_ms=ck.cum_busy_ms, allocated_ms=ck.cum_allocated_ms, sm_active_ms=ck.cum_sm_active_ms)


def total_charge(price_per_gpu_second: int, cum_billable_ms: int) -> int:
    """A lease's total charge for ``cum_billable_ms``: rounded down once, on the total, so no rounding is lost
    between checkpoints."""
    return price_per_gpu_second * cum_billable_ms // 1000


def charge_for(price_per_gpu_second: int, cum_billable_ms: int, last_cum_billable_ms: int) -> int:
    """What a checkpoint charges before the escrow cap: the growth of :func:`total_charge`."""
    return total_charge(price_per_gpu_second, cum_billable_ms) - total_charge(price_per_gpu_second, last_cum_billable_ms)


# --- the fold of a lease's events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    """An escrow event of one lease as the fold reads it. ``args`` values may be ints or decimal strings
    (JSON), bytes or 0x-hex; ``order`` = (block number, log index, record index): the chain's order."""

    name: str
    args: Mapping[str, Any]
    order: tuple[int, int, int]
    tx_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """One settled checkpoint: a record of a ``CheckpointsSettled`` event (or ``settle``'s
    ``CheckpointSettled``). The counters are the lease's new ``ckpt`` word as the chain recorded it;
    ``charged`` is what this checkpoint moved from escrow to pending."""

    seq: int
    reportHash: bytes
    charged: int
    cumBusyMs: int
    cumAllocatedMs: int
    cumEnergyMj: int
    cumSmActiveMs: int
    settledAt: int  # unix seconds: the block that settled it
    order: tuple[int, ...] = (0, 0, 0)
    txHash: str | None = None

    @classmethod
    def of_ckpt(
        cls,
        ckpt: int,
        reportHash: bytes,
        charged: int,
        order: tuple[int, ...] = (0, 0, 0),
        txHash: str | None = None,
    ) -> Settlement:
        """From a record's words: the ``ckpt`` word (layout in ILeaseEscrow.sol), report hash and charge."""
        c = Checkpoint.of(ckpt)
        return cls(
            seq=c.seq,
            reportHash=reportHash,
            charged=charged,
            cumBusyMs=c.cum_busy_ms,
            cumAllocatedMs=c.cum_allocated_ms,
            cumEnergyMj=c.cum_energy_mj,
            cumSmActiveMs=c.cum_sm_active_ms,
            settledAt=c.settled_at,
            order=order,
            txHash=txHash,
        )

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            seq=self.seq,
            cum_busy_ms=self.cumBusyMs,
            cum_allocated_ms=self.cumAllocatedMs,
            cum_energy_mj=self.cumEnergyMj,
            cum_sm_active_ms=self.cumSmActiveMs,
            settled_at=self.settledAt,
        )

    @property
    def ckpt(self) -> int:
        """The packed ``ckpt`` word (the inverse of :meth:`of_ckpt`)."""
        return self.checkpoint.word

    def billable(self, mode: int) -> int:
        """Cumulative billable GPU-ms the chain recorded."""
        return checkpoint_billable(mode, self.checkpoint)


@dataclass(frozen=True, slots=True)
class TopUp:
    """A ``ToppedUp`` event: ``amount`` added to the escrow and ``fee`` added to the fee held."""

    amount: int
    fee: int = 0
    order: tuple[int, ...] = (0, 0)


@dataclass(frozen=True, slots=True)
class Dispute:
    """A ``DisputeOpened`` event and, once resolved, its ``DisputeResolved`` outcome."""

    frozen: int
    order: tuple[int, ...]
    resolved: bool = False
    buyerShare: int = 0
    providerShare: int = 0
    slashed: int = 0
    providerFault: bool = False


@dataclass(frozen=True, slots=True)
class LeaseMoney:
    """Money in and out of one lease, from its events.

    ``escrow`` and ``fee`` as opened (LeaseOpened); ``topUps`` add to both (ToppedUp). ``closed`` once the
    lease is finished (LeaseClosed, LeaseExpired or LeaseExhausted, which ``exhausted`` tells apart); then
    ``refund`` is the unused escrow credited back to the buyer and ``closedCharged`` the total the closing
    event says was charged. Once the fee is split (FeesSettled) ``feeKept`` is the treasury's part and
    ``feeRefund`` the buyer's. ``disputed`` is what disputes froze, ``released`` what reached the holder
    (EarningsReleased and the provider's shares of resolved disputes)."""

    escrow: int
    fee: int
    topUps: tuple[TopUp, ...] = ()
    closed: bool = False
    refund: int = 0
    closedCharged: int | None = None
    feeKept: int | None = None  # None: the fee is not split yet
    feeRefund: int = 0
    exhausted: bool = False
    disputed: int = 0
    released: int = 0

    @property
    def escrow_in(self) -> int:
        """Escrow paid in: opening plus top-ups."""
        return self.escrow + sum(t.amount for t in self.topUps)

    @property
    def fee_in(self) -> int:
        """Fee paid in: opening plus top-ups."""
        return self.fee + sum(t.fee for t in self.topUps)


@dataclass(frozen=True, slots=True)
class LeaseLedger:
    """Everything the escrow's events say about one lease's money, in chain order."""

    money: LeaseMoney
    settlements: tuple[Settlement, ...] = ()
    disputes: tuple[Dispute, ...] = ()

    @property
    def charged(self) -> int:
        """Σ charged over the settled checkpoints."""
        return sum(s.charged for s in self.settlements)

    @property
    def open_dispute(self) -> Dispute | None:
        return next((d for d in self.disputes if not d.resolved), None)


def as_int(value: Any, name: str = "value") -> int:
    """An integer from a decoded event argument: an int, or a decimal string (JSON beyond 2^53)."""
    if isinstance(value, bool):
        raise ProtocolError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ProtocolError(f"{name} must be an integer, got {value!r}")


def as_bytes32(value: Any, name: str = "value") -> bytes:
    """32 bytes from a decoded event argument: bytes or 0x-hex."""
    if isinstance(value, (bytes, bytearray)) and len(value) == 32:
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x") and len(value) == 66:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise ProtocolError(f"{name} must be 32 bytes, got {value!r}")


def fold_lease(events: Iterable[LeaseEvent]) -> LeaseLedger:
    """Fold one lease's escrow events (any order; sorted here by ``order``) into its :class:`LeaseLedger`.

    Raises :class:`ProtocolError` when an argument is not what the event declares."""
    escrow = fee = refund = fee_refund = released = 0
    top_ups: list[TopUp] = []
    settlements: list[Settlement] = []
    disputes: list[Dispute] = []
    closed = exhausted = False
    closed_charged: int | None = None
    fee_kept: int | None = None
    for ev in sorted(events, key=lambda e: e.order):
        a = ev.args
        name = ev.name
        if name == "CheckpointSettled":
            settlements.append(
                Settlement.of_ckpt(
                    as_int(a["ckpt"], "ckpt"),
                    as_bytes32(a["reportHash"], "reportHash"),
                    as_int(a["charged"], "charged"),
                    ev.order,
                    ev.tx_hash,
                )
            )
        elif name == "LeaseOpened":
            escrow, fee = as_int(a["escrowed"], "escrowed"), as_int(a["fee"], "fee")
        elif name == "ToppedUp":
            top_ups.append(TopUp(as_int(a["amount"], "amount"), as_int(a["fee"], "fee"), ev.order))
        elif name in ("LeaseClosed", "LeaseExpired"):
            closed = True
            refund = as_int(a["refund"], "refund")
            if "charged" in a:
                closed_charged = as_int(a["charged"], "charged")
        elif name == "LeaseExhausted":
            closed = exhausted = True
            closed_charged = as_int(a["charged"], "charged")
        elif name == "FeesSettled":
            fee_kept, fee_refund = as_int(a["treasuryFee"], "treasuryFee"), as_int(a["buyerRefund"], "buyerRefund")
        elif name == "EarningsReleased":
            released += as_int(a["amount"], "amount")
        elif name == "DisputeOpened":
            disputes.append(Dispute(frozen=as_int(a["amount"], "amount"), order=ev.order))
        elif name == "DisputeResolved" and disputes and not disputes[-1].resolved:
            d = disputes[-1]
            provider_share = as_int(a["providerShare"], "providerShare")
            disputes[-1] = Dispute(
                frozen=d.frozen,
                order=d.order,
                resolved=True,
                buyerShare=as_int(a["buyerShare"], "buyerShare"),
                providerShare=provider_share,
                slashed=as_int(a["slashed"], "slashed"),
                providerFault=bool(a["providerFault"]),
            )
            released += provider_share
    money = LeaseMoney(
        escrow=escrow,
        fee=fee,
        topUps=tuple(top_ups),
        closed=closed,
        refund=refund,
        closedCharged=closed_charged,
        feeKept=fee_kept,
        feeRefund=fee_refund,
        exhausted=exhausted,
        disputed=sum(d.frozen for d in disputes),
        released=released,
    )
    return LeaseLedger(money=money, settlements=tuple(settlements), disputes=tuple(disputes))
