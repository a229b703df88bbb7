"""The attestor loop: read the driver's sample buffers on ``monotonic()`` deadlines, close windows, commit,
send with backoff.

Threads: the metering loop (the caller's thread) reads the GPUs, buffers each lease's samples and, every
window, builds, signs and commits one report per lease to the spool. A sender thread sends committed
reports in seq order per lease and retries with exponential backoff until the bridge acknowledges them. A
lease watcher thread asks the bridge which leases to meter, so a slow bridge never delays metering. Each
thread has its own SQLite connection and HTTP client.

Cadence (the policy, :class:`attestor.meter.SamplingPolicy`, is in every report's configHash):

- every ``sample_period_ms`` each GPU's interval is closed into one sample (the driver's utilization and
  power buffers are read then: every driver sample counts once, whatever this cadence);
- where a buffer turns out to have lost samples between two reads (``UTIL_HOLE``), the buffers are also read
  in between, every ``drain_ms``, which halves on every hole down to ``min_drain_ms`` (the driver's buffer
  capacity is not published; a hole costs coverage once, flagged and never billed);
- without a utilization buffer, util.gpu is polled every second (``UTIL_POLLED``: aliasing-prone);
- every ``window_ms`` each lease's window is closed; the energy counter is read with that collect only
  (and at a lease's first collect and its end, so that its energy has a baseline and an exact end);
- a quarter second after a lease's start the GPUs' intervals are closed (the lease's first samples begin
  within a driver period of its start, with an energy reading); a quarter second after its end they are
  closed at the last driver sample at or before the end; a lease first seen after its start gets a collect
  at once.

Windows: a lease's window is ``(start, end]`` where ``end`` is the newest sample time in it and ``start``
the previous report's end (after a restart too: the chain resumes from the spool) or, for the lease's first
window, ``max(lease start, the earliest start of its first samples' intervals)``. A window without samples
is not reported. The open window's samples live in memory only: after a crash they are lost, and the next
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
from ledger.protocol.samples import SampleField

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
                log.info(
                    "lease %d seq %d acknowledged by the bridge%s", item.lease_id, item.seq,
                    " (it already had it)" if out.duplicate else "",
                )  # fmt: skip
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
    energy_anchored: bool  # every GPU of the lease has an energy reading in the lease (rule 8's baseline)
    samples: list[Sample] = field(default_factory=list)
    start_collected: bool = True  # False while a collect at the lease's start is still to come
    end_collected: bool = False


BOUNDARY_LAG_MS = 250
"""How long after a lease's start or end the collect at that boundary runs: the driver stamps a utilization
sample at the end of its 200 ms period, so the one covering the boundary is in the buffer by then."""

_HOLE = int(ReportFlag.UTIL_HOLE)
_ENERGY_UNREAD = int(SampleField.ENERGY_UNREAD)


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
        self.min_drain_ms = min(policy.min_drain_ms, self.period_ms)
        self.drain_ms = self.period_ms
        self.polling = source.needs_polling()
        refresh = lease_refresh_ms if lease_refresh_ms is not None else min(self.window_ms, 10_000)
        self.watcher = LeaseWatcher(leases, refresh / 1000)
        self.sender = Sender(node_id, spool.path, sink_factory, clock, backoff, metrics)
        self._metered: dict[int, _Metered] = {}
        self._lease_version = -1
        self._gpu_end: dict[int, int] = {}  # newest sample time per GPU
        self._pending_flags = 0
        self._collect_now = False
        self._check_node(node_id)

    def _check_node(self, node_id: int) -> None:
        owner = self.spool.claim(node_id)
        if owner != node_id:
            raise ConfigError(f"spool {self.spool.path} belongs to node {owner}, not {node_id}")

    # -- leases --------------------------------------------------------------------------------------

    def _apply_leases(self, leases: list[LeaseInfo]) -> None:
        now = self.clock.wall_ms()
        wanted: dict[int, LeaseInfo] = {}
        for info in leases:
            if info.state == "Active" and (now < info.end_ms or info.lease_id in self._metered):
                wanted[info.lease_id] = info
        for lease_id in list(self._metered):
            if lease_id not in wanted:
                log.info("lease %d is no longer active: closing its last window", lease_id)
                self._close(self._metered.pop(lease_id))
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
                anchored = all(i in state.energy_baseline for i in spec.gpu_indices)
                m = _Metered(spec, state.last_end_ms, anchored)
                if now < spec.start_ms:
                    m.start_collected = False  # a collect at the start will close the intervals there
                else:
                    self._collect_now = True  # close the intervals now: the lease's samples start here
                self._metered[lease_id] = m
                log.info(
                    "metering lease %d on GPUs %s (resuming after seq %d)", lease_id, list(spec.gpu_indices), state.seq
                )
            else:
                current.spec = spec
        if self.metrics:
            self.metrics.active_leases.set(len(self._metered))

    def refresh_leases(self) -> None:
        """Apply the watcher's latest answer if it changed."""
        version, leases = self.watcher.latest()
        if version != self._lease_version and leases is not None:
            self._lease_version = version
            self._apply_leases(leases)

    def _needs_energy(self) -> bool:
        return any(not m.energy_anchored for m in self._metered.values())

    # -- collecting ------------------------------------------------------------------------------------

    def collect(self, read_energy: bool | None = None, until_ms: int | None = None) -> list[Sample]:
        """Close the GPUs' intervals and hand each lease its samples. ``read_energy``: read the energy
        counter with this collect (default: only where a lease still needs a baseline)."""
        read = self._needs_energy() if read_energy is None else read_energy
        samples = self.sampler.collect(read, until_ms)
        self._collect_now = False
        accepted = []
        for s in samples:
            last = self._gpu_end.get(s.gpuIndex)
            if last is not None and s.tsMs - s.intervalMs < last:
                # the clock the driver stamps with stepped back: keep every GPU's intervals disjoint
                log.warning("GPU %d: sample at %d overlaps the previous one (clock stepped back); dropped",
                            s.gpuIndex, s.tsMs)
                self._pending_flags |= ReportFlag.CLOCK_ADJUSTED
                continue
            self._gpu_end[s.gpuIndex] = s.tsMs
            accepted.append(s)
        holes = sum(1 for s in accepted if s.flags & _HOLE)
        if holes:
            self._on_hole()
            if self.metrics:
                self.metrics.util_holes.inc(holes)
        if self.metrics:
            self.metrics.observe(self.sampler.last_intervals)
        self._buffer(accepted)
        return accepted

    def drain(self) -> None:
        """Read the driver's buffers between collects (only while they are found to lose samples)."""
        if self.source.drain():
            self._on_hole()

    def poll(self) -> None:
        self.source.poll()

    def _on_hole(self) -> None:
        halved = max(self.min_drain_ms, self.drain_ms // 2)
        if halved < self.drain_ms:
            log.warning("the driver's utilization buffer lost samples: reading it every %d ms from now on", halved)
            self.drain_ms = halved

    def _buffer(self, samples: list[Sample]) -> None:
        for m in self._metered.values():
            spec = m.spec
            rows = [
                s for s in samples
                if s.gpuIndex in spec.gpu_indices and spec.start_ms < s.tsMs <= spec.end_ms
            ]  # fmt: skip
            if m.window_start is not None:
                rows = [s for s in rows if s.tsMs > m.window_start]
            if not rows:
                continue
            if m.window_start is None:
                m.window_start = max(spec.start_ms, min(s.tsMs - s.intervalMs for s in rows))
            m.samples.extend(rows)
            if not m.energy_anchored:
                read = {s.gpuIndex for s in m.samples if not s.flags & _ENERGY_UNREAD}
                m.energy_anchored = all(i in read for i in spec.gpu_indices)

    # -- windows -------------------------------------------------------------------------------------

    def _close(self, m: _Metered) -> None:
        """Build, sign and commit a lease's window from its buffered samples (ends at the newest one)."""
        if not m.samples or m.window_start is None:
            return
        end_ms = max(s.tsMs for s in m.samples)
        state = self.spool.lease_state(m.spec.lease_id)
        rows = sorted(m.samples, key=lambda s: (s.tsMs, s.gpuIndex))
        built = self.builder.build(m.spec, state, rows, m.window_start, end_ms, self._pending_flags)
        self.spool.commit_report(built, self.clock.wall_ms())
        m.window_start = end_ms
        m.samples = []
        if self.metrics:
            self.metrics.reports.inc()
        r = built.report
        log.info(
            "lease %d seq %d: window %d..%d, %d samples, busy %d ms, SM-active %d ms, allocated %d ms, energy %d mJ",
            r.leaseId,
            r.seq,
            r.windowStartMs,
            r.windowEndMs,
            r.sampleCount,
            r.busyMs,
            r.smActiveMs,
            r.allocatedMs,
            r.energyMj,
        )
        self.sender.wake.set()

    def close_windows(self) -> None:
        """Close every lease's open window (each ends at its newest sample)."""
        for m in list(self._metered.values()):
            self._close(m)
        self._pending_flags = 0

    def boundary_due_ms(self) -> int | None:
        """Wall ms until the next lease start or end needs its collect (≤ 0: now); None if none is pending."""
        times = [m.spec.start_ms for m in self._metered.values() if not m.start_collected]
        times += [m.spec.end_ms for m in self._metered.values() if not m.end_collected]
        if not times:
            return None
        return min(times) + BOUNDARY_LAG_MS - self.clock.wall_ms()

    def collect_due_boundaries(self) -> int:
        """Collect at each lease start or end that is due, closing ended leases' last windows (at an end the
        GPUs' intervals end at the last driver sample at or before it); returns how many boundaries."""
        now = self.clock.wall_ms() - BOUNDARY_LAG_MS
        due: list[tuple[int, bool, _Metered]] = []
        for m in self._metered.values():
            if not m.start_collected and m.spec.start_ms <= now:
                due.append((m.spec.start_ms, False, m))
            if not m.end_collected and m.spec.end_ms <= now:
                due.append((m.spec.end_ms, True, m))
        for at, is_end, m in sorted(due, key=lambda x: (x[0], x[1])):
            if not is_end:
                # intervals end just after the start (the newest driver sample): the lease's first samples,
                # with the energy counter read, begin within a driver period of its start
                self.collect(read_energy=True)
                m.start_collected = True
                continue
            self.collect(read_energy=True, until_ms=at)
            m.end_collected = True
            self._close(m)
            self._metered.pop(m.spec.lease_id, None)
            log.info("lease %d reached its end", m.spec.lease_id)
        if due and self.metrics:
            self.metrics.active_leases.set(len(self._metered))
        return len(due)

    # -- loop ----------------------------------------------------------------------------------------

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
        start = clock.monotonic()
        next_collect = start + period
        next_window = start + self.window_ms / 1000
        next_drain = start + self.drain_ms / 1000
        next_poll = start + 1.0
        stopped = False
        try:
            while True:
                if stop.is_set():
                    stopped = True
                    break
                self.refresh_leases()
                now = clock.monotonic()
                if self._collect_now:
                    self.collect()
                    next_drain = now + self.drain_ms / 1000
                    continue
                boundary = self.boundary_due_ms()
                if boundary is not None and boundary <= 0:
                    self.collect_due_boundaries()
                    continue
                if self.polling and now >= next_poll:
                    self.poll()
                    next_poll = max(next_poll + 1.0, now + 0.5)
                if now >= next_collect:
                    closing = now >= next_window - period / 2
                    self.collect(read_energy=True if closing else None)
                    while next_collect <= now:
                        next_collect += period
                    next_drain = now + self.drain_ms / 1000
                    if closing:
                        self.close_windows()
                        while next_window <= now + period / 2:
                            next_window += self.window_ms / 1000
                        if once:
                            break
                    continue
                if self.drain_ms < self.period_ms and now >= next_drain:
                    self.drain()
                    next_drain = now + self.drain_ms / 1000
                deadlines = [next_collect]
                if self.drain_ms < self.period_ms:
                    deadlines.append(next_drain)
                if self.polling:
                    deadlines.append(next_poll)
                wait = min(deadlines) - now
                if boundary is not None:
                    wait = min(wait, boundary / 1000)
                clock.wait(stop, max(wait, 0.001))
            if stopped:  # graceful stop: close the open windows over everything up to now
                self.collect(read_energy=True)
                self.close_windows()
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
