"""Window aggregation: the one rule that turns a window's raw samples into a report's figures.

The attestor computes a report's window figures with :func:`aggregate_window`, and auditors (and the
bridge, when it checks) re-derive them from the committed samples with the very same function, so the rule
exists once. Integers only; units as in :mod:`ledger.protocol` (ms, mJ, MiB, basis points).

The rule, exactly
-----------------
Inputs: the samples of one lease's GPUs for one window ``(window_start_ms, window_end_ms]``, the sampling
period ``period_ms`` of the attestor's policy, the gap tolerance (default ``period_ms // 2``), optionally
the lease's ``[lease_start_ms, lease_end_ms]`` and, per GPU, the *energy baseline*: the energy counter of
that GPU's last earlier sample of the same lease whose energy counter was valid (see below), taken over all
earlier windows of the lease.

1. Every sample must satisfy ``window_start_ms < tsMs <= window_end_ms``; a GPU has at most one sample per
   ``tsMs``; when ``gpu_indices`` is given every sample belongs to one of them. Otherwise
   :class:`MeteringError` is raised (a report built from such samples is malformed).
2. Samples are taken per GPU in ``tsMs`` order. For each sample, ``prev`` is the ``tsMs`` of the same GPU's
   previous sample in this window, or ``window_start_ms`` for its first one.
3. A sample *covers* the interval ``(lo, hi]`` with ``lo = max(prev, tsMs - period_ms, window_start_ms,
   lease_start_ms)`` and ``hi = min(tsMs, window_end_ms, lease_end_ms)``; ``covered = max(0, hi - lo)``.
   A sample thus never vouches for more than one period: time between samples beyond a period is not
   allocated.
4. A gap: ``tsMs - prev > period_ms + gap_tolerance_ms`` sets ``SAMPLE_GAP`` in the window's flags.
5. A sample *flagged* ``GPU_LOST`` covers nothing and contributes nothing below (it is still committed).
6. ``allocatedMs = Σ covered``.
7. ``busyMs = Σ gpuUtilBps × covered // 10_000`` (integer division per sample), over samples whose
   utilization is valid (not marked :attr:`SampleField.GPU_UTIL` missing).
8. Energy: a sample's energy counter is valid unless the sample is ``GPU_LOST`` or marks
   :attr:`SampleField.ENERGY` missing. Per GPU, walk its valid counters in order starting from the
   baseline: ``counter >= last`` adds ``counter - last``; ``counter < last`` is a new epoch (the driver
   reset the counter): it adds nothing, sets ``ENERGY_RESET`` and the counter becomes the new ``last``
   ("count from the new counter's value"). Without a baseline (the GPU's first valid sample in the lease)
   the first valid counter only sets ``last``. ``energyMj`` is the sum over GPUs.
9. ``maxMemUsedMiB = max memUsedMiB`` over samples that are not ``GPU_LOST`` and do not mark
   :attr:`SampleField.MEM_USED` missing (0 when there is none).
10. ``flags`` = OR of the samples' report-level bits (the low 16 bits: :class:`ledger.protocol.ReportFlag`)
    | ``SAMPLE_GAP`` from rule 4 | ``ENERGY_RESET`` from rule 8. A report's ``flags`` must contain these
    bits; it may add report-level bits the samples cannot show (``CLOCK_ADJUSTED``).
11. ``sampleCount = len(samples)``; the report's ``samplesRoot`` is ``ledger.protocol.samples_root``.

The returned :class:`WindowFigures` also carries ``energy_baseline``, the baseline map to hand to the next
window of the same lease (rule 8), so that the attestor and an auditor walking the reports in order carry
the same state.

Sample flags: the low 16 bits are :class:`ledger.protocol.ReportFlag` bits; bits 16.. say *which* NVML
field answered NotSupported (:class:`SampleField`), always together with ``FIELD_NOT_SUPPORTED``. A missing
field's value in the leaf is 0 and must never be read as a zero reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntFlag

from .errors import LedgerError
from .report import ReportFlag
from .samples import Sample

REPORT_FLAG_MASK = 0xFFFF


class MeteringError(LedgerError, ValueError):
    """Samples that cannot form a window (outside the window, duplicate timestamps, foreign GPU)."""


class SampleField(IntFlag):
    """Sample-only flag bits (16..): the field was missing (NotSupported or unreadable), its value is 0."""

    NONE = 0
    GPU_UTIL = 1 << 16
    MEM_UTIL = 1 << 17
    POWER = 1 << 18
    ENERGY = 1 << 19
    MEM_USED = 1 << 20


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """A window's figures for one lease (Σ over its GPUs) and the energy baseline for the next window."""

    busyMs: int
    allocatedMs: int
    energyMj: int
    maxMemUsedMiB: int
    sampleCount: int
    flags: int
    energy_baseline: Mapping[int, int] = field(default_factory=dict)


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
    gpu_indices: Iterable[int] | None = None,
) -> WindowFigures:
    """Apply the module's rule to one window; raises :class:`MeteringError` for malformed samples."""
    if period_ms <= 0:
        raise MeteringError("period_ms must be positive")
    if window_end_ms < window_start_ms:
        raise MeteringError("window ends before it starts")
    tolerance = period_ms // 2 if gap_tolerance_ms is None else gap_tolerance_ms
    lo_bound = window_start_ms if lease_start_ms is None else max(window_start_ms, lease_start_ms)
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
        per_gpu.setdefault(s.gpuIndex, []).append(s)

    baseline_in = energy_baseline or {}
    baseline_out: dict[int, int] = dict(baseline_in)
    busy = allocated = energy = max_mem = 0
    flags = 0
    lost = ReportFlag.GPU_LOST
    util_missing = SampleField.GPU_UTIL
    energy_missing = SampleField.ENERGY
    mem_missing = SampleField.MEM_USED

    for gpu, rows in per_gpu.items():
        rows.sort(key=lambda r: r.tsMs)
        prev = window_start_ms
        last = baseline_in.get(gpu)
        prev_ts = -1
        for s in rows:
            ts = s.tsMs
            if ts == prev_ts:
                raise MeteringError(f"GPU {gpu} has two samples at {ts}")
            prev_ts = ts
            f = s.flags
            flags |= f & REPORT_FLAG_MASK
            if ts - prev > period_ms + tolerance:
                flags |= ReportFlag.SAMPLE_GAP
            lo = max(prev, ts - period_ms, lo_bound)
            hi = min(ts, hi_bound)
            prev = ts
            if f & lost:
                continue
            covered = hi - lo if hi > lo else 0
            allocated += covered
            if not f & util_missing:
                busy += s.gpuUtilBps * covered // 10_000
            if not f & energy_missing:
                c = s.energyMj
                if last is not None:
                    if c >= last:
                        energy += c - last
                    else:
                        flags |= ReportFlag.ENERGY_RESET
                last = c
            if not f & mem_missing and s.memUsedMiB > max_mem:
                max_mem = s.memUsedMiB
        if last is not None:
            baseline_out[gpu] = last

    return WindowFigures(
        busyMs=busy,
        allocatedMs=allocated,
        energyMj=energy,
        maxMemUsedMiB=max_mem,
        sampleCount=count,
        flags=int(flags),
        energy_baseline=baseline_out,
    )


def energy_baseline_after(samples: Sequence[Sample], baseline: Mapping[int, int] | None = None) -> dict[int, int]:
    """The baseline map after ``samples`` (rule 8), for a reader that only needs to carry it forward."""
    out = dict(baseline or {})
    for s in sorted(samples, key=lambda r: (r.gpuIndex, r.tsMs)):
        if not s.flags & (ReportFlag.GPU_LOST | SampleField.ENERGY):
            out[s.gpuIndex] = s.energyMj
    return out
