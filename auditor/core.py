"""Independent audit of a lease: every unit of money the chain moved must rest on a valid metering proof.

The core is pure: :func:`verify_lease` takes an :class:`AuditInput` (the lease's terms, its signed reports
with their raw samples or spot-check proofs, the chain's settlements and money events) and returns a
:class:`Verdict`, a list of named :class:`CheckResult`. Where the input comes from (the bridge's HTTP API,
or the chain plus a samples archive) is :mod:`auditor.sources`' business; nothing here does I/O.

Checks, by name (a failure names the check and the report ``seq`` it concerns):

==========================  ===========================================================================
``report.lease``            the report is for this lease (leaseId)
``report.gpu_set``          the report's gpuSetHash is the lease's on-chain ``lease(id).gpuSetHash`` (the
                            escrow no longer checks it at settlement: the GPU set is inside the signed
                            WindowDetail, so only an auditor catches a report about other GPUs)
``signature``               EIP-712 digest recovers to the attestor registered for the node at the window
``chain.order``             reports are published in strictly increasing ``seq`` order
``chain.seq``               seq runs 1, 2, 3 … with no report missing and no two reports for one seq
``chain.prev_hash``         ``prevReportHash`` is the struct hash of report ``seq − 1`` (zero for seq 1)
``window.bounds``           the window lies inside the lease and ends after it starts
``window.overlap``          the window starts at or after the end of the previous one
``window.capacity``         window and cumulative time ≤ GPUs × elapsed, busy ≤ allocated, energy ≤ cap
``samples.root``            the Merkle root rebuilt from the raw samples and their count match the report
``samples.spot_check``      (spot-check mode) k samples prove into ``samplesRoot`` with Merkle proofs
``samples.sanity``          samples lie in the window, on the lease's GPUs, one per GPU and timestamp,
                            utilization ≤ 100 %, their flags carried by the report
``samples.sentinel``        no NVML "not available" sentinel (all ones of the field's width)
``samples.gaps``            a gap of more than period + tolerance is flagged ``SAMPLE_GAP``
``samples.energy_monotonic`` the energy counter only decreases where the report flags ``ENERGY_RESET``
``aggregates``              busy, allocated, energy, max memory re-derived with ``ledger.protocol.metering``
``cumulative``              cumulative counters equal the running sums of the windows
``physics.energy``          energy-counter growth ≈ Σ power·Δt within a tolerance, per GPU
``physics.busy``            busy time ≈ the utilization integral, within a tolerance
``physics.power_cap``       no power reading above the node's declared maximum per GPU (+ margin)
``physics.idle_busy``       WARNING only: high utilization at idle power (a utilization-only load, or a lie)
``settlement.report``       a settled checkpoint names an archived report: its reportHash is the report's
                            struct hash (which binds the samples root, through the signed WindowDetail)
``settlement.checkpoint``   the ckpt the chain recorded is the settled report's: seq, cumulative busy,
                            allocated and energy counters, window end; settled after the window ended,
                            settlement times never going back
``settlement.order``        checkpoints settle strictly increasing seqs
``settlement.duplicate``    no seq is settled (paid) twice
``settlement.billable``     the billable delta of a checkpoint (cumulative billable of its ckpt − of the
                            previous checkpoint's, ``ledger.protocol.economics.checkpoint_billable``) is the archived
                            reports' delta, and at most GPUs × the time since the previous checkpoint
``settlement.charge``       charged = price × billable delta / 1000 (on the cumulative totals, as the
                            escrow rounds), capped by the escrow that remained
``money.conservation``      closed lease: paid in (escrow + fee + top-ups) = charged + fee kept + refunds;
                            open lease: charged never exceeds what was escrowed
==========================  ===========================================================================

FIELD_NOT_SUPPORTED samples mark the missing field (:class:`ledger.protocol.metering.SampleField`); a missing field
is excluded from the physics checks. Integers throughout; tolerances are basis points.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from ledger.protocol.economics import (
    BillingMode,
    LeaseMoney,
    Settlement,
    TopUp,
    billable,
    charge_for,
)
from ledger.protocol.errors import LedgerError
from ledger.protocol.metering import MeteringError, SampleField, WindowFigures, aggregate_window
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
    "report.lease",
    "report.gpu_set",
    "signature",
    "chain.order",
    "chain.seq",
    "chain.prev_hash",
    "window.bounds",
    "window.overlap",
    "window.capacity",
    "samples.root",
    "samples.spot_check",
    "samples.sanity",
    "samples.sentinel",
    "samples.gaps",
    "samples.energy_monotonic",
    "aggregates",
    "cumulative",
    "physics.energy",
    "physics.busy",
    "physics.power_cap",
    "physics.idle_busy",
    "settlement.report",
    "settlement.checkpoint",
    "settlement.order",
    "settlement.duplicate",
    "settlement.billable",
    "settlement.charge",
    "money.conservation",
)
WARNING_CHECKS = frozenset({"physics.idle_busy"})

_U16_MAX = (1 << 16) - 1
_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
# NVML answers "not available" with all ones of the field's width (NVML_VALUE_NOT_AVAILABLE = -1 cast to
# unsigned); an attestor must record a missing field as 0 + FIELD_NOT_SUPPORTED, never pass the sentinel on.
_SENTINELS: tuple[tuple[str, int], ...] = (
    ("tsMs", _U64_MAX),
    ("gpuUtilBps", _U16_MAX),
    ("memUtilBps", _U16_MAX),
    ("powerMw", _U32_MAX),
    ("energyMj", _U64_MAX),
    ("memUsedMiB", _U32_MAX),
)
_POWER_INVALID = int(ReportFlag.GPU_LOST | SampleField.POWER)
_ENERGY_INVALID = int(ReportFlag.GPU_LOST | SampleField.ENERGY)
_UTIL_INVALID = int(ReportFlag.GPU_LOST | SampleField.GPU_UTIL)
_REPORT_FLAG_MASK = 0xFFFF


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
    """One sample of a report, proven into its ``samplesRoot`` (OpenZeppelin standard tree proof)."""

    index: int
    sample: Sample
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A report, its 65-byte signature, and either its raw samples or spot-check proofs (or neither)."""

    report: MeteringReport
    signature: bytes
    samples: tuple[Sample, ...] | None = None
    proofs: tuple[SampleProof, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    """Tolerances of the physics checks (basis points unless said otherwise)."""

    energy_tolerance_bps: int = 1_000  # |Δcounter − Σ power·Δt| ≤ 10 % of the larger + half a period at
    energy_floor_mj: int = 2_000  # the node's max power + 2 J, per GPU and window
    busy_tolerance_bps: int = 500
    power_margin_bps: int = 1_000  # a power reading may exceed the declared max by 10 % (transients)
    energy_cap_margin_bps: int = 500  # cumulative energy cap margin: LeaseEscrow's ENERGY_MARGIN_BPS
    idle_util_bps: int = 8_000  # mean utilization at or above 80 % ...
    idle_power_bps: int = 1_500  # ... with mean power below 15 % of the max is flagged
    gap_tolerance_ms: int | None = None  # None: ledger.protocol.metering's default (half a period)


DEFAULT_POLICY = AuditPolicy()


@dataclass(frozen=True, slots=True)
class AuditInput:
    terms: LeaseTerms
    reports: tuple[SignedReport, ...]  # in the order the source published them
    settlements: tuple[Settlement, ...] = ()
    money: LeaseMoney | None = None


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

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIP"
        if self.warning:
            return "WARN"
        return "PASS" if self.ok else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ok": self.ok,
            "status": self.status,
            "detail": self.detail,
            "reportSeq": self.report_seq,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    leaseId: int
    results: tuple[CheckResult, ...]
    reports: int
    settlements: int
    samples: int  # raw samples rebuilt (or proven, in spot-check mode)
    spot_check_k: int | None = None

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips do not fail a verdict)."""
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    def failed(self) -> set[tuple[str, int | None]]:
        """``{(check, report_seq)}`` of the failures: what a test asserts."""
        return {(r.check, r.report_seq) for r in self.results if not r.ok}

    def to_json(self) -> dict[str, Any]:
        return {
            "leaseId": self.leaseId,
            "ok": self.ok,
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

    def ok(self, check: str) -> None:
        self.passed[check] = self.passed.get(check, 0) + 1

    def fail(self, check: str, detail: str, seq: int | None = None) -> None:
        warn = check in WARNING_CHECKS
        self.failures.setdefault(check, []).append(CheckResult(check, warn, detail, seq, warning=warn))

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
                out.append(CheckResult(name, True, f"{n} {units.get(name, 'reports')} verified"))
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
    "physics.energy": "GPU-windows",
    "physics.idle_busy": "GPU-windows",
}


# --- the audit ----------------------------------------------------------------------------------------


Aggregator = Callable[..., WindowFigures]
Progress = Callable[[int, int], None]


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
    proofs instead of all samples; the checks that need every sample (aggregates, physics) are then
    skipped. A report that carries its full samples is always checked in full. ``progress(done, total)``
    is called after each report.
    """
    terms = inp.terms
    col = _Collector()
    dom = domain_separator(terms.chainId, terms.escrow)

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
            col.fail("chain.seq", f"seq {r.seq}: {what}", r.seq)
        else:
            by_seq[r.seq] = (sr, h)

    # 2. per seq, in chain order: continuity, windows, counters, samples.
    seqs = sorted(by_seq)
    total = len(seqs)
    baseline: Mapping[int, int] | None = {}  # energy baseline carried by ledger.protocol.metering (None: unknown)
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
        prev_r = prev[0].report if prev is not None else None
        _check_window(col, terms, policy, r, prev_r)
        _check_cumulative(col, r, prev_r, first=(s == 1))
        baseline, n_samples = _check_samples(
            col, terms, policy, aggregate, sr, baseline if (s == 1 or prev is not None) else None, spot_check_k
        )
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
    )


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


def _check_window(
    col: _Collector, terms: LeaseTerms, policy: AuditPolicy, r: MeteringReport, prev: MeteringReport | None
) -> None:
    s = r.seq
    bad = []
    if r.windowEndMs <= r.windowStartMs:
        bad.append(f"window ({r.windowStartMs}, {r.windowEndMs}] is empty")
    if r.windowStartMs < terms.startMs:
        bad.append(f"starts at {r.windowStartMs}, before the lease ({terms.startMs})")
    if r.windowEndMs > terms.endMs:
        bad.append(f"ends at {r.windowEndMs}, after the lease ({terms.endMs})")
    col.check("window.bounds", not bad, "; ".join(bad), s)
    if prev is not None:
        col.check(
            "window.overlap",
            r.windowStartMs >= prev.windowEndMs,
            f"starts at {r.windowStartMs}, before report {prev.seq} ended ({prev.windowEndMs})",
            s,
        )
    g = terms.gpuCount
    span = max(0, r.windowEndMs - r.windowStartMs)
    elapsed = max(0, r.windowEndMs - terms.startMs)
    cap_mj = terms.maxPowerMwPerGpu * g * elapsed * (10_000 + policy.energy_cap_margin_bps) // 10_000_000
    over = []
    if r.allocatedMs > g * span:
        over.append(f"allocatedMs {r.allocatedMs} > {g} GPUs × {span} ms")
    if r.busyMs > r.allocatedMs:
        over.append(f"busyMs {r.busyMs} > allocatedMs {r.allocatedMs}")
    if r.cumAllocatedMs > g * elapsed:
        over.append(f"cumAllocatedMs {r.cumAllocatedMs} > {g} GPUs × {elapsed} ms since lease start")
    if r.cumBusyMs > g * elapsed:
        over.append(f"cumBusyMs {r.cumBusyMs} > {g} GPUs × {elapsed} ms since lease start")
    if r.cumEnergyMj > cap_mj:
        over.append(f"cumEnergyMj {r.cumEnergyMj} > max power cap {cap_mj} mJ")
    col.check("window.capacity", not over, "; ".join(over), s)


def _check_cumulative(col: _Collector, r: MeteringReport, prev: MeteringReport | None, *, first: bool) -> None:
    if first:
        base = (0, 0, 0)
    elif prev is not None:
        base = (prev.cumBusyMs, prev.cumEnergyMj, prev.cumAllocatedMs)
    else:
        return  # the previous report is missing: chain.seq names it, the running sum cannot be formed
    want = (base[0] + r.busyMs, base[1] + r.energyMj, base[2] + r.allocatedMs)
    got = (r.cumBusyMs, r.cumEnergyMj, r.cumAllocatedMs)
    names = ("cumBusyMs", "cumEnergyMj", "cumAllocatedMs")
    bad = [f"{nm} {g} ≠ running sum {w}" for nm, g, w in zip(names, got, want) if g != w]
    col.check("cumulative", not bad, "; ".join(bad), r.seq)


def _check_samples(
    col: _Collector,
    terms: LeaseTerms,
    policy: AuditPolicy,
    aggregate: Aggregator,
    sr: SignedReport,
    baseline: Mapping[int, int] | None,
    spot_check_k: int | None,
) -> tuple[Mapping[int, int] | None, int]:
    """Samples of one report; returns the energy baseline for the next report (None: unknown)."""
    r = sr.report
    s = r.seq
    if sr.samples is None:
        if spot_check_k is None:
            col.fail("samples.root", "raw samples not available", s)
            return None, 0
        return None, _check_spot(col, terms, policy, sr, spot_check_k)

    samples = sr.samples
    if len(samples) != r.sampleCount:
        col.fail("samples.root", f"{len(samples)} samples, report commits to {r.sampleCount}", s)
        return None, len(samples)
    try:
        root = samples_root(samples)
    except ProtocolError as e:
        col.fail("samples.root", f"a sample does not fit the leaf type: {e}", s)
        return None, len(samples)
    if root != r.samplesRoot:
        col.fail(
            "samples.root", f"rebuilt root 0x{root.hex()[:16]}… ≠ samplesRoot 0x{r.samplesRoot.hex()[:16]}…", s
        )
        return None, len(samples)  # these are not the committed samples: nothing below would mean anything
    col.ok("samples.root")
    if spot_check_k is not None:
        col.skip("samples.spot_check", "full samples were available")

    if not _check_sentinels(col, samples, s):
        return None, len(samples)
    sane = _check_sanity(col, terms, r, samples)
    try:
        figures = aggregate(
            samples,
            r.windowStartMs,
            r.windowEndMs,
            terms.samplePeriodMs,
            gap_tolerance_ms=policy.gap_tolerance_ms,
            lease_start_ms=terms.startMs,
            lease_end_ms=terms.endMs,
            energy_baseline=baseline or {},
            gpu_indices=terms.gpuIndices,
        )
    except MeteringError as e:
        if sane:  # the sanity check should have named it; never let a malformed window pass silently
            col.fail("samples.sanity", str(e), s)
        return None, len(samples)
    if not sane:
        return None, len(samples)

    _check_flags(col, r, figures)
    got = {"busyMs": r.busyMs, "allocatedMs": r.allocatedMs, "maxMemUsedMiB": r.maxMemUsedMiB, "energyMj": r.energyMj}
    want = {
        "busyMs": figures.busyMs,
        "allocatedMs": figures.allocatedMs,
        "maxMemUsedMiB": figures.maxMemUsedMiB,
        "energyMj": figures.energyMj,
    }
    if baseline is None:  # the previous report is unknown: its last energy reading is the baseline
        del got["energyMj"], want["energyMj"]
    bad = [f"{k} {got[k]} ≠ {want[k]} from samples" for k in got if got[k] != want[k]]
    col.check("aggregates", not bad, "; ".join(bad), s)
    _check_physics(col, terms, policy, r, samples)
    return figures.energy_baseline, len(samples)


def _check_spot(col: _Collector, terms: LeaseTerms, policy: AuditPolicy, sr: SignedReport, k: int) -> int:
    r = sr.report
    s = r.seq
    need = min(k, r.sampleCount)
    bad: list[str] = []
    proven: dict[bytes, Sample] = {}
    for p in sr.proofs:
        try:
            leaf = sample_leaf(p.sample)
        except ProtocolError as e:
            bad.append(f"sample {p.index}: {e}")
            continue
        if p.index >= r.sampleCount:
            bad.append(f"sample index {p.index} ≥ sampleCount {r.sampleCount}")
        elif not verify_proof(r.samplesRoot, leaf, p.proof):
            bad.append(f"sample {p.index}: proof does not lead to samplesRoot")
        else:
            proven[leaf] = p.sample
    if not bad and len(proven) < need:
        bad.append(f"{len(proven)} distinct samples proven, {need} asked")
    col.check("samples.spot_check", not bad, "; ".join(bad), s)
    for name in ("aggregates", "physics.energy", "physics.busy", "samples.gaps", "samples.energy_monotonic"):
        col.skip(name, f"spot check of {k} samples per report: needs every sample")
    if proven:
        samples = tuple(proven.values())
        if _check_sentinels(col, samples, s):
            _check_sanity(col, terms, r, samples, partial=True)
            _check_power_cap(col, terms, policy, r, samples)
    return len(proven)


def _check_sentinels(col: _Collector, samples: Sequence[Sample], seq: int) -> bool:
    for i, smp in enumerate(samples):
        if (  # the common case in one expression; the loop below only names the field
            smp.powerMw == _U32_MAX
            or smp.memUsedMiB == _U32_MAX
            or smp.gpuUtilBps == _U16_MAX
            or smp.memUtilBps == _U16_MAX
            or smp.energyMj == _U64_MAX
            or smp.tsMs == _U64_MAX
        ):
            for name, sentinel in _SENTINELS:
                if getattr(smp, name) == sentinel:
                    col.fail("samples.sentinel", f"sample {i} (GPU {smp.gpuIndex}): {name} = {sentinel:#x}", seq)
                    return False
    col.ok("samples.sentinel")
    return True


def _check_sanity(
    col: _Collector, terms: LeaseTerms, r: MeteringReport, samples: Sequence[Sample], *, partial: bool = False
) -> bool:
    bad: list[str] = []
    lo, hi = r.windowStartMs, r.windowEndMs
    allowed = None if terms.gpuIndices is None else frozenset(terms.gpuIndices)
    last_ts: dict[int, int] = {}
    gpus: set[int] = set()
    for i, smp in enumerate(samples):
        g = smp.gpuIndex
        gpus.add(g)
        if not lo < smp.tsMs <= hi:
            bad.append(f"sample {i} at {smp.tsMs} outside window ({lo}, {hi}]")
        if allowed is not None and g not in allowed:
            bad.append(f"sample {i} on GPU {g}, not one of the lease's {sorted(allowed)}")
        if not partial:
            t = last_ts.get(g)
            if t is not None and smp.tsMs <= t:
                bad.append(f"sample {i}: GPU {g} timestamps not increasing ({t} then {smp.tsMs})")
            last_ts[g] = smp.tsMs
        if smp.gpuUtilBps > 10_000 or smp.memUtilBps > 10_000:
            bad.append(f"sample {i}: utilization above 10000 bps")
        report_bits = smp.flags & _REPORT_FLAG_MASK
        if report_bits & ~r.flags:
            bad.append(f"sample {i} flags {report_bits:#x} not carried by the report's flags {r.flags:#x}")
        if smp.flags & ~_REPORT_FLAG_MASK and not smp.flags & ReportFlag.FIELD_NOT_SUPPORTED:
            bad.append(f"sample {i} marks a missing field without FIELD_NOT_SUPPORTED")
        if len(bad) >= 3:
            break
    if allowed is None and len(gpus) > terms.gpuCount:
        bad.append(f"samples from {len(gpus)} GPUs, lease has {terms.gpuCount}")
    return col.check("samples.sanity", not bad, "; ".join(bad), r.seq)


def _check_flags(col: _Collector, r: MeteringReport, figures: WindowFigures) -> None:
    s = r.seq
    need_gap = bool(figures.flags & ReportFlag.SAMPLE_GAP)
    col.check(
        "samples.gaps",
        not need_gap or bool(r.flags & ReportFlag.SAMPLE_GAP),
        "samples have a gap longer than period + tolerance but the report is not flagged SAMPLE_GAP",
        s,
    )
    need_reset = bool(figures.flags & ReportFlag.ENERGY_RESET)
    col.check(
        "samples.energy_monotonic",
        not need_reset or bool(r.flags & ReportFlag.ENERGY_RESET),
        "the energy counter decreases but the report is not flagged ENERGY_RESET",
        s,
    )


def _by_gpu(samples: Iterable[Sample]) -> dict[int, list[Sample]]:
    out: dict[int, list[Sample]] = {}
    for smp in samples:
        out.setdefault(smp.gpuIndex, []).append(smp)
    for rows in out.values():
        rows.sort(key=lambda x: x.tsMs)
    return out


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


def _check_physics(
    col: _Collector, terms: LeaseTerms, policy: AuditPolicy, r: MeteringReport, samples: Sequence[Sample]
) -> None:
    """Energy, busy time and idle power against each other, per GPU.

    NVML's power reading is the average over roughly the last second and a utilization reading is the busy
    fraction of the last sample period, so a reading describes the interval since the previous one (the
    rule ``ledger.protocol.metering`` bills by): Σ power·Δt over consecutive readings should match the energy
    counter's growth, and Σ utilization·Δt the busy time. A reading that is instantaneous instead is off by
    at most half a period at full power: that, plus a relative tolerance, is the allowed slack.
    """
    s = r.seq
    _check_power_cap(col, terms, policy, r, samples)
    util_integral = 0  # bps·ms over consecutive valid utilization readings
    util_span = 0
    max_mw = terms.maxPowerMwPerGpu
    period = terms.samplePeriodMs
    max_dt = period + (period // 2 if policy.gap_tolerance_ms is None else policy.gap_tolerance_ms)
    for gpu, rows in _by_gpu(samples).items():
        counter = 0  # mJ, Σ counter growth between valid consecutive readings
        integral = 0  # mW·ms = µJ, Σ power·Δt over the same intervals
        pairs = 0
        w_util = w_power = w_span = 0
        for a, b in zip(rows, rows[1:]):
            dt = b.tsMs - a.tsMs
            if dt <= 0:
                continue
            util_ok = not b.flags & _UTIL_INVALID
            if dt > max_dt:  # a gap: nothing was measured in it; the later reading vouches for one period
                if util_ok:
                    util_integral += b.gpuUtilBps * period
                    util_span += period
                continue
            if util_ok:
                util_integral += b.gpuUtilBps * dt
                util_span += dt
            if not b.flags & _POWER_INVALID:
                p = b.powerMw * dt
                if util_ok:
                    w_util += b.gpuUtilBps * dt
                    w_power += p
                    w_span += dt
                if not (a.flags | b.flags) & _ENERGY_INVALID and b.energyMj >= a.energyMj:
                    counter += b.energyMj - a.energyMj
                    integral += p
                    pairs += 1
        if pairs:
            integral_mj = integral // 1000
            slack = (
                max(counter, integral_mj) * policy.energy_tolerance_bps // 10_000
                + max_mw * period // 2000
                + policy.energy_floor_mj
            )
            col.check(
                "physics.energy",
                abs(counter - integral_mj) <= slack,
                f"GPU {gpu}: energy counter rose {counter} mJ, power integrates to {integral_mj} mJ "
                f"(tolerance {slack} mJ)",
                s,
            )
        if w_span:
            mean_util = w_util // w_span
            mean_mw = w_power // w_span
            col.check(
                "physics.idle_busy",
                not (mean_util >= policy.idle_util_bps and mean_mw * 10_000 < max_mw * policy.idle_power_bps),
                f"GPU {gpu}: mean utilization {mean_util} bps at mean power {mean_mw} mW "
                f"(< {policy.idle_power_bps} bps of {max_mw} mW)",
                s,
            )
    if util_span:
        # The metering rule also counts each GPU's first reading of the window (back to the window start),
        # which has no earlier reading to pair with here: one period per GPU, plus the relative tolerance.
        est = util_integral // 10_000
        slack = est * policy.busy_tolerance_bps // 10_000 + 2 * period * max(1, terms.gpuCount)
        col.check(
            "physics.busy",
            abs(r.busyMs - est) <= slack,
            f"busyMs {r.busyMs} vs utilization integral {est} ms (tolerance {slack} ms)",
            s,
        )


def billable_of(mode: BillingMode, r: MeteringReport) -> int:
    """Cumulative billable GPU-ms of a report under the lease's billing mode (``economics.billable``)."""
    return billable(mode, busy_ms=r.cumBusyMs, allocated_ms=r.cumAllocatedMs)


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
            billable = billable_of(mode, r)
            delta = billable - last_billable
            since = prev.windowEndMs if prev is not None else terms.startMs
            room = terms.gpuCount * max(0, st.windowEndMs - since)
            bad = []
            if chain_delta != delta:
                bad.append(
                    f"the chain billed {chain_delta} GPU-ms (ckpt {chain_billable} − {chain_last}), "
                    f"the reports {delta} ({billable} − {last_billable})"
                )
            if not 0 <= chain_delta <= room:
                bad.append(
                    f"{chain_delta} GPU-ms billed for {st.windowEndMs - since} ms since the previous checkpoint on "
                    f"{terms.gpuCount} GPUs (at most {room})"
                )
            col.check("settlement.billable", not bad, "; ".join(bad), s)
            want = charge_for(terms.pricePerGpuSecond, billable, last_billable)
            if escrowed is not None:
                want = min(want, max(0, escrowed - charged_total))
            col.check(
                "settlement.charge",
                st.charged == want,
                f"charged {st.charged} ≠ {want} (price {terms.pricePerGpuSecond}/GPU-s × {delta} GPU-ms / 1000"
                + (f", capped by {escrowed - charged_total} left in escrow)" if escrowed is not None else ")"),
                s,
            )
            last_billable = billable
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
        ("windowEndMs", st.windowEndMs, r.windowEndMs),
    )
    bad = [f"ckpt {name} {got} ≠ report's {want}" for name, got, want in pairs if got != want]
    if st.settledAt * 1000 < st.windowEndMs:
        bad.append(f"settled at {st.settledAt * 1000} ms, before the window ended ({st.windowEndMs})")
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


__all__ = [
    "CHECKS",
    "AttestorPeriod",
    "AuditError",
    "AuditInput",
    "AuditPolicy",
    "BillingMode",
    "CheckResult",
    "LeaseMoney",
    "LeaseTerms",
    "SampleProof",
    "Settlement",
    "SignedReport",
    "TopUp",
    "Verdict",
    "attestor_at",
    "billable_of",
    "charge_for",
    "pick_spot_indices",
    "verify_lease",
    "verify_leases",
]
