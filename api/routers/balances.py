"""Balances (withdrawable earnings and refunds) and pull withdrawals; reputation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..deps import CallerDep, FundsDep, IdempotencyKey
from ..errors import MONEY_RESPONSES, READ_RESPONSES
from .answer import respond
from ..schemas import ETH, ActionOut, Address, Strict

router = APIRouter(tags=["balances"])


class BalanceOut(BaseModel):
    address: str
    token: str = Field(description="zero address: ETH, else the ERC-20")
    withdrawableWei: str = Field(description="pullable from the escrow in this token (POST /v1/withdraw)")
    walletBalanceWei: str = Field(description="the address's own balance of this token")
    ethBalanceWei: str = Field(description="the address's ETH balance (gas)")


class WithdrawIn(Strict):
    token: Address = ETH


class ReputationOut(BaseModel):
    address: str
    scoreBps: int
    counts: dict[str, Any]


@router.get("/v1/balances/{address}", response_model=BalanceOut, responses=READ_RESPONSES)
def balance(address: Address, funds: FundsDep, token: Annotated[Address, Query()] = ETH) -> BalanceOut:
    """What ``address`` may withdraw from the escrow in ``token`` (ETH by default, or an ERC-20), its wallet
    balance of that token, and its ETH balance."""
    return BalanceOut(**funds.balance(address, token))


@router.post("/v1/withdraw", response_model=ActionOut, responses=MONEY_RESPONSES)
def withdraw(body: WithdrawIn, caller: CallerDep, funds: FundsDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Pull everything the caller may withdraw in ``token`` (earnings, refunds; ETH by default): one token per
    call."""
    return respond(funds.withdraw(caller, body.token, idempotency_key, body))


@router.get("/v1/reputation/{address}", response_model=ReputationOut, responses=READ_RESPONSES, tags=["reputation"])
def reputation(address: Address, funds: FundsDep) -> ReputationOut:
    """Beta-model score in basis points with the counts it comes from."""
    return ReputationOut(**funds.reputation(address))
