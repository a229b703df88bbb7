"""The attestor loop: sample on ``monotonic()`` deadlines, close windows, commit, send with backoff.

Threads: the sampling loop (the caller's thread) reads the GPUs every period, buffers each lease's samples
and, every window, builds, signs and commits one report per lease to the spool. A sender thread sends
committed reports in seq order per lease and retries with exponential backoff until the bridge
acknowledges them. A lease watcher thread asks the bridge which leases to meter, so a slow bridge never
delays sampling. Each thread has its own SQLite connection and HTTP client.

Windows: a lease's window is ``(start, end]`` where ``start`` is the previous report's end (after a restart
too: the chain resumes from the spool) or, for the lease's first window, ``max(lease start, first sample -
one period)``; ``end`` is the timestamp of the tick that closes the window (so the last sample sits exactly
on the boundary), or the lease's end. A window without samples is not reported (the next one starts at
the same point). The open window's samples live in memory only: after a crash they are lost, and the next
window (flagged ``SAMPLE_GAP`` by the aggregation rule) covers the downtime without billing it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ledger.protocol import ReportFlag, Sample

from .bridge import LeaseInfo, LeaseProvider, ReportSink
from .clock import Clock
from .errors import AttestorError, ConfigError
from .meter import LeaseSpec, ReportBuilder
from .metrics import Metrics
from .sampler import Sampler
from .source import GpuSource
from .spool import Spool

log = logging.getLogger(__name__)

# Acknowledged reports stay in the spool for a while (status, local inspection), then are pruned.
KEEP_ACKED_PER_LEASE = 1_440  # one day of 60 s windows
PRUNE_EVERY_ACKS = 256


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delay ``min(max_ms, base_ms * 2**attempts)`` with ±20 % jitter (ms)."""

    base_ms: int = 500
    max_ms: int = 60_000

    def delay_ms(self, attempts: int, rng: random.Random) -> int:
        d = min(self.max_ms, self.base_ms * (1 << min(attempts, 30)))
        return max(1, d * rng.randrange(80, 121) // 100)


class Sender:
    """Sends due reports from the spool; one pass per :meth:`send_due`, or a loop in a thread."""

    def __init__(
        self,
        node_id: int,
        spool_path: Path,
        sink_factory: Callable[[], ReportSink],
        clock: Clock,
        backoff: Backoff = Backoff(),
        metrics: Metrics | None = None,
    ) -> None:
        self._node_id = node_id
        self._spool_path = spool_path
        self._sink_factory = sink_factory
        self._clock = clock
        self._backoff = backoff
        self._metrics = metrics
        self._rng = random.Random()
        self._acked_since_prune = 0
        self.wake = threading.Event()
        self._spool: Spool | None = None
        self._sink: ReportSink | None = None

    def _open(self) -> tuple[Spool, ReportSink]:
        if self._spool is None:
            self._spool = Spool(self._spool_path)
        if self._sink is None:
            self._sink = self._sink_factory()
        return self._spool, self._sink

    def send_due(self) -> int:
        """Send every report whose turn has come; returns how many were acknowledged."""
        spool, sink = self._open()
        acked = 0
        for item in spool.due(self._clock.wall_ms()):
            out = sink.submit(self._node_id, item)
            if out.accepted:
                spool.mark_acked(item.lease_id, item.seq, self._clock.wall_ms())
                acked += 1
                if self._metrics:
                    self._metrics.acks.inc()
                log.debug(
                    "lease %d seq %d acknowledged%s", item.lease_id, item.seq, " (duplicate)" if out.duplicate else ""
                )
            else:
                delay = self._backoff.delay_ms(item.attempts, self._rng)
                err = out.error or f"HTTP {out.status}"
                spool.mark_failed(item.lease_id, item.seq, err, self._clock.wall_ms() + delay)
                if self._metrics:
                    self._metrics.send_errors.inc()
                level = logging.ERROR if out.code == "seq_conflict" else logging.WARNING
                log.log(level, "lease %d seq %d not accepted (%s); retry in %d ms", item.lease_id, item.seq, err, delay)
        self._acked_since_prune += acked
        if self._acked_since_prune >= PRUNE_EVERY_ACKS:  # keep the spool bounded on a long-running node
            self._acked_since_prune = 0
            pruned = spool.prune_acked(KEEP_ACKED_PER_LEASE)
            log.debug("pruned %d acknowledged reports from the spool", pruned)
        if self._metrics:
            self._metrics.spool_depth.set(spool.depth())
        return acked

    def depth(self) -> int:
        return self._open()[0].depth()

    def run(self, stop: threading.Event, poll_s: float = 0.05) -> None:
        """Send until ``stop``; the thread's connection and client are closed when it ends."""
        try:
            while not stop.is_set():
                try:
                    self.send_due()
                except AttestorError as e:
                    log.error("sender: %s", e)
                self.wake.wait(poll_s)
                self.wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection and client of the calling thread (they are reopened on next use)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        close = getattr(self._sink, "close", None)
        if callable(close):
            close()
        self._sink = None


class LeaseWatcher:
    """Polls a :class:`LeaseProvider` in its own thread; the loop picks up the latest answer."""

    def __init__(self, provider: LeaseProvider, refresh_s: float) -> None:
        self._provider = provider
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._latest: list[LeaseInfo] | None = None
        self._version = 0

    def poll_once(self) -> None:
        leases = self._provider.active_leases()
        if leases is not None:
            with self._lock:
                self._latest = leases
                self._version += 1

    def latest(self) -> tuple[int, list[LeaseInfo] | None]:
        with self._lock:
            return self._version, self._latest

    def run(self, stop: threading.Event) -> None:
        """Poll every refresh period until ``stop`` (the caller polled once before starting the thread)."""
        while not stop.wait(self._refresh_s):
            try:
                self.poll_once()
            except AttestorError as e:
                log.warning("lease refresh failed: %s", e)


@dataclass(slots=True)
class _Metered:
    spec: LeaseSpec
    window_start: int | None  # None until the lease's first sample (first window of the lease)
    samples: list[Sample] = field(default_factory=list)


class Attestor:
    """One node's attestor. Collaborators are handed in; :mod:`attestor.cli` wires the real ones."""

    def __init__(
        self,
        *,
        node_id: int,
        source: GpuSource,
        builder: ReportBuilder,
        spool: Spool,
        leases: LeaseProvider,
        sink_factory: Callable[[], ReportSink],
        clock: Clock,
        metrics: Metrics | None = None,
        backoff: Backoff = Backoff(),
        lease_refresh_ms: int | None = None,
    ) -> None:
        self.node_id = node_id
        self.source = source
        self.sampler = Sampler(source)
        self.builder = builder
        self.spool = spool
        self.clock = clock
        self.metrics = metrics
        policy = builder.policy
        self.period_ms = policy.sample_period_ms
        self.window_ms = policy.window_ms
        self.tolerance_ms = policy.tolerance_ms
        refresh = lease_refresh_ms if lease_refresh_ms is not None else min(self.window_ms, 10_000)
        self.watcher = LeaseWatcher(leases, refresh / 1000)
        self.sender = Sender(node_id, spool.path, sink_factory, clock, backoff, metrics)
        self._metered: dict[int, _Metered] = {}
        self._lease_version = -1
        self._last_ts = -1
        self._pending_flags = 0
        self._check_node(node_id)

    def _check_node(self, node_id: int) -> None:
        owner = self.spool.claim(node_id)
        if owner != node_id:
            raise ConfigError(f"spool {self.spool.path} belongs to node {owner}, not {node_id}")

    # -- leases --------------------------------------------------------------------------------------

    def _apply_leases(self, leases: list[LeaseInfo], ts: int) -> None:
        wanted: dict[int, LeaseInfo] = {}
        for info in leases:
            if info.state == "Active" and ts < info.end_ms:
                wanted[info.lease_id] = info
        for lease_id in list(self._metered):
            if lease_id not in wanted:
                log.info("lease %d is no longer active: closing its last window", lease_id)
                m = self._metered.pop(lease_id)
                self._close(m, min(self._last_ts, m.spec.end_ms))
        for lease_id, info in wanted.items():
            try:
                spec = LeaseSpec.build(lease_id, info.gpu_indices, info.start_ms, info.end_ms, self.source.uuids)
            except ConfigError as e:
                log.error("not metering lease %d: %s", lease_id, e)
                continue
            if info.gpu_set_hash is not None and info.gpu_set_hash != spec.gpu_set_hash:
                log.error("not metering lease %d: its gpuSetHash does not match this node's GPUs", lease_id)
                continue
            current = self._metered.get(lease_id)
            if current is None:
                state = self.spool.lease_state(lease_id)
                self._metered[lease_id] = _Metered(spec, state.last_end_ms)
                log.info(
                    "metering lease %d on GPUs %s (resuming after seq %d)", lease_id, list(spec.gpu_indices), state.seq
                )
            else:
                current.spec = spec
        if self.metrics:
            self.metrics.active_leases.set(len(self._metered))

    def _refresh_if_changed(self, ts: int) -> None:
        version, leases = self.watcher.latest()
        if version != self._lease_version and leases is not None:
            self._lease_version = version
            self._apply_leases(leases, ts)

    # -- windows -------------------------------------------------------------------------------------

    def _buffer(self, samples: list[Sample], ts: int) -> None:
        for lease_id, m in list(self._metered.items()):
            spec = m.spec
            if ts > spec.end_ms:
                self._close(m, spec.end_ms)
                del self._metered[lease_id]
                log.info("lease %d reached its end", lease_id)
                continue
            if ts <= spec.start_ms:
                continue
            if m.window_start is None:
                m.window_start = max(spec.start_ms, ts - self.period_ms)
            if ts <= m.window_start:
                continue
            gpus = spec.gpu_indices
            m.samples.extend(s for s in samples if s.gpuIndex in gpus)

    def _close(self, m: _Metered, end_ms: int) -> None:
        """Build, sign and commit the window ``(window_start, end_ms]`` of a lease from its buffered samples."""
        rows = [s for s in m.samples if s.tsMs <= end_ms]
        if not rows or m.window_start is None or end_ms <= m.window_start:
            return
        state = self.spool.lease_state(m.spec.lease_id)
        built = self.builder.build(m.spec, state, rows, m.window_start, end_ms, self._pending_flags)
        self.spool.commit_report(built, self.clock.wall_ms())
        m.window_start = end_ms
        m.samples = [s for s in m.samples if s.tsMs > end_ms]
        if self.metrics:
            self.metrics.reports.inc()
        r = built.report
        log.info(
            "lease %d seq %d: window %d..%d, %d samples, busy %d ms, allocated %d ms, energy %d mJ",
            r.leaseId,
            r.seq,
            r.windowStartMs,
            r.windowEndMs,
            r.sampleCount,
            r.busyMs,
            r.allocatedMs,
            r.energyMj,
        )
        self.sender.wake.set()

    def close_windows(self, end_ms: int) -> None:
        for m in list(self._metered.values()):
            self._close(m, min(end_ms, m.spec.end_ms))
        self._pending_flags = 0

    # -- loop ----------------------------------------------------------------------------------------

    def tick(self, gap: bool = False) -> int:
        """Read every GPU once and buffer the samples; returns the tick's timestamp."""
        ts = self.clock.wall_ms()
        self._refresh_if_changed(ts)
        if ts <= self._last_ts:  # the wall clock stepped back: keep windows monotonic, flag it
            log.warning("wall clock went back %d ms; skipping a tick", self._last_ts - ts + 1)
            self._pending_flags |= ReportFlag.CLOCK_ADJUSTED
            self.sampler.tick(ts, gap)
            return self._last_ts
        samples = self.sampler.tick(ts, gap)
        self._last_ts = ts
        if gap and self.metrics:
            self.metrics.sample_gaps.inc()
        if self.metrics:
            self.metrics.observe(self.sampler.last_readings)
        self._buffer(samples, ts)
        return ts

    def run(self, stop: threading.Event, *, once: bool = False, once_timeout_s: float = 10.0) -> int:
        """Meter until ``stop`` is set (then close the open windows), or for one window with ``once``.

        Returns 0; with ``once``, 1 if reports remain unacknowledged after ``once_timeout_s`` (they stay
        spooled). Raises :class:`AttestorError` when the spool cannot be written.
        """
        self.spool.retry_all_now()
        self.watcher.poll_once()
        threads: list[threading.Thread] = []
        bg_stop = threading.Event()
        if not once:
            threads.append(
                threading.Thread(target=self.sender.run, args=(bg_stop,), name="attestor-sender", daemon=True)
            )
            threads.append(
                threading.Thread(target=self.watcher.run, args=(bg_stop,), name="attestor-leases", daemon=True)
            )
            for t in threads:
                t.start()
        clock = self.clock
        period = self.period_ms / 1000
        late_tolerance = self.tolerance_ms / 1000
        start = clock.monotonic()
        next_tick = start
        next_window = start + self.window_ms / 1000
        try:
            while not stop.is_set():
                now = clock.monotonic()
                if now < next_tick:
                    clock.wait(stop, next_tick - now)
                    continue
                gap = now - next_tick > late_tolerance
                if gap:  # skip the ticks that were missed; the gap is flagged in the samples
                    next_tick += ((now - next_tick) // period) * period
                next_tick += period
                ts = self.tick(gap)
                if now >= next_window - period / 2:
                    self.close_windows(ts)
                    while next_window <= now + period / 2:
                        next_window += self.window_ms / 1000
                    if once:
                        break
            else:
                self.close_windows(self._last_ts)  # graceful stop: do not lose the open window
        finally:
            bg_stop.set()
            for t in threads:
                t.join(timeout=5)
        if once:
            return self._flush(once_timeout_s)
        self._flush(2.0)  # whatever is left stays spooled and is sent on the next start
        return 0

    def _flush(self, timeout_s: float) -> int:
        """Try to send what is spooled for up to ``timeout_s`` (real time); 0 when nothing is left."""
        end = time.monotonic() + timeout_s
        while True:
            self.sender.send_due()
            depth = self.sender.depth()
            if depth == 0:
                return 0
            if time.monotonic() >= end:
                log.warning("%d report(s) remain in the spool; they are sent on the next run", depth)
                return 1
            time.sleep(0.05)

    def close(self) -> None:
        self.sender.close()
