"""Test funds, mounted only on the memory and anvil backends (never on rpc)."""

from __future__ import annotations

from fastapi import APIRouter

from ..actions import outcome_out
from ..deps import IdempotencyKey, ServicesDep
from ..errors import COMMON_RESPONSES, ApiError
from ..idempotency import fingerprint, run_idempotent
from ..schemas import ETH, ActionOut, FaucetIn
from ..tokens import dev_tokens, erc20, is_dev_chain
from fastapi.responses import Response

router = APIRouter(prefix="/v1/faucet", tags=["faucet"])

MAX_FAUCET_WEI = 10**21


@router.post(
    "",
    response_model=ActionOut,
    responses={409: COMMON_RESPONSES[409], 413: COMMON_RESPONSES[413], 422: COMMON_RESPONSES[422], 503: COMMON_RESPONSES[503]},
)
def faucet(body: FaucetIn, svc: ServicesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Send test ETH to an address, or mint the dev token (``token``, see ``GET /v1/tokens``) to it (dev
    chains only; at most 1000 ETH / 10**21 token base units per call)."""
    amount = svc.settings.faucet_wei if body.amountWei is None else body.amountWei
    if amount > MAX_FAUCET_WEI:
        raise ApiError(422, "validation_error", f"amountWei above {MAX_FAUCET_WEI}", field="amountWei")
    source = svc.faucet_account
    if source is None or not is_dev_chain(svc):
        raise ApiError(409, "faucet_disabled", "this chain has no funded dev account")
    if body.token != ETH and body.token not in {t.address for t in dev_tokens(svc)}:
        raise ApiError(422, "unknown_token", f"the faucet mints only the dev token (GET /v1/tokens), not {body.token}",
                       field="token")

    def action() -> ActionOut:
        if body.token == ETH:
            return outcome_out(svc.gateway.send_eth(source, body.address, amount))
        mint = erc20(svc, body.token).functions.mint(body.address, amount)
        out = outcome_out(svc.gateway.transact(source, mint))
        out.result.update({"token": body.token, "amountWei": str(amount)})
        return out

    return run_idempotent(svc.store, f"faucet:{body.address}", idempotency_key, fingerprint("POST", "/v1/faucet", body), action)
