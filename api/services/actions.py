"""Run a contract call for a caller: managed accounts are signed and sent here, wallet users get the
unsigned transaction. ERC-20 payments are approved first (exactly the amount) for managed accounts and
asked of wallets (409 ``approval_required``). Ids created by the call are read from its events."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ledger.chain.calls import Call
from ledger.chain.errors import ChainError, UndecodableAnswer
from ledger.chain.events import ChainEvent
from ledger.chain.reverts import ContractRevert
from ledger.chain.sender import TxOutcome, TxSender
from ledger.chain.suite import LedgerChain
from ledger.protocol.economics import ETH

from ..errors import ApiError, ChainUnavailable, Invalid, from_chain, jsonable, wide_json
from ..schemas import ActionOut, EthersTx, EventOut, UnsignedTx
from .caller import Caller

# event name -> (argument, result key) for ids an action creates
ID_EVENTS: dict[str, tuple[str, str]] = {
    "NodeRegistered": ("nodeId", "nodeId"),
    "OfferPublished": ("offerId", "offerId"),
    "LeaseOpened": ("leaseId", "leaseId"),
    "ProgrammeCreated": ("programmeId", "programmeId"),
    "VoucherGranted": ("voucherId", "voucherId"),
}
# custom errors of the ledger's own contracts: a refusal for these reasons is final, an approval won't help
SUITE_ERROR_PREFIXES = ("LeaseEscrow", "CapacityRegistry", "Reputation", "AccessControl", "EnforcedPause",
                        "ReentrancyGuard", "VoucherVault", "DynamicPricer")


class ApprovalRequired(ApiError):
    """409: a wallet user must approve ``spender`` for ``amount`` of ``token`` before this call. Not replayed
    under an Idempotency-Key: once the approval is mined, the same request (same key) goes through."""

    replayable = False

    def __init__(
        self, token: str, spender: str, amount: int, allowance: int, unsigned_tx: dict[str, Any], ethers_tx: dict[str, Any]
    ) -> None:
        super().__init__(
            409,
            "approval_required",
            f"this call pulls {amount} of ERC-20 {token}; the allowance of {spender} is {allowance}. Sign "
            "details.unsignedTx (approve), submit it with POST /v1/tx, then repeat this request",
            details={
                "token": token,
                "spender": spender,
                "amountWei": str(amount),
                "allowanceWei": str(allowance),
                "unsignedTx": unsigned_tx,
                "ethersTx": ethers_tx,
            },
        )


def events_out(events: Iterable[ChainEvent]) -> list[EventOut]:
    return [
        EventOut(
            contract=e.contract,
            name=e.name,
            args=wide_json(e.args),
            blockNumber=e.block_number,
            txHash=e.tx_hash,
            logIndex=e.log_index,
        )
        for e in events
    ]


def outcome_out(outcome: TxOutcome) -> ActionOut:
    result: dict[str, Any] = {}
    for e in outcome.events:
        if e.name in ID_EVENTS:
            arg, key = ID_EVENTS[e.name]
            if arg in e.args:
                result[key] = jsonable(e.args[arg])
    return ActionOut(
        status="mined",
        txHash=outcome.tx_hash,
        blockNumber=outcome.block_number,
        events=events_out(outcome.events),
        result=result,
    )


def unsigned_out(tx: dict[str, Any]) -> UnsignedTx:
    """The built transaction in the form eth-account signs as is (quantities 0x-hex, no nulls)."""
    fees = {k: hex(int(tx[k])) for k in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas") if k in tx}
    return UnsignedTx.model_validate({
        "to": str(tx["to"]),
        "data": str(tx["data"]) if str(tx["data"]).startswith("0x") else "0x" + str(tx["data"]),
        "value": hex(int(tx.get("value", 0))),
        "gas": hex(int(tx["gas"])),
        "nonce": int(tx["nonce"]),
        "chainId": int(tx["chainId"]),
        "type": 0 if "gasPrice" in fees else 2,
        "from": str(tx["from"]),
        **fees,
    })


def ethers_out(utx: UnsignedTx) -> EthersTx:
    """The same transaction as ethers v6 signs it (``gasLimit`` for ``gas``)."""
    d = utx.model_dump(by_alias=True)
    d["gasLimit"] = d.pop("gas")
    return EthersTx.model_validate(d)


class Actor:
    """Sends (managed) or prepares (wallet) the calls of every write endpoint.

    ``after_write`` runs after a managed call was mined (the bridge indexes it at once when no confirmations
    are awaited, so reads see their own writes)."""

    def __init__(
        self,
        ledger: LedgerChain,
        after_write: Callable[[], None],
        public_sender: LocalAccount | None = None,
        shared_lock: Callable[[str], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.ledger = ledger
        self._shared_lock = shared_lock  # a lock every bridge on the database sees (``Store.locks.hold``)
        self._after_write = after_write
        self._public_sender = public_sender  # pays gas for permissionless calls made without an account
        self._pay_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._pay_locks_guard = threading.Lock()

    # --- plain calls -------------------------------------------------------------------------------------

    def send(self, account: LocalAccount, call: Call) -> TxOutcome:
        """Simulate, sign, send and wait: chain errors become API errors."""
        try:
            return self.ledger.sender.send(account, call)
        except ChainError as e:
            raise from_chain(e) from e

    def unsigned(self, sender: str, call: Call) -> UnsignedTx:
        try:
            return unsigned_out(self.ledger.sender.build(call, sender))
        except ChainError as e:
            raise from_chain(e) from e

    def simulate(self, call: Call, sender: str) -> None:
        try:
            self.ledger.sender.simulate(call, sender)
        except ChainError as e:
            raise from_chain(e) from e

    def act(self, caller: Caller, call: Call) -> ActionOut:
        """Managed caller: simulate, sign, send, wait, index. Wallet caller: the unsigned transaction."""
        caller.ensure_writer()
        if caller.account is None:
            utx = self.unsigned(caller.address, call)
            return ActionOut(status="unsigned", unsignedTx=utx, ethersTx=ethers_out(utx))
        outcome = self.send(caller.account, call)
        self._after_write()
        return outcome_out(outcome)

    def act_public(self, caller: Caller | None, call: Call) -> ActionOut:
        """:meth:`act` for a call the contract lets anyone make (release earnings, expire a lease): without an
        account the bridge sends it and pays the gas, after a simulation shows it goes through (a call that
        would revert costs nothing)."""
        if caller is not None:
            return self.act(caller, call)
        if self._public_sender is None:
            raise ApiError(401, "unauthorized", "this bridge sends no anonymous calls: send an API key or X-Wallet-Address")
        self.simulate(call, self._public_sender.address)
        outcome = self.send(self._public_sender, call)
        self._after_write()
        return outcome_out(outcome)

    # --- ERC-20 payments ---------------------------------------------------------------------------------

    def pay_lock(self, account: str, token: str, spender: str) -> threading.Lock:
        """One lock per (managed account, ERC-20, spender): a payment sets the allowance to exactly its
        amount and then spends it, so two payments of one account must not interleave."""
        key = (account.lower(), token.lower(), spender.lower())
        with self._pay_locks_guard:
            return self._pay_locks.setdefault(key, threading.Lock())

    @contextmanager
    def paying(self, account: str, token: str, spender: str) -> Iterator[None]:
        """:meth:`pay_lock`, and the same lock across the bridges sharing the database."""
        name = "pay:" + ":".join((account.lower(), token.lower(), spender.lower()))
        with self.pay_lock(account, token, spender), (self._shared_lock(name) if self._shared_lock else nullcontext()):
            yield

    def act_paying(self, caller: Caller, call: Call, token: str, spender: str, amount: int) -> ActionOut:
        """:meth:`act` for a call that pays ``amount`` of ``token`` to ``spender`` (the escrow or the registry):
        ETH goes as the transaction's value (``call.value``). An ERC-20 is pulled by the contract: for a managed
        account the bridge first approves ``spender`` for exactly ``amount`` (nothing when the allowance already
        is exactly that: a retry whose approval was mined), then sends the call; if the contract refuses the
        call, the approval is set back to 0. A wallet user without the allowance gets 409
        ``approval_required`` with the unsigned approve; with it, the unsigned call."""
        if token == ETH:
            return self.act(caller, call)
        caller.ensure_writer()
        if caller.account is None:
            self.prepare_pull(caller, call, token, spender, amount)
            return self.act(caller, call)
        with self.paying(caller.account.address, token, spender):
            current = self.prepare_pull(caller, call, token, spender, amount)
            approvals = self.approve_exact(caller.account, token, spender, amount, current)
            try:
                out = self.act(caller, call)
            except ApiError as e:
                if approvals and e.status < 500:  # refused, nothing pulled: do not leave the approval standing
                    self.approve_exact(caller.account, token, spender, 0, amount)
                raise
        out.result["approveTxHashes"] = [o.tx_hash for o in approvals]
        return out

    def token_read(self, token: str, read: Callable[[], Any]) -> Any:
        """An ERC-20 view: 422 ``not_a_token`` (field ``token``) when ``token`` has no code or does not answer
        as an ERC-20, 503 when the chain does not answer."""
        try:
            code = self.ledger.read.code(token)
        except ChainError as e:
            raise ChainUnavailable(f"chain call failed: {e}") from e
        if not code:
            raise Invalid(f"{token} is not a contract, so not an ERC-20", field="token", code="not_a_token")
        try:
            return read()
        except ContractRevert as e:
            raise Invalid(f"{token} does not answer as an ERC-20", field="token", code="not_a_token") from e
        except UndecodableAnswer as e:
            raise Invalid(f"{token} does not answer as an ERC-20", field="token", code="not_a_token") from e
        except ChainError as e:
            raise ChainUnavailable(f"chain call failed: {e}") from e

    def balance_of(self, token: str, account: str) -> int:
        """ETH (token == address(0)) or ERC-20 balance of ``account``'s wallet."""
        account = to_checksum_address(account)
        if token == ETH:
            try:
                return self.ledger.read.eth_balance(account)
            except ChainError as e:
                raise from_chain(e) from e
        return int(self.token_read(token, lambda: self.ledger.read.erc20_balance(token, account)))

    def allowance(self, token: str, owner: str, spender: str) -> int:
        return int(self.token_read(token, lambda: self.ledger.read.erc20_allowance(token, owner, spender)))

    def prepare_pull(self, caller: Caller, call: Call, token: str, spender: str, amount: int) -> int:
        """Checks before anything is signed for a call that pulls ``amount`` of ERC-20 ``token`` from the
        caller: the wallet holds enough (402), the ledger itself would accept the call (its refusal is raised;
        the token's refusal for want of allowance is expected), and, for a wallet user, the allowance is there
        (else :class:`ApprovalRequired`). Returns the current allowance."""
        held = self.balance_of(token, caller.address)
        if held < amount:
            raise ApiError(402, "insufficient_funds", f"this call pulls {amount} of ERC-20 {token}; the wallet holds {held}",
                           details={"token": token, "amountWei": str(amount), "balanceWei": str(held)})
        current = self.allowance(token, caller.address, spender)
        try:
            self.simulate(call, caller.address)
        except ApiError as e:
            name = str(e.details.get("error", ""))
            if current >= amount or any(name.startswith(p) for p in SUITE_ERROR_PREFIXES) or e.status >= 500:
                raise
        if caller.account is None and current < amount:
            tx = self.unsigned(caller.address, self.ledger.calls.approve(token, spender, amount))
            raise ApprovalRequired(
                token, spender, amount, current, tx.model_dump(mode="json", by_alias=True),
                ethers_out(tx).model_dump(mode="json", by_alias=True),
            )  # fmt: skip
        return current

    def approve_exact(self, account: LocalAccount, token: str, spender: str, amount: int, current: int) -> list[TxOutcome]:
        """Make ``account``'s allowance for ``spender`` exactly ``amount`` (managed accounts). Nothing is sent
        when it already is (a retried request whose approval was mined); a different non-zero allowance is
        reset to 0 first (tokens such as USDT refuse a non-zero to non-zero change)."""
        if current == amount:
            return []
        calls = self.ledger.calls
        sent: list[TxOutcome] = []
        with TxSender.preparation():  # an approval to an exact amount: repeating it is harmless
            if current != 0 and amount != 0:
                sent.append(self.send(account, calls.approve(token, spender, 0)))
            sent.append(self.send(account, calls.approve(token, spender, amount)))
        return sent
