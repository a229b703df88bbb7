"""Money that is not a lease's: balances and pull withdrawals, reputation, the dev faucet, and relaying a
transaction a wallet signed."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel

from ledger.chain.calls import Call
from ledger.chain.errors import ChainError
from ledger.chain.suite import LedgerChain
from ledger.chain.tx import decode_signed
from ledger.protocol.economics import ETH

from ..errors import ApiError, from_chain
from ..schemas import ActionOut
from .actions import Actor, outcome_out
from .caller import Caller
from ..chain_reads import ChainViews
from .idempotency import Answer, Idempotency, fingerprint
from .tokens import Tokens

MAX_FAUCET_WEI = 10**21


class Funds:
    def __init__(self, ledger: LedgerChain, views: ChainViews, actor: Actor, idempotency: Idempotency) -> None:
        self._calls = ledger.calls
        self._views = views
        self._actor = actor
        self._idem = idempotency

    def balance(self, address: str, token: str) -> dict[str, str]:
        """What ``address`` may withdraw from the escrow in ``token``, its wallet balance of that token, and
        its ETH balance (wei / token base units, as decimal strings)."""
        w = self._views.withdrawable(address, token)
        eth = self._actor.balance_of(ETH, address)
        wallet = eth if token == ETH else self._actor.balance_of(token, address)
        return {"address": address, "token": token, "withdrawableWei": str(w), "walletBalanceWei": str(wallet),
                "ethBalanceWei": str(eth)}

    def withdraw(self, caller: Caller, token: str, key: str | None, body: BaseModel) -> Answer:
        """Pull everything the caller may withdraw in ``token`` (earnings, refunds)."""
        call = self._calls.withdraw(token)
        return self._idem.run(caller.address, key, fingerprint("POST", "/v1/withdraw", body),
                              lambda: self._actor.act(caller, call))

    def reputation(self, address: str) -> dict[str, Any]:
        return self._views.reputation(address)


class Faucet:
    """Test funds on dev chains: ETH, or the dev token minted."""

    def __init__(self, ledger: LedgerChain, actor: Actor, idempotency: Idempotency, tokens: Tokens,
                 account: LocalAccount | None, default_wei: int) -> None:
        self._ledger = ledger
        self._actor = actor
        self._idem = idempotency
        self._tokens = tokens
        self._account = account
        self._default = default_wei

    def give(self, address: str, amount: int | None, token: str, key: str | None, body: BaseModel) -> Answer:
        amount = self._default if amount is None else amount
        if amount > MAX_FAUCET_WEI:
            raise ApiError(422, "validation_error", f"amountWei above {MAX_FAUCET_WEI}", field="amountWei")
        source = self._account
        if source is None or not self._tokens.dev_chain:
            raise ApiError(409, "faucet_disabled", "this chain has no funded dev account")
        if token != ETH and token not in self._tokens.dev_tokens():
            raise ApiError(422, "unknown_token", f"the faucet mints only the dev token (GET /v1/tokens), not {token}",
                           field="token")

        def action() -> ActionOut:
            try:
                if token == ETH:
                    return outcome_out(self._ledger.sender.send_eth(source, address, amount))
                out = outcome_out(self._actor.send(source, self._ledger.calls.mint(token, address, amount)))
            except ChainError as e:
                raise from_chain(e) from e
            out.result.update({"token": token, "amountWei": str(amount)})
            return out

        return self._idem.run(f"faucet:{address}", key, fingerprint("POST", "/v1/faucet", body), action)


class Relay:
    """Wallet users: relay a transaction they signed (built by any write endpoint with X-Wallet-Address)."""

    def __init__(self, ledger: LedgerChain, actor: Actor, idempotency: Idempotency, tokens: Tokens) -> None:
        self._ledger = ledger
        self._actor = actor
        self._idem = idempotency
        self._tokens = tokens

    def submit(self, raw_hex: str, key: str | None, body: BaseModel, after_write: Any) -> Answer:
        """Relay a signed transaction to one of the ledger's contracts (or an ERC-20 ``approve`` of the escrow
        or registry, on a token the ledger uses) and wait for it. The transaction is simulated first: a revert
        answers the mapped error and nothing is broadcast."""
        raw = bytes.fromhex(raw_hex[2:]) if len(raw_hex) % 2 == 0 else b""
        try:
            signed = decode_signed(raw)
        except ValueError as e:
            raise ApiError(422, "invalid_transaction", "rawTransaction is not a signed transaction",
                           field="rawTransaction") from e
        chain_id = self._ledger.chain_id
        allowed = {a.lower() for a in self._ledger.contracts.addresses}
        if signed.to.lower() not in allowed and not (signed.to and self._tokens.is_relayable_approve(signed.to, signed.data)):
            raise ApiError(422, "foreign_destination", "the bridge relays transactions to the ledger's contracts only "
                           "(and ERC-20 approvals of the escrow or registry on the tokens offers use)", field="rawTransaction")
        if (signed.chain_id or chain_id) != chain_id:
            raise ApiError(422, "wrong_chain", "the transaction is for another chain", field="rawTransaction")

        def action() -> ActionOut:
            call = Call(signed.to, signed.data, signed.value, "relay")
            with self._ledger.lock:
                try:
                    self._ledger.sender.simulate(call, signed.sender)
                except ChainError as e:
                    api = from_chain(e)
                    if api.status >= 500:  # not a revert: the node refuses to run it
                        raise ApiError(422, "tx_rejected", f"the transaction would fail: {e}") from e
                    raise api from e
                try:
                    outcome = self._ledger.sender.send_raw(raw)
                except ChainError as e:
                    raise from_chain(e) from e
            after_write()
            return outcome_out(outcome)

        return self._idem.run(f"tx:{signed.sender}", key, fingerprint("POST", "/v1/tx", body), action)
