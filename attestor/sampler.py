"""GPU intervals -> protocol samples: missing figures flagged (never zero), energy epochs marked.

The sampler is pure bookkeeping; the pacing loop (``time.monotonic()`` deadlines) is in
:mod:`attestor.daemon`, which tells :meth:`Sampler.collect` when to read the energy counter.
"""

from __future__ import annotations

from ledger.protocol import ReportFlag, Sample
from ledger.protocol.samples import SampleField

from .source import GpuInterval, GpuSource

_U16 = (1 << 16) - 1
_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_NS = int(ReportFlag.FIELD_NOT_SUPPORTED)


class Sampler:
    """Turns every GPU's closed interval into one :class:`Sample` per GPU."""

    def __init__(self, source: GpuSource) -> None:
        self._source = source
        self._sim = int(ReportFlag.SIMULATED) if source.simulated else 0
        self._caps = {c.uuid: c for c in source.capabilities()}
        self._gpm = [self._caps[u].gpm for u in source.uuids]
        self._last_energy: list[int | None] = [None] * len(source.uuids)
        self.last_intervals: list[GpuInterval] = []

    @property
    def gpu_count(self) -> int:
        return len(self._last_energy)

    def collect(self, read_energy: bool, until_ms: int | None = None) -> list[Sample]:
        """Close the GPUs' intervals now (or at ``until_ms``, see :meth:`GpuSource.collect`)."""
        intervals = self._source.collect(read_energy, until_ms)
        self.last_intervals = intervals
        return [self._to_sample(r, self._sim) for r in intervals]

    def _to_sample(self, r: GpuInterval, base: int) -> Sample:
        flags = base | r.flags
        if flags & ReportFlag.GPU_LOST:
            return Sample(r.index, r.ts_ms, r.interval_ms, 0, 0, 0, 0, 0, 0, 0, 0, 0, flags)
        covered, busy = r.covered_ms, r.busy_ms
        if covered is None or busy is None:
            covered = busy = 0
            flags |= SampleField.GPU_UTIL | _NS
        sm, tensor = r.sm_active_ms, r.tensor_active_ms
        if sm is None or tensor is None:
            sm = tensor = 0
            flags |= SampleField.SM_ACTIVE
            if not self._gpm[r.index]:
                flags |= _NS | ReportFlag.NO_GPM
        power = r.power_mw
        if power is None:
            power = 0
            flags |= SampleField.POWER | _NS
        energy = r.energy_mj
        if not r.energy_read:
            energy = 0
            flags |= SampleField.ENERGY_UNREAD
        elif energy is None:
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
        interval = min(max(r.interval_ms, 1), _U32)
        covered = min(covered, interval)
        return Sample(
            r.index,
            r.ts_ms,
            interval,
            covered,
            min(busy, covered),
            min(r.util_samples, _U16),
            min(sm, interval),
            min(tensor, interval),
            min(power, _U32),
            min(r.power_samples, _U16),
            min(energy, _U64),
            min(mem, _U32),
            int(flags),
        )
