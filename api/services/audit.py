"""What auditors list and download (api/AUDIT_API.md §4-5). Public: anybody may audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..errors import ApiError
from ..store import Store
from ..store.archive import archive_entry
from ..workers.indexer import Indexer


class AuditData:
    def __init__(self, store: Store, indexer: Indexer) -> None:
        self._store = store
        self._indexer = indexer

    def leases(self, cursor: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """Every lease the bridge knows, with its report and settlement counts; and the next cursor."""
        rows = self._store.index.leases_after(cursor, limit)
        ids = [r.lease_id for r in rows[:limit]]
        reports = self._store.reports.counts(ids)
        settlements = self._store.index.settlement_counts(ids)
        out = [
            {"leaseId": r.lease_id, "state": r.status, "reports": reports.get(r.lease_id, 0),
             "settlements": settlements.get(r.lease_id, 0)}
            for r in rows[:limit]
        ]
        return out, rows[limit - 1].lease_id if len(rows) > limit else None

    def archive(self, lease_id: int | None) -> Iterator[bytes]:
        """The samples archive: every stored report with its samples, lease by lease, in seq order, one JSON
        line each. 404 (raised before the first line) for a lease the bridge does not know."""
        if lease_id is not None and self._indexer.lease_row(lease_id) is None:
            raise ApiError(404, "unknown_lease", f"lease {lease_id} is unknown to the bridge")

        def lines() -> Iterator[bytes]:
            for r, samples, node_id in self._store.reports.archive(lease_id):
                entry = archive_entry(r.body, r.signature, r.struct_hash, node_id, samples)
                yield json.dumps(entry, separators=(",", ":")).encode() + b"\n"

        return lines()
