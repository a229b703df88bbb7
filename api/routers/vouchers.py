"""Compute vouchers (算力券): programmes (issuers), vouchers, leases paid by a voucher (beneficiaries), their
close-out, and each programme's redemption report as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..deps import CallerDep, IdempotencyKey, OptionalCaller, VouchersDep
from ..errors import COMMON_RESPONSES, MONEY_RESPONSES, READ_RESPONSES
from ..schemas import ETH, ActionOut, Address, Strict
from .answer import respond
from .leases import LeaseId

router = APIRouter(tags=["vouchers"])

ProgrammeId = Annotated[int, Path(ge=1, lt=2**63)]
VoucherId = Annotated[int, Path(ge=1, lt=2**63)]


class ProgrammeIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"token": ETH, "gpuModels": ["NVIDIA H100 80GB HBM3"], "regions": ["eu-west1"], "providers": []}
    ]})
    token: Address = Field(default=ETH, description="zero address: ETH, else the ERC-20 vouchers pay in")
    gpuModels: list[str] = Field(default=[], max_length=64, description="eligible GPU models as nodes register them (empty: any)")
    regions: list[str] = Field(default=[], max_length=64, description="eligible regions (empty: any)")
    providers: list[Address] = Field(default=[], max_length=64, description="eligible provider accounts (empty: any)")


class FundIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"amountWei": "100000000000000000"}]})
    amountWei: int = Field(gt=0, lt=2**128)


class GrantIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"beneficiary": "0x" + "11" * 20, "faceValueWei": "10000000000000000", "expiry": 1900000000, "copayBps": 2000}
    ]})
    beneficiary: Address
    faceValueWei: int = Field(gt=0, lt=2**128)
    expiry: int = Field(gt=0, lt=2**40, description="unix s; the voucher redeems before it")
    copayBps: int = Field(default=0, ge=0, le=10_000, description="the beneficiary's share of each lease's cost")


class RelatedIn(Strict):
    accounts: list[Address] = Field(min_length=1, max_length=100)
    related: bool = True


class VoucherLeaseIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"offerId": 1, "durationS": 3600}]})
    offerId: int = Field(ge=0, lt=2**63)
    durationS: int = Field(ge=1, lt=2**32)
    startBy: int | None = Field(default=None, ge=0, lt=2**64, description="unix s; default chain time + 1 h")
    maxCopayWei: int | None = Field(default=None, ge=0, lt=2**256, description="refuse if the co-pay is above")
    holder: Address | None = Field(default=None, description="rights holder; default the provider's payout")


class WithdrawIn(Strict):
    token: Address = ETH


class ProgrammeOut(BaseModel):
    programmeId: int
    issuer: str
    token: str
    closed: bool
    eligibility: dict[str, bool]
    poolWei: str = Field(description="funded, not yet granted")
    grantedWei: str
    spentWei: str = Field(description="what reconciled voucher leases finally cost the programme's vouchers")
    returnedWei: str = Field(description="back to the issuer: the pool at closing, expired balances")


class VoucherOut(BaseModel):
    voucherId: int
    programmeId: int
    beneficiary: str
    expiry: int
    copayBps: int
    expired: bool
    faceValueWei: str
    balanceWei: str


@router.post("/v1/programmes", response_model=ActionOut, responses=COMMON_RESPONSES)
def create_programme(body: ProgrammeIn, caller: CallerDep, vouchers: VouchersDep) -> ActionOut:
    """Create a voucher programme (an account with the ``issuer`` role, or a wallet holding the vault's
    ISSUER_ROLE); ``result.programmeId`` is its id."""
    return vouchers.create(caller, body.token, body.gpuModels, body.regions, body.providers)


@router.get("/v1/programmes/{programmeId}", response_model=ProgrammeOut, responses=READ_RESPONSES)
def get_programme(programmeId: ProgrammeId, vouchers: VouchersDep) -> ProgrammeOut:
    return ProgrammeOut(**vouchers.programme(programmeId))


@router.post("/v1/programmes/{programmeId}/fund", response_model=ActionOut, responses=MONEY_RESPONSES)
def fund_programme(programmeId: ProgrammeId, body: FundIn, caller: CallerDep, vouchers: VouchersDep,
                   idempotency_key: IdempotencyKey = None) -> Response:
    """Add to the programme's pool (its issuer), in the programme's token. Send an ``Idempotency-Key``."""
    return respond(vouchers.fund(caller, programmeId, body.amountWei, idempotency_key, body))


@router.post("/v1/programmes/{programmeId}/vouchers", response_model=ActionOut, responses=COMMON_RESPONSES)
def grant_voucher(programmeId: ProgrammeId, body: GrantIn, caller: CallerDep, vouchers: VouchersDep) -> ActionOut:
    """Grant a non-transferable voucher out of the pool (its issuer); ``result.voucherId`` is its id."""
    return vouchers.grant(caller, programmeId, body.beneficiary, body.faceValueWei, body.expiry, body.copayBps)


@router.post("/v1/programmes/{programmeId}/related", response_model=ActionOut, responses=COMMON_RESPONSES)
def set_related(programmeId: ProgrammeId, body: RelatedIn, caller: CallerDep, vouchers: VouchersDep) -> ActionOut:
    """Mark (or unmark) related parties: they can neither redeem nor be paid by the programme's vouchers."""
    return vouchers.set_related(caller, programmeId, body.accounts, body.related)


@router.post("/v1/programmes/{programmeId}/close", response_model=ActionOut, responses=COMMON_RESPONSES)
def close_programme(programmeId: ProgrammeId, caller: CallerDep, vouchers: VouchersDep) -> ActionOut:
    """Close the programme (its issuer): the ungranted pool becomes the issuer's to withdraw."""
    return vouchers.close(caller, programmeId)


@router.get("/v1/programmes/{programmeId}/redemptions", responses={**READ_RESPONSES, 200: {
    "description": "the redemption report", "content": {"application/json": {}, "text/csv": {}}}})
def redemptions(programmeId: ProgrammeId, vouchers: VouchersDep,
                format: Annotated[Literal["json", "csv"], Query()] = "json") -> Response:
    """The programme's redemption report: each voucher lease with what the voucher and the beneficiary paid,
    what settlement charged (the lease's checkpoints), its close-out, and the evidence an auditor re-verifies
    (report hashes, transaction hashes). ``format=csv``: one line per lease."""
    rep = vouchers.report(programmeId)
    if format == "csv":
        return Response(rep.to_csv(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="programme-{programmeId}-redemptions.csv"'})
    import json

    return Response(json.dumps(rep.to_json()), media_type="application/json")


@router.get("/v1/vouchers/{voucherId}", response_model=VoucherOut, responses=READ_RESPONSES)
def get_voucher(voucherId: VoucherId, vouchers: VouchersDep) -> VoucherOut:
    return VoucherOut(**vouchers.voucher(voucherId))


@router.post("/v1/vouchers/{voucherId}/leases", response_model=ActionOut, responses=MONEY_RESPONSES)
def open_voucher_lease(voucherId: VoucherId, body: VoucherLeaseIn, caller: CallerDep, vouchers: VouchersDep,
                       idempotency_key: IdempotencyKey = None) -> Response:
    """Open a lease paid by the voucher (its beneficiary, a buyer): the voucher pays its share of escrow + fee
    (at most its balance), the caller the co-pay (``result.copayWei``). The vault is the lease's buyer: close
    it with ``POST /v1/leases/{id}/voucher-close``; refunds come back through ``POST /v1/leases/{id}/reconcile``.
    Send an ``Idempotency-Key``: a retried request opens one lease."""
    return respond(vouchers.open_lease(caller, voucherId, body.offerId, body.durationS, body.startBy, body.maxCopayWei,
                                       body.holder, idempotency_key, body))


@router.post("/v1/vouchers/{voucherId}/expire", response_model=ActionOut, responses=COMMON_RESPONSES)
def expire_voucher(voucherId: VoucherId, caller: OptionalCaller, vouchers: VouchersDep) -> ActionOut:
    """Return an expired voucher's balance to its issuer (anyone; without a key the bridge sends it)."""
    return vouchers.expire(caller, voucherId)


@router.post("/v1/leases/{leaseId}/voucher-close", response_model=ActionOut, responses=COMMON_RESPONSES)
def close_voucher_lease(leaseId: LeaseId, caller: CallerDep, vouchers: VouchersDep) -> ActionOut:
    """Close a voucher lease (its beneficiary)."""
    return vouchers.close_lease(caller, leaseId)


@router.post("/v1/leases/{leaseId}/reconcile", response_model=ActionOut, responses=COMMON_RESPONSES)
def reconcile(leaseId: LeaseId, caller: OptionalCaller, vouchers: VouchersDep) -> ActionOut:
    """Close-out (核销) of an ended voucher lease whose fees are settled (anyone): what the escrow returned goes
    back pro rata, the voucher's part to the voucher (to the issuer once it expired), the co-pay part to the
    beneficiary (``POST /v1/vouchers/withdraw``). 409 before the escrow settled the lease's fees."""
    return vouchers.reconcile(caller, leaseId)


@router.post("/v1/vouchers/withdraw", response_model=ActionOut, responses=COMMON_RESPONSES)
def withdraw(body: WithdrawIn, caller: CallerDep, vouchers: VouchersDep) -> ActionOut:
    """Pull what the vault owes the caller in ``token`` (co-pay refunds; issuers: returned pools and balances)."""
    return vouchers.withdraw(caller, body.token)

