"""Idempotency records: one per (principal, Idempotency-Key); their life is ``api.services.idempotency``'s."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .db import Database
from .models import IdempotencyRecord, now_ms


class IdempotencyRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    def begin(self, principal: str, key: str, request_hash: str) -> tuple[bool, IdempotencyRecord | None]:
        """Insert a ``pending`` record: ``(True, None)`` when this request is the first with the key; else
        ``(False, the existing record)`` (None when it vanished meanwhile: the first attempt failed)."""
        try:
            with self._db.write() as s:
                s.add(IdempotencyRecord(principal=principal, key=key, request_hash=request_hash, state="pending",
                                        created_ms=now_ms()))
            return True, None
        except IntegrityError:
            with self._db.session() as s:
                return False, s.get(IdempotencyRecord, (principal, key))

    def finish(self, principal: str, key: str, status: int, body: bytes) -> None:
        with self._db.write() as s:
            rec = s.get(IdempotencyRecord, (principal, key))
            if rec is not None:
                rec.state = "done"
                rec.status_code = status
                rec.body = body

    def mark_sent(self, principal: str, key: str, tx_hashes_json: bytes) -> None:
        with self._db.write() as s:
            rec = s.get(IdempotencyRecord, (principal, key))
            if rec is not None:
                rec.state = "sent"
                rec.body = tx_hashes_json

    def forget(self, principal: str, key: str) -> None:
        with self._db.write() as s:
            rec = s.get(IdempotencyRecord, (principal, key))
            if rec is not None:
                s.delete(rec)

    def abandon_pending(self) -> int:
        """Mark every ``pending`` record ``abandoned`` (start-up: no request is in flight); how many."""
        with self._db.write() as s:
            rows = s.scalars(select(IdempotencyRecord).where(IdempotencyRecord.state == "pending")).all()
            for rec in rows:
                rec.state = "abandoned"
            return len(rows)
