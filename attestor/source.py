"""GPU sources: the interface the sampler reads, and the simulated implementation.

A source reads every GPU of the node at once and returns one :class:`GpuReading` per GPU, in the node's
registered order (index ``i`` is the ``i``-th entry of the node's ``gpuUuidHashes`` on-chain). A field the
hardware does not support is ``None`` (never 0); the sampler turns it into a flagged sample.

The NVML implementation lives in :mod:`attestor.nvml` (the only module importing ``pynvml``).
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid as uuid_mod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ledger.protocol import ReportFlag

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One reading of one GPU. ``None`` = the field is not supported / could not be read.

    Units: basis points for utilization, mW for power, mJ for the total-energy counter, MiB for memory.
    ``flags`` carries health bits (``GPU_LOST``, ``ECC_ERROR``) and ``SIMULATED``.
    """

    index: int
    gpu_util_bps: int | None
    mem_util_bps: int | None
    power_mw: int | None
    energy_mj: int | None
    mem_used_mib: int | None
    processes: int | None
    flags: int = 0


class GpuSource(Protocol):
    """What the sampler needs from a GPU source."""

    @property
    def uuids(self) -> Sequence[str]:
        """GPU UUIDs in the node's registered order."""
        ...

    @property
    def model_names(self) -> Sequence[str]: ...

    @property
    def simulated(self) -> bool: ...

    @property
    def driver_version(self) -> str: ...

    @property
    def nvml_version(self) -> str: ...

    def read_all(self, ts_ms: int) -> list[GpuReading]:
        """Read every GPU; ``ts_ms`` is the wall time of the reading (used by the simulated source)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class GpuModel:
    """Physical envelope of a GPU model for the simulator (mW, MiB)."""

    name: str
    vram_mib: int
    idle_mw: int
    limit_mw: int


GPU_MODELS: dict[str, GpuModel] = {
    "H100": GpuModel("NVIDIA H100 80GB HBM3", 81_559, 70_000, 700_000),
    "H200": GpuModel("NVIDIA H200", 143_771, 75_000, 700_000),
    "B200": GpuModel("NVIDIA B200", 183_359, 140_000, 1_000_000),
    "A100": GpuModel("NVIDIA A100-SXM4-80GB", 81_920, 55_000, 400_000),
    "L40S": GpuModel("NVIDIA L40S", 46_068, 35_000, 350_000),
    "L4": GpuModel("NVIDIA L4", 23_034, 16_000, 72_000),
    "RTX4090": GpuModel("NVIDIA GeForce RTX 4090", 24_564, 20_000, 450_000),
}

PROFILES = ("idle", "steady", "bursty")

_SPEC = re.compile(r"^\s*(?:(\d+)\s*[x×X*]\s*)?([A-Za-z0-9]+)\s*$")


def parse_simulate_spec(spec: str) -> tuple[int, GpuModel]:
    """``"8xH100"`` (or ``8×H100``, ``H100`` for one GPU) -> (count, model); raises :class:`ConfigError`."""
    m = _SPEC.match(spec)
    if not m:
        raise ConfigError(f"cannot read GPU spec {spec!r}; expected like 8xH100")
    count = int(m.group(1) or 1)
    key = m.group(2).upper()
    if key not in GPU_MODELS:
        raise ConfigError(f"unknown GPU model {m.group(2)!r}; known: {', '.join(sorted(GPU_MODELS))}")
    if not 1 <= count <= 64:
        raise ConfigError(f"GPU count {count} out of range 1..64")
    return count, GPU_MODELS[key]


def simulated_uuid(seed: int, model: GpuModel, index: int) -> str:
    digest = hashlib.sha256(f"compute-ledger-sim:{seed}:{model.name}:{index}".encode()).digest()
    return "GPU-" + str(uuid_mod.UUID(bytes=digest[:16], version=4))


class _SimGpu:
    """State of one simulated GPU; all arithmetic in integers so energy is exactly Σ power·Δt."""

    __slots__ = (
        "rng",
        "model",
        "profile",
        "energy_mj",
        "carry",
        "last_ts",
        "busy_until",
        "idle_until",
        "busy",
        "job_mib",
        "lost",
        "busy_ms_exact",
        "reset_pending",
    )

    def __init__(self, rng: random.Random, model: GpuModel, profile: str) -> None:
        self.rng = rng
        self.model = model
        self.profile = profile
        self.energy_mj = rng.randrange(10**9, 10**11)  # driver loaded days ago
        self.carry = 0  # sub-mJ remainder of power·Δt, so no energy is lost to rounding
        self.last_ts: int | None = None
        self.busy = profile == "steady"
        self.busy_until = 0
        self.idle_until = 0
        self.job_mib = model.vram_mib * rng.randrange(55, 95) // 100
        self.lost = False
        self.busy_ms_exact = 0  # Σ util_bps·Δt / 10_000, in 10^-4 ms, for consistency checks
        self.reset_pending = False

    def _phase(self, ts: int) -> None:
        if self.profile != "bursty":
            return
        if self.busy and ts >= self.busy_until:
            self.busy = False
            self.idle_until = ts + self.rng.randrange(1_000, 8_000)
        elif not self.busy and ts >= self.idle_until:
            self.busy = True
            self.busy_until = ts + self.rng.randrange(2_000, 10_000)

    def read(self, index: int, ts: int, simulated_flag: int) -> GpuReading:
        if self.lost:
            return GpuReading(index, None, None, None, None, None, None, simulated_flag | ReportFlag.GPU_LOST)
        self._phase(ts)
        rng = self.rng
        m = self.model
        if self.busy:
            util = rng.randrange(9_000, 10_001) if self.profile == "steady" else rng.randrange(9_500, 10_001)
        elif self.profile == "idle":
            util = rng.randrange(0, 300)
        else:
            util = rng.randrange(0, 500)
        # Average power over the interval: idle floor plus a share of the headroom that tracks utilization.
        power = m.idle_mw + (m.limit_mw - m.idle_mw) * util * rng.randrange(80, 96) // 1_000_000
        power = min(max(power, m.idle_mw), m.limit_mw)
        if self.last_ts is not None and ts > self.last_ts:
            dt = ts - self.last_ts
            total = power * dt + self.carry  # mW·ms = µJ
            self.energy_mj += total // 1000
            self.carry = total % 1000
            self.busy_ms_exact += util * dt
        self.last_ts = ts
        if self.reset_pending:  # a driver reload: the counter restarts near zero
            self.energy_mj = rng.randrange(0, 1_000)
            self.reset_pending = False
        has_job = self.profile != "idle"
        mem = self.job_mib + rng.randrange(0, 256) if has_job else 400 + rng.randrange(0, 64)
        return GpuReading(
            index=index,
            gpu_util_bps=util,
            mem_util_bps=util * rng.randrange(30, 60) // 100,
            power_mw=power,
            energy_mj=self.energy_mj,
            mem_used_mib=min(mem, m.vram_mib),
            processes=1 if has_job else 0,
            flags=simulated_flag,
        )


class SimulatedSource:
    """``count`` GPUs of ``model``, deterministic from ``seed`` for the same reading times.

    Physically consistent: power stays between the model's idle floor and its limit; the energy counter is
    the exact integer integral of the reported power over time (each reading's power is the average over
    the interval since the previous reading); utilization is the busy fraction of that interval. Profiles:
    ``idle`` (no job, ~0 % busy), ``steady`` (one job, 90-100 % busy), ``bursty`` (a job alternating busy
    phases of 2-10 s and idle phases of 1-8 s). Every reading carries the ``SIMULATED`` flag.
    """

    def __init__(self, count: int, model: GpuModel, seed: int = 0, profile: str = "steady") -> None:
        if profile not in PROFILES:
            raise ConfigError(f"unknown load profile {profile!r}; known: {', '.join(PROFILES)}")
        if count < 1:
            raise ConfigError("a simulated node needs at least one GPU")
        self._model = model
        self._uuids = [simulated_uuid(seed, model, i) for i in range(count)]
        self._gpus = [_SimGpu(random.Random(f"{seed}:{i}:{profile}"), model, profile) for i in range(count)]
        self._flag = int(ReportFlag.SIMULATED)

    @classmethod
    def from_spec(cls, spec: str, seed: int = 0, profile: str = "steady") -> SimulatedSource:
        count, model = parse_simulate_spec(spec)
        return cls(count, model, seed, profile)

    @property
    def uuids(self) -> Sequence[str]:
        return self._uuids

    @property
    def model_names(self) -> Sequence[str]:
        return [self._model.name] * len(self._uuids)

    @property
    def model(self) -> GpuModel:
        return self._model

    @property
    def simulated(self) -> bool:
        return True

    @property
    def driver_version(self) -> str:
        return "simulated"

    @property
    def nvml_version(self) -> str:
        return "simulated"

    def read_all(self, ts_ms: int) -> list[GpuReading]:
        flag = self._flag
        return [g.read(i, ts_ms, flag) for i, g in enumerate(self._gpus)]

    def busy_ms(self, index: int) -> int:
        """Exact busy time integrated so far (ms, floored): what the utilization readings add up to."""
        return self._gpus[index].busy_ms_exact // 10_000

    def lose_gpu(self, index: int) -> None:
        """Fault injection: the GPU stops answering (like XID 79, fallen off the bus)."""
        self._gpus[index].lost = True

    def reset_energy_counter(self, index: int) -> None:
        """Fault injection: the next reading's energy counter restarts near zero (driver reload)."""
        self._gpus[index].reset_pending = True

    def close(self) -> None:
        return None
