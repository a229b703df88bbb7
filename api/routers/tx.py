"""Wallet users: relay a transaction they signed (built by any write endpoint with X-Wallet-Address)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..deps import IdempotencyKey, RelayDep, get_after_write
from ..errors import MONEY_RESPONSES
from .answer import respond
from ..schemas import ActionOut, RawTxIn

router = APIRouter(prefix="/v1/tx", tags=["wallet"])


@router.post("", response_model=ActionOut, responses=MONEY_RESPONSES)
def submit_signed(
    body: RawTxIn,
    relay: RelayDep,
    after_write: Annotated[Any, Depends(get_after_write)],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Relay a signed transaction to one of the ledger's contracts (or an ERC-20 ``approve`` of the escrow or
    registry, on a token the ledger uses) and wait for it. The transaction is simulated first: a revert
    answers the mapped error and nothing is broadcast."""
    return respond(relay.submit(body.rawTransaction, idempotency_key, body, after_write))
