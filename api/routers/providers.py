"""Providers: register, stake, unstake; read a provider with its reputation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..deps import CallerDep, IdempotencyKey, ProvidersDep
from ..errors import COMMON_RESPONSES, MONEY_RESPONSES, READ_RESPONSES
from .answer import respond
from ..schemas import ETH, ActionOut, Address, Strict, Uint256

router = APIRouter(prefix="/v1/providers", tags=["providers"])


class ProviderIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"metadataURI": "https://provider.example/gpu-farm"}]})
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
def register_provider(body: ProviderIn, caller: CallerDep, providers: ProvidersDep) -> ActionOut:
    """Register the caller as a provider (role ``provider``)."""
    return providers.register(caller, body.payout, body.metadataURI)


@router.post("/stake", response_model=ActionOut, responses=MONEY_RESPONSES)
def stake(body: StakeIn, caller: CallerDep, providers: ProvidersDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Add stake (ETH when token is the zero address). Idempotent with ``Idempotency-Key``. An ERC-20 is
    approved to the registry first for a managed account, or answered 409 ``approval_required`` to a wallet
    (as for leases)."""
    return respond(providers.stake(caller, body.token, body.amountWei, idempotency_key, body))


@router.post("/unstake", response_model=ActionOut, responses=MONEY_RESPONSES)
def request_unstake(body: StakeIn, caller: CallerDep, providers: ProvidersDep) -> ActionOut:
    """Start unbonding ``amountWei`` of bonded stake."""
    return providers.request_unstake(caller, body.token, body.amountWei)


@router.post("/withdraw-stake", response_model=ActionOut, responses=MONEY_RESPONSES)
def withdraw_stake(
    body: TokenIn, caller: CallerDep, providers: ProvidersDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Withdraw unbonded stake after the delay (no open lease)."""
    return respond(providers.withdraw_stake(caller, body.token, idempotency_key, body))


@router.get("/{address}", response_model=ProviderOut, responses=READ_RESPONSES)
def get_provider(address: Address, providers: ProvidersDep) -> ProviderOut:
    return ProviderOut(**providers.get(address))
