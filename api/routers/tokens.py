"""Tokens the ledger is paid in: ETH, the dev token (memory/anvil) and every ERC-20 an offer is priced in."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..deps import TokensDep
from ..errors import READ_RESPONSES

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
def list_tokens(tokens: TokensDep) -> TokenList:
    """ETH, the dev token and the ERC-20s offers are priced in. Paying in an ERC-20 needs an approval of the
    escrow: the bridge sends it for managed accounts; wallets get it to sign (409 ``approval_required``)."""
    out = [
        TokenOut(address=t.address, name=t.name, symbol=t.symbol, decimals=t.decimals, native=t.native, dev=t.dev,
                 faucet=t.faucet, inOffers=t.in_offers)
        for t in tokens.listing()
    ]
    return TokenList(tokens=out, devToken=tokens.dev_token if tokens.dev_chain else None)
