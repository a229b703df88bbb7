"""Leases: open with escrow, read (terms, money and settlements as indexed), top up, close, dispute, rate.

Buyer actions check that the caller is the lease's buyer before anything is sent (403), as the contract
would; the contract stays the authority (its reverts are mapped to statuses too)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..deps import CallerDep, OptionalCaller, IdempotencyKey, LeasesDep
from ..errors import COMMON_RESPONSES, MONEY_RESPONSES, READ_RESPONSES
from .answer import respond
from ..schemas import ActionOut, Address, Strict

router = APIRouter(prefix="/v1/leases", tags=["leases"])

LeaseId = Annotated[int, Path(ge=0, lt=2**63)]


class LeaseIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"offerId": 2, "durationS": 3600}]})
    offerId: int = Field(ge=0, lt=2**63)
    durationS: int = Field(ge=1, lt=2**32, description="seconds of GPU time to escrow")
    startBy: int | None = Field(default=None, ge=0, lt=2**64, description="unix s; default chain time + 1 h")
    maxTotalWei: int | None = Field(default=None, ge=0, lt=2**256, description="refuse if escrow + fee is above")
    holder: Address | None = Field(default=None, description="rights holder; default the provider's payout")


class TopUpIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"amountWei": "3600000000000000"}]})
    amountWei: int = Field(gt=0, lt=2**128, description="a multiple of price × gpuCount (whole seconds)")


class RateIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"stars": 5}]})
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


Wei = Annotated[str, Field(description="an amount in the lease's token's smallest unit, as a decimal string")]


class AttestorPeriodOut(BaseModel):
    address: str
    fromMs: int
    untilMs: int | None = Field(description="null: still the node's attestor")


class TopUpOut(BaseModel):
    amount: Wei
    fee: Wei
    block: int
    logIndex: int


class MoneyOut(BaseModel):
    """The lease's money, folded from the escrow's events (``ledger.protocol.economics.fold_lease``)."""

    escrow: Wei = Field(description="escrowed at opening (LeaseOpened.escrowed)")
    fee: Wei = Field(description="platform fee escrowed on top at opening")
    topUps: list[TopUpOut]
    closed: bool = Field(description="LeaseClosed, LeaseExpired or LeaseExhausted was seen")
    exhausted: bool
    refund: Wei
    closedCharged: Wei | None = Field(description="LeaseClosed.charged or LeaseExhausted.charged; null until then")
    feeKept: Wei | None = Field(description="FeesSettled.treasuryFee; null until the fee is split")
    feeRefund: Wei
    charged: Wei = Field(description="every checkpoint's charge so far")
    disputed: Wei
    released: Wei


class SettlementOut(BaseModel):
    """A settled checkpoint: one record of a CheckpointsSettled log."""

    seq: int
    reportHash: str
    ckpt: str = Field(description="the lease's new checkpoint word (decimal string: it exceeds 2^53)")
    cumBusyMs: int
    cumAllocatedMs: int
    cumEnergyMj: int
    cumSmActiveMs: int
    settledAt: int = Field(description="unix s of the block that settled it")
    billableDelta: int = Field(description="GPU-ms this checkpoint billed, under the lease's billing mode")
    charged: Wei
    samplesRoot: str | None = Field(description="the settled report's samples root, from the bridge's copy")
    block: int
    logIndex: int
    recordIndex: int
    txHash: str | None


class LeaseDisputeOut(BaseModel):
    frozen: Wei
    block: int
    resolved: bool
    buyerShare: Wei
    providerShare: Wei
    slashed: Wei
    providerFault: bool


class CheckpointOut(BaseModel):
    """The escrow's view of the lease's settlement: what is settled and where the money stands."""

    lastSeq: int
    lastReportHash: str
    cumBusyMs: int
    cumEnergyMj: int
    cumAllocatedMs: int
    cumSmActiveMs: int
    lastSettledAt: int = Field(description="unix s of the last settlement (activation before any)")
    charged: Wei
    paid: Wei
    pending: Wei
    frozen: Wei
    refunded: Wei
    remaining: Wei


class EarningsOut(BaseModel):
    pending: Wei = Field(description="charges not yet released to the holder")
    frozen: Wei = Field(description="held by an open dispute")
    challengePeriodS: int
    releasableAt: int | None = Field(
        description="from when POST /v1/leases/{id}/release-earnings succeeds (unix s); null with nothing pending "
        "or while frozen"
    )


class UsageOut(BaseModel):
    """What the lease's attested reports say so far (the bridge's latest report, settled or not)."""

    reports: int
    throughMs: int
    allocatedMs: int
    busyMs: int
    smActiveMs: int = Field(description="GPM: time the SMs computed")
    energyMj: int
    smActiveShareOfBusyPct: float | None = Field(description="how much of the busy time the SMs were active")


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
    pricePerGpuSecond: Wei
    billingMode: Literal["reserved", "metered", "sm_active"]
    feeBps: int
    maxPowerMwPerGpu: int
    attestors: list[AttestorPeriodOut]
    money: MoneyOut
    settlements: list[SettlementOut]
    disputes: list[LeaseDisputeOut] = Field(default_factory=list)
    checkpoint: CheckpointOut
    earnings: EarningsOut
    usage: UsageOut | None = Field(default=None, description="null before the first report")
    samplePeriodMs: int | None = Field(
        default=None,
        description="sampling period observed in the attested samples of the latest accepted report (median "
        "interval between one GPU's consecutive samples); null before a report with two samples of a GPU. "
        "The attestor's configured period is not on-chain: it is only committed inside configHash.",
    )


@router.post("", response_model=ActionOut, responses=MONEY_RESPONSES)
def open_lease(body: LeaseIn, caller: CallerDep, leases: LeasesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Open a lease: escrow price × gpuCount × durationS plus the fee, in the offer's token. ``result.leaseId``
    is the new id. Send an ``Idempotency-Key``: a retried request escrows once. ERC-20 offers: a managed
    account's approval of the escrow (exactly ``totalWei``) is sent first (``result.approveTxHashes``); a
    wallet user without that allowance gets 409 ``approval_required`` with the unsigned approve in
    ``detail.details.unsignedTx``: sign and submit it (``POST /v1/tx``), then repeat this request (same
    Idempotency-Key) for the unsigned openLease."""
    return respond(
        leases.open(caller, body.offerId, body.durationS, body.startBy, body.maxTotalWei, body.holder, idempotency_key, body)
    )


@router.get("", response_model=LeaseList, responses=READ_RESPONSES)
def list_leases(
    leases: LeasesDep,
    buyer: Annotated[Address | None, Query()] = None,
    provider: Annotated[Address | None, Query()] = None,
    nodeId: Annotated[int | None, Query(ge=0, lt=2**63)] = None,
    state: Annotated[Literal["Open", "Active", "Closed", "Expired", "Exhausted"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> LeaseList:
    total, rows = leases.list(buyer=buyer, provider=provider, node_id=nodeId, state=state, limit=limit, offset=offset)
    return LeaseList(leases=[LeaseSummary(**r) for r in rows], total=total)


@router.get("/{leaseId}", response_model=LeaseOut, responses=READ_RESPONSES)
def get_lease(leaseId: LeaseId, leases: LeasesDep) -> LeaseOut:
    return LeaseOut(**leases.document(leaseId))


@router.post("/{leaseId}/activate", response_model=ActionOut, responses=COMMON_RESPONSES)
def activate_lease(leaseId: LeaseId, caller: CallerDep, leases: LeasesDep) -> ActionOut:
    """Start an Open lease (its provider, payout address or the node's attestor)."""
    return leases.activate(caller, leaseId)


@router.post("/{leaseId}/top-up", response_model=ActionOut, responses=MONEY_RESPONSES)
def top_up(
    leaseId: LeaseId, body: TopUpIn, caller: CallerDep, leases: LeasesDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Extend the lease by amountWei / (price × gpuCount) seconds; the fee on it is added. ERC-20 leases:
    approved like ``POST /v1/leases`` (amountWei + feeWei)."""
    return respond(leases.top_up(caller, leaseId, body.amountWei, idempotency_key, body))


@router.post("/{leaseId}/close", response_model=ActionOut, responses=MONEY_RESPONSES)
def close_lease(leaseId: LeaseId, caller: CallerDep, leases: LeasesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Close (buyer any time; anyone after the end). The latest accepted report is settled first, so the
    provider is paid for the usage up to now; the rest of the escrow is refunded."""
    return respond(leases.close(caller, leaseId, idempotency_key))


@router.post("/{leaseId}/dispute", response_model=ActionOut, responses=COMMON_RESPONSES)
def dispute(leaseId: LeaseId, caller: CallerDep, leases: LeasesDep) -> ActionOut:
    """Freeze the pending charges (buyer, within the challenge period)."""
    return leases.dispute(caller, leaseId)


@router.post("/{leaseId}/rate", response_model=ActionOut, responses=COMMON_RESPONSES)
def rate(leaseId: LeaseId, body: RateIn, caller: CallerDep, leases: LeasesDep) -> ActionOut:
    """Rate the provider 1..5 once the lease is Closed or Exhausted (buyer, once)."""
    return leases.rate(caller, leaseId, body.stars)


@router.post("/{leaseId}/release-earnings", response_model=ActionOut, responses=MONEY_RESPONSES)
def release_earnings(leaseId: LeaseId, caller: OptionalCaller, leases: LeasesDep) -> ActionOut:
    """Move charges past their challenge period to the rights holder's withdrawable balance. Anyone may call
    it, with no key at all (the bridge then sends it and pays the gas); 409 before the period ends (the lease's
    ``earnings.releasableAt`` says when)."""
    return leases.release_earnings(caller, leaseId)


@router.post("/{leaseId}/expire", response_model=ActionOut, responses=MONEY_RESPONSES)
def expire_lease(leaseId: LeaseId, caller: OptionalCaller, leases: LeasesDep) -> ActionOut:
    """Expire an Open lease past its start deadline: full refund to the buyer (anyone, with no key at all)."""
    return leases.expire(caller, leaseId)
