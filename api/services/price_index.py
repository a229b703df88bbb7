"""The verified price index served by the bridge: ``ledger.protocol.price_index`` over the indexed events (the
same fold ``compute-ledger price-index --rpc-url`` runs over events read from a chain node)."""

from __future__ import annotations

import json
from typing import Any

from eth_utils import to_checksum_address

from ledger.protocol.economics import ETH
from ledger.protocol.price_index import BAND_DAYS, INDEX_EVENTS, Cell, IndexEvent, band, band_status, latest, price_index

from ..errors import ApiError
from ..store import Store


class PriceIndex:
    def __init__(self, store: Store, operator_bands: dict[str, tuple[int, int]] | None = None) -> None:
        self._store = store
        self._cache: tuple[tuple[int, int, int], list[Cell]] | None = None
        # operator-set bands by (GPU model, token)
        self._operator: dict[tuple[str, str], tuple[int, int]] = {}
        for key, (low, high) in (operator_bands or {}).items():
            model, _, token = key.partition("|")
            self._operator[(model, to_checksum_address(token) if token else ETH)] = (int(low), int(high))

    def cells(self) -> list[Cell]:
        rows = self._store.index.events_named(sorted(INDEX_EVENTS))
        marker = (len(rows), rows[-1].block_number, rows[-1].log_index) if rows else (0, 0, 0)
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

    def reference_band(self, gpu_model: str, token: str) -> dict[str, Any] | None:
        """The band offers of ``gpu_model`` in ``token`` are compared with: the operator's when it set one, else
        the index's over the last BAND_DAYS days (None: neither)."""
        op = self._operator.get((gpu_model, to_checksum_address(token)))
        if op is not None:
            return {"source": "operator", "low": str(op[0]), "high": str(op[1])}
        b = band(self.cells(), gpu_model, None, to_checksum_address(token), days=BAND_DAYS)
        if b is None:
            return None
        return {"source": "index", "low": b["low"], "high": b["high"], "from": b["from"], "to": b["to"]}

    def flag(self, gpu_model: str, token: str, price_per_gpu_hour: int) -> dict[str, Any] | None:
        """An offer's price against its reference band: the band and ``below`` / ``within`` / ``above`` (None
        without a band). A flag, not a refusal: offers outside the band stay listed and leasable."""
        b = self.reference_band(gpu_model, token)
        if b is None:
            return None
        return {**b, "status": band_status(price_per_gpu_hour, int(b["low"]), int(b["high"]))}
