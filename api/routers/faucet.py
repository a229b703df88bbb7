"""Test funds, mounted only on the memory and anvil backends (never on rpc)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import FaucetDep, IdempotencyKey
from ..errors import COMMON_RESPONSES
from .answer import respond
from ..schemas import ActionOut, FaucetIn

router = APIRouter(prefix="/v1/faucet", tags=["faucet"])


@router.post(
    "",
    response_model=ActionOut,
    responses={409: COMMON_RESPONSES[409], 413: COMMON_RESPONSES[413], 422: COMMON_RESPONSES[422],
               429: COMMON_RESPONSES[429], 503: COMMON_RESPONSES[503]},
)
def faucet(body: FaucetIn, faucet: FaucetDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Send test ETH to an address, or mint the dev token (``token``, see ``GET /v1/tokens``) to it (dev
    chains only; at most 1000 ETH / 10**21 token base units per call)."""
    return respond(faucet.give(body.address, body.amountWei, body.token, idempotency_key, body))
