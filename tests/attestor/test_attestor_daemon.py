"""The attestor loop in process, over the simulated driver on one manual clock: windows, lease boundaries,
restarts, buffer holes, missing figures, metrics."""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from fake_pynvml import NOT_SUPPORTED, FakeGpu, FakeNvml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import attestor
from attestor.bridge import LeaseInfo, StaticLeases, SubmitOutcome
from attestor.daemon import Attestor
from attestor.keys import Signer
from attestor.meter import ReportBuilder, SamplingPolicy
from attestor.metrics import Metrics
from attestor.nvml import NvmlSource
from attestor.simdriver import T0_US, DutyCycle, Full, Idle, ManualClock, TinyKernels, Workload, h200
from attestor.source import GpuCapabilities, GpuInterval, GpuSource
from attestor.spool import Spool, SpooledReport
from ledger.protocol import (
    ZERO_HASH,
    MeteringReport,
    ReportFlag,
    Sample,
    config_hash,
    gpu_set_hash,
    gpu_uuid_hash,
    recover_signer,
    report_digest,
    report_struct_hash,
    samples_root,
)
from ledger.protocol.metering import aggregate_window
from ledger.protocol.samples import SampleField

T0 = T0_US // 1000
ESCROW = "0x5FbDB2315678afecb367f032d315f642f64180aa"
SIGNER = Signer(b"\x07" * 32)
HOUR = 3_600_000


def _uuid(i: int) -> str:
    return f"GPU-00000000-0000-4000-8000-{i:012d}"


class Receiver:
    """An in-process bridge: keeps accepted reports, answers duplicates with 200."""

    def __init__(self) -> None:
        self.stored: dict[tuple[int, int], SpooledReport] = {}
        self.posts = 0

    def submit(self, node_id: int, item: SpooledReport) -> SubmitOutcome:
        self.posts += 1
        key = (item.lease_id, item.seq)
        if key in self.stored:
            assert self.stored[key].report_hash == item.report_hash
            return SubmitOutcome(True, 200, duplicate=True)
        self.stored[key] = item
        return SubmitOutcome(True, 201)


def _node(clock: ManualClock, workloads: Sequence[Workload], **kw: object) -> tuple[NvmlSource, FakeNvml]:
    gpus = [h200(_uuid(i), w, **kw) for i, w in enumerate(workloads)]  # type: ignore[arg-type]
    driver = FakeNvml(gpus, clock_us=clock)
    return NvmlSource([g.uuid for g in gpus], nvml=driver, clock_us=clock), driver


def _attestor(
    tmp_path: Path,
    source: GpuSource,
    leases: list[LeaseInfo],
    clock: ManualClock,
    receiver: Receiver,
    period: int = 2_000,
    window: int = 10_000,
    metrics: Metrics | None = None,
) -> Attestor:
    builder = ReportBuilder(
        SIGNER,
        31337,
        ESCROW,
        SamplingPolicy(period, window),
        driver_version=source.driver_version,
        nvml_version=source.nvml_version,
        simulated=source.simulated,
        util_buffer=not source.needs_polling(),
    )
    return Attestor(
        node_id=1,
        source=source,
        builder=builder,
        spool=Spool(tmp_path / "spool.sqlite"),
        leases=StaticLeases(leases),
        sink_factory=lambda: receiver,
        clock=clock,
        metrics=metrics,
    )


def _check_report(
    item: SpooledReport,
    uuids: list[str],
    gpu_indices: list[int],
    lease: LeaseInfo,
    period: int = 2_000,
    baseline: dict[int, int] | None = None,
    ends: dict[int, int] | None = None,
) -> tuple[MeteringReport, list[Sample]]:
    """Signature, hash, root, and the window figures re-derived by the protocol's rule."""
    r = MeteringReport.from_json(item.report)
    samples = [Sample.from_values(v) for v in item.samples]
    assert recover_signer(report_digest(r, 31337, ESCROW), bytes.fromhex(item.signature[2:])) == SIGNER.address
    assert item.report_hash == "0x" + report_struct_hash(r).hex()
    assert r.samplesRoot == samples_root(samples) and r.sampleCount == len(samples)
    assert r.gpuSetHash == gpu_set_hash(gpu_uuid_hash(uuids[i]) for i in gpu_indices)
    assert [(s.tsMs, s.gpuIndex) for s in samples] == sorted((s.tsMs, s.gpuIndex) for s in samples)  # order rule
    assert r.windowEndMs == max(s.tsMs for s in samples) <= lease.end_ms
    f = aggregate_window(
        samples,
        r.windowStartMs,
        r.windowEndMs,
        period,
        lease_start_ms=lease.start_ms,
        lease_end_ms=lease.end_ms,
        energy_baseline=baseline,
        sample_ends=ends,
        gpu_indices=gpu_indices,
    )
    assert (r.busyMs, r.allocatedMs, r.smActiveMs, r.tensorActiveMs, r.energyMj, r.maxMemUsedMiB) == (
        f.busyMs,
        f.allocatedMs,
        f.smActiveMs,
        f.tensorActiveMs,
        f.energyMj,
        f.maxMemUsedMiB,
    )
    assert r.flags & f.flags == f.flags
    return r, samples


def _run_until(att: Attestor, clock: ManualClock, until_ms: int) -> None:
    """Run the loop on the manual clock until its wall time passes ``until_ms`` (then stop gracefully)."""
    stop = threading.Event()
    wait = clock.wait

    def stepping(event: threading.Event, seconds: float) -> bool:
        wait(event, seconds)
        if clock.wall_ms() >= until_ms:
            event.set()
        return event.is_set()

    clock.wait = stepping  # type: ignore[method-assign]
    try:
        att.run(stop)
    finally:
        clock.wait = wait  # type: ignore[method-assign]


def test_daemon_once_builds_one_signed_window_per_lease(tmp_path: Path) -> None:
    clock, rx = ManualClock(), Receiver()
    src, _ = _node(clock, [Full(), Full(), Idle(), Full()])
    uuids = list(src.uuids)
    leases = [LeaseInfo(7, (0, 1), T0 - 60_000, T0 + HOUR), LeaseInfo(8, (3,), T0 - 60_000, T0 + HOUR)]
    att = _attestor(tmp_path, src, leases, clock, rx)
    assert att.run(threading.Event(), once=True) == 0
    assert sorted(rx.stored) == [(7, 1), (8, 1)]
    r7, s7 = _check_report(rx.stored[(7, 1)], uuids, [0, 1], leases[0])
    r8, s8 = _check_report(rx.stored[(8, 1)], uuids, [3], leases[1])
    assert {s.gpuIndex for s in s7} == {0, 1} and {s.gpuIndex for s in s8} == {3}
    assert r7.seq == 1 and r7.prevReportHash == ZERO_HASH and r7.flags & ReportFlag.SIMULATED == 0
    # the samples follow the driver's timeline: per GPU they tile the time from the attestor's start, every
    # driver sample counted once, so a full GPU is busy exactly the time its samples cover
    for rows in (s7, s8):
        for g in {s.gpuIndex for s in rows}:
            mine = sorted((s for s in rows if s.gpuIndex == g), key=lambda s: s.tsMs)
            assert all(a.tsMs == b.tsMs - b.intervalMs for a, b in zip(mine, mine[1:]))
            assert all(s.coveredMs == s.intervalMs and s.utilSamples == s.intervalMs // 200 for s in mine)
    assert r7.busyMs == r7.allocatedMs == sum(s.intervalMs for s in s7) > 2 * 9_500
    assert r7.smActiveMs == sum(s.intervalMs * 9_640 // 10_000 for s in s7)  # GPM: 96.4 % of a full matmul
    assert r7.energyMj > 0 and r7.cumAllocatedMs == r7.allocatedMs
    assert att.spool.status().depth == 0


def test_daemon_restart_resumes_chain_and_flags_the_downtime(tmp_path: Path) -> None:
    clock, rx = ManualClock(), Receiver()
    src, driver = _node(clock, [Full(), Full()])
    lease = LeaseInfo(7, (0, 1), T0 - 60_000, T0 + HOUR)
    att = _attestor(tmp_path, src, [lease], clock, rx)
    att.run(threading.Event(), once=True)
    att.close()
    att.spool.close()
    src.close()
    clock.advance_ms(30_000)  # down for 30 s: the driver's 20 s buffer cannot cover it
    src2 = NvmlSource(list(src.uuids), nvml=driver, clock_us=clock)
    att2 = _attestor(tmp_path, src2, [lease], clock, rx)
    att2.run(threading.Event(), once=True)
    r1, s1 = _check_report(rx.stored[(7, 1)], list(src.uuids), [0, 1], lease)
    baseline = {g: max((s for s in s1 if s.gpuIndex == g), key=lambda s: s.tsMs).energyMj for g in (0, 1)}
    ends = {g: max(s.tsMs for s in s1 if s.gpuIndex == g) for g in (0, 1)}
    r2, s2 = _check_report(rx.stored[(7, 2)], list(src.uuids), [0, 1], lease, baseline=baseline, ends=ends)
    assert r2.seq == 2 and r2.prevReportHash == report_struct_hash(r1)
    assert r2.windowStartMs == r1.windowEndMs
    assert r2.cumAllocatedMs == r1.allocatedMs + r2.allocatedMs
    assert r2.cumBusyMs == r1.busyMs + r2.busyMs and r2.cumEnergyMj == r1.energyMj + r2.energyMj
    assert r2.flags & ReportFlag.SAMPLE_GAP  # the downtime is flagged, and not allocated
    assert r2.allocatedMs == sum(s.intervalMs for s in s2) < 2 * (r2.windowEndMs - r2.windowStartMs) - 2 * 25_000
    assert r2.energyMj > r1.energyMj  # the counter kept running while the attestor was down: all of it counts


def test_daemon_lease_boundaries_end_the_samples_with_the_lease(tmp_path: Path) -> None:
    clock, rx = ManualClock(), Receiver()
    src, driver = _node(clock, [Idle(), DutyCycle(on_ms=500, off_ms=500)])
    lease = LeaseInfo(5, (1,), T0 + 3_100, T0 + 23_700)  # starts and ends inside sampling periods
    att = _attestor(tmp_path, src, [lease], clock, rx)
    _run_until(att, clock, T0 + 40_000)
    reports = [rx.stored[k] for k in sorted(rx.stored)]
    assert len(reports) == 3  # windows close at +10 s and +20 s, the last at the lease's end
    ends: dict[int, int] = {}
    baseline: dict[int, int] = {}
    rows: list[Sample] = []
    for item in reports:
        r, samples = _check_report(item, list(src.uuids), [1], lease, baseline=baseline, ends=ends)
        ends[1] = max(s.tsMs for s in samples)
        baseline[1] = max((s for s in samples if not s.flags & SampleField.ENERGY_UNREAD), key=lambda s: s.tsMs).energyMj
        rows += samples
    last = MeteringReport.from_json(reports[-1].report)
    assert lease.end_ms - 200 < last.windowEndMs <= lease.end_ms  # the last driver sample before the end
    first = min(rows, key=lambda s: s.tsMs)
    assert first.tsMs - lease.start_ms <= 450  # the first sample ends within a driver period after the start
    truth = driver.gpus[1].true_busy_ms(lease.start_ms * 1000, lease.end_ms * 1000)
    assert abs(last.cumBusyMs - truth) <= truth * 0.02
    true_energy = driver.gpus[1].true_energy_mj(first.tsMs * 1000, last.windowEndMs * 1000)
    assert abs(last.cumEnergyMj - true_energy) <= true_energy * 0.03  # read at the boundaries, exact deltas


def test_daemon_stops_metering_lease_that_left_active(tmp_path: Path) -> None:
    clock, rx = ManualClock(), Receiver()
    src, _ = _node(clock, [Full(), Full()])
    lease = LeaseInfo(9, (0,), T0 - 10_000, T0 + 10**6)
    att = _attestor(tmp_path, src, [], clock, rx)
    att._apply_leases([lease])
    for _ in range(3):
        clock.advance_ms(2_000)
        att.collect()
    att._apply_leases([LeaseInfo(9, (0,), T0 - 10_000, T0 + 10**6, state="Exhausted")])
    clock.advance_ms(2_000)
    att.collect()
    att.close_windows()
    att.sender.send_due()
    r, samples = _check_report(rx.stored[(9, 1)], list(src.uuids), [0], lease)
    assert len(samples) == 3 and r.windowEndMs <= T0 + 6_000
    assert list(rx.stored) == [(9, 1)]


def test_daemon_refuses_lease_with_foreign_gpu_set(tmp_path: Path) -> None:
    clock, rx = ManualClock(), Receiver()
    src, _ = _node(clock, [Full(), Full()])
    leases = [
        LeaseInfo(9, (0,), T0 - 10_000, T0 + 10**6, gpu_set_hash=b"\x01" * 32),
        LeaseInfo(10, (0, 5), T0 - 10_000, T0 + 10**6),
        LeaseInfo(11, (1,), T0 - 10_000, T0 + 10**6),  # a lease on this node's own GPU: metered
    ]
    att = _attestor(tmp_path, src, leases, clock, rx)
    att.run(threading.Event(), once=True)
    assert {lease for lease, _ in rx.stored} == {11}  # only the two foreign leases got nothing
    _check_report(rx.stored[(11, 1)], list(src.uuids), [1], leases[2])


def test_daemon_buffer_hole_is_flagged_unbilled_and_read_more_often(tmp_path: Path) -> None:
    clock, rx = ManualClock(), Receiver()
    # a driver whose utilization buffer holds 4 s, read every 10 s: samples are lost until the daemon adapts
    src, driver = _node(clock, [Full()], util_capacity=20)
    lease = LeaseInfo(1, (0,), T0 - 1_000, T0 + HOUR)
    att = _attestor(tmp_path, src, [lease], clock, rx, period=10_000, window=20_000)
    _run_until(att, clock, T0 + 60_000)
    r1, s1 = _check_report(rx.stored[(1, 1)], list(src.uuids), [0], lease, period=10_000)
    assert r1.flags & ReportFlag.UTIL_HOLE
    holey = [s for s in s1 if s.flags & ReportFlag.UTIL_HOLE]
    assert holey and all(s.coveredMs < s.intervalMs for s in holey)
    assert r1.busyMs == r1.allocatedMs < sum(s.intervalMs for s in s1)  # lost time is neither busy nor allocated
    assert att.drain_ms <= 2_500  # halved until the buffer is read before it wraps
    last = MeteringReport.from_json(rx.stored[max(rx.stored)].report)
    assert not last.flags & ReportFlag.UTIL_HOLE  # after adapting: full coverage again
    assert last.allocatedMs == last.busyMs > 0


def test_daemon_guard_drops_an_interval_that_overlaps_the_previous_one(tmp_path: Path) -> None:
    """Intervals come from the driver's timeline; if its clock stepped back, an overlapping one is dropped and
    the report says CLOCK_ADJUSTED (the protocol forbids overlap: time would count twice)."""

    class Stub:
        uuids = [_uuid(0)]
        model_names = ["stub"]
        simulated = False
        driver_version = nvml_version = "stub"

        def __init__(self) -> None:
            self.queue: list[list[GpuInterval]] = []

        def capabilities(self) -> list[GpuCapabilities]:
            return [GpuCapabilities("stub", _uuid(0), None, None, True, None, True, True, True)]

        def needs_polling(self) -> bool:
            return False

        def poll(self) -> None: ...

        def drain(self) -> bool:
            return False

        def collect(self, read_energy: bool, until_ms: int | None = None) -> list[GpuInterval]:
            return self.queue.pop(0)

        def close(self) -> None: ...

    def iv(ts: int, interval: int) -> GpuInterval:
        return GpuInterval(0, ts, interval, interval, 0, 5, 0, 0, 100_000, 10, 7, True, 1, 0)

    stub = Stub()
    clock, rx = ManualClock(), Receiver()
    lease = LeaseInfo(1, (0,), T0 - 5_000, T0 + HOUR)
    att = _attestor(tmp_path, stub, [lease], clock, rx)
    att._apply_leases([lease])
    stub.queue = [[iv(T0 + 1_000, 1_000)], [iv(T0 + 2_000, 1_000)], [iv(T0 - 3_000, 1_000)], [iv(T0 + 4_000, 2_000)]]
    for _ in range(4):
        att.collect()
    att.close_windows()
    att.sender.send_due()
    r, samples = _check_report(rx.stored[(1, 1)], stub.uuids, [0], lease)
    assert r.flags & ReportFlag.CLOCK_ADJUSTED and [s.tsMs for s in samples] == [T0 + 1_000, T0 + 2_000, T0 + 4_000]


def test_daemon_over_a_driver_without_buffers_polls_and_flags_missing_fields(tmp_path: Path) -> None:
    uuids = ["GPU-1", "GPU-2"]
    clock, rx = ManualClock(), Receiver()
    fake = FakeNvml([FakeGpu(uuids[0], power_mw=NOT_SUPPORTED), FakeGpu(uuids[1])], clock_us=clock)
    src = NvmlSource(uuids, nvml=fake, clock_us=clock)
    assert src.needs_polling()
    lease = LeaseInfo(2, (0, 1), T0 - 1_000, T0 + 10**6)
    att = _attestor(tmp_path, src, [lease], clock, rx)
    att.run(threading.Event(), once=True)
    r, samples = _check_report(rx.stored[(2, 1)], uuids, [0, 1], lease)
    assert r.flags & ReportFlag.FIELD_NOT_SUPPORTED and r.flags & ReportFlag.UTIL_POLLED
    assert r.flags & ReportFlag.NO_GPM and not r.flags & ReportFlag.SIMULATED
    policy = {
        "protocol": 2,
        "samplePeriodMs": 2_000,
        "windowMs": 10_000,
        "gapToleranceMs": 1_000,
        "energyRead": 1,
        "utilSource": 0,
        "gpm": 1,
        "simulated": 0,
    }
    assert r.configHash == config_hash(attestor.__version__, "570.86.15", "12.570.86.15", policy)
    assert all(s.powerMw == 0 and s.flags & SampleField.POWER for s in samples if s.gpuIndex == 0)
    assert all(s.powerMw == 350_000 for s in samples if s.gpuIndex == 1)
    assert all(s.smActiveMs == 0 and s.flags & SampleField.SM_ACTIVE for s in samples)
    # a static GPU reads 50 % every poll: each poll vouches for the second before it
    assert all(s.busyMs * 2 == s.coveredMs for s in samples if s.gpuIndex == 1)
    assert fake.calls["nvmlDeviceGetUtilizationRates"] >= 2 * 9


def test_metrics_endpoint_serves_dcgm_names_on_localhost(tmp_path: Path) -> None:
    clock, rx = ManualClock(), Receiver()
    src, _ = _node(clock, [Full(), TinyKernels()])
    metrics = Metrics(CollectorRegistry(), src.uuids, src.model_names, hostname="node-a")
    lease = LeaseInfo(2, (0, 1), T0 - 1_000, T0 + 10**6)
    att = _attestor(tmp_path, src, [lease], clock, rx, metrics=metrics)
    att.run(threading.Event(), once=True)
    port = metrics.serve(0)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.stop()
    values = {
        (smp.name, smp.labels.get("gpu")): (smp.value, smp.labels)
        for fam in text_string_to_metric_families(text)
        for smp in fam.samples
    }
    labels = {"gpu": "1", "UUID": _uuid(1), "modelName": "NVIDIA H200", "Hostname": "node-a"}
    assert values[("DCGM_FI_DEV_GPU_UTIL", "1")] == (20.0, labels)  # tiny kernels: util.gpu 20 %...
    assert values[("DCGM_FI_PROF_SM_ACTIVE", "1")][0] == 0.004  # ...but SM activity 0.4 %
    assert values[("DCGM_FI_DEV_GPU_UTIL", "0")][0] == 100.0
    assert values[("DCGM_FI_PROF_SM_ACTIVE", "0")][0] == 0.964
    assert values[("DCGM_FI_DEV_POWER_USAGE", "0")][0] == 700.0
    assert values[("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "0")][0] > 5_000_000
    assert values[("DCGM_FI_DEV_FB_USED", "1")] == (10_240.0, labels)
    assert values[("compute_ledger_attestor_reports_total", None)][0] == 1.0
    assert values[("compute_ledger_attestor_spool_depth", None)][0] == 0.0
    assert values[("compute_ledger_attestor_util_holes_total", None)][0] == 0.0


@pytest.mark.parametrize("on_ms,off_ms", [(500, 500), (300, 700), (2_000, 1_000), (50, 200)])
def test_daemon_bills_duty_cycles_within_5_percent_at_its_default_policy(
    tmp_path: Path, on_ms: int, off_ms: int
) -> None:
    """The duty cycles measured on the H200, through the whole daemon at its default settings, on the driver
    model: every driver sample counts once, so busy time comes out within the driver's own flooring (polling
    util.gpu once a second billed 0 s of the 0.5 s / 0.5 s load)."""
    clock, rx = ManualClock(), Receiver()
    src, driver = _node(clock, [DutyCycle(on_ms=on_ms, off_ms=off_ms)], sample_phase_us=0)
    lease = LeaseInfo(1, (0,), T0 + 1_000, T0 + 361_000)
    builder = ReportBuilder(
        SIGNER, 31337, ESCROW, SamplingPolicy(), driver_version="x", nvml_version="y", simulated=False
    )
    att = Attestor(
        node_id=1, source=src, builder=builder, spool=Spool(tmp_path / "spool.sqlite"),
        leases=StaticLeases([lease]), sink_factory=lambda: rx, clock=clock,
    )  # fmt: skip
    _run_until(att, clock, lease.end_ms + 1_000)
    last = MeteringReport.from_json(rx.stored[max(rx.stored)].report)
    truth = driver.gpus[0].true_busy_ms(lease.start_ms * 1000, lease.end_ms * 1000)
    assert abs(last.cumBusyMs - truth) <= truth * 0.05
    assert abs(last.cumAllocatedMs - 360_000) <= 400  # the lease's span, up to a driver period at each end


def test_daemon_says_each_window_built_and_acknowledged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="attestor")
    clock, rx = ManualClock(), Receiver()
    src, _ = _node(clock, [Full()])
    att = _attestor(tmp_path, src, [LeaseInfo(3, (0,), T0 - 1_000, T0 + HOUR)], clock, rx)
    att.run(threading.Event(), once=True)
    text = caplog.text
    assert "lease 3 seq 1: window" in text and "busy" in text  # built, with what it says
    assert "lease 3 seq 1 acknowledged by the bridge" in text  # and taken by the bridge
