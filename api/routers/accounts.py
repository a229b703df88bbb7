"""Managed accounts: for clients without a wallet. The key is generated and kept encrypted by the bridge;
the API key is returned once."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import AccountsDep, CallerDep, DisputesDep, VouchersDep
from ..errors import COMMON_RESPONSES, ErrorResponse
from ..schemas import AccountCreated, AccountIn, AccountOut

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.post(
    "",
    status_code=201,
    response_model=AccountCreated,
    responses={413: COMMON_RESPONSES[413], 422: COMMON_RESPONSES[422], 429: COMMON_RESPONSES[429]},
)
def create_account(body: AccountIn, accounts: AccountsDep, disputes: DisputesDep, vouchers: VouchersDep) -> AccountCreated:
    """Create a managed account with the given roles. The API key is shown once; keep it. New accounts hold no
    ETH: fund them (dev chains: ``POST /v1/faucet``). An arbiter account gets the escrow's ARBITER_ROLE on dev
    chains; elsewhere ``notes`` says what the escrow's admin must do. An issuer account (compute vouchers) gets
    the voucher vault's ISSUER_ROLE the same way."""
    address, roles, token = accounts.create(list(body.roles), body.label)
    notes = ["the account holds no ETH: fund it to pay gas (dev chains: POST /v1/faucet)"]
    if "arbiter" in roles:
        notes.append(disputes.grant_arbiter(address))
    if "issuer" in roles and vouchers.has_vault:
        notes.append(vouchers.grant_issuer(address))
    return AccountCreated(address=address, roles=roles, apiKey=token, notes=notes)


@router.get(
    "/me",
    response_model=AccountOut,
    responses={401: COMMON_RESPONSES[401], 403: COMMON_RESPONSES[403], 404: {"model": ErrorResponse}, 422: COMMON_RESPONSES[422], 503: COMMON_RESPONSES[503]},
)
def me(caller: CallerDep, accounts: AccountsDep) -> AccountOut:
    """The calling account (API key) or the wallet address given in X-Wallet-Address."""
    return AccountOut(**accounts.me(caller))
