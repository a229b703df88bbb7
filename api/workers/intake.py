"""The report writer: stores accepted reports with group commit, in arrival order.

One transaction (one fsync) for every report that arrived while the previous commit ran; a report is
answered only after its commit (durable when acknowledged). The per-lease hash chain is checked where each
report is stored (``api.store.reports``), in arrival order, inside that transaction.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ApiError
from ..store import NewReport, Store, Stored


@dataclass(frozen=True)
class Accepted:
    report_hash: str
    duplicate: bool


@dataclass
class PendingReport:
    """A checked report waiting for the writer, and how its caller learns the outcome."""

    report: NewReport
    done: threading.Event = field(default_factory=threading.Event)
    result: Accepted | None = None
    error: BaseException | None = None
    notify: Callable[[], None] | None = None  # called from the writer thread once done


_REFUSALS = {"seq_conflict", "seq_gap", "chain_mismatch", "figures_mismatch"}


class ReportWriter:
    MAX_BATCH = 256

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: queue.Queue[PendingReport | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="bridge-report-writer", daemon=True)
        self._thread.start()

    def submit(self, item: PendingReport, timeout_s: float = 60.0) -> Accepted:
        self._queue.put(item)
        if not item.done.wait(timeout_s):
            raise ApiError(503, "store_unavailable", "the report store did not answer in time")
        return _outcome(item)

    async def submit_async(self, item: PendingReport, timeout_s: float = 60.0) -> Accepted:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            if not fut.done():
                fut.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(done)

        item.notify = wake
        self._queue.put(item)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError as e:
            raise ApiError(503, "store_unavailable", "the report store did not answer in time") from e
        return _outcome(item)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                stored = self._store([item.report for item in batch])
                for item, res in zip(batch, stored):
                    if res.outcome in ("stored", "duplicate"):
                        item.result = Accepted(item.report.struct_hash, duplicate=res.outcome == "duplicate")
                    else:
                        item.error = ApiError(422 if res.outcome == "figures_mismatch" else 409, res.outcome, res.message)
            except Exception as e:  # the commit itself failed: nothing of this batch is stored
                for item in batch:
                    item.result = None
                    item.error = ApiError(503, "store_unavailable", f"the report store failed: {type(e).__name__}")
            for item in batch:
                item.done.set()
                if item.notify is not None:
                    item.notify()
            if stop:
                return


    def _store(self, reports: list[NewReport]) -> list[Stored]:
        """Store a batch; a commit that fails (a connection lost, a serialization failure) is tried once more:
        nothing of it was stored."""
        try:
            return self.store.reports.store_batch(reports)
        except Exception:
            time.sleep(0.05)
            return self.store.reports.store_batch(reports)


def _outcome(item: PendingReport) -> Accepted:
    if item.error is not None:
        raise item.error
    assert item.result is not None
    return item.result
