"""The bridge's tables (SQLAlchemy 2 declarative). The schema itself is made by the alembic migrations in
``api/store/migrations``; these classes must match them.

Large unsigned integers (wei, uint256 ids beyond 2**63) are stored as decimal strings; columns sorted on
(price) are zero-padded to 78 digits so that text order is numeric order.
"""

from __future__ import annotations

import time

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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the bridge instance running it
    tx_hashes: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list, written as each is broadcast


class BridgeInstance(Base):
    """A live bridge process (one per ``Bridge.start``), with a heartbeat."""

    __tablename__ = "bridge_instances"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    heartbeat_ms: Mapped[int] = mapped_column(BigInteger)


class SampleSet(Base):
    __tablename__ = "sample_sets"
    root: Mapped[str] = mapped_column(String(66), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # encoded samples, see api.store.samples
    codec: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


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
    # the archive segment holding its samples once retention moved them out of sample_sets (api.store.archive)
    archive: Mapped[str | None] = mapped_column(String(160), nullable=True)
    # each GPU's last valid energy counter after this report ({"gpu": counter}, JSON): the next report's baseline
    energy_carry: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (
        UniqueConstraint("lease_id", "seq", name="uq_reports_lease_seq"),
        Index("ix_reports_lease_status", "lease_id", "status"),
        Index("ix_reports_archive_status", "archive", "status"),
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
