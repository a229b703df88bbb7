"""Providers: register, stake, unstake; read a provider with its reputation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from .. import chainview
from ..actions import act, act_paying
from ..deps import CallerDep, IdempotencyKey, ServicesDep
from ..errors import COMMON_RESPONSES, MONEY_RESPONSES, READ_RESPONSES, NotFound
from ..idempotency import fingerprint, run_idempotent
from ..schemas import ETH, ActionOut, Address, Strict, Uint256

router = APIRouter(prefix="/v1/providers", tags=["providers"])


class ProviderIn(Strict):
    payout: Address | None = Field(default=None, description="receives capacity rights; default: the caller")
    metadataURI: str = Field(default="", max_length=2048)


class StakeIn(Strict):
    token: Address = ETH
    amountWei: Uint256 = Field(gt=0)


class TokenIn(Strict):
    token: Address = ETH


class ProviderOut(BaseModel):
    address: str
    registered: bool
    payout: str
    metadataURI: str
    lockedRights: str
    scoreBps: int
    counts: dict[str, Any]
    stake: dict[str, Any]


@router.post("", response_model=ActionOut, responses=COMMON_RESPONSES)
def register_provider(body: ProviderIn, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Register the caller as a provider (role ``provider``)."""
    caller.require("provider")
    fn = svc.client.registry.functions.registerProvider(body.payout or caller.address, body.metadataURI)
    return act(svc, caller, fn)


@router.post("/stake", response_model=ActionOut, responses=MONEY_RESPONSES)
def stake(body: StakeIn, caller: CallerDep, svc: ServicesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Add stake (ETH when token is the zero address). Idempotent with ``Idempotency-Key``. An ERC-20 is
    approved to the registry first for a managed account, or answered 409 ``approval_required`` to a wallet
    (as for leases)."""
    caller.require("provider")
    fn = svc.client.registry.functions.stake(body.token, body.amountWei)
    return run_idempotent(
        svc.store, caller.address, idempotency_key, fingerprint("POST", "/v1/providers/stake", body),
        lambda: act_paying(svc, caller, fn, body.token, svc.client.registry.address, body.amountWei),
    )


@router.post("/unstake", response_model=ActionOut, responses=MONEY_RESPONSES)
def request_unstake(body: StakeIn, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Start unbonding ``amountWei`` of bonded stake."""
    caller.require("provider")
    return act(svc, caller, svc.client.registry.functions.requestUnstake(body.token, body.amountWei))


@router.post("/withdraw-stake", response_model=ActionOut, responses=MONEY_RESPONSES)
def withdraw_stake(
    body: TokenIn, caller: CallerDep, svc: ServicesDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Withdraw unbonded stake after the delay (no open lease)."""
    caller.require("provider")
    fn = svc.client.registry.functions.withdrawStake(body.token)
    return run_idempotent(
        svc.store, caller.address, idempotency_key, fingerprint("POST", "/v1/providers/withdraw-stake", body),
        lambda: act(svc, caller, fn),
    )


@router.get("/{address}", response_model=ProviderOut, responses=READ_RESPONSES)
def get_provider(address: Address, svc: ServicesDep) -> ProviderOut:
    p = chainview.provider(svc.gateway, address)
    if not p["registered"]:
        raise NotFound("provider", address)
    rep = chainview.reputation(svc.gateway, address)
    st = chainview.stake(svc.gateway, address, ETH)
    return ProviderOut(
        address=address,
        registered=True,
        payout=p["payout"],
        metadataURI=p["metadataURI"],
        lockedRights=str(p["lockedRights"]),
        scoreBps=rep["scoreBps"],
        counts=rep["counts"],
        stake={"token": ETH, **{k: str(int(v)) for k, v in st.items()}},
    )
