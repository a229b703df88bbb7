"""Metering: accepting signed reports (api/METERING_API.md §1: parse, check the signer and the samples, keep
the per-lease hash chain in order, store durably) and serving them back with Merkle proofs
(api/AUDIT_API.md §2-3). Settlement is the relayer's job; the contract re-checks all of it anyway: the bridge
refuses early what could never settle, and keeps every report for auditors."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from ledger.protocol import (
    safejson,
    MeteringReport,
    domain_separator,
    ProtocolError,
    Sample,
    recover_signer,
    report_struct_hash,
    samples_root,
    typed_data_digest,
)
from ledger.protocol.economics import billable
from ledger.protocol.metering import REPORT_FLAG_MASK, EnergySplit, MeteringError, aggregate_window, energy_split
from ledger.protocol.report import ReportFlag
from ledger.protocol.samples import SAMPLE_FIELDS, MerkleTree, sample_leaf
from ledger.protocol.settlement import check_settleable

from ..errors import ApiError
from ..metrics import Metrics
from ..store import NewReport, Store
from ..store.reports import chain_figures
from ..store.archive import archive_entry
from ..store.samples import CODEC_ZLIB_COLUMNS, encode_samples
from ..workers.indexer import Indexer
from ..workers.intake import Accepted, PendingReport, ReportWriter

_I64 = 2**63 - 1  # SQL BIGINT; the contract bounds counters to 48 bits anyway
MAX_PROOFS_PER_REQUEST = 256
INLINE_BYTES = 64 * 1024
"""Report bodies up to this size are checked on the event loop (a few ms); larger ones in the verifier
processes."""
FUTURE_TOLERANCE_MS = 30_000
"""How far past the chain's current time a report's window may end (clock skew between a node and the
chain): a later window could never settle (the escrow refuses windows that end after the block), so it is
refused at intake."""
# Flags the window rule derives from earlier reports' samples (the gap from the previous window's last sample,
# an energy epoch): a report may carry them although its own samples do not show them.
_CARRIED_FLAGS = int(ReportFlag.SAMPLE_GAP | ReportFlag.ENERGY_RESET)

log = logging.getLogger(__name__)
REFUSALS_KEPT = 1000


@dataclass(frozen=True)
class Refusal:
    """A report the bridge refused at intake, with the reason it answered (kept in memory for the provider's
    page: the attestor only sees it in its spool's last error)."""

    at_ms: int
    node_id: int | None
    lease_id: int | None
    seq: int | None
    code: str
    message: str


class ChainTime:
    """The chain's current time for intake: ``max(the latest block's timestamp, this machine's clock)`` (a
    chain's next block carries about the wall time; a dev chain may be ahead of it), the block read at most
    every ``refresh_s``. ``follows``: the chain has no clock of its own (the in-process memory backend):
    :meth:`follow` moves it forward to a report's window instead of refusing the report, which is what lets
    an attestor run on an accelerated clock there."""

    def __init__(
        self,
        latest_block_s: Callable[[], int],
        *,
        follows: Callable[[int], None] | None = None,
        refresh_s: float = 5.0,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._latest = latest_block_s
        self._follow = follows
        self._refresh_s = refresh_s
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._block_ms = 0
        self._read_at = -1e18

    @property
    def follows(self) -> bool:
        return self._follow is not None

    def now_ms(self, *, fresh: bool = False) -> int:
        """The chain's time (ms); ``fresh``: read the latest block now rather than within ``refresh_s``."""
        with self._lock:
            if fresh or time.monotonic() - self._read_at >= self._refresh_s:
                self._block_ms = int(self._latest()) * 1000
                self._read_at = time.monotonic()
            return max(self._block_ms, self._wall_ms())

    def follow(self, ms: int) -> None:
        """Move a clockless chain forward to ``ms`` (never back)."""
        if self._follow is None:
            return
        with self._lock:
            target_s = -(-ms // 1000)
            self._block_ms = int(self._latest()) * 1000  # fresh: someone else may have moved the chain meanwhile
            self._read_at = time.monotonic()
            if target_s * 1000 > self._block_ms:
                self._follow(target_s)
                self._block_ms = target_s * 1000


def _int_or_none(v: Any) -> int | None:
    """An id as a submission spells it (a number, or a decimal string as report JSON has them), else None."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.isdigit() and len(v) < 20:
        return int(v)
    return None


def _err(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


def parse_submission(body: Any, max_samples: int) -> tuple[int, MeteringReport, bytes, list[Sample]]:
    """(nodeId, report, signature, samples) or 400 ``invalid_report``."""
    node_id, report, signature, raw_samples = parse_head(body, max_samples)
    return node_id, report, signature, parse_samples(raw_samples)


def parse_head(body: Any, max_samples: int) -> tuple[int, MeteringReport, bytes, list[Any]]:
    """Everything of a submission but its samples (the cheap part: a few fields), and the samples still raw
    (checked to be a list of at most ``max_samples``); 400 ``invalid_report``."""
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
    try:
        check_settleable(report)
    except ProtocolError as e:
        raise _err(422, "unsettleable_report", f"the escrow cannot settle this report: {e}") from e
    return node_id, report, signature, raw_samples


def parse_samples(raw_samples: list[Any]) -> list[Sample]:
    samples: list[Sample] = []
    for i, v in enumerate(raw_samples):
        if not isinstance(v, list):
            raise _err(400, "invalid_report", f"samples[{i}] must be a list of {len(SAMPLE_FIELDS)} integers")
        try:
            samples.append(Sample.from_values(v))
        except ProtocolError as e:
            raise _err(400, "invalid_report", f"samples[{i}]: {e}") from e
    return samples


@dataclass(frozen=True)
class Expected:
    """What the bridge knows of a report's node and lease: what verifying its body needs (picklable: it goes
    to the verifier processes with the body)."""

    domain_separator: bytes
    node_id: int
    attestor: str
    lease_node_id: int
    terms: dict[str, Any]


@dataclass(frozen=True)
class Verified:
    """A submission whose signature, samples and window figures were checked against :class:`Expected`."""

    report: MeteringReport
    signature: bytes
    signer: str
    struct_hash: bytes
    packed_samples: bytes
    sample_count: int
    energy: EnergySplit | None = None  # what the samples say of energyMj, to finish with the previous report's


def verify_submission(
    report: MeteringReport, signature: bytes, raw_samples: list[Any], expected: Expected
) -> Verified:
    """The expensive checks, in order: samples parsed, signer recovered (403 unless the node's attestor, on the
    lease's node), samples against sampleCount / samplesRoot, the window's figures re-derived from them."""
    samples = parse_samples(raw_samples)
    struct_hash_bytes = report_struct_hash(report)
    digest = typed_data_digest(expected.domain_separator, struct_hash_bytes)  # = report_digest(report, chainId, escrow)
    try:
        signer = recover_signer(digest, signature)
    except ProtocolError as e:
        raise _err(400, "invalid_report", f"signature: {e}") from e
    if expected.lease_node_id != expected.node_id:
        raise _err(403, "wrong_signer", f"lease {report.leaseId} is not on node {expected.node_id}")
    if signer != expected.attestor:
        raise _err(403, "wrong_signer", f"signed by {signer}, node {expected.node_id}'s attestor is {expected.attestor}")
    if len(samples) != report.sampleCount or samples_root(samples) != report.samplesRoot:
        raise _err(422, "samples_mismatch", "the samples do not match sampleCount / samplesRoot")
    energy = check_window(report, samples, expected.terms)
    return Verified(
        report, signature, signer, struct_hash_bytes, encode_samples(samples) if samples else b"", len(samples), energy
    )


_Outcome = tuple[str, Any]  # ("ok", value) | ("error", (status, code, message)): ApiError does not pickle


def _outcome_of(fn: Callable[[], Any]) -> _Outcome:
    try:
        return "ok", fn()
    except ApiError as e:
        return "error", (e.status, e.code, e.message)


def _loads(raw: bytes) -> Any:
    try:
        return safejson.loads(raw)
    except safejson.JsonRefused as e:
        raise _err(400, "invalid_report", str(e)) from e


def peek_raw(raw: bytes, max_samples: int) -> _Outcome:
    """In a verifier process: parse the body and read its head (nodeId, the report); no sample work."""
    return _outcome_of(lambda: parse_head(_loads(raw), max_samples)[:2])


def verify_raw(raw: bytes, max_samples: int, expected: Expected) -> _Outcome:
    """In a verifier process: parse the body again and run :func:`verify_submission`."""

    def run() -> Verified:
        _, report, signature, raw_samples = parse_head(_loads(raw), max_samples)
        return verify_submission(report, signature, raw_samples, expected)

    return _outcome_of(run)


def _raise_for(outcome: _Outcome) -> Any:
    kind, value = outcome
    if kind == "error":
        raise _err(*value)
    return value


def check_window(report: MeteringReport, samples: list[Sample], terms: dict[str, Any]) -> EnergySplit | None:
    """The window's own figures re-derived from its samples by the protocol's rule (ledger.protocol.metering):
    everything that does not depend on earlier reports (the gap from the previous window does: auditors check
    it from the whole chain). 422 ``figures_mismatch`` names the figure. The energy delta depends on the
    previous report's counters: its part from these samples is returned, and the store finishes the check
    where it holds the previous report (``api.store.reports``)."""
    if not samples:
        return None
    end = max(smp.tsMs for smp in samples)
    if report.windowEndMs != end:
        raise _err(422, "figures_mismatch", f"windowEndMs {report.windowEndMs} is not the newest sample's time {end}")
    gpus = {smp.gpuIndex for smp in samples}
    if len(gpus) > int(terms.get("gpuCount", len(gpus))):
        raise _err(422, "figures_mismatch", f"samples of {len(gpus)} GPUs; the lease has {terms.get('gpuCount')}")
    start_ms, end_ms = terms.get("startMs"), terms.get("endMs")
    try:
        fig = aggregate_window(
            samples,
            report.windowStartMs,
            report.windowEndMs,
            1,  # the period only sets the gap tolerance, and gaps are not checked here
            lease_start_ms=int(start_ms) if start_ms is not None else None,
            lease_end_ms=int(end_ms) if end_ms is not None else None,
        )
    except MeteringError as e:
        raise _err(422, "figures_mismatch", f"the samples cannot form this window: {e}") from e
    for name, want in (
        ("busyMs", fig.busyMs),
        ("allocatedMs", fig.allocatedMs),
        ("smActiveMs", fig.smActiveMs),
        ("tensorActiveMs", fig.tensorActiveMs),
        ("maxMemUsedMiB", fig.maxMemUsedMiB),
    ):
        got = getattr(report, name)
        if got != want:
            raise _err(422, "figures_mismatch", f"{name} is {got}; its samples give {want}")
    missing = fig.flags & REPORT_FLAG_MASK & ~_CARRIED_FLAGS & ~report.flags
    if missing:
        raise _err(422, "figures_mismatch", f"flags lack 0x{missing:x}, which its samples carry")
    return energy_split(samples, fig.energyMj)



def _new_report(v: Verified, terms: dict[str, Any]) -> NewReport:
    report = v.report
    mode = int(terms.get("billingMode", 0))
    return NewReport(
        lease_id=report.leaseId,
        seq=report.seq,
        struct_hash="0x" + v.struct_hash.hex(),
        prev_hash="0x" + report.prevReportHash.hex(),
        signer=v.signer,
        signature="0x" + v.signature.hex(),
        body=json.dumps(report.to_json(), separators=(",", ":")),
        samples_root="0x" + report.samplesRoot.hex(),
        packed_samples=v.packed_samples,
        samples_codec=CODEC_ZLIB_COLUMNS,
        energy=v.energy,
        sample_count=v.sample_count,
        window_end_ms=min(report.windowEndMs, _I64),
        chain_figures=chain_figures(report.to_json()),
        cum_billable=min(
            billable(mode, busy_ms=report.cumBusyMs, allocated_ms=report.cumAllocatedMs, sm_active_ms=report.cumSmActiveMs),
            _I64,
        ),
    )


class VerifierPool:
    """Processes that parse and verify large report bodies: the work is CPU-bound Python (100k samples cost
    about a second), which in a thread would still hold the event loop's interpreter lock. Started on first
    use; a pool whose process died is replaced (that request answers 503)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    async def run(self, fn: Callable[..., _Outcome], *args: Any) -> _Outcome:
        pool = self._get()
        try:
            return await asyncio.wrap_future(pool.submit(fn, *args))
        except BrokenProcessPool as e:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise _err(503, "intake_unavailable", "a report verifier process died: retry") from e

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class _NotCached(Exception):
    """prepare(cached_only=True) would have to read the store or the chain."""


@dataclass(frozen=True)
class SampleProof:
    index: int
    sample: Sample
    leaf: bytes
    proof: list[bytes]


class Metering:
    """Report intake and report reads. Collaborators: the store, the indexer's projections (node attestor,
    lease terms, with a chain fallback), the report writer, metrics, and the EIP-712 domain (chain id and
    escrow address)."""

    def __init__(
        self,
        store: Store,
        indexer: Indexer,
        writer: ReportWriter,
        metrics: Metrics,
        *,
        chain_id: int,
        escrow: str,
        max_samples_per_report: int,
        chain_time: ChainTime,
        future_tolerance_ms: int = FUTURE_TOLERANCE_MS,
        verifier: VerifierPool | None = None,
    ) -> None:
        self.verifier = verifier
        self.chain_time = chain_time
        self.future_tolerance_ms = future_tolerance_ms
        self.chain_id = chain_id
        self.escrow = escrow
        self.store = store
        self.indexer = indexer
        self.writer = writer
        self.metrics = metrics
        self.domain_separator = domain_separator(chain_id, escrow)
        self.max_samples = max_samples_per_report
        self._refusals: deque[Refusal] = deque(maxlen=REFUSALS_KEPT)

    def domain(self) -> tuple[int, str]:
        """(chainId, verifyingContract) of the EIP-712 domain reports are signed under."""
        return self.chain_id, self.escrow

    # --- intake ------------------------------------------------------------------------------------------

    def accept(self, body: Any) -> Accepted:
        """Check and store one report; raises ApiError with the METERING_API codes."""
        try:
            accepted = self.writer.submit(PendingReport(self.prepare(body)))
        except ApiError as e:
            self._refused(body, e)
            raise
        if not accepted.duplicate:
            self.metrics.reports_accepted.inc()
        return accepted

    async def accept_raw_async(self, raw: bytes) -> Accepted:
        """:meth:`accept_async` of a raw body. A body above ``INLINE_BYTES`` is parsed and verified in the
        verifier processes, never on the event loop: first its head (unknown node or lease: 404 before any
        sample or signature work), then the rest."""
        if self.verifier is None or len(raw) <= INLINE_BYTES:
            return await self.accept_async(_loads(raw))
        head: tuple[int, MeteringReport] | None = None
        try:
            head = _raise_for(await self.verifier.run(peek_raw, raw, self.max_samples))
            node_id, report = head
            expected = self._expected(node_id, report.leaseId, cached_only=True)
            if expected is None:
                expected = await anyio.to_thread.run_sync(self._expected, node_id, report.leaseId)
            assert expected is not None
            verified: Verified = _raise_for(await self.verifier.run(verify_raw, raw, self.max_samples, expected))
            try:
                self._check_time(verified.report, cached_only=True)
            except _NotCached:
                await anyio.to_thread.run_sync(self._check_time, verified.report, False)
            accepted = await self.writer.submit_async(PendingReport(_new_report(verified, expected.terms)))
        except ApiError as e:
            self._refused({"nodeId": head[0], "report": head[1].to_json()} if head else None, e)
            raise
        if not accepted.duplicate:
            self.metrics.reports_accepted.inc()
        return accepted

    async def accept_async(self, body: Any) -> Accepted:
        """:meth:`accept` for the event loop: the checks run inline when the node and lease projections are in
        memory (CPU only), otherwise in a worker thread (a miss reads the store and maybe the chain, which
        must not block the loop); the commit is awaited without holding a worker thread."""
        try:
            try:
                item = self.prepare(body, cached_only=True)
            except _NotCached:
                item = await anyio.to_thread.run_sync(self.prepare, body)
            accepted = await self.writer.submit_async(PendingReport(item))
        except ApiError as e:
            self._refused(body, e)
            raise
        if not accepted.duplicate:
            self.metrics.reports_accepted.inc()
        return accepted

    def _refused(self, body: Any, e: ApiError) -> None:
        """Count and log a refused report with its reason (the provider reads it in the bridge's log; the
        attestor has it in its spool's last error)."""
        self.metrics.reports_rejected.labels(e.code).inc()
        report = body.get("report") if isinstance(body, dict) else None
        lease, seq = (report.get("leaseId"), report.get("seq")) if isinstance(report, dict) else (None, None)
        node = body.get("nodeId") if isinstance(body, dict) else None
        log.warning("report refused: lease %s seq %s node %s: %s %s", lease, seq, node, e.code, e.message)
        self._refusals.append(Refusal(int(time.time() * 1000), _int_or_none(node), _int_or_none(lease),
                                      _int_or_none(seq), e.code, e.message))  # fmt: skip

    def refusals(self, node_ids: set[int]) -> list[Refusal]:
        """The latest refusals of reports naming one of these nodes, newest first."""
        return [r for r in reversed(self._refusals) if r.node_id in node_ids]

    def _expected(self, node_id: int, lease_id: int, *, cached_only: bool = False) -> Expected | None:
        """What the store knows of the node and the lease; 404 ``unknown_lease`` for either unknown. None when
        ``cached_only`` and that would read the store or the chain."""
        if cached_only and not (self.indexer.is_cached("node", node_id) and self.indexer.is_cached("lease", lease_id)):
            return None
        node = self.indexer.node_row(node_id)
        if node is None:
            raise _err(404, "unknown_lease", f"node {node_id} is unknown to the bridge")
        lease = self.indexer.lease_row(lease_id) if lease_id < 2**63 else None
        if lease is None:
            raise _err(404, "unknown_lease", f"lease {lease_id} is unknown to the bridge")
        return Expected(self.domain_separator, node_id, node.attestor, lease.node_id, json.loads(lease.data))

    def prepare(self, body: Any, *, cached_only: bool = False) -> NewReport:
        """Everything but the store: parse, signer, samples; raises ApiError with the METERING_API codes."""
        node_id, report, signature, raw_samples = parse_head(body, self.max_samples)
        expected = self._expected(node_id, report.leaseId, cached_only=cached_only)
        if expected is None:
            raise _NotCached
        verified = verify_submission(report, signature, raw_samples, expected)
        self._check_time(report, cached_only)
        return _new_report(verified, expected.terms)

    def _check_time(self, report: MeteringReport, cached_only: bool) -> None:
        """422 ``window_in_future`` for a window that ends after the chain's time (plus the tolerance); on a
        chain without a clock of its own the chain follows instead."""
        ct = self.chain_time
        if cached_only and ct.follows:
            raise _NotCached  # moving the chain is a chain call: not on the event loop
        now = ct.now_ms()
        if ct.follows:  # a clockless chain is moved to the window's end, so that it can settle at once
            if report.windowEndMs > now:
                ct.follow(report.windowEndMs)
            return
        if report.windowEndMs <= now + self.future_tolerance_ms:
            return
        if cached_only:  # before refusing, make sure the chain has not moved since the last read
            raise _NotCached  # a chain read: not on the event loop
        now = ct.now_ms(fresh=True)
        if report.windowEndMs <= now + self.future_tolerance_ms:
            return
        ahead = report.windowEndMs - now
        log.warning(
            "lease %d seq %d refused: its window ends %.1f s after the chain's time (the attestor's clock is ahead?)",
            report.leaseId, report.seq, ahead / 1000,
        )  # fmt: skip
        raise _err(
            422,
            "window_in_future",
            f"the window ends at {report.windowEndMs}, {ahead} ms after the chain's current time; the escrow "
            f"cannot settle it (tolerance {self.future_tolerance_ms} ms): check the attestor's clock",
        )

    # --- reads -------------------------------------------------------------------------------------------

    def lease_known(self, lease_id: int) -> Any:
        row = self.indexer.lease_row(lease_id)
        if row is None:
            raise ApiError(404, "unknown_lease", f"lease {lease_id} is unknown to the bridge")
        return row

    def reports(self, lease_id: int, from_seq: int, limit: int, *, samples: bool) -> tuple[list[dict[str, Any]], int | None]:
        """A page of the lease's stored reports in seq order (api/AUDIT_API.md §2): entries and the next seq."""
        lease = self.lease_known(lease_id)
        rows, sets, next_seq = self.store.reports.page(lease_id, from_seq, limit, samples=samples)
        out = []
        for r in rows:
            entry = archive_entry(r.body, r.signature, r.struct_hash, lease.node_id, sets.get(r.samples_root))
            entry["status"], entry["reason"] = r.status, r.reason
            if not samples:
                del entry["samples"]
            out.append(entry)
        return out, next_seq

    def proofs(self, lease_id: int, seq: int, indices: list[int]) -> tuple[str, list[SampleProof]]:
        """Samples of one report at ``indices`` in submission order, each with its Merkle proof (the tree is
        built once), and the report's stored samples root. 404 for an unknown report or index."""
        found = self.store.reports.get(lease_id, seq)
        if found is None:
            raise ApiError(404, "unknown_report", f"no report {seq} of lease {lease_id}")
        r, stored = found
        smps = stored or []
        for i in indices:
            if i < 0 or i >= len(smps):
                raise ApiError(404, "unknown_sample", f"report {seq} has {len(smps)} samples; no index {i}")
        tree = MerkleTree.of_samples(smps) if smps else None
        out = []
        for i in indices:
            leaf = sample_leaf(smps[i])
            assert tree is not None
            out.append(SampleProof(i, smps[i], leaf, tree.proof(leaf)))
        return r.samples_root, out

    def observed_sample_period_ms(self, lease_id: int) -> int | None:
        """Median interval between consecutive samples of the same GPU in the lease's latest accepted report."""
        stored = self.store.reports.latest_samples(lease_id)
        if stored is None:
            return None
        last: dict[int, int] = {}
        gaps: list[int] = []
        for smp in sorted(stored, key=lambda x: (x.gpuIndex, x.tsMs)):
            prev = last.get(smp.gpuIndex)
            if prev is not None and smp.tsMs > prev:
                gaps.append(smp.tsMs - prev)
            last[smp.gpuIndex] = smp.tsMs
        if not gaps:
            return None
        gaps.sort()
        return gaps[(len(gaps) - 1) // 2]
