"""A simulated node (``--simulate``): the NVML source over the simulated driver, deterministic in its seed,
physically consistent, always flagged SIMULATED."""

from __future__ import annotations

import pytest

from attestor.errors import ConfigError
from attestor.sampler import Sampler
from attestor.simdriver import PROFILES, ManualClock, simulated_source
from attestor.source import GPU_MODELS, parse_simulate_spec
from ledger.protocol import ReportFlag
from ledger.protocol.metering import aggregate_window
from ledger.protocol.samples import SampleField

PERIOD = 5_000


def _run(spec: str, seed: int, profile: str, n: int) -> list[list[tuple[int, ...]]]:
    clock = ManualClock()
    src = simulated_source(spec, seed=seed, profile=profile, clock_us=clock)
    out = []
    for _ in range(n):
        clock.advance_ms(PERIOD)
        out.append([(r.busy_ms or 0, r.sm_active_ms or 0, r.power_mw or 0, r.mem_used_mib or 0) for r in src.collect(True)])
    return out


def test_simulated_same_seed_same_samples_other_seed_differs() -> None:
    a = _run("8xH100", 1, "bursty", 12)
    assert a == _run("8xH100", 1, "bursty", 12)
    assert a != _run("8xH100", 2, "bursty", 12)
    assert simulated_source("2xH100", seed=1).uuids == simulated_source("2xH100", seed=1).uuids
    assert simulated_source("2xH100", seed=1).uuids != simulated_source("2xH100", seed=2).uuids


def test_simulated_spec_parsing() -> None:
    assert parse_simulate_spec("8xH100") == (8, GPU_MODELS["H100"])
    assert parse_simulate_spec("4×a100") == (4, GPU_MODELS["A100"])
    assert parse_simulate_spec("L4") == (1, GPU_MODELS["L4"])
    with pytest.raises(ConfigError, match="unknown GPU model"):
        parse_simulate_spec("8xZ900")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_simulate_spec("eight H100")
    with pytest.raises(ConfigError, match="profile"):
        simulated_source("H100", profile="chaotic")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_simulated_power_in_envelope_and_energy_matches_the_load(profile: str) -> None:
    clock = ManualClock()
    src = simulated_source("4xH100", seed=7, profile=profile, clock_us=clock)
    model = GPU_MODELS["H100"]
    sampler = Sampler(src)
    rows = []
    for _ in range(24):  # two minutes
        clock.advance_ms(PERIOD)
        rows += sampler.collect(read_energy=True)
    for s in rows:
        assert model.idle_mw <= s.powerMw <= model.limit_mw and 0 < s.memUsedMiB <= model.vram_mib
        assert s.flags == ReportFlag.SIMULATED
        assert s.coveredMs == s.intervalMs and s.busyMs <= s.coveredMs and s.smActiveMs <= s.intervalMs
    for g in range(4):
        mine = [s for s in rows if s.gpuIndex == g]
        energy = mine[-1].energyMj - mine[0].energyMj
        span = mine[-1].tsMs - mine[0].tsMs
        assert model.idle_mw * span // 1000 <= energy * 1.01 and energy <= model.limit_mw * span // 1000 * 1.01
    util = sum(s.busyMs for s in rows) / sum(s.coveredMs for s in rows)
    sm = sum(s.smActiveMs for s in rows) / sum(s.intervalMs for s in rows)
    expected = {"idle": (0.0, 0.0), "steady": (1.0, 0.964), "tiny": (0.2, 0.004)}
    if profile in expected:
        assert (round(util, 3), round(sm, 3)) == expected[profile]
    else:  # bursty: busy part of the time, and the SMs busy about as often as util.gpu says
        assert 0.05 < util < 0.95 and abs(sm - 0.964 * util) < 0.05


def test_simulated_busy_time_is_the_driver_truth_within_its_flooring() -> None:
    clock = ManualClock()
    src = simulated_source("2xA100", seed=4, profile="bursty", clock_us=clock)
    driver = src.nvml  # the simulated driver, for the ground truth
    sampler = Sampler(src)
    start = [None, None]
    samples = []
    for _ in range(12):
        clock.advance_ms(PERIOD)
        samples += sampler.collect(read_energy=False)
    for s in samples:
        if start[s.gpuIndex] is None:
            start[s.gpuIndex] = s.tsMs - s.intervalMs
    lo = min(s.tsMs - s.intervalMs for s in samples)
    fig = aggregate_window(samples, lo, max(s.tsMs for s in samples), PERIOD)
    truth = sum(
        driver.gpus[g].true_busy_ms(start[g] * 1000, max(s.tsMs for s in samples if s.gpuIndex == g) * 1000)
        for g in (0, 1)
    )
    assert fig.allocatedMs == sum(s.intervalMs for s in samples)
    assert abs(fig.busyMs - truth) <= truth * 0.01  # only the driver's per-sample flooring differs
    assert all(s.flags & SampleField.SM_ACTIVE and s.flags & ReportFlag.NO_GPM for s in samples)  # A100: no GPM
    assert fig.flags & ReportFlag.SIMULATED


def test_simulated_fault_injection_lost_gpu_and_energy_reset() -> None:
    clock = ManualClock()
    src = simulated_source("2xH100", seed=1, clock_us=clock)
    sampler = Sampler(src)
    clock.advance_ms(PERIOD)
    sampler.collect(read_energy=True)
    src.nvml.gpus[1].fall_off_bus()
    src.nvml.gpus[0].reset_energy(0)
    clock.advance_ms(PERIOD)
    a, b = sampler.collect(read_energy=True)
    assert a.flags & ReportFlag.ENERGY_RESET and a.energyMj < 5 * 700_000
    assert b.flags & ReportFlag.GPU_LOST and b.flags & ReportFlag.SIMULATED and b.powerMw == 0
