"""Window aggregation: the one rule that turns a window's samples into a report's figures.

The attestor computes a report's window figures with :func:`aggregate_window`, and auditors (and the bridge,
at intake) re-derive them from the committed samples with the very same function, so the rule exists once.
Integers only; units as in :mod:`ledger.protocol.report` (ms, mJ, MiB, basis points).

What a sample is (:class:`ledger.protocol.samples.Sample`): one GPU over one interval ``(tsMs − intervalMs,
tsMs]``, with the time the driver's utilization samples covered, the busy time they show, the SM-active and
tensor-active time GPM measured, mean power, the energy counter where read, memory in use.

The rule, exactly
-----------------
Inputs: the samples of one lease's GPUs for one window ``(window_start_ms, window_end_ms]``, the sampling
period ``period_ms`` of the attestor's policy, the gap tolerance (default ``period_ms // 2``), optionally the
lease's ``[lease_start_ms, lease_end_ms]``, and, per GPU, what earlier windows of the lease left: the
*energy baseline* (the energy counter of that GPU's last earlier valid reading in the lease, rule 8) and the
end of its last earlier sample (``tsMs``, rule 1).

A sample belongs to the window its ``tsMs`` falls in; its interval may begin before the window starts (the
driver's samples, whose timeline the intervals follow, do not stop at a window boundary). A GPU's intervals
follow one another over the whole lease without overlapping, so every instant counts at most once.

1. Every sample satisfies ``window_start_ms < tsMs <= window_end_ms``, ``1 <= intervalMs``,
   ``busyMs <= coveredMs <= intervalMs``, ``smActiveMs <= intervalMs`` and ``tensorActiveMs <= intervalMs``;
   a GPU has at most one sample per ``tsMs``; its samples' intervals do not overlap one another nor the
   GPU's last earlier sample (``tsMs − intervalMs >=`` that sample's ``tsMs``); when ``gpu_indices`` is
   given every sample belongs to one of them. Otherwise :class:`MeteringError` is raised (a report built
   from such samples is malformed).
2. Samples are taken per GPU in ``tsMs`` order.
3. A sample's *share* of the lease is the part of its interval inside the lease:
   ``lo = max(tsMs − intervalMs, lease_start_ms)``, ``hi = min(tsMs, lease_end_ms)``,
   ``part = max(0, hi − lo)``; a figure ``x`` of the sample counts as ``x × part // intervalMs`` (all of it
   when the interval lies inside the lease).
4. A gap: time from ``max(window_start_ms, lease_start_ms)`` to a GPU's last sample's ``tsMs`` not inside
   any of its samples' intervals, for more than ``gap_tolerance_ms`` in one stretch, sets ``SAMPLE_GAP``;
   so does, when ``gpu_indices`` is given, a GPU of the lease with no sample at all in a window longer than
   ``gap_tolerance_ms`` (from that same start). Such time is in no figure below: it is never billed.
5. A sample flagged ``GPU_LOST`` counts nothing below (it is still committed).
6. ``allocatedMs = Σ share(coveredMs)``: GPU time the driver's utilization samples vouch for.
7. ``busyMs = Σ share(busyMs)``, ``smActiveMs = Σ share(smActiveMs)``, ``tensorActiveMs = Σ
   share(tensorActiveMs)``; a sample marking the figure missing (``SampleField.GPU_UTIL`` for covered and
   busy time, ``SampleField.SM_ACTIVE`` for SM and tensor time) counts 0 for it.
8. Energy: a sample's energy counter is valid unless the sample is ``GPU_LOST`` or marks ``SampleField.ENERGY``
   or ``SampleField.ENERGY_UNREAD``. Per GPU, walk its valid counters in order starting from the baseline:
   ``counter >= last`` adds ``counter − last``; ``counter < last`` is a new epoch (the driver reset the
   counter): it adds nothing, sets ``ENERGY_RESET`` and the counter becomes the new ``last``. Without a
   baseline (the GPU's first valid reading in the lease) the first valid counter only sets ``last``.
   ``energyMj`` is the sum over GPUs.
9. ``maxMemUsedMiB = max memUsedMiB`` over samples that are not ``GPU_LOST`` and do not mark
   ``SampleField.MEM_USED`` (0 when there is none).
10. ``flags`` = OR of the samples' report-level bits (the low 16 bits: :class:`ledger.protocol.ReportFlag`)
    | ``SAMPLE_GAP`` from rule 4 | ``ENERGY_RESET`` from rule 8. A report's ``flags`` must contain these
    bits; it may add report-level bits the samples cannot show (``CLOCK_ADJUSTED``).
11. ``sampleCount = len(samples)``; the report's ``samplesRoot`` is ``ledger.protocol.samples_root``.

The returned :class:`WindowFigures` also carries ``energy_baseline`` and ``sample_ends``, the maps to hand
to the next window of the same lease (rules 8 and 1), so that the attestor and an auditor walking the
reports in order carry the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import LedgerError
from .report import ReportFlag
from .samples import Sample, SampleField

REPORT_FLAG_MASK = 0xFFFF

__all__ = [
    "REPORT_FLAG_MASK",
    "MeteringError",
    "SampleField",
    "WindowFigures",
    "aggregate_window",
    "energy_baseline_after",
    "EnergySplit",
    "energy_split",
]


class MeteringError(LedgerError, ValueError):
    """Samples that cannot form a window (outside the window, overlapping, inconsistent, foreign GPU)."""


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """A window's figures for one lease (Σ over its GPUs) and the energy baseline for the next window."""

    busyMs: int
    allocatedMs: int
    smActiveMs: int
    tensorActiveMs: int
    energyMj: int
    maxMemUsedMiB: int
    sampleCount: int
    flags: int
    energy_baseline: Mapping[int, int] = field(default_factory=dict)
    sample_ends: Mapping[int, int] = field(default_factory=dict)


_LOST = int(ReportFlag.GPU_LOST)
_UTIL_MISSING = int(SampleField.GPU_UTIL)
_SM_MISSING = int(SampleField.SM_ACTIVE)
_ENERGY_INVALID = int(ReportFlag.GPU_LOST | SampleField.ENERGY | SampleField.ENERGY_UNREAD)
_MEM_MISSING = int(SampleField.MEM_USED)


def aggregate_window(
    samples: Iterable[Sample],
    window_start_ms: int,
    window_end_ms: int,
    period_ms: int,
    *,
    gap_tolerance_ms: int | None = None,
    lease_start_ms: int | None = None,
    lease_end_ms: int | None = None,
    energy_baseline: Mapping[int, int] | None = None,
    sample_ends: Mapping[int, int] | None = None,
    gpu_indices: Iterable[int] | None = None,
) -> WindowFigures:
    """Apply the module's rule to one window; raises :class:`MeteringError` for malformed samples."""
    if period_ms <= 0:
        raise MeteringError("period_ms must be positive")
    if window_end_ms < window_start_ms:
        raise MeteringError("window ends before it starts")
    tolerance = period_ms // 2 if gap_tolerance_ms is None else gap_tolerance_ms
    gap_from = window_start_ms if lease_start_ms is None else max(window_start_ms, lease_start_ms)
    lo_bound = -1 if lease_start_ms is None else lease_start_ms
    hi_bound = window_end_ms if lease_end_ms is None else min(window_end_ms, lease_end_ms)
    allowed = None if gpu_indices is None else frozenset(gpu_indices)

    per_gpu: dict[int, list[Sample]] = {}
    count = 0
    for s in samples:
        count += 1
        if not window_start_ms < s.tsMs <= window_end_ms:
            raise MeteringError(
                f"sample of GPU {s.gpuIndex} at {s.tsMs} lies outside ({window_start_ms}, {window_end_ms}]"
            )
        if allowed is not None and s.gpuIndex not in allowed:
            raise MeteringError(f"sample of GPU {s.gpuIndex} does not belong to the lease")
        if s.intervalMs < 1:
            raise MeteringError(f"sample of GPU {s.gpuIndex} at {s.tsMs} has an empty interval")
        if not s.busyMs <= s.coveredMs <= s.intervalMs:
            raise MeteringError(
                f"sample of GPU {s.gpuIndex} at {s.tsMs}: busy {s.busyMs} <= covered {s.coveredMs} <= interval "
                f"{s.intervalMs} does not hold"
            )
        if s.smActiveMs > s.intervalMs or s.tensorActiveMs > s.intervalMs:
            raise MeteringError(f"sample of GPU {s.gpuIndex} at {s.tsMs}: SM or tensor time above its interval")
        per_gpu.setdefault(s.gpuIndex, []).append(s)

    baseline_in = energy_baseline or {}
    baseline_out: dict[int, int] = dict(baseline_in)
    ends_in = sample_ends or {}
    ends_out: dict[int, int] = dict(ends_in)
    busy = allocated = sm_active = tensor = energy = max_mem = 0
    flags = 0

    for gpu, rows in per_gpu.items():
        rows.sort(key=lambda r: r.tsMs)
        last = baseline_in.get(gpu)
        covered_to = gap_from  # the time of the window inside the lease accounted for so far
        prev_ts = ends_in.get(gpu, -1)
        for s in rows:
            ts = s.tsMs
            if ts == prev_ts:
                raise MeteringError(f"GPU {gpu} has two samples at {ts}")
            start = ts - s.intervalMs
            if prev_ts >= 0 and start < prev_ts:
                raise MeteringError(f"GPU {gpu}: the sample at {ts} overlaps the one ending at {prev_ts}")
            prev_ts = ts
            f = s.flags
            flags |= f & REPORT_FLAG_MASK
            if start - covered_to > tolerance:
                flags |= ReportFlag.SAMPLE_GAP
            if ts > covered_to:
                covered_to = ts
            if f & _LOST:
                continue
            lo = max(start, lo_bound)
            hi = min(ts, hi_bound)
            part = hi - lo if hi > lo else 0
            interval = s.intervalMs
            if part:
                if not f & _UTIL_MISSING:
                    if part == interval:
                        allocated += s.coveredMs
                        busy += s.busyMs
                    else:
                        allocated += s.coveredMs * part // interval
                        busy += s.busyMs * part // interval
                if not f & _SM_MISSING:
                    if part == interval:
                        sm_active += s.smActiveMs
                        tensor += s.tensorActiveMs
                    else:
                        sm_active += s.smActiveMs * part // interval
                        tensor += s.tensorActiveMs * part // interval
            if not f & _ENERGY_INVALID:
                c = s.energyMj
                if last is not None:
                    if c >= last:
                        energy += c - last
                    else:
                        flags |= ReportFlag.ENERGY_RESET
                last = c
            if not f & _MEM_MISSING and s.memUsedMiB > max_mem:
                max_mem = s.memUsedMiB
        if last is not None:
            baseline_out[gpu] = last
        ends_out[gpu] = prev_ts

    if allowed is not None and window_end_ms - gap_from > tolerance and not allowed <= per_gpu.keys():
        flags |= ReportFlag.SAMPLE_GAP  # a GPU of the lease with no sample in the whole window

    return WindowFigures(
        busyMs=busy,
        allocatedMs=allocated,
        smActiveMs=sm_active,
        tensorActiveMs=tensor,
        energyMj=energy,
        maxMemUsedMiB=max_mem,
        sampleCount=count,
        flags=int(flags),
        energy_baseline=baseline_out,
        sample_ends=ends_out,
    )


def energy_baseline_after(samples: Sequence[Sample], baseline: Mapping[int, int] | None = None) -> dict[int, int]:
    """The baseline map after ``samples`` (rule 8), for a reader that only needs to carry it forward."""
    out = dict(baseline or {})
    for s in sorted(samples, key=lambda r: (r.gpuIndex, r.tsMs)):
        if not s.flags & _ENERGY_INVALID:
            out[s.gpuIndex] = s.energyMj
    return out


@dataclass(frozen=True, slots=True)
class EnergySplit:
    """Rule 8 split at the window's start, for a reader that learns the baseline later (the bridge at intake
    holds the previous report's, not its samples): ``within_mj`` is what the window adds without a baseline
    (each GPU's first valid counter only sets ``last``), ``first`` each GPU's first valid counter in the
    window, ``last`` its last one (the next window's baseline)."""

    within_mj: int
    first: Mapping[int, int]
    last: Mapping[int, int]

    def energy_mj(self, baseline: Mapping[int, int]) -> int:
        """The window's ``energyMj`` given the baseline before it: exactly :func:`aggregate_window`'s with
        ``energy_baseline=baseline`` (a first counter below the baseline is a new epoch: it adds nothing)."""
        return self.within_mj + sum(
            c - baseline[g] for g, c in self.first.items() if g in baseline and c >= baseline[g]
        )


def energy_split(samples: Iterable[Sample], within_mj: int) -> EnergySplit:
    """:class:`EnergySplit` of a window's samples; ``within_mj``: :func:`aggregate_window`'s ``energyMj`` for
    them without a baseline."""
    first: dict[int, tuple[int, int]] = {}
    last: dict[int, tuple[int, int]] = {}
    for s in samples:
        if s.flags & _ENERGY_INVALID:
            continue
        g = s.gpuIndex
        if g not in first or s.tsMs < first[g][0]:
            first[g] = (s.tsMs, s.energyMj)
        if g not in last or s.tsMs > last[g][0]:
            last[g] = (s.tsMs, s.energyMj)
    return EnergySplit(within_mj, {g: c for g, (_, c) in first.items()}, {g: c for g, (_, c) in last.items()})
