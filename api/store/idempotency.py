"""Idempotency records: one per (principal, Idempotency-Key); their life is ``api.services.idempotency``'s.

A record is never deleted once a transaction of its request may have been broadcast: the hashes are written
(``add_tx``) as each one goes out. Live bridge processes are listed in ``bridge_instances`` with a heartbeat,
so a ``pending`` record tells whether the process running it is still there."""

from __future__ import annotations

import json
import os
import socket
import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ledger.chain.backends import pid_alive

from .db import Database
from .models import BridgeInstance, IdempotencyRecord, now_ms

HEARTBEAT_STALE_MS = 30_000  # a bridge silent this long is taken for dead


class IdempotencyRepo:
    def __init__(self, db: Database) -> None:
        self._db = db
        # this process (host, pid, random part); registered by ``register``
        self.instance = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    # --- live bridge processes -----------------------------------------------------------------------

    def register(self) -> None:
        with self._db.write() as s:
            s.merge(BridgeInstance(id=self.instance, started_ms=now_ms(), heartbeat_ms=now_ms()))

    def heartbeat(self) -> None:
        with self._db.write() as s:
            s.execute(update(BridgeInstance).where(BridgeInstance.id == self.instance).values(heartbeat_ms=now_ms()))

    def unregister(self) -> None:
        with self._db.write() as s:
            s.execute(delete(BridgeInstance).where(BridgeInstance.id == self.instance))

    def _owner_alive(self, owner: str | None) -> bool:
        if owner is None:
            return False
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if host == socket.gethostname()[:30] and pid.isdigit() and not pid_alive(int(pid)):
            return False  # a process of this machine that is gone (killed): no heartbeat to wait out
        with self._db.session() as s:
            inst = s.get(BridgeInstance, owner)
            return inst is not None and now_ms() - int(inst.heartbeat_ms) < HEARTBEAT_STALE_MS

    # --- records -------------------------------------------------------------------------------------

    def begin(self, principal: str, key: str, request_hash: str) -> tuple[bool, IdempotencyRecord | None]:
        """Insert a ``pending`` record owned by this process: ``(True, None)`` when this request is the first
        with the key; else ``(False, the existing record)`` (None when it vanished meanwhile)."""
        try:
            with self._db.write() as s:
                s.add(IdempotencyRecord(principal=principal, key=key, request_hash=request_hash, state="pending",
                                        created_ms=now_ms(), owner=self.instance))
            return True, None
        except IntegrityError:
            return False, self.get(principal, key)

    def get(self, principal: str, key: str) -> IdempotencyRecord | None:
        with self._db.session() as s:
            return s.get(IdempotencyRecord, (principal, key))

    def orphaned(self, rec: IdempotencyRecord) -> bool:
        """A ``pending`` record whose process stopped or went silent."""
        return rec.state == "pending" and not self._owner_alive(rec.owner)

    def add_tx(self, principal: str, key: str, tx_hash: str) -> None:
        """Remember a transaction the request just broadcast (before anything else can fail)."""
        with self._db.write() as s:
            rec = s.get(IdempotencyRecord, (principal, key))
            if rec is not None:
                hashes = json.loads(rec.tx_hashes or "[]")
                if tx_hash not in hashes:
                    rec.tx_hashes = json.dumps([*hashes, tx_hash])

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

    def mark_abandoned(self, principal: str, key: str) -> None:
        with self._db.write() as s:
            s.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.principal == principal, IdempotencyRecord.key == key,
                       IdempotencyRecord.state == "pending")
                .values(state="abandoned")
            )  # fmt: skip

    def forget(self, principal: str, key: str) -> None:
        """Delete a record whose request broadcast nothing (it may run again)."""
        with self._db.write() as s:
            rec = s.get(IdempotencyRecord, (principal, key))
            if rec is not None and not json.loads(rec.tx_hashes or "[]"):
                s.delete(rec)

    def abandon_pending(self) -> int:
        """Mark ``abandoned`` every ``pending`` record whose bridge process is gone; how many."""
        with self._db.session() as s:
            live = {i.id for i in s.scalars(select(BridgeInstance)) if i.id != self.instance and self._owner_alive(i.id)}
        with self._db.write() as s:
            rows = s.scalars(select(IdempotencyRecord).where(IdempotencyRecord.state == "pending")).all()
            n = 0
            for rec in rows:
                if rec.owner not in live:
                    rec.state = "abandoned"
                    n += 1
            return n

