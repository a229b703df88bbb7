"""A simulated NVIDIA driver: a stand-in for the ``pynvml`` module that behaves like the driver on an H200.

``attestor --simulate`` and ``compute-ledger demo`` run :class:`attestor.nvml.NvmlSource` over it, so a
simulated node is metered by the very code a real GPU is; tests and the benchmarks use it as the realistic
fake driver. Same function names as ``pynvml``, the real pynvml error classes: errors are raised exactly as
the real bindings raise them, ``pynvml.NVMLError(code)``, which pynvml maps to its ``NVMLError_<Name>``
subclass. Handles are :class:`SimGpu` objects. :func:`simulated_node` builds a node from a spec like
``8xH100`` and a load profile.

Two kinds of GPU
----------------
*Static* (``workload=None``, the default, what the older tests use): every field answers the value it is
set to; set a field to ``NOT_SUPPORTED`` to make it answer NVML_ERROR_NOT_SUPPORTED. A static GPU has no
sample buffers and no GPM (``nvmlDeviceGetSamples`` and ``nvmlGpmSampleGet`` answer NOT_SUPPORTED,
``nvmlGpmQueryDeviceSupport`` answers ``isSupportedDevice == 0``).

*Time-driven* (``workload=`` a :class:`Workload`): a model of the driver on an NVIDIA H200, driven by the
clock handed to :class:`SimulatedNvml` (``clock_us``: unix time in integer microseconds; tests pass a
:class:`ManualClock`, benches :func:`wall_clock_us`). What it reproduces, measured on a real H200 (driver
580.159.04, nvidia-ml-py 13.615.71):

* utilization: the driver keeps one sample per 200 ms period (GPU and memory utilization), readable with
  ``nvmlDeviceGetSamples(h, NVML_GPU_UTILIZATION_SAMPLES | NVML_MEMORY_UTILIZATION_SAMPLES, lastSeen)``
  -> ``(NVML_VALUE_TYPE_UNSIGNED_INT, [c_nvmlSample_t])``: only samples with ``timeStamp > lastSeen``
  (``lastSeen == 0``: everything buffered), NVML_ERROR_NOT_FOUND when there is none. ``timeStamp`` is unix
  time in microseconds and is the END of the sample's period; ``sampleValue.uiVal`` is the integer percent
  of that period, **floored** (a period 99.9 % busy reads 99). ``nvmlDeviceGetUtilizationRates`` answers
  the last completed period's values, so polling it aliases exactly as the real driver does (1 s polls in
  phase with a 0.5 s on / 0.5 s off load read 0 % every time);
* power: one sample per 20 ms, in mW, ``idle_mw + (tdp_mw - idle_mw) * power_activity`` averaged over the
  20 ms and floored; ``nvmlDeviceGetPowerUsage`` answers the last completed one;
* ``nvmlDeviceGetTotalEnergyConsumption``: mJ since the counter's origin (driver load), the exact integral
  of the same power model, floored: no sampling error at all;
* GPM (Hopper and later): ``nvmlGpmQueryDeviceSupport``, ``nvmlGpmSampleAlloc/Get/Free``,
  ``nvmlGpmMetricsGet`` filling the real ``pynvml.c_nvmlGpmMetricsGet_t`` (sample handles are real
  ``c_nvmlGpmSample_t`` pointers to memory the simulator owns); SM_UTIL etc. are the exact averages of the
  workload over the time between the two samples. ``gpm_supported=False`` behaves like a pre-Hopper GPU;
* CPU cost per call (``costs=MEASURED_COSTS_MS``): 4.04 ms for the energy counter, 2.4 ms for a read of a
  utilization buffer, 0.31 ms for the power buffer, ~0.005 ms for anything else, spent as real CPU time;
* a tiny-kernel loop reads 20 % util.gpu but 0.4 % SM activity; a bf16 matmul 100 % and 96.4 %.

ASSUMPTIONS (not measured; change them through the constructor arguments when better figures exist):

* the sample buffers' capacities are UNKNOWN to us. Defaults: utilization (and memory utilization)
  ``util_capacity=100`` samples (= 20 s at 200 ms), power ``power_capacity=100`` samples (= 2 s at 20 ms).
  A read that comes later than ``capacity`` periods after the previous one finds only the newest
  ``capacity`` samples: the older ones are lost (the hole an attestor that reads too late would see);
* where the sample periods start: timestamps are ``phase + k * period``; the phase is
  ``sample_phase_us`` or, by default, derived from the GPU's UUID (crc32) so that periods are not aligned
  to whole seconds. Power sample times are the same phase modulo 20 ms, so every utilization timestamp is
  also a power timestamp;
* power: ``tdp_mw=700_000`` (the H200 SXM's board power limit), ``idle_mw=75_000``; a matmul burst draws
  the full TDP (``power_bps=10_000``) and a tiny-kernel loop 10 % of the range above idle;
* tensor activity of a bf16 matmul 90 %, occupancy 20 %, DRAM bandwidth 30 %, memory utilization 30 %;
  tiny kernels: memory utilization 1 %, DRAM 0.5 %, occupancy 0.5 %, no tensor work;
* ``nvmlGpmMetricsGet`` answers NVML_ERROR_INVALID_ARGUMENT unless sample2 was taken after sample1 on the
  same GPU; a metric the model does not know gets ``nvmlReturn = NVML_ERROR_NOT_SUPPORTED``;
* the CPU cost of a memory-utilization buffer read is taken equal to the GPU-utilization one (2.4 ms);
  GPM calls cost the default 0.005 ms.

Everything is deterministic given the clock: sample values are pure functions of their period and the
workload, computed lazily when read (nothing runs in the background).
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import pynvml

from .errors import ConfigError
from .nvml import NvmlSource
from .source import parse_simulate_spec, simulated_uuid

NOT_SUPPORTED = object()

ClockUs = Callable[[], int]
"""Unix time in integer microseconds."""

BPS = 10_000
"""Basis points in 100 %: activities are integers 0..10_000."""

T0_US = 1_764_120_000_000_000
"""A whole second (2025-11-26), the default start of a :class:`ManualClock`."""

# -- measured on a real H200 (driver 580.159.04, nvidia-ml-py 13.615.71) -----------------------------------
UTIL_PERIOD_US = 200_000
POWER_PERIOD_US = 20_000
MATMUL_SM_BPS = 9_640  # GPM SM_UTIL of a full bf16 matmul: 96.4 %
TINY_KERNELS_SM_BPS = 40  # GPM SM_UTIL of a loop of tiny kernels: 0.4 % (while util.gpu reads 20 %)
TINY_KERNELS_UTIL_PCT = 20

MEASURED_COSTS_MS: Mapping[str, float] = {
    "nvmlDeviceGetTotalEnergyConsumption": 4.04,
    "nvmlDeviceGetSamples/GPU_UTILIZATION": 2.4,
    "nvmlDeviceGetSamples/MEMORY_UTILIZATION": 2.4,  # assumption: same kind of buffer as GPU utilization
    "nvmlDeviceGetSamples/TOTAL_POWER": 0.31,
    "*": 0.005,  # every other call measured 0.001-0.007 ms
}
"""CPU milliseconds per call, by function name (``nvmlDeviceGetSamples/<TYPE>`` per buffer); ``*``: the rest."""

# -- assumptions (see the module docstring) -----------------------------------------------------------------
DEFAULT_UTIL_CAPACITY = 100
DEFAULT_POWER_CAPACITY = 100
H200_TDP_MW = 700_000
H200_IDLE_MW = 75_000
H200_MEM_TOTAL_BYTES = 143_771 * 1024 * 1024  # what nvidia-smi lists for an H200 SXM 141GB
MATMUL_TENSOR_BPS = 9_000
MATMUL_OCCUPANCY_BPS = 2_000
MATMUL_DRAM_BPS = 3_000
MATMUL_MEM_UTIL_PCT = 30
TINY_KERNELS_POWER_BPS = 1_000

_SAMPLE_TYPES = {
    pynvml.NVML_TOTAL_POWER_SAMPLES: "TOTAL_POWER",
    pynvml.NVML_GPU_UTILIZATION_SAMPLES: "GPU_UTILIZATION",
    pynvml.NVML_MEMORY_UTILIZATION_SAMPLES: "MEMORY_UTILIZATION",
}


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


def _us(ms: float) -> int:
    return round(ms * 1000)


def wall_clock_us() -> int:
    """The machine's unix time in microseconds (for benches)."""
    return time.time_ns() // 1000


def burn_cpu_ms(ms: float) -> None:
    """Spend ``ms`` milliseconds of this thread's CPU time in a busy loop (not a sleep)."""
    if ms <= 0:
        return
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


class ManualClock:
    """Time that moves only when told to: ``clock()`` is unix µs.

    Also offers the attestor's ``Clock`` protocol (``wall_ms``, ``monotonic``, ``wait`` advances the clock), so
    one clock can drive both the simulated driver and the attestor loop.
    """

    def __init__(self, start_us: int = T0_US) -> None:
        self.now_us = int(start_us)

    def __call__(self) -> int:
        return self.now_us

    def advance_us(self, us: int) -> int:
        if us < 0:
            raise ValueError("time does not go backwards")
        self.now_us += int(us)
        return self.now_us

    def advance_ms(self, ms: float) -> int:
        return self.advance_us(_us(ms))

    def set_us(self, us: int) -> int:
        return self.advance_us(int(us) - self.now_us)

    def wall_ms(self) -> int:
        return self.now_us // 1000

    def wall_us(self) -> int:
        return self.now_us

    def monotonic(self) -> float:
        return self.now_us / 1_000_000

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.advance_us(max(1, round(seconds * 1_000_000)))
        return event.is_set()


# -- workloads ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    """Integrals over an interval in basis-point microseconds: ``10_000 * duration_us`` is 100 % throughout.

    ``util``: the driver's util.gpu (a kernel running); ``mem_util``: its memory utilization; ``sm``,
    ``occupancy``, ``tensor``, ``dram``: the GPM metrics; ``power``: where the power draw sits between idle
    (0) and TDP (10_000).
    """

    util: int = 0
    mem_util: int = 0
    sm: int = 0
    occupancy: int = 0
    tensor: int = 0
    dram: int = 0
    power: int = 0

    def __add__(self, other: Activity) -> Activity:
        return Activity(
            self.util + other.util,
            self.mem_util + other.mem_util,
            self.sm + other.sm,
            self.occupancy + other.occupancy,
            self.tensor + other.tensor,
            self.dram + other.dram,
            self.power + other.power,
        )


@dataclass(frozen=True)
class Level:
    """A constant activity, every field in basis points (0..10_000)."""

    util_bps: int = 0
    mem_util_bps: int = 0
    sm_bps: int = 0
    occupancy_bps: int = 0
    tensor_bps: int = 0
    dram_bps: int = 0
    power_bps: int = 0

    def __post_init__(self) -> None:
        for name, v in vars(self).items():
            if not isinstance(v, int) or not 0 <= v <= BPS:
                raise ValueError(f"{name} must be an integer 0..{BPS}, got {v!r}")

    def over(self, dt_us: int) -> Activity:
        return Activity(
            self.util_bps * dt_us,
            self.mem_util_bps * dt_us,
            self.sm_bps * dt_us,
            self.occupancy_bps * dt_us,
            self.tensor_bps * dt_us,
            self.dram_bps * dt_us,
            self.power_bps * dt_us,
        )


IDLE_LEVEL = Level()


def energy_mj(activity: Activity, dt_us: int, *, idle_mw: int, tdp_mw: int) -> Fraction:
    """Exact energy (mJ) of ``activity`` over ``dt_us``: ``idle + (tdp - idle) * power`` integrated."""
    # mW x µs = 1e-6 mJ; the power activity carries a factor BPS
    return Fraction(idle_mw * BPS * dt_us + (tdp_mw - idle_mw) * activity.power, BPS * 1_000_000)


class Workload(ABC):
    """What a GPU is doing over time. Subclasses give exact integrals over any interval (no stepping)."""

    @abstractmethod
    def activity(self, t0_us: int, t1_us: int) -> Activity:
        """Exact integrals over [t0_us, t1_us)."""

    def busy_fraction(self, t0_us: int, t1_us: int) -> Fraction:
        """Exact util.gpu fraction (0..1) over [t0_us, t1_us)."""
        return Fraction(self.activity(t0_us, t1_us).util, BPS * (t1_us - t0_us))

    def sm_fraction(self, t0_us: int, t1_us: int) -> Fraction:
        return Fraction(self.activity(t0_us, t1_us).sm, BPS * (t1_us - t0_us))

    def tensor_fraction(self, t0_us: int, t1_us: int) -> Fraction:
        return Fraction(self.activity(t0_us, t1_us).tensor, BPS * (t1_us - t0_us))

    def true_busy_ms(self, t0_us: int, t1_us: int) -> Fraction:
        """Exact busy (util.gpu) time in ms between two instants."""
        return Fraction(self.activity(t0_us, t1_us).util, BPS * 1000)

    def true_sm_active_ms(self, t0_us: int, t1_us: int) -> Fraction:
        """Exact SM-active time in ms (SM activity integrated) between two instants."""
        return Fraction(self.activity(t0_us, t1_us).sm, BPS * 1000)

    def true_tensor_active_ms(self, t0_us: int, t1_us: int) -> Fraction:
        return Fraction(self.activity(t0_us, t1_us).tensor, BPS * 1000)

    def true_energy_mj(
        self, t0_us: int, t1_us: int, *, idle_mw: int = H200_IDLE_MW, tdp_mw: int = H200_TDP_MW
    ) -> Fraction:
        """Exact energy in mJ between two instants under the power model."""
        return energy_mj(self.activity(t0_us, t1_us), t1_us - t0_us, idle_mw=idle_mw, tdp_mw=tdp_mw)


class _Steady(Workload):
    """A workload that does the same thing all the time."""

    @property
    @abstractmethod
    def level(self) -> Level: ...

    def activity(self, t0_us: int, t1_us: int) -> Activity:
        if t1_us < t0_us:
            raise ValueError("interval ends before it starts")
        return self.level.over(t1_us - t0_us)


@dataclass(frozen=True)
class Idle(_Steady):
    """Nothing running: 0 % everywhere, idle power."""

    @property
    def level(self) -> Level:
        return IDLE_LEVEL


@dataclass(frozen=True)
class Full(_Steady):
    """Back-to-back full bf16 matmuls: 100 % util.gpu, 96.4 % SM activity."""

    sm_active_bps: int = MATMUL_SM_BPS
    tensor_bps: int = MATMUL_TENSOR_BPS
    occupancy_bps: int = MATMUL_OCCUPANCY_BPS
    dram_bps: int = MATMUL_DRAM_BPS
    mem_util_pct: int = MATMUL_MEM_UTIL_PCT
    power_bps: int = BPS

    @property
    def level(self) -> Level:
        return Level(
            BPS, self.mem_util_pct * 100, self.sm_active_bps, self.occupancy_bps, self.tensor_bps,
            self.dram_bps, self.power_bps,
        )  # fmt: skip


@dataclass(frozen=True)
class TinyKernels(_Steady):
    """A loop of tiny kernels: util.gpu 20 % (a kernel is running 20 % of the time) but 0.4 % SM activity."""

    util_pct: int = TINY_KERNELS_UTIL_PCT
    sm_bps: int = TINY_KERNELS_SM_BPS
    power_bps: int = TINY_KERNELS_POWER_BPS
    mem_util_pct: int = 1
    dram_bps: int = 50
    occupancy_bps: int = 50

    @property
    def level(self) -> Level:
        return Level(self.util_pct * 100, self.mem_util_pct * 100, self.sm_bps, self.occupancy_bps, 0,
                     self.dram_bps, self.power_bps)  # fmt: skip


@dataclass(frozen=True)
class Steady(_Steady):
    """Any constant :class:`Level`."""

    fixed: Level = IDLE_LEVEL

    @property
    def level(self) -> Level:
        return self.fixed


@dataclass(frozen=True)
class DutyCycle(Workload):
    """Bursts of full matmuls: on for ``on_ms``, then idle for ``off_ms``, repeating forever.

    A burst starts at every unix instant ``phase_ms + k * (on_ms + off_ms)`` (``k`` any integer), so with
    ``phase_ms=0`` and a 1 s period the bursts start on whole seconds. Times are kept in integer µs.
    """

    on_ms: float
    off_ms: float
    phase_ms: float = 0
    sm_active_bps: int = MATMUL_SM_BPS
    tensor_bps: int = MATMUL_TENSOR_BPS
    util_when_on: int = 100  # percent
    occupancy_bps: int = MATMUL_OCCUPANCY_BPS
    dram_bps: int = MATMUL_DRAM_BPS
    mem_util_when_on: int = MATMUL_MEM_UTIL_PCT  # percent
    power_bps: int = BPS

    def __post_init__(self) -> None:
        if _us(self.on_ms) < 0 or _us(self.off_ms) < 0 or _us(self.on_ms) + _us(self.off_ms) <= 0:
            raise ValueError("on_ms and off_ms must be >= 0 with a positive sum")
        _ = self.on_level  # validates the level

    @property
    def on_level(self) -> Level:
        return Level(
            self.util_when_on * 100, self.mem_util_when_on * 100, self.sm_active_bps, self.occupancy_bps,
            self.tensor_bps, self.dram_bps, self.power_bps,
        )  # fmt: skip

    def _on_before(self, t_us: int) -> int:
        """On-time in [phase, t) (negative when t < phase): whole periods plus the part of the last one."""
        on, period = _us(self.on_ms), _us(self.on_ms) + _us(self.off_ms)
        n, r = divmod(t_us - _us(self.phase_ms), period)
        return n * on + min(r, on)

    def on_us(self, t0_us: int, t1_us: int) -> int:
        """Exact µs of burst in [t0_us, t1_us)."""
        if t1_us < t0_us:
            raise ValueError("interval ends before it starts")
        return self._on_before(t1_us) - self._on_before(t0_us)

    def activity(self, t0_us: int, t1_us: int) -> Activity:
        return self.on_level.over(self.on_us(t0_us, t1_us))  # the off level is idle: all zero


@dataclass(frozen=True)
class Schedule(Workload):
    """Workloads one after another: ``segments[i] = (start_us, workload)``; the first runs from the beginning
    of time (its start is ignored), each until the next one's start."""

    segments: tuple[tuple[int, Workload], ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a schedule needs at least one workload")
        starts = [s for s, _ in self.segments[1:]]
        if starts != sorted(starts):
            raise ValueError("segments must be in time order")

    @staticmethod
    def of(workload: Workload) -> Schedule:
        return workload if isinstance(workload, Schedule) else Schedule(((0, workload),))

    def then(self, at_us: int, workload: Workload) -> Schedule:
        """This schedule, switching to ``workload`` at ``at_us``."""
        if len(self.segments) > 1 and at_us < self.segments[-1][0]:
            raise ValueError("a switch cannot precede the last one")
        return Schedule(self.segments + ((at_us, workload),))

    def activity(self, t0_us: int, t1_us: int) -> Activity:
        if t1_us < t0_us:
            raise ValueError("interval ends before it starts")
        total = Activity()
        for i, (start, w) in enumerate(self.segments):
            lo = t0_us if i == 0 else max(t0_us, start)
            hi = t1_us if i + 1 == len(self.segments) else min(t1_us, self.segments[i + 1][0])
            if hi > lo:
                total = total + w.activity(lo, hi)
        return total


# -- GPUs -----------------------------------------------------------------------------------------------


@dataclass
class SimGpu:
    """One GPU. Static unless ``workload`` is set (see the module docstring).

    On a time-driven GPU the value fields ``util_gpu``, ``power_mw`` only matter as ``NOT_SUPPORTED``
    switches, ``util_mem`` is ignored, and ``energy_mj`` is the counter's reading at ``energy_origin_us``
    (``NOT_SUPPORTED`` also works). ``mem_used_bytes``, ``processes``, ``ecc_uncorrected`` behave as on a
    static GPU.
    """

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    util_gpu: Any = 50  # percent
    util_mem: int = 20
    mem_used_bytes: Any = 10 * 1024 * 1024 * 1024
    power_mw: Any = 350_000
    energy_mj: Any = 5_000_000
    processes: Any = 1
    ecc_uncorrected: Any = 0
    lost: bool = False
    calls: dict[str, int] = field(default_factory=dict)
    # -- time-driven driver model --------------------------------------------------------------------------
    workload: Workload | None = None
    mem_total_bytes: int = 80 * 1024**3
    tdp_mw: int = H200_TDP_MW
    idle_mw: int = H200_IDLE_MW
    util_period_us: int = UTIL_PERIOD_US
    power_period_us: int = POWER_PERIOD_US
    sample_phase_us: int | None = None  # None: derived from the UUID (not aligned to whole seconds)
    util_capacity: int = DEFAULT_UTIL_CAPACITY  # ASSUMPTION: the real capacity is unknown
    power_capacity: int = DEFAULT_POWER_CAPACITY  # ASSUMPTION: the real capacity is unknown
    loaded_at_us: int | None = None  # driver load; None: long ago (buffers already full)
    energy_origin_us: int | None = None  # where the counter read energy_mj; None: loaded_at_us or attach time
    samples_supported: bool = True
    gpm_supported: bool = True
    clock_us: ClockUs | None = None  # set by SimulatedNvml

    @property
    def timed(self) -> bool:
        """Whether this GPU follows the time-driven model."""
        return self.workload is not None

    # -- time --------------------------------------------------------------------------------------------

    def now_us(self) -> int:
        if self.clock_us is None:
            raise RuntimeError("this GPU has no clock: hand it to SimulatedNvml (or set clock_us) first")
        return int(self.clock_us())

    def attach(self, clock_us: ClockUs) -> None:
        """Called by :class:`SimulatedNvml`: binds the clock and fixes the energy counter's origin."""
        self.clock_us = clock_us
        if self.energy_origin_us is None:
            self.energy_origin_us = self.loaded_at_us if self.loaded_at_us is not None else self.now_us()

    @property
    def phase_us(self) -> int:
        if self.sample_phase_us is not None:
            return self.sample_phase_us % self.util_period_us
        return zlib.crc32(self.uuid.encode()) % self.util_period_us

    def require_workload(self) -> Workload:
        if self.workload is None:
            raise RuntimeError(f"{self.uuid} is a static GPU (no workload)")
        return self.workload

    # -- fault and load injection ------------------------------------------------------------------------

    def set_workload(self, workload: Workload, at_us: int | None = None) -> None:
        """From ``at_us`` (default: now; never in the past) on, the GPU runs ``workload``."""
        now = self.now_us()
        at = now if at_us is None else at_us
        if at < now:
            raise ValueError("the past is already fixed: a workload switch cannot precede now")
        self.workload = Schedule.of(self.require_workload()).then(at, workload)

    def reset_energy(self, value_mj: int = 0) -> None:
        """The energy counter restarts now from ``value_mj`` (what a driver reload does)."""
        self.energy_origin_us = self.now_us()
        self.energy_mj = value_mj

    def reload_driver(self, energy_mj: int = 0) -> None:
        """A driver reload: the energy counter restarts and the sample buffers start empty."""
        self.reset_energy(energy_mj)
        self.loaded_at_us = self.now_us()

    def fall_off_bus(self) -> None:
        """Every call on this GPU answers NVML_ERROR_GPU_IS_LOST from now on."""
        self.lost = True

    # -- ground truth (exact, from the workload) --------------------------------------------------------

    def true_busy_ms(self, t0_us: int, t1_us: int) -> Fraction:
        return self.require_workload().true_busy_ms(t0_us, t1_us)

    def true_sm_active_ms(self, t0_us: int, t1_us: int) -> Fraction:
        return self.require_workload().true_sm_active_ms(t0_us, t1_us)

    def true_tensor_active_ms(self, t0_us: int, t1_us: int) -> Fraction:
        return self.require_workload().true_tensor_active_ms(t0_us, t1_us)

    def true_energy_mj(self, t0_us: int, t1_us: int) -> Fraction:
        return self.require_workload().true_energy_mj(t0_us, t1_us, idle_mw=self.idle_mw, tdp_mw=self.tdp_mw)

    # -- the driver's view -------------------------------------------------------------------------------

    def sample_ts(self, k: int, period_us: int) -> int:
        """End (= timestamp) of the ``k``-th sample period."""
        return self.phase_us % period_us + k * period_us

    def last_sample_k(self, now_us: int, period_us: int) -> int:
        """Index of the newest completed period at ``now_us`` (its timestamp <= now)."""
        return (now_us - self.phase_us % period_us) // period_us

    def util_sample(self, k: int) -> tuple[int, int]:
        """(gpu %, memory %) of the ``k``-th 200 ms period, floored."""
        p = self.util_period_us
        ts = self.sample_ts(k, p)
        a = self.require_workload().activity(ts - p, ts)
        return a.util // (p * 100), a.mem_util // (p * 100)

    def power_sample(self, k: int) -> int:
        """Mean power (mW, floored) of the ``k``-th 20 ms period."""
        p = self.power_period_us
        ts = self.sample_ts(k, p)
        a = self.require_workload().activity(ts - p, ts)
        return self.idle_mw + (self.tdp_mw - self.idle_mw) * a.power // (p * BPS)

    def buffered(self, now_us: int, period_us: int, capacity: int) -> range:
        """Indices of the samples the driver's circular buffer holds at ``now_us``."""
        last = self.last_sample_k(now_us, period_us)
        first = last - capacity + 1
        if self.loaded_at_us is not None:  # only periods that start at or after the load
            first = max(first, -((self.phase_us % period_us - self.loaded_at_us - period_us) // period_us))
        return range(first, last + 1)

    def energy_counter_mj(self, now_us: int) -> int:
        origin = self.energy_origin_us if self.energy_origin_us is not None else now_us
        return int(self.energy_mj) + math.floor(self.true_energy_mj(origin, now_us))


@dataclass
class _GpmSample:
    buffer: Any  # the ctypes memory the handle points to (kept alive until freed)
    gpu: SimGpu | None = None
    t_us: int | None = None


def h200(uuid: str, workload: Workload | None = None, **kw: Any) -> SimGpu:
    """A time-driven H200 (idle unless told otherwise)."""
    kw.setdefault("name", "NVIDIA H200")
    kw.setdefault("mem_total_bytes", H200_MEM_TOTAL_BYTES)
    return SimGpu(uuid, workload=Idle() if workload is None else workload, **kw)


# GPM metric id -> Activity field
_GPM_METRICS = {
    pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: "util",
    pynvml.NVML_GPM_METRIC_SM_UTIL: "sm",
    pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: "occupancy",
    pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: "tensor",
    pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: "dram",
}


class SimulatedNvml:
    """Stands in for the ``pynvml`` module (pass it to ``NvmlSource(nvml=...)``).

    ``clock_us``: unix µs (default :func:`wall_clock_us`); ``costs``: CPU ms spent per call, by function name
    (``nvmlDeviceGetSamples/<TYPE>`` for the buffers, ``*`` for the rest; :data:`MEASURED_COSTS_MS` are the
    H200's), None to spend nothing. ``calls`` counts every call by function name (and by buffer).
    ``NVML_*`` constants and ``c_nvml*`` structures not defined here come from the real ``pynvml``.
    """

    NVMLError = pynvml.NVMLError
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_TIMEOUT = pynvml.NVML_ERROR_TIMEOUT
    NVML_ERROR_LIBRARY_NOT_FOUND = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = pynvml.NVML_VOLATILE_ECC
    nvmlEventTypeXidCriticalError = pynvml.nvmlEventTypeXidCriticalError
    NVML_TOTAL_POWER_SAMPLES = pynvml.NVML_TOTAL_POWER_SAMPLES
    NVML_GPU_UTILIZATION_SAMPLES = pynvml.NVML_GPU_UTILIZATION_SAMPLES
    NVML_MEMORY_UTILIZATION_SAMPLES = pynvml.NVML_MEMORY_UTILIZATION_SAMPLES
    NVML_GPM_METRICS_GET_VERSION = pynvml.NVML_GPM_METRICS_GET_VERSION
    NVML_GPM_METRIC_SM_UTIL = pynvml.NVML_GPM_METRIC_SM_UTIL
    NVML_GPM_METRIC_SM_OCCUPANCY = pynvml.NVML_GPM_METRIC_SM_OCCUPANCY
    NVML_GPM_METRIC_ANY_TENSOR_UTIL = pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL
    NVML_GPM_METRIC_DRAM_BW_UTIL = pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL
    c_nvmlGpmMetricsGet_t = pynvml.c_nvmlGpmMetricsGet_t

    def __init__(
        self,
        gpus: list[SimGpu],
        *,
        library_missing: bool = False,
        xid_supported: bool = True,
        clock_us: ClockUs | None = None,
        costs: Mapping[str, float] | None = None,
    ) -> None:
        self.gpus = gpus
        self.library_missing = library_missing
        self.xid_supported = xid_supported
        self.initialised = False
        self.shutdown_called = False
        self.xid_queue: list[tuple[str, int]] = []  # (uuid, xid)
        self.clock_us: ClockUs = wall_clock_us if clock_us is None else clock_us
        self.costs: Mapping[str, float] | None = costs
        self.calls: dict[str, int] = {}
        self._gpm: dict[int, _GpmSample] = {}  # address of the handle's memory -> sample
        for g in gpus:
            g.attach(self.clock_us)

    def __getattr__(self, name: str) -> Any:
        # constants and structures like the real module's; functions the simulator lacks stay missing
        if name.startswith(("NVML_", "c_nvml", "nvmlEventType")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    # -- bookkeeping -----------------------------------------------------------------------------------

    def _enter(self, name: str, sub: str | None = None) -> None:
        """Count the call and spend its CPU cost."""
        self.calls[name] = self.calls.get(name, 0) + 1
        key = name if sub is None else f"{name}/{sub}"
        if sub is not None:
            self.calls[key] = self.calls.get(key, 0) + 1
        if self.costs is not None:
            c = self.costs
            burn_cpu_ms(c.get(key, c.get(name, c.get("*", 0.0))))

    def cpu_cost_ms(self, name: str) -> float:
        """The configured CPU cost of one call (0 with costs=None)."""
        if self.costs is None:
            return 0.0
        return self.costs.get(name, self.costs.get(name.split("/")[0], self.costs.get("*", 0.0)))

    @staticmethod
    def _alive(h: SimGpu) -> None:
        if h.lost:
            raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)

    def _field(self, h: SimGpu, name: str, value: Any) -> Any:
        h.calls[name] = h.calls.get(name, 0) + 1
        self._alive(h)
        if value is NOT_SUPPORTED:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    # -- lifecycle -------------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.library_missing:
            raise _err(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.shutdown_called = True

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return "570.86.15"

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return "12.570.86.15"

    # -- devices ---------------------------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> SimGpu:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= i < len(self.gpus):
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._alive(self.gpus[i])
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> SimGpu:
        self._enter("nvmlDeviceGetHandleByUUID")
        for g in self.gpus:
            if g.uuid == uuid:
                self._alive(g)
                return g
        raise _err(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, h: SimGpu) -> str:
        self._enter("nvmlDeviceGetUUID")
        self._alive(h)
        return h.uuid

    def nvmlDeviceGetName(self, h: SimGpu) -> str:
        self._enter("nvmlDeviceGetName")
        self._alive(h)
        return h.name

    def nvmlDeviceGetUtilizationRates(self, h: SimGpu) -> Any:
        self._enter("nvmlDeviceGetUtilizationRates")
        gpu = self._field(h, "util", h.util_gpu)
        if not h.timed:
            return SimpleNamespace(gpu=gpu, memory=h.util_mem)
        g, m = h.util_sample(h.last_sample_k(h.now_us(), h.util_period_us))
        return SimpleNamespace(gpu=g, memory=m)

    def nvmlDeviceGetMemoryInfo(self, h: SimGpu) -> Any:
        self._enter("nvmlDeviceGetMemoryInfo")
        used = self._field(h, "mem", h.mem_used_bytes)
        return SimpleNamespace(used=used, total=h.mem_total_bytes, free=h.mem_total_bytes - used)

    def nvmlDeviceGetPowerUsage(self, h: SimGpu) -> int:
        self._enter("nvmlDeviceGetPowerUsage")
        value = self._field(h, "power", h.power_mw)
        if not h.timed:
            return int(value)
        return h.power_sample(h.last_sample_k(h.now_us(), h.power_period_us))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: SimGpu) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit")
        self._alive(h)
        return int(h.tdp_mw)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: SimGpu) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        value = self._field(h, "energy", h.energy_mj)
        if not h.timed:
            return int(value)
        return h.energy_counter_mj(h.now_us())

    def nvmlDeviceGetSamples(self, h: SimGpu, sampling_type: int, timeStamp: int) -> tuple[int, list[Any]]:
        kind = _SAMPLE_TYPES.get(sampling_type)
        self._enter("nvmlDeviceGetSamples", kind or str(sampling_type))
        h.calls["samples"] = h.calls.get("samples", 0) + 1
        self._alive(h)
        if kind is None or not h.timed or not h.samples_supported:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if sampling_type == pynvml.NVML_TOTAL_POWER_SAMPLES:
            period, capacity = h.power_period_us, h.power_capacity
        else:
            period, capacity = h.util_period_us, h.util_capacity
        held = h.buffered(h.now_us(), period, capacity)
        newer = (int(timeStamp) - h.phase_us % period) // period + 1  # first k with ts > timeStamp
        ks = range(max(held.start, newer), held.stop)
        if not ks:
            raise _err(pynvml.NVML_ERROR_NOT_FOUND)
        out = []
        for k in ks:
            s = pynvml.c_nvmlSample_t()
            s.timeStamp = h.sample_ts(k, period)
            if sampling_type == pynvml.NVML_TOTAL_POWER_SAMPLES:
                s.sampleValue.uiVal = h.power_sample(k)
            else:
                gpu, mem = h.util_sample(k)
                s.sampleValue.uiVal = gpu if sampling_type == pynvml.NVML_GPU_UTILIZATION_SAMPLES else mem
            out.append(s)
        return pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, out

    def nvmlDeviceGetComputeRunningProcesses(self, h: SimGpu) -> list[Any]:
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        n = self._field(h, "procs", h.processes)
        return [SimpleNamespace(pid=1000 + i, usedGpuMemory=1 << 30) for i in range(n)]

    def nvmlDeviceGetTotalEccErrors(self, h: SimGpu, error_type: int, counter_type: int) -> int:
        self._enter("nvmlDeviceGetTotalEccErrors")
        assert error_type == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        assert counter_type == pynvml.NVML_VOLATILE_ECC
        return int(self._field(h, "ecc", h.ecc_uncorrected))

    # -- GPM (Hopper and later) --------------------------------------------------------------------------

    def nvmlGpmQueryDeviceSupport(self, h: SimGpu) -> Any:
        self._enter("nvmlGpmQueryDeviceSupport")
        self._alive(h)
        support = pynvml.c_nvmlGpmSupport_t()
        support.version = pynvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = 1 if h.timed and h.gpm_supported else 0
        return support

    def nvmlGpmSampleAlloc(self) -> Any:
        self._enter("nvmlGpmSampleAlloc")
        buf = ctypes.create_string_buffer(16)
        self._gpm[ctypes.addressof(buf)] = _GpmSample(buf)
        return ctypes.cast(buf, pynvml.c_nvmlGpmSample_t)

    def _gpm_sample(self, handle: Any) -> _GpmSample:
        try:
            addr = ctypes.cast(handle, ctypes.c_void_p).value
        except (ctypes.ArgumentError, TypeError):
            addr = None
        sample = self._gpm.get(addr) if addr is not None else None
        if sample is None:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return sample

    def nvmlGpmSampleFree(self, gpmSample: Any) -> None:
        self._enter("nvmlGpmSampleFree")
        sample = self._gpm_sample(gpmSample)
        del self._gpm[ctypes.addressof(sample.buffer)]

    @staticmethod
    def _gpm_usable(h: SimGpu) -> None:
        SimulatedNvml._alive(h)
        if not (h.timed and h.gpm_supported):
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlGpmSampleGet(self, h: SimGpu, gpmSample: Any) -> Any:
        self._enter("nvmlGpmSampleGet")
        h.calls["gpm_sample"] = h.calls.get("gpm_sample", 0) + 1
        self._gpm_usable(h)
        sample = self._gpm_sample(gpmSample)
        sample.gpu, sample.t_us = h, h.now_us()
        return gpmSample

    def nvmlGpmMetricsGet(self, metricsGet: Any) -> Any:
        self._enter("nvmlGpmMetricsGet")
        m = metricsGet
        if m.version != pynvml.NVML_GPM_METRICS_GET_VERSION:
            raise _err(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        s1, s2 = self._gpm_sample(m.sample1), self._gpm_sample(m.sample2)
        if s1.gpu is None or s2.gpu is None or s1.gpu is not s2.gpu or s1.t_us is None or s2.t_us is None:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        h = s1.gpu
        self._gpm_usable(h)
        if s2.t_us <= s1.t_us or not 0 <= m.numMetrics <= pynvml.NVML_GPM_METRIC_MAX:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        a = h.require_workload().activity(s1.t_us, s2.t_us)
        span = (s2.t_us - s1.t_us) * 100  # bps·µs per percent
        for i in range(m.numMetrics):
            metric = m.metrics[i]
            which = _GPM_METRICS.get(metric.metricId)
            if which is None:
                metric.value, metric.nvmlReturn = 0.0, pynvml.NVML_ERROR_NOT_SUPPORTED
            else:
                metric.value, metric.nvmlReturn = getattr(a, which) / span, pynvml.NVML_SUCCESS
        return m

    # -- events ----------------------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> object:
        self._enter("nvmlEventSetCreate")
        return object()

    def nvmlDeviceRegisterEvents(self, h: SimGpu, types: int, events: object) -> None:
        self._enter("nvmlDeviceRegisterEvents")
        self._alive(h)
        if not self.xid_supported:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlEventSetWait_v2(self, events: object, timeout_ms: int) -> Any:
        self._enter("nvmlEventSetWait_v2")
        if not self.xid_queue:
            raise _err(pynvml.NVML_ERROR_TIMEOUT)
        uuid, xid = self.xid_queue.pop(0)
        handle = next((g for g in self.gpus if g.uuid == uuid), None)
        if handle is None:
            raise _err(pynvml.NVML_ERROR_NOT_FOUND)
        return SimpleNamespace(device=handle, eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=xid)

    def nvmlEventSetFree(self, events: object) -> None:
        self._enter("nvmlEventSetFree")
        return None


def gpm_metrics(
    nvml: Any, sample1: Any, sample2: Any, metric_ids: Iterable[int]
) -> list[tuple[int, float]]:
    """Convenience for tests: ``nvmlGpmMetricsGet`` over the real structure -> [(nvmlReturn, value)]."""
    ids = list(metric_ids)
    m = pynvml.c_nvmlGpmMetricsGet_t()
    m.version = pynvml.NVML_GPM_METRICS_GET_VERSION
    m.numMetrics = len(ids)
    m.sample1, m.sample2 = sample1, sample2
    for i, metric_id in enumerate(ids):
        m.metrics[i].metricId = metric_id
    nvml.nvmlGpmMetricsGet(m)
    return [(int(m.metrics[i].nvmlReturn), float(m.metrics[i].value)) for i in range(len(ids))]


# -- simulated nodes (``--simulate``) ------------------------------------------------------------------------

# A simulated GPU's sample buffers: the same capacities as the time-driven default (what nvidia-smi -q -d
# UTILIZATION lists on a real GPU: about 100 samples), so a simulation meets the same holes a real node would.
PROFILES: Mapping[str, str] = {
    "idle": "nothing running: idle power, 0 % everywhere",
    "steady": "back-to-back bf16 matmuls: util.gpu 100 %, SM activity 96.4 %",
    "bursty": "matmul bursts on a duty cycle (0.3-5 s on, 0.2-3 s off, per GPU from the seed)",
    "tiny": "a loop of tiny kernels: util.gpu 20 % but SM activity 0.4 %",
}

_BURST_ON_MS = (300, 500, 1_000, 2_000, 5_000)
_BURST_OFF_MS = (200, 500, 700, 1_000, 3_000)


def profile_workload(profile: str, seed: int, index: int) -> Workload:
    """The workload of GPU ``index`` of a simulated node under ``profile`` (deterministic in the seed)."""
    if profile == "idle":
        return Idle()
    if profile == "steady":
        return Full()
    if profile == "tiny":
        return TinyKernels()
    if profile == "bursty":
        h = zlib.crc32(f"{seed}:{index}".encode())
        on = _BURST_ON_MS[h % len(_BURST_ON_MS)]
        off = _BURST_OFF_MS[(h // 7) % len(_BURST_OFF_MS)]
        return DutyCycle(on_ms=on, off_ms=off, phase_ms=(h // 49) % (on + off))
    raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")


def simulated_node(
    count: int,
    *,
    name: str,
    vram_mib: int,
    idle_mw: int,
    limit_mw: int,
    gpm: bool,
    uuids: list[str],
    profile: str = "bursty",
    seed: int = 1,
    clock_us: ClockUs | None = None,
    energy_mj: int = 1_000_000_000,
) -> SimulatedNvml:
    """A driver with ``count`` time-driven GPUs of one model running ``profile`` (see :data:`PROFILES`)."""
    if len(uuids) != count:
        raise ValueError("one UUID per GPU")
    busy_mem = vram_mib * 6 // 10 * 1024 * 1024
    mem = {"idle": 512 * 1024 * 1024, "tiny": 2 * 1024**3}.get(profile, busy_mem)
    gpus = [
        SimGpu(
            uuid,
            name=name,
            workload=profile_workload(profile, seed, i),
            mem_total_bytes=vram_mib * 1024 * 1024,
            mem_used_bytes=mem,
            tdp_mw=limit_mw,
            idle_mw=idle_mw,
            gpm_supported=gpm,
            energy_mj=energy_mj + 7_919 * i,
        )
        for i, uuid in enumerate(uuids)
    ]
    return SimulatedNvml(gpus, clock_us=clock_us)


def simulated_source(
    spec: str, *, seed: int = 0, profile: str = "bursty", clock_us: ClockUs | None = None
) -> NvmlSource:
    """An :class:`attestor.nvml.NvmlSource` over a simulated node (``spec`` like ``8xH100``; raises
    :class:`attestor.errors.ConfigError` for a bad spec or profile). ``clock_us``: the clock the simulated
    driver stamps its samples with (default: the machine's; the demo hands in its accelerated clock)."""
    count, model = parse_simulate_spec(spec)
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    uuids = [simulated_uuid(seed, model, i) for i in range(count)]
    driver = simulated_node(
        count,
        name=model.name,
        vram_mib=model.vram_mib,
        idle_mw=model.idle_mw,
        limit_mw=model.limit_mw,
        gpm=model.gpm,
        uuids=uuids,
        profile=profile,
        seed=seed,
        clock_us=clock_us,
    )
    return NvmlSource(uuids, nvml=driver, clock_us=driver.clock_us, simulated=True)
