"""Where an audit's input comes from: the bridge's HTTP API, or the chain itself plus a samples archive.

Both build the same :class:`auditor.core.AuditInput`; the core never knows which one it was handed. The
wire formats are written down in api/AUDIT_API.md: lease JSON (terms, money, settlements), report
entries (report JSON, signature, samples) and the JSON-lines samples archive (one report entry per line).

* :class:`ApiSource` trusts the bridge for nothing it cannot check: it reads terms, events and reports from
  the API and the auditor re-verifies them. It can ask for spot-check proofs instead of every sample.
* :class:`ChainSource` reads terms, attestor keys and money events from the contracts' events (through a
  :class:`LeaseReader`, e.g. :class:`ChainLeaseReader` over ``ledger.chain``) and reports + samples from an
  :class:`ArchiveSource`, so an auditor need not trust the bridge at all.

A settled checkpoint is a record of the escrow's ``CheckpointsSettled`` event (``settle``'s own
``CheckpointSettled``): the report hash, the lease's new ``ckpt`` word and the charge. ``ledger.chain.events``
decodes each record as a ``CheckpointSettled`` event; :class:`auditor.core.Settlement` is built from the
word (:meth:`auditor.core.Settlement.of_ckpt`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Protocol

import httpx

from ledger.protocol import (
    SAMPLE_FIELD_NAMES,
    ZERO_HASH,
    MeteringReport,
    ProtocolError,
    Sample,
    hex_to_bytes32,
    report_struct_hash,
    safejson,
)
from ledger.protocol.economics import BillingMode, LeaseMoney, Settlement, TopUp, fold_lease
from ledger.protocol.errors import LedgerError
from ledger.protocol.settlement import commitment, initial_ckpt

from .core import (
    AttestorPeriod,
    AuditError,
    AuditInput,
    LeaseTerms,
    SampleProof,
    SignedReport,
    pick_spot_indices,
)

if TYPE_CHECKING:  # the chain reader imports web3 only when it is used
    from ledger.chain.suite import LedgerChain


DEFAULT_SAMPLE_PERIOD_MS = 18_000
"""The attestor's sampling period when a source does not say (protocol v2's default policy,
``attestor.meter.SamplingPolicy``; the report's configHash commits to it but cannot be inverted). It sets
the gap tolerance (half a period) of ``samples.gaps``: a source should send the node's own."""


class AuditSourceError(AuditError):
    """A source answered something that is not the documented format, or could not be reached."""


class AuditSource(Protocol):
    def lease_ids(self) -> list[int]:
        """Every lease this source can audit."""
        ...

    def load(self, lease_id: int, spot_check_k: int | None = None) -> AuditInput:
        """Everything the auditor needs for one lease; raises :class:`AuditSourceError`."""
        ...


# --- wire parsing (shared by every source) -------------------------------------------------------------

_MALFORMED = (KeyError, TypeError, AttributeError, ValueError, IndexError)
"""What reading a document of the wrong shape raises (a list where an object belongs, a missing key, ...)."""


def _malformed(what: str, e: Exception) -> AuditSourceError:
    return AuditSourceError(f"{what} is not in the documented format ({type(e).__name__}: {e})")


def _int(data: Mapping[str, Any], key: str, default: int | None = None) -> int:
    v = data.get(key, default)
    if isinstance(v, str) and v.isdigit():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise AuditSourceError(f"{key} must be an integer, got {v!r}")
    return int(v)


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key)


def _bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise AuditSourceError(f"{name} must be 0x-hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as e:
        raise AuditSourceError(f"{name} is not hex") from e


def _b32(value: Any, name: str) -> bytes:
    try:
        return hex_to_bytes32(value, name)
    except ProtocolError as e:
        raise AuditSourceError(str(e)) from e


def _billing(value: Any) -> BillingMode:
    """The billing mode from its API name (``reserved``, ``metered``, ``sm_active``; any case, ``-`` for
    ``_``) or the contract's number (0, 1, 2)."""
    if isinstance(value, str) and not value.isdigit():
        value = value.strip().replace("-", "_")
    try:
        return BillingMode.parse(value)
    except ProtocolError as e:
        raise AuditSourceError(f"unknown billingMode {value!r} (known: reserved, metered, sm_active)") from e


def _order(d: Mapping[str, Any]) -> tuple[int, int]:
    return (_int(d, "block", 0), _int(d, "logIndex", 0))


def terms_from_json(d: Mapping[str, Any]) -> LeaseTerms:
    """Lease terms from the lease JSON of api/AUDIT_API.md §1."""
    try:
        attestors = tuple(
            AttestorPeriod(str(a["address"]), _int(a, "fromMs", 0), _opt_int(a, "untilMs")) for a in d["attestors"]
        )
        gpu_indices = d.get("gpuIndices")
        return LeaseTerms(
            leaseId=_int(d, "leaseId"),
            chainId=_int(d, "chainId"),
            escrow=str(d["escrow"]),
            attestors=attestors,
            gpuSetHash=_b32(d["gpuSetHash"], "gpuSetHash"),
            gpuCount=_int(d, "gpuCount"),
            startMs=_int(d, "startMs"),
            endMs=_int(d, "endMs"),
            pricePerGpuSecond=_int(d, "pricePerGpuSecond"),
            billingMode=_billing(d.get("billingMode")),
            maxPowerMwPerGpu=_int(d, "maxPowerMwPerGpu"),
            samplePeriodMs=_int(d, "samplePeriodMs", DEFAULT_SAMPLE_PERIOD_MS),
            gpuIndices=None if gpu_indices is None else tuple(int(i) for i in gpu_indices),
            token=d.get("token"),
        )
    except KeyError as e:
        raise AuditSourceError(f"lease JSON lacks {e}") from e
    except (TypeError, ValueError) as e:
        raise AuditSourceError(f"lease JSON is malformed: {e}") from e


# The ckpt word's fields as a settlement carries them (names of the CheckpointSettled event's args; protocol v2:
# seq32 | busy48 | alloc48 | energy48 | smActive48 | settledAt32, ``ledger.protocol.settlement.Checkpoint``).
_CKPT_FIELDS: tuple[str, ...] = (
    "seq",
    "cumBusyMs",
    "cumAllocatedMs",
    "cumEnergyMj",
    "cumSmActiveMs",
    "settledAt",
)


def settlement_from_json(s: Mapping[str, Any]) -> Settlement:
    """One settled checkpoint (api/AUDIT_API.md §1): the record's ``ckpt`` word (or its fields), ``reportHash``,
    ``charged``, and where it is in the chain (``block``, ``logIndex``, ``recordIndex``, ``txHash``).

    When both the word and fields are given they must agree; anything else the bridge adds (a derived
    ``billableDelta``, the report's ``samplesRoot``, a protocol v1 ``windowEndMs``, which the v2 word no
    longer carries) is not evidence and is ignored: the auditor derives it.
    """
    order = (_int(s, "block", 0), _int(s, "logIndex", 0), _int(s, "recordIndex", 0))
    report_hash = _b32(s.get("reportHash"), "reportHash")
    charged = _int(s, "charged")
    tx = s.get("txHash")
    if s.get("ckpt") is not None:
        st = Settlement.of_ckpt(_int(s, "ckpt"), report_hash, charged, order, tx)
        for name in _CKPT_FIELDS:
            if s.get(name) is not None and _int(s, name) != getattr(st, name):
                raise AuditSourceError(f"settlement of seq {st.seq}: {name} {s[name]} disagrees with its ckpt word")
        return st
    missing = [name for name in _CKPT_FIELDS if s.get(name) is None]
    if missing:
        raise AuditSourceError(f"a settlement needs its ckpt word (or {', '.join(missing)})")
    return Settlement(
        seq=_int(s, "seq"),
        reportHash=report_hash,
        charged=charged,
        cumBusyMs=_int(s, "cumBusyMs"),
        cumAllocatedMs=_int(s, "cumAllocatedMs"),
        cumEnergyMj=_int(s, "cumEnergyMj"),
        cumSmActiveMs=_int(s, "cumSmActiveMs"),
        settledAt=_int(s, "settledAt"),
        order=order,
        txHash=tx,
    )


def settlements_from_json(items: Iterable[Mapping[str, Any]]) -> tuple[Settlement, ...]:
    return tuple(settlement_from_json(s) for s in items)


def settlement_to_json(st: Settlement) -> dict[str, Any]:
    """The inverse of :func:`settlement_from_json` (``ckpt`` and ``charged`` as decimal strings: JSON numbers
    above 2^53 lose precision in JavaScript)."""
    order = tuple(st.order) + (0,) * (3 - len(st.order))
    return {
        "seq": st.seq,
        "reportHash": "0x" + st.reportHash.hex(),
        "ckpt": str(st.ckpt),
        "charged": str(st.charged),
        "cumBusyMs": st.cumBusyMs,
        "cumAllocatedMs": st.cumAllocatedMs,
        "cumEnergyMj": st.cumEnergyMj,
        "cumSmActiveMs": st.cumSmActiveMs,
        "settledAt": st.settledAt,
        "block": order[0],
        "logIndex": order[1],
        "recordIndex": order[2],
        "txHash": st.txHash,
    }


def money_from_json(m: Mapping[str, Any] | None) -> LeaseMoney | None:
    if m is None:
        return None
    return LeaseMoney(
        escrow=_int(m, "escrow"),
        fee=_int(m, "fee", 0),
        topUps=tuple(TopUp(_int(t, "amount"), _int(t, "fee", 0), _order(t)) for t in m.get("topUps", ())),
        closed=bool(m.get("closed", False)),
        refund=_int(m, "refund", 0),
        closedCharged=_opt_int(m, "closedCharged"),
        feeKept=_opt_int(m, "feeKept"),
        feeRefund=_int(m, "feeRefund", 0),
    )


def sample_from_json(values: Any) -> Sample:
    """A sample as the wire carries it: the list of its values in ``SAMPLE_FIELD_NAMES`` order (protocol v2:
    13 integers)."""
    if not isinstance(values, list):
        raise AuditSourceError(f"a sample must be a list of {len(SAMPLE_FIELD_NAMES)} integers")
    try:
        return Sample.from_values(values)
    except ProtocolError as e:
        raise AuditSourceError(str(e)) from e


def report_from_json(entry: Mapping[str, Any]) -> SignedReport:
    """A report entry (api/AUDIT_API.md §2 / an archive line) → :class:`SignedReport`."""
    try:
        report = MeteringReport.from_json(entry["report"])
    except KeyError as e:
        raise AuditSourceError("report entry lacks 'report'") from e
    except ProtocolError as e:
        raise AuditSourceError(f"malformed report: {e}") from e
    raw = entry.get("samples")
    samples = None if raw is None else tuple(sample_from_json(v) for v in raw)
    return SignedReport(report, _bytes(entry.get("signature"), "signature"), samples)


def report_to_json(sr: SignedReport, node_id: int | None = None) -> dict[str, Any]:
    """The inverse of :func:`report_from_json`: one archive line / one element of the reports list."""
    out: dict[str, Any] = {
        "report": sr.report.to_json(),
        "signature": "0x" + sr.signature.hex(),
        "reportHash": "0x" + report_struct_hash(sr.report).hex(),
    }
    if node_id is not None:
        out["nodeId"] = node_id
    if sr.samples is not None:
        out["samples"] = [s.to_list() for s in sr.samples]
    return out


def proof_from_json(d: Mapping[str, Any]) -> SampleProof:
    return SampleProof(
        index=_int(d, "index"),
        sample=sample_from_json(d.get("sample")),
        proof=tuple(_b32(p, "proof") for p in d.get("proof", ())),
    )


# --- the bridge's API ------------------------------------------------------------------------------------


# sample proofs asked per request (the bridge answers at most 256)
PROOFS_PER_REQUEST = 256


class ApiSource:
    """Reads a lease from the bridge (api/AUDIT_API.md). ``client`` may be any ``httpx.Client`` (tests pass one
    bound to an in-process app); otherwise one is made for ``base_url``."""

    def __init__(
        self,
        base_url: str = "",
        *,
        client: httpx.Client | None = None,
        timeout_s: float = 30.0,
        page_size: int = 500,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client if client is not None else httpx.Client(base_url=base_url, timeout=timeout_s)
        self._owns_client = client is None
        self._page = page_size
        self._rng = rng

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> "ApiSource":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        try:
            resp = self._client.get(path, params=params)
        except httpx.HTTPError as e:
            raise AuditSourceError(f"GET {path}: {e}") from e
        if resp.status_code != 200:
            raise AuditSourceError(f"GET {path}: HTTP {resp.status_code} {resp.text[:200]}")
        try:
            return safejson.loads(resp.content)
        except ValueError as e:
            raise AuditSourceError(f"GET {path}: not JSON") from e

    def lease_ids(self) -> list[int]:
        try:
            return self._lease_ids()
        except _MALFORMED as e:
            raise _malformed("the bridge's lease list", e) from e

    def _lease_ids(self) -> list[int]:
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
        lease = self._get(f"/v1/leases/{lease_id}")
        terms = terms_from_json(lease)
        if spot_check_k is None:
            reports = self.reports(lease_id)
        else:
            reports = []
            for sr in self.reports(lease_id, samples=False):
                idx = pick_spot_indices(sr.report.sampleCount, spot_check_k, self._rng)
                proofs = self.proofs(lease_id, sr.report.seq, list(idx))
                reports.append(SignedReport(sr.report, sr.signature, None, proofs))
        return AuditInput(
            terms,
            tuple(reports),
            settlements_from_json(lease.get("settlements", ())),
            money_from_json(lease.get("money")),
        )


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
    """Reports and samples from a JSON-lines archive, grouped by lease in file order."""

    def __init__(self, path: Path) -> None:
        self._by_lease: dict[int, list[SignedReport]] = {}
        try:
            with path.open(encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        sr = report_from_json(safejson.loads(line))
                    except (*_MALFORMED, AuditSourceError) as e:
                        raise AuditSourceError(f"{path.name}:{lineno}: {e}") from e
                    self._by_lease.setdefault(sr.report.leaseId, []).append(sr)
        except OSError as e:
            raise AuditSourceError(f"cannot read archive {path}: {e}") from e

    def lease_ids(self) -> list[int]:
        return sorted(self._by_lease)

    def reports(self, lease_id: int) -> list[SignedReport]:
        return list(self._by_lease.get(lease_id, ()))

    def __iter__(self) -> Iterator[SignedReport]:
        for rs in self._by_lease.values():
            yield from rs


# --- the chain, directly ---------------------------------------------------------------------------------


class LeaseReader(Protocol):
    """Terms, settlements and money of a lease, read from the chain."""

    def lease_ids(self) -> list[int]: ...

    def lease(self, lease_id: int) -> tuple[LeaseTerms, tuple[Settlement, ...], LeaseMoney | None]: ...


class ChainSource:
    """The chain (through a :class:`LeaseReader`) for terms and money, an archive for reports + samples.

    With a spot check the archive's full samples are still used (they are local: nothing is saved by
    proving fewer), so ``spot_check_k`` is ignored here.
    """

    def __init__(self, reader: LeaseReader, archive: ArchiveSource) -> None:
        self._reader = reader
        self._archive = archive

    def lease_ids(self) -> list[int]:
        return sorted(set(self._reader.lease_ids()))

    def load(self, lease_id: int, spot_check_k: int | None = None) -> AuditInput:
        terms, settlements, money = self._reader.lease(lease_id)
        return AuditInput(terms, tuple(self._archive.reports(lease_id)), settlements, money)



class ChainLeaseReader:
    """Terms, attestor keys over time, checkpoints and money of leases, read from the contracts alone.

    Views (``lease``, ``offer``, ``node``) give the terms (the GPU set the reports must be about is
    ``lease(id).gpuSetHash``); the registry's NodeRegistered / AttestorRotated events give which key was the
    node's attestor when (block timestamps); the escrow's events give the checkpoints and the money, folded
    by ``ledger.protocol.economics.fold_lease``. Events are read once per reader (the whole suite from its
    deployment block) and grouped; the last checkpoint read must reproduce the escrow's ``stateHash``
    commitment, or the lease is not audited (:class:`AuditSourceError`).
    """

    def __init__(self, chain: "LedgerChain", *, sample_period_ms: int = DEFAULT_SAMPLE_PERIOD_MS) -> None:
        self._chain = chain
        self._period = sample_period_ms
        self._by_lease: dict[int, list[Any]] | None = None
        self._by_node: dict[int, list[Any]] = {}
        self._block_ms: dict[int, int] = {}

    @classmethod
    def connect(
        cls, rpc_url: str, deployment: Path, *, sample_period_ms: int = DEFAULT_SAMPLE_PERIOD_MS
    ) -> "ChainLeaseReader":
        """A reader over JSON-RPC for the deployment recorded in ``deployment`` (``ledger.chain.deployment``)."""
        from ledger.chain.backends import connect
        from ledger.chain.deployment import Deployment
        from ledger.chain.suite import LedgerChain

        try:
            dep = Deployment.load(deployment)
            chain = connect("rpc", rpc_url=rpc_url)
        except LedgerError as e:
            raise AuditSourceError(str(e)) from e
        if chain.chain_id != dep.chain_id:
            raise AuditSourceError(f"{rpc_url} is chain {chain.chain_id}, the deployment is on chain {dep.chain_id}")
        return cls(LedgerChain(chain, dep), sample_period_ms=sample_period_ms)

    def _events(self) -> dict[int, list[Any]]:
        if self._by_lease is None:
            by_lease: dict[int, list[Any]] = {}
            escrow = self._chain.deployment.escrow
            for ev in self._chain.events.read():
                if "leaseId" in ev.args and ev.address == escrow:
                    by_lease.setdefault(int(ev.args["leaseId"]), []).append(ev)
                elif ev.name in ("NodeRegistered", "AttestorRotated"):
                    self._by_node.setdefault(int(ev.args["nodeId"]), []).append(ev)
            self._by_lease = by_lease
        return self._by_lease

    def _time_ms(self, block: int) -> int:
        if block not in self._block_ms:
            self._block_ms[block] = int(self._chain.read.block(block)["timestamp"]) * 1000
        return self._block_ms[block]

    def attestors(self, node_id: int) -> tuple[AttestorPeriod, ...]:
        """The node's attestor keys with their validity (the first one from the start of time)."""
        self._events()
        periods: list[AttestorPeriod] = []
        for ev in sorted(self._by_node.get(node_id, []), key=lambda e: (e.block_number, e.log_index)):
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
        try:
            return self._lease(lease_id)
        except (LedgerError, OSError) as e:  # reverts, chain errors and transport errors (requests: OSError)
            if isinstance(e, AuditSourceError):
                raise
            raise AuditSourceError(f"lease {lease_id}: {e}") from e

    def _lease(self, lease_id: int) -> tuple[LeaseTerms, tuple[Settlement, ...], LeaseMoney | None]:
        read = self._chain.read
        info = read.lease(lease_id)
        if info.status.name == "NONE":
            raise AuditSourceError(f"lease {lease_id} does not exist on chain {self._chain.chain_id}")
        offer = read.offer(info.offer_id)
        node = read.node(info.node_id)
        terms = LeaseTerms(
            leaseId=lease_id,
            chainId=int(self._chain.chain_id),
            escrow=self._chain.deployment.escrow,
            attestors=self.attestors(info.node_id),
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
        book = fold_lease(ev.lease_event() for ev in self._events().get(lease_id, []))
        self._check_commitment(lease_id, list(book.settlements))
        money = book.money
        if money.closed != info.status.finished:  # the events and the lease's state disagree: events missing
            raise AuditSourceError(
                f"lease {lease_id} is {info.status.label} on chain but its events say "
                f"{'closed' if money.closed else 'not closed'} (events missing from the node?)"
            )
        return terms, book.settlements, money

    def _check_commitment(self, lease_id: int, settlements: list[Settlement]) -> None:
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
            raise AuditSourceError(
                f"lease {lease_id}: the {len(settlements)} CheckpointSettled record(s) read do not explain the "
                f"escrow's state commitment 0x{hashes[0].hex()} (events missing from the node?)"
            )
