"""Locks shared by every bridge process on one database.

On PostgreSQL a named lock is a session advisory lock (``pg_advisory_lock`` on a 64-bit key derived from its
name) held on a connection of its own for as long as the ``with`` block runs: two processes (or two threads)
never hold it together, and a process that dies releases it with its connection. On SQLite (one bridge
process per file) it is a lock of this process.

Names in use: ``nonce:<address>`` (build + broadcast of a transaction of that sender: two bridges never take
the same nonce), ``pay:<account>:<token>:<spender>`` (an ERC-20 approval and the call that spends it),
``relayer`` (one relayer pass at a time per database: two relayers never sign the same batch), ``indexer``
(one indexing pass at a time)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from .db import Database


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Locks:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _local_lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._local.setdefault(name, threading.Lock())

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock ``name`` (waiting for it) for the block."""
        if self._db.is_sqlite:
            with self._local_lock(name):
                yield
            return
        key = lock_key(name)
        with self._db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})

    @contextmanager
    def try_hold(self, name: str) -> Iterator[bool]:
        """Take the lock ``name`` if it is free: yields whether this block holds it."""
        if self._db.is_sqlite:
            lock = self._local_lock(name)
            got = lock.acquire(blocking=False)
            try:
                yield got
            finally:
                if got:
                    lock.release()
            return
        key = lock_key(name)
        with self._db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
