"""Tokens the ledger is paid in: ETH, the dev token (memory/anvil) and every ERC-20 an offer is priced in.

Offers may be priced in ETH (``address(0)``) or in an ERC-20. The escrow pulls an ERC-20 with
``transferFrom``, so the payer must first ``approve`` the escrow (leases) or the registry (stake): see
``api.services.actions``. On the dev backends (memory, anvil) the bridge deploys one test token
(``MockERC20``, anyone may mint) at start-up and records it in the store; the faucet mints it. Never on
``rpc``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ledger.chain.compiler import load_artifact
from ledger.chain.suite import LedgerChain
from ledger.protocol.economics import ETH

from ..errors import Invalid
from ..store import Store
from .actions import Actor

log = logging.getLogger("api.tokens")

DEV_BACKENDS = ("memory", "anvil")
DEV_TOKEN_NAME = "Compute Ledger Test USD"
DEV_TOKEN_SYMBOL = "tUSD"
DEV_TOKEN_DECIMALS = 18
APPROVE_SELECTOR = bytes.fromhex("095ea7b3")  # approve(address,uint256)


@dataclass(frozen=True)
class TokenInfo:
    address: str
    name: str | None
    symbol: str | None
    decimals: int | None
    native: bool
    dev: bool
    faucet: bool
    in_offers: bool


class Tokens:
    """Token metadata, the dev token, and which approvals a wallet may relay."""

    def __init__(
        self, ledger: LedgerChain, store: Store, actor: Actor, *, dev_chain: bool, faucet_account: LocalAccount | None
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._actor = actor
        self.dev_chain = dev_chain
        self.faucet_account = faucet_account
        self.dev_token: str | None = None

    def ensure_dev_token(self) -> str | None:
        """The dev token's address, deploying it (from the faucet account) when the store has none that still
        has code on this chain. None on rpc or without a funded dev account."""
        if not self.dev_chain or self.faucet_account is None:
            return None
        chain_id = self._ledger.chain_id
        for row in self._store.tokens.dev_tokens(chain_id):
            if self._ledger.read.code(row.address):
                self.dev_token = row.address
                return row.address
        address, _ = self._ledger.sender.deploy(
            self.faucet_account, load_artifact("MockERC20"), [DEV_TOKEN_NAME, DEV_TOKEN_SYMBOL, DEV_TOKEN_DECIMALS]
        )
        self._store.tokens.replace_dev_token(chain_id, address, DEV_TOKEN_NAME, DEV_TOKEN_SYMBOL, DEV_TOKEN_DECIMALS)
        log.info("deployed the dev token %s (%s) at %s", DEV_TOKEN_NAME, DEV_TOKEN_SYMBOL, address)
        self.dev_token = address
        return address

    def dev_tokens(self) -> list[str]:
        if not self.dev_chain:
            return []
        return [r.address for r in self._store.tokens.dev_tokens(self._ledger.chain_id)]

    def offer_tokens(self) -> list[str]:
        """ERC-20s some indexed offer is priced in."""
        return [t for t in self._store.index.offer_tokens() if t != ETH]

    def metadata(self, token: str) -> dict[str, Any]:
        """name, symbol, decimals of an ERC-20 (None for what the contract does not answer)."""
        out: dict[str, Any] = {}
        for key in ("name", "symbol", "decimals"):
            try:
                out[key] = self._actor.token_read(token, lambda k=key: self._ledger.read.erc20_field(token, k))  # type: ignore[misc]
            except Invalid:
                out[key] = None
        return out

    def listing(self) -> list[TokenInfo]:
        """ETH, the dev token and the ERC-20s offers are priced in."""
        in_offers = set(self.offer_tokens())
        faucet = self.dev_chain and self.faucet_account is not None
        out = [TokenInfo(ETH, "Ether", "ETH", 18, native=True, dev=False, faucet=faucet, in_offers=False)]
        seen = {ETH}
        for row in self._store.tokens.dev_tokens(self._ledger.chain_id) if self.dev_chain else []:
            seen.add(row.address)
            out.append(TokenInfo(row.address, row.name, row.symbol, row.decimals, native=False, dev=True,
                                 faucet=self.faucet_account is not None, in_offers=row.address in in_offers))
        for addr in sorted(in_offers - seen):
            meta = self.metadata(addr)
            out.append(TokenInfo(
                addr,
                meta["name"] if isinstance(meta["name"], str) else None,
                meta["symbol"] if isinstance(meta["symbol"], str) else None,
                int(meta["decimals"]) if isinstance(meta["decimals"], int) else None,
                native=False, dev=False, faucet=False, in_offers=True,
            ))
        return out

    def is_relayable_approve(self, to: str, data: bytes) -> bool:
        """A wallet's ``approve(escrow|registry, amount)`` on a token the ledger uses (dev token or an offer's)."""
        if len(data) != 68 or data[:4] != APPROVE_SELECTOR or any(data[4:16]):
            return False
        spender = to_checksum_address("0x" + data[16:36].hex())
        if spender not in (self._ledger.deployment.escrow, self._ledger.deployment.registry):
            return False
        known = {t.lower() for t in self.dev_tokens()} | {t.lower() for t in self.offer_tokens()}
        return to.lower() in known
