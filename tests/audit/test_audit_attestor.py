"""The auditor against the real attestor: the daemon (attestor.daemon.Attestor) meters leases of a simulated
H200 node (attestor.simdriver, read through attestor.nvml.NvmlSource) on a manual clock, commits and sends
its reports; the auditor verifies what it sent. Every load profile passes every check without a warning,
and so do the faults the attestor flags (a restart's downtime, a driver reload resetting the energy
counter, a utilization buffer read too late, a GPU falling off the bus, GPUs without GPM or without a
utilization buffer). A lie in the reports is still caught."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from attestor.bridge import LeaseInfo, StaticLeases, SubmitOutcome
from attestor.daemon import Attestor
from attestor.keys import Signer
from attestor.meter import ReportBuilder, SamplingPolicy
from attestor.nvml import NvmlSource
from attestor.simdriver import (
    H200_TDP_MW,
    T0_US,
    DutyCycle,
    Full,
    Idle,
    ManualClock,
    SimulatedNvml,
    TinyKernels,
    Workload,
    h200,
)
from attestor.spool import Spool, SpooledReport
from auditor.core import AttestorPeriod, AuditInput, BillingMode, LeaseTerms, SignedReport, Verdict, verify_lease
from ledger.protocol import MeteringReport, ReportFlag, Sample, gpu_set_hash, gpu_uuid_hash, report_struct_hash
from tests.audit.fakegpu import ATTESTOR_KEY, CHAIN_ID, ESCROW, relink

T0 = T0_US // 1000
SIGNER = Signer(ATTESTOR_KEY)
PERIOD_MS = 2_000
WINDOW_MS = 10_000


def _uuid(i: int) -> str:
    return f"GPU-00000000-0000-4000-8000-{i:012d}"


class Receiver:
    """An in-process bridge: keeps what the attestor sends."""

    def __init__(self) -> None:
        self.stored: dict[tuple[int, int], SpooledReport] = {}

    def submit(self, node_id: int, item: SpooledReport) -> SubmitOutcome:
        self.stored[(item.lease_id, item.seq)] = item
        return SubmitOutcome(True, 201)


@dataclasses.dataclass
class Node:
    clock: ManualClock
    driver: SimulatedNvml
    source: NvmlSource
    rx: Receiver
    tmp: Path
    policy: SamplingPolicy

    def attestor(self, leases: Sequence[LeaseInfo]) -> Attestor:
        src = self.source
        builder = ReportBuilder(
            SIGNER,
            CHAIN_ID,
            ESCROW,
            self.policy,
            driver_version=src.driver_version,
            nvml_version=src.nvml_version,
            simulated=src.simulated,
            util_buffer=not src.needs_polling(),
        )
        return Attestor(
            node_id=1,
            source=src,
            builder=builder,
            spool=Spool(self.tmp / "spool.sqlite"),
            leases=StaticLeases(list(leases)),
            sink_factory=lambda: self.rx,
            clock=self.clock,
        )

    def restart_source(self) -> None:
        self.source.close()
        self.source = NvmlSource([g.uuid for g in self.driver.gpus], nvml=self.driver, clock_us=self.clock)


def _node(tmp: Path, workloads: Sequence[Workload], policy: SamplingPolicy | None = None, **kw: object) -> Node:
    clock = ManualClock()
    gpus = [h200(_uuid(i), w, **kw) for i, w in enumerate(workloads)]  # type: ignore[arg-type]
    driver = SimulatedNvml(gpus, clock_us=clock)
    src = NvmlSource([g.uuid for g in gpus], nvml=driver, clock_us=clock)
    return Node(clock, driver, src, Receiver(), tmp, policy or SamplingPolicy(PERIOD_MS, WINDOW_MS))


def _run_until(att: Attestor, clock: ManualClock, until_ms: int, at: Callable[[int], None] | None = None) -> None:
    """Run the daemon's loop on the manual clock until ``until_ms`` (then it stops gracefully); ``at(now_ms)``
    is called as time passes (fault injection)."""
    stop = threading.Event()
    wait = clock.wait

    def stepping(event: threading.Event, seconds: float) -> bool:
        wait(event, seconds)
        if at is not None:
            at(clock.wall_ms())
        if clock.wall_ms() >= until_ms:
            event.set()
        return event.is_set()

    clock.wait = stepping  # type: ignore[method-assign]
    try:
        att.run(stop)
    finally:
        clock.wait = wait  # type: ignore[method-assign]


def _audit_input(node: Node, lease: LeaseInfo, billing: BillingMode = BillingMode.METERED) -> AuditInput:
    items = [node.rx.stored[k] for k in sorted(node.rx.stored) if k[0] == lease.lease_id]
    reports = tuple(
        SignedReport(
            MeteringReport.from_json(it.report),
            bytes.fromhex(it.signature[2:]),
            tuple(Sample.from_values(v) for v in it.samples),
        )
        for it in items
    )
    terms = LeaseTerms(
        leaseId=lease.lease_id,
        chainId=CHAIN_ID,
        escrow=ESCROW,
        attestors=(AttestorPeriod(SIGNER.address),),
        gpuSetHash=gpu_set_hash(gpu_uuid_hash(_uuid(i)) for i in lease.gpu_indices),
        gpuCount=len(lease.gpu_indices),
        startMs=lease.start_ms,
        endMs=lease.end_ms,
        pricePerGpuSecond=10**9,
        billingMode=billing,
        maxPowerMwPerGpu=H200_TDP_MW,
        samplePeriodMs=node.policy.sample_period_ms,
        gpuIndices=tuple(lease.gpu_indices),
    )
    return AuditInput(terms, reports)


def _assert_clean(v: Verdict) -> None:
    assert v.ok, v.failures
    assert v.warned() == set(), [r for r in v.results if r.warning]


LEASE = LeaseInfo(7, (1, 2), T0 + 3_100, T0 + 63_700)  # starts and ends inside sampling periods


@pytest.mark.parametrize(
    "workloads",
    [
        [Full()] * 4,
        [DutyCycle(on_ms=500, off_ms=500), DutyCycle(on_ms=300, off_ms=1_000), DutyCycle(on_ms=2_000, off_ms=700),
         Idle()],
        [Idle()] * 4,
        [TinyKernels()] * 4,
    ],
    ids=["steady", "bursty", "idle", "tiny"],
)  # fmt: skip
def test_attestor_reports_pass_every_check(tmp_path: Path, workloads: list[Workload]) -> None:
    node = _node(tmp_path, workloads)
    _run_until(node.attestor([LEASE]), node.clock, T0 + 70_000)
    inp = _audit_input(node, LEASE)
    assert len(inp.reports) == 7  # windows close every 10 s from the daemon's start, the last at the lease end
    v = verify_lease(inp)
    _assert_clean(v)
    by = {r.check: r for r in v.results}
    assert by["aggregates"].detail == "7 reports verified"
    assert by["window.contiguity"].detail == "7 reports verified"
    assert by["physics.energy"].detail == "14 energy-reading pairs verified"  # 2 GPUs × 7 windows
    last = inp.reports[-1].report
    assert LEASE.end_ms - 200 < last.windowEndMs <= LEASE.end_ms
    assert inp.reports[0].report.windowStartMs == LEASE.start_ms


def test_attestor_default_policy_over_ten_minutes_passes(tmp_path: Path) -> None:
    """The attestor's own defaults: an 18 s sample period, 180 s windows (over ten minutes: four reports)."""
    node = _node(tmp_path, [DutyCycle(on_ms=5_000, off_ms=3_000), Full()], SamplingPolicy())
    lease = LeaseInfo(3, (0, 1), T0 + 1_000, T0 + 601_000)
    _run_until(node.attestor([lease]), node.clock, T0 + 620_000)
    inp = _audit_input(node, lease, BillingMode.SM_ACTIVE)
    assert len(inp.reports) >= 4
    _assert_clean(verify_lease(inp))


def test_attestor_faults_it_flags_pass(tmp_path: Path) -> None:
    """A driver reload on GPU 1 (energy counter reset), a utilization buffer that wraps before it is read
    (holes until the daemon reads it more often), GPU 2 falling off the bus."""
    node = _node(tmp_path, [Full(), DutyCycle(on_ms=700, off_ms=300), Full()], util_capacity=8)

    def faults(now_ms: int) -> None:
        if now_ms >= T0 + 25_000 and node.driver.gpus[1].energy_mj != 0:
            node.driver.gpus[1].reset_energy(0)
        if now_ms >= T0 + 45_000:
            node.driver.gpus[2].fall_off_bus()

    lease = LeaseInfo(9, (1, 2), T0 + 2_000, T0 + 60_000)
    _run_until(node.attestor([lease]), node.clock, T0 + 65_000, faults)
    inp = _audit_input(node, lease)
    flags = 0
    for sr in inp.reports:
        flags |= sr.report.flags
    assert flags & ReportFlag.ENERGY_RESET and flags & ReportFlag.GPU_LOST and flags & ReportFlag.UTIL_HOLE
    _assert_clean(verify_lease(inp))


def test_attestor_restart_downtime_is_flagged_and_passes(tmp_path: Path) -> None:
    node = _node(tmp_path, [Full(), Full()])
    lease = LeaseInfo(5, (0, 1), T0 - 60_000, T0 + 3_600_000)
    att = node.attestor([lease])
    att.run(threading.Event(), once=True)
    att.close()
    att.spool.close()
    node.clock.advance_ms(30_000)  # down for 30 s: more than the driver's utilization buffer holds
    node.restart_source()
    att2 = node.attestor([lease])
    att2.run(threading.Event(), once=True)
    inp = _audit_input(node, lease)
    assert [sr.report.seq for sr in inp.reports] == [1, 2]
    assert inp.reports[1].report.flags & ReportFlag.SAMPLE_GAP
    _assert_clean(verify_lease(inp))


def test_attestor_without_gpm_or_utilization_buffer_passes(tmp_path: Path) -> None:
    node = _node(tmp_path, [Full(), DutyCycle(on_ms=1_500, off_ms=1_500)], gpm_supported=False,
                 samples_supported=False)  # fmt: skip
    lease = LeaseInfo(4, (0, 1), T0 + 1_000, T0 + 41_000)
    _run_until(node.attestor([lease]), node.clock, T0 + 45_000)
    inp = _audit_input(node, lease, BillingMode.SM_ACTIVE)
    flags = 0
    for sr in inp.reports:
        flags |= sr.report.flags
    assert flags & ReportFlag.NO_GPM and flags & ReportFlag.UTIL_POLLED
    assert inp.reports[-1].report.cumSmActiveMs == 0  # nothing measured, nothing billed on an SM-active lease
    _assert_clean(verify_lease(inp))


def test_attestor_report_claiming_more_busy_time_is_caught(tmp_path: Path) -> None:
    node = _node(tmp_path, [DutyCycle(on_ms=500, off_ms=500)] * 3)
    _run_until(node.attestor([LEASE]), node.clock, T0 + 70_000)
    inp = _audit_input(node, LEASE)
    sr = inp.reports[3]
    lie = sr.report.replace(busyMs=sr.report.busyMs + 2_000, cumBusyMs=sr.report.cumBusyMs + 2_000)
    reports = list(inp.reports)
    reports[3] = SignedReport(lie, sr.signature, sr.samples)
    v = verify_lease(dataclasses.replace(inp, reports=tuple(reports)))
    assert v.failed() == {("signature", 4), ("aggregates", 4), ("chain.prev_hash", 5), ("cumulative", 5)}
    # signed by the attestor's own key and re-linked: only the re-derivation sees it
    signed = relink(reports)
    assert report_struct_hash(signed[3].report) != report_struct_hash(sr.report)
    v2 = verify_lease(dataclasses.replace(inp, reports=tuple(signed)))
    assert v2.failed() == {("aggregates", 4), ("cumulative", 5)}
