"""Readings -> protocol samples: missing fields flagged (never zero), energy epochs and gaps marked.

The sampler is pure bookkeeping; the pacing loop (``time.monotonic()`` deadlines) is in
:mod:`attestor.daemon`, which tells :meth:`Sampler.tick` whether ticks were missed.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.protocol.metering import SampleField
from ledger.protocol import ReportFlag, Sample

from .source import GpuReading, GpuSource

_U16 = 10_000  # utilization in basis points never exceeds 100 %
_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_NS = int(ReportFlag.FIELD_NOT_SUPPORTED)


class Sampler:
    """Turns one reading of every GPU into one :class:`Sample` per GPU, all stamped with the tick's time."""

    def __init__(self, source: GpuSource) -> None:
        self._source = source
        self._sim = int(ReportFlag.SIMULATED) if source.simulated else 0
        self._last_energy: list[int | None] = [None] * len(source.uuids)
        self.last_readings: list[GpuReading] = []

    @property
    def gpu_count(self) -> int:
        return len(self._last_energy)

    def tick(self, ts_ms: int, gap: bool = False) -> list[Sample]:
        """Read every GPU now. ``gap``: at least one sampling period was missed before this tick."""
        readings = self._source.read_all(ts_ms)
        self.last_readings = readings
        base = self._sim | (int(ReportFlag.SAMPLE_GAP) if gap else 0)
        return [self._to_sample(r, ts_ms, base) for r in readings]

    def _to_sample(self, r: GpuReading, ts_ms: int, base: int) -> Sample:
        flags = base | r.flags
        if flags & ReportFlag.GPU_LOST:
            return Sample(r.index, ts_ms, 0, 0, 0, 0, 0, flags)
        util = r.gpu_util_bps
        if util is None:
            util = 0
            flags |= SampleField.GPU_UTIL | _NS
        mem_util = r.mem_util_bps
        if mem_util is None:
            mem_util = 0
            flags |= SampleField.MEM_UTIL | _NS
        power = r.power_mw
        if power is None:
            power = 0
            flags |= SampleField.POWER | _NS
        energy = r.energy_mj
        if energy is None:
            energy = 0
            flags |= SampleField.ENERGY | _NS
        else:
            last = self._last_energy[r.index]
            if last is not None and energy < last:
                flags |= ReportFlag.ENERGY_RESET  # the counter went backwards: a new epoch
            self._last_energy[r.index] = energy
        mem = r.mem_used_mib
        if mem is None:
            mem = 0
            flags |= SampleField.MEM_USED | _NS
        return Sample(
            r.index,
            ts_ms,
            min(util, _U16),
            min(mem_util, _U16),
            min(power, _U32),
            min(energy, _U64),
            min(mem, _U32),
            int(flags),
        )


def samples_for(samples: Sequence[Sample], gpu_indices: frozenset[int]) -> list[Sample]:
    return [s for s in samples if s.gpuIndex in gpu_indices]
