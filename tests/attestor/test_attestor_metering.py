"""ledger.protocol.metering.aggregate_window (protocol v2): window figures from known samples."""

from __future__ import annotations

import random

import pytest

from ledger.protocol import ReportFlag, Sample
from ledger.protocol.metering import MeteringError, SampleField, aggregate_window, energy_split

P = 1_000  # sampling period (ms)
W0 = 100_000  # window start
NS = int(ReportFlag.FIELD_NOT_SUPPORTED)
UNREAD = int(SampleField.ENERGY_UNREAD)


def s(
    gpu: int,
    ts: int,
    interval: int = P,
    *,
    covered: int | None = None,
    busy: int | None = None,
    sm: int = 0,
    tensor: int = 0,
    energy: int = 0,
    mem: int = 100,
    flags: int = 0,
    power: int = 300_000,
) -> Sample:
    covered = interval if covered is None else covered
    busy = covered if busy is None else busy
    return Sample(gpu, ts, interval, covered, busy, covered // 200, sm, tensor, power, 100, energy, mem, flags)


def test_aggregate_contiguous_samples_cover_the_window_exactly() -> None:
    rows = [
        s(g, W0 + k * P, busy=500, sm=450, tensor=400, energy=1_000 + k * 300, mem=100 + k)
        for g in (0, 1)
        for k in range(1, 61)
    ]
    f = aggregate_window(rows, W0, W0 + 60 * P, P, energy_baseline={0: 1_000, 1: 1_000})
    assert f.allocatedMs == 2 * 60 * P
    assert (f.busyMs, f.smActiveMs, f.tensorActiveMs) == (2 * 60 * 500, 2 * 60 * 450, 2 * 60 * 400)
    assert f.energyMj == 2 * 60 * 300
    assert f.maxMemUsedMiB == 160 and f.sampleCount == 120 and f.flags == 0
    assert f.energy_baseline == {0: 1_000 + 60 * 300, 1: 1_000 + 60 * 300}
    assert f.sample_ends == {0: W0 + 60 * P, 1: W0 + 60 * P}


def test_aggregate_an_interval_may_begin_before_the_window() -> None:
    """Samples follow the driver's timeline, which does not stop at a window boundary: the sample ending just
    after the window start counts whole (it is in no earlier window)."""
    rows = [s(0, W0 + 150, interval=1_150), s(0, W0 + 1_150, interval=1_000)]
    f = aggregate_window(rows, W0, W0 + 1_150, P, sample_ends={0: W0 - 1_000})
    assert f.allocatedMs == 2_150 and f.flags == 0


def test_aggregate_covered_time_is_what_the_drivers_samples_vouch_for() -> None:
    rows = [s(0, W0 + P, covered=600, busy=300), s(0, W0 + 2 * P, covered=1_000, busy=1_000)]
    f = aggregate_window(rows, W0, W0 + 2 * P, P)
    assert (f.allocatedMs, f.busyMs) == (1_600, 1_300)  # the hole (400 ms) is neither busy nor allocated


def test_aggregate_gap_between_intervals_sets_sample_gap() -> None:
    rows = [s(0, W0 + P), s(0, W0 + 2 * P), s(0, W0 + 6 * P), s(0, W0 + 7 * P)]
    f = aggregate_window(rows, W0, W0 + 7 * P, P)
    assert f.allocatedMs == 4 * P  # the 3 s without a sample is not allocated
    assert f.busyMs == 4 * P
    assert f.flags & ReportFlag.SAMPLE_GAP


def test_aggregate_a_short_stretch_within_tolerance_is_not_a_gap() -> None:
    rows = [s(0, W0 + P), s(0, W0 + 2 * P + 400), s(0, W0 + 3 * P + 400)]
    f = aggregate_window(rows, W0, W0 + 4 * P, P)
    assert not f.flags & ReportFlag.SAMPLE_GAP and f.allocatedMs == 3 * P


def test_aggregate_first_sample_late_after_window_start_is_a_gap() -> None:
    f = aggregate_window([s(0, W0 + 5 * P)], W0, W0 + 5 * P, P)
    assert f.flags & ReportFlag.SAMPLE_GAP and f.allocatedMs == P


def test_aggregate_clips_every_figure_to_the_lease() -> None:
    rows = [s(0, W0 + P, busy=1_000, sm=800), s(0, W0 + 2 * P, busy=1_000, sm=800), s(0, W0 + 3 * P, busy=500, sm=400)]
    f = aggregate_window(rows, W0, W0 + 3 * P, P, lease_start_ms=W0 + 500, lease_end_ms=W0 + 2 * P + 250)
    assert f.allocatedMs == 500 + P + 250
    assert f.busyMs == 500 + 1_000 + 500 * 250 // 1_000
    assert f.smActiveMs == 800 * 500 // 1_000 + 800 + 400 * 250 // 1_000


def test_aggregate_rejects_overlapping_intervals_in_and_across_windows() -> None:
    with pytest.raises(MeteringError, match="overlaps"):
        aggregate_window([s(0, W0 + P), s(0, W0 + P + 500)], W0, W0 + 2 * P, P)
    with pytest.raises(MeteringError, match="overlaps"):  # the carried end of the previous window's last sample
        aggregate_window([s(0, W0 + 500)], W0, W0 + P, P, sample_ends={0: W0})


def test_aggregate_rejects_impossible_figures() -> None:
    with pytest.raises(MeteringError, match="busy"):
        aggregate_window([s(0, W0 + P, covered=500, busy=600)], W0, W0 + P, P)
    with pytest.raises(MeteringError, match="busy"):
        aggregate_window([s(0, W0 + P, covered=1_200)], W0, W0 + P, P)
    with pytest.raises(MeteringError, match="SM or tensor"):
        aggregate_window([s(0, W0 + P, sm=1_001)], W0, W0 + P, P)
    with pytest.raises(MeteringError, match="empty interval"):
        aggregate_window([s(0, W0 + P, interval=0, covered=0)], W0, W0 + P, P)


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


def test_aggregate_energy_read_at_boundaries_only_is_exact() -> None:
    """The counter is read where a window needs it: unread samples neither count nor reset anything."""
    rows = [s(0, W0 + k * P, energy=0, flags=UNREAD) for k in range(1, 5)] + [s(0, W0 + 5 * P, energy=12_500)]
    f = aggregate_window(rows, W0, W0 + 5 * P, P, energy_baseline={0: 10_000})
    assert f.energyMj == 2_500 and not f.flags & ReportFlag.ENERGY_RESET and f.energy_baseline == {0: 12_500}
    assert f.flags & UNREAD == 0  # sample-only bits stay out of the report's flags


def test_aggregate_energy_without_baseline_starts_at_first_counter() -> None:
    rows = [s(0, W0 + P, energy=10_000), s(0, W0 + 2 * P, energy=10_700)]
    f = aggregate_window(rows, W0, W0 + 2 * P, P)
    assert f.energyMj == 700 and not f.flags & ReportFlag.ENERGY_RESET


def test_aggregate_missing_fields_are_not_read_as_zero() -> None:
    rows = [
        s(0, W0 + P, energy=1_000, mem=500, sm=100),
        s(
            0,
            W0 + 2 * P,
            covered=0,
            busy=0,
            energy=0,
            mem=0,
            flags=NS | SampleField.ENERGY | SampleField.MEM_USED | SampleField.GPU_UTIL | SampleField.SM_ACTIVE,
        ),
        s(0, W0 + 3 * P, busy=200, energy=1_600, mem=200, sm=100),
    ]
    f = aggregate_window(rows, W0, W0 + 3 * P, P)
    assert f.energyMj == 600  # the missing counter is skipped, not taken as a reset to 0
    assert not f.flags & ReportFlag.ENERGY_RESET
    assert f.flags & ReportFlag.FIELD_NOT_SUPPORTED
    assert f.flags < (1 << 16)  # sample-only field bits stay out of the report flags
    assert f.maxMemUsedMiB == 500
    assert f.allocatedMs == 2 * P  # the sample without utilization vouches for no time
    assert f.busyMs == P + 200 and f.smActiveMs == 200


def test_aggregate_lost_gpu_sample_covers_nothing() -> None:
    rows = [
        s(0, W0 + P, energy=100),
        s(0, W0 + 2 * P, covered=0, busy=0, energy=0, mem=0, flags=ReportFlag.GPU_LOST),
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
    rows = [
        s(g, W0 + k * P, busy=100 * k, sm=90 * k, energy=k * k * 10 + 1, mem=k, flags=0 if k % 3 == 0 else UNREAD)
        for g in (0, 1)
        for k in range(1, 8)
    ]
    a = aggregate_window(rows, W0, W0 + 7 * P, P, energy_baseline={0: 0})
    b = aggregate_window(list(reversed(rows)), W0, W0 + 7 * P, P, energy_baseline={0: 0})
    assert a == b


def test_aggregate_a_lease_gpu_without_any_sample_is_a_gap() -> None:
    rows = [s(0, W0 + k * P) for k in range(1, 4)]
    assert aggregate_window(rows, W0, W0 + 3 * P, P, gpu_indices=[0]).flags == 0
    f = aggregate_window(rows, W0, W0 + 3 * P, P, gpu_indices=[0, 1])
    assert f.flags & ReportFlag.SAMPLE_GAP and f.allocatedMs == 3 * P
    short = aggregate_window([s(0, W0 + 400, interval=400)], W0, W0 + 400, P, gpu_indices=[0, 1])
    assert not short.flags & ReportFlag.SAMPLE_GAP  # a window shorter than the tolerance: nothing missed


def test_energy_split_finishes_to_the_rule_for_any_baseline() -> None:
    """The bridge checks a window's energyMj at intake from its samples and the previous report's counters
    (api.store.reports): ``energy_split`` + ``energy_mj(baseline)`` must be rule 8 exactly, resets, unread and
    lost readings included."""
    rng = random.Random(3)
    invalid = (0, 0, 0, int(SampleField.ENERGY_UNREAD), int(SampleField.ENERGY), int(ReportFlag.GPU_LOST))
    for _ in range(300):
        samples, counters = [], {g: rng.randint(0, 10**6) for g in range(3)}
        for k in range(rng.randint(1, 6)):
            for g in range(3):
                if rng.random() < 0.2:
                    continue
                counters[g] = rng.randint(0, 10**5) if rng.random() < 0.1 else counters[g] + rng.randint(0, 10**4)
                flags = rng.choice(invalid)
                samples.append(Sample(g, 1000 * (k + 1), 1000, 1000, 0, 5, 0, 0, 1, 1, counters[g], 1, flags))
        baseline = {g: rng.randint(0, 2 * 10**6) for g in range(3) if rng.random() < 0.7}
        alone = aggregate_window(samples, 0, 6000, 1000)
        split = energy_split(samples, alone.energyMj)
        assert split.energy_mj(baseline) == aggregate_window(samples, 0, 6000, 1000, energy_baseline=baseline).energyMj
        assert dict(split.last) == {g: c for g, c in alone.energy_baseline.items()}
