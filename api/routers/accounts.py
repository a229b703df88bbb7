"""Managed accounts: for clients without a wallet. The key is generated and kept encrypted by the bridge;
the API key is returned once."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import CallerDep, ServicesDep
from ..errors import COMMON_RESPONSES, ErrorResponse, NotFound
from ..keys import new_account, new_api_key
from ..schemas import AccountCreated, AccountIn, AccountOut
from ..store import Account, ApiKey, now_ms

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.post(
    "",
    status_code=201,
    response_model=AccountCreated,
    responses={413: COMMON_RESPONSES[413], 422: COMMON_RESPONSES[422]},
)
def create_account(body: AccountIn, svc: ServicesDep) -> AccountCreated:
    """Create a managed account with the given roles. The API key is shown once; keep it."""
    acct = new_account()
    key_id, token, secret_hash = new_api_key()
    roles = sorted(set(body.roles))
    with svc.store.write() as s:
        s.add(
            Account(
                address=acct.address,
                kind="managed",
                roles=",".join(roles),
                label=body.label,
                encrypted_key=svc.keybox.seal(acct.address, bytes(acct.key)),
                created_ms=now_ms(),
            )
        )
        s.flush()
        s.add(ApiKey(key_id=key_id, address=acct.address, secret_hash=secret_hash, created_ms=now_ms()))
    return AccountCreated(address=acct.address, roles=roles, apiKey=token)


@router.get(
    "/me",
    response_model=AccountOut,
    responses={401: COMMON_RESPONSES[401], 403: COMMON_RESPONSES[403], 404: {"model": ErrorResponse}, 422: COMMON_RESPONSES[422], 503: COMMON_RESPONSES[503]},
)
def me(caller: CallerDep, svc: ServicesDep) -> AccountOut:
    """The calling account (API key) or the wallet address given in X-Wallet-Address."""
    with svc.store.session() as s:
        acct = s.get(Account, caller.address)
    with svc.gateway.lock:
        balance = int(svc.chain.w3.eth.get_balance(caller.address))  # type: ignore[arg-type]
    if acct is None:
        if caller.managed:
            raise NotFound("account", caller.address)
        return AccountOut(address=caller.address, roles=[], kind="wallet", label="", ethBalanceWei=str(balance))
    return AccountOut(
        address=acct.address,
        roles=[r for r in acct.roles.split(",") if r],
        kind=acct.kind,
        label=acct.label,
        ethBalanceWei=str(balance),
    )
