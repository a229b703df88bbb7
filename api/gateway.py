"""The bridge's one door to the chain: simulate, build, sign-and-send, wait, decode.

Contract bindings, event decoding and revert decoding are ``ledger.client`` / ``ledger.errors``; this module
only orders the steps for an HTTP request and turns a decoded revert into an :class:`ApiError`. Chain access
is serialized by one lock (eth-tester is not thread-safe, and one lock also keeps per-sender nonces simple).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.contract.contract import ContractFunction

from ledger.chain import Chain
from ledger.errors import decode_exception

from .errors import ApiError, ChainUnavailable, revert_status
from .keys import sign_transaction

# Transactions broadcast by the current request whose receipt was not seen (see ``unconfirmed_broadcasts``).
_UNCONFIRMED: ContextVar[list[str] | None] = ContextVar("unconfirmed_broadcasts", default=None)


@contextmanager
def unconfirmed_broadcasts() -> Iterator[list[str]]:
    """Collect the hashes of transactions this request broadcast but never saw mined.

    After a failure they decide whether a retry may run the action again: if one of them may still be
    mined, running again could escrow twice, so the idempotency layer refuses instead."""
    hashes: list[str] = []
    token = _UNCONFIRMED.set(hashes)
    try:
        yield hashes
    finally:
        _UNCONFIRMED.reset(token)

T = TypeVar("T")


@dataclass(frozen=True)
class DecodedEvent:
    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class TxOutcome:
    tx_hash: str
    block_number: int
    status: int
    gas_used: int
    events: list[DecodedEvent] = field(default_factory=list)


def jsonable(value: Any) -> Any:
    """Event/struct values to JSON: bytes as 0x-hex, ints above 2**53 as decimal strings."""
    if isinstance(value, (bytes, bytearray, HexBytes)):
        return "0x" + bytes(value).hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**53) < value < 2**53 else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class Gateway:
    """Sends the transactions of managed accounts and of the relayer; relays wallet-signed ones."""

    def __init__(self, chain: Chain, client: Any, receipt_timeout_s: float = 60.0) -> None:
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.client = client
        self.lock = threading.RLock()
        self.receipt_timeout_s = receipt_timeout_s
        self.chain_id = int(self.w3.eth.chain_id)
        self._poll = 0.002 if chain.backend in ("memory", "anvil") else 0.5

    # --- decoding (delegated to ledger) -------------------------------------------------------------

    def revert_error(self, exc: BaseException) -> ApiError | None:
        """An ApiError for a contract revert, or None when ``exc`` is not a revert."""
        rev = decode_exception(exc)
        if rev is None:
            return None
        status, code = revert_status(rev.name)
        return ApiError(
            status,
            code,
            f"the contract refused: {rev.name}",
            details={"error": rev.name, "args": jsonable(rev.kwargs)},
        )

    def decode_logs(self, logs: list[Any]) -> list[DecodedEvent]:
        """The suite's events among ``logs`` (decoded by ``ledger.client``), with their block hash."""
        block_hashes = {
            (bytes(log["transactionHash"]), int(log["logIndex"])): "0x" + bytes(log["blockHash"]).hex() for log in logs
        }
        names = {
            self.client.registry.address: "registry",
            self.client.escrow.address: "escrow",
            self.client.reputation.address: "reputation",
        }
        return [
            DecodedEvent(
                contract=names.get(e.address, e.address),
                name=e.name,
                args=dict(e.args),
                block_number=e.block_number,
                block_hash=block_hashes[(bytes(e.tx_hash), e.log_index)],
                tx_hash="0x" + bytes(e.tx_hash).hex(),
                log_index=e.log_index,
            )
            for e in self.client.decode_logs(logs)
        ]

    # --- reads ----------------------------------------------------------------------------------------

    def view(self, read: Callable[[], T]) -> T:
        """Run a chain read (e.g. a ``LedgerClient`` view) under the lock; reverts become ApiError."""
        with self.lock:
            try:
                return read()
            except ApiError:
                raise
            except Exception as e:
                api = self.revert_error(e)
                if api is not None:
                    raise api from e
                raise _unavailable(e) from e

    # --- writes ---------------------------------------------------------------------------------------

    def simulate(self, fn: ContractFunction, sender: str, value: int = 0) -> None:
        """eth_call the action as ``sender``: a revert becomes an ApiError and nothing is sent."""
        with self.lock:
            try:
                fn.call({"from": sender, "value": value})
            except Exception as e:
                api = self.revert_error(e)
                if api is not None:
                    raise api from e
                raise _unavailable(e) from e

    def build(
        self,
        fn: ContractFunction,
        sender: str,
        value: int = 0,
        nonce: int | None = None,
        gas_limit: int | None = None,
    ) -> dict[str, Any]:
        """An unsigned transaction (gas estimated, nonce and fees filled) for ``sender`` to sign.

        With ``gas_limit`` (a known upper bound, e.g. for ``settleBatch``) the call is simulated once with
        ``eth_call`` instead of estimated: estimation re-executes the call several times (a binary search),
        which dominates the relayer's time for large batches. Unused gas is not charged."""
        with self.lock:
            try:
                # calldata encoded once (large batches make web3's encoder the slow part)
                call: dict[str, Any] = {
                    "from": sender,
                    "to": fn.address,
                    "data": fn._encode_transaction_data(),
                    "value": value,
                }
                # estimating (or simulating) executes the call: a revert surfaces here with its data
                if gas_limit is None:
                    gas = int(self.w3.eth.estimate_gas(call))  # type: ignore[arg-type]
                    gas += gas // 5 + 20_000
                else:
                    self.w3.eth.call({**call, "gas": gas_limit})  # type: ignore[arg-type]
                    gas = gas_limit
                tx: dict[str, Any] = {
                    **call,
                    "gas": gas,
                    "nonce": nonce if nonce is not None else self.w3.eth.get_transaction_count(sender, "pending"),
                    "chainId": self.chain_id,
                    **self._fees(),
                }
            except Exception as e:
                api = self.revert_error(e)
                if api is not None:
                    raise api from e
                raise _unavailable(e) from e
            return tx

    def transact(self, account: LocalAccount, fn: ContractFunction, value: int = 0) -> TxOutcome:
        """Simulate, sign with ``account``, send and wait for the receipt; a revert raises ApiError."""
        with self.lock:  # build (nonce) and broadcast together; the receipt is awaited without the lock
            tx = self.build(fn, account.address, value)
            raw, _ = sign_transaction(account, tx)
            h = self._broadcast(raw)
        return self._await(h)

    def send_raw(self, raw: bytes) -> TxOutcome:
        with self.lock:
            h = self._broadcast(raw)
        return self._await(h)

    def _broadcast(self, raw: bytes) -> str:
        try:
            h = self.w3.eth.send_raw_transaction(raw)
        except Exception as e:
            api = self.revert_error(e)
            if api is not None:
                raise api from e
            raise ApiError(422, "tx_rejected", f"the node refused the transaction: {e}") from e
        tx_hash = "0x" + bytes(h).hex()
        pending = _UNCONFIRMED.get()
        if pending is not None:
            pending.append(tx_hash)
        return tx_hash

    def _await(self, tx_hash: str) -> TxOutcome:
        outcome = self.wait(HexBytes(tx_hash))  # raises ChainUnavailable when no receipt comes: the hash stays pending
        pending = _UNCONFIRMED.get()
        if pending is not None and tx_hash in pending:
            pending.remove(tx_hash)
        return outcome

    def wait(self, tx_hash: Any) -> TxOutcome:
        """The receipt of ``tx_hash``, polled with the lock taken per poll only: a transaction waiting for its
        block (seconds on a real chain) does not hold up every other read and send."""
        deadline = time.monotonic() + self.receipt_timeout_s
        while True:
            with self.lock:
                try:
                    receipt = self.w3.eth.get_transaction_receipt(tx_hash)
                except TransactionNotFound:
                    receipt = None
                except Exception as e:
                    raise ChainUnavailable(f"no receipt for {HexBytes(tx_hash).hex()}: {e}") from e
            if receipt is not None:
                return self.outcome(receipt)
            if time.monotonic() >= deadline:
                raise ChainUnavailable(f"no receipt for {HexBytes(tx_hash).hex()} after {self.receipt_timeout_s:g} s")
            time.sleep(self._poll)

    def outcome(self, receipt: Any) -> TxOutcome:
        events = self.decode_logs(list(receipt["logs"]))
        # the client learns lease states from our own settlements without a log scan
        self.client.note_settlements(events)
        return TxOutcome(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            status=int(receipt["status"]),
            gas_used=int(receipt["gasUsed"]),
            events=events,
        )

    def send_eth(self, sender: LocalAccount, to: str, value: int) -> TxOutcome:
        with self.lock:
            tx = {
                "to": Web3.to_checksum_address(to),
                "value": value,
                "gas": 21_000,
                "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
                "chainId": self.chain_id,
                **self._fees(),
            }
            raw, _ = sign_transaction(sender, tx)
            h = self._broadcast(raw)
        return self._await(h)

    def _fees(self) -> dict[str, int]:
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas", 0) or 0)
        if base:
            tip = 10**9
            return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}
        return {"gasPrice": max(int(self.w3.eth.gas_price), 1)}


def _unavailable(e: BaseException) -> ApiError:
    text = str(e)
    if "afford" in text or "insufficient funds" in text.lower():
        return ApiError(402, "insufficient_funds", "the sender cannot pay for this transaction (value + gas)")
    return ChainUnavailable(f"chain call failed: {type(e).__name__}: {text[:300]}")

