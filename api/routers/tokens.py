"""Tokens the ledger is paid in: ETH, the dev token (memory/anvil) and every ERC-20 an offer is priced in."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..deps import ServicesDep
from ..errors import READ_RESPONSES
from ..schemas import ETH
from ..tokens import dev_tokens, is_dev_chain, metadata, offer_tokens

router = APIRouter(tags=["tokens"])


class TokenOut(BaseModel):
    address: str = Field(description="zero address: ETH")
    name: str | None
    symbol: str | None
    decimals: int | None
    native: bool = Field(description="ETH, paid as the transaction's value")
    dev: bool = Field(description="the test token the bridge deployed on this dev chain")
    faucet: bool = Field(description="POST /v1/faucet {token} mints it")
    inOffers: bool = Field(description="some indexed offer is priced in it")


class TokenList(BaseModel):
    tokens: list[TokenOut]
    devToken: str | None = Field(description="the dev token's address (memory/anvil), else null")


@router.get("/v1/tokens", response_model=TokenList, responses=READ_RESPONSES)
def list_tokens(svc: ServicesDep) -> TokenList:
    """ETH, the dev token and the ERC-20s offers are priced in. Paying in an ERC-20 needs an approval of the
    escrow: the bridge sends it for managed accounts; wallets get it to sign (409 ``approval_required``)."""
    dev = is_dev_chain(svc)
    in_offers = set(offer_tokens(svc))
    out = [TokenOut(address=ETH, name="Ether", symbol="ETH", decimals=18, native=True, dev=False,
                    faucet=dev and svc.faucet_account is not None, inOffers=False)]
    seen = {ETH}
    for row in dev_tokens(svc):
        seen.add(row.address)
        out.append(TokenOut(address=row.address, name=row.name, symbol=row.symbol, decimals=row.decimals, native=False,
                            dev=True, faucet=svc.faucet_account is not None, inOffers=row.address in in_offers))
    for addr in sorted(in_offers - seen):
        meta = metadata(svc, addr)
        out.append(TokenOut(
            address=addr,
            name=meta["name"] if isinstance(meta["name"], str) else None,
            symbol=meta["symbol"] if isinstance(meta["symbol"], str) else None,
            decimals=int(meta["decimals"]) if isinstance(meta["decimals"], int) else None,
            native=False, dev=False, faucet=False, inOffers=True,
        ))
    return TokenList(tokens=out, devToken=svc.dev_token if dev else None)
