"""The NVML GPU source: the only module that speaks to the driver (``pynvml``, package ``nvidia-ml-py``).

GPUs are looked up by UUID (the node's registered order comes from configuration, never from NVML's
enumeration order, which can change across reboots). What is measured, and how (figures from an H200):

- **Busy time** comes from the driver's utilization sample buffer (``nvmlDeviceGetSamples`` with
  ``NVML_GPU_UTILIZATION_SAMPLES``): one sample per driver period (200 ms on an H200), each the busy
  percentage over its own period. Every sample is consumed exactly once (``lastSeenTimeStamp``), so every
  instant counts once whatever the attestor's own cadence; polling util.gpu instead sees one period in
  five at a 1 s tick and aliases with periodic loads (it billed 0 s of 8 s busy). A sample's period runs
  from the previous sample's timestamp; a stretch between two samples longer than 1.5 driver periods is a
  *hole* (samples were overwritten before the attestor read them): not covered, flagged ``UTIL_HOLE``,
  and :meth:`NvmlSource.drain` says so, so the daemon reads more often. Where the buffer is not supported
  the source polls util.gpu every second and flags ``UTIL_POLLED``.
- **SM and tensor activity** from GPM (Hopper and later): a GPM sample at each interval end, metrics
  ``SM_UTIL`` and ``ANY_TENSOR_UTIL`` between consecutive samples, times the interval.
- **Power**: the mean of the driver's power samples (``NVML_TOTAL_POWER_SAMPLES``, every 20 ms) inside the
  interval; where none is left in the buffer, one poll.
- **Energy**: the total-energy counter (mJ since the driver loaded), read only when asked (the daemon asks at
  window boundaries: the read costs ~4 ms of CPU, and a window's energy is exact as a counter delta).
- Memory in use, uncorrected ECC errors and critical XID events (health flags), each cheap.

A figure answering ``NVML_ERROR_NOT_SUPPORTED`` is ``None`` and not asked again; another per-figure error
makes it ``None`` for that interval only. A GPU answering ``NVML_ERROR_GPU_IS_LOST`` gives an interval
flagged ``GPU_LOST``. The module object is handed in (tests and ``--simulate`` pass
:class:`attestor.simdriver.SimulatedNvml`); by default it is the real ``pynvml``.

Intervals follow the driver's timeline: a GPU's interval ends at the timestamp of the last utilization
sample read (ms) and starts where its previous one ended, so consecutive intervals neither overlap nor
leave time out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml as _pynvml

from ledger.protocol import ReportFlag

from .errors import AttestorError, GpuNotFoundError, NoDriverError
from .source import GpuCapabilities, GpuInterval

log = logging.getLogger(__name__)

NO_DRIVER_MESSAGE = "no NVIDIA driver found; use --simulate"

# XIDs that mean memory errors (double-bit ECC, page retirement/remapping) and "fallen off the bus".
_XID_ECC = frozenset({48, 63, 64, 92, 94, 95})
_XID_LOST = frozenset({79})

DEFAULT_UTIL_PERIOD_US = 200_000  # until the driver's own period is measured
POLL_PERIOD_US = 1_000_000  # the fallback without a utilization buffer polls util.gpu every second
HOLE_FACTOR_NUM, HOLE_FACTOR_DEN = 3, 2  # a stretch > 1.5 driver periods between two samples is a hole
_MIB = 1024 * 1024


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class _Gpu:
    """Per-GPU bookkeeping between intervals."""

    index: int
    handle: Any
    uuid: str
    name: str
    util_buffer: bool = True
    power_buffer: bool = True
    gpm: bool = False
    util_seen_us: int = 0  # newest utilization sample consumed from the buffer
    util_pending: list[tuple[int, int]] = field(default_factory=list)  # (ts µs, percent) not yet in an interval
    util_period_us: int = DEFAULT_UTIL_PERIOD_US
    interval_start_us: int | None = None  # where the next interval starts (the previous one's end)
    hole: bool = False
    power_seen_us: int = 0
    power_pending: list[tuple[int, int]] = field(default_factory=list)  # (ts µs, mW)
    gpm_prev: Any = None
    ecc_last: int | None = None
    xid_flags: int = 0
    span_ms: int | None = None


class NvmlSource:
    """Reads the node's GPUs through NVML. Raises :class:`NoDriverError` when there is no driver.

    ``clock_us``: wall time in µs on the driver's clock (the driver stamps its samples with CPU time); the
    system clock by default, the simulated driver's clock under ``--simulate``."""

    def __init__(
        self,
        uuids: Sequence[str] | None = None,
        nvml: Any = None,
        *,
        clock_us: Callable[[], int] | None = None,
        simulated: bool = False,
    ) -> None:
        self._n = n = _pynvml if nvml is None else nvml
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self._simulated = simulated
        self._code_not_supported = n.NVML_ERROR_NOT_SUPPORTED
        self._code_lost = n.NVML_ERROR_GPU_IS_LOST
        self._code_timeout = n.NVML_ERROR_TIMEOUT
        self._code_not_found = n.NVML_ERROR_NOT_FOUND
        try:
            n.nvmlInit()
        except n.NVMLError as e:
            if getattr(e, "value", None) in (n.NVML_ERROR_LIBRARY_NOT_FOUND, n.NVML_ERROR_DRIVER_NOT_LOADED):
                raise NoDriverError(NO_DRIVER_MESSAGE) from e
            raise AttestorError(f"NVML failed to initialise: {e}") from e
        self._closed = False
        self._gpus: list[_Gpu] = []
        try:
            if uuids is None:  # no configured order: NVML's enumeration order (warned by the caller)
                uuids = [
                    _as_str(n.nvmlDeviceGetUUID(n.nvmlDeviceGetHandleByIndex(i))) for i in range(n.nvmlDeviceGetCount())
                ]
            for i, u in enumerate(uuids):
                try:
                    h = n.nvmlDeviceGetHandleByUUID(u)
                except n.NVMLError as e:
                    raise GpuNotFoundError(f"GPU {u} is not on this machine ({e})") from e
                self._gpus.append(_Gpu(i, h, u, self._name(h)))
            self._driver = _as_str(n.nvmlSystemGetDriverVersion())
            self._nvml_version = _as_str(n.nvmlSystemGetNVMLVersion())
            # (gpu index, figure) pairs that answered NotSupported: never asked again.
            self._unsupported: set[tuple[int, str]] = set()
            self._warned: set[tuple[int, str]] = set()
            for g in self._gpus:
                self._probe(g)
        except BaseException:
            self.close()
            raise
        self._events: Any = None
        self._index_of_uuid = {g.uuid: g.index for g in self._gpus}
        self._setup_xid_events()

    # -- identity ------------------------------------------------------------------------------------

    @property
    def uuids(self) -> Sequence[str]:
        return [g.uuid for g in self._gpus]

    @property
    def model_names(self) -> Sequence[str]:
        return [g.name for g in self._gpus]

    @property
    def simulated(self) -> bool:
        return self._simulated

    @property
    def nvml(self) -> Any:
        """The driver module read: the real ``pynvml``, or a simulated driver (its GPUs know the truth)."""
        return self._n

    @property
    def driver_version(self) -> str:
        return self._driver

    @property
    def nvml_version(self) -> str:
        return self._nvml_version

    def _name(self, handle: Any) -> str:
        try:
            return _as_str(self._n.nvmlDeviceGetName(handle))
        except self._n.NVMLError:
            return "unknown"

    def capabilities(self) -> list[GpuCapabilities]:
        n = self._n
        out = []
        for g in self._gpus:
            try:
                vram = self._call(g.index, "mem", n.nvmlDeviceGetMemoryInfo, g.handle, quiet=True)
                limit = self._call(
                    g.index, "power_limit", getattr(n, "nvmlDeviceGetEnforcedPowerLimit", None), g.handle, quiet=True
                )
            except _Lost:
                vram = limit = None
            energy = (g.index, "energy") not in self._unsupported
            out.append(
                GpuCapabilities(
                    name=g.name,
                    uuid=g.uuid,
                    vram_mib=None if vram is None else int(vram.total) // _MIB,
                    power_limit_mw=None if limit is None else int(limit),
                    util_buffer=g.util_buffer,
                    util_buffer_span_ms=g.span_ms,
                    power_buffer=g.power_buffer,
                    gpm=g.gpm,
                    energy=energy,
                )
            )
        return out

    # -- probing ---------------------------------------------------------------------------------------

    def _probe(self, g: _Gpu) -> None:
        """Find what the GPU supports; start consuming its buffers from now (earlier samples are not ours)."""
        n = self._n
        now = self._clock_us()
        g.util_seen_us = g.power_seen_us = now
        try:
            _, hist = n.nvmlDeviceGetSamples(g.handle, n.NVML_GPU_UTILIZATION_SAMPLES, 0)
            stamps = sorted(int(s.timeStamp) for s in hist)
            if len(stamps) >= 2:
                g.span_ms = (stamps[-1] - stamps[0]) // 1000
                deltas = sorted(b - a for a, b in zip(stamps, stamps[1:]) if b > a)
                if deltas:
                    g.util_period_us = deltas[len(deltas) // 2]
            if stamps:
                g.util_seen_us = stamps[-1]
                g.interval_start_us = stamps[-1]
        except n.NVMLError as e:
            code = getattr(e, "value", None)
            if code == self._code_not_supported:
                g.util_buffer = False
                log.warning("GPU %d has no utilization sample buffer: polling util.gpu (aliases with periodic loads)",
                            g.index)
            elif code == self._code_lost:
                log.warning("GPU %d (%s) is lost: its samples will say so", g.index, g.uuid)
            elif code != self._code_not_found:
                raise AttestorError(f"GPU {g.index}: cannot read its utilization samples ({e})") from e
        try:
            _, hist = n.nvmlDeviceGetSamples(g.handle, n.NVML_TOTAL_POWER_SAMPLES, 0)
            if hist:
                g.power_seen_us = max(int(s.timeStamp) for s in hist)
        except n.NVMLError as e:
            if getattr(e, "value", None) == self._code_not_supported:
                g.power_buffer = False
        support = getattr(n, "nvmlGpmQueryDeviceSupport", None)
        if support is not None:
            try:
                g.gpm = bool(support(g.handle).isSupportedDevice)
            except n.NVMLError:
                g.gpm = False
        if g.gpm:
            try:
                g.gpm_prev = n.nvmlGpmSampleAlloc()
                n.nvmlGpmSampleGet(g.handle, g.gpm_prev)
            except n.NVMLError as e:
                log.warning("GPU %d: GPM sampling failed (%s): SM activity not measured", g.index, e)
                g.gpm = False
                g.gpm_prev = None
        if g.interval_start_us is None:
            g.interval_start_us = now

    # -- health events -------------------------------------------------------------------------------

    def _setup_xid_events(self) -> None:
        n = self._n
        if not hasattr(n, "nvmlEventSetCreate"):
            return
        try:
            events = n.nvmlEventSetCreate()
        except n.NVMLError:
            return
        registered = 0
        for g in self._gpus:
            try:
                n.nvmlDeviceRegisterEvents(g.handle, n.nvmlEventTypeXidCriticalError, events)
                registered += 1
            except n.NVMLError:
                continue  # XID events not supported on this GPU
        if registered:
            self._events = events
        else:
            try:
                n.nvmlEventSetFree(events)
            except n.NVMLError:
                pass

    def _poll_xid(self) -> None:
        n = self._n
        wait = getattr(n, "nvmlEventSetWait_v2", None) or n.nvmlEventSetWait
        for _ in range(64):  # bounded: a storm of events must not stall sampling
            try:
                data = wait(self._events, 0)
            except n.NVMLError as e:
                if getattr(e, "value", None) != self._code_timeout:
                    log.warning("NVML event wait failed: %s", e)
                return
            try:
                idx = self._index_of_uuid.get(_as_str(n.nvmlDeviceGetUUID(data.device)))
            except n.NVMLError:
                idx = None
            xid = int(data.eventData)
            if idx is None:
                continue
            flag = ReportFlag.GPU_LOST if xid in _XID_LOST else ReportFlag.ECC_ERROR if xid in _XID_ECC else 0
            log.warning("GPU %d (%s) reported XID %d", idx, self._gpus[idx].uuid, xid)
            self._gpus[idx].xid_flags |= int(flag)

    # -- reading -------------------------------------------------------------------------------------

    def _call(self, index: int, figure: str, fn: Any, *args: Any, quiet: bool = False) -> Any:
        """``fn(*args)``; None when unsupported (remembered) or unreadable this time. Raises _Lost."""
        if fn is None or (index, figure) in self._unsupported:
            return None
        n = self._n
        try:
            return fn(*args)
        except n.NVMLError as e:
            code = getattr(e, "value", None)
            if code == self._code_lost:
                raise _Lost() from e
            if code == self._code_not_supported:
                self._unsupported.add((index, figure))  # permanent: never asked again
            elif not quiet and (index, figure) not in self._warned:
                self._warned.add((index, figure))
                log.warning("GPU %d: %s unreadable (%s); recorded as missing", index, figure, e)
            return None

    def needs_polling(self) -> bool:
        return any(not g.util_buffer for g in self._gpus)

    def poll(self) -> None:
        """The fallback without a utilization buffer: one util.gpu poll, vouching for the time since the
        previous poll (at most a period's worth: the caller polls every second)."""
        n = self._n
        now = self._clock_us()
        for g in self._gpus:
            if g.util_buffer:
                continue
            try:
                util = self._call(g.index, "util", n.nvmlDeviceGetUtilizationRates, g.handle)
            except _Lost:
                continue
            if util is not None:
                g.util_pending.append((now, int(util.gpu)))

    def drain(self) -> bool:
        """Read the utilization and power buffers of every GPU into memory; True if one of them had a hole."""
        n = self._n
        hole = False
        for g in self._gpus:
            try:
                if g.util_buffer:
                    for ts, pct in self._samples(g, n.NVML_GPU_UTILIZATION_SAMPLES, g.util_seen_us, "util_buffer"):
                        last = g.util_pending[-1][0] if g.util_pending else g.util_seen_us
                        if ts - last > g.util_period_us * HOLE_FACTOR_NUM // HOLE_FACTOR_DEN:
                            g.hole = hole = True
                        g.util_pending.append((ts, pct))
                        g.util_seen_us = ts
                if g.power_buffer:
                    for ts, mw in self._samples(g, n.NVML_TOTAL_POWER_SAMPLES, g.power_seen_us, "power_buffer"):
                        g.power_pending.append((ts, mw))
                        g.power_seen_us = ts
            except _Lost:
                continue
        return hole

    def _samples(self, g: _Gpu, kind: int, seen_us: int, figure: str) -> list[tuple[int, int]]:
        n = self._n
        if (g.index, figure) in self._unsupported:
            return []
        try:
            _, samples = n.nvmlDeviceGetSamples(g.handle, kind, seen_us)
        except n.NVMLError as e:
            code = getattr(e, "value", None)
            if code == self._code_not_found:
                return []  # nothing newer
            if code == self._code_lost:
                raise _Lost() from e
            if code == self._code_not_supported:
                self._unsupported.add((g.index, figure))
                if figure == "util_buffer":
                    g.util_buffer = False
                else:
                    g.power_buffer = False
            elif (g.index, figure) not in self._warned:
                self._warned.add((g.index, figure))
                log.warning("GPU %d: %s unreadable (%s)", g.index, figure, e)
            return []
        # one attribute read per field: pynvml's structures make each read costly
        out = [(int(s.timeStamp), int(s.sampleValue.uiVal)) for s in samples]
        out.sort()
        if out and out[0][0] <= seen_us:  # the driver answers only newer samples; keep that true regardless
            out = [x for x in out if x[0] > seen_us]
        return out

    def collect(self, read_energy: bool, until_ms: int | None = None) -> list[GpuInterval]:
        """Close every GPU's interval now (draining the buffers first), in registered order; a GPU with no
        new driver sample since its last interval (less than 1.5 driver periods ago) has none this time.
        ``until_ms``: end the intervals at the last driver sample at or before this instant instead (a
        lease's end); later samples stay for the next interval."""
        if self._events is not None:
            self._poll_xid()
        self.drain()
        now = self._clock_us()
        cut = now if until_ms is None else min(now, until_ms * 1000)
        out = []
        for g in self._gpus:
            interval = self._interval(g, now, cut, read_energy)
            if interval is not None:
                out.append(interval)
        return out

    def _interval(self, g: _Gpu, now_us: int, cut_us: int, read_energy: bool) -> GpuInterval | None:
        n = self._n
        flags = g.xid_flags
        g.xid_flags = 0
        start_us = g.interval_start_us if g.interval_start_us is not None else cut_us
        util = [x for x in g.util_pending if x[0] <= cut_us]
        g.util_pending = g.util_pending[len(util):]
        hole, g.hole = g.hole, False
        if util:
            end_us = util[-1][0]
            if not g.util_buffer:
                flags |= ReportFlag.UTIL_POLLED
        else:  # no new utilization sample at all
            wait_us = g.util_period_us if g.util_buffer else POLL_PERIOD_US
            if cut_us - start_us <= wait_us * HOLE_FACTOR_NUM // HOLE_FACTOR_DEN and not flags:
                g.hole = hole
                return None  # too soon for a new sample: nothing to report yet, the interval stays open
            end_us = max(cut_us, start_us)  # the interval ends at the cut and nothing covers it
            if g.util_buffer:
                hole = True
            else:
                flags |= ReportFlag.UTIL_POLLED
        covered_us = busy_pct_us = 0
        prev = start_us
        period = g.util_period_us
        for ts, pct in util:
            span = ts - prev
            if g.util_buffer and span > period * HOLE_FACTOR_NUM // HOLE_FACTOR_DEN:
                span = period  # a hole before this sample: it vouches for its own period only
            elif not g.util_buffer:
                span = min(span, POLL_PERIOD_US)  # a poll vouches for at most the 1 s since the previous one
            span = max(0, min(span, ts - start_us))
            covered_us += span
            busy_pct_us += min(100, max(0, pct)) * span
            prev = ts
        if hole:
            flags |= ReportFlag.UTIL_HOLE
        g.interval_start_us = end_us
        start_ms, end_ms = start_us // 1000, end_us // 1000
        interval_ms = end_ms - start_ms
        if interval_ms < 1:  # no time passed on the driver's clock: an empty interval is no interval
            interval_ms = 1
            start_ms = end_ms - 1
        covered_ms = min(covered_us // 1000, interval_ms)
        busy_ms = min(busy_pct_us // 100_000, covered_ms)
        power = [x for x in g.power_pending if x[0] <= end_us]
        g.power_pending = g.power_pending[len(power):]
        try:
            in_span = [mw for ts, mw in power if start_us < ts <= end_us]
            if in_span:
                power_mw: int | None = sum(in_span) // len(in_span)
                power_samples = len(in_span)
            else:
                power_mw = self._call(g.index, "power", n.nvmlDeviceGetPowerUsage, g.handle)
                power_samples = 0
            sm_ms, tensor_ms = self._gpm(g, interval_ms)
            energy = self._call(g.index, "energy", n.nvmlDeviceGetTotalEnergyConsumption, g.handle) if read_energy else None
            mem = self._call(g.index, "mem", n.nvmlDeviceGetMemoryInfo, g.handle)
            ecc = self._call(
                g.index, "ecc", n.nvmlDeviceGetTotalEccErrors, g.handle,
                n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, n.NVML_VOLATILE_ECC,
            )
        except _Lost:
            return GpuInterval(g.index, end_ms, interval_ms, None, None, 0, None, None, None, 0, None, read_energy, None,
                               int(flags | ReportFlag.GPU_LOST))
        if ecc is not None:
            if int(ecc) > (0 if g.ecc_last is None else g.ecc_last):
                flags |= ReportFlag.ECC_ERROR
            g.ecc_last = int(ecc)
        util_known = g.util_buffer or bool(util)
        return GpuInterval(
            index=g.index,
            ts_ms=end_ms,
            interval_ms=interval_ms,
            covered_ms=covered_ms if util_known else None,
            busy_ms=busy_ms if util_known else None,
            util_samples=min(len(util), 0xFFFF),
            sm_active_ms=sm_ms,
            tensor_active_ms=tensor_ms,
            power_mw=None if power_mw is None else int(power_mw),
            power_samples=min(power_samples, 0xFFFF),
            energy_mj=None if energy is None else int(energy),
            energy_read=read_energy,
            mem_used_mib=None if mem is None else int(mem.used) // _MIB,
            flags=int(flags),
        )

    def _gpm(self, g: _Gpu, interval_ms: int) -> tuple[int | None, int | None]:
        """SM-active and tensor-active ms over the interval (GPM metrics since the previous GPM sample)."""
        if not g.gpm:
            return None, None
        n = self._n
        try:
            cur = n.nvmlGpmSampleAlloc()
            n.nvmlGpmSampleGet(g.handle, cur)
            m = n.c_nvmlGpmMetricsGet_t()
            m.version = n.NVML_GPM_METRICS_GET_VERSION
            m.numMetrics = 2
            m.sample1 = g.gpm_prev
            m.sample2 = cur
            m.metrics[0].metricId = n.NVML_GPM_METRIC_SM_UTIL
            m.metrics[1].metricId = n.NVML_GPM_METRIC_ANY_TENSOR_UTIL
            n.nvmlGpmMetricsGet(m)
        except n.NVMLError as e:
            if getattr(e, "value", None) == self._code_lost:
                raise _Lost() from e
            if (g.index, "gpm") not in self._warned:
                self._warned.add((g.index, "gpm"))
                log.warning("GPU %d: GPM metrics unreadable (%s); recorded as missing", g.index, e)
            return None, None
        try:
            n.nvmlGpmSampleFree(g.gpm_prev)
        except n.NVMLError:
            pass
        g.gpm_prev = cur
        values = []
        for i in range(2):
            metric = m.metrics[i]
            if int(metric.nvmlReturn) != 0:
                return None, None
            bps = int(max(0.0, min(100.0, float(metric.value))) * 100)  # percent -> basis points, floored
            values.append(bps * interval_ms // 10_000)
        return values[0], values[1]

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        n = self._n
        try:
            for g in self._gpus:
                if g.gpm_prev is not None:
                    n.nvmlGpmSampleFree(g.gpm_prev)
                    g.gpm_prev = None
            if getattr(self, "_events", None) is not None:
                n.nvmlEventSetFree(self._events)
            n.nvmlShutdown()
        except n.NVMLError as e:
            log.debug("NVML shutdown: %s", e)


class _Lost(Exception):
    """Internal: the GPU answered NVML_ERROR_GPU_IS_LOST."""
