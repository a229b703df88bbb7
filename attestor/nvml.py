"""The NVML GPU source: the only module that imports ``pynvml`` (package ``nvidia-ml-py``).

GPUs are looked up by UUID (the node's registered order comes from configuration, never from NVML's
enumeration order, which can change across reboots). Per GPU and reading: utilization (GPU and memory),
framebuffer memory used, power, the total-energy counter (mJ since the driver loaded), the number of
running compute processes, and health: uncorrected volatile ECC errors and critical XID events where the
GPU supports them.

A field that answers ``NVML_ERROR_NOT_SUPPORTED`` is ``None`` in the reading, never 0, and is not asked
again; another per-field error (no permission, timeout, unknown) makes it ``None`` for that reading only.
A GPU that answers ``NVML_ERROR_GPU_IS_LOST`` gives a reading flagged ``GPU_LOST`` with every field
``None``. The module object is handed in (tests pass a fake); by default it is the real ``pynvml``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pynvml as _pynvml

from ledger.protocol import ReportFlag

from .errors import AttestorError, GpuNotFoundError, NoDriverError
from .source import GpuReading

log = logging.getLogger(__name__)

NO_DRIVER_MESSAGE = "no NVIDIA driver found; use --simulate"

# XIDs that mean memory errors (double-bit ECC, page retirement/remapping) and "fallen off the bus".
_XID_ECC = frozenset({48, 63, 64, 92, 94, 95})
_XID_LOST = frozenset({79})

_FIELDS = ("util", "mem", "power", "energy", "procs", "ecc")


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSource:
    """Reads the node's GPUs through NVML. Raises :class:`NoDriverError` when there is no driver."""

    def __init__(self, uuids: Sequence[str] | None = None, nvml: Any = None) -> None:
        self._n = n = _pynvml if nvml is None else nvml
        self._code_not_supported = n.NVML_ERROR_NOT_SUPPORTED
        self._code_lost = n.NVML_ERROR_GPU_IS_LOST
        self._code_timeout = n.NVML_ERROR_TIMEOUT
        try:
            n.nvmlInit()
        except n.NVMLError as e:
            if getattr(e, "value", None) in (n.NVML_ERROR_LIBRARY_NOT_FOUND, n.NVML_ERROR_DRIVER_NOT_LOADED):
                raise NoDriverError(NO_DRIVER_MESSAGE) from e
            raise AttestorError(f"NVML failed to initialise: {e}") from e
        self._closed = False
        try:
            if uuids is None:  # no configured order: NVML's enumeration order (warned by the caller)
                uuids = [
                    _as_str(n.nvmlDeviceGetUUID(n.nvmlDeviceGetHandleByIndex(i))) for i in range(n.nvmlDeviceGetCount())
                ]
            self._uuids = list(uuids)
            self._handles: list[Any] = []
            for u in self._uuids:
                try:
                    self._handles.append(n.nvmlDeviceGetHandleByUUID(u))
                except n.NVMLError as e:
                    raise GpuNotFoundError(f"GPU {u} is not on this machine ({e})") from e
            self._names = [self._name(h) for h in self._handles]
            self._driver = _as_str(n.nvmlSystemGetDriverVersion())
            self._nvml_version = _as_str(n.nvmlSystemGetNVMLVersion())
        except BaseException:
            self.close()
            raise
        # (gpu index, field) pairs that answered NotSupported: never asked again.
        self._unsupported: set[tuple[int, str]] = set()
        self._warned: set[tuple[int, str]] = set()
        self._ecc_last: list[int | None] = [None] * len(self._handles)
        self._xid_pending: dict[int, int] = {}
        self._events: Any = None
        self._index_of_uuid = {u: i for i, u in enumerate(self._uuids)}
        self._setup_xid_events()

    # -- identity ------------------------------------------------------------------------------------

    @property
    def uuids(self) -> Sequence[str]:
        return self._uuids

    @property
    def model_names(self) -> Sequence[str]:
        return self._names

    @property
    def simulated(self) -> bool:
        return False

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
        for h in self._handles:
            try:
                n.nvmlDeviceRegisterEvents(h, n.nvmlEventTypeXidCriticalError, events)
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
            log.warning("GPU %d (%s) reported XID %d", idx, self._uuids[idx], xid)
            self._xid_pending[idx] = self._xid_pending.get(idx, 0) | int(flag)

    # -- reading -------------------------------------------------------------------------------------

    def read_all(self, ts_ms: int) -> list[GpuReading]:
        if self._events is not None:
            self._poll_xid()
        return [self._read(i, h) for i, h in enumerate(self._handles)]

    def _call(self, index: int, field: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``; None when unsupported. Raises _Lost when the GPU is gone."""
        if (index, field) in self._unsupported:
            return None
        n = self._n
        try:
            return fn(*args)
        except n.NVMLError as e:
            code = getattr(e, "value", None)
            if code == self._code_lost:
                raise _Lost() from e
            if code == self._code_not_supported:
                self._unsupported.add((index, field))  # permanent: never asked again
            elif (index, field) not in self._warned:
                self._warned.add((index, field))
                log.warning("GPU %d: %s unreadable (%s); recorded as missing", index, field, e)
            return None

    def _read(self, index: int, handle: Any) -> GpuReading:
        n = self._n
        flags = self._xid_pending.pop(index, 0)
        try:
            util = self._call(index, "util", n.nvmlDeviceGetUtilizationRates, handle)
            mem = self._call(index, "mem", n.nvmlDeviceGetMemoryInfo, handle)
            power = self._call(index, "power", n.nvmlDeviceGetPowerUsage, handle)
            energy = self._call(index, "energy", n.nvmlDeviceGetTotalEnergyConsumption, handle)
            procs = self._call(index, "procs", n.nvmlDeviceGetComputeRunningProcesses, handle)
            ecc = self._call(
                index,
                "ecc",
                n.nvmlDeviceGetTotalEccErrors,
                handle,
                n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                n.NVML_VOLATILE_ECC,
            )
        except _Lost:
            return GpuReading(index, None, None, None, None, None, None, flags | ReportFlag.GPU_LOST)
        if ecc is not None:
            last = self._ecc_last[index]
            if int(ecc) > (0 if last is None else last):
                flags |= ReportFlag.ECC_ERROR
            self._ecc_last[index] = int(ecc)
        return GpuReading(
            index=index,
            gpu_util_bps=None if util is None else int(util.gpu) * 100,
            mem_util_bps=None if util is None else int(util.memory) * 100,
            power_mw=None if power is None else int(power),
            energy_mj=None if energy is None else int(energy),
            mem_used_mib=None if mem is None else int(mem.used) // (1024 * 1024),
            processes=None if procs is None else len(procs),
            flags=int(flags),
        )

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        n = self._n
        try:
            if getattr(self, "_events", None) is not None:
                n.nvmlEventSetFree(self._events)
            n.nvmlShutdown()
        except n.NVMLError as e:
            log.debug("NVML shutdown: %s", e)


class _Lost(Exception):
    """Internal: the GPU answered NVML_ERROR_GPU_IS_LOST."""
