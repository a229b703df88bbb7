"""The verified price index served by the bridge: ``ledger.protocol.price_index`` over the indexed events (the
same fold ``compute-ledger price-index --rpc-url`` runs over events read from a chain node)."""

from __future__ import annotations

import json
from typing import Any

from ledger.protocol.price_index import INDEX_EVENTS, Cell, IndexEvent, band, latest, price_index

from ..errors import ApiError
from ..store import Store


class PriceIndex:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: tuple[int, list[Cell]] | None = None

    def cells(self) -> list[Cell]:
        rows = self._store.index.events_named(sorted(INDEX_EVENTS))
        marker = len(rows) and rows[-1].block_number * 1_000_000 + len(rows)
        if self._cache is None or self._cache[0] != marker:
            evs = [IndexEvent(r.name, json.loads(r.args), (r.block_number, r.log_index, r.record_index)) for r in rows]
            self._cache = (marker, price_index(evs))
        return self._cache[1]

    def history(self, gpu_model: str | None, region: str | None, token: str | None, since: str | None,
                until: str | None) -> list[Cell]:
        return [
            c for c in self.cells()
            if (gpu_model is None or c.key.gpu_model == gpu_model) and (region is None or c.key.region == region)
            and (token is None or c.key.token.lower() == token.lower())
            and (since is None or c.key.day >= since) and (until is None or c.key.day <= until)
        ]

    def latest(self) -> list[Cell]:
        return latest(self.cells())

    def band(self, gpu_model: str, region: str | None, token: str | None, days: int) -> dict[str, Any]:
        b = band(self.cells(), gpu_model, region, token, days=days)
        if b is None:
            raise ApiError(404, "not_found", f"no settled usage of {gpu_model!r} to derive a band from")
        return b
