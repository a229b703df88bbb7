"""The NVML source over the simulated driver (attestor.simdriver) handed in through the constructor: busy time
from the driver's utilization buffer, holes, the polling fallback, GPM, energy where read, health."""

from __future__ import annotations

import pynvml
import pytest
from fake_pynvml import NOT_SUPPORTED, FakeGpu, FakeNvml

from attestor.errors import GpuNotFoundError, NoDriverError
from attestor.nvml import NO_DRIVER_MESSAGE, NvmlSource
from attestor.sampler import Sampler
from attestor.simdriver import DutyCycle, Full, Idle, ManualClock, TinyKernels, Workload, h200
from ledger.protocol import ReportFlag
from ledger.protocol.samples import SampleField

UUIDS = ["GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-0000-0000-0000-000000000001"]


def _timed(clock: ManualClock, *workloads: Workload, **kw: object) -> FakeNvml:
    return FakeNvml([h200(u, w, **kw) for u, w in zip(UUIDS, workloads)], clock_us=clock)  # type: ignore[arg-type]


def _static(**kw: object) -> FakeNvml:
    gpus = [FakeGpu(UUIDS[0]), FakeGpu(UUIDS[1], util_gpu=97, power_mw=650_000, energy_mj=9_000_000)]
    return FakeNvml(gpus, **kw)  # type: ignore[arg-type]


def test_nvml_intervals_come_from_the_drivers_buffers_in_protocol_units() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), TinyKernels())
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    clock.advance_ms(10_000)
    a, b = src.collect(read_energy=True)
    assert a.index == 0 and b.index == 1
    # the interval runs on the driver's timeline: from the newest sample at open to the newest sample now
    assert a.interval_ms == 10_000 and a.ts_ms <= clock.wall_ms() < a.ts_ms + 200
    assert (a.covered_ms, a.busy_ms, a.util_samples) == (10_000, 10_000, 50)
    assert (b.covered_ms, b.busy_ms) == (10_000, 2_000)  # tiny kernels read 20 % util.gpu...
    assert (a.sm_active_ms, b.sm_active_ms) == (9_640, 40)  # ...and 0.4 % SM activity (GPM)
    assert a.tensor_active_ms == 9_000 and b.tensor_active_ms == 0
    assert a.power_mw == 700_000 and a.power_samples == 100  # the power buffer holds the last 2 s
    assert a.energy_read and a.energy_mj == fake.gpus[0].energy_counter_mj(clock())
    assert a.mem_used_mib == 10_240 and a.flags == 0
    assert src.driver_version == "570.86.15" and src.nvml_version == "12.570.86.15"
    assert list(src.model_names) == ["NVIDIA H200"] * 2 and not src.simulated
    cap = src.capabilities()[0]
    assert cap.util_buffer and cap.power_buffer and cap.gpm and cap.energy
    assert cap.vram_mib == 143_771 and cap.power_limit_mw == 700_000 and cap.util_buffer_span_ms == 19_800


def test_nvml_counts_every_driver_sample_once_whatever_the_cadence() -> None:
    """The aliasing case measured on the H200: a 0.5 s on / 0.5 s off load, read every second in phase with
    it. Polling util.gpu bills 0; the buffer bills the truth (within the driver's own flooring)."""
    clock = ManualClock()
    load = DutyCycle(on_ms=500, off_ms=500, phase_ms=0)
    fake = _timed(clock, load, load, sample_phase_us=0)
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    start = clock()
    busy = covered = 0
    for _ in range(60):
        clock.advance_ms(1_000)  # in phase: every read lands where a burst has just ended
        for r in src.collect(read_energy=False):
            busy += r.busy_ms or 0
            covered += r.covered_ms or 0
    truth = 2 * fake.gpus[0].true_busy_ms(start, clock())
    assert covered == 2 * 60_000 and abs(busy - truth) <= truth * 0.05

    polled = FakeNvml([h200(UUIDS[0], load, sample_phase_us=0, samples_supported=False)], clock_us=clock)
    psrc = NvmlSource(UUIDS[:1], nvml=polled, clock_us=clock)
    assert psrc.needs_polling()
    busy = 0
    for _ in range(60):
        clock.advance_ms(1_000)
        psrc.poll()
        (r,) = psrc.collect(read_energy=False)
        assert r.flags & ReportFlag.UTIL_POLLED
        busy += r.busy_ms or 0
    assert busy == 0  # the fallback aliases exactly as the real driver does: flagged, and said in the config


def test_nvml_a_buffer_read_too_late_is_a_hole_not_covered_time() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full(), util_capacity=10)  # the buffer holds 2 s
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    clock.advance_ms(5_000)
    a, _ = src.collect(read_energy=False)
    assert a.flags & ReportFlag.UTIL_HOLE
    assert a.interval_ms == 5_000 and a.covered_ms == a.busy_ms == 2_000 and a.util_samples == 10
    clock.advance_ms(5_000)
    assert src.drain()  # the caller learns it must read more often
    clock.advance_ms(1_000)
    assert not src.drain()
    a, _ = src.collect(read_energy=False)
    assert a.interval_ms == 6_000 and a.covered_ms == 2_000 + 1_000 and a.flags & ReportFlag.UTIL_HOLE
    clock.advance_ms(1_500)
    a, _ = src.collect(read_energy=False)
    assert a.covered_ms == a.interval_ms == 1_400 or a.covered_ms == a.interval_ms  # read in time: no hole
    assert not a.flags & ReportFlag.UTIL_HOLE


def test_nvml_until_ends_intervals_at_the_last_sample_before_it() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full(), sample_phase_us=0)
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    t0 = clock.wall_ms()
    clock.advance_ms(3_000)
    a, _ = src.collect(read_energy=True, until_ms=t0 + 2_100)
    assert a.ts_ms == t0 + 2_000 and a.interval_ms == 2_000
    clock.advance_ms(1_000)
    a, _ = src.collect(read_energy=True)
    assert a.ts_ms - a.interval_ms == t0 + 2_000 and a.ts_ms == t0 + 4_000  # nothing lost, nothing twice


def test_nvml_nothing_new_is_no_interval_yet() -> None:
    clock = ManualClock()
    src = NvmlSource(UUIDS, nvml=_timed(clock, Full(), Full()), clock_us=clock)
    clock.advance_ms(1_000)
    assert len(src.collect(read_energy=False)) == 2
    clock.advance_us(100)
    assert src.collect(read_energy=False) == []  # within a driver period: the intervals stay open


def test_nvml_energy_is_read_only_when_asked() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full())
    sampler = Sampler(NvmlSource(UUIDS, nvml=fake, clock_us=clock))
    before = fake.calls.get("nvmlDeviceGetTotalEnergyConsumption", 0)
    clock.advance_ms(2_000)
    s0, _ = sampler.collect(read_energy=False)
    assert s0.energyMj == 0 and s0.flags & SampleField.ENERGY_UNREAD and not s0.flags & ReportFlag.FIELD_NOT_SUPPORTED
    assert fake.calls.get("nvmlDeviceGetTotalEnergyConsumption", 0) == before
    clock.advance_ms(2_000)
    s0, _ = sampler.collect(read_energy=True)
    assert s0.energyMj > 0 and not s0.flags & SampleField.ENERGY_UNREAD


def test_nvml_without_gpm_sm_activity_is_missing_and_said_so() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full(), gpm_supported=False)
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    assert not src.capabilities()[0].gpm
    clock.advance_ms(2_000)
    s0, _ = Sampler(src).collect(read_energy=False)
    assert (s0.smActiveMs, s0.tensorActiveMs) == (0, 0)
    assert s0.flags & SampleField.SM_ACTIVE and s0.flags & ReportFlag.NO_GPM and s0.flags & ReportFlag.FIELD_NOT_SUPPORTED
    assert s0.busyMs == s0.coveredMs == 2_000  # busy time does not need GPM


def test_nvml_looks_gpus_up_by_uuid_in_configured_order() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Idle())
    src = NvmlSource([UUIDS[1], UUIDS[0]], nvml=fake, clock_us=clock)
    clock.advance_ms(1_000)
    r0, r1 = src.collect(read_energy=False)
    # index 0 is the second physical GPU: the configured (registered) order wins over NVML's enumeration
    assert r0.busy_ms == 0 and r1.busy_ms == 1_000
    assert list(src.uuids) == [UUIDS[1], UUIDS[0]]


def test_nvml_unknown_uuid_raises_gpu_not_found() -> None:
    fake = _static()
    with pytest.raises(GpuNotFoundError, match="GPU-cccc"):
        NvmlSource([UUIDS[0], "GPU-cccc"], nvml=fake)
    assert fake.shutdown_called


def test_nvml_missing_library_raises_no_driver() -> None:
    with pytest.raises(NoDriverError) as e:
        NvmlSource(UUIDS, nvml=_static(library_missing=True))
    assert str(e.value) == NO_DRIVER_MESSAGE == "no NVIDIA driver found; use --simulate"


def test_nvml_not_supported_field_is_flagged_not_zero_and_not_asked_again() -> None:
    clock = ManualClock()
    fake = _static(clock_us=clock)
    fake.gpus[0].energy_mj = NOT_SUPPORTED
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    sampler = Sampler(src)
    src.poll()
    clock.advance_ms(1_000)
    src.poll()
    s0, s1 = sampler.collect(read_energy=True)
    assert s0.flags & ReportFlag.FIELD_NOT_SUPPORTED and s0.flags & SampleField.ENERGY
    assert not s0.flags & SampleField.POWER and s0.powerMw == 350_000 and s0.energyMj == 0
    assert s1.energyMj == 9_000_000 and not s1.flags & SampleField.ENERGY
    assert s0.flags & ReportFlag.UTIL_POLLED and s0.busyMs * 2 == s0.coveredMs  # a static GPU polls 50 %
    clock.advance_ms(1_000)
    src.poll()
    sampler.collect(read_energy=True)
    assert fake.gpus[0].calls["energy"] == 1 and fake.gpus[1].calls["energy"] == 2


def test_nvml_lost_gpu_gives_flagged_empty_sample() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full())
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    fake.gpus[1].fall_off_bus()
    clock.advance_ms(2_000)
    sampler = Sampler(src)
    s0, s1 = sampler.collect(read_energy=True)
    assert s0.flags == 0
    assert s1.flags & ReportFlag.GPU_LOST and s1.gpuIndex == 1
    assert (s1.busyMs, s1.coveredMs, s1.powerMw, s1.energyMj, s1.memUsedMiB) == (0, 0, 0, 0, 0)
    assert src.capabilities()[1].vram_mib is None  # asking a lost GPU does not raise


def test_nvml_energy_counter_going_backwards_flags_energy_reset() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full())
    sampler = Sampler(NvmlSource(UUIDS, nvml=fake, clock_us=clock))
    clock.advance_ms(1_000)
    sampler.collect(read_energy=True)
    clock.advance_ms(1_000)
    a, _ = sampler.collect(read_energy=True)
    assert not a.flags & ReportFlag.ENERGY_RESET
    fake.gpus[0].reset_energy(1_234)  # driver reloaded
    clock.advance_ms(1_000)
    b, other = sampler.collect(read_energy=True)
    assert b.flags & ReportFlag.ENERGY_RESET and 1_234 < b.energyMj < a.energyMj
    assert not other.flags & ReportFlag.ENERGY_RESET


def test_nvml_new_uncorrected_ecc_errors_flag_ecc_error() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full())
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    clock.advance_ms(1_000)
    assert src.collect(read_energy=False)[0].flags == 0
    fake.gpus[0].ecc_uncorrected = 2
    clock.advance_ms(1_000)
    assert src.collect(read_energy=False)[0].flags & ReportFlag.ECC_ERROR
    clock.advance_ms(1_000)
    assert not src.collect(read_energy=False)[0].flags & ReportFlag.ECC_ERROR  # no new errors since


def test_nvml_ecc_unsupported_is_not_a_missing_sample_field() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full())
    fake.gpus[0].ecc_uncorrected = NOT_SUPPORTED
    sampler = Sampler(NvmlSource(UUIDS, nvml=fake, clock_us=clock))
    clock.advance_ms(1_000)
    s0, _ = sampler.collect(read_energy=True)
    assert s0.flags == 0


def test_nvml_xid_events_map_to_health_flags() -> None:
    clock = ManualClock()
    fake = _timed(clock, Full(), Full())
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    fake.xid_queue += [(UUIDS[1], 79), (UUIDS[0], 48), (UUIDS[0], 13)]
    clock.advance_ms(1_000)
    r0, r1 = src.collect(read_energy=False)
    assert r1.flags & ReportFlag.GPU_LOST
    assert r0.flags & ReportFlag.ECC_ERROR and not r0.flags & ReportFlag.GPU_LOST
    clock.advance_ms(1_000)
    r0, r1 = src.collect(read_energy=False)
    assert r0.flags == 0 and r1.flags == 0


def test_nvml_without_xid_support_still_reads() -> None:
    clock = ManualClock()
    fake = FakeNvml([h200(UUIDS[0], Full())], xid_supported=False, clock_us=clock)
    src = NvmlSource(UUIDS[:1], nvml=fake, clock_us=clock)
    clock.advance_ms(1_000)
    assert src.collect(read_energy=False)[0].busy_ms == 1_000


def test_nvml_without_configured_order_enumerates() -> None:
    src = NvmlSource(None, nvml=_static())
    assert list(src.uuids) == UUIDS


def test_nvml_close_shuts_down_once() -> None:
    fake = _static()
    src = NvmlSource(UUIDS, nvml=fake)
    src.close()
    src.close()
    assert fake.shutdown_called and fake.calls["nvmlShutdown"] == 1


def test_nvml_transient_field_error_is_missing_for_that_interval_only() -> None:
    clock = ManualClock()
    fake = _static(clock_us=clock)
    src = NvmlSource(UUIDS, nvml=fake, clock_us=clock)
    real = fake.nvmlDeviceGetPowerUsage
    answers: list[object] = [pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)]

    def flaky(h: FakeGpu) -> int:
        if answers and h is fake.gpus[0]:
            raise answers.pop()  # type: ignore[misc]
        return real(h)

    fake.nvmlDeviceGetPowerUsage = flaky  # type: ignore[method-assign]
    sampler = Sampler(src)
    clock.advance_ms(1_000)
    src.poll()
    first, _ = sampler.collect(read_energy=False)
    clock.advance_ms(1_000)
    src.poll()
    second, _ = sampler.collect(read_energy=False)
    assert first.flags & SampleField.POWER and first.powerMw == 0
    assert not second.flags & SampleField.POWER and second.powerMw == 350_000
