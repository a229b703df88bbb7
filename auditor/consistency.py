"""What the bridge serves against what the chain holds: the ``bridge.chain`` and ``bridge.consistency`` checks'
comparisons. Pure: both sides are given; every difference is a sentence naming the field, the bridge's value
and the chain's.

The auditor never audits the bridge's copy of the chain's data: it reads terms, the attestor history,
checkpoints, money and disputes from the chain (:class:`auditor.core.ChainLease`). It still compares the
bridge's copy with them, because a bridge that serves another story to its users (a doubled charge, a
forged attestor history) is a finding of its own, and the bridge's, not the escrow's.

What is compared (api/AUDIT_API.md §0 and §1): from ``GET /v1/chain`` the chain id, the deployment record
(when the auditor was given one of its own) and the EIP-712 domain; from ``GET /v1/leases/{id}`` every field
the chain also holds: ``leaseId``, ``chainId``, ``escrow``, ``nodeId``, ``token``, ``gpuIndices``,
``gpuCount``, ``gpuSetHash``, ``startMs``, ``endMs``, ``pricePerGpuSecond``, ``billingMode``,
``maxPowerMwPerGpu``, ``state``, ``attestors``, ``settlements`` (seq, report hash, ckpt word, charge, where
in the chain), ``money`` (escrow, fee, top-ups, closed, refund, closedCharged, feeKept, feeRefund, and where
served: exhausted, charged, disputed, released) and ``disputes``. ``usage`` and ``samplePeriodMs`` are not
the chain's (the reports' and the attestor's) and are not compared here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ledger.protocol import DOMAIN_NAME, DOMAIN_VERSION
from ledger.protocol.economics import BillingMode, LeaseMoney, Settlement

from .core import ChainLease
from .wire import AuditSourceError, settlement_from_json

_ABSENT = object()


def _num(v: Any) -> int | None:
    """An integer as the wire carries it (a number or a decimal string), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return None


def _addr(v: Any) -> str | None:
    if isinstance(v, str) and v.startswith("0x") and len(v) == 42:
        return v.lower()
    return None


def _hex(v: Any) -> str | None:
    if isinstance(v, str) and v.startswith("0x"):
        return v.lower()
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    return None


def _show(v: Any) -> str:
    if v is _ABSENT:
        return "nothing"
    return repr(v) if isinstance(v, str) else str(v)


class _Diff:
    def __init__(self) -> None:
        self.out: list[str] = []

    def add(self, what: str, served: Any, chain: Any) -> None:
        self.out.append(f"{what}: the bridge serves {_show(served)}, the chain holds {_show(chain)}")

    def num(self, what: str, doc: Mapping[str, Any], key: str, want: int | None, *, required: bool = True) -> None:
        if want is None:
            return
        raw = doc.get(key, _ABSENT)
        if raw is _ABSENT and not required:
            return
        if _num(raw) != want:
            self.add(what, raw, want)

    def opt_num(self, what: str, doc: Mapping[str, Any], key: str, want: int | None, *, required: bool = True) -> None:
        """An integer or null (``closedCharged``, ``feeKept``)."""
        raw = doc.get(key, _ABSENT)
        if raw is _ABSENT and not required:
            return
        got = None if raw is None or raw is _ABSENT else _num(raw)
        if (raw is not None and got is None) or got != want:
            self.add(what, raw, want)

    def flag(self, what: str, doc: Mapping[str, Any], key: str, want: bool, *, required: bool = True) -> None:
        raw = doc.get(key, _ABSENT)
        if raw is _ABSENT and not required:
            return
        if raw is not want:
            self.add(what, raw, want)

    def addr(self, what: str, doc: Mapping[str, Any], key: str, want: str | None, *, required: bool = True) -> None:
        if want is None:
            return
        raw = doc.get(key, _ABSENT)
        if raw is _ABSENT and not required:
            return
        if _addr(raw) != want.lower():
            self.add(what, raw, want)


def chain_document_differences(
    doc: Mapping[str, Any], *, chain_id: int, escrow: str, deployment: Mapping[str, Any] | None = None
) -> list[str]:
    """``GET /v1/chain`` against the chain the auditor reads: ``chain_id`` is what the RPC answers, ``escrow``
    the verifying contract whose domain separator the chain reports; ``deployment`` is the record the auditor
    trusts (its own ``--deployment``, or the one the in-process chain was deployed with), None when the
    auditor took the bridge's (then the source verified it against the chain: code, wiring)."""
    d = _Diff()
    d.num("chainId", doc, "chainId", chain_id)
    want_domain = {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id, "verifyingContract": escrow}
    dom = doc.get("domain")
    if not isinstance(dom, Mapping):
        d.add("domain", dom if dom is not None else _ABSENT, want_domain)
    else:
        for key in ("name", "version"):
            if dom.get(key) != want_domain[key]:
                d.add(f"domain.{key}", dom.get(key, _ABSENT), want_domain[key])
        d.num("domain.chainId", dom, "chainId", chain_id)
        d.addr("domain.verifyingContract", dom, "verifyingContract", escrow)
    if deployment is not None:
        served = doc.get("deployment")
        if not isinstance(served, Mapping):
            d.add("deployment", served if served is not None else _ABSENT, "the deployment record")
        else:
            mine, theirs = _flat(deployment), _flat(served)
            for key in sorted(set(mine) | set(theirs)):
                if mine.get(key, _ABSENT) != theirs.get(key, _ABSENT):
                    d.add(f"deployment.{key}", theirs.get(key, _ABSENT), mine.get(key, _ABSENT))
    return d.out


def _flat(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A deployment record as ``{"addresses.LeaseEscrow": "0x…", …}`` (addresses lowercased, numbers as ints)."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        else:
            out[key] = _addr(v) or (_num(v) if _num(v) is not None else v)
    return out


def lease_document_differences(doc: Mapping[str, Any] | None, chain: ChainLease) -> list[str]:
    """The bridge's lease document (api/AUDIT_API.md §1) against the chain's record of the lease; empty when
    every field the chain holds is served as the chain holds it."""
    if doc is None:
        return [f"the bridge serves no document for lease {chain.terms.leaseId}, which the chain holds"]
    if not isinstance(doc, Mapping):
        return [f"the lease document is not a JSON object but {type(doc).__name__}"]
    t = chain.terms
    d = _Diff()
    d.num("leaseId", doc, "leaseId", t.leaseId)
    d.num("chainId", doc, "chainId", t.chainId)
    d.addr("escrow", doc, "escrow", t.escrow)
    d.num("nodeId", doc, "nodeId", chain.nodeId, required=False)
    d.addr("token", doc, "token", t.token, required=False)
    d.num("gpuCount", doc, "gpuCount", t.gpuCount)
    d.num("startMs", doc, "startMs", t.startMs)
    d.num("endMs", doc, "endMs", t.endMs)
    d.num("pricePerGpuSecond", doc, "pricePerGpuSecond", t.pricePerGpuSecond)
    d.num("maxPowerMwPerGpu", doc, "maxPowerMwPerGpu", t.maxPowerMwPerGpu)
    if _hex(doc.get("gpuSetHash")) != "0x" + t.gpuSetHash.hex():
        d.add("gpuSetHash", doc.get("gpuSetHash", _ABSENT), "0x" + t.gpuSetHash.hex())
    if t.gpuIndices is not None:
        raw = doc.get("gpuIndices", _ABSENT)
        got = [_num(i) for i in raw] if isinstance(raw, list) else None
        if got != list(t.gpuIndices):
            d.add("gpuIndices", raw, list(t.gpuIndices))
    try:
        mode: BillingMode | None = BillingMode.parse(
            doc["billingMode"].strip().replace("-", "_") if isinstance(doc.get("billingMode"), str) else doc.get("billingMode")
        )
    except Exception:  # noqa: BLE001 - anything the bridge sends that is not a billing mode
        mode = None
    if mode != t.billingMode:
        d.add("billingMode", doc.get("billingMode", _ABSENT), t.billingMode.label)
    if chain.status is not None and "state" in doc and doc["state"] != chain.status:
        d.add("state", doc["state"], chain.status)
    _attestors(d, doc, chain)
    _settlements(d, doc.get("settlements", _ABSENT), chain.settlements)
    if chain.money is not None:
        _money(d, doc.get("money", _ABSENT), chain.money, chain.settlements)
    if "disputes" in doc:
        _disputes(d, doc["disputes"], chain)
    return d.out


def _attestors(d: _Diff, doc: Mapping[str, Any], chain: ChainLease) -> None:
    raw = doc.get("attestors", _ABSENT)
    want = [(a.address.lower(), a.fromMs, a.untilMs) for a in chain.terms.attestors]
    got: list[tuple[str | None, int | None, int | None]] | None = None
    if isinstance(raw, list) and all(isinstance(a, Mapping) for a in raw):
        got = [
            (_addr(a.get("address")), _num(a.get("fromMs", 0)), None if a.get("untilMs") is None else _num(a["untilMs"]))
            for a in raw
        ]
    if got != want:
        shown = [f"{a} from {f} until {u}" for a, f, u in want]
        served = raw if got is None else [f"{a} from {f} until {u}" for a, f, u in got]
        d.add("attestor history (NodeRegistered / AttestorRotated)", served, shown)


def _settlements(d: _Diff, raw: Any, chain: Sequence[Settlement]) -> None:
    if not isinstance(raw, list):
        d.add("settlements", raw, f"{len(chain)} CheckpointSettled record(s)")
        return
    served: list[Settlement] = []
    for i, s in enumerate(raw):
        try:
            served.append(settlement_from_json(s))
        except (AuditSourceError, KeyError, TypeError, AttributeError, ValueError) as e:
            d.out.append(f"settlements[{i}] is not a settlement the chain could have recorded ({e})")
            return
    for i in range(max(len(served), len(chain))):
        if i >= len(chain):
            d.add(f"settlement {i + 1}", f"seq {served[i].seq} charged {served[i].charged}", _ABSENT)
            continue
        want = chain[i]
        if i >= len(served):
            d.add(f"settlement {i + 1}", _ABSENT, f"seq {want.seq} charged {want.charged} (block {want.order[0]})")
            continue
        got = served[i]
        label = f"settlement {i + 1} (seq {want.seq})"
        if got.seq != want.seq:
            d.add(f"settlement {i + 1} seq", got.seq, want.seq)
            continue
        if got.charged != want.charged:
            d.add(f"{label} charged", got.charged, want.charged)
        if got.reportHash != want.reportHash:
            d.add(f"{label} reportHash", "0x" + got.reportHash.hex(), "0x" + want.reportHash.hex())
        if got.ckpt != want.ckpt:
            d.add(f"{label} ckpt", str(got.ckpt), str(want.ckpt))
        if tuple(got.order) != tuple(want.order):
            d.add(f"{label} (block, logIndex, recordIndex)", tuple(got.order), tuple(want.order))
        if got.txHash is not None and want.txHash is not None and got.txHash.lower() != want.txHash.lower():
            d.add(f"{label} txHash", got.txHash, want.txHash)


def _money(d: _Diff, raw: Any, m: LeaseMoney, settlements: Sequence[Settlement]) -> None:
    if not isinstance(raw, Mapping):
        d.add("money", raw, "the lease's money events")
        return
    d.num("money.escrow", raw, "escrow", m.escrow)
    d.num("money.fee", raw, "fee", m.fee)
    d.flag("money.closed", raw, "closed", m.closed)
    d.num("money.refund", raw, "refund", m.refund)
    d.opt_num("money.closedCharged", raw, "closedCharged", m.closedCharged)
    d.opt_num("money.feeKept", raw, "feeKept", m.feeKept)
    d.num("money.feeRefund", raw, "feeRefund", m.feeRefund)
    # served by the bridge beyond AUDIT_API §1's minimum: compared when present
    d.flag("money.exhausted", raw, "exhausted", m.exhausted, required=False)
    d.num("money.charged", raw, "charged", sum(s.charged for s in settlements), required=False)
    d.num("money.disputed", raw, "disputed", m.disputed, required=False)
    d.num("money.released", raw, "released", m.released, required=False)
    tops = raw.get("topUps", [])
    want = [(t.amount, t.fee, t.order[0], t.order[1]) for t in m.topUps]
    got = (
        [(_num(t.get("amount")), _num(t.get("fee", 0)), _num(t.get("block")), _num(t.get("logIndex"))) for t in tops]
        if isinstance(tops, list) and all(isinstance(t, Mapping) for t in tops)
        else None
    )
    if got != want:
        d.add("money.topUps (amount, fee, block, logIndex)", tops if got is None else got, want)


def _disputes(d: _Diff, raw: Any, chain: ChainLease) -> None:
    want = [
        (x.frozen, x.order[0], x.resolved, x.buyerShare, x.providerShare, x.slashed, x.providerFault)
        for x in chain.disputes
    ]
    got = (
        [
            (_num(x.get("frozen")), _num(x.get("block")), x.get("resolved"), _num(x.get("buyerShare", 0)),
             _num(x.get("providerShare", 0)), _num(x.get("slashed", 0)), x.get("providerFault"))
            for x in raw
        ]
        if isinstance(raw, list) and all(isinstance(x, Mapping) for x in raw)
        else None
    )  # fmt: skip
    if got != want:
        d.add("disputes (frozen, block, resolved, buyer, provider, slashed, providerFault)", raw if got is None else got, want)
