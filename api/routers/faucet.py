"""Test funds, mounted only on the memory and anvil backends (never on rpc)."""

from __future__ import annotations

from fastapi import APIRouter

from ..actions import outcome_out
from ..deps import IdempotencyKey, ServicesDep
from ..errors import COMMON_RESPONSES, ApiError
from ..idempotency import fingerprint, run_idempotent
from ..schemas import ActionOut, FaucetIn
from fastapi.responses import Response

router = APIRouter(prefix="/v1/faucet", tags=["faucet"])

MAX_FAUCET_WEI = 10**21


@router.post(
    "",
    response_model=ActionOut,
    responses={409: COMMON_RESPONSES[409], 413: COMMON_RESPONSES[413], 422: COMMON_RESPONSES[422], 503: COMMON_RESPONSES[503]},
)
def faucet(body: FaucetIn, svc: ServicesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Send test ETH to an address (dev chains only; at most 1000 ETH per call)."""
    amount = svc.settings.faucet_wei if body.amountWei is None else body.amountWei
    if amount > MAX_FAUCET_WEI:
        raise ApiError(422, "validation_error", f"amountWei above {MAX_FAUCET_WEI}", field="amountWei")
    source = svc.faucet_account
    if source is None:
        raise ApiError(409, "faucet_disabled", "this chain has no funded dev account")

    def action() -> ActionOut:
        return outcome_out(svc.gateway.send_eth(source, body.address, amount))

    return run_idempotent(svc.store, f"faucet:{body.address}", idempotency_key, fingerprint("POST", "/v1/faucet", body), action)
