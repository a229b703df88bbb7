"""The one transaction sender: simulate, build, sign, broadcast, wait, decode. The bridge (managed accounts,
the relayer, the faucet, wallet relays), the demo, deployment and the tests all send through it.

Chain access is serialized by one lock shared with the reader (eth-tester is not thread-safe; one lock also
keeps per-sender nonces simple): a transaction is built (nonce) and broadcast under the lock, and its
receipt is polled with the lock taken per poll only, so a block being mined does not hold up every read.

Failures, in one vocabulary (``ledger.chain.errors``): a contract's refusal is
:class:`~ledger.chain.reverts.ContractRevert` (decoded); a node that refuses the transaction is
:class:`TxRejected` (:class:`InsufficientFunds` when value + gas cannot be paid); no answer or no receipt in
time is :class:`ChainUnavailable` (with the hash when it was broadcast: its outcome is unknown).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound

from .calls import Call
from .errors import ChainError, ChainUnavailable, InsufficientFunds, NoKey, TxRejected
from .events import ChainEvent, EventDecoder
from .reverts import ContractRevert, TransactionReverted, decode_exception
from .signing import account as account_of_key
from .signing import sign_transaction



@dataclass
class Broadcasts:
    """Transactions broadcast in a context (see ``TxSender.track_broadcasts``): every one (``sent``, in order),
    those whose receipt was not seen (``unconfirmed``), and the ``main`` ones: all but those broadcast inside
    :meth:`TxSender.preparation` (an ERC-20 approval: repeating it changes nothing). ``on_sent`` hears each
    main hash as soon as it is out."""

    sent: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    main: list[str] = field(default_factory=list)
    on_sent: Callable[[str], None] | None = None
    preparing: bool = False


_TRACKED: ContextVar[Broadcasts | None] = ContextVar("tracked_broadcasts", default=None)

Signer = LocalAccount | str


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """A mined transaction: its hash (0x), block, status (1 = success), gas and decoded events."""

    tx_hash: str
    block_number: int
    status: int
    gas_used: int
    events: tuple[ChainEvent, ...] = field(default_factory=tuple)

    def named(self, name: str) -> list[ChainEvent]:
        return [e for e in self.events if e.name == name]

    def event(self, name: str) -> ChainEvent:
        """The first event called ``name``; raises :class:`ChainError` if there is none."""
        for e in self.events:
            if e.name == name:
                return e
        raise ChainError(f"transaction emitted no {name} event (got {[e.name for e in self.events]})")


def _with(params: Any, **more: Any) -> Any:
    """``params`` with more fields (web3 types transaction dicts as TypedDicts; these are built here)."""
    out: Any = {**params, **more}
    return out


def _is_funds_error(e: BaseException) -> bool:
    text = str(e).lower()
    return "insufficient funds" in text or "afford" in text or "enough balance" in text


class TxSender:
    """Sends transactions of local keys. ``keys`` maps addresses to private keys for senders given by address
    (dev accounts); a ``LocalAccount`` can always be passed instead.

    ``estimate``: estimate each transaction's gas (+20 % and 20k); when False (the in-process chain, where an
    estimate replays the call ~15 times) the call is simulated once and sent with ``fixed_gas`` (only the gas
    used is charged). ``on_events`` hears every decoded receipt (the lease-state tracker learns settlements).

    ``nonce_guard(address)``, when set, is held around choosing a sender's nonce and broadcasting (taken before
    the chain lock): processes sharing a key (several bridges on one database) never pick the same nonce.
    """

    FIXED_GAS = 12_000_000

    def __init__(
        self,
        w3: Web3,
        decoder: EventDecoder,
        lock: Any,
        *,
        keys: Mapping[str, bytes] | None = None,
        receipt_timeout_s: float = 60.0,
        poll_s: float = 0.01,
        estimate: bool = True,
        on_events: Callable[[Sequence[ChainEvent]], None] | None = None,
    ) -> None:
        self.w3 = w3
        self.decoder = decoder
        self.lock = lock
        self.receipt_timeout_s = receipt_timeout_s
        self.poll_s = poll_s
        self.estimate = estimate
        self.on_events = on_events
        self._keys = {to_checksum_address(a): bytes(k) for a, k in (keys or {}).items()}
        self.nonce_guard: Callable[[str], AbstractContextManager[Any]] | None = None
        with lock:
            self.chain_id = int(w3.eth.chain_id)

    # --- who signs --------------------------------------------------------------------------------------

    def signer(self, who: Signer) -> LocalAccount:
        if not isinstance(who, str):
            return who
        addr = to_checksum_address(who)
        key = self._keys.get(addr)
        if key is None:
            raise NoKey(f"no key for {addr} in this process")
        return account_of_key(key)

    def guard(self, sender: str) -> AbstractContextManager[Any]:
        """The cross-process guard of ``sender``'s nonce (nothing when none is set)."""
        return self.nonce_guard(to_checksum_address(sender)) if self.nonce_guard is not None else nullcontext()

    # --- building ---------------------------------------------------------------------------------------

    def _call_params(self, call: Call, sender: str) -> Any:
        return {"from": to_checksum_address(sender), "to": call.to, "data": "0x" + call.data.hex(), "value": call.value}

    def simulate(self, call: Call, sender: str) -> None:
        """``eth_call`` the call as ``sender`` on the pending block (the next block's time: a call that waits for
        a deadline is judged as a transaction sent now would be): a revert raises :class:`ContractRevert`,
        nothing is sent."""
        with self.lock:
            try:
                self.w3.eth.call(self._call_params(call, sender), "pending")
            except Exception as e:
                raise self._failure(e) from e

    def build(self, call: Call, sender: str, *, nonce: int | None = None, gas_limit: int | None = None) -> dict[str, Any]:
        """An unsigned transaction (gas, nonce, fees, chain id filled) for ``sender`` to sign.

        With ``gas_limit`` (a known upper bound, e.g. for ``settleBatch``) the call is simulated once with
        ``eth_call`` instead of estimated: estimation re-executes the call several times (a binary search)."""
        with self.lock:
            params = self._call_params(call, sender)
            try:
                if gas_limit is not None or not self.estimate:
                    gas = gas_limit if gas_limit is not None else self.FIXED_GAS
                    self.w3.eth.call(_with(params, gas=gas), "pending")
                else:
                    estimated = int(self.w3.eth.estimate_gas(params, "pending"))
                    gas = estimated + estimated // 5 + 20_000
                tx: dict[str, Any] = {
                    **params,
                    "gas": gas,
                    "nonce": nonce if nonce is not None else int(self.w3.eth.get_transaction_count(params["from"], "pending")),
                    "chainId": self.chain_id,
                    **self._fees(),
                }
            except Exception as e:
                raise self._failure(e) from e
            return tx

    def _fees(self) -> dict[str, int]:
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas", 0) or 0)
        if base:
            tip = 10**9
            return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}
        return {"gasPrice": max(int(self.w3.eth.gas_price), 1)}

    # --- sending ----------------------------------------------------------------------------------------

    def send(self, who: Signer, call: Call, *, gas_limit: int | None = None) -> TxOutcome:
        """Simulate, sign, broadcast and wait; raises :class:`ContractRevert` on a refusal (nothing sent) and
        :class:`TransactionReverted` when the mined transaction failed anyway."""
        signer = self.signer(who)
        # build (nonce) and broadcast together; the receipt is awaited without the lock
        with self.guard(signer.address), self.lock:
            tx = self.build(call, signer.address, gas_limit=gas_limit)
            raw, _ = sign_transaction(signer, tx)
            tx_hash = self.broadcast(raw)
        return self._checked(self.wait(tx_hash))

    def send_eth(self, who: Signer, to: str, value: int) -> TxOutcome:
        signer = self.signer(who)
        with self.guard(signer.address), self.lock:
            try:
                tx = {
                    "to": to_checksum_address(to),
                    "value": value,
                    "gas": 21_000,
                    "nonce": int(self.w3.eth.get_transaction_count(signer.address, "pending")),
                    "chainId": self.chain_id,
                    **self._fees(),
                }
            except Exception as e:
                raise self._failure(e) from e
            raw, _ = sign_transaction(signer, tx)
            tx_hash = self.broadcast(raw)
        return self._checked(self.wait(tx_hash))

    def sign_filler(self, signer: LocalAccount, nonce: int) -> bytes:
        """A signed empty self-transfer at ``nonce`` with doubled fees: it fills a nonce gap, or replaces a
        stuck transaction of that nonce."""
        with self.lock:
            try:
                fees = {k: 2 * v for k, v in self._fees().items()}
            except Exception as e:
                raise self._failure(e) from e
        tx = {"to": signer.address, "value": 0, "gas": 21_000, "nonce": nonce, "chainId": self.chain_id, **fees}
        raw, _ = sign_transaction(signer, tx)
        return raw

    def send_raw(self, raw: bytes) -> TxOutcome:
        """Broadcast a transaction someone signed, and wait for it."""
        with self.lock:
            tx_hash = self.broadcast(raw)
        return self.wait(tx_hash)

    def deploy(self, who: Signer, artifact: Mapping[str, Any], args: Sequence[Any]) -> tuple[str, TxOutcome]:
        """Deploy a contract from its artifact (ABI + bytecode); returns its address and the outcome."""
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        data = factory.constructor(*args).data_in_transaction
        signer = self.signer(who)
        with self.guard(signer.address), self.lock:
            params: Any = {"from": signer.address, "data": data, "value": 0}
            try:
                if self.estimate:
                    est = int(self.w3.eth.estimate_gas(params))
                    gas = est + est // 5 + 20_000
                else:
                    gas = self.FIXED_GAS
                    self.w3.eth.call(_with(params, gas=gas), "pending")
                tx = {
                    **params,
                    "gas": gas,
                    "nonce": int(self.w3.eth.get_transaction_count(signer.address, "pending")),
                    "chainId": self.chain_id,
                    **self._fees(),
                }
            except Exception as e:
                raise self._failure(e) from e
            raw, _ = sign_transaction(signer, tx)
            tx_hash = self.broadcast(raw)
        outcome = self._checked(self.wait(tx_hash))
        with self.lock:
            receipt = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        address = receipt.get("contractAddress")
        if not address:
            raise ChainError(f"deploying {artifact.get('contractName')} produced no contract")
        return to_checksum_address(address), outcome

    def broadcast(self, raw: bytes) -> str:
        """``eth_sendRawTransaction``; the hash is remembered by :meth:`track_broadcasts` until its receipt
        is seen. Raises :class:`ContractRevert` / :class:`TxRejected` when the node refuses it."""
        with self.lock:
            try:
                h = self.w3.eth.send_raw_transaction(raw)
            except Exception as e:
                rev = decode_exception(e)
                if rev is not None:
                    raise rev from e
                if _is_funds_error(e):
                    raise InsufficientFunds(f"the sender cannot pay for this transaction: {e}") from e
                raise TxRejected(f"the node refused the transaction: {e}") from e
        tx_hash = "0x" + bytes(h).hex()
        tracked = _TRACKED.get()
        if tracked is not None:
            tracked.sent.append(tx_hash)
            tracked.unconfirmed.append(tx_hash)
            if not tracked.preparing:
                tracked.main.append(tx_hash)
                if tracked.on_sent is not None:
                    tracked.on_sent(tx_hash)
        return tx_hash

    @staticmethod
    @contextmanager
    def preparation() -> Iterator[None]:
        """Transactions broadcast in this block are preparations (safe to repeat), not an action's main ones."""
        tracked = _TRACKED.get()
        if tracked is None:
            yield
            return
        before, tracked.preparing = tracked.preparing, True
        try:
            yield
        finally:
            tracked.preparing = before

    @staticmethod
    @contextmanager
    def untracked() -> Iterator[None]:
        """Broadcasts in this block belong to no request (the relayer's settlements during a close)."""
        token = _TRACKED.set(None)
        try:
            yield
        finally:
            _TRACKED.reset(token)

    @staticmethod
    @contextmanager
    def track_broadcasts(on_sent: Callable[[str], None] | None = None) -> Iterator[Broadcasts]:
        """Collect the hashes of transactions broadcast in this context (all, and those never seen mined).

        After a failure they decide whether a retry may run an action again: once one was broadcast, running
        again could pay twice; its receipt says what happened."""
        tracked = Broadcasts(on_sent=on_sent)
        token = _TRACKED.set(tracked)
        try:
            yield tracked
        finally:
            _TRACKED.reset(token)

    # --- receipts ---------------------------------------------------------------------------------------

    def receipt(self, tx_hash: str) -> Any:
        """The receipt, or None when the transaction is not mined (or the node does not answer)."""
        with self.lock:
            try:
                return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except Exception:
                return None

    def wait(self, tx_hash: str, timeout_s: float | None = None) -> TxOutcome:
        """The outcome of ``tx_hash``, polled with the lock taken per poll only. Raises
        :class:`ChainUnavailable` (carrying the hash) when no receipt comes in time."""
        deadline = time.monotonic() + (self.receipt_timeout_s if timeout_s is None else timeout_s)
        while True:
            with self.lock:
                try:
                    receipt = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
                except TransactionNotFound:
                    receipt = None
                except Exception as e:
                    raise ChainUnavailable(f"no receipt for {tx_hash}: {e}", tx_hash) from e
            if receipt is not None:
                outcome = self.outcome(receipt)
                tracked = _TRACKED.get()
                if tracked is not None and tx_hash in tracked.unconfirmed:
                    tracked.unconfirmed.remove(tx_hash)
                return outcome
            if time.monotonic() >= deadline:
                raise ChainUnavailable(f"no receipt for {tx_hash} after {self.receipt_timeout_s:g} s", tx_hash)
            time.sleep(self.poll_s)

    def outcome(self, receipt: Any) -> TxOutcome:
        events = tuple(self.decoder.decode(list(receipt["logs"])))
        if self.on_events is not None:
            self.on_events(events)
        return TxOutcome(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            status=int(receipt["status"]),
            gas_used=int(receipt["gasUsed"]),
            events=events,
        )

    @staticmethod
    def _checked(outcome: TxOutcome) -> TxOutcome:
        if outcome.status != 1:
            raise TransactionReverted("TransactionReverted", (bytes.fromhex(outcome.tx_hash[2:]),), b"", ("txHash",))
        return outcome

    @staticmethod
    def _failure(e: BaseException) -> ChainError:
        """The chain-layer error an exception from web3 / eth-tester stands for."""
        if isinstance(e, ChainError):
            return e
        rev = decode_exception(e)
        if rev is not None:
            return rev
        if _is_funds_error(e):
            return InsufficientFunds("the sender cannot pay for this transaction (value + gas)")
        return ChainUnavailable(f"chain call failed: {type(e).__name__}: {str(e)[:300]}")


__all__ = ["Broadcasts", "ContractRevert", "Signer", "TxOutcome", "TxSender", "TransactionReverted"]
