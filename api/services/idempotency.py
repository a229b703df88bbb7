"""Idempotency-Key handling for POSTs that move money: a retried request answers the first result, on
whichever bridge it lands (several bridges share one database), and is never run again once a transaction of
the first attempt may have been mined.

The first request with a key inserts a ``pending`` record owned by its bridge process (the primary key makes
a concurrent twin find it). Every transaction the request broadcasts (except preparations such as an ERC-20
approval, which are safe to repeat) is written into the record the moment it goes out. Then:

* success: the outcome (2xx or 4xx) is stored and replayed byte for byte;
* a failure before anything was broadcast (or a refusal the caller can lift, ``ApiError.replayable`` False)
  deletes the record: the client may retry with the same key;
* a failure after a broadcast (node timeout, a crash of the index write, anything): the receipts decide. The
  last transaction mined: its outcome is the answer (stored, replayed: no 5xx after a mined transaction);
  reverted: the contract's refusal; not seen yet: the record stays ``sent`` and a retry answers 409
  ``idempotency_tx_unconfirmed`` until a receipt decides.

A retry (same principal and key) meanwhile: ``done`` is replayed; ``pending`` on a live bridge is waited for
(up to ``wait_s``, then 409 ``idempotency_in_progress``); ``pending`` of a bridge process that stopped or
went silent is ``abandoned``: answered from its transactions' receipts when it broadcast any, else 409
``idempotency_abandoned`` (never "in progress" forever, never run again blindly). The same key with a
different body is refused (409 ``idempotency_key_reused``). Chain errors raised by the action are mapped to
API errors here (``api.errors.from_chain``) before that decision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from dataclasses import dataclass

from pydantic import BaseModel

from ledger.chain.errors import ChainError
from ledger.chain.reverts import TransactionReverted
from ledger.chain.sender import TxOutcome, TxSender
from ledger.chain.suite import LedgerChain

from ..errors import ApiError, Conflict, Invalid, from_chain
from ..store import Store
from .actions import outcome_out

log = logging.getLogger("api.idempotency")
MAX_KEY_LEN = 128


@dataclass(frozen=True)
class Answer:
    """What a money-moving request answers: an HTTP status and the JSON body, byte for byte the same when a
    retry replays the first answer (``replayed``)."""

    status: int
    body: bytes
    replayed: bool = False


def fingerprint(method: str, path: str, body: BaseModel | None) -> str:
    payload = f"{method} {path}\n" + (body.model_dump_json() if body is not None else "")
    return "0x" + hashlib.sha256(payload.encode()).hexdigest()


class Idempotency:
    """Runs money-moving actions at most once per (principal, Idempotency-Key)."""

    def __init__(self, store: Store, ledger: LedgerChain | None = None, *, wait_s: float = 20.0,
                 receipt_wait_s: float = 2.0) -> None:
        self._records = store.idempotency
        self._ledger = ledger
        self.wait_s = wait_s  # how long a retry waits for its twin running on another bridge
        self._running: set[tuple[str, str]] = set()  # (principal, key) of requests running in this process
        self._running_lock = threading.Lock()
        self.receipt_wait_s = receipt_wait_s  # how long a failed attempt looks for its transactions' receipts

    def abandon_pending(self) -> int:
        """At start-up: every ``pending`` record of a bridge process that is gone is a request a crash cut off.
        Marks them ``abandoned``; returns how many."""
        return self._records.abandon_pending()

    def run(
        self,
        principal: str,
        key: str | None,
        request_hash: str,
        action: Callable[[], BaseModel],
        status_code: int = 200,
    ) -> Answer:
        """Run ``action`` once per (principal, key); without a key, just run it."""
        if key is None:
            return Answer(status_code, _dump(_run(action).model_dump(mode="json", by_alias=True)))
        if not key or len(key) > MAX_KEY_LEN or not all("!" <= c <= "~" for c in key):
            raise Invalid(f"Idempotency-Key must be 1..{MAX_KEY_LEN} printable characters", field="Idempotency-Key")
        first, rec = self._records.begin(principal, key, request_hash)
        if not first:
            return self._retry(principal, key, request_hash, status_code)
        with self._running_lock:
            self._running.add((principal, key))
        try:
            return self._first(principal, key, action, status_code)
        finally:
            with self._running_lock:
                self._running.discard((principal, key))

    def _first(self, principal: str, key: str, action: Callable[[], BaseModel], status_code: int) -> Answer:
        with TxSender.track_broadcasts(on_sent=lambda h: self._records.add_tx(principal, key, h)) as sent:
            try:
                result = _run(action)
            except ApiError as e:
                if e.status < 500 and e.replayable:
                    self._records.finish(principal, key, e.status, _dump(e.body()))
                    raise
                if not sent.main:
                    self._records.forget(principal, key)
                    raise
                answer = self._from_chain(principal, key, sent.main, status_code, wait_s=self.receipt_wait_s)
                if answer is None:
                    raise
                log.warning("Idempotency-Key %s: %s after its transaction was mined; answered from the receipt",
                            key, e.code)
                return answer
            except BaseException:
                if sent.main:
                    self._records.mark_sent(principal, key, json.dumps(sent.main).encode())
                else:
                    self._records.forget(principal, key)
                raise
        body = _dump(result.model_dump(mode="json", by_alias=True))
        self._records.finish(principal, key, status_code, body)
        return Answer(status_code, body)

    # --- a retry -------------------------------------------------------------------------------------

    def _retry(self, principal: str, key: str, request_hash: str, status_code: int) -> Answer:
        deadline = time.monotonic() + self.wait_s
        while True:
            rec = self._records.get(principal, key)
            if rec is None:  # deleted between our insert and read: the first attempt failed; ask for a retry
                raise Conflict("idempotency_in_progress", "a request with this Idempotency-Key is being processed")
            if rec.request_hash != request_hash:
                raise Conflict("idempotency_key_reused", "this Idempotency-Key was used with a different request: "
                               "use a new key for a new request")
            if rec.state == "done" and rec.status_code is not None and rec.body is not None:
                return Answer(rec.status_code, rec.body, replayed=True)
            if rec.state == "pending" and self._records.orphaned(rec):
                self._records.mark_abandoned(principal, key)
                continue
            if rec.state == "pending":
                here = rec.owner == self._records.instance
                with self._running_lock:
                    gone = here and (principal, key) not in self._running  # ours, and no thread runs it
                if gone or time.monotonic() >= deadline:
                    raise Conflict("idempotency_in_progress", "a request with this Idempotency-Key is being processed")
                time.sleep(0.05)  # its twin runs on this or another bridge: wait for its answer
                continue
            hashes = json.loads(rec.tx_hashes or "[]") or (json.loads(rec.body or b"[]") if rec.state == "sent" else [])
            if hashes:
                answer = self._from_chain(principal, key, hashes, status_code, wait_s=0)
                if answer is not None:
                    return Answer(answer.status, answer.body, replayed=True)
                raise Conflict(
                    "idempotency_tx_unconfirmed",
                    "the first request with this Idempotency-Key broadcast a transaction whose outcome is unknown; "
                    "it is not run again (it could pay twice): retry later, check the transaction, or use a new key",
                    details={"txHashes": hashes},
                )
            raise Conflict(
                "idempotency_abandoned",
                "the first request with this Idempotency-Key was cut off by a bridge restart before it finished; "
                "it may have broadcast a transaction: check the account's leases and balances, then use a new key",
            )

    def _from_chain(self, principal: str, key: str, hashes: list[str], status_code: int, *, wait_s: float) -> Answer | None:
        """The answer the receipts of a request's transactions give (stored as its outcome), or None (and
        the record ``sent``) while one is not mined. Raises the contract's refusal when the last one reverted."""
        outcomes = self._receipts(hashes, wait_s)
        if outcomes is None:
            self._records.mark_sent(principal, key, json.dumps(hashes).encode())
            return None
        last = outcomes[-1]
        if last.status != 1:
            err = from_chain(TransactionReverted("TransactionReverted", (bytes.fromhex(last.tx_hash[2:]),), b"", ("txHash",)))
            self._records.finish(principal, key, err.status, _dump(err.body()))
            raise err
        body = _dump(outcome_out(last).model_dump(mode="json", by_alias=True))
        self._records.finish(principal, key, status_code, body)
        return Answer(status_code, body)

    def _receipts(self, hashes: list[str], wait_s: float) -> list[TxOutcome] | None:
        if self._ledger is None:
            return None
        sender = self._ledger.sender
        deadline = time.monotonic() + wait_s
        while True:
            receipts = [sender.receipt(h) for h in hashes]
            if all(r is not None for r in receipts):
                return [sender.outcome(r) for r in receipts]
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)


def _run(action: Callable[[], BaseModel]) -> BaseModel:
    try:
        return action()
    except ChainError as e:
        raise from_chain(e) from e


def _dump(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
