"""The attestor loop in process, on a manual clock: windows, leases, restarts, gaps, metrics."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

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
from attestor.source import GpuSource, SimulatedSource
from attestor.spool import Spool, SpooledReport
from ledger.protocol.metering import aggregate_window
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

T0 = 1_764_120_000_000
ESCROW = "0x5FbDB2315678afecb367f032d315f642f64180aa"
SIGNER = Signer(b"\x07" * 32)


class ManualClock:
    """Wall and monotonic time advance only when the loop waits (plus an optional overshoot)."""

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms
        self.overshoot_ms = 0

    def wall_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.ms += max(1, round(seconds * 1000)) + self.overshoot_ms
        return event.is_set()


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


def _attestor(
    tmp_path: Path,
    source: GpuSource,
    leases: list[LeaseInfo],
    clock: ManualClock,
    receiver: Receiver,
    period: int = 1_000,
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
    period: int = 1_000,
    baseline: dict[int, int] | None = None,
) -> tuple[MeteringReport, list[Sample]]:
    r = MeteringReport.from_json(item.report)
    samples = [Sample.from_values(v) for v in item.samples]
    assert recover_signer(report_digest(r, 31337, ESCROW), bytes.fromhex(item.signature[2:])) == SIGNER.address
    assert item.report_hash == "0x" + report_struct_hash(r).hex()
    assert r.samplesRoot == samples_root(samples) and r.sampleCount == len(samples)
    assert r.gpuSetHash == gpu_set_hash(gpu_uuid_hash(uuids[i]) for i in gpu_indices)
    f = aggregate_window(
        samples, r.windowStartMs, r.windowEndMs, period, energy_baseline=baseline, gpu_indices=gpu_indices
    )
    assert (r.busyMs, r.allocatedMs, r.energyMj, r.maxMemUsedMiB) == (
        f.busyMs,
        f.allocatedMs,
        f.energyMj,
        f.maxMemUsedMiB,
    )
    assert r.flags & f.flags == f.flags
    return r, samples


def test_daemon_once_builds_one_signed_window_per_lease(tmp_path: Path) -> None:
    src = SimulatedSource.from_spec("4xH100", seed=1)
    clock, rx = ManualClock(), Receiver()
    leases = [LeaseInfo(7, (0, 1), T0 - 60_000, T0 + 3_600_000), LeaseInfo(8, (3,), T0 - 60_000, T0 + 3_600_000)]
    att = _attestor(tmp_path, src, leases, clock, rx)
    assert att.run(threading.Event(), once=True) == 0
    assert sorted(rx.stored) == [(7, 1), (8, 1)]
    r7, s7 = _check_report(rx.stored[(7, 1)], list(src.uuids), [0, 1])
    r8, s8 = _check_report(rx.stored[(8, 1)], list(src.uuids), [3])
    assert {s.gpuIndex for s in s7} == {0, 1} and {s.gpuIndex for s in s8} == {3}
    assert r7.seq == 1 and r7.prevReportHash == ZERO_HASH
    assert r7.windowStartMs == T0 - 1_000 and r7.windowEndMs == T0 + 10_000  # first sample at T0 vouches for one period
    assert r7.allocatedMs == 2 * 11_000 and r8.allocatedMs == 11_000
    assert r7.cumAllocatedMs == r7.allocatedMs and r7.flags & ReportFlag.SIMULATED
    assert r7.sampleCount == 2 * 11
    assert att.spool.status().depth == 0


def test_daemon_restart_resumes_chain_and_counters(tmp_path: Path) -> None:
    src = SimulatedSource.from_spec("2xH100", seed=2)
    clock, rx = ManualClock(), Receiver()
    lease = [LeaseInfo(7, (0, 1), T0 - 60_000, T0 + 3_600_000)]
    att = _attestor(tmp_path, src, lease, clock, rx)
    att.run(threading.Event(), once=True)
    att.close()
    att.spool.close()
    clock.ms += 30_000  # down for 30 s
    att2 = _attestor(tmp_path, src, lease, clock, rx)
    att2.run(threading.Event(), once=True)
    r1 = MeteringReport.from_json(rx.stored[(7, 1)].report)
    s1 = [Sample.from_values(v) for v in rx.stored[(7, 1)].samples]
    baseline = {g: max((s for s in s1 if s.gpuIndex == g), key=lambda s: s.tsMs).energyMj for g in (0, 1)}
    r2, _ = _check_report(rx.stored[(7, 2)], list(src.uuids), [0, 1], baseline=baseline)
    assert r2.seq == 2 and r2.prevReportHash == report_struct_hash(r1)
    assert r2.windowStartMs == r1.windowEndMs
    assert r2.cumAllocatedMs == r1.allocatedMs + r2.allocatedMs
    assert r2.cumBusyMs == r1.busyMs + r2.busyMs and r2.cumEnergyMj == r1.energyMj + r2.energyMj
    assert r2.flags & ReportFlag.SAMPLE_GAP  # the downtime is flagged, and not allocated
    assert r2.allocatedMs == 2 * 11_000
    assert r2.energyMj > r1.energyMj  # the counter kept running while the attestor was down


def test_daemon_closes_window_at_lease_end(tmp_path: Path) -> None:
    src = SimulatedSource.from_spec("2xH100", seed=3)
    clock, rx = ManualClock(), Receiver()
    att = _attestor(tmp_path, src, [LeaseInfo(5, (1,), T0 - 500, T0 + 4_500)], clock, rx)
    att.run(threading.Event(), once=True)
    r, samples = _check_report(rx.stored[(5, 1)], list(src.uuids), [1])
    assert (r.windowStartMs, r.windowEndMs) == (T0 - 500, T0 + 4_500)
    assert max(s.tsMs for s in samples) == T0 + 4_000
    assert r.allocatedMs == 4_500  # 500 before the first sample, then 4 periods; nothing after the end
    assert list(rx.stored) == [(5, 1)]


def test_daemon_stops_metering_lease_that_left_active(tmp_path: Path) -> None:
    src = SimulatedSource.from_spec("2xH100", seed=4)
    clock, rx = ManualClock(), Receiver()
    att = _attestor(tmp_path, src, [], clock, rx)
    att._apply_leases([LeaseInfo(9, (0,), T0 - 10_000, T0 + 10**6)], T0)
    for _ in range(3):
        att.tick()
        clock.ms += 1_000
    att._apply_leases([LeaseInfo(9, (0,), T0 - 10_000, T0 + 10**6, state="Exhausted")], clock.ms)
    att.tick()
    att.close_windows(clock.ms)
    att.sender.send_due()
    r, samples = _check_report(rx.stored[(9, 1)], list(src.uuids), [0])
    assert r.windowEndMs == T0 + 2_000 and len(samples) == 3
    assert list(rx.stored) == [(9, 1)]


def test_daemon_refuses_lease_with_foreign_gpu_set(tmp_path: Path) -> None:
    src = SimulatedSource.from_spec("2xH100", seed=4)
    clock, rx = ManualClock(), Receiver()
    att = _attestor(
        tmp_path,
        src,
        [
            LeaseInfo(9, (0,), T0 - 10_000, T0 + 10**6, gpu_set_hash=b"\x01" * 32),
            LeaseInfo(10, (0, 5), T0 - 10_000, T0 + 10**6),
            LeaseInfo(11, (1,), T0 - 10_000, T0 + 10**6),  # a lease on this node's own GPU: metered
        ],
        clock,
        rx,
    )
    att.run(threading.Event(), once=True)
    # the daemon ran and metered: only the two foreign leases got nothing
    assert {lease for lease, _ in rx.stored} == {11}
    _check_report(rx.stored[(11, 1)], list(src.uuids), [1])


def test_daemon_late_ticks_are_flagged_as_gaps(tmp_path: Path) -> None:
    src = SimulatedSource.from_spec("1xH100", seed=5)
    clock, rx = ManualClock(), Receiver()
    clock.overshoot_ms = 1_700  # every wait oversleeps by 1.7 periods
    att = _attestor(tmp_path, src, [LeaseInfo(1, (0,), T0 - 1_000, T0 + 10**6)], clock, rx)
    att.run(threading.Event(), once=True)
    r, samples = _check_report(rx.stored[(1, 1)], list(src.uuids), [0])
    assert r.flags & ReportFlag.SAMPLE_GAP
    assert any(s.flags & ReportFlag.SAMPLE_GAP for s in samples)
    assert r.allocatedMs == len(samples) * 1_000 < r.windowEndMs - r.windowStartMs


def test_daemon_wall_clock_step_back_flags_clock_adjusted(tmp_path: Path) -> None:
    src = SimulatedSource.from_spec("1xH100", seed=5)
    clock, rx = ManualClock(), Receiver()
    att = _attestor(tmp_path, src, [LeaseInfo(1, (0,), T0 - 1_000, T0 + 10**6)], clock, rx)
    att._apply_leases(att.watcher._provider.active_leases() or [], T0)
    att.tick()
    clock.ms += 1_000
    att.tick()
    clock.ms -= 5_000
    att.tick()  # skipped: earlier than the last sample
    clock.ms += 7_000
    att.tick()
    att.close_windows(clock.ms)
    att.sender.send_due()
    r, samples = _check_report(rx.stored[(1, 1)], list(src.uuids), [0])
    assert r.flags & ReportFlag.CLOCK_ADJUSTED and len(samples) == 3


def test_daemon_over_nvml_flags_missing_fields(tmp_path: Path) -> None:
    uuids = ["GPU-1", "GPU-2"]
    fake = FakeNvml([FakeGpu(uuids[0], power_mw=NOT_SUPPORTED), FakeGpu(uuids[1])])
    src = NvmlSource(uuids, nvml=fake)
    clock, rx = ManualClock(), Receiver()
    att = _attestor(tmp_path, src, [LeaseInfo(2, (0, 1), T0 - 1_000, T0 + 10**6)], clock, rx)
    att.run(threading.Event(), once=True)
    r, samples = _check_report(rx.stored[(2, 1)], uuids, [0, 1])
    assert r.flags & ReportFlag.FIELD_NOT_SUPPORTED and not r.flags & ReportFlag.SIMULATED
    policy = {"samplePeriodMs": 1_000, "windowMs": 10_000, "gapToleranceMs": 500, "simulated": 0}
    assert r.configHash == config_hash(attestor.__version__, "570.86.15", "12.570.86.15", policy)
    assert all(s.powerMw == 0 for s in samples if s.gpuIndex == 0)
    assert all(s.powerMw == 350_000 for s in samples if s.gpuIndex == 1)


def test_metrics_endpoint_serves_dcgm_names_on_localhost(tmp_path: Path) -> None:
    uuids = ["GPU-1", "GPU-2"]
    fake = FakeNvml([FakeGpu(uuids[0], power_mw=NOT_SUPPORTED), FakeGpu(uuids[1], util_gpu=80)])
    src = NvmlSource(uuids, nvml=fake)
    metrics = Metrics(CollectorRegistry(), src.uuids, src.model_names, hostname="node-a")
    clock, rx = ManualClock(), Receiver()
    att = _attestor(tmp_path, src, [LeaseInfo(2, (0, 1), T0 - 1_000, T0 + 10**6)], clock, rx, metrics=metrics)
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
    labels = {"gpu": "1", "UUID": "GPU-2", "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node-a"}
    assert values[("DCGM_FI_DEV_GPU_UTIL", "1")] == (80.0, labels)
    assert values[("DCGM_FI_DEV_POWER_USAGE", "1")] == (350.0, labels)
    assert values[("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "1")] == (5_000_000.0, labels)
    assert values[("DCGM_FI_DEV_FB_USED", "1")] == (10_240.0, labels)
    assert values[("DCGM_FI_DEV_GPU_UTIL", "0")][0] == 50.0
    assert ("DCGM_FI_DEV_POWER_USAGE", "0") not in values  # unsupported: absent, not 0
    assert values[("compute_ledger_attestor_reports_total", None)][0] == 1.0
    assert values[("compute_ledger_attestor_spool_depth", None)][0] == 0.0
