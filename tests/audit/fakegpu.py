"""A realistic fake GPU node and a consistent, signed lease built from it (audit fixtures and bench).

The GPUs are the attestor's simulated H200 driver (:mod:`attestor.simdriver`: a time-driven model with exact
ground truth: 200 ms utilization samples, 20 ms power samples, an exact energy counter, GPM), read through
the attestor's own :class:`attestor.nvml.NvmlSource` and :class:`attestor.sampler.Sampler` on a manual
clock, so every sample is what the attestor really produces: per GPU, intervals that follow the driver's
timeline without overlapping, busy time from the utilization buffer, SM activity from GPM, the energy
counter read only where the daemon reads it.

Windows follow :mod:`attestor.daemon`'s rules: a collect every sample period (the first a quarter second
after the lease's start), the energy counter read at that first collect and at every window close, a window
ending at its newest sample, the first one starting at max(lease start, the earliest interval start of its
samples), each next one at the previous end; when the lease's end is reached, its intervals are cut at the
last driver sample at or before it. Reports are built with ``ledger.protocol.metering.aggregate_window``
(carrying the energy baseline and the sample ends) and signed with ``ledger.protocol``; the chain's
checkpoints are computed by the escrow's rule.

Hooks let a test play a lying attestor: they change samples or report fields *before* signing, so the
signature and hash chain stay valid and only the semantic checks can catch the lie. ``on_collect`` injects
faults into the driver (or skips a collect: the attestor was down).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from attestor.nvml import NvmlSource
from attestor.sampler import Sampler
from attestor.simdriver import H200_IDLE_MW, H200_TDP_MW, ManualClock, SimGpu, SimulatedNvml, Workload, profile_workload
from auditor.core import (
    AttestorPeriod,
    AuditInput,
    BillingMode,
    LeaseMoney,
    LeaseTerms,
    Settlement,
    SignedReport,
    TopUp,
    billable_of,
    charge_for,
)
from ledger.chain.signing import address_of, sign_digest
from ledger.protocol import (
    ZERO_HASH,
    MeteringReport,
    Sample,
    config_hash,
    gpu_set_hash,
    gpu_uuid_hash,
    report_digest,
    report_struct_hash,
    samples_root,
)
from ledger.protocol.metering import WindowFigures, aggregate_window
from ledger.protocol.samples import SampleField

ATTESTOR_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
OTHER_KEY = bytes.fromhex("8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f")
CHAIN_ID = 31337
ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LEASE_START_MS = 1_764_000_000_000
IDLE_MW = H200_IDLE_MW
MAX_MW = H200_TDP_MW
_ENERGY_UNREAD = int(SampleField.ENERGY_UNREAD)
BOUNDARY_LAG_MS = 250  # attestor.daemon.BOUNDARY_LAG_MS: the collect at a lease boundary runs this much later

SampleHook = Callable[[int, list[Sample]], list[Sample]]
ReportHook = Callable[[int, dict[str, Any]], dict[str, Any]]
CollectHook = Callable[[int, SimulatedNvml], bool]
"""``on_collect(k, driver)`` before the ``k``-th collect (0: the lease's start): inject faults through the
driver's GPUs; return False to skip the collect (the attestor missed it)."""


def policy_config(period_ms: int, window_ms: int, *, util_buffer: bool = True, gpm: bool = True) -> bytes:
    """The configHash the attestor signs (``attestor.meter.SamplingPolicy.as_dict``, simulated)."""
    policy = {
        "protocol": 2,
        "samplePeriodMs": period_ms,
        "windowMs": window_ms,
        "gapToleranceMs": period_ms // 2,
        "energyRead": 1,
        "utilSource": int(util_buffer),
        "gpm": int(gpm),
        "simulated": 1,
    }
    return config_hash("0.2.0", "sim", "sim", policy)


@dataclass
class FakeLease:
    """The lease as the auditor would fetch it, plus what the fixture knows (keys, the driver's ground truth)."""

    input: AuditInput
    key: bytes
    reports: list[SignedReport] = field(default_factory=list)
    driver: SimulatedNvml | None = None
    figures: list[WindowFigures] = field(default_factory=list)

    def with_reports(self, reports: Sequence[SignedReport]) -> AuditInput:
        return AuditInput(self.input.terms, tuple(reports), self.input.settlements, self.input.money)

    def with_settlements(self, settlements: Sequence[Settlement]) -> AuditInput:
        return AuditInput(self.input.terms, self.input.reports, tuple(settlements), self.input.money)

    def samples(self, seq: int) -> list[Sample]:
        got = self.reports[seq - 1].samples
        assert got is not None
        return list(got)


def fake_node(
    n_gpus: int, workloads: Sequence[Workload] | None, seed: int, clock: ManualClock, **gpu_kw: Any
) -> tuple[NvmlSource, SimulatedNvml]:
    """A node of ``n_gpus`` simulated H200s (``workloads[i]`` or the bursty profile from the seed)."""
    gpus = []
    for i in range(n_gpus):
        work = workloads[i] if workloads is not None and i < len(workloads) else profile_workload("bursty", seed, i)
        kw: dict[str, Any] = {
            "name": "NVIDIA H200",
            "tdp_mw": MAX_MW,
            "idle_mw": IDLE_MW,
            "energy_mj": 1_000_000_000 * (i + 1),
            "mem_used_bytes": (20_000 + 1_000 * i) * 1024 * 1024,
        }
        kw.update(gpu_kw.get(f"gpu{i}", {}))
        kw.update({k: v for k, v in gpu_kw.items() if not k.startswith("gpu")})
        gpus.append(SimGpu(f"GPU-fake-{seed}-{i:04d}", workload=work, **kw))
    driver = SimulatedNvml(gpus, clock_us=clock)
    return NvmlSource([g.uuid for g in gpus], nvml=driver, clock_us=clock, simulated=True), driver


def make_lease(
    n_reports: int = 6,
    *,
    gpus: tuple[int, ...] = (0, 1),
    period_ms: int = 1000,
    samples_per_window: int = 10,
    settle_at: tuple[int, ...] = (2, 4, 6),
    billing: BillingMode = BillingMode.RESERVED,
    price: int = 1_000_000_000,  # wei per GPU-second
    duration_s: int | None = None,
    escrow: int | None = None,
    fee_bps: int = 100,
    closed: bool = False,
    top_ups: tuple[int, ...] = (),
    key: bytes = ATTESTOR_KEY,
    seed: int = 7,
    lease_id: int = 42,
    start_ms: int = LEASE_START_MS,
    chain_id: int = CHAIN_ID,
    escrow_address: str = ESCROW,
    gpu_uuid_hashes: tuple[bytes, ...] | None = None,
    max_mw: int = MAX_MW,
    workloads: Sequence[Workload] | None = None,
    gpu_kw: dict[str, Any] | None = None,
    attestor_from_ms: int | None = None,
    on_collect: CollectHook | None = None,
    sample_hook: SampleHook | None = None,
    report_hook: ReportHook | None = None,
    carry_sample_ends: bool = True,
) -> FakeLease:
    """A consistent lease: ``n_reports`` signed windows of ``samples_per_window`` collects, checkpoints at
    ``settle_at``, money events.

    ``gpus``: the lease's GPUs (indices into the node, which has ``max(gpus) + 1`` GPUs; the others are
    metered for nobody). ``workloads[i]``: what node GPU ``i`` runs (default: bursty, from the seed);
    ``gpu_kw``: SimGpu arguments for every GPU, or for one under ``"gpuN"``. ``attestor_from_ms``: when the
    attestor started reading the GPUs (default one period before the lease). ``gpu_uuid_hashes`` are the
    node's registered GPUs (for the set hash; default fake UUIDs). ``carry_sample_ends=False``: the
    attestor ignores rule 1 across windows (a liar whose intervals may overlap earlier windows).
    """
    window_ms = period_ms * samples_per_window
    duration_s = duration_s if duration_s is not None else n_reports * window_ms // 1000
    end_ms = start_ms + duration_s * 1000
    if gpu_uuid_hashes is None:
        set_hash = gpu_set_hash(gpu_uuid_hash(f"GPU-fake-{g:04d}") for g in gpus)
    else:
        set_hash = gpu_set_hash(gpu_uuid_hashes[g] for g in gpus)
    terms = LeaseTerms(
        leaseId=lease_id,
        chainId=chain_id,
        escrow=escrow_address,
        attestors=(AttestorPeriod(address_of(key)),),
        gpuSetHash=set_hash,
        gpuCount=len(gpus),
        startMs=start_ms,
        endMs=end_ms,
        pricePerGpuSecond=price,
        billingMode=billing,
        maxPowerMwPerGpu=max_mw,
        samplePeriodMs=period_ms,
        gpuIndices=gpus,
    )
    lease_gpus = frozenset(gpus)
    from_ms = start_ms - period_ms if attestor_from_ms is None else attestor_from_ms
    clock = ManualClock(from_ms * 1000)
    src, driver = fake_node(max(gpus) + 1, workloads, seed, clock, **(gpu_kw or {}))
    sampler = Sampler(src)
    config = policy_config(period_ms, window_ms, util_buffer=not src.needs_polling())

    reports: list[SignedReport] = []
    figures: list[WindowFigures] = []
    prev_hash = ZERO_HASH
    baseline: dict[int, int] = {}
    ends: dict[int, int] = {}
    cum = {"cumBusyMs": 0, "cumEnergyMj": 0, "cumAllocatedMs": 0, "cumSmActiveMs": 0}
    window_start: int | None = None
    pending: list[Sample] = []
    last_poll = clock.wall_ms()

    def close() -> None:
        nonlocal window_start, pending, prev_hash, baseline, ends
        if not pending or window_start is None:
            return
        seq = len(reports) + 1
        rows = sorted(pending, key=lambda x: (x.tsMs, x.gpuIndex))
        ws, we = window_start, max(x.tsMs for x in rows)
        if sample_hook is not None:
            rows = sample_hook(seq, list(rows))
        fig = aggregate_window(
            rows,
            ws,
            we,
            period_ms,
            lease_start_ms=start_ms,
            lease_end_ms=end_ms,
            energy_baseline=baseline,
            sample_ends=ends if carry_sample_ends else {},
            gpu_indices=gpus,
        )
        baseline, ends = dict(fig.energy_baseline), dict(fig.sample_ends)
        for name, part in (
            ("cumBusyMs", fig.busyMs),
            ("cumEnergyMj", fig.energyMj),
            ("cumAllocatedMs", fig.allocatedMs),
            ("cumSmActiveMs", fig.smActiveMs),
        ):
            cum[name] += part
        fields_: dict[str, Any] = dict(
            leaseId=lease_id,
            seq=seq,
            prevReportHash=prev_hash,
            windowEndMs=we,
            **cum,
            windowStartMs=ws,
            gpuSetHash=set_hash,
            busyMs=fig.busyMs,
            smActiveMs=fig.smActiveMs,
            tensorActiveMs=fig.tensorActiveMs,
            energyMj=fig.energyMj,
            allocatedMs=fig.allocatedMs,
            maxMemUsedMiB=fig.maxMemUsedMiB,
            sampleCount=len(rows),
            samplesRoot=samples_root(rows),
            flags=fig.flags,
            configHash=config,
        )
        if report_hook is not None:
            fields_ = report_hook(seq, fields_)
        report = MeteringReport(**fields_)
        prev_hash = report_struct_hash(report)
        sig = sign_digest(report_digest(report, chain_id, escrow_address), key)
        reports.append(SignedReport(report, sig, tuple(rows)))
        figures.append(fig)
        window_start, pending = we, []

    k = 0
    anchored = False  # every lease GPU has had its energy counter read in the lease (the daemon reads it then)
    while len(reports) < n_reports:
        at = start_ms + BOUNDARY_LAG_MS + k * period_ms
        at_end = at - BOUNDARY_LAG_MS >= end_ms
        if at_end:
            at = end_ms + BOUNDARY_LAG_MS
        closing = at_end or (k > 0 and k % samples_per_window == 0)
        if at <= from_ms:  # the attestor was not running yet
            k += 1
            continue
        if src.needs_polling():  # no utilization buffer: util.gpu is polled every second
            while last_poll + 1000 <= at:
                last_poll += 1000
                clock.set_us(last_poll * 1000)
                src.poll()
        clock.set_us(at * 1000)
        if on_collect is None or on_collect(k, driver):
            got = sampler.collect(read_energy=not anchored or closing, until_ms=end_ms if at_end else None)
            rows = [x for x in got if x.gpuIndex in lease_gpus and start_ms < x.tsMs <= end_ms]
            anchored = anchored or lease_gpus <= {x.gpuIndex for x in rows if not x.flags & _ENERGY_UNREAD}
            if window_start is not None:
                rows = [x for x in rows if x.tsMs > window_start]
            if rows and window_start is None:
                window_start = max(start_ms, min(x.tsMs - x.intervalMs for x in rows))
            pending += rows
        if closing:
            close()
        if at_end:
            break
        k += 1

    escrow_amount = escrow if escrow is not None else price * len(gpus) * duration_s
    fee = escrow_amount * fee_bps // 10_000
    tops = tuple(TopUp(a, a * fee_bps // 10_000, (1, i)) for i, a in enumerate(top_ups))  # before any checkpoint
    escrowed = escrow_amount + sum(top_ups)
    settlements: list[Settlement] = []
    charged_total = 0
    last_billable = 0
    for block, seq in enumerate(settle_at, start=10):
        r = reports[seq - 1].report
        billable = billable_of(billing, r)
        charged = min(charge_for(price, billable, last_billable), escrowed - charged_total)
        settlements.append(  # the record the escrow writes: the report's counters in the new ckpt word
            Settlement(
                seq=seq,
                reportHash=report_struct_hash(r),
                charged=charged,
                cumBusyMs=r.cumBusyMs,
                cumAllocatedMs=r.cumAllocatedMs,
                cumEnergyMj=r.cumEnergyMj,
                cumSmActiveMs=r.cumSmActiveMs,
                settledAt=r.windowEndMs // 1000 + 2,  # a block a little after the window ended
                order=(block, 0, 0),
            )
        )
        charged_total += charged
        last_billable = billable
    refund = escrowed - charged_total if closed else 0
    fee_in = fee + sum(t.fee for t in tops)
    fee_kept = charged_total * fee_bps // 10_000 if closed else None  # treasury keeps the fee on what was earned
    money = LeaseMoney(
        escrow=escrow_amount,
        fee=fee,
        topUps=tops,
        closed=closed,
        refund=refund,
        closedCharged=charged_total if closed else None,
        feeKept=fee_kept,
        feeRefund=fee_in - fee_kept if fee_kept is not None else 0,
    )
    inp = AuditInput(terms, tuple(reports), tuple(settlements), money)
    return FakeLease(inp, key, reports, driver, figures)


def resign(report: MeteringReport, key: bytes = ATTESTOR_KEY) -> bytes:
    return sign_digest(report_digest(report, CHAIN_ID, ESCROW), key)


def relink(reports: Sequence[SignedReport], key: bytes = ATTESTOR_KEY) -> list[SignedReport]:
    """Re-sign ``reports`` after some were changed, re-linking the hash chain behind them (as the attestor
    would sign a chain of lies)."""
    out: list[SignedReport] = []
    prev = ZERO_HASH
    for sr in reports:
        r = sr.report.replace(prevReportHash=prev)
        out.append(SignedReport(r, resign(r, key), sr.samples))
        prev = report_struct_hash(r)
    return out
