"""Accepting metering reports (api/METERING_API.md §1): parse, check the signer and the samples, keep the
per-lease hash chain in order, store durably. Settlement is the relayer's job; the contract re-checks all
of it anyway: the bridge refuses early what could never settle, and keeps every report for auditors."""

from __future__ import annotations

import asyncio
import json
import queue
from collections.abc import Callable
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from ledger.protocol import (
    ZERO_HASH,
    MeteringReport,
    ProtocolError,
    Sample,
    recover_signer,
    report_struct_hash,
    typed_data_digest,
    samples_root,
)
from ledger.settlement import check_settleable

from .errors import ApiError
from .samples import pack_samples
from .store import Report, SampleSet, Store, now_ms

if TYPE_CHECKING:
    from .services import Services


_I64 = 2**63 - 1  # SQL BIGINT; the contract bounds counters to 48 bits anyway


@dataclass(frozen=True)
class Accepted:
    report_hash: str
    duplicate: bool


def _err(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


def parse_submission(body: Any, max_samples: int) -> tuple[int, MeteringReport, bytes, list[Sample]]:
    """(nodeId, report, signature, samples) or 400 ``invalid_report``."""
    if not isinstance(body, dict):
        raise _err(400, "invalid_report", "the body must be a JSON object")
    node_id = body.get("nodeId")
    if not isinstance(node_id, int) or isinstance(node_id, bool) or node_id < 0 or node_id >= 2**63:
        raise _err(400, "invalid_report", "nodeId must be a non-negative integer")
    raw_report = body.get("report")
    if not isinstance(raw_report, dict):
        raise _err(400, "invalid_report", "report must be an object")
    try:
        report = MeteringReport.from_json(raw_report)
    except ProtocolError as e:
        raise _err(400, "invalid_report", f"report: {e}") from e
    sig_hex = body.get("signature")
    if not isinstance(sig_hex, str) or not sig_hex.startswith("0x") or len(sig_hex) != 132:
        raise _err(400, "invalid_report", "signature must be 0x followed by 65 bytes of hex")
    try:
        signature = bytes.fromhex(sig_hex[2:])
    except ValueError as e:
        raise _err(400, "invalid_report", "signature is not hex") from e
    raw_samples = body.get("samples")
    if not isinstance(raw_samples, list):
        raise _err(400, "invalid_report", "samples must be a list")
    if len(raw_samples) > max_samples:
        raise _err(400, "invalid_report", f"at most {max_samples} samples per report")
    samples: list[Sample] = []
    for i, v in enumerate(raw_samples):
        if not isinstance(v, list):
            raise _err(400, "invalid_report", f"samples[{i}] must be a list of 8 integers")
        try:
            samples.append(Sample.from_values(v))
        except ProtocolError as e:
            raise _err(400, "invalid_report", f"samples[{i}]: {e}") from e
    return node_id, report, signature, samples


def accept_report(svc: "Services", body: Any) -> Accepted:
    """Check and store one report; raises ApiError with the METERING_API codes."""
    accepted = svc.report_writer.submit(prepare_report(svc, body))
    if not accepted.duplicate:
        svc.metrics.reports_accepted.inc()
    return accepted


async def accept_report_async(svc: "Services", body: Any) -> Accepted:
    """:func:`accept_report` for the event loop: the checks run inline when the node and lease projections
    are in memory (CPU only), otherwise in a worker thread (a miss reads the store and maybe the chain,
    which must not block the loop); the commit is awaited without holding a worker thread."""
    try:
        item = prepare_report(svc, body, cached_only=True)
    except _NotCached:
        item = await run_in_threadpool(prepare_report, svc, body)
    accepted = await svc.report_writer.submit_async(item)
    if not accepted.duplicate:
        svc.metrics.reports_accepted.inc()
    return accepted


class _NotCached(Exception):
    """prepare_report(cached_only=True) would have to read the store or the chain."""


def prepare_report(svc: "Services", body: Any, *, cached_only: bool = False) -> "PendingReport":
    """Everything but the store: parse, signer, samples; raises ApiError with the METERING_API codes."""
    node_id, report, signature, samples = parse_submission(body, svc.settings.max_samples_per_report)
    if cached_only and not (svc.indexer.is_cached("node", node_id) and svc.indexer.is_cached("lease", report.leaseId)):
        raise _NotCached
    try:
        check_settleable(report)
    except ProtocolError as e:
        raise _err(422, "invalid_report", f"the escrow cannot settle this report: {e}") from e
    node = svc.indexer.node_row(node_id)
    if node is None:
        raise _err(404, "unknown_lease", f"node {node_id} is unknown to the bridge")
    lease = svc.indexer.lease_row(report.leaseId) if report.leaseId < 2**63 else None
    if lease is None:
        raise _err(404, "unknown_lease", f"lease {report.leaseId} is unknown to the bridge")
    struct_hash_bytes = report_struct_hash(report)
    digest = typed_data_digest(svc.domain_separator, struct_hash_bytes)  # = report_digest(report, chainId, escrow)
    try:
        signer = recover_signer(digest, signature)
    except ProtocolError as e:
        raise _err(400, "invalid_report", f"signature: {e}") from e
    if lease.node_id != node_id:
        raise _err(403, "wrong_signer", f"lease {report.leaseId} is not on node {node_id}")
    if signer != node.attestor:
        raise _err(403, "wrong_signer", f"signed by {signer}, node {node_id}'s attestor is {node.attestor}")
    if len(samples) != report.sampleCount or samples_root(samples) != report.samplesRoot:
        raise _err(422, "samples_mismatch", "the samples do not match sampleCount / samplesRoot")
    struct_hash = "0x" + struct_hash_bytes.hex()
    lease_data = json.loads(lease.data)
    metered = int(lease_data.get("billingMode", 0)) == 1
    item = PendingReport(
        lease_id=report.leaseId,
        seq=report.seq,
        struct_hash=struct_hash,
        prev_hash="0x" + report.prevReportHash.hex(),
        signer=signer,
        signature="0x" + signature.hex(),
        body=json.dumps(report.to_json(), separators=(",", ":")),
        samples_root="0x" + report.samplesRoot.hex(),
        packed_samples=pack_samples(samples) if samples else b"",
        sample_count=len(samples),
        window_end_ms=min(report.windowEndMs, _I64),
        cum_billable=min(report.cumBusyMs if metered else report.cumAllocatedMs, _I64),
    )
    return item


@dataclass
class PendingReport:
    lease_id: int
    seq: int
    struct_hash: str
    prev_hash: str
    signer: str
    signature: str
    body: str
    samples_root: str
    packed_samples: bytes
    sample_count: int
    window_end_ms: int
    cum_billable: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Accepted | None = None
    error: BaseException | None = None
    notify: Callable[[], None] | None = None  # called from the writer thread once done


class ReportWriter:
    """Stores accepted reports with group commit: one transaction (one fsync) for every report that
    arrived while the previous commit ran. A report is answered only after its commit: durable when acked.
    The hash-chain checks run here, in arrival order, inside the transaction that stores the report."""

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
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    async def submit_async(self, item: PendingReport, timeout_s: float = 60.0) -> Accepted:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        item.notify = wake
        self._queue.put(item)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError as e:
            raise ApiError(503, "store_unavailable", "the report store did not answer in time") from e
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

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
                with self.store.write_lock, self.store.engine.begin() as conn:
                    for item in batch:
                        try:
                            with conn.begin_nested():
                                item.result = _store_one(conn, item)
                        except ApiError as e:
                            item.error = e
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


def _store_one(conn: Connection, item: PendingReport) -> Accepted:
    existing = conn.execute(
        select(Report.struct_hash).where(Report.lease_id == item.lease_id, Report.seq == item.seq)
    ).first()
    if existing is not None:
        if existing[0] == item.struct_hash:
            return Accepted(item.struct_hash, duplicate=True)
        raise _err(409, "seq_conflict", f"seq {item.seq} of lease {item.lease_id} is stored with another hash")
    head = conn.execute(
        select(Report.seq, Report.struct_hash)
        .where(Report.lease_id == item.lease_id)
        .order_by(Report.seq.desc())
        .limit(1)
    ).first()
    last_seq, last_hash = (int(head[0]), str(head[1])) if head else (0, "0x" + ZERO_HASH.hex())
    if item.seq != last_seq + 1:
        raise _err(409, "seq_gap", f"seq {item.seq} after {last_seq}: send the missing reports first")
    if item.prev_hash != last_hash:
        raise _err(409, "chain_mismatch", f"prevReportHash is not the hash of report {last_seq}")
    if item.sample_count and conn.execute(select(SampleSet.root).where(SampleSet.root == item.samples_root)).first() is None:
        conn.execute(insert(SampleSet).values(root=item.samples_root, count=item.sample_count, data=item.packed_samples))
    conn.execute(
        insert(Report).values(
            lease_id=item.lease_id,
            seq=item.seq,
            struct_hash=item.struct_hash,
            signer=item.signer,
            signature=item.signature,
            body=item.body,
            samples_root=item.samples_root,
            window_end_ms=item.window_end_ms,
            cum_billable=item.cum_billable,
            status="accepted",
            accepted_ms=now_ms(),
        )
    )
    return Accepted(item.struct_hash, duplicate=False)
