"""ledger.protocol.metering.aggregate_window: window figures from known samples."""

from __future__ import annotations

import pytest

from ledger.protocol.metering import MeteringError, SampleField, aggregate_window
from ledger.protocol import ReportFlag, Sample

P = 1_000  # sampling period (ms)
W0 = 100_000  # window start
NS = int(ReportFlag.FIELD_NOT_SUPPORTED)


def s(
    gpu: int, ts: int, util: int = 10_000, energy: int = 0, mem: int = 100, flags: int = 0, power: int = 300_000
) -> Sample:
    return Sample(gpu, ts, util, 0, power, energy, mem, flags)


def test_aggregate_regular_samples_cover_the_window_exactly() -> None:
    rows = [s(g, W0 + k * P, util=5_000, energy=1_000 + k * 300, mem=100 + k) for g in (0, 1) for k in range(1, 61)]
    f = aggregate_window(rows, W0, W0 + 60 * P, P, energy_baseline={0: 1_000, 1: 1_000})
    assert f.allocatedMs == 2 * 60 * P
    assert f.busyMs == 2 * 60 * (5_000 * P // 10_000)
    assert f.energyMj == 2 * 60 * 300
    assert f.maxMemUsedMiB == 160
    assert f.sampleCount == 120
    assert f.flags == 0
    assert f.energy_baseline == {0: 1_000 + 60 * 300, 1: 1_000 + 60 * 300}


def test_aggregate_busy_is_integer_bps_times_interval() -> None:
    rows = [s(0, W0 + 333, util=3_333), s(0, W0 + 333 + 777, util=9_999)]
    f = aggregate_window(rows, W0, W0 + 2_000, P)
    assert f.allocatedMs == 333 + 777
    assert f.busyMs == 3_333 * 333 // 10_000 + 9_999 * 777 // 10_000


def test_aggregate_gap_caps_coverage_and_sets_sample_gap() -> None:
    rows = [s(0, W0 + P), s(0, W0 + 2 * P), s(0, W0 + 6 * P), s(0, W0 + 7 * P)]
    f = aggregate_window(rows, W0, W0 + 7 * P, P)
    assert f.allocatedMs == 4 * P  # the 3 s hole is not allocated
    assert f.busyMs == 4 * P
    assert f.flags & ReportFlag.SAMPLE_GAP


def test_aggregate_jitter_within_tolerance_is_not_a_gap() -> None:
    rows = [s(0, W0 + P), s(0, W0 + 2 * P + 400), s(0, W0 + 3 * P)]
    f = aggregate_window(rows, W0, W0 + 3 * P, P)
    assert not f.flags & ReportFlag.SAMPLE_GAP
    assert f.allocatedMs == P + P + 600  # the late sample vouches for one period at most


def test_aggregate_first_sample_late_after_window_start_is_a_gap() -> None:
    f = aggregate_window([s(0, W0 + 5 * P)], W0, W0 + 5 * P, P)
    assert f.flags & ReportFlag.SAMPLE_GAP and f.allocatedMs == P


def test_aggregate_clips_to_the_lease() -> None:
    rows = [s(0, W0 + P), s(0, W0 + 2 * P), s(0, W0 + 3 * P)]
    f = aggregate_window(rows, W0, W0 + 3 * P, P, lease_start_ms=W0 + 500, lease_end_ms=W0 + 2 * P + 250)
    assert f.allocatedMs == 500 + P + 250


def test_aggregate_energy_reset_counts_from_new_value() -> None:
    rows = [
        s(0, W0 + P, energy=10_000),
        s(0, W0 + 2 * P, energy=10_500),
        s(0, W0 + 3 * P, energy=40),
        s(0, W0 + 4 * P, energy=240),
    ]
    f = aggregate_window(rows, W0, W0 + 4 * P, P, energy_baseline={0: 9_000})
    assert f.energyMj == 1_000 + 500 + 0 + 200
    assert f.flags & ReportFlag.ENERGY_RESET
    assert f.energy_baseline == {0: 240}


def test_aggregate_energy_without_baseline_starts_at_first_counter() -> None:
    rows = [s(0, W0 + P, energy=10_000), s(0, W0 + 2 * P, energy=10_700)]
    f = aggregate_window(rows, W0, W0 + 2 * P, P)
    assert f.energyMj == 700 and not f.flags & ReportFlag.ENERGY_RESET


def test_aggregate_missing_fields_are_not_read_as_zero() -> None:
    rows = [
        s(0, W0 + P, energy=1_000, mem=500),
        s(
            0,
            W0 + 2 * P,
            util=0,
            energy=0,
            mem=0,
            flags=NS | SampleField.ENERGY | SampleField.MEM_USED | SampleField.GPU_UTIL,
        ),
        s(0, W0 + 3 * P, util=2_000, energy=1_600, mem=200),
    ]
    f = aggregate_window(rows, W0, W0 + 3 * P, P)
    assert f.energyMj == 600  # the missing counter is skipped, not taken as a reset to 0
    assert not f.flags & ReportFlag.ENERGY_RESET
    assert f.flags & ReportFlag.FIELD_NOT_SUPPORTED
    assert f.flags < (1 << 16)  # sample-only field bits stay out of the report flags
    assert f.maxMemUsedMiB == 500
    assert f.allocatedMs == 3 * P
    assert f.busyMs == P + 0 + 200  # the missing utilization contributes no busy time


def test_aggregate_lost_gpu_sample_covers_nothing() -> None:
    rows = [
        s(0, W0 + P, energy=100),
        s(0, W0 + 2 * P, util=0, energy=0, mem=0, flags=ReportFlag.GPU_LOST),
        s(1, W0 + P, energy=5),
    ]
    f = aggregate_window(rows, W0, W0 + 2 * P, P)
    assert f.allocatedMs == 2 * P and f.busyMs == 2 * P
    assert f.flags & ReportFlag.GPU_LOST and not f.flags & ReportFlag.ENERGY_RESET
    assert f.energy_baseline == {0: 100, 1: 5}


def test_aggregate_rejects_samples_outside_the_window() -> None:
    with pytest.raises(MeteringError, match="outside"):
        aggregate_window([s(0, W0)], W0, W0 + P, P)
    with pytest.raises(MeteringError, match="outside"):
        aggregate_window([s(0, W0 + P + 1)], W0, W0 + P, P)


def test_aggregate_rejects_duplicate_timestamps_and_foreign_gpus() -> None:
    with pytest.raises(MeteringError, match="two samples"):
        aggregate_window([s(0, W0 + P), s(0, W0 + P)], W0, W0 + P, P)
    with pytest.raises(MeteringError, match="does not belong"):
        aggregate_window([s(3, W0 + P)], W0, W0 + P, P, gpu_indices=[0, 1])


def test_aggregate_is_independent_of_sample_order() -> None:
    rows = [s(g, W0 + k * P, util=1_000 * k, energy=k * k * 10, mem=k) for g in (0, 1) for k in range(1, 8)]
    a = aggregate_window(rows, W0, W0 + 7 * P, P, energy_baseline={0: 0})
    b = aggregate_window(list(reversed(rows)), W0, W0 + 7 * P, P, energy_baseline={0: 0})
    assert a == b
