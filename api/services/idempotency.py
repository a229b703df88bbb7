"""Idempotency-Key handling for POSTs that move money: a retried request answers the first result.

A failure after a transaction was broadcast but before its receipt was seen keeps the record as ``sent``
with the transaction hashes: the transaction may still be mined, so a retry answers 409
``idempotency_tx_unconfirmed`` instead of escrowing again.

A record still ``pending`` when the bridge starts belongs to a request a crash cut off, possibly after it
broadcast a transaction: start-up marks it ``abandoned`` and a retry answers 409 ``idempotency_abandoned``
(never "in progress" forever, never run again blindly).

The first request with a key inserts a ``pending`` record (the primary key makes a concurrent twin fail
and answer 409); the outcome (2xx or 4xx) is stored and replayed byte for byte. A 5xx or an unexpected
error (or a refusal the caller can lift, ``ApiError.replayable`` False) deletes the record so that the client
may retry. The same key with a different body is refused
(409 ``idempotency_key_reused``). Chain errors raised by the action are mapped to API errors here
(``api.errors.from_chain``) before that decision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from dataclasses import dataclass

from pydantic import BaseModel

from ledger.chain.errors import ChainError
from ledger.chain.sender import TxSender

from ..errors import ApiError, Conflict, Invalid, from_chain
from ..store import Store

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

    def __init__(self, store: Store) -> None:
        self._records = store.idempotency

    def abandon_pending(self) -> int:
        """At start-up no request is in flight: every ``pending`` record is a request a crash cut off. Marks
        them ``abandoned``; returns how many."""
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
            if rec is None:  # deleted between our insert and read: the first attempt failed; ask for a retry
                raise Conflict("idempotency_in_progress", "a request with this Idempotency-Key is being processed")
            if rec.request_hash != request_hash:
                raise Conflict("idempotency_key_reused", "this Idempotency-Key was used with a different request: "
                               "use a new key for a new request")
            if rec.state == "sent":
                hashes = json.loads(rec.body or b"[]")
                raise Conflict(
                    "idempotency_tx_unconfirmed",
                    "the first request with this Idempotency-Key broadcast a transaction whose outcome is unknown; "
                    "it is not run again (it could pay twice): check the transaction, or use a new key",
                    details={"txHashes": hashes},
                )
            if rec.state == "abandoned":
                raise Conflict(
                    "idempotency_abandoned",
                    "the first request with this Idempotency-Key was cut off by a bridge restart before it finished; "
                    "it may have broadcast a transaction: check the account's leases and balances, then use a new key",
                )
            if rec.state != "done" or rec.status_code is None or rec.body is None:
                raise Conflict("idempotency_in_progress", "a request with this Idempotency-Key is being processed")
            return Answer(rec.status_code, rec.body, replayed=True)
        with TxSender.track_broadcasts() as unconfirmed:
            try:
                result = _run(action)
            except ApiError as e:
                if unconfirmed:
                    self._records.mark_sent(principal, key, json.dumps(unconfirmed).encode())
                elif e.status >= 500 or not e.replayable:
                    self._records.forget(principal, key)
                else:
                    self._records.finish(principal, key, e.status, _dump(e.body()))
                raise
            except BaseException:
                if unconfirmed:
                    self._records.mark_sent(principal, key, json.dumps(unconfirmed).encode())
                else:
                    self._records.forget(principal, key)
                raise
        body = _dump(result.model_dump(mode="json", by_alias=True))
        self._records.finish(principal, key, status_code, body)
        return Answer(status_code, body)


def _run(action: Callable[[], BaseModel]) -> BaseModel:
    try:
        return action()
    except ChainError as e:
        raise from_chain(e) from e


def _dump(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
