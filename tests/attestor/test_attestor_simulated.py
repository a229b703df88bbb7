"""The simulated GPU source: deterministic, physically consistent, always flagged SIMULATED."""

from __future__ import annotations

import pytest

from attestor.errors import ConfigError
from attestor.sampler import Sampler
from attestor.source import GPU_MODELS, SimulatedSource, parse_simulate_spec
from ledger.protocol.metering import aggregate_window
from ledger.protocol import ReportFlag

T0 = 1_764_120_000_000


def _run(src: SimulatedSource, n: int, period: int = 1_000) -> list[list[tuple[int, ...]]]:
    return [
        [
            tuple(r.__getattribute__(f) for f in ("gpu_util_bps", "power_mw", "energy_mj", "mem_used_mib", "flags"))
            for r in src.read_all(T0 + k * period)
        ]
        for k in range(n)
    ]


def test_simulated_same_seed_same_readings_other_seed_differs() -> None:
    a = _run(SimulatedSource.from_spec("8xH100", seed=1, profile="bursty"), 30)
    b = _run(SimulatedSource.from_spec("8xH100", seed=1, profile="bursty"), 30)
    c = _run(SimulatedSource.from_spec("8xH100", seed=2, profile="bursty"), 30)
    assert a == b
    assert a != c
    assert SimulatedSource.from_spec("2xH100", seed=1).uuids == SimulatedSource.from_spec("2xH100", seed=1).uuids
    assert SimulatedSource.from_spec("2xH100", seed=1).uuids != SimulatedSource.from_spec("2xH100", seed=2).uuids


def test_simulated_spec_parsing() -> None:
    assert parse_simulate_spec("8xH100") == (8, GPU_MODELS["H100"])
    assert parse_simulate_spec("4×a100") == (4, GPU_MODELS["A100"])
    assert parse_simulate_spec("L4") == (1, GPU_MODELS["L4"])
    with pytest.raises(ConfigError, match="unknown GPU model"):
        parse_simulate_spec("8xZ900")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_simulate_spec("eight H100")
    with pytest.raises(ConfigError, match="profile"):
        SimulatedSource.from_spec("H100", profile="chaotic")


@pytest.mark.parametrize("profile", ["idle", "steady", "bursty"])
def test_simulated_power_in_envelope_and_energy_is_integral_of_power(profile: str) -> None:
    src = SimulatedSource.from_spec("4xH100", seed=7, profile=profile)
    model = src.model
    period = 1_000
    prev = src.read_all(T0)
    integral = [0] * 4
    utils: list[int] = []
    for k in range(1, 121):
        cur = src.read_all(T0 + k * period)
        for r in cur:
            assert r.power_mw is not None and model.idle_mw <= r.power_mw <= model.limit_mw
            assert r.mem_used_mib is not None and 0 < r.mem_used_mib <= model.vram_mib
            assert r.flags == ReportFlag.SIMULATED
            integral[r.index] += r.power_mw * period
            assert r.gpu_util_bps is not None
            utils.append(r.gpu_util_bps)
    for i in range(4):
        first, last = prev[i].energy_mj, cur[i].energy_mj
        assert first is not None and last is not None
        assert 0 <= integral[i] // 1000 - (last - first) <= 1  # exact up to the sub-mJ carry
    if profile == "idle":
        assert max(utils) < 300
    elif profile == "steady":
        assert min(utils) >= 9_000
    else:
        assert min(utils) < 500 and max(utils) >= 9_500  # both phases within two minutes


def test_simulated_busy_time_matches_utilization_integral() -> None:
    src = SimulatedSource.from_spec("2xA100", seed=4, profile="bursty")
    sampler = Sampler(src)
    sampler.tick(T0)
    samples = [s for k in range(1, 61) for s in sampler.tick(T0 + k * 1_000)]
    fig = aggregate_window(samples, T0, T0 + 60_000, 1_000)
    exact = src.busy_ms(0) + src.busy_ms(1)
    assert fig.allocatedMs == 120_000
    assert 0 <= exact - fig.busyMs <= len(samples)  # only per-sample flooring differs
    assert all(s.flags & ReportFlag.SIMULATED for s in samples)
    assert fig.flags & ReportFlag.SIMULATED


def test_simulated_fault_injection_lost_gpu_and_energy_reset() -> None:
    src = SimulatedSource.from_spec("2xH100", seed=1)
    sampler = Sampler(src)
    sampler.tick(T0)
    src.lose_gpu(1)
    src.reset_energy_counter(0)
    a, b = sampler.tick(T0 + 1_000)
    assert a.flags & ReportFlag.ENERGY_RESET and a.energyMj < 1_000
    assert b.flags & ReportFlag.GPU_LOST and b.flags & ReportFlag.SIMULATED and b.powerMw == 0
