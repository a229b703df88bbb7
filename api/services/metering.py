"""Metering: accepting signed reports (api/METERING_API.md §1: parse, check the signer and the samples, keep
the per-lease hash chain in order, store durably) and serving them back with Merkle proofs
(api/AUDIT_API.md §2-3). Settlement is the relayer's job; the contract re-checks all of it anyway: the bridge
refuses early what could never settle, and keeps every report for auditors."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from ledger.protocol import (
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
from ledger.protocol.metering import REPORT_FLAG_MASK, MeteringError, aggregate_window
from ledger.protocol.report import ReportFlag
from ledger.protocol.samples import SAMPLE_FIELDS, MerkleTree, sample_leaf
from ledger.protocol.settlement import check_settleable

from ..errors import ApiError
from ..metrics import Metrics
from ..store import NewReport, Store
from ..store.reports import chain_figures
from ..store.samples import pack_samples, unpack_samples
from ..workers.indexer import Indexer
from ..workers.intake import Accepted, PendingReport, ReportWriter

_I64 = 2**63 - 1  # SQL BIGINT; the contract bounds counters to 48 bits anyway
MAX_PROOFS_PER_REQUEST = 256
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
            raise _err(400, "invalid_report", f"samples[{i}] must be a list of {len(SAMPLE_FIELDS)} integers")
        try:
            samples.append(Sample.from_values(v))
        except ProtocolError as e:
            raise _err(400, "invalid_report", f"samples[{i}]: {e}") from e
    return node_id, report, signature, samples


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
    ) -> None:
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

    def prepare(self, body: Any, *, cached_only: bool = False) -> NewReport:
        """Everything but the store: parse, signer, samples; raises ApiError with the METERING_API codes."""
        node_id, report, signature, samples = parse_submission(body, self.max_samples)
        if cached_only and not (self.indexer.is_cached("node", node_id) and self.indexer.is_cached("lease", report.leaseId)):
            raise _NotCached
        try:
            check_settleable(report)
        except ProtocolError as e:
            raise _err(422, "unsettleable_report", f"the escrow cannot settle this report: {e}") from e
        node = self.indexer.node_row(node_id)
        if node is None:
            raise _err(404, "unknown_lease", f"node {node_id} is unknown to the bridge")
        lease = self.indexer.lease_row(report.leaseId) if report.leaseId < 2**63 else None
        if lease is None:
            raise _err(404, "unknown_lease", f"lease {report.leaseId} is unknown to the bridge")
        struct_hash_bytes = report_struct_hash(report)
        digest = typed_data_digest(self.domain_separator, struct_hash_bytes)  # = report_digest(report, chainId, escrow)
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
        terms = json.loads(lease.data)
        self._check_window(report, samples, terms)
        self._check_time(report, cached_only)
        mode = int(terms.get("billingMode", 0))
        return NewReport(
            lease_id=report.leaseId,
            seq=report.seq,
            struct_hash="0x" + struct_hash_bytes.hex(),
            prev_hash="0x" + report.prevReportHash.hex(),
            signer=signer,
            signature="0x" + signature.hex(),
            body=json.dumps(report.to_json(), separators=(",", ":")),
            samples_root="0x" + report.samplesRoot.hex(),
            packed_samples=pack_samples(samples) if samples else b"",
            sample_count=len(samples),
            window_end_ms=min(report.windowEndMs, _I64),
            chain_figures=chain_figures(report.to_json()),
            cum_billable=min(
                billable(
                    mode, busy_ms=report.cumBusyMs, allocated_ms=report.cumAllocatedMs, sm_active_ms=report.cumSmActiveMs
                ),
                _I64,
            ),
        )

    def _check_window(self, report: MeteringReport, samples: list[Sample], terms: dict[str, Any]) -> None:
        """The window's own figures re-derived from its samples by the protocol's rule (ledger.protocol.metering):
        everything that does not depend on earlier reports (the energy delta and the gap from the previous
        window do; auditors check those from the whole chain). 422 ``figures_mismatch`` names the figure."""
        if not samples:
            return
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
            entry: dict[str, Any] = {
                "report": json.loads(r.body),
                "signature": r.signature,
                "reportHash": r.struct_hash,
                "nodeId": lease.node_id,
                "status": r.status,
                "reason": r.reason,
            }
            if samples:
                data = sets.get(r.samples_root)
                entry["samples"] = [smp.to_list() for smp in unpack_samples(data)] if data else []
            out.append(entry)
        return out, next_seq

    def proofs(self, lease_id: int, seq: int, indices: list[int]) -> tuple[str, list[SampleProof]]:
        """Samples of one report at ``indices`` in submission order, each with its Merkle proof (the tree is
        built once), and the report's stored samples root. 404 for an unknown report or index."""
        found = self.store.reports.get(lease_id, seq)
        if found is None:
            raise ApiError(404, "unknown_report", f"no report {seq} of lease {lease_id}")
        r, data = found
        smps = unpack_samples(data) if data else []
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
        data = self.store.reports.latest_samples(lease_id)
        if data is None:
            return None
        last: dict[int, int] = {}
        gaps: list[int] = []
        for smp in sorted(unpack_samples(data), key=lambda x: (x.gpuIndex, x.tsMs)):
            prev = last.get(smp.gpuIndex)
            if prev is not None and smp.tsMs > prev:
                gaps.append(smp.tsMs - prev)
            last[smp.gpuIndex] = smp.tsMs
        if not gaps:
            return None
        gaps.sort()
        return gaps[(len(gaps) - 1) // 2]
