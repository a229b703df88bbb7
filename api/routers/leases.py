"""Leases: open with escrow, read (terms, money and settlements as indexed), top up, close, dispute, rate.

Buyer actions check that the caller is the lease's buyer before anything is sent (403), as the contract
would; the contract stays the authority (its reverts are mapped to statuses too)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from ledger.client import lease_fee, top_up_fee
from ledger.settlement import LeaseState

from .. import chainview
from ..actions import act, act_paying
from ..deps import Caller, CallerDep, IdempotencyKey, ServicesDep
from ..errors import COMMON_RESPONSES, MONEY_RESPONSES, READ_RESPONSES, ApiError, Invalid
from ..idempotency import fingerprint, run_idempotent
from ..indexer import events_of
from ..schemas import ActionOut, Address, Strict
from ..samples import unpack_samples
from ..store import LeaseRow, NodeRow, OfferRow, Report, SampleSet

router = APIRouter(prefix="/v1/leases", tags=["leases"])

T = TypeVar("T")
LeaseId = Annotated[int, Path(ge=0, lt=2**63)]
DEFAULT_START_WINDOW_S = 3600


class LeaseIn(Strict):
    offerId: int = Field(ge=0, lt=2**63)
    durationS: int = Field(ge=1, lt=2**32, description="seconds of GPU time to escrow")
    startBy: int | None = Field(default=None, ge=0, lt=2**64, description="unix s; default chain time + 1 h")
    maxTotalWei: int | None = Field(default=None, ge=0, lt=2**256, description="refuse if escrow + fee is above")
    holder: Address | None = Field(default=None, description="rights holder; default the provider's payout")


class TopUpIn(Strict):
    amountWei: int = Field(gt=0, lt=2**128, description="a multiple of price × gpuCount (whole seconds)")


class RateIn(Strict):
    stars: int = Field(ge=1, le=5)


class LeaseSummary(BaseModel):
    leaseId: int
    offerId: int
    nodeId: int
    buyer: str
    provider: str
    state: str


class LeaseList(BaseModel):
    leases: list[LeaseSummary]
    total: int


class LeaseOut(BaseModel):
    """api/AUDIT_API.md §1: terms, money and settlements, as indexed from the chain."""

    leaseId: int
    chainId: int
    escrow: str
    state: str
    offerId: int
    nodeId: int
    buyer: str
    holder: str
    provider: str
    token: str
    gpuIndices: list[int]
    gpuCount: int
    gpuSetHash: str
    startBy: int
    startMs: int
    endMs: int
    durationS: int
    pricePerGpuSecond: str
    billingMode: int
    feeBps: int
    maxPowerMwPerGpu: int
    attestors: list[dict[str, Any]]
    money: dict[str, Any]
    settlements: list[dict[str, Any]]
    checkpoint: dict[str, Any]
    samplePeriodMs: int | None = Field(
        default=None,
        description="sampling period observed in the attested samples of the latest accepted report (median "
        "interval between one GPU's consecutive samples); null before a report with two samples of a GPU. "
        "The attestor's configured period is not on-chain: it is only committed inside configHash.",
    )


def _buyer_lease(svc: Any, caller: Caller, lease_id: int) -> dict[str, Any]:
    lease = chainview.lease(svc.gateway, lease_id)
    if caller.managed and lease["buyer"] != caller.address:
        raise ApiError(403, "forbidden", f"lease {lease_id} belongs to another buyer")
    return lease


@router.post("", response_model=ActionOut, responses=MONEY_RESPONSES)
def open_lease(body: LeaseIn, caller: CallerDep, svc: ServicesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Open a lease: escrow price × gpuCount × durationS plus the fee, in the offer's token. ``result.leaseId``
    is the new id. Send an ``Idempotency-Key``: a retried request escrows once. ERC-20 offers: a managed
    account's approval of the escrow (exactly ``totalWei``) is sent first (``result.approveTxHashes``); a
    wallet user without that allowance gets 409 ``approval_required`` with the unsigned approve in
    ``detail.details.unsignedTx``: sign and submit it (``POST /v1/tx``), then repeat this request (same
    Idempotency-Key) for the unsigned openLease."""
    caller.require("buyer")

    def action() -> ActionOut:
        offer = chainview.offer(svc.gateway, body.offerId)
        escrow = offer["pricePerGpuSecond"] * offer["gpuCount"] * body.durationS
        fee = lease_fee(escrow, chainview.fee_bps(svc.gateway, offer["provider"]))
        total = escrow + fee
        holder = body.holder or chainview.provider(svc.gateway, offer["provider"])["payout"]
        start_by = body.startBy
        if start_by is None:
            start_by = max(svc.chain.now(), offer["validFrom"]) + DEFAULT_START_WINDOW_S
            start_by = min(start_by, offer["validUntil"] - body.durationS)
            if start_by < 0:
                raise Invalid("durationS reaches beyond the offer's validUntil", field="durationS")
        max_total = total if body.maxTotalWei is None else body.maxTotalWei
        fn = svc.client.escrow.functions.openLease(body.offerId, holder, body.durationS, start_by, max_total)
        out = act_paying(svc, caller, fn, offer["token"], svc.client.escrow.address, total)
        out.result.update({"escrowWei": str(escrow), "feeWei": str(fee), "totalWei": str(total), "token": offer["token"]})
        return out

    return run_idempotent(svc.store, caller.address, idempotency_key, fingerprint("POST", "/v1/leases", body), action)


@router.get("", response_model=LeaseList, responses=READ_RESPONSES)
def list_leases(
    svc: ServicesDep,
    buyer: Annotated[Address | None, Query()] = None,
    provider: Annotated[Address | None, Query()] = None,
    nodeId: Annotated[int | None, Query(ge=0, lt=2**63)] = None,
    state: Annotated[Literal["Open", "Active", "Closed", "Expired", "Exhausted"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> LeaseList:
    q = select(LeaseRow)
    if buyer is not None:
        q = q.where(LeaseRow.buyer == buyer)
    if provider is not None:
        q = q.where(LeaseRow.provider == provider)
    if nodeId is not None:
        q = q.where(LeaseRow.node_id == nodeId)
    if state is not None:
        q = q.where(LeaseRow.status == state)
    with svc.store.session() as s:
        total = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
        rows = s.scalars(q.order_by(LeaseRow.lease_id).limit(limit).offset(offset)).all()
    return LeaseList(
        leases=[
            LeaseSummary(leaseId=r.lease_id, offerId=r.offer_id, nodeId=r.node_id, buyer=r.buyer, provider=r.provider, state=r.status)
            for r in rows
        ],
        total=total,
    )


def lease_document(svc: Any, lease_id: int) -> LeaseOut:
    v = chainview.lease(svc.gateway, lease_id)
    with svc.store.session() as s:
        offer = s.get(OfferRow, v["offerId"])
        node = s.get(NodeRow, v["nodeId"])
    indices = json.loads(offer.data)["gpuIndices"] if offer else chainview.offer(svc.gateway, v["offerId"])["gpuIndices"]
    node_data = json.loads(node.data) if node else chainview.node(svc.gateway, v["nodeId"])
    attestors: list[dict[str, Any]] = []
    for e in events_of(svc, node_id=v["nodeId"]):
        a = json.loads(e.args)
        if e.name == "NodeRegistered":
            attestors = [{"address": a["attestor"], "fromMs": 0, "untilMs": None}]
        elif e.name == "AttestorRotated":
            at_ms = e.block_ts * 1000
            if attestors:
                attestors[-1]["untilMs"] = at_ms
            attestors.append({"address": a["newAttestor"], "fromMs": at_ms, "untilMs": None})
    if not attestors:
        attestors = [{"address": node_data["attestor"], "fromMs": 0, "untilMs": None}]
    money: dict[str, Any] = {"escrow": 0, "fee": 0, "topUps": [], "closed": False, "refund": 0, "feeRefund": 0}
    settlements: list[dict[str, Any]] = []
    billable_key = "cumAllocatedMs" if int(v["billingMode"]) == 0 else "cumBusyMs"  # Checkpoint.billable(mode)
    last_billable = 0  # cumulative billable GPU-ms before the lease's first checkpoint
    for e in events_of(svc, lease_id=lease_id):
        a = json.loads(e.args)
        if e.name == "LeaseOpened":
            money["escrow"], money["fee"] = a["escrowed"], a["fee"]
        elif e.name == "ToppedUp":
            money["topUps"].append({"amount": a["amount"], "fee": a["fee"], "block": e.block_number, "logIndex": e.log_index})
        elif e.name == "LeaseClosed":
            money["closed"], money["refund"] = True, a["refund"]
        elif e.name == "LeaseExpired":
            money["closed"], money["refund"] = True, a["refund"]
        elif e.name == "FeesSettled":
            money["feeRefund"] = a["buyerRefund"]
        elif e.name == "CheckpointSettled":
            # the record carries the new cumulative counters: this checkpoint billed the difference
            billable = int(a[billable_key])
            settlements.append(
                {
                    "seq": a["seq"],
                    "reportHash": a["reportHash"],
                    # what the chain recorded: the lease's new checkpoint word (decimal: above 2^53) and its fields
                    "ckpt": str(a["ckpt"]),
                    "cumBusyMs": a["cumBusyMs"],
                    "cumAllocatedMs": a["cumAllocatedMs"],
                    "cumEnergyMj": a["cumEnergyMj"],
                    "windowEndMs": a["windowEndMs"],
                    "settledAt": a["settledAt"],
                    "billableDelta": billable - last_billable,
                    "charged": a["charged"],
                    "samplesRoot": None,  # from the stored report named by reportHash, below
                    "block": e.block_number,
                    "logIndex": e.log_index,
                    "recordIndex": e.record_index,
                    "txHash": e.tx_hash,
                }
            )
            last_billable = billable
    if settlements:  # the samples root is bound by the report hash: the bridge's copy of the report has it
        with svc.store.session() as s:
            roots = dict(
                s.execute(
                    select(Report.struct_hash, Report.samples_root).where(
                        Report.struct_hash.in_({x["reportHash"] for x in settlements})
                    )
                ).all()
            )
        for x in settlements:
            x["samplesRoot"] = roots.get(x["reportHash"])
    return LeaseOut(
        leaseId=lease_id,
        chainId=svc.gateway.chain_id,
        escrow=svc.client.escrow.address,
        state=v["state"],
        offerId=v["offerId"],
        nodeId=v["nodeId"],
        buyer=v["buyer"],
        holder=v["holder"],
        provider=v["provider"],
        token=v["token"],
        gpuIndices=indices,
        gpuCount=v["gpuCount"],
        gpuSetHash=v["gpuSetHash"],
        startBy=v["startBy"],
        startMs=v["startMs"],
        endMs=v["endMs"],
        durationS=v["durationS"],
        pricePerGpuSecond=str(v["pricePerGpuSecond"]),
        billingMode=v["billingMode"],
        feeBps=v["feeBps"],
        maxPowerMwPerGpu=int(node_data["maxPowerMwPerGpu"]),
        attestors=attestors,
        money={k: (str(x) if isinstance(x, int) and not isinstance(x, bool) else x) for k, x in money.items()},
        settlements=settlements,
        checkpoint={k: str(x) if isinstance(x, int) else x for k, x in v["checkpoint"].items()},
        samplePeriodMs=observed_sample_period_ms(svc, lease_id),
    )


def observed_sample_period_ms(svc: Any, lease_id: int) -> int | None:
    """Median interval between consecutive samples of the same GPU in the lease's latest accepted report."""
    with svc.store.session() as s:
        root = s.scalar(
            select(Report.samples_root)
            .where(Report.lease_id == lease_id, Report.status != "rejected")
            .order_by(Report.seq.desc())
            .limit(1)
        )
        sample_set = s.get(SampleSet, root) if root is not None else None
    if sample_set is None:
        return None
    last: dict[int, int] = {}
    gaps: list[int] = []
    for smp in sorted(unpack_samples(sample_set.data), key=lambda x: (x.gpuIndex, x.tsMs)):
        prev = last.get(smp.gpuIndex)
        if prev is not None and smp.tsMs > prev:
            gaps.append(smp.tsMs - prev)
        last[smp.gpuIndex] = smp.tsMs
    if not gaps:
        return None
    gaps.sort()
    return gaps[(len(gaps) - 1) // 2]


@router.get("/{leaseId}", response_model=LeaseOut, responses=READ_RESPONSES)
def get_lease(leaseId: LeaseId, svc: ServicesDep) -> LeaseOut:
    return lease_document(svc, leaseId)


@router.post("/{leaseId}/activate", response_model=ActionOut, responses=COMMON_RESPONSES)
def activate_lease(leaseId: LeaseId, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Start an Open lease (its provider, payout address or the node's attestor)."""
    caller.require("provider")
    lease = chainview.lease(svc.gateway, leaseId)
    if caller.managed and lease["provider"] != caller.address:
        raise ApiError(403, "forbidden", f"lease {leaseId} is on another provider's offer")
    return act(svc, caller, svc.client.escrow.functions.activateLease(leaseId))


@router.post("/{leaseId}/top-up", response_model=ActionOut, responses=MONEY_RESPONSES)
def top_up(
    leaseId: LeaseId, body: TopUpIn, caller: CallerDep, svc: ServicesDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Extend the lease by amountWei / (price × gpuCount) seconds; the fee on it is added. ERC-20 leases:
    approved like ``POST /v1/leases`` (amountWei + feeWei)."""
    caller.require("buyer")

    def action() -> ActionOut:
        lease = _buyer_lease(svc, caller, leaseId)
        escrowed = lease["pricePerGpuSecond"] * lease["gpuCount"] * lease["durationS"]
        fee = top_up_fee(escrowed, body.amountWei, lease["feeBps"])
        out = with_lease_state(svc, leaseId, lambda st: act_paying(
            svc, caller, svc.client.escrow.functions.topUp(leaseId, body.amountWei, st.ckpt, st.last_hash),
            lease["token"], svc.client.escrow.address, body.amountWei + fee,
        ))
        out.result.update({"feeWei": str(fee), "totalWei": str(body.amountWei + fee), "token": lease["token"]})
        return out

    return run_idempotent(
        svc.store, caller.address, idempotency_key, fingerprint("POST", f"/v1/leases/{leaseId}/top-up", body), action
    )


@router.post("/{leaseId}/close", response_model=ActionOut, responses=MONEY_RESPONSES)
def close_lease(
    leaseId: LeaseId, caller: CallerDep, svc: ServicesDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Close (buyer any time; anyone after the end). The latest accepted report is settled first, so the
    provider is paid for the usage up to now; the rest of the escrow is refunded."""

    def action() -> ActionOut:
        lease = chainview.lease(svc.gateway, leaseId)
        ended = lease["endMs"] and svc.chain.now() * 1000 >= lease["endMs"]
        if caller.managed and lease["buyer"] != caller.address and not ended:
            raise ApiError(403, "forbidden", f"lease {leaseId} belongs to another buyer")
        def close(st: LeaseState) -> Any:
            return svc.client.escrow.functions.closeLease(leaseId, st.ckpt, st.last_hash)

        # refused closes settle nothing
        with_lease_state(svc, leaseId, lambda st: svc.gateway.simulate(close(st), caller.address))
        svc.relayer.settle_lease_now(leaseId)  # the provider is paid for the usage attested so far
        return with_lease_state(svc, leaseId, lambda st: act(svc, caller, close(st)))  # the state after that

    return run_idempotent(
        svc.store, caller.address, idempotency_key, fingerprint("POST", f"/v1/leases/{leaseId}/close", None), action
    )


def with_lease_state(svc: Any, lease_id: int, run: Callable[[LeaseState], T]) -> T:
    """``run`` with the lease's current state (closeLease, topUp, dispute, releaseEarnings and resolveDispute
    take its ``ckpt`` and ``lastReportHash``; the escrow checks them against its commitment). If the lease
    moved between the read and the call (the relayer settled a checkpoint: ``LeaseEscrowStaleState``), once
    more with the new state. The call itself was not sent when that error comes: the simulation raises it
    (a managed ERC-20 top-up's approval is set back to 0 by ``act_paying`` and made again)."""
    for attempt in range(2):
        try:
            return run(chainview.lease_state(svc.gateway, lease_id))
        except ApiError as e:
            if attempt or e.details.get("error") != "LeaseEscrowStaleState":
                raise
    raise AssertionError("unreachable")


@router.post("/{leaseId}/dispute", response_model=ActionOut, responses=COMMON_RESPONSES)
def dispute(leaseId: LeaseId, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Freeze the pending charges (buyer, within the challenge period)."""
    caller.require("buyer")
    _buyer_lease(svc, caller, leaseId)
    return with_lease_state(
        svc, leaseId, lambda st: act(svc, caller, svc.client.escrow.functions.dispute(leaseId, st.ckpt, st.last_hash))
    )


@router.post("/{leaseId}/rate", response_model=ActionOut, responses=COMMON_RESPONSES)
def rate(leaseId: LeaseId, body: RateIn, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Rate the provider 1..5 once the lease is Closed or Exhausted (buyer, once)."""
    caller.require("buyer")
    _buyer_lease(svc, caller, leaseId)
    return act(svc, caller, svc.client.escrow.functions.rate(leaseId, body.stars))


@router.post("/{leaseId}/release-earnings", response_model=ActionOut, responses=MONEY_RESPONSES)
def release_earnings(leaseId: LeaseId, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Move charges past their challenge period to the rights holder's withdrawable balance (anyone)."""
    chainview.lease(svc.gateway, leaseId)
    return with_lease_state(
        svc, leaseId,
        lambda st: act(svc, caller, svc.client.escrow.functions.releaseEarnings(leaseId, st.ckpt, st.last_hash)),
    )


@router.post("/{leaseId}/expire", response_model=ActionOut, responses=MONEY_RESPONSES)
def expire_lease(leaseId: LeaseId, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Expire an Open lease past its start deadline: full refund to the buyer (anyone)."""
    chainview.lease(svc.gateway, leaseId)
    return act(svc, caller, svc.client.escrow.functions.expireLease(leaseId))
