"""A fake ``pynvml`` module for tests and the benchmark: same function names, real pynvml error classes.

Errors are raised exactly as the real bindings raise them: ``pynvml.NVMLError(code)``, which pynvml maps to
its ``NVMLError_<Name>`` subclass. Handles are :class:`FakeGpu` objects; set a field to an ``int``/value, or
to ``NOT_SUPPORTED`` to make it answer NVML_ERROR_NOT_SUPPORTED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

NOT_SUPPORTED = object()


@dataclass
class FakeGpu:
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


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeNvml:
    """Stands in for the ``pynvml`` module (pass it to ``NvmlSource(nvml=...)``)."""

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

    def __init__(self, gpus: list[FakeGpu], *, library_missing: bool = False, xid_supported: bool = True) -> None:
        self.gpus = gpus
        self.library_missing = library_missing
        self.xid_supported = xid_supported
        self.initialised = False
        self.shutdown_called = False
        self.xid_queue: list[tuple[str, int]] = []  # (uuid, xid)

    # -- lifecycle -------------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        if self.library_missing:
            raise _err(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shutdown_called = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.86.15"

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "12.570.86.15"

    # -- devices ---------------------------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        for g in self.gpus:
            if g.uuid == uuid:
                return g
        raise _err(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return h.name

    def _field(self, h: FakeGpu, name: str, value: Any) -> Any:
        h.calls[name] = h.calls.get(name, 0) + 1
        if h.lost:
            raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)
        if value is NOT_SUPPORTED:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:
        gpu = self._field(h, "util", h.util_gpu)
        return SimpleNamespace(gpu=gpu, memory=h.util_mem)

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:
        used = self._field(h, "mem", h.mem_used_bytes)
        return SimpleNamespace(used=used, total=80 * 1024**3, free=80 * 1024**3 - used)

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        return int(self._field(h, "power", h.power_mw))

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        return int(self._field(h, "energy", h.energy_mj))

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[Any]:
        n = self._field(h, "procs", h.processes)
        return [SimpleNamespace(pid=1000 + i, usedGpuMemory=1 << 30) for i in range(n)]

    def nvmlDeviceGetTotalEccErrors(self, h: FakeGpu, error_type: int, counter_type: int) -> int:
        assert error_type == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        assert counter_type == pynvml.NVML_VOLATILE_ECC
        return int(self._field(h, "ecc", h.ecc_uncorrected))

    # -- events ----------------------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceRegisterEvents(self, h: FakeGpu, types: int, events: object) -> None:
        if not self.xid_supported:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlEventSetWait_v2(self, events: object, timeout_ms: int) -> Any:
        if not self.xid_queue:
            raise _err(pynvml.NVML_ERROR_TIMEOUT)
        uuid, xid = self.xid_queue.pop(0)
        handle = self.nvmlDeviceGetHandleByUUID(uuid)
        return SimpleNamespace(device=handle, eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=xid)

    def nvmlEventSetFree(self, events: object) -> None:
        return None
