"""GPU sources: what the daemon reads, one :class:`GpuInterval` per GPU per sampling interval.

A source summarises each GPU over the interval since its previous summary, from the driver's own
measurements: the utilization sample buffer (busy time with every instant counted once, whatever the
attestor's cadence), GPM (SM and tensor activity), the power sample buffer, the energy counter where the
daemon asks for it (window boundaries), memory in use, health. Figures the GPU does not support are
``None``, never 0; the sampler turns them into flagged samples.

Sources in this package: :class:`attestor.nvml.NvmlSource` (the only code that speaks to the driver), over
the real ``pynvml`` or over :class:`attestor.simdriver.SimulatedNvml`, a driver model that behaves like an
H200's (``--simulate``), so a simulation runs through the very code a real GPU does.
"""

from __future__ import annotations

import hashlib
import re
import uuid as uuid_mod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class GpuInterval:
    """One GPU over ``(ts_ms − interval_ms, ts_ms]``. ``None``: the figure is not supported or could not be
    read (never 0). Units: ms, mW, mJ, MiB. ``flags``: health and provenance bits
    (``ledger.protocol.ReportFlag``: GPU_LOST, ECC_ERROR, UTIL_HOLE, UTIL_POLLED, SIMULATED)."""

    index: int
    ts_ms: int
    interval_ms: int
    covered_ms: int | None  # time the driver's utilization samples cover
    busy_ms: int | None  # busy time per those samples
    util_samples: int
    sm_active_ms: int | None  # GPM SM activity × interval
    tensor_active_ms: int | None
    power_mw: int | None  # mean power over the interval
    power_samples: int  # driver power samples the mean is over (0: a poll)
    energy_mj: int | None  # the energy counter, when read
    energy_read: bool  # False: the counter was not read for this interval (by design)
    mem_used_mib: int | None
    flags: int = 0


@dataclass(frozen=True, slots=True)
class GpuCapabilities:
    """What one GPU can measure, found when the source opens."""

    name: str
    uuid: str
    vram_mib: int | None
    power_limit_mw: int | None
    util_buffer: bool  # nvmlDeviceGetSamples(GPU_UTILIZATION_SAMPLES): busy time without aliasing
    util_buffer_span_ms: int | None  # how far back the buffer reached when the source opened
    power_buffer: bool
    gpm: bool  # SM and tensor activity (Hopper and later)
    energy: bool


class GpuSource(Protocol):
    """What the daemon needs from a GPU source."""

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

    def capabilities(self) -> Sequence[GpuCapabilities]: ...

    def needs_polling(self) -> bool:
        """True when some GPU has no utilization buffer: the daemon must call :meth:`poll` every second."""
        ...

    def poll(self) -> None:
        """Poll util.gpu of the GPUs without a utilization buffer (the aliasing-prone fallback)."""
        ...

    def drain(self) -> bool:
        """Read the driver's sample buffers into memory (without closing an interval); True when a buffer
        was found to have lost samples (the caller should drain more often)."""
        ...

    def collect(self, read_energy: bool, until_ms: int | None = None) -> list[GpuInterval]:
        """Close every GPU's interval now (or at the last driver sample at or before ``until_ms``): one
        :class:`GpuInterval` per GPU that has something new, in registered order."""
        ...

    def close(self) -> None: ...


# --- simulated GPUs: the models and UUIDs a simulated node uses -------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuModel:
    """Physical envelope of a GPU model for the simulator (mW, MiB); ``gpm``: Hopper or later."""

    name: str
    vram_mib: int
    idle_mw: int
    limit_mw: int
    gpm: bool


GPU_MODELS: dict[str, GpuModel] = {
    "H100": GpuModel("NVIDIA H100 80GB HBM3", 81_559, 70_000, 700_000, True),
    "H200": GpuModel("NVIDIA H200", 143_771, 75_000, 700_000, True),
    "B200": GpuModel("NVIDIA B200", 183_359, 140_000, 1_000_000, True),
    "A100": GpuModel("NVIDIA A100-SXM4-80GB", 81_920, 55_000, 400_000, False),
    "L40S": GpuModel("NVIDIA L40S", 46_068, 35_000, 350_000, False),
    "L4": GpuModel("NVIDIA L4", 23_034, 16_000, 72_000, False),
    "RTX4090": GpuModel("NVIDIA GeForce RTX 4090", 24_564, 20_000, 450_000, False),
}

PROFILES = ("idle", "steady", "bursty", "tiny")

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
