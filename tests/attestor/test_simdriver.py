"""The simulated driver's time-driven H200 model (attestor.simdriver): sample buffers, aliasing, energy, GPM,
CPU cost, faults.

It is what ``--simulate``, the attestor's NVML tests and the benches stand on, so its behaviour is pinned here
against figures measured on a real H200 and against brute-force references independent of its analytic
integrals.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import pynvml
import pytest

from attestor.simdriver import (
    MEASURED_COSTS_MS,
    NOT_SUPPORTED,
    T0_US,
    DutyCycle,
    Full,
    Idle,
    ManualClock,
    Schedule,
    TinyKernels,
    gpm_metrics,
    h200,
)
from attestor.simdriver import SimGpu as FakeGpu
from attestor.simdriver import SimulatedNvml as FakeNvml

UUID = "GPU-c0ffee00-0000-0000-0000-000000000000"
MS = 1_000  # µs
UTIL = pynvml.NVML_GPU_UTILIZATION_SAMPLES
MEMU = pynvml.NVML_MEMORY_UTILIZATION_SAMPLES
POWER = pynvml.NVML_TOTAL_POWER_SAMPLES


def _driver(workload: Any = None, clock: ManualClock | None = None, **kw: Any) -> tuple[FakeNvml, FakeGpu, ManualClock]:
    clock = clock or ManualClock()
    gpu = h200(UUID, workload, **kw)
    return FakeNvml([gpu], clock_us=clock), gpu, clock


def _samples(fake: FakeNvml, gpu: FakeGpu, kind: int, last_seen: int = 0) -> list[tuple[int, int]]:
    value_type, samples = fake.nvmlDeviceGetSamples(gpu, kind, last_seen)
    assert value_type == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
    return [(int(s.timeStamp), int(s.sampleValue.uiVal)) for s in samples]


def _on_ms_brute(on_ms: int, off_ms: int, phase_ms: int, t0_ms: int, t1_ms: int) -> int:
    """Busy ms of a duty cycle in [t0, t1), stepping one ms at a time (independent of the analytic form)."""
    return sum(1 for t in range(t0_ms, t1_ms) if (t - phase_ms) % (on_ms + off_ms) < on_ms)


def _code(e: pytest.ExceptionInfo[pynvml.NVMLError]) -> int:
    return int(e.value.value)


# -- workloads: exact ground truth -----------------------------------------------------------------------


def test_duty_cycle_true_busy_ms_matches_stepping() -> None:
    rng = random.Random(7)
    for _ in range(40):
        on, off, phase = rng.randint(1, 900), rng.randint(0, 900), rng.randint(-3_000, 3_000)
        t0 = T0_US // MS + rng.randint(-5_000, 5_000)
        t1 = t0 + rng.randint(0, 4_000)
        w = DutyCycle(on, off, phase)
        assert w.true_busy_ms(t0 * MS, t1 * MS) == _on_ms_brute(on, off, phase, t0, t1), (on, off, phase, t0, t1)
        # SM activity is 96.4 % of the busy time for matmul bursts
        assert w.true_sm_active_ms(t0 * MS, t1 * MS) * 10_000 == w.true_busy_ms(t0 * MS, t1 * MS) * 9_640


def test_tiny_kernels_busy_20pct_but_sm_0_4pct() -> None:
    w = TinyKernels()
    assert w.busy_fraction(T0_US, T0_US + 1_000 * MS) == pytest.approx(0.20)
    assert w.sm_fraction(T0_US, T0_US + 1_000 * MS) == pytest.approx(0.004)
    assert w.true_busy_ms(T0_US, T0_US + 10_000 * MS) == 2_000
    assert w.true_sm_active_ms(T0_US, T0_US + 10_000 * MS) == 40


def test_schedule_switch_applies_only_after_its_instant() -> None:
    fake, gpu, clock = _driver(Idle(), sample_phase_us=0)
    clock.advance_ms(1_000)
    gpu.set_workload(Full())
    start = clock()
    clock.advance_ms(1_000)
    assert gpu.true_busy_ms(start - 1_000 * MS, start) == 0
    assert gpu.true_busy_ms(start, clock()) == 1_000
    assert [v for _, v in _samples(fake, gpu, UTIL)][-6:] == [0, 100, 100, 100, 100, 100]
    with pytest.raises(ValueError):
        gpu.set_workload(Idle(), at_us=start)  # the past is fixed
    assert isinstance(gpu.workload, Schedule)


# -- the 200 ms utilization buffer -----------------------------------------------------------------------


def test_util_buffer_samples_every_200ms_hold_each_period_busy_fraction_floored() -> None:
    on, off, phase = 300, 400, 50  # 700 ms period: drifts against the 200 ms sampling
    fake, gpu, clock = _driver(DutyCycle(on, off, phase), sample_phase_us=37 * MS)
    clock.advance_ms(12_345)
    got = _samples(fake, gpu, UTIL)
    assert len(got) == 100  # the driver was loaded long ago: the buffer is full
    stamps = [ts for ts, _ in got]
    assert all(b - a == 200 * MS for a, b in zip(stamps, stamps[1:]))
    assert all(ts % (200 * MS) == 37 * MS for ts in stamps)
    assert clock() - 200 * MS < stamps[-1] <= clock()
    fractional = 0
    for ts, value in got:
        busy = _on_ms_brute(on, off, phase, ts // MS - 200, ts // MS)
        assert value == busy * 100 // 200  # floor of the percent
        fractional += busy * 100 % 200 != 0
    assert fractional > 10  # the periods that straddle a burst edge really were exercised
    assert min(v for _, v in got) == 0 and max(v for _, v in got) == 100


def test_util_buffer_returns_only_samples_newer_than_last_seen() -> None:
    fake, gpu, clock = _driver(Full(), sample_phase_us=11 * MS)
    clock.advance_ms(3_000)
    first = _samples(fake, gpu, UTIL)
    newest = first[-1][0]
    clock.advance_ms(1_000)
    newer = _samples(fake, gpu, UTIL, newest)
    assert [ts for ts, _ in newer] == [newest + k * 200 * MS for k in range(1, 6)]
    middle = first[-3][0]
    assert [ts for ts, _ in _samples(fake, gpu, UTIL, middle)] == [first[-2][0], newest] + [t for t, _ in newer]
    assert _samples(fake, gpu, UTIL, middle + 1)[0][0] == first[-2][0]  # strictly newer than lastSeen


def test_util_buffer_nothing_newer_raises_not_found() -> None:
    fake, gpu, clock = _driver(Full(), sample_phase_us=0)
    newest = _samples(fake, gpu, UTIL)[-1][0]
    assert newest == clock()  # a period just ended
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetSamples(gpu, UTIL, newest)
    clock.advance_ms(199)
    with pytest.raises(pynvml.NVMLError) as e:
        fake.nvmlDeviceGetSamples(gpu, UTIL, newest)
    assert _code(e) == pynvml.NVML_ERROR_NOT_FOUND
    clock.advance_ms(1)
    assert len(_samples(fake, gpu, UTIL, newest)) == 1


def test_util_buffer_read_too_late_loses_old_samples() -> None:
    fake, gpu, clock = _driver(Full(), sample_phase_us=0, util_capacity=100)
    newest = _samples(fake, gpu, UTIL)[-1][0]
    clock.advance_ms(30_000)  # 150 periods later, the buffer holds 100
    got = _samples(fake, gpu, UTIL, newest)
    assert len(got) == 100
    assert got[0][0] - newest == 51 * 200 * MS  # a 50-sample hole: 10 s nobody can see any more
    fake2, gpu2, clock2 = _driver(Full(), sample_phase_us=0, util_capacity=7)
    clock2.advance_ms(5_000)
    assert len(_samples(fake2, gpu2, UTIL)) == 7


def test_util_buffer_after_driver_reload_starts_empty() -> None:
    fake, gpu, clock = _driver(Full(), sample_phase_us=0)
    clock.advance_ms(50)
    gpu.reload_driver()
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetSamples(gpu, UTIL, 0)
    clock.advance_ms(400)  # periods end at +150 (starts before the load: dropped) and +350 ms
    assert [ts for ts, _ in _samples(fake, gpu, UTIL)] == [gpu.loaded_at_us + 350 * MS]  # type: ignore[operator]


def test_memory_util_buffer_follows_workload_memory_activity() -> None:
    fake, gpu, clock = _driver(DutyCycle(500, 500, 0, mem_util_when_on=40), sample_phase_us=0)
    clock.advance_ms(1_000)
    assert [v for _, v in _samples(fake, gpu, MEMU)][-5:] == [40, 40, 20, 0, 0]
    assert fake.nvmlDeviceGetUtilizationRates(gpu).memory == 0


# -- aliasing of nvmlDeviceGetUtilizationRates -----------------------------------------------------------


def _poll_and_buffer(sample_phase_ms: int, poll_offset_ms: int) -> tuple[int, float, float, float]:
    """60 s of a 0.5 s / 0.5 s load: (busy ms billed by 1 s polls, by the buffer, truth over each span)."""
    fake, gpu, clock = _driver(DutyCycle(500, 500, 0), sample_phase_us=sample_phase_ms * MS)
    clock.advance_ms(poll_offset_ms)
    start = clock()
    polled_ms = 0
    for _ in range(60):
        clock.advance_ms(1_000)
        polled_ms += fake.nvmlDeviceGetUtilizationRates(gpu).gpu * 1_000 // 100
    truth_polled = float(gpu.true_busy_ms(start, clock()))
    # the buffer read every 10 s (within its 20 s capacity) with lastSeen
    last_seen = _samples(fake, gpu, UTIL, 0)[-1][0]
    first_end = None
    buffer_ms = 0
    for _ in range(6):
        clock.advance_ms(10_000)
        got = _samples(fake, gpu, UTIL, last_seen)
        first_end = got[0][0] if first_end is None else first_end
        buffer_ms += sum(v * 200 // 100 for _, v in got)
        last_seen = got[-1][0]
    truth_buffer = float(gpu.true_busy_ms(first_end - 200 * MS, last_seen))  # type: ignore[operator]
    return polled_ms, truth_polled, buffer_ms, truth_buffer


def test_utilization_polling_in_phase_bills_zero_while_buffer_gets_truth() -> None:
    polled, truth, buffered, buffer_truth = _poll_and_buffer(sample_phase_ms=0, poll_offset_ms=0)
    assert truth == 30_000
    assert polled == 0  # every poll lands on an idle 200 ms period, as on the real H200
    assert abs(buffered - buffer_truth) <= 0.01 * buffer_truth


def test_utilization_polling_other_phase_bills_double_while_buffer_gets_truth() -> None:
    polled, truth, buffered, buffer_truth = _poll_and_buffer(sample_phase_ms=0, poll_offset_ms=400)
    assert truth == 30_000 and polled == 60_000
    assert abs(buffered - buffer_truth) <= 0.01 * buffer_truth


def test_utilization_buffer_unaligned_phase_within_one_percent() -> None:
    _, _, buffered, buffer_truth = _poll_and_buffer(sample_phase_ms=37, poll_offset_ms=0)
    assert buffered != buffer_truth  # floored straddling periods: not trivially exact
    assert abs(buffered - buffer_truth) <= 0.01 * buffer_truth


def test_utilization_rates_are_last_completed_period() -> None:
    fake, gpu, clock = _driver(TinyKernels(), sample_phase_us=0)
    clock.advance_ms(1_000)
    assert fake.nvmlDeviceGetUtilizationRates(gpu).gpu == 20
    gpu.set_workload(Full())
    clock.advance_ms(199)
    assert fake.nvmlDeviceGetUtilizationRates(gpu).gpu == 20  # the 200 ms period is not over yet
    clock.advance_ms(1)
    assert fake.nvmlDeviceGetUtilizationRates(gpu).gpu == 100


# -- power buffer and energy counter -----------------------------------------------------------------------


def test_power_buffer_samples_every_20ms_in_milliwatts() -> None:
    fake, gpu, clock = _driver(DutyCycle(500, 500, 0), sample_phase_us=3 * MS, idle_mw=80_000, tdp_mw=700_000)
    clock.advance_ms(2_500)
    got = _samples(fake, gpu, POWER)
    assert len(got) == 100  # 2 s at 20 ms (assumed capacity)
    assert all(b[0] - a[0] == 20 * MS for a, b in zip(got, got[1:]))
    for ts, mw in got:
        on = _on_ms_brute(500, 500, 0, ts // MS - 20, ts // MS)
        assert mw == 80_000 + 620_000 * on // 20
    assert {mw for _, mw in got} >= {80_000, 700_000, 80_000 + 620_000 * 3 // 20}
    assert fake.nvmlDeviceGetPowerUsage(gpu) == got[-1][1]


def _energy_vs_samples(fake: FakeNvml, gpu: FakeGpu, clock: ManualClock) -> tuple[int, int, float, int]:
    """Energy read at the newest power sample, 2 s later again: (counter delta, Σ samples mW x 20 ms in mJ
    -- as a fraction of mJ x 50 -- truth, samples)."""
    clock.advance_ms(20 - (clock() // MS - gpu.phase_us // MS) % 20)  # onto a power sample timestamp
    e0 = fake.nvmlDeviceGetTotalEnergyConsumption(gpu)
    seen = _samples(fake, gpu, POWER)[-1][0]
    assert seen == clock()
    clock.advance_ms(2_000)
    e1 = fake.nvmlDeviceGetTotalEnergyConsumption(gpu)
    got = _samples(fake, gpu, POWER, seen)
    assert got[-1][0] == clock()
    sum_mj_x50 = sum(mw for _, mw in got)  # mW x 20 ms = mW / 50 mJ
    return e1 - e0, sum_mj_x50, float(gpu.true_energy_mj(seen, clock())), len(got)


def test_energy_counter_equals_power_integral_to_the_mj() -> None:
    fake, gpu, clock = _driver(DutyCycle(500, 500, 0), sample_phase_us=0, energy_mj=0)
    clock.advance_ms(777)
    delta, sum_x50, truth, n = _energy_vs_samples(fake, gpu, clock)
    assert n == 100
    # bursts on 20 ms boundaries: every sample is exact, so Σ power x Δt is the integral, to the mJ
    assert sum_x50 % 50 == 0 and delta == sum_x50 // 50 == truth
    assert delta == 75_000 + 700_000  # 1 s idle at 75 W + 1 s at 700 W, in mJ


def test_energy_counter_unaligned_load_within_sampling_error() -> None:
    fake, gpu, clock = _driver(DutyCycle(333.331, 421.707, 7.777), sample_phase_us=13 * MS)
    clock.advance_ms(5_000)
    delta, sum_x50, truth, n = _energy_vs_samples(fake, gpu, clock)
    # the counter is the exact integral, floored at both ends; each sample is floored to the mW
    assert abs(delta - truth) < 1
    assert 0 < truth - sum_x50 / 50 < n * 0.02  # > 0: the samples really were floored


def test_energy_counter_starts_at_configured_value_and_is_monotonic() -> None:
    fake, gpu, clock = _driver(TinyKernels(), energy_mj=9_000_000)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(gpu) == 9_000_000
    readings = []
    for step_ms in [0.3, 1, 7, 19, 200, 1_000, 0.001, 3_600_000]:
        clock.advance_ms(step_ms)
        readings.append(fake.nvmlDeviceGetTotalEnergyConsumption(gpu))
    assert readings == sorted(readings) and readings[-1] > readings[0]
    assert readings[-1] - 9_000_000 == math.floor(gpu.true_energy_mj(T0_US, clock()))


def test_energy_counter_reset_restarts_near_zero() -> None:
    fake, gpu, clock = _driver(Full(), energy_mj=5_000_000)
    clock.advance_ms(10_000)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(gpu) == 5_000_000 + 7_000_000  # 10 s at 700 W
    gpu.reset_energy()
    assert fake.nvmlDeviceGetTotalEnergyConsumption(gpu) == 0
    clock.advance_ms(1)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(gpu) == 700  # 1 ms at 700 W
    gpu.reset_energy(1_234)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(gpu) == 1_234


# -- GPM -----------------------------------------------------------------------------------------------------

SM, OCC, TENSOR, DRAM = (
    pynvml.NVML_GPM_METRIC_SM_UTIL,
    pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
    pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
    pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
)


def _gpm(fake: FakeNvml, gpu: FakeGpu, clock: ManualClock, span_ms: float) -> dict[int, float]:
    s1, s2 = fake.nvmlGpmSampleAlloc(), fake.nvmlGpmSampleAlloc()
    fake.nvmlGpmSampleGet(gpu, s1)
    clock.advance_ms(span_ms)
    fake.nvmlGpmSampleGet(gpu, s2)
    got = gpm_metrics(fake, s1, s2, [SM, OCC, TENSOR, DRAM])
    fake.nvmlGpmSampleFree(s1)
    fake.nvmlGpmSampleFree(s2)
    assert all(ret == pynvml.NVML_SUCCESS for ret, _ in got)
    return dict(zip([SM, OCC, TENSOR, DRAM], (v for _, v in got)))


def test_gpm_sm_util_is_96_4_during_matmul_bursts() -> None:
    fake, gpu, clock = _driver(DutyCycle(500, 500, 0))
    assert fake.nvmlGpmQueryDeviceSupport(gpu).isSupportedDevice == 1
    clock.advance_ms(100)  # inside a burst
    on = _gpm(fake, gpu, clock, 300)
    assert on[SM] == pytest.approx(96.4) and on[TENSOR] == pytest.approx(90.0)
    clock.advance_ms(200)  # idle part
    assert _gpm(fake, gpu, clock, 400)[SM] == 0.0
    assert _gpm(fake, gpu, clock, 3_000)[SM] == pytest.approx(48.2)  # three whole periods


def test_gpm_sm_util_is_0_4_for_tiny_kernels_at_20pct_util() -> None:
    fake, gpu, clock = _driver(TinyKernels())
    got = _gpm(fake, gpu, clock, 1_000)
    assert fake.nvmlDeviceGetUtilizationRates(gpu).gpu == 20
    assert got[SM] == pytest.approx(0.4) and got[TENSOR] == 0.0


def test_gpm_metrics_fill_the_real_pynvml_structure() -> None:
    fake, gpu, clock = _driver(Full())
    s1, s2 = fake.nvmlGpmSampleAlloc(), fake.nvmlGpmSampleAlloc()
    assert isinstance(s1, pynvml.c_nvmlGpmSample_t)
    assert fake.nvmlGpmSampleGet(gpu, s1) is s1
    clock.advance_ms(1_000)
    fake.nvmlGpmSampleGet(gpu, s2)
    m = fake.c_nvmlGpmMetricsGet_t()
    m.version = fake.NVML_GPM_METRICS_GET_VERSION
    m.numMetrics = 3
    m.sample1, m.sample2 = s1, s2
    m.metrics[0].metricId = fake.NVML_GPM_METRIC_SM_UTIL
    m.metrics[1].metricId = fake.NVML_GPM_METRIC_DRAM_BW_UTIL
    m.metrics[2].metricId = pynvml.NVML_GPM_METRIC_FP64_UTIL  # not modelled
    assert fake.nvmlGpmMetricsGet(m) is m
    assert (m.metrics[0].nvmlReturn, m.metrics[0].value) == (pynvml.NVML_SUCCESS, pytest.approx(96.4))
    assert (m.metrics[1].nvmlReturn, m.metrics[1].value) == (pynvml.NVML_SUCCESS, pytest.approx(30.0))
    assert m.metrics[2].nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
    m.version = 2
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        fake.nvmlGpmMetricsGet(m)
    m.version, m.sample1, m.sample2 = 1, s2, s1  # reversed: no positive interval
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlGpmMetricsGet(m)
    fake.nvmlGpmSampleFree(s1)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlGpmSampleGet(gpu, s1)  # freed


def test_gpm_not_supported_without_gpm_like_pre_hopper() -> None:
    fake, gpu, clock = _driver(Full(), gpm_supported=False)
    assert fake.nvmlGpmQueryDeviceSupport(gpu).isSupportedDevice == 0
    s = fake.nvmlGpmSampleAlloc()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlGpmSampleGet(gpu, s)
    static = FakeGpu("GPU-static")
    fake2 = FakeNvml([static], clock_us=clock)
    assert fake2.nvmlGpmQueryDeviceSupport(static).isSupportedDevice == 0


# -- CPU cost and call counts ---------------------------------------------------------------------------------


def test_costs_measured_energy_reads_spend_real_cpu() -> None:
    fake, gpu, _ = _driver(Full())
    fake.costs = MEASURED_COSTS_MS
    t = time.process_time()
    for _ in range(50):
        fake.nvmlDeviceGetTotalEnergyConsumption(gpu)
    spent = time.process_time() - t
    assert 0.150 <= spent < 2.0  # 50 x 4.04 ms = 202 ms of CPU (not sleep)
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 50 and gpu.calls["energy"] == 50


def test_costs_measured_buffer_reads_cost_per_buffer() -> None:
    fake, gpu, clock = _driver(Full())
    fake.costs = MEASURED_COSTS_MS
    t = time.process_time()
    for _ in range(20):
        fake.nvmlDeviceGetSamples(gpu, UTIL, 0)
    util_s = time.process_time() - t
    t = time.process_time()
    for _ in range(20):
        fake.nvmlDeviceGetSamples(gpu, POWER, 0)
    power_s = time.process_time() - t
    assert util_s >= 0.036 and power_s < util_s / 2  # 20 x 2.4 ms vs 20 x 0.31 ms
    assert fake.calls["nvmlDeviceGetSamples"] == 40
    assert fake.calls["nvmlDeviceGetSamples/GPU_UTILIZATION"] == 20
    assert fake.calls["nvmlDeviceGetSamples/TOTAL_POWER"] == 20
    assert fake.cpu_cost_ms("nvmlDeviceGetSamples/TOTAL_POWER") == 0.31


def test_costs_none_spends_nearly_nothing() -> None:
    fake, gpu, _ = _driver(Full())
    t = time.process_time()
    for _ in range(50):
        fake.nvmlDeviceGetTotalEnergyConsumption(gpu)
    assert time.process_time() - t < 0.05
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 50


# -- NotSupported, lost, determinism --------------------------------------------------------------------------


def test_not_supported_per_feature() -> None:
    fake, gpu, _ = _driver(Full(), samples_supported=False, energy_mj=NOT_SUPPORTED, power_mw=NOT_SUPPORTED)
    for kind in (UTIL, MEMU, POWER):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            fake.nvmlDeviceGetSamples(gpu, kind, 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetTotalEnergyConsumption(gpu)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetPowerUsage(gpu)
    assert fake.nvmlDeviceGetUtilizationRates(gpu).gpu == 100  # the rest still answers
    static = FakeGpu("GPU-static")  # a static GPU has no buffers
    with pytest.raises(pynvml.NVMLError_NotSupported):
        FakeNvml([static]).nvmlDeviceGetSamples(static, UTIL, 0)


def test_lost_gpu_answers_gpu_is_lost_to_everything() -> None:
    fake, gpu, _ = _driver(Full())
    s = fake.nvmlGpmSampleAlloc()
    gpu.fall_off_bus()
    calls: list[Callable[[], object]] = [
        lambda: fake.nvmlDeviceGetHandleByUUID(UUID),
        lambda: fake.nvmlDeviceGetHandleByIndex(0),
        lambda: fake.nvmlDeviceGetUUID(gpu),
        lambda: fake.nvmlDeviceGetName(gpu),
        lambda: fake.nvmlDeviceGetUtilizationRates(gpu),
        lambda: fake.nvmlDeviceGetMemoryInfo(gpu),
        lambda: fake.nvmlDeviceGetPowerUsage(gpu),
        lambda: fake.nvmlDeviceGetTotalEnergyConsumption(gpu),
        lambda: fake.nvmlDeviceGetComputeRunningProcesses(gpu),
        lambda: fake.nvmlDeviceGetTotalEccErrors(
            gpu, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC
        ),
        lambda: fake.nvmlDeviceGetSamples(gpu, UTIL, 0),
        lambda: fake.nvmlDeviceGetSamples(gpu, POWER, 0),
        lambda: fake.nvmlGpmQueryDeviceSupport(gpu),
        lambda: fake.nvmlGpmSampleGet(gpu, s),
        lambda: fake.nvmlDeviceRegisterEvents(gpu, pynvml.nvmlEventTypeXidCriticalError, object()),
    ]
    for call in calls:
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call()
    assert fake.nvmlGpmSampleAlloc() is not None  # calls without a GPU still answer


def test_driver_model_is_deterministic_given_clock() -> None:
    def run(uuid: str) -> list[Any]:
        clock = ManualClock()
        gpu = h200(uuid, DutyCycle(123, 456, 78))
        fake = FakeNvml([gpu], clock_us=clock)
        clock.advance_ms(9_876.543)
        return [
            _samples(fake, gpu, UTIL),
            _samples(fake, gpu, POWER),
            fake.nvmlDeviceGetTotalEnergyConsumption(gpu),
            gpu.phase_us,
        ]

    a, b, other = run(UUID), run(UUID), run("GPU-deadbeef")
    assert a == b
    assert a[3] != other[3]  # the default phase comes from the UUID...
    assert 0 < a[3] < 200_000 and 0 < other[3] < 200_000  # ...and does not align periods to whole seconds


def test_manual_clock_serves_attestor_clock_protocol() -> None:
    import threading

    clock = ManualClock()
    ev = threading.Event()
    assert clock.wall_ms() == T0_US // 1_000
    assert clock.wait(ev, 1.5) is False and clock() == T0_US + 1_500_000
    assert clock.monotonic() == pytest.approx((T0_US + 1_500_000) / 1e6)
    with pytest.raises(ValueError):
        clock.advance_ms(-1)
