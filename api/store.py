"""The bridge's store: SQLAlchemy 2 over SQLite (WAL) by default, PostgreSQL by URL (``postgresql+psycopg://``).

It keeps what the chain does not: managed accounts (keys encrypted), API keys (hashed), idempotency records,
metering reports with their raw samples (content-addressed by samples root), the relayer's signed
settlement transactions, and the indexer's events, checkpoint and projections (providers, nodes, offers,
leases) that make listing and filtering cheap. The schema is created by the alembic migrations in
``api/migrations``; :func:`Store.migrate` runs them.

Large unsigned integers (wei, uint256 ids beyond 2**63) are stored as decimal strings; columns sorted on
(price) are zero-padded to 78 digits so that text order is numeric order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

UINT_DIGITS = 78  # len(str(2**256))


def pad_uint(value: int) -> str:
    """Zero-padded decimal: text order equals numeric order."""
    return f"{value:0{UINT_DIGITS}d}"


def now_ms() -> int:
    return int(time.time() * 1000)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # managed | wallet
    roles: Mapped[str] = mapped_column(String(64))  # comma-separated: provider,buyer,auditor
    label: Mapped[str] = mapped_column(String(128), default="")
    encrypted_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(ForeignKey("accounts.address"), index=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency"
    principal: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(66))
    # pending | done | sent (tx broadcast, outcome unknown) | abandoned (pending when the bridge stopped)
    state: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class SampleSet(Base):
    __tablename__ = "sample_sets"
    root: Mapped[str] = mapped_column(String(66), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # packed samples, see api.metering


class SettlementTx(Base):
    __tablename__ = "settlement_txs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    sender: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), index=True)  # signed | sent | mined | failed | dropped
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Report(Base):
    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lease_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    struct_hash: Mapped[str] = mapped_column(String(66), unique=True)
    signer: Mapped[str] = mapped_column(String(42))
    signature: Mapped[str] = mapped_column(String(132))
    body: Mapped[str] = mapped_column(Text)  # the report's JSON (MeteringReport.to_json)
    samples_root: Mapped[str] = mapped_column(String(66))
    window_end_ms: Mapped[int] = mapped_column(BigInteger)
    cum_billable: Mapped[int] = mapped_column(BigInteger)  # GPU-ms billable per the offer's billing mode
    status: Mapped[str] = mapped_column(String(16), index=True)  # accepted | queued | settled | superseded | rejected
    settle_tx_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_txs.id"), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    accepted_ms: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("lease_id", "seq", name="uq_reports_lease_seq"),
        Index("ix_reports_lease_status", "lease_id", "status"),
    )


class ChainEvent(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    block_hash: Mapped[str] = mapped_column(String(66))
    block_ts: Mapped[int] = mapped_column(BigInteger)  # unix seconds
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    # position inside the log: one CheckpointsSettled log carries several records, each stored as its own
    # CheckpointSettled event with the log's index (0 for every other event)
    record_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    contract: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64), index=True)
    args: Mapped[str] = mapped_column(Text)  # JSON; integers as decimal strings when above 2**53
    lease_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    node_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    offer_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    __table_args__ = (UniqueConstraint("block_hash", "log_index", "record_index", name="uq_events_block_log_record"),)


class IndexedBlock(Base):
    __tablename__ = "indexed_blocks"
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))
    parent_hash: Mapped[str] = mapped_column(String(66))


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))


class ProviderRow(Base):
    __tablename__ = "providers"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    data: Mapped[str] = mapped_column(Text)  # JSON view of the on-chain provider
    score_bps: Mapped[int] = mapped_column(Integer, default=5000)


class NodeRow(Base):
    __tablename__ = "nodes"
    node_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    attestor: Mapped[str] = mapped_column(String(42), index=True)
    active: Mapped[bool] = mapped_column(Boolean)
    data: Mapped[str] = mapped_column(Text)


class OfferRow(Base):
    __tablename__ = "offers"
    offer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    node_id: Mapped[int] = mapped_column(BigInteger, index=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    gpu_model: Mapped[str] = mapped_column(String(64), index=True)
    gpu_count: Mapped[int] = mapped_column(Integer)
    vram_mib: Mapped[int] = mapped_column(BigInteger)
    region: Mapped[str] = mapped_column(String(16), index=True)
    token: Mapped[str] = mapped_column(String(42))
    billing_mode: Mapped[int] = mapped_column(Integer)
    live_lease_id: Mapped[int] = mapped_column(BigInteger, default=0)
    price_per_gpu_hour: Mapped[str] = mapped_column(String(UINT_DIGITS), index=True)  # padded wei
    valid_until: Mapped[int] = mapped_column(BigInteger)
    provider_score_bps: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    data: Mapped[str] = mapped_column(Text)


class LeaseRow(Base):
    __tablename__ = "leases"
    lease_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    offer_id: Mapped[int] = mapped_column(BigInteger)
    node_id: Mapped[int] = mapped_column(BigInteger, index=True)
    buyer: Mapped[str] = mapped_column(String(42), index=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    data: Mapped[str] = mapped_column(Text)


class TokenRow(Base):
    """An ERC-20 the bridge deployed on a dev chain (memory/anvil): the faucet mints it."""

    __tablename__ = "tokens"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(16))
    decimals: Mapped[int] = mapped_column(Integer)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Store:
    """Engine and sessions. SQLite gets WAL, a busy timeout and foreign keys on every connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
        self.engine: Engine = create_engine(url, **kwargs)
        # One writer at a time for SQLite: its own lock would make concurrent writers retry on "busy".
        self.write_lock = threading.RLock() if self.is_sqlite else _NullLock()
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # let SQLAlchemy, not pysqlite, open transactions: SAVEPOINTs then nest properly (SQLAlchemy docs,
            # "Serializable isolation / Savepoints / Transactional DDL" for pysqlite)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the latest alembic revision."""
        from .migrations.runner import upgrade_head

        upgrade_head(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (no commit)."""
        with self._sessions() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session committed on exit (rolled back on error), serialized for SQLite."""
        with self.write_lock:
            with self._sessions() as s:
                try:
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise

    def close(self) -> None:
        self.engine.dispose()


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a report acknowledged to the attestor survives a power cut, not only a process crash.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()

