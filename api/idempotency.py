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
(422 ``idempotency_key_reused``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .errors import ApiError, Conflict, Invalid
from .gateway import unconfirmed_broadcasts
from .store import IdempotencyRecord, Store, now_ms

MAX_KEY_LEN = 128


def fingerprint(method: str, path: str, body: BaseModel | None) -> str:
    payload = f"{method} {path}\n" + (body.model_dump_json() if body is not None else "")
    return "0x" + hashlib.sha256(payload.encode()).hexdigest()


def run_idempotent(
    store: Store,
    principal: str,
    key: str | None,
    request_hash: str,
    action: Callable[[], BaseModel],
    status_code: int = 200,
) -> Response:
    """Run ``action`` once per (principal, key); without a key, just run it."""
    if key is None:
        return _json(status_code, action().model_dump(mode="json", by_alias=True))
    if not key or len(key) > MAX_KEY_LEN or not all("!" <= c <= "~" for c in key):
        raise Invalid(f"Idempotency-Key must be 1..{MAX_KEY_LEN} printable characters", field="Idempotency-Key")
    try:
        with store.write() as s:
            s.add(
                IdempotencyRecord(
                    principal=principal, key=key, request_hash=request_hash, state="pending", created_ms=now_ms()
                )
            )
    except IntegrityError:
        with store.session() as s:
            rec = s.get(IdempotencyRecord, (principal, key))
        if rec is None:  # deleted between our insert and read: the first attempt failed; ask for a retry
            raise Conflict("idempotency_in_progress", "a request with this Idempotency-Key is being processed")
        if rec.request_hash != request_hash:
            raise Invalid("this Idempotency-Key was used with a different request", field="Idempotency-Key",
                          code="idempotency_key_reused")
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
        resp = Response(content=rec.body, status_code=rec.status_code, media_type="application/json")
        resp.headers["Idempotent-Replayed"] = "true"
        return resp
    with unconfirmed_broadcasts() as unconfirmed:
        try:
            result = action()
        except ApiError as e:
            if unconfirmed:
                _mark_sent(store, principal, key, unconfirmed)
            elif e.status >= 500 or not e.replayable:
                _forget(store, principal, key)
            else:
                _finish(store, principal, key, e.status, e.body())
            raise
        except BaseException:
            if unconfirmed:
                _mark_sent(store, principal, key, unconfirmed)
            else:
                _forget(store, principal, key)
            raise
    body = result.model_dump(mode="json", by_alias=True)
    _finish(store, principal, key, status_code, body)
    return _json(status_code, body)


def abandon_pending(store: Store) -> int:
    """At start-up no request is in flight: every ``pending`` record is a request a crash cut off. Marks them
    ``abandoned``; returns how many."""
    with store.write() as s:
        rows = s.scalars(select(IdempotencyRecord).where(IdempotencyRecord.state == "pending")).all()
        for rec in rows:
            rec.state = "abandoned"
        return len(rows)


def _json(status: int, body: Any) -> Response:
    return JSONResponse(status_code=status, content=body)


def _finish(store: Store, principal: str, key: str, status: int, body: Any) -> None:
    with store.write() as s:
        rec = s.get(IdempotencyRecord, (principal, key))
        if rec is not None:
            rec.state = "done"
            rec.status_code = status
            rec.body = json.dumps(body, separators=(",", ":")).encode()


def _mark_sent(store: Store, principal: str, key: str, tx_hashes: list[str]) -> None:
    """Keep the key: a transaction went out and may still be mined, so a retry must not run again."""
    with store.write() as s:
        rec = s.get(IdempotencyRecord, (principal, key))
        if rec is not None:
            rec.state = "sent"
            rec.body = json.dumps(tx_hashes).encode()


def _forget(store: Store, principal: str, key: str) -> None:
    with store.write() as s:
        rec = s.get(IdempotencyRecord, (principal, key))
        if rec is not None:
            s.delete(rec)
