"""The store's engine and sessions: SQLAlchemy 2 over SQLite (WAL) by default, PostgreSQL by URL
(``postgresql+psycopg://``). Repositories (``api.store.*``) use :class:`Database`; nothing outside
``api.store`` sees SQLAlchemy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from .migrations.runner import upgrade_head


class Database:
    """Engine and sessions. SQLite gets WAL, a busy timeout and foreign keys on every connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            # room for every request thread (uvicorn's pool: 40) to hold a cross-process lock (api.store.locks)
            # on a connection of its own while it reads and writes on another
            kwargs.update(pool_size=20, max_overflow=40, pool_pre_ping=True)
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
        self.engine: Engine = create_engine(url, **kwargs)
        # One writer at a time for SQLite: its own lock would make concurrent writers retry on "busy".
        self._write_lock: threading.RLock | None = threading.RLock() if self.is_sqlite else None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # let SQLAlchemy, not pysqlite, open transactions: SAVEPOINTs then nest properly (SQLAlchemy docs,
            # "Serializable isolation / Savepoints / Transactional DDL" for pysqlite)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def write_lock(self) -> AbstractContextManager[Any]:
        """Held around every write on SQLite (one writer); nothing on PostgreSQL."""
        return self._write_lock if self._write_lock is not None else nullcontext()

    def migrate(self) -> None:
        """Bring the schema to the latest alembic revision."""
        upgrade_head(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (no commit)."""
        with self._sessions() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session committed on exit (rolled back on error), serialized for SQLite."""
        with self.write_lock():
            with self._sessions() as s:
                if self.is_sqlite:  # BEGIN IMMEDIATE: the write lock before the first read (see _sqlite_begin)
                    s.connection(execution_options={"sqlite_immediate": True})
                try:
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise

    def close(self) -> None:
        self.engine.dispose()


def dialect_insert(s: Session | Any, model: Any) -> Any:
    """``INSERT`` of the session's dialect (PostgreSQL or SQLite), which has ``on_conflict_do_*``."""
    bind = s.get_bind() if isinstance(s, Session) else s
    if bind.dialect.name == "postgresql":
        return pg_insert(model)
    return sqlite_insert(model)


def upsert(s: Session | Any, model: Any, values: dict[str, Any], keys: list[str]) -> None:
    """Insert a row, or update it in place when its key exists: safe when two processes write it at once
    (``session.merge`` reads then inserts, and the second insert of a race fails)."""
    stmt = dialect_insert(s, model).values(**values)
    rest = {k: stmt.excluded[k] for k in values if k not in keys}
    s.execute(stmt.on_conflict_do_update(index_elements=keys, set_=rest) if rest else stmt.on_conflict_do_nothing())


def _sqlite_begin(conn: Any) -> None:
    # A write session reads then writes (a record fetched, then updated): begun DEFERRED, its read snapshot may
    # be older than a commit of another connection by the time it writes, and SQLite then answers "database is
    # locked" at once (SQLITE_BUSY_SNAPSHOT: the busy timeout does not apply). IMMEDIATE takes the write lock
    # first, and waits for it; read sessions stay DEFERRED (readers never wait).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a report acknowledged to the attestor survives a power cut, not only a process crash.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
