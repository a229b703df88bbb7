"""Independent audit of a lease: every unit of money the chain moved must rest on a valid metering proof.

The core is pure: :func:`verify_lease` takes an :class:`AuditInput` (the lease's terms, its signed reports
with their raw samples or spot-check proofs, the chain's settlements and money events) and returns a
:class:`Verdict`, a list of named :class:`CheckResult`. Where the input comes from (the bridge's HTTP API,
or the chain plus a samples archive) is :mod:`auditor.sources`' business; nothing here does I/O.

The audit speaks metering protocol v2 (EIP-712 domain version "2", ``ledger.protocol``): a sample is one
GPU over one interval ``(tsMs − intervalMs, tsMs]`` of the driver's timeline; a GPU's intervals never
overlap over the whole lease; the energy counter is read at window boundaries only (elsewhere 0 with
``SampleField.ENERGY_UNREAD``). Reports are walked in seq order carrying, like the attestor, the energy
baseline and each GPU's last sample end (``ledger.protocol.metering.aggregate_window``).

Checks, by name (a failure names the check and the report ``seq`` it concerns):

==========================  ===========================================================================
``lease.state``             INFO only: the lease's state on chain (Active, Closed, Expired, Exhausted), its
                            disputes (open, or resolved: the shares and who was at fault), or that there
                            is nothing metered to audit yet
``bridge.chain``            the bridge's ``GET /v1/chain`` names the chain the auditor reads: its chain id,
                            deployment record and EIP-712 domain are the chain's
``bridge.consistency``      every part of the bridge's lease document the chain also holds (terms, attestor
                            history, settlements and their charges, money, disputes, state) is the chain's
``report.lease``            the report is for this lease (leaseId)
``report.gpu_set``          the report's gpuSetHash is the lease's on-chain ``lease(id).gpuSetHash`` (the
                            escrow does not check it at settlement: the GPU set is inside the signed
                            WindowDetail, so only an auditor catches a report about other GPUs)
``signature``               EIP-712 digest (domain version 2) recovers to the attestor registered for the
                            node at the window's end
``chain.order``             reports are published in strictly increasing ``seq`` order
``chain.seq``               seq runs 1, 2, 3 … with no report missing and no two reports for one seq
``chain.prev_hash``         ``prevReportHash`` is the struct hash of report ``seq − 1`` (zero for seq 1)
``window.bounds``           lease start ≤ windowStart < windowEnd ≤ lease end
``window.future``           the window ended by the chain's present: windowEnd ≤ the chain's latest block
                            time (or the auditor's clock, if later) + ``AuditPolicy.future_tolerance_ms``
``window.contiguity``       windows tile the lease: windowStart = the previous report's windowEnd; the
                            first window starts where its samples' earliest interval starts (or at the
                            lease's start if that is earlier), give or take a driver period
``window.end``              windowEnd is the newest sample's tsMs (the attestor closes a window there)
``window.capacity``         busy ≤ allocated; cumulative allocated, busy and SM-active time ≤ GPUs ×
                            (windowEnd − lease start); a window's allocated, SM- and tensor-active time ≤
                            the time its GPUs' intervals can span (from each GPU's last sample end);
                            cumulative energy ≤ the node's max power × that GPU time (+ the escrow's margin)
``samples.root``            the Merkle root rebuilt from the raw samples and their count match the report
``samples.spot_check``      (spot-check mode) k samples prove into the signed ``samplesRoot`` with Merkle
                            proofs (never into a root the bridge serves)
``bridge.proofs``           (spot-check mode) each served proof's ``root`` is the signed ``samplesRoot`` and
                            its ``leaf`` the sample's: the bridge holds the samples the attestor signed
``samples.sanity``          samples lie in the window, on the lease's GPUs, busy ≤ covered ≤ interval,
                            SM/tensor time ≤ interval, a missing figure is 0, no v1 or unknown flag bits,
                            NO_GPM only with SM activity missing, their report-level flags carried by the
                            report
``samples.intervals``       a GPU's intervals do not overlap, within the window nor with its last sample
                            of an earlier window (the carried sample ends): no instant is counted twice
``samples.sentinel``        no NVML "not available" sentinel (all ones of the field's width)
``samples.coverage``        covered time rests on driver utilization samples: ``utilSamples ≥ 1`` when
                            ``coveredMs > 0`` and ``coveredMs ≤ utilSamples × 1.5 driver periods`` (1 s per
                            poll for ``UTIL_POLLED``): a hole (``UTIL_HOLE``) cannot be billed as covered
``samples.gaps``            a stretch without samples longer than the gap tolerance is flagged ``SAMPLE_GAP``
``samples.energy_monotonic`` the energy counter only decreases where the report flags ``ENERGY_RESET``
``aggregates``              busy, allocated, SM-active, tensor-active, energy, max memory re-derived with
                            ``ledger.protocol.metering.aggregate_window`` (lease bounds, carried energy
                            baseline and sample ends)
``cumulative``              cumulative busy, energy, allocated and SM-active counters are running sums
``physics.energy``          per GPU, between two valid energy readings, the counter grows at most
                            max power × (Δt + read slack) × (1 + margin)
``physics.power_cap``       no power reading above the node's declared maximum per GPU (+ margin)
``physics.idle_busy``       WARNING only: a GPU SM-active (or busy) most of the time between two energy
                            readings while the counter says it drew near-idle power
``physics.sm_busy``         WARNING only: SM-active time well above busy time plus uncovered time (SMs
                            cannot work without a kernel running; GPM and utilization intervals are not
                            aligned, so this is evidence, not a rule)
``settlement.report``       a settled checkpoint names an archived report: its reportHash is the report's
                            struct hash (which binds the samples root, through the signed WindowDetail)
``settlement.checkpoint``   the ckpt the chain recorded is the settled report's: cumulative busy,
                            allocated, energy and SM-active counters; settled after the window ended,
                            settlement times never going back
``settlement.order``        checkpoints settle strictly increasing seqs
``settlement.duplicate``    no seq is settled (paid) twice
``settlement.billable``     the billable delta of a checkpoint (cumulative billable of its ckpt − of the
                            previous checkpoint's, ``ledger.protocol.economics.checkpoint_billable``: allocated,
                            busy or SM-active time by the lease's billing mode) is the archived reports'
                            delta, never negative, and the chain's cumulative billable is at most GPUs ×
                            (settled window's end − lease start)
``settlement.charge``       charged = price × billable delta / 1000 (on the cumulative totals, as the
                            escrow rounds), capped by the escrow that remained
``money.conservation``      closed lease: paid in (escrow + fee + top-ups) = charged + fee kept + refunds;
                            open lease: charged never exceeds what was escrowed
==========================  ===========================================================================

A figure a sample marks missing (:class:`ledger.protocol.samples.SampleField`) is excluded from the checks
that need it. Integers throughout; tolerances are basis points or milliseconds (:class:`AuditPolicy`).

The order in which a report lists its samples is not checked, and no check depends on it (docs/protocol.md
§4.2): the tree sorts its leaves, and every rule takes a GPU's samples by ``tsMs``. A full audit and a spot
check accept the same reports.

Who is to blame when a check fails (:data:`CHECK_PARTY`, shown with every result): ``attestor`` for what the
node's attestor signed (given a valid signature), ``bridge`` for what the bridge served (reports without the
registered attestor's signature, missing or extra reports, samples or proofs that do not match the signed
root, a copy of the chain's data that is not the chain's), ``escrow`` for what the chain recorded and moved
(checkpoints, charges, money: read from the chain itself, never from a bridge).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ledger.protocol.economics import (
    BillingMode,
    Dispute,
    LeaseMoney,
    Settlement,
    TopUp,
    billable,
    charge_for,
)
from ledger.protocol.errors import LedgerError
from ledger.protocol.metering import REPORT_FLAG_MASK, MeteringError, WindowFigures, aggregate_window
from ledger.protocol.samples import SampleField
from ledger.protocol import (
    ZERO_HASH,
    MeteringReport,
    ProtocolError,
    ReportFlag,
    Sample,
    domain_separator,
    recover_signer,
    report_struct_hash,
    sample_leaf,
    samples_root,
    typed_data_digest,
    verify_proof,
)

# The order in which checks are listed in a verdict.
CHECKS: tuple[str, ...] = (
    "lease.state",
    "bridge.chain",
    "bridge.consistency",
    "report.lease",
    "report.gpu_set",
    "signature",
    "chain.order",
    "chain.seq",
    "chain.prev_hash",
    "window.bounds",
    "window.future",
    "window.contiguity",
    "window.end",
    "window.capacity",
    "samples.root",
    "samples.spot_check",
    "bridge.proofs",
    "samples.sanity",
    "samples.intervals",
    "samples.sentinel",
    "samples.coverage",
    "samples.gaps",
    "samples.energy_monotonic",
    "aggregates",
    "cumulative",
    "physics.energy",
    "physics.power_cap",
    "physics.idle_busy",
    "physics.sm_busy",
    "settlement.report",
    "settlement.checkpoint",
    "settlement.order",
    "settlement.duplicate",
    "settlement.billable",
    "settlement.charge",
    "money.conservation",
)
WARNING_CHECKS = frozenset({"physics.idle_busy", "physics.sm_busy"})
INFO_CHECKS = frozenset({"lease.state"})

PARTIES: dict[str, str] = {
    "attestor": "the node's attestor: what it signed (reports, windows, samples, counters)",
    "bridge": "the bridge, or the archive it exported: what it served (reports, samples, proofs, its copy of the chain)",
    "escrow": "the escrow contract: what the chain recorded and moved (checkpoints, charges, money)",
    "chain": "the lease as the chain holds it (information, not a finding)",
}
"""Who a check's result is about: the party to blame when it fails."""

_BRIDGE_CHECKS = (
    "bridge.chain",
    "bridge.consistency",
    "bridge.proofs",
    "signature",  # a report the registered attestor did not sign is not the attestor's: whoever served it
    "report.lease",  # a report signed for another lease, served under this one
    "chain.order",
    "chain.seq",  # a missing or twice-listed report (two different signed reports for a seq: the attestor)
    "samples.root",
    "samples.spot_check",
    "settlement.report",  # the chain paid for a report the bridge does not serve (or serves another)
)
_ESCROW_CHECKS = (
    "settlement.checkpoint",
    "settlement.order",
    "settlement.duplicate",
    "settlement.billable",
    "settlement.charge",
    "money.conservation",
)
CHECK_PARTY: dict[str, str] = {
    name: "chain" if name in INFO_CHECKS
    else "bridge" if name in _BRIDGE_CHECKS
    else "escrow" if name in _ESCROW_CHECKS
    else "attestor"
    for name in CHECKS
}  # fmt: skip
"""The party each check is about (:data:`PARTIES`); a failure may name another (``chain.seq``: two different
reports signed for one seq are the attestor's)."""

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
# NVML answers "not available" with all ones of the field's width (NVML_VALUE_NOT_AVAILABLE = -1 cast to
# unsigned); an attestor must record a missing figure as 0 + its SampleField bit, never pass the sentinel on.
# These are the sample fields read from the driver as they are (the others the attestor computes).
_SENTINELS: tuple[tuple[str, int], ...] = (
    ("tsMs", _U64_MAX),
    ("powerMw", _U32_MAX),
    ("energyMj", _U64_MAX),
    ("memUsedMiB", _U32_MAX),
)
_POWER_INVALID = int(ReportFlag.GPU_LOST | SampleField.POWER)
_ENERGY_INVALID = int(ReportFlag.GPU_LOST | SampleField.ENERGY | SampleField.ENERGY_UNREAD)
_UTIL_INVALID = int(ReportFlag.GPU_LOST | SampleField.GPU_UTIL)
_SM_INVALID = int(ReportFlag.GPU_LOST | SampleField.SM_ACTIVE)
_POLLED = int(ReportFlag.UTIL_POLLED)
_MEM_UTIL = int(SampleField.MEM_UTIL)  # protocol v1's memory utilization; no v2 sample sets it
_KNOWN_BITS = int(sum(int(f) for f in ReportFlag)) | int(sum(int(f) for f in SampleField)) & ~_MEM_UTIL
# which sample figures must be 0 when a SampleField bit marks them missing
_MISSING_MEANS_ZERO: tuple[tuple[int, tuple[str, ...]], ...] = (
    (int(SampleField.GPU_UTIL), ("coveredMs", "busyMs", "utilSamples")),
    (int(SampleField.SM_ACTIVE), ("smActiveMs", "tensorActiveMs")),
    (int(SampleField.POWER), ("powerMw",)),
    (int(SampleField.ENERGY), ("energyMj",)),
    (int(SampleField.ENERGY_UNREAD), ("energyMj",)),
    (int(SampleField.MEM_USED), ("memUsedMiB",)),
)


class AuditError(LedgerError):
    """The audit could not be run (unreadable input, unreachable source); a failed check is not an error."""


# --- input --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttestorPeriod:
    """An attestor key registered for the lease's node over ``[fromMs, untilMs)`` (None: still valid)."""

    address: str
    fromMs: int = 0
    untilMs: int | None = None

    def covers(self, ts_ms: int) -> bool:
        return self.fromMs <= ts_ms and (self.untilMs is None or ts_ms < self.untilMs)


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """What the chain fixed for the lease. Prices in the token's smallest unit per GPU-second."""

    leaseId: int
    chainId: int
    escrow: str  # the LeaseEscrow address: the EIP-712 verifying contract
    attestors: tuple[AttestorPeriod, ...]
    gpuSetHash: bytes
    gpuCount: int
    startMs: int
    endMs: int
    pricePerGpuSecond: int
    billingMode: BillingMode
    maxPowerMwPerGpu: int
    samplePeriodMs: int
    gpuIndices: tuple[int, ...] | None = None  # positions in the node's GPU list, when known
    token: str | None = None


@dataclass(frozen=True, slots=True)
class SampleProof:
    """One sample of a report, proven into its ``samplesRoot`` (OpenZeppelin standard tree proof).

    ``root`` and ``leaf`` are what the bridge served with it (None: not served): the proof is verified
    against the report's signed ``samplesRoot`` whatever they say; a served root that is not the signed one
    is the bridge's finding (``bridge.proofs``)."""

    index: int
    sample: Sample
    proof: tuple[bytes, ...]
    root: bytes | None = None
    leaf: bytes | None = None


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A report, its 65-byte signature, and either its raw samples or spot-check proofs (or neither)."""

    report: MeteringReport
    signature: bytes
    samples: tuple[Sample, ...] | None = None
    proofs: tuple[SampleProof, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    """Tolerances of the checks that compare figures with physics (basis points unless the name says ms).

    What each bound rests on:

    - ``util_period_ms``: the longest period of a driver utilization sample. NVML documents it as between
      1/6 s and 1 s depending on the product (200 ms on an H200); the attestor lets one sample vouch for at
      most 1.5 periods (a longer stretch is a hole) and one util.gpu poll for at most 1 s. An auditor who
      knows the node's GPUs may lower it (200 for an H200).
    - ``energy_read_slack_ms``: the energy counter is read when the attestor closes its intervals, up to a
      driver period after the interval's end (``tsMs``), 250 ms more at a lease boundary, plus the time it
      takes to read the GPUs in turn; the counter's growth between two readings is bounded by max power ×
      (Δ``tsMs`` + this).
    - ``energy_margin_bps``: how far above the declared max power a GPU's mean power over a few seconds may
      go (LeaseEscrow's ENERGY_MARGIN_BPS, which bounds cumulative energy the same way).
    - ``power_margin_bps``: a mean power reading (the driver's power samples of the last ~2 s of an interval)
      may exceed the declared max by this much (transients).
    - ``idle_activity_bps`` / ``idle_power_bps`` (warning only): SM-active (or busy, without GPM) at least
      this share of the time between two energy readings while the counter's mean power stays below this
      share of the declared max: a load that does no work, or a lie.
    - ``sm_busy_slack_bps`` / ``sm_busy_slack_ms`` (warning only): SM-active time may exceed busy time plus
      uncovered time by this share of the GPU's interval time plus this many ms per GPU and window (GPM is
      sampled when the attestor collects, utilization at the driver's sample times).
    - ``future_tolerance_ms``: how far after the chain's present (``AuditInput.now_ms``) a window may end:
      the clock skew a bridge allows at intake (30 s, ``api.services.metering.FUTURE_TOLERANCE_MS``). The
      escrow refuses to settle a window that ends after its block, so such a window can never be paid.
    """

    util_period_ms: int = 1_000
    poll_span_ms: int = 1_000  # the attestor polls util.gpu every second where there is no buffer
    energy_read_slack_ms: int = 2_000
    energy_margin_bps: int = 500
    power_margin_bps: int = 1_000
    energy_cap_margin_bps: int = 500  # cumulative energy cap margin: LeaseEscrow's ENERGY_MARGIN_BPS
    idle_activity_bps: int = 8_000
    idle_power_bps: int = 1_500
    sm_busy_slack_bps: int = 1_000
    sm_busy_slack_ms: int = 2_000
    gap_tolerance_ms: int | None = None  # None: ledger.protocol.metering's default (half a sample period)
    future_tolerance_ms: int = 30_000


DEFAULT_POLICY = AuditPolicy()


@dataclass(frozen=True, slots=True)
class BridgeEvidence:
    """What the bridge served that the chain holds too, compared with the chain by the source
    (:mod:`auditor.consistency`). ``None`` differences: not compared; an empty tuple: identical, and
    ``*_compared`` says what was compared."""

    chain_differences: tuple[str, ...] | None = None  # GET /v1/chain against the chain
    chain_compared: str = ""
    lease_differences: tuple[str, ...] | None = None  # the lease document against the chain
    lease_compared: str = ""


@dataclass(frozen=True, slots=True)
class ChainLease:
    """Everything the chain holds about one lease, as a chain reader assembled it: the terms (lease, offer
    and node views; the attestor history from NodeRegistered / AttestorRotated), the escrow's events folded
    by ``ledger.protocol.economics.fold_lease`` (checkpoints, money, disputes), the lease's state and the
    chain's present (``nowMs``, the latest block's time) as of block ``block``."""

    terms: LeaseTerms
    settlements: tuple[Settlement, ...] = ()
    money: LeaseMoney | None = None
    disputes: tuple[Dispute, ...] = ()
    status: str | None = None  # LeaseStatus label: Open, Active, Closed, Expired, Exhausted
    nodeId: int | None = None
    nowMs: int | None = None
    block: int | None = None


@dataclass(frozen=True, slots=True)
class AuditInput:
    """One lease's audit input. ``terms``, ``settlements``, ``money``, ``disputes``, ``status`` and
    ``now_ms`` are the chain's (a source reads them from the chain, never from a bridge); ``reports`` (with
    their samples or proofs) are what a bridge or archive served; ``bridge`` is how the bridge's copy of the
    chain's data compared with the chain."""

    terms: LeaseTerms
    reports: tuple[SignedReport, ...]  # in the order the source published them
    settlements: tuple[Settlement, ...] = ()
    money: LeaseMoney | None = None
    disputes: tuple[Dispute, ...] = ()
    status: str | None = None
    now_ms: int | None = None  # the chain's present (ms): window.future; None: not checked
    bridge: BridgeEvidence | None = None


# --- output -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome. Failures name the report (``report_seq``); a passing check is one row."""

    check: str
    ok: bool
    detail: str
    report_seq: int | None = None
    warning: bool = False
    skipped: bool = False
    party: str = ""  # who the result is about (PARTIES); "" = CHECK_PARTY[check]
    info: bool = False

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIP"
        if self.info:
            return "INFO"
        if self.warning:
            return "WARN"
        return "PASS" if self.ok else "FAIL"

    @property
    def blame(self) -> str:
        """The party this result is about: the one to blame when it failed."""
        return self.party or CHECK_PARTY.get(self.check, "")

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ok": self.ok,
            "status": self.status,
            "party": self.blame,
            "detail": self.detail,
            "reportSeq": self.report_seq,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """One lease's outcome: verified (no check failed), failed (the failed checks, each naming its party), or
    could not be audited (``unaudited`` says why: no result at all). ``notes`` are what a reader must see next
    to the verdict whatever it is: an exhausted escrow, a dispute (open, or its outcome), nothing to audit."""

    leaseId: int
    results: tuple[CheckResult, ...]
    reports: int
    settlements: int
    samples: int  # raw samples rebuilt (or proven, in spot-check mode)
    spot_check_k: int | None = None
    unaudited: str | None = None
    notes: tuple[str, ...] = ()

    @classmethod
    def could_not_audit(cls, lease_id: int, why: str) -> "Verdict":
        return cls(lease_id, (), 0, 0, 0, unaudited=why)

    @property
    def ok(self) -> bool:
        """True when the lease was audited and no check failed (warnings, notes and skips do not fail it)."""
        return self.unaudited is None and all(r.ok for r in self.results)

    @property
    def status(self) -> str:
        """``verified``, ``failed`` or ``could not audit``."""
        if self.unaudited is not None:
            return "could not audit"
        return "verified" if self.ok else "failed"

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    def failed(self) -> set[tuple[str, int | None]]:
        """``{(check, report_seq)}`` of the failures: what a test asserts."""
        return {(r.check, r.report_seq) for r in self.results if not r.ok}

    def warned(self) -> set[tuple[str, int | None]]:
        """``{(check, report_seq)}`` of the warnings (evidence that does not fail the verdict)."""
        return {(r.check, r.report_seq) for r in self.results if r.warning}

    def to_json(self) -> dict[str, Any]:
        return {
            "leaseId": self.leaseId,
            "ok": self.ok,
            "status": self.status,
            "couldNotAudit": self.unaudited,
            "notes": list(self.notes),
            "reports": self.reports,
            "settlements": self.settlements,
            "samples": self.samples,
            "spotCheckK": self.spot_check_k,
            "results": [r.to_json() for r in self.results],
        }


class _Collector:
    """Gathers failures and warnings per check and counts how many subjects each check covered."""

    def __init__(self) -> None:
        self.failures: dict[str, list[CheckResult]] = {}
        self.passed: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self.details: dict[str, str] = {}

    def ok(self, check: str, detail: str | None = None) -> None:
        """One subject of ``check`` passed; ``detail`` replaces the passing row's "N … verified"."""
        self.passed[check] = self.passed.get(check, 0) + 1
        if detail is not None:
            self.details[check] = detail

    def fail(self, check: str, detail: str, seq: int | None = None, *, party: str = "") -> None:
        warn = check in WARNING_CHECKS
        self.failures.setdefault(check, []).append(
            CheckResult(check, warn, detail, seq, warning=warn, party=party)
        )

    def info(self, check: str, detail: str) -> None:
        self.failures.setdefault(check, []).append(CheckResult(check, True, detail, info=True))

    def check(self, check: str, ok: bool, detail: str, seq: int | None = None) -> bool:
        if ok:
            self.ok(check)
        else:
            self.fail(check, detail, seq)
        return ok

    def skip(self, check: str, reason: str) -> None:
        self.skipped.setdefault(check, reason)

    def results(self, units: Mapping[str, str]) -> tuple[CheckResult, ...]:
        out: list[CheckResult] = []
        for name in CHECKS:
            fails = self.failures.get(name, [])
            n = self.passed.get(name, 0)
            if fails:
                out.extend(fails)
            elif n:
                out.append(CheckResult(name, True, self.details.get(name, f"{n} {units.get(name, 'reports')} verified")))
            elif name in self.skipped:
                out.append(CheckResult(name, True, self.skipped[name], skipped=True))
        return tuple(out)


_UNITS = {
    "settlement.report": "checkpoints",
    "settlement.checkpoint": "checkpoints",
    "settlement.order": "checkpoints",
    "settlement.duplicate": "checkpoints",
    "settlement.billable": "checkpoints",
    "settlement.charge": "checkpoints",
    "money.conservation": "leases",
    "physics.energy": "energy-reading pairs",
    "physics.idle_busy": "energy-reading pairs",
    "physics.sm_busy": "GPU-windows",
    "samples.coverage": "reports",
}


# --- the audit ----------------------------------------------------------------------------------------


Aggregator = Callable[..., WindowFigures]
Progress = Callable[[int, int], None]


@dataclass(slots=True)
class _Carry:
    """What the earlier windows of the lease hand the next one, exactly as the attestor carries it
    (``ledger.protocol.metering`` rules 1 and 8): per GPU the energy baseline and the end of its last sample.
    ``exact``: carried through every report from the lease's first one; otherwise a report before was
    missing or unchecked and only the GPUs in the maps are known."""

    baseline: dict[int, int] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    exact: bool = True


@dataclass(slots=True)
class _Readings:
    """Per GPU, the last valid energy reading of the lease seen so far, ``(tsMs, counter)``. A pair of
    readings may span reports, even a missing one: the bound on the counter's growth holds over any span."""

    last: dict[int, tuple[int, int]] = field(default_factory=dict)


def verify_lease(
    inp: AuditInput,
    spot_check_k: int | None = None,
    *,
    policy: AuditPolicy = DEFAULT_POLICY,
    aggregate: Aggregator = aggregate_window,
    progress: Progress | None = None,
) -> Verdict:
    """Verify one lease from public data; never raises for bad data (that is a failed check).

    With ``spot_check_k`` the auditor accepts reports that carry at least ``min(k, sampleCount)`` sample
    proofs instead of all samples; the checks that need every sample (aggregates, intervals, physics) are
    then skipped. A report that carries its full samples is always checked in full. ``progress(done,
    total)`` is called after each report.
    """
    terms = inp.terms
    col = _Collector()
    dom = domain_separator(terms.chainId, terms.escrow)
    notes = _check_lease_state(col, inp)
    _check_bridge(col, inp.bridge)

    # 1. per report, in published order: identity, signature, ordering.
    by_seq: dict[int, tuple[SignedReport, bytes]] = {}
    prev_listed: int | None = None
    for sr in inp.reports:
        r = sr.report
        h = report_struct_hash(r)
        _check_identity(col, terms, r)
        _check_signature(col, terms, dom, sr, h)
        if prev_listed is not None and r.seq <= prev_listed:
            col.fail("chain.order", f"report {r.seq} is listed after report {prev_listed}", r.seq)
        else:
            col.ok("chain.order")
        prev_listed = r.seq if prev_listed is None else max(prev_listed, r.seq)
        if r.seq in by_seq:
            other = by_seq[r.seq][1]
            pair = f"0x{other.hex()[:12]}…, 0x{h.hex()[:12]}…"
            what = "listed twice" if other == h else f"two different reports ({pair})"
            # two different reports the registered attestor signed for one seq are the attestor's doing
            twice_signed = other != h and _signed_by_attestor(terms, dom, sr, h) and _signed_by_attestor(
                terms, dom, by_seq[r.seq][0], other
            )
            col.fail("chain.seq", f"seq {r.seq}: {what}", r.seq, party="attestor" if twice_signed else "")
        else:
            by_seq[r.seq] = (sr, h)

    # 2. per seq, in chain order: continuity, windows, counters, samples; the metering state carried along.
    seqs = sorted(by_seq)
    total = len(seqs)
    carry: _Carry | None = _Carry()
    readings = _Readings()
    samples_seen = 0
    for n, s in enumerate(seqs):
        sr, h = by_seq[s]
        r = sr.report
        prev = by_seq.get(s - 1)
        if s == 0:
            col.fail("chain.seq", "seq 0: the first report is seq 1", s)
        elif prev is None and s != 1:
            missing_from = (seqs[n - 1] + 1) if n > 0 else 1
            span = f"report {s - 1}" if missing_from == s - 1 else f"reports {missing_from}..{s - 1}"
            col.fail("chain.seq", f"{span} missing before report {s}", s)
        else:
            col.ok("chain.seq")
            want = ZERO_HASH if s == 1 else prev[1]  # type: ignore[index]
            col.check(
                "chain.prev_hash",
                r.prevReportHash == want,
                f"prevReportHash 0x{r.prevReportHash.hex()[:16]}… ≠ hash of report {s - 1} 0x{want.hex()[:16]}…",
                s,
            )
        if s <= 1:
            carry = _Carry()
        elif prev is None:
            carry = None  # what the missing report left (energy baseline, sample ends) is unknown
        prev_r = prev[0].report if prev is not None else None
        _check_window(col, terms, policy, r, prev_r, carry, inp.now_ms)
        _check_cumulative(col, r, prev_r, first=(s == 1))
        carry, n_samples = _check_samples(col, terms, policy, aggregate, sr, carry, readings, spot_check_k)
        samples_seen += n_samples
        if progress is not None:
            progress(n + 1, total)
    if not inp.reports:
        col.skip("signature", "no reports")

    # 3. the chain's payments.
    _check_settlements(col, terms, inp.settlements, inp.money, by_seq)
    _check_money(col, inp.settlements, inp.money)

    return Verdict(
        leaseId=terms.leaseId,
        results=col.results(_UNITS),
        reports=len(inp.reports),
        settlements=len(inp.settlements),
        samples=samples_seen,
        spot_check_k=spot_check_k,
        notes=notes,
    )


def _check_lease_state(col: _Collector, inp: AuditInput) -> tuple[str, ...]:
    """The ``lease.state`` row (information): the chain's state of the lease, an exhausted escrow, each
    dispute and its outcome, and whether anything was metered at all. Returns the notes a verdict shows
    next to its word (everything here but a plain state)."""
    money = inp.money
    notes: list[str] = []
    if money is not None and money.exhausted:
        charged = money.closedCharged if money.closedCharged is not None else sum(s.charged for s in inp.settlements)
        notes.append(f"exhausted: the escrow ran out ({charged} charged of {money.escrow_in} escrowed)")
    for d in inp.disputes:
        if d.resolved:
            fault = "the provider at fault" if d.providerFault else "the provider not at fault"
            notes.append(
                f"dispute (block {d.order[0]}) resolved: {d.frozen} frozen, buyer {d.buyerShare}, provider "
                f"{d.providerShare}, slashed {d.slashed}, {fault}"
            )
        else:
            notes.append(f"dispute open since block {d.order[0]}: {d.frozen} frozen until the arbiter resolves it")
    if not inp.reports:
        paid = f", but {len(inp.settlements)} checkpoint(s) were paid" if inp.settlements else ""
        notes.append(f"no report accepted: nothing metered to audit{paid}")
    parts = [inp.status] if inp.status else []
    if inp.status is None and money is not None:
        parts.append("finished" if money.closed else "not finished")
    if parts or notes:
        col.info("lease.state", "; ".join(parts + notes))
    return tuple(notes)


def _check_bridge(col: _Collector, ev: BridgeEvidence | None) -> None:
    """``bridge.chain`` and ``bridge.consistency``: the source compared what the bridge served with the chain;
    every difference is the bridge's."""
    if ev is None:
        return
    for check, diffs, compared in (
        ("bridge.chain", ev.chain_differences, ev.chain_compared),
        ("bridge.consistency", ev.lease_differences, ev.lease_compared),
    ):
        if diffs is None:
            continue
        if not diffs:
            col.ok(check, compared)
            continue
        shown = list(diffs[:6]) + ([f"… {len(diffs) - 6} more"] if len(diffs) > 6 else [])
        col.fail(check, "; ".join(shown) + " (the chain is right: the bridge serves another story)")


def _signed_by_attestor(terms: LeaseTerms, dom: bytes, sr: SignedReport, h: bytes) -> bool:
    try:
        signer = recover_signer(typed_data_digest(dom, h), sr.signature)
    except ProtocolError:
        return False
    return signer.lower() in {a.lower() for a in attestor_at(terms, sr.report.windowEndMs)}


def _check_identity(col: _Collector, terms: LeaseTerms, r: MeteringReport) -> None:
    col.check("report.lease", r.leaseId == terms.leaseId, f"leaseId {r.leaseId} ≠ {terms.leaseId}", r.seq)
    col.check(
        "report.gpu_set",
        r.gpuSetHash == terms.gpuSetHash,
        f"gpuSetHash 0x{r.gpuSetHash.hex()[:16]}… is not the lease's 0x{terms.gpuSetHash.hex()[:16]}… "
        "(the report is about other GPUs)",
        r.seq,
    )


def attestor_at(terms: LeaseTerms, ts_ms: int) -> list[str]:
    """Attestor addresses registered for the lease's node at ``ts_ms`` (normally one)."""
    return [a.address for a in terms.attestors if a.covers(ts_ms)]


def _check_signature(col: _Collector, terms: LeaseTerms, dom: bytes, sr: SignedReport, h: bytes) -> None:
    r = sr.report
    try:
        signer = recover_signer(typed_data_digest(dom, h), sr.signature)
    except ProtocolError as e:
        col.fail("signature", f"invalid signature: {e}", r.seq)
        return
    valid = attestor_at(terms, r.windowEndMs)
    if signer.lower() in {a.lower() for a in valid}:
        col.ok("signature")
    elif not valid:
        col.fail("signature", f"signed by {signer}; no attestor registered at {r.windowEndMs}", r.seq)
    else:
        col.fail("signature", f"signed by {signer}, registered attestor {', '.join(valid)}", r.seq)


def _window_room(terms: LeaseTerms, r: MeteringReport, carry: _Carry) -> int:
    """GPU-ms the lease's GPUs' intervals ending in this window can span: per GPU from its last sample's end
    (or the lease's start) to the window's end (clipped to the lease). Only meaningful with an exact carry."""
    hi = min(r.windowEndMs, terms.endMs)
    known = carry.ends
    room = sum(max(0, hi - max(terms.startMs, end)) for end in known.values())
    return room + max(0, terms.gpuCount - len(known)) * max(0, hi - terms.startMs)


def _check_window(
    col: _Collector,
    terms: LeaseTerms,
    policy: AuditPolicy,
    r: MeteringReport,
    prev: MeteringReport | None,
    carry: _Carry | None,
    now_ms: int | None = None,
) -> None:
    s = r.seq
    if now_ms is not None:
        ahead = r.windowEndMs - now_ms
        col.check(
            "window.future",
            ahead <= policy.future_tolerance_ms,
            f"the window ends at {r.windowEndMs}, {ahead} ms after the chain's present ({now_ms}; tolerance "
            f"{policy.future_tolerance_ms} ms): the attestor signed time that has not happened yet",
            s,
        )
    else:
        col.skip("window.future", "the chain's present was not given")
    bad = []
    if r.windowEndMs <= r.windowStartMs:
        bad.append(f"window ({r.windowStartMs}, {r.windowEndMs}] is empty")
    if r.windowStartMs < terms.startMs:
        bad.append(f"starts at {r.windowStartMs}, before the lease ({terms.startMs})")
    if r.windowEndMs > terms.endMs:
        bad.append(f"ends at {r.windowEndMs}, after the lease ({terms.endMs})")
    col.check("window.bounds", not bad, "; ".join(bad), s)
    if prev is not None:
        ws, pe = r.windowStartMs, prev.windowEndMs
        why = "its time would count twice" if ws < pe else "no report covers the time between"
        col.check(
            "window.contiguity", ws == pe, f"starts at {ws}, report {prev.seq} ended at {pe} ({why})", s
        )
    g = terms.gpuCount
    elapsed = max(0, r.windowEndMs - terms.startMs)
    room = g * elapsed
    cap_mj = terms.maxPowerMwPerGpu * room * (10_000 + policy.energy_cap_margin_bps) // 10_000_000
    over = []
    if r.busyMs > r.allocatedMs:
        over.append(f"busyMs {r.busyMs} > allocatedMs {r.allocatedMs}")
    for name in ("cumAllocatedMs", "cumBusyMs", "cumSmActiveMs"):
        v = getattr(r, name)
        if v > room:
            over.append(f"{name} {v} > {g} GPUs × {elapsed} ms since lease start")
    if r.cumEnergyMj > cap_mj:
        over.append(f"cumEnergyMj {r.cumEnergyMj} > max power cap {cap_mj} mJ")
    if carry is not None and carry.exact:
        wroom = _window_room(terms, r, carry)
        for name in ("allocatedMs", "smActiveMs", "tensorActiveMs"):
            v = getattr(r, name)
            if v > wroom:
                over.append(f"{name} {v} > {wroom} GPU-ms its GPUs' intervals can span in this window")
    col.check("window.capacity", not over, "; ".join(over), s)


def _check_cumulative(col: _Collector, r: MeteringReport, prev: MeteringReport | None, *, first: bool) -> None:
    names = ("cumBusyMs", "cumEnergyMj", "cumAllocatedMs", "cumSmActiveMs")
    window = (r.busyMs, r.energyMj, r.allocatedMs, r.smActiveMs)
    if first:
        base: tuple[int, ...] = (0, 0, 0, 0)
    elif prev is not None:
        base = tuple(getattr(prev, nm) for nm in names)
    else:
        return  # the previous report is missing: chain.seq names it, the running sum cannot be formed
    want = tuple(b + w for b, w in zip(base, window))
    got = tuple(getattr(r, nm) for nm in names)
    bad = [f"{nm} {g} ≠ running sum {w}" for nm, g, w in zip(names, got, want) if g != w]
    col.check("cumulative", not bad, "; ".join(bad), r.seq)


def _check_samples(
    col: _Collector,
    terms: LeaseTerms,
    policy: AuditPolicy,
    aggregate: Aggregator,
    sr: SignedReport,
    carry: _Carry | None,
    readings: _Readings,
    spot_check_k: int | None,
) -> tuple[_Carry | None, int]:
    """Samples of one report; returns what this window hands the next (None: unknown) and how many samples
    were rebuilt or proven."""
    r = sr.report
    s = r.seq
    if sr.samples is None:
        if spot_check_k is None:
            col.fail("samples.root", "raw samples not available", s)
            return None, 0
        return None, _check_spot(col, terms, policy, sr, spot_check_k)

    samples = sr.samples
    n = len(samples)
    if n != r.sampleCount:
        col.fail("samples.root", f"{n} samples, report commits to {r.sampleCount}", s)
        return None, n
    try:
        root = samples_root(samples)
    except ProtocolError as e:
        col.fail("samples.root", f"a sample does not fit the leaf type: {e}", s)
        return None, n
    if root != r.samplesRoot:
        col.fail(
            "samples.root", f"rebuilt root 0x{root.hex()[:16]}… ≠ samplesRoot 0x{r.samplesRoot.hex()[:16]}…", s
        )
        return None, n  # these are not the committed samples: nothing below would mean anything
    col.ok("samples.root")
    if spot_check_k is not None:
        col.skip("samples.spot_check", "full samples were available")

    if not _check_sentinels(col, samples, s):
        return None, n
    sane = _check_sanity(col, terms, r, samples)
    disjoint = _check_intervals(col, r, samples, carry.ends if carry is not None else None)
    _check_window_end(col, r, samples)
    if s == 1:
        _check_first_window(col, terms, policy, r, samples)
    _check_coverage(col, policy, r, samples)
    try:
        figures = aggregate(
            samples,
            r.windowStartMs,
            r.windowEndMs,
            terms.samplePeriodMs,
            gap_tolerance_ms=policy.gap_tolerance_ms,
            lease_start_ms=terms.startMs,
            lease_end_ms=terms.endMs,
            energy_baseline=carry.baseline if carry is not None else {},
            sample_ends=carry.ends if carry is not None else {},
            gpu_indices=terms.gpuIndices,
        )
    except MeteringError as e:
        if sane and disjoint:  # the checks above should have named it; never let a malformed window pass
            col.fail("samples.sanity", str(e), s)
        return None, n
    if not (sane and disjoint):
        return None, n

    _check_flags(col, r, figures)
    names = ("busyMs", "allocatedMs", "smActiveMs", "tensorActiveMs", "maxMemUsedMiB", "energyMj")
    got = {k: getattr(r, k) for k in names}
    want = {k: getattr(figures, k) for k in names}
    readers = {x.gpuIndex for x in samples if not x.flags & _ENERGY_INVALID}
    if carry is None or not (carry.exact or readers <= carry.baseline.keys()):
        # a report before is missing or unchecked: the energy baseline of some GPU is unknown
        del got["energyMj"], want["energyMj"]
    bad = [f"{k} {got[k]} ≠ {want[k]} from samples" for k in got if got[k] != want[k]]
    col.check("aggregates", not bad, "; ".join(bad), s)
    _check_physics(col, terms, policy, r, samples, readings)
    exact = carry is not None and carry.exact
    return _Carry(dict(figures.energy_baseline), dict(figures.sample_ends), exact), n


def _check_spot(col: _Collector, terms: LeaseTerms, policy: AuditPolicy, sr: SignedReport, k: int) -> int:
    r = sr.report
    s = r.seq
    need = min(k, r.sampleCount)
    bad: list[str] = []
    served: list[str] = []  # what the bridge served with the proofs that is not what was signed
    proven: dict[bytes, Sample] = {}
    for p in sr.proofs:
        if p.root is not None and p.root != r.samplesRoot:
            served.append(
                f"sample {p.index}: served root 0x{p.root.hex()[:16]}… is not the signed samplesRoot "
                f"0x{r.samplesRoot.hex()[:16]}…"
            )
        try:
            leaf = sample_leaf(p.sample)
        except ProtocolError as e:
            bad.append(f"sample {p.index}: {e}")
            continue
        if p.leaf is not None and p.leaf != leaf:
            served.append(f"sample {p.index}: served leaf 0x{p.leaf.hex()[:16]}… is not the sample's 0x{leaf.hex()[:16]}…")
        if p.index >= r.sampleCount:
            bad.append(f"sample index {p.index} ≥ sampleCount {r.sampleCount}")
        elif not verify_proof(r.samplesRoot, leaf, p.proof):
            bad.append(f"sample {p.index}: proof does not lead to samplesRoot")
        else:
            proven[leaf] = p.sample
    if not bad and len(proven) < need:
        bad.append(f"{len(proven)} distinct samples proven, {need} asked")
    col.check("samples.spot_check", not bad, "; ".join(bad), s)
    if any(p.root is not None or p.leaf is not None for p in sr.proofs):
        col.check("bridge.proofs", not served, "; ".join(served[:3]) + " (the bridge's copy is not what was signed)", s)
    for name in (
        "aggregates",
        "samples.intervals",
        "samples.gaps",
        "samples.energy_monotonic",
        "window.end",
        "physics.energy",
        "physics.idle_busy",
        "physics.sm_busy",
    ):
        col.skip(name, f"spot check of {k} samples per report: needs every sample")
    if proven:
        samples = tuple(proven.values())
        if _check_sentinels(col, samples, s):
            _check_sanity(col, terms, r, samples)
            _check_coverage(col, policy, r, samples)
            _check_power_cap(col, terms, policy, r, samples)
    return len(proven)


def _check_sentinels(col: _Collector, samples: Sequence[Sample], seq: int) -> bool:
    for i, smp in enumerate(samples):
        if (  # the common case in one expression; the loop below only names the field
            smp.powerMw == _U32_MAX
            or smp.memUsedMiB == _U32_MAX
            or smp.energyMj == _U64_MAX
            or smp.tsMs == _U64_MAX
        ):
            for name, sentinel in _SENTINELS:
                if getattr(smp, name) == sentinel:
                    col.fail("samples.sentinel", f"sample {i} (GPU {smp.gpuIndex}): {name} = {sentinel:#x}", seq)
                    return False
    col.ok("samples.sentinel")
    return True


def _sample_problems(smp: Sample, report_flags: int) -> list[str]:
    """What is wrong with one sample on its own (v2 field rules); empty when nothing."""
    out = []
    f = smp.flags
    if smp.intervalMs < 1:
        out.append("an empty interval")
    if not smp.busyMs <= smp.coveredMs <= smp.intervalMs:
        out.append(f"busy {smp.busyMs} ≤ covered {smp.coveredMs} ≤ interval {smp.intervalMs} does not hold")
    if smp.smActiveMs > smp.intervalMs or smp.tensorActiveMs > smp.intervalMs:
        out.append(f"SM {smp.smActiveMs} or tensor {smp.tensorActiveMs} ms above its {smp.intervalMs} ms interval")
    for bit, names in _MISSING_MEANS_ZERO:
        if f & bit:
            nonzero = [f"{nm}={getattr(smp, nm)}" for nm in names if getattr(smp, nm)]
            if nonzero:
                out.append(f"marks {SampleField(bit).name} missing but gives {', '.join(nonzero)}")
    if f & _MEM_UTIL:
        out.append("flags MEM_UTIL, a protocol v1 field")
    unknown = f & ~_KNOWN_BITS & ~_MEM_UTIL
    if unknown:
        out.append(f"unknown flag bits {unknown:#x}")
    if f & ReportFlag.NO_GPM and not f & SampleField.SM_ACTIVE:
        out.append("NO_GPM (the GPU cannot measure SM activity) without SM activity marked missing")
    report_bits = f & REPORT_FLAG_MASK
    if report_bits & ~report_flags:
        out.append(f"flags {report_bits:#x} not carried by the report's flags {report_flags:#x}")
    return out


def _check_sanity(col: _Collector, terms: LeaseTerms, r: MeteringReport, samples: Sequence[Sample]) -> bool:
    bad: list[str] = []
    lo, hi = r.windowStartMs, r.windowEndMs
    allowed = None if terms.gpuIndices is None else frozenset(terms.gpuIndices)
    gpus: set[int] = set()
    for i, smp in enumerate(samples):
        g = smp.gpuIndex
        gpus.add(g)
        if not lo < smp.tsMs <= hi:
            bad.append(f"sample {i} at {smp.tsMs} outside window ({lo}, {hi}]")
        if allowed is not None and g not in allowed:
            bad.append(f"sample {i} on GPU {g}, not one of the lease's {sorted(allowed)}")
        bad += [f"sample {i} (GPU {g} at {smp.tsMs}): {p}" for p in _sample_problems(smp, r.flags)]
        if len(bad) >= 3:
            break
    if allowed is None and len(gpus) > terms.gpuCount:
        bad.append(f"samples from {len(gpus)} GPUs, lease has {terms.gpuCount}")
    return col.check("samples.sanity", not bad, "; ".join(bad[:3]), r.seq)


def _by_gpu(samples: Iterable[Sample]) -> dict[int, list[Sample]]:
    out: dict[int, list[Sample]] = {}
    for smp in samples:
        out.setdefault(smp.gpuIndex, []).append(smp)
    for rows in out.values():
        rows.sort(key=lambda x: x.tsMs)
    return out


def _check_intervals(
    col: _Collector, r: MeteringReport, samples: Sequence[Sample], ends: Mapping[int, int] | None
) -> bool:
    """Per GPU, no two intervals overlap: inside the window, and against the GPU's last sample of an earlier
    window (``ends``, the carried sample ends; None when unknown)."""
    bad: list[str] = []
    for gpu, rows in sorted(_by_gpu(samples).items()):
        prev = None if ends is None else ends.get(gpu)
        earlier = True  # prev comes from an earlier window
        for x in rows:
            start = x.tsMs - x.intervalMs
            if prev is not None and x.tsMs == prev:
                bad.append(f"GPU {gpu} has two samples at {x.tsMs}")
            elif prev is not None and start < prev:
                where = "its last sample of an earlier window" if earlier else "its previous sample"
                bad.append(
                    f"GPU {gpu}: the sample at {x.tsMs} starts at {start}, before {where} ended ({prev}): "
                    f"{prev - start} ms counted twice"
                )
            prev, earlier = x.tsMs, False
            if len(bad) >= 3:
                break
    return col.check("samples.intervals", not bad, "; ".join(bad[:3]), r.seq)


def _check_window_end(col: _Collector, r: MeteringReport, samples: Sequence[Sample]) -> None:
    if not samples:
        col.fail("window.end", "a window without samples (the attestor reports none)", r.seq)
        return
    newest = max(x.tsMs for x in samples)
    col.check(
        "window.end",
        r.windowEndMs == newest,
        f"windowEndMs {r.windowEndMs} is not the newest sample's tsMs {newest}",
        r.seq,
    )


def _check_first_window(
    col: _Collector, terms: LeaseTerms, policy: AuditPolicy, r: MeteringReport, samples: Sequence[Sample]
) -> None:
    """The attestor starts a lease's first window at max(lease start, the earliest interval start of its
    first samples); a GPU first seen in a later collect may start up to a driver period earlier."""
    if not samples:
        return
    earliest = max(terms.startMs, min(x.tsMs - x.intervalMs for x in samples))
    ws = r.windowStartMs
    col.check(
        "window.contiguity",
        earliest <= ws <= earliest + policy.util_period_ms,
        f"the first window starts at {ws}; its samples' intervals start at {earliest} (clipped to the lease)",
        r.seq,
    )


def _check_coverage(col: _Collector, policy: AuditPolicy, r: MeteringReport, samples: Sequence[Sample]) -> None:
    """Covered time must rest on driver utilization samples: each vouches for at most 1.5 driver periods
    (a longer stretch is a hole: UTIL_HOLE, uncovered), a util.gpu poll (UTIL_POLLED) for at most 1 s."""
    buffer_span = policy.util_period_ms * 3 // 2
    for i, x in enumerate(samples):
        if x.flags & _UTIL_INVALID or not x.coveredMs:
            continue
        span = policy.poll_span_ms if x.flags & _POLLED else buffer_span
        if x.coveredMs > x.utilSamples * span:
            what = "util.gpu polls" if x.flags & _POLLED else "driver utilization samples"
            col.fail(
                "samples.coverage",
                f"sample {i} (GPU {x.gpuIndex} at {x.tsMs}): coveredMs {x.coveredMs} rests on {x.utilSamples} "
                f"{what}, which vouch for at most {x.utilSamples * span} ms",
                r.seq,
            )
            return
    col.ok("samples.coverage")


def _check_flags(col: _Collector, r: MeteringReport, figures: WindowFigures) -> None:
    s = r.seq
    need_gap = bool(figures.flags & ReportFlag.SAMPLE_GAP)
    col.check(
        "samples.gaps",
        not need_gap or bool(r.flags & ReportFlag.SAMPLE_GAP),
        "samples have a gap longer than the gap tolerance but the report is not flagged SAMPLE_GAP",
        s,
    )
    need_reset = bool(figures.flags & ReportFlag.ENERGY_RESET)
    col.check(
        "samples.energy_monotonic",
        not need_reset or bool(r.flags & ReportFlag.ENERGY_RESET),
        "the energy counter decreases but the report is not flagged ENERGY_RESET",
        s,
    )


def _check_power_cap(
    col: _Collector, terms: LeaseTerms, policy: AuditPolicy, r: MeteringReport, samples: Sequence[Sample]
) -> None:
    cap = terms.maxPowerMwPerGpu * (10_000 + policy.power_margin_bps) // 10_000
    for smp in samples:
        if not smp.flags & _POWER_INVALID and smp.powerMw > cap:
            col.fail(
                "physics.power_cap",
                f"GPU {smp.gpuIndex} at {smp.tsMs}: {smp.powerMw} mW > {terms.maxPowerMwPerGpu} mW declared (+margin)",
                r.seq,
            )
            return
    col.ok("physics.power_cap")


def _activity_bps(rows: Sequence[Sample]) -> tuple[int, str] | None:
    """Share of the time the GPU was SM-active (GPM) or, without GPM figures, busy (utilization), in bps."""
    sm = span = 0
    for x in rows:
        if not x.flags & _SM_INVALID:
            sm += x.smActiveMs
            span += x.intervalMs
    if span:
        return sm * 10_000 // span, "SM-active"
    busy = covered = 0
    for x in rows:
        if not x.flags & _UTIL_INVALID:
            busy += x.busyMs
            covered += x.coveredMs
    if covered:
        return busy * 10_000 // covered, "busy"
    return None


def _check_physics(
    col: _Collector,
    terms: LeaseTerms,
    policy: AuditPolicy,
    r: MeteringReport,
    samples: Sequence[Sample],
    readings: _Readings,
) -> None:
    """Energy counter, power and activity against each other, per GPU.

    The energy counter is read at window boundaries; between two valid readings its growth is bounded by
    the node's max power over the time between them (the readings are taken up to ``energy_read_slack_ms``
    after their samples' ``tsMs``). No lower bound is checked: idle power differs by model and state and
    the lease does not say which GPU it is. A mean power reading covers only the last ~2 s of an interval,
    so it is checked against the cap, not integrated against the counter.
    """
    s = r.seq
    _check_power_cap(col, terms, policy, r, samples)
    max_mw = terms.maxPowerMwPerGpu
    rate_mw = max_mw * (10_000 + policy.energy_margin_bps) // 10_000
    slack_ms = policy.energy_read_slack_ms
    for gpu, rows in _by_gpu(samples).items():
        # SM activity against busy time (evidence only)
        sm = busy = uncovered = span = 0
        for x in rows:
            if not x.flags & (_SM_INVALID | _UTIL_INVALID):
                sm += x.smActiveMs
                busy += x.busyMs
                uncovered += x.intervalMs - x.coveredMs
                span += x.intervalMs
        if span:
            allowed = busy + uncovered + span * policy.sm_busy_slack_bps // 10_000 + policy.sm_busy_slack_ms
            col.check(
                "physics.sm_busy",
                sm <= allowed,
                f"GPU {gpu}: SM-active {sm} ms but busy {busy} ms (+{uncovered} ms uncovered) of {span} ms: SMs "
                f"cannot work without a kernel running (tolerance {allowed - busy - uncovered} ms)",
                s,
            )
        # energy counter between valid readings
        last = readings.last.get(gpu)
        for x in rows:
            if x.flags & _ENERGY_INVALID:
                continue
            if last is not None and x.tsMs > last[0] and x.energyMj >= last[1]:
                t0, c0 = last
                dt = x.tsMs - t0
                grew = x.energyMj - c0
                cap = rate_mw * (dt + slack_ms) // 1000
                col.check(
                    "physics.energy",
                    grew <= cap,
                    f"GPU {gpu}: the energy counter rose {grew} mJ in {dt} ms ({t0}..{x.tsMs}), more than "
                    f"{max_mw} mW (+{policy.energy_margin_bps} bps, +{slack_ms} ms read slack) allows: {cap} mJ",
                    s,
                )
                act = _activity_bps([y for y in rows if t0 < y.tsMs <= x.tsMs])
                if act is not None:
                    share, what = act
                    mean_mw = grew * 1000 // dt
                    idle = share >= policy.idle_activity_bps and mean_mw * 10_000 < max_mw * policy.idle_power_bps
                    col.check(
                        "physics.idle_busy",
                        not idle,
                        f"GPU {gpu}: {what} {share} bps of the time at a mean {mean_mw} mW from the energy counter "
                        f"(< {policy.idle_power_bps} bps of {max_mw} mW) over {t0}..{x.tsMs}",
                        s,
                    )
            last = (x.tsMs, x.energyMj)
        if last is not None:
            readings.last[gpu] = last


def billable_of(mode: BillingMode, r: MeteringReport) -> int:
    """Cumulative billable GPU-ms of a report under the lease's billing mode (``economics.billable``):
    allocated (reserved), busy (metered) or SM-active (sm_active) time."""
    return billable(mode, busy_ms=r.cumBusyMs, allocated_ms=r.cumAllocatedMs, sm_active_ms=r.cumSmActiveMs)


def _check_settlements(
    col: _Collector,
    terms: LeaseTerms,
    settlements: Sequence[Settlement],
    money: LeaseMoney | None,
    by_seq: Mapping[int, tuple[SignedReport, bytes]],
) -> None:
    events: list[tuple[tuple[int, ...], int, Settlement | TopUp]] = [(st.order, 1, st) for st in settlements]
    if money is not None:
        events += [(t.order, 0, t) for t in money.topUps]
    events.sort(key=lambda e: (e[0], e[1]))
    mode = terms.billingMode
    escrowed = money.escrow if money is not None else None
    charged_total = 0
    last_seq = 0
    prev: Settlement | None = None  # the previous checkpoint the chain recorded (None: the lease's start)
    last_billable = 0  # cumulative billable GPU-ms of the reports at the previous checkpoint
    for _, _, ev in events:
        if isinstance(ev, TopUp):
            if escrowed is not None:
                escrowed += ev.amount
            continue
        st = ev
        s = st.seq
        try:
            if s == last_seq:
                col.fail("settlement.duplicate", f"seq {s} settled again: charged {st.charged} a second time", s)
                continue
            col.ok("settlement.duplicate")
            if s < last_seq:
                col.fail("settlement.order", f"seq {s} settled after seq {last_seq}", s)
                continue
            col.ok("settlement.order")
            chain_billable = st.billable(mode)
            chain_last = prev.billable(mode) if prev is not None else 0
            chain_delta = chain_billable - chain_last
            entry = by_seq.get(s)
            if entry is None:
                col.fail("settlement.report", f"checkpoint pays for report {s}, which no source published", s)
                last_billable = chain_billable  # the chain's figure is all there is to go on from here
                continue
            r, h = entry[0].report, entry[1]
            col.check(
                "settlement.report",
                st.reportHash == h,
                f"reportHash 0x{st.reportHash.hex()[:16]}… ≠ the archived report's 0x{h.hex()[:16]}… (the chain "
                "paid for another report: other counters, window or samples root)",
                s,
            )
            _check_ckpt(col, st, r, prev)
            billable_ms = billable_of(mode, r)
            delta = billable_ms - last_billable
            elapsed = max(0, r.windowEndMs - terms.startMs)
            room = terms.gpuCount * elapsed
            bad = []
            if chain_delta != delta:
                bad.append(
                    f"the chain billed {chain_delta} GPU-ms (ckpt {chain_billable} − {chain_last}), "
                    f"the reports {delta} ({billable_ms} − {last_billable})"
                )
            if chain_delta < 0:
                bad.append(f"the chain's billable GPU time went down by {-chain_delta} GPU-ms")
            if chain_billable > room:
                bad.append(
                    f"{chain_billable} GPU-ms billed by {elapsed} ms into the lease on {terms.gpuCount} GPUs "
                    f"(at most {room})"
                )
            col.check("settlement.billable", not bad, "; ".join(bad), s)
            want = charge_for(terms.pricePerGpuSecond, billable_ms, last_billable)
            if escrowed is not None:
                want = min(want, max(0, escrowed - charged_total))
            col.check(
                "settlement.charge",
                st.charged == want,
                f"charged {st.charged} ≠ {want} (price {terms.pricePerGpuSecond}/GPU-s × {delta} GPU-ms / 1000"
                + (f", capped by {escrowed - charged_total} left in escrow)" if escrowed is not None else ")"),
                s,
            )
            last_billable = billable_ms
        finally:
            charged_total += st.charged
            if s > last_seq:
                last_seq = s
                prev = st
    if not settlements:
        col.skip("settlement.report", "no checkpoint settled yet")


def _check_ckpt(col: _Collector, st: Settlement, r: MeteringReport, prev: Settlement | None) -> None:
    """The ckpt the chain recorded for a checkpoint is the settled report's (the escrow writes it from the
    settlement entry: a difference means the event source or the escrow is not telling the truth)."""
    pairs = (
        ("cumBusyMs", st.cumBusyMs, r.cumBusyMs),
        ("cumAllocatedMs", st.cumAllocatedMs, r.cumAllocatedMs),
        ("cumEnergyMj", st.cumEnergyMj, r.cumEnergyMj),
        ("cumSmActiveMs", st.cumSmActiveMs, r.cumSmActiveMs),
    )
    bad = [f"ckpt {name} {got} ≠ report's {want}" for name, got, want in pairs if got != want]
    if st.settledAt * 1000 < r.windowEndMs:
        bad.append(f"settled at {st.settledAt * 1000} ms, before the window ended ({r.windowEndMs})")
    if prev is not None and st.settledAt < prev.settledAt:
        bad.append(f"settled at {st.settledAt} s, before the previous checkpoint ({prev.settledAt} s)")
    col.check("settlement.checkpoint", not bad, "; ".join(bad), st.seq)


def _check_money(col: _Collector, settlements: Sequence[Settlement], money: LeaseMoney | None) -> None:
    if money is None:
        col.skip("money.conservation", "no money events given")
        return
    charged = sum(st.charged for st in settlements)
    escrow_in = money.escrow + sum(t.amount for t in money.topUps)
    fee_in = money.fee + sum(t.fee for t in money.topUps)
    if not money.closed:
        col.check("money.conservation", charged <= escrow_in, f"charged {charged} exceeds the {escrow_in} escrowed")
        return
    bad = []
    if escrow_in != charged + money.refund:
        bad.append(f"escrow in {escrow_in} ≠ charged {charged} + refund {money.refund}")
    if money.closedCharged is not None and money.closedCharged != charged:
        bad.append(f"closing event says {money.closedCharged} charged, checkpoints charged {charged}")
    if money.feeKept is not None and fee_in != money.feeKept + money.feeRefund:
        bad.append(f"fee in {fee_in} ≠ fee kept {money.feeKept} + fee refunded {money.feeRefund}")
    fee_kept = fee_in - money.feeRefund if money.feeKept is None else money.feeKept
    summary = (
        f"paid in {escrow_in + fee_in} = charged {charged} + fee {fee_kept} + refunds {money.refund + money.feeRefund}"
    )
    col.check("money.conservation", not bad, "; ".join(bad) + f" ({summary})" if bad else summary)


def pick_spot_indices(sample_count: int, k: int, rng: random.Random | None = None) -> list[int]:
    """Which samples to ask proofs for: ``k`` distinct indices, unpredictable to the provider."""
    rng = rng or random.SystemRandom()
    if k >= sample_count:
        return list(range(sample_count))
    return sorted(rng.sample(range(sample_count), k))


def verify_leases(inputs: Iterable[AuditInput], spot_check_k: int | None = None, **kw: Any) -> list[Verdict]:
    """:func:`verify_lease` over several leases (a whole deployment)."""
    return [verify_lease(i, spot_check_k, **kw) for i in inputs]


# --- what the lease used, for people ------------------------------------------------------------------------

BILLING_BASIS: dict[BillingMode, str] = {
    BillingMode.RESERVED: "allocated GPU time (reserved: every GPU-second the driver's samples vouch for)",
    BillingMode.METERED: "busy GPU time (metered: time with a kernel running, per the driver's utilization)",
    BillingMode.SM_ACTIVE: "SM-active GPU time (sm_active: GPM's SM activity × time, the compute used)",
}
"""What each billing mode bills, in words (the HTML report and the command show it)."""

FLAG_WORDS: dict[ReportFlag, str] = {
    ReportFlag.ENERGY_RESET: "the GPU's energy counter restarted (driver reload): a new epoch, nothing lost",
    ReportFlag.SAMPLE_GAP: "a stretch of time without samples (attestor down or late): not billed",
    ReportFlag.FIELD_NOT_SUPPORTED: "a figure the GPU does not support is recorded as missing, not as zero",
    ReportFlag.SIMULATED: "readings come from a simulated GPU driver, not hardware",
    ReportFlag.GPU_LOST: "a GPU stopped answering (fell off the bus): its time after that counts nothing",
    ReportFlag.ECC_ERROR: "uncorrected memory (ECC) errors were seen",
    ReportFlag.CLOCK_ADJUSTED: "the wall clock jumped; an overlapping interval was dropped",
    ReportFlag.UTIL_HOLE: (
        "the driver's utilization buffer lost samples before the attestor read them: that time is not covered "
        "and not billed"
    ),
    ReportFlag.UTIL_POLLED: (
        "no utilization buffer on this GPU: busy time comes from polling util.gpu once a second, which can "
        "miss or double-count loads that switch in step with the polls"
    ),
    ReportFlag.NO_GPM: (
        "the GPU has no GPM (pre-Hopper): SM and tensor activity are not measured (SM-active billing counts 0)"
    ),
}
"""Each report-level flag in words."""


def describe_flags(flags: int) -> list[tuple[str, str]]:
    """``(name, words)`` of each report-level flag set in ``flags``, in bit order."""
    return [(f.name or str(int(f)), FLAG_WORDS[f]) for f in FLAG_WORDS if flags & f]


def share_bps(part: int, whole: int) -> int | None:
    """``part / whole`` in basis points (floored), None when ``whole`` is 0."""
    return None if whole <= 0 else part * 10_000 // whole


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """One report's window as the report states it (the verdict says whether it holds)."""

    seq: int
    windowStartMs: int
    windowEndMs: int
    allocatedMs: int
    busyMs: int
    smActiveMs: int
    tensorActiveMs: int
    energyMj: int
    flags: int

    @property
    def sm_share_of_busy_bps(self) -> int | None:
        return share_bps(self.smActiveMs, self.busyMs)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "windowStartMs": self.windowStartMs,
            "windowEndMs": self.windowEndMs,
            "allocatedMs": self.allocatedMs,
            "busyMs": self.busyMs,
            "smActiveMs": self.smActiveMs,
            "tensorActiveMs": self.tensorActiveMs,
            "energyMj": self.energyMj,
            "smShareOfBusyBps": self.sm_share_of_busy_bps,
            "flags": [name for name, _ in describe_flags(self.flags)],
        }


@dataclass(frozen=True, slots=True)
class LeaseUsage:
    """What a lease's reports say it used, per window and in total, and what its billing mode bills."""

    billingMode: BillingMode
    windows: tuple[WindowUsage, ...]

    def _sum(self, name: str) -> int:
        return sum(getattr(w, name) for w in self.windows)

    @property
    def allocatedMs(self) -> int:
        return self._sum("allocatedMs")

    @property
    def busyMs(self) -> int:
        return self._sum("busyMs")

    @property
    def smActiveMs(self) -> int:
        return self._sum("smActiveMs")

    @property
    def tensorActiveMs(self) -> int:
        return self._sum("tensorActiveMs")

    @property
    def energyMj(self) -> int:
        return self._sum("energyMj")

    @property
    def flags(self) -> int:
        out = 0
        for w in self.windows:
            out |= w.flags
        return out

    @property
    def sm_share_of_busy_bps(self) -> int | None:
        return share_bps(self.smActiveMs, self.busyMs)

    @property
    def billableMs(self) -> int:
        return billable(
            self.billingMode, busy_ms=self.busyMs, allocated_ms=self.allocatedMs, sm_active_ms=self.smActiveMs
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "billingMode": self.billingMode.label,
            "billingBasis": BILLING_BASIS[self.billingMode],
            "allocatedMs": self.allocatedMs,
            "busyMs": self.busyMs,
            "smActiveMs": self.smActiveMs,
            "tensorActiveMs": self.tensorActiveMs,
            "energyMj": self.energyMj,
            "smShareOfBusyBps": self.sm_share_of_busy_bps,
            "billableMs": self.billableMs,
            "flags": [{"flag": name, "meaning": words} for name, words in describe_flags(self.flags)],
            "windows": [w.to_json() for w in self.windows],
        }


def lease_usage(inp: AuditInput) -> LeaseUsage:
    """The usage the lease's reports state (one window per seq, in seq order; a seq listed twice counts once)."""
    by_seq: dict[int, MeteringReport] = {}
    for sr in inp.reports:
        by_seq.setdefault(sr.report.seq, sr.report)
    windows = tuple(
        WindowUsage(
            seq=r.seq,
            windowStartMs=r.windowStartMs,
            windowEndMs=r.windowEndMs,
            allocatedMs=r.allocatedMs,
            busyMs=r.busyMs,
            smActiveMs=r.smActiveMs,
            tensorActiveMs=r.tensorActiveMs,
            energyMj=r.energyMj,
            flags=r.flags,
        )
        for r in (by_seq[s] for s in sorted(by_seq))
    )
    return LeaseUsage(inp.terms.billingMode, windows)


__all__ = [
    "BILLING_BASIS",
    "CHECKS",
    "CHECK_PARTY",
    "FLAG_WORDS",
    "PARTIES",
    "AttestorPeriod",
    "AuditError",
    "AuditInput",
    "AuditPolicy",
    "BillingMode",
    "BridgeEvidence",
    "ChainLease",
    "CheckResult",
    "Dispute",
    "LeaseMoney",
    "LeaseTerms",
    "LeaseUsage",
    "SampleProof",
    "Settlement",
    "SignedReport",
    "TopUp",
    "Verdict",
    "WindowUsage",
    "attestor_at",
    "billable_of",
    "charge_for",
    "describe_flags",
    "lease_usage",
    "pick_spot_indices",
    "share_bps",
    "verify_lease",
    "verify_leases",
]
