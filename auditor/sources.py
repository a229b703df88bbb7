"""Where an audit's input comes from. The chain is the root of trust, always: whatever the chain holds
(lease terms, the node's attestor history, checkpoints, money, disputes, the lease's state, the chain's
present) is read from the chain; a bridge, or an archive it exported, supplies only what the chain cannot
(reports, their samples, Merkle proofs), and each of those is checked against what the chain committed
(the settled report hashes, the signed samples roots, the registered attestor).

* :class:`ApiSource` reads reports, samples and proofs from the bridge's HTTP API (api/AUDIT_API.md) and
  everything else from the chain, which it finds through the bridge's ``GET /v1/chain`` (or is handed:
  ``chain=``, ``rpc_url=``, ``deployment=``). It compares the bridge's copy of the chain's data with the
  chain (``bridge.chain``, ``bridge.consistency``): a bridge serving another story is a finding of its own.
* :class:`ChainSource` reads the chain through a :class:`ChainView` (e.g. :class:`ChainLeaseReader` over
  ``ledger.chain``) and reports + samples from an :class:`ArchiveSource`, without any bridge.

A settled checkpoint is a record of the escrow's ``CheckpointsSettled`` event (``settle``'s own
``CheckpointSettled``): the report hash, the lease's new ``ckpt`` word and the charge. ``ledger.chain.events``
decodes each record as a ``CheckpointSettled`` event; :class:`auditor.core.Settlement` is built from the
word (:meth:`auditor.core.Settlement.of_ckpt`). The wire formats are parsed in :mod:`auditor.wire`.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Protocol

import httpx

from ledger.protocol import ZERO_HASH, domain_separator, safejson
from ledger.protocol.economics import LeaseMoney, Settlement, fold_lease
from ledger.protocol.errors import LedgerError
from ledger.protocol.settlement import commitment, initial_ckpt

from .consistency import chain_document_differences, lease_document_differences
from .core import (
    AttestorPeriod,
    AuditInput,
    BridgeEvidence,
    ChainLease,
    LeaseTerms,
    SampleProof,
    SignedReport,
    pick_spot_indices,
)
from .wire import (
    _MALFORMED,
    DEFAULT_SAMPLE_PERIOD_MS,
    AuditSourceError,
    _billing,
    _malformed,
    money_from_json,
    proof_from_json,
    report_from_json,
    report_to_json,
    sample_from_json,
    settlement_from_json,
    settlement_to_json,
    settlements_from_json,
    terms_from_json,
)

if TYPE_CHECKING:  # the chain reader imports web3 only when it is used
    from ledger.chain.backends import Chain
    from ledger.chain.deployment import Deployment
    from ledger.chain.suite import LedgerChain

__all__ = [
    "DEFAULT_SAMPLE_PERIOD_MS",
    "PROOFS_PER_REQUEST",
    "ApiSource",
    "ArchiveSource",
    "AuditSource",
    "AuditSourceError",
    "ChainLeaseReader",
    "ChainSource",
    "ChainView",
    "money_from_json",
    "proof_from_json",
    "report_from_json",
    "report_to_json",
    "sample_from_json",
    "settlement_from_json",
    "settlement_to_json",
    "settlements_from_json",
    "terms_from_json",
    "verify_deployment",
    "write_archive",
]


class AuditSource(Protocol):
    def lease_ids(self) -> list[int]:
        """Every lease this source can audit."""
        ...

    def load(self, lease_id: int, spot_check_k: int | None = None) -> AuditInput:
        """Everything the auditor needs for one lease; raises :class:`AuditSourceError`."""
        ...


class ChainView(Protocol):
    """What the auditor reads from the chain (:class:`ChainLeaseReader`; tests may stand in for it)."""

    @property
    def chain_id(self) -> int: ...

    @property
    def escrow(self) -> str:
        """The LeaseEscrow address: the EIP-712 verifying contract."""
        ...

    def lease_ids(self) -> list[int]:
        """Every lease the chain holds."""
        ...

    def record(self, lease_id: int, *, as_of_block: int | None = None) -> ChainLease:
        """The chain's record of a lease (its events through ``as_of_block``, default: all read); raises
        :class:`AuditSourceError`."""
        ...

    def refresh(self) -> None:
        """Forget what was read: the next :meth:`record` reads the chain again."""
        ...


def _num(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return None


# --- the bridge's API ------------------------------------------------------------------------------------


# sample proofs asked per request (the bridge answers at most 256)
PROOFS_PER_REQUEST = 256


@dataclass(frozen=True)
class _Link:
    """The chain an :class:`ApiSource` reads, and how the bridge's ``GET /v1/chain`` compared with it."""

    view: ChainView
    differences: tuple[str, ...] | None
    compared: str


class ApiSource:
    """Reports, samples and proofs from the bridge (api/AUDIT_API.md); everything else from the chain.

    The chain: ``chain`` when given (a :class:`ledger.chain.suite.LedgerChain`, a connected
    :class:`ledger.chain.backends.Chain`, or any :class:`ChainView`: an in-process chain, the demo's and the
    tests'); otherwise a JSON-RPC node at ``rpc_url``, or at the ``rpcUrl`` the bridge publishes in
    ``GET /v1/chain``. The deployment: ``deployment`` when given (the record you trust), else the bridge's,
    verified on the chain (:func:`verify_deployment`: chain id, code at every address, the registry wired to
    the escrow, the escrow's EIP-712 domain). A bridge that publishes no RPC URL (the memory backend: its
    chain lives in its process) cannot be audited without ``chain`` or ``rpc_url``: :class:`AuditSourceError`
    says so.

    ``client`` may be any ``httpx.Client`` (tests pass one bound to an in-process app); otherwise one is made
    for ``base_url``. ``sample_period_ms`` overrides the attestor's period the bridge reports (the one figure
    of the terms the chain cannot give: ``configHash`` commits to it but cannot be inverted).
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        client: httpx.Client | None = None,
        chain: "ChainView | LedgerChain | Chain | None" = None,
        rpc_url: str | None = None,
        deployment: "Deployment | None" = None,
        sample_period_ms: int | None = None,
        timeout_s: float = 30.0,
        page_size: int = 500,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client if client is not None else httpx.Client(base_url=base_url, timeout=timeout_s)
        self._owns_client = client is None
        self._page = page_size
        self._rng = rng
        self._chain_arg = chain
        self._rpc_url = rpc_url
        self._deployment = deployment
        self._period = sample_period_ms
        self._clock = clock
        self._link: _Link | None = None
        self._opened: list[Any] = []  # chains this source connected to (closed with it)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
        for c in self._opened:
            c.close()
        self._opened.clear()

    def __enter__(self) -> "ApiSource":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _get(self, path: str, params: Mapping[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        try:
            resp = self._client.get(path, params=params)
        except httpx.HTTPError as e:
            raise AuditSourceError(f"GET {path}: {e}") from e
        if resp.status_code == 404 and missing_ok:
            return None
        if resp.status_code != 200:
            raise AuditSourceError(f"GET {path}: HTTP {resp.status_code} {resp.text[:200]}")
        try:
            return safejson.loads(resp.content)
        except ValueError as e:
            raise AuditSourceError(f"GET {path}: not JSON") from e

    # --- the chain ---------------------------------------------------------------------------------------

    def chain(self) -> ChainView:
        """The chain this source reads (found on first use)."""
        return self._linked().view

    def _linked(self) -> _Link:
        if self._link is None:
            try:
                self._link = self._connect()
            except _MALFORMED as e:
                raise _malformed("the bridge's GET /v1/chain", e) from e
        return self._link

    def _connect(self) -> _Link:
        doc = self._get("/v1/chain", missing_ok=True)
        if doc is not None and not isinstance(doc, Mapping):
            raise AuditSourceError(f"GET /v1/chain: a {type(doc).__name__}, not the documented object")
        arg = self._chain_arg
        if arg is not None and hasattr(arg, "record"):  # a ChainView of the caller's
            view: ChainView = arg  # type: ignore[assignment]
            return self._compare(doc, view, None, "the chain given in process")
        from ledger.chain.backends import Chain, connect
        from ledger.chain.deployment import Deployment
        from ledger.chain.suite import LedgerChain

        published = None if doc is None else doc.get("deployment")
        if isinstance(arg, LedgerChain):
            problems = verify_deployment(arg)
            if problems:
                raise AuditSourceError("the chain given does not hold its deployment: " + "; ".join(problems))
            reader = ChainLeaseReader(arg, clock=self._clock)
            return self._compare(
                doc, reader, arg.deployment, "the chain given in process, with its deployment, verified on it"
            )
        pinned = self._deployment
        if pinned is None:
            if not isinstance(published, Mapping):
                why = "GET /v1/chain: HTTP 404" if doc is None else "GET /v1/chain has no deployment record"
                raise AuditSourceError(
                    f"the bridge does not say where its contracts are ({why}): give --deployment FILE (and --rpc URL)"
                )
            try:
                dep = Deployment.from_json(published)
            except LedgerError as e:
                raise AuditSourceError(f"the deployment record the bridge publishes is malformed: {e}") from e
        else:
            dep = pinned
        if isinstance(arg, Chain):
            chain, where = arg, "the chain given in process"
        else:
            url = self._rpc_url
            where = f"the RPC node {url} (yours)"
            if url is None:
                url = doc.get("rpcUrl") if doc is not None else None
                where = f"the RPC node {url} the bridge publishes"
            if not isinstance(url, str) or not url:
                note = doc.get("rpcNote") if doc is not None else None
                raise AuditSourceError(
                    f"the bridge publishes no RPC URL for chain {dep.chain_id}"
                    + (f" ({note})" if isinstance(note, str) and note else "")
                    + ": give --rpc URL of a node of that chain"
                )
            try:
                chain = connect("rpc", rpc_url=url)
            except LedgerError as e:
                raise AuditSourceError(f"{where}: {e}") from e
            self._opened.append(chain)
        ledger = LedgerChain(chain, dep)
        problems = verify_deployment(ledger)
        if problems:
            whose = "your deployment record" if pinned is not None else "the deployment record the bridge publishes"
            raise AuditSourceError(f"{whose} does not describe {where}: " + "; ".join(problems))
        origin = "your deployment record" if pinned is not None else "the bridge's deployment record"
        reader = ChainLeaseReader(ledger, clock=self._clock)
        return self._compare(
            doc, reader, pinned, f"{where}; {origin}, verified on it (chain id, code at 4 addresses, wiring, domain)"
        )

    def _compare(self, doc: Mapping[str, Any] | None, view: ChainView, mine: "Deployment | None", where: str) -> _Link:
        """``bridge.chain``: the bridge's GET /v1/chain against the chain read (and the deployment trusted)."""
        if doc is None:
            return _Link(view, ("the bridge serves no GET /v1/chain (api/AUDIT_API.md §0)",), where)
        diffs = chain_document_differences(
            doc, chain_id=view.chain_id, escrow=view.escrow, deployment=mine.to_json() if mine is not None else None
        )
        what = "chain id, EIP-712 domain" + (", deployment record" if mine is not None else "")
        return _Link(view, tuple(diffs), f"the bridge's GET /v1/chain ({what}) is the chain's: {where}")

    # --- what only the bridge has ------------------------------------------------------------------------

    def lease_ids(self) -> list[int]:
        """Every lease the chain holds (not the bridge's list: a lease the bridge hides is still audited)."""
        return self._linked().view.lease_ids()

    def listed_lease_ids(self) -> list[int]:
        """The leases the bridge lists (api/AUDIT_API.md §4)."""
        try:
            return self._listed()
        except _MALFORMED as e:
            raise _malformed("the bridge's lease list", e) from e

    def _listed(self) -> list[int]:
        from .wire import _int

        out: list[int] = []
        cursor: Any = None
        while True:
            params = {"limit": self._page} if cursor is None else {"limit": self._page, "cursor": cursor}
            page = self._get("/v1/audit/leases", params)
            out += [_int(x, "leaseId") for x in page.get("leases", [])]
            cursor = page.get("nextCursor")
            if cursor is None:
                return out

    def reports(self, lease_id: int, *, samples: bool = True) -> list[SignedReport]:
        try:
            return self._reports(lease_id, samples)
        except _MALFORMED as e:
            raise _malformed(f"the bridge's reports of lease {lease_id}", e) from e

    def _reports(self, lease_id: int, samples: bool) -> list[SignedReport]:
        out: list[SignedReport] = []
        from_seq: int | None = 1
        while from_seq is not None:
            page = self._get(
                f"/v1/leases/{lease_id}/reports",
                {"fromSeq": from_seq, "limit": self._page, "samples": "true" if samples else "false"},
            )
            out += [report_from_json(e) for e in page.get("reports", [])]
            nxt = page.get("nextFromSeq")
            from_seq = None if nxt is None else int(nxt)
        return out

    def proof(self, lease_id: int, seq: int, index: int) -> SampleProof:
        return proof_from_json(self._get(f"/v1/leases/{lease_id}/reports/{seq}/samples/{index}/proof"))

    def proofs(self, lease_id: int, seq: int, indices: list[int]) -> tuple[SampleProof, ...]:
        """Spot-check proofs of one report in one request (the bridge builds the report's tree once)."""
        got: tuple[SampleProof, ...] = ()
        for at in range(0, len(indices), PROOFS_PER_REQUEST):
            chunk = indices[at : at + PROOFS_PER_REQUEST]
            page = self._get(
                f"/v1/leases/{lease_id}/reports/{seq}/samples/proofs", {"indices": ",".join(str(i) for i in chunk)}
            )
            got += tuple(proof_from_json(d) for d in page.get("proofs", ()))
        if [p.index for p in got] != list(indices):
            raise AuditSourceError(f"report {seq}: the bridge answered proofs of other samples than asked")
        return got

    def load(self, lease_id: int, spot_check_k: int | None = None) -> AuditInput:
        try:
            return self._load(lease_id, spot_check_k)
        except _MALFORMED as e:
            raise _malformed(f"the bridge's answer for lease {lease_id}", e) from e

    def _load(self, lease_id: int, spot_check_k: int | None) -> AuditInput:
        link = self._linked()
        rec = link.view.record(lease_id)
        doc = self._get(f"/v1/leases/{lease_id}", missing_ok=True)
        if doc is None:
            raise AuditSourceError(
                f"the bridge does not know lease {lease_id} (GET /v1/leases/{lease_id}: HTTP 404), which chain "
                f"{link.view.chain_id} holds: no report to audit"
            )
        if spot_check_k is None:
            reports = self.reports(lease_id)
        else:
            reports = []
            for sr in self.reports(lease_id, samples=False):
                idx = pick_spot_indices(sr.report.sampleCount, spot_check_k, self._rng)
                proofs = self.proofs(lease_id, sr.report.seq, list(idx))
                reports.append(SignedReport(sr.report, sr.signature, None, proofs))
        diffs, compared, rec = self._consistency(lease_id, doc, rec)
        served_period = _num(doc.get("samplePeriodMs")) if isinstance(doc, Mapping) else None
        period = self._period or served_period or DEFAULT_SAMPLE_PERIOD_MS
        return AuditInput(
            dataclasses.replace(rec.terms, samplePeriodMs=period),
            tuple(reports),
            rec.settlements,
            rec.money,
            disputes=rec.disputes,
            status=rec.status,
            now_ms=rec.nowMs,
            bridge=BridgeEvidence(link.differences, link.compared, tuple(diffs), compared),
        )

    def _consistency(self, lease_id: int, doc: Any, rec: ChainLease) -> tuple[list[str], str, ChainLease]:
        """``bridge.consistency``: the lease document against the chain's record. A difference may be time, not
        a lie: the chain moved since it was read (read it again), or the bridge's indexer has not reached the
        chain's head (compare with the chain as of the block the bridge says it indexed, GET /v1/health)."""
        view = self._linked().view
        parts = f"terms, {len(rec.terms.attestors)} attestor key(s), {len(rec.settlements)} checkpoint(s), money"
        compared = f"the bridge's lease document is the chain's ({parts}{', disputes' if rec.disputes else ''})"
        diffs = lease_document_differences(doc, rec)
        if not diffs:
            return diffs, compared, rec
        view.refresh()
        rec = view.record(lease_id)
        diffs = lease_document_differences(doc, rec)
        if not diffs:
            return diffs, compared, rec
        health = self._get("/v1/health", missing_ok=True) if rec.block is not None else None
        indexed = _num(health.get("indexedBlock")) if isinstance(health, Mapping) else None
        if indexed is not None and rec.block is not None and indexed < rec.block:
            then = view.record(lease_id, as_of_block=indexed)
            if not lease_document_differences(doc, then):
                lag = f"; the bridge has indexed through block {indexed}, the chain is at {rec.block}"
                return [], compared + lag, rec
        return diffs, compared, rec


# --- the samples archive ---------------------------------------------------------------------------------


def write_archive(out: Path | IO[str], entries: Iterable[SignedReport | Mapping[str, Any]]) -> int:
    """Write report entries as JSON lines (api/AUDIT_API.md §5); returns the number of lines."""
    n = 0
    fh: IO[str]
    close = False
    if isinstance(out, Path):
        fh = out.open("w", encoding="utf-8")
        close = True
    else:
        fh = out
    try:
        for e in entries:
            line = report_to_json(e) if isinstance(e, SignedReport) else dict(e)
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")
            n += 1
    finally:
        if close:
            fh.close()
    return n


class ArchiveSource:
    """Reports and samples from a JSON-lines archive, grouped by lease in file order. ``path``: one file (gzip
    when it ends in ``.gz``) or a directory of them (a bridge's archive directory, api/AUDIT_API.md §5: every
    ``*.jsonl`` and ``*.jsonl.gz`` below it, in name order: a lease's segments are named by their seqs)."""

    def __init__(self, path: Path) -> None:
        self._by_lease: dict[int, list[SignedReport]] = {}
        files = sorted([*path.rglob("*.jsonl"), *path.rglob("*.jsonl.gz")]) if path.is_dir() else [path]
        for f in files:
            try:
                with (gzip.open(f, "rt", encoding="utf-8") if f.name.endswith(".gz") else f.open(encoding="utf-8")) as fh:
                    for lineno, line in enumerate(fh, start=1):
                        if not line.strip():
                            continue
                        try:
                            sr = report_from_json(safejson.loads(line))
                        except (*_MALFORMED, AuditSourceError) as e:
                            raise AuditSourceError(f"{f.name}:{lineno}: {e}") from e
                        self._by_lease.setdefault(sr.report.leaseId, []).append(sr)
            except (OSError, EOFError) as e:
                raise AuditSourceError(f"cannot read archive {f}: {e}") from e

    def lease_ids(self) -> list[int]:
        return sorted(self._by_lease)

    def reports(self, lease_id: int) -> list[SignedReport]:
        return list(self._by_lease.get(lease_id, ()))

    def __iter__(self) -> Iterator[SignedReport]:
        for rs in self._by_lease.values():
            yield from rs

# --- the chain, directly ---------------------------------------------------------------------------------


class ChainSource:
    """The chain (through a :class:`ChainView`) for everything it holds, an archive for reports + samples.

    With a spot check the archive's full samples are still used (they are local: nothing is saved by
    proving fewer), so ``spot_check_k`` is ignored here.
    """

    def __init__(self, reader: ChainView, archive: ArchiveSource) -> None:
        self._reader = reader
        self._archive = archive

    def lease_ids(self) -> list[int]:
        return sorted(set(self._reader.lease_ids()))

    def load(self, lease_id: int, spot_check_k: int | None = None) -> AuditInput:
        rec = self._reader.record(lease_id)
        return AuditInput(
            rec.terms,
            tuple(self._archive.reports(lease_id)),
            rec.settlements,
            rec.money,
            disputes=rec.disputes,
            status=rec.status,
            now_ms=rec.nowMs,
        )


def verify_deployment(ledger: "LedgerChain") -> list[str]:
    """What is wrong with a deployment record on the chain it names (empty: nothing): the node answers the
    record's chain id, every address holds code, the registry's escrow is the record's escrow, and the
    escrow's EIP-712 domain separator is metering protocol v2's for this chain and address."""
    from ledger.chain.errors import ChainError

    dep = ledger.deployment
    read = ledger.read
    try:
        cid = read.chain_id
        if cid != dep.chain_id:
            return [f"the node answers chain id {cid}, the deployment is on chain {dep.chain_id}"]
        bad = []
        for name, addr in (
            ("CapacityRegistry", dep.registry),
            ("Reputation", dep.reputation),
            ("LeaseEscrow", dep.escrow),
            ("LeaseEscrowExtension", dep.escrow_extension),
        ):
            if not read.code(addr):
                bad.append(f"no contract at {name} {addr}")
        if bad:
            return bad
        wired = read.registry_escrow()
        if wired.lower() != dep.escrow.lower():
            bad.append(f"the registry's escrow is {wired}, not the record's LeaseEscrow {dep.escrow}")
        if read.domain_separator() != domain_separator(dep.chain_id, dep.escrow):
            bad.append("the escrow's EIP-712 domain is not metering protocol v2's for this chain and address")
        return bad
    except (ChainError, LedgerError, OSError) as e:
        return [f"the chain does not answer: {e}"]


class ChainLeaseReader:
    """Terms, attestor keys over time, checkpoints, money and disputes of leases, read from the contracts alone.

    Views (``lease``, ``offer``, ``node``) give the terms (the GPU set the reports must be about is
    ``lease(id).gpuSetHash``) and the lease's state; the registry's NodeRegistered / AttestorRotated events
    give which key was the node's attestor when (block timestamps); the escrow's events give the checkpoints,
    the money and the disputes, folded by ``ledger.protocol.economics.fold_lease``. Events are read once per
    reader (the whole suite from its deployment block to the head) and grouped; the last checkpoint read
    must reproduce the escrow's ``stateHash`` commitment, or the lease is not audited
    (:class:`AuditSourceError`). The chain's present (``ChainLease.nowMs``) is the latest block's time, or
    ``clock()`` when later (a dev chain mines no block while idle).
    """

    def __init__(
        self,
        chain: "LedgerChain",
        *,
        sample_period_ms: int = DEFAULT_SAMPLE_PERIOD_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._chain = chain
        self._period = sample_period_ms
        self._clock = clock
        self._by_lease: dict[int, list[Any]] | None = None
        self._by_node: dict[int, list[Any]] = {}
        self._block_ms: dict[int, int] = {}
        self._head: int | None = None

    @classmethod
    def connect(
        cls, rpc_url: str, deployment: Path, *, sample_period_ms: int = DEFAULT_SAMPLE_PERIOD_MS
    ) -> "ChainLeaseReader":
        """A reader over JSON-RPC for the deployment recorded in ``deployment`` (``ledger.chain.deployment``),
        verified on that node (:func:`verify_deployment`)."""
        from ledger.chain.backends import connect
        from ledger.chain.deployment import Deployment
        from ledger.chain.suite import LedgerChain

        try:
            dep = Deployment.load(deployment)
            chain = connect("rpc", rpc_url=rpc_url)
        except LedgerError as e:
            raise AuditSourceError(str(e)) from e
        ledger = LedgerChain(chain, dep)
        problems = verify_deployment(ledger)
        if problems:
            raise AuditSourceError(f"{deployment.name} does not describe the chain at {rpc_url}: " + "; ".join(problems))
        return cls(ledger, sample_period_ms=sample_period_ms)

    @property
    def chain_id(self) -> int:
        return int(self._chain.deployment.chain_id)

    @property
    def escrow(self) -> str:
        return str(self._chain.deployment.escrow)

    def refresh(self) -> None:
        self._by_lease = None
        self._by_node = {}
        self._head = None

    def _events(self) -> dict[int, list[Any]]:
        if self._by_lease is None:
            by_lease: dict[int, list[Any]] = {}
            by_node: dict[int, list[Any]] = {}
            escrow = self._chain.deployment.escrow
            head = self._chain.read.block_number()
            for ev in self._chain.events.read(to_block=head):
                if "leaseId" in ev.args and ev.address == escrow:
                    by_lease.setdefault(int(ev.args["leaseId"]), []).append(ev)
                elif ev.name in ("NodeRegistered", "AttestorRotated"):
                    by_node.setdefault(int(ev.args["nodeId"]), []).append(ev)
            self._by_lease, self._by_node, self._head = by_lease, by_node, head
        return self._by_lease

    def _time_ms(self, block: int) -> int:
        if block not in self._block_ms:
            self._block_ms[block] = int(self._chain.read.block(block)["timestamp"]) * 1000
        return self._block_ms[block]

    def attestors(self, node_id: int, as_of_block: int | None = None) -> tuple[AttestorPeriod, ...]:
        """The node's attestor keys with their validity (the first one from the start of time)."""
        self._events()
        periods: list[AttestorPeriod] = []
        for ev in sorted(self._by_node.get(node_id, []), key=lambda e: (e.block_number, e.log_index)):
            if as_of_block is not None and ev.block_number > as_of_block:
                break
            if ev.name == "NodeRegistered":
                periods = [AttestorPeriod(str(ev.args["attestor"]), 0, None)]
            elif periods:
                t = self._time_ms(ev.block_number)
                last = periods[-1]
                periods[-1] = AttestorPeriod(last.address, last.fromMs, t)
                periods.append(AttestorPeriod(str(ev.args["newAttestor"]), t, None))
        return tuple(periods)

    def lease_ids(self) -> list[int]:
        try:
            return list(range(1, int(self._chain.read.lease_count()) + 1))
        except (LedgerError, OSError) as e:
            raise AuditSourceError(f"cannot count leases: {e}") from e

    def lease(self, lease_id: int) -> tuple[LeaseTerms, tuple[Settlement, ...], LeaseMoney | None]:
        """Terms, checkpoints and money (:meth:`record` has the rest)."""
        rec = self.record(lease_id)
        return rec.terms, rec.settlements, rec.money

    def record(self, lease_id: int, *, as_of_block: int | None = None) -> ChainLease:
        try:
            try:
                return self._record(lease_id, as_of_block)
            except _Moved:  # the chain moved since its events were read: read them again, once
                self.refresh()
                return self._record(lease_id, as_of_block, last_try=True)
        except (LedgerError, OSError) as e:  # reverts, chain errors and transport errors (requests: OSError)
            if isinstance(e, AuditSourceError):
                raise
            raise AuditSourceError(f"lease {lease_id}: {e}") from e

    def _record(self, lease_id: int, as_of_block: int | None, *, last_try: bool = False) -> ChainLease:
        read = self._chain.read
        events = self._events()
        info = read.lease(lease_id)
        if info.status.name == "NONE":
            raise AuditSourceError(f"lease {lease_id} does not exist on chain {self.chain_id}")
        offer = read.offer(info.offer_id)
        node = read.node(info.node_id)
        terms = LeaseTerms(
            leaseId=lease_id,
            chainId=self.chain_id,
            escrow=self.escrow,
            attestors=self.attestors(info.node_id, as_of_block),
            gpuSetHash=info.gpu_set_hash,
            gpuCount=info.gpu_count,
            startMs=info.start_ms,
            endMs=info.end_ms,
            pricePerGpuSecond=info.price_per_gpu_second,
            billingMode=_billing(int(info.billing_mode)),
            maxPowerMwPerGpu=node.max_power_mw_per_gpu,
            samplePeriodMs=self._period,
            gpuIndices=tuple(offer.gpu_indices),
            token=info.token,
        )
        mine = [ev for ev in events.get(lease_id, []) if as_of_block is None or ev.block_number <= as_of_block]
        book = fold_lease(ev.lease_event() for ev in mine)
        money = book.money
        if as_of_block is None:  # the whole story read must be the chain's: its commitment and its state
            problem = self._commitment_problem(lease_id, list(book.settlements))
            if problem is None and money.closed != info.status.finished:
                problem = (
                    f"lease {lease_id} is {info.status.label} on chain but its events say "
                    f"{'closed' if money.closed else 'not closed'} (events missing from the node?)"
                )
            if problem is not None:
                if not last_try:
                    raise _Moved()
                raise AuditSourceError(problem)
        latest_ms = read.now() * 1000
        return ChainLease(
            terms=terms,
            settlements=book.settlements,
            money=money,
            disputes=book.disputes,
            status=info.status.label,
            nodeId=info.node_id,
            nowMs=max(latest_ms, int(self._clock() * 1000)),
            block=self._head if as_of_block is None else as_of_block,
        )

    def _commitment_problem(self, lease_id: int, settlements: list[Settlement]) -> str | None:
        """The last checkpoint read from the events must be the one the escrow committed to (its one-slot
        ``stateHash`` = keccak(terms, ckpt, lastReportHash)): otherwise the events this reader was given are
        not the chain's whole story (a node that dropped logs, a wrong block range), and nothing read from
        them can be audited."""
        terms_words, hashes = self._chain.read.lease_terms([lease_id])
        terms = terms_words[0]
        if settlements:
            last = max(settlements, key=lambda st: st.order)
            ck, last_hash = last.ckpt, last.reportHash
        else:
            ck, last_hash = initial_ckpt(terms), ZERO_HASH
        if commitment(terms, ck, last_hash) != hashes[0]:
            return (
                f"lease {lease_id}: the {len(settlements)} CheckpointSettled record(s) read do not explain the "
                f"escrow's state commitment 0x{hashes[0].hex()} (events missing from the node?)"
            )
        return None


class _Moved(Exception):
    """The chain's state is newer than the events read: read them again."""
