"""FastAPI dependencies: the app's services, the caller (API key or wallet address), settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from fastapi import Depends, Header, Request

from .errors import Forbidden, Invalid, Unauthorized
from .keys import parse_api_key, secret_matches
from .settings import Settings
from .store import Account, ApiKey

if TYPE_CHECKING:
    from .services import Services


def get_services(request: Request) -> "Services":
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated["Services", Depends(get_services)]


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.services.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


@dataclass(frozen=True)
class Caller:
    """Who is calling. ``account`` is set for a managed account (the bridge signs for it); for a wallet
    caller it is None and write endpoints answer an unsigned transaction for the wallet to sign."""

    address: str
    roles: frozenset[str]
    account: LocalAccount | None

    @property
    def managed(self) -> bool:
        return self.account is not None

    def require(self, role: str) -> None:
        if self.managed and role not in self.roles:
            raise Forbidden(f"this account does not have the {role} role", code="missing_role")


def _caller(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="`Bearer cl_...`: the API key of a managed account")
    ] = None,
    x_wallet_address: Annotated[
        str | None,
        Header(
            description="a wallet user's address: write endpoints answer an unsigned transaction",
            pattern=r"^0x[0-9a-fA-F]{40}$",
        ),
    ] = None,
) -> Caller | None:
    services: Services = request.app.state.services
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization must be `Bearer <API key>`")
        parsed = parse_api_key(token.strip())
        if parsed is None:
            raise Unauthorized("malformed API key")
        key_id, secret = parsed
        with services.store.session() as s:
            key = s.get(ApiKey, key_id)
            if key is None or key.revoked or not secret_matches(secret, key.secret_hash):
                raise Unauthorized("unknown or revoked API key")
            acct = s.get(Account, key.address)
        if acct is None:
            raise Unauthorized("the API key's account is gone")
        roles = frozenset(r for r in acct.roles.split(",") if r)
        local = services.keybox.open(acct.address, acct.encrypted_key) if acct.encrypted_key else None
        if local is None:
            raise Forbidden("this account has no managed key")
        return Caller(address=acct.address, roles=roles, account=local)
    if x_wallet_address is not None:
        if not is_address(x_wallet_address.strip()):
            raise Invalid("X-Wallet-Address is not an address", field="X-Wallet-Address")
        return Caller(address=to_checksum_address(x_wallet_address.strip()), roles=frozenset(), account=None)
    return None


def _required_caller(caller: Annotated[Caller | None, Depends(_caller)]) -> Caller:
    if caller is None:
        raise Unauthorized("send an API key (Authorization: Bearer ...) or X-Wallet-Address")
    return caller


OptionalCaller = Annotated[Caller | None, Depends(_caller)]
CallerDep = Annotated[Caller, Depends(_required_caller)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="retries with the same key move money once (1..128 visible ASCII characters)",
        pattern=r"^[!-~]{1,128}$",
    ),
]
