"""FastAPI dependencies: the bridge's services, the caller (API key or wallet address), settings.

Each router asks for the services it uses (``LeasesDep``, ``OffersDep``, ...), never for the container."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request

from .errors import Unauthorized
from .services.caller import Caller
from .settings import Settings

if TYPE_CHECKING:
    from .container import Bridge
    from .services.accounts import Accounts
    from .services.audit import AuditData
    from .services.chain_info import ChainInfo
    from .services.disputes import Disputes
    from .services.funds import Faucet, Funds, Relay
    from .services.health import Health
    from .services.leases import Leases
    from .services.market import Market
    from .services.metering import Metering
    from .services.offers import Offers
    from .services.providers import Nodes, Providers
    from .services.tokens import Tokens
    from .services.web_audit import AuditBook, WebAuditor
    from .services.web_sessions import WebSessions
    from .services.vouchers import Vouchers
    from .services.price_index import PriceIndex


def _bridge(request: Request) -> "Bridge":
    bridge: Bridge = request.app.state.bridge
    return bridge


def get_settings(request: Request) -> Settings:
    return _bridge(request).settings


def get_accounts(request: Request) -> "Accounts":
    return _bridge(request).accounts


def get_providers(request: Request) -> "Providers":
    return _bridge(request).providers


def get_nodes(request: Request) -> "Nodes":
    return _bridge(request).nodes


def get_offers(request: Request) -> "Offers":
    return _bridge(request).offers


def get_leases(request: Request) -> "Leases":
    return _bridge(request).leases


def get_metering(request: Request) -> "Metering":
    return _bridge(request).metering


def get_funds(request: Request) -> "Funds":
    return _bridge(request).funds


def get_faucet(request: Request) -> "Faucet":
    return _bridge(request).faucet


def get_relay(request: Request) -> "Relay":
    return _bridge(request).relay


def get_tokens(request: Request) -> "Tokens":
    return _bridge(request).tokens


def get_price_index(request: Request) -> "PriceIndex":
    return _bridge(request).price_index


def get_vouchers(request: Request) -> "Vouchers":
    return _bridge(request).vouchers


def get_audit(request: Request) -> "AuditData":
    return _bridge(request).audit


def get_disputes(request: Request) -> "Disputes":
    return _bridge(request).disputes


def get_chain_info(request: Request) -> "ChainInfo":
    return _bridge(request).chain_info


def get_health(request: Request) -> "Health":
    return _bridge(request).health


def get_market(request: Request) -> "Market":
    return _bridge(request).market


def get_web_sessions(request: Request) -> "WebSessions":
    return _bridge(request).web_sessions


def get_audit_book(request: Request) -> "AuditBook":
    return _bridge(request).audit_book


def get_web_auditor(request: Request) -> "WebAuditor | None":
    auditor: WebAuditor | None = request.app.state.web_auditor
    return auditor


def get_chain_handle(request: Request) -> object:
    """The bridge's chain (``LedgerChain``), opaque here: for the web auditor, which reads it directly."""
    return _bridge(request).ledger


def get_after_write(request: Request) -> object:
    return _bridge(request).after_write


SettingsDep = Annotated[Settings, Depends(get_settings)]
AccountsDep = Annotated["Accounts", Depends(get_accounts)]
ProvidersDep = Annotated["Providers", Depends(get_providers)]
NodesDep = Annotated["Nodes", Depends(get_nodes)]
OffersDep = Annotated["Offers", Depends(get_offers)]
LeasesDep = Annotated["Leases", Depends(get_leases)]
MeteringDep = Annotated["Metering", Depends(get_metering)]
FundsDep = Annotated["Funds", Depends(get_funds)]
FaucetDep = Annotated["Faucet", Depends(get_faucet)]
RelayDep = Annotated["Relay", Depends(get_relay)]
TokensDep = Annotated["Tokens", Depends(get_tokens)]
AuditDep = Annotated["AuditData", Depends(get_audit)]
HealthDep = Annotated["Health", Depends(get_health)]
ChainInfoDep = Annotated["ChainInfo", Depends(get_chain_info)]
DisputesDep = Annotated["Disputes", Depends(get_disputes)]
MarketDep = Annotated["Market", Depends(get_market)]
WebSessionsDep = Annotated["WebSessions", Depends(get_web_sessions)]
AuditBookDep = Annotated["AuditBook", Depends(get_audit_book)]
WebAuditorDep = Annotated["WebAuditor | None", Depends(get_web_auditor)]
ChainHandleDep = Annotated[object, Depends(get_chain_handle)]
VouchersDep = Annotated["Vouchers", Depends(get_vouchers)]
PriceIndexDep = Annotated["PriceIndex", Depends(get_price_index)]


def _caller(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="`Bearer cl_...`: the API key of a managed account")
    ] = None,
    x_wallet_address: Annotated[
        str | None,
        Header(description="a wallet user's address (0x + 40 hex digits; else 401): write endpoints answer an "
               "unsigned transaction"),
    ] = None,
) -> Caller | None:
    return _bridge(request).accounts.caller(authorization, x_wallet_address)


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
