"""The bridge's store: what the chain does not keep.

Managed accounts (keys encrypted) and API keys (hashed), idempotency records, metering reports with their
raw samples (content-addressed by samples root), the relayer's signed settlement transactions, and the
indexer's events, checkpoint and projections. The only package of the bridge that speaks SQL: services and
workers call the repositories below.
"""

from __future__ import annotations

from pathlib import Path

from .accounts import AccountRepo, TokenRepo
from .archive import SampleArchive
from .db import Database
from .idempotency import IdempotencyRepo
from .index import EventRow, IndexRepo, OfferQuery
from .locks import Locks
from .models import now_ms
from .reports import NewReport, QueueHead, ReportRepo, SettlementRepo, Stored


class Store:
    """One database and its repositories; ``archive_dir``: the samples archive (None: no retention)."""

    def __init__(self, url: str, archive_dir: Path | None = None) -> None:
        self.db = Database(url)
        self.archive = SampleArchive(archive_dir) if archive_dir is not None else None
        self.url = url
        self.is_sqlite = self.db.is_sqlite
        self.accounts = AccountRepo(self.db)
        self.tokens = TokenRepo(self.db)
        self.idempotency = IdempotencyRepo(self.db)
        self.reports = ReportRepo(self.db, self.archive)
        self.settlements = SettlementRepo(self.db)
        self.index = IndexRepo(self.db)
        self.locks = Locks(self.db)

    def migrate(self) -> None:
        """Bring the schema to the latest alembic revision."""
        self.db.migrate()

    def close(self) -> None:
        self.db.close()


__all__ = ["EventRow", "NewReport", "OfferQuery", "QueueHead", "Store", "Stored", "now_ms"]
