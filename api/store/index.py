"""The indexer's tables: the chain's events with their blocks, the indexing checkpoint, and the projections
(providers, nodes, offers, leases) that make listing and filtering cheap, with the queries that list them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update

from .. import faults
from .db import Database, dialect_insert, upsert
from .models import ChainEvent, Checkpoint, IndexedBlock, LeaseRow, NodeRow, OfferRow, ProviderRow, Report, pad_uint

_DUMP = {"separators": (",", ":")}


@dataclass(frozen=True)
class EventRow:
    """An event to store: decoded args already JSON-able (integers above 2^53 as decimal strings)."""

    block_number: int
    block_hash: str
    block_ts: int
    tx_hash: str
    log_index: int
    record_index: int
    contract: str
    name: str
    args: dict[str, Any]
    lease_id: int | None
    node_id: int | None
    offer_id: int | None


@dataclass(frozen=True)
class OfferQuery:
    """Filters of the offer list (None: any)."""

    gpu_model: str | None = None
    region: str | None = None
    min_vram_mib: int | None = None
    min_gpu_count: int | None = None
    max_price_per_gpu_hour: int | None = None
    token: str | None = None
    billing_mode: int | None = None
    provider: str | None = None
    min_provider_score_bps: int | None = None
    available_at: int | None = None  # unix s: only offers a lease can be opened on then
    node_ids: frozenset[int] | None = None  # only offers on these nodes (the web book's uptime and audit filters)
    min_valid_until: int | None = None  # unix s: only offers still valid then (the web book's "available for")


OFFER_SORTS: dict[str, Any] = {
    "price": OfferRow.price_per_gpu_hour,
    "vram": OfferRow.vram_mib,
    "gpuModel": OfferRow.gpu_model,
    "region": OfferRow.region,
    "reputation": OfferRow.provider_score_bps,
    "gpuCount": OfferRow.gpu_count,
    "validUntil": OfferRow.valid_until,
    "billingMode": OfferRow.billing_mode,
}


class IndexRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- the checkpoint and blocks -----------------------------------------------------------------------

    def checkpoint(self, name: str) -> tuple[int, str] | None:
        """(block number, block hash) indexed up to, under ``name``."""
        with self._db.session() as s:
            cp = s.get(Checkpoint, name)
            return (int(cp.block_number), str(cp.block_hash)) if cp is not None else None

    def store_range(
        self,
        name: str,
        events: Sequence[EventRow],
        blocks: Sequence[tuple[int, str, str]],
        end: tuple[int, str],
        keep_blocks: int,
    ) -> None:
        """One indexed range in one transaction: its events, its blocks' (number, hash, parent hash), the new
        checkpoint ``end``, and block hashes older than ``keep_blocks`` below it pruned."""
        with self._db.write() as s:
            # idempotent (two indexers, two bridges on one database, may store the same range), and one
            # executemany, not an ORM object per event: a fresh start-up writes millions
            if events:
                s.execute(
                    dialect_insert(s, ChainEvent).on_conflict_do_nothing(),
                    [
                        {"block_number": e.block_number, "block_hash": e.block_hash, "block_ts": e.block_ts,
                         "tx_hash": e.tx_hash, "log_index": e.log_index, "record_index": e.record_index,
                         "contract": e.contract, "name": e.name, "args": json.dumps(e.args, **_DUMP),  # type: ignore[arg-type]
                         "lease_id": e.lease_id, "node_id": e.node_id, "offer_id": e.offer_id}
                        for e in events
                    ],
                )  # fmt: skip
            for n, h, parent in sorted(blocks):
                upsert(s, IndexedBlock, {"number": n, "hash": h, "parent_hash": parent}, ["number"])
            upsert(s, Checkpoint, {"name": name, "block_number": end[0], "block_hash": end[1]}, ["name"])
            s.execute(delete(IndexedBlock).where(IndexedBlock.number < end[0] - keep_blocks))
            faults.reach("index.store")

    def known_blocks(self, at_or_below: int) -> list[tuple[int, str]]:
        """Stored (number, hash) of indexed blocks, newest first."""
        with self._db.session() as s:
            rows = s.scalars(
                select(IndexedBlock).where(IndexedBlock.number <= at_or_below).order_by(IndexedBlock.number.desc())
            ).all()
            return [(int(b.number), str(b.hash)) for b in rows]

    def rewind(self, name: str, fork: int, fork_hash: str) -> list[dict[str, Any]]:
        """Forget everything indexed above block ``fork`` (a reorg); the args of the events dropped."""
        with self._db.write() as s:
            dropped = [json.loads(ev.args) for ev in s.scalars(select(ChainEvent).where(ChainEvent.block_number > fork))]
            s.execute(delete(ChainEvent).where(ChainEvent.block_number > fork))
            s.execute(delete(IndexedBlock).where(IndexedBlock.number > fork))
            upsert(s, Checkpoint, {"name": name, "block_number": fork, "block_hash": fork_hash}, ["name"])
        return dropped

    # --- events ------------------------------------------------------------------------------------------

    def events_of(self, *, lease_id: int | None = None, node_id: int | None = None) -> list[ChainEvent]:
        """Stored events of a lease or a node, in chain order."""
        with self._db.session() as s:
            q = select(ChainEvent)
            if lease_id is not None:
                q = q.where(ChainEvent.lease_id == lease_id)
            if node_id is not None:
                q = q.where(ChainEvent.node_id == node_id)
            return list(s.scalars(q.order_by(ChainEvent.block_number, ChainEvent.log_index, ChainEvent.record_index)))

    def events_named(self, names: Sequence[str]) -> list[ChainEvent]:
        """Stored events of the given names, in chain order."""
        with self._db.session() as s:
            q = select(ChainEvent).where(ChainEvent.name.in_(list(names)))
            return list(s.scalars(q.order_by(ChainEvent.block_number, ChainEvent.log_index, ChainEvent.record_index)))

    def settlement_counts(self, lease_ids: Sequence[int]) -> dict[int, int]:
        if not lease_ids:
            return {}
        with self._db.session() as s:
            rows = s.execute(
                select(ChainEvent.lease_id, func.count())
                .where(ChainEvent.lease_id.in_(lease_ids), ChainEvent.name == "CheckpointSettled")
                .group_by(ChainEvent.lease_id)
            )
            return {int(lid or 0): int(n) for lid, n in rows}

    # --- projections -------------------------------------------------------------------------------------

    def lease(self, lease_id: int) -> LeaseRow | None:
        with self._db.session() as s:
            return s.get(LeaseRow, lease_id)

    def node(self, node_id: int) -> NodeRow | None:
        with self._db.session() as s:
            return s.get(NodeRow, node_id)

    def offer(self, offer_id: int) -> OfferRow | None:
        with self._db.session() as s:
            return s.get(OfferRow, offer_id)

    def provider(self, address: str) -> ProviderRow | None:
        with self._db.session() as s:
            return s.get(ProviderRow, address)

    def put_lease(self, view: dict[str, Any]) -> None:
        with self._db.write() as s:
            upsert(s, LeaseRow, {
                "lease_id": view["leaseId"],
                "offer_id": view["offerId"],
                "node_id": view["nodeId"],
                "buyer": view["buyer"],
                "provider": view["provider"],
                "status": view["state"],
                "data": json.dumps(view, **_DUMP),  # type: ignore[arg-type]
            }, ["lease_id"])  # fmt: skip

    def put_node(self, view: dict[str, Any]) -> None:
        with self._db.write() as s:
            upsert(s, NodeRow, {
                "node_id": view["nodeId"],
                "provider": view["provider"],
                "attestor": view["attestor"],
                "active": view["active"],
                "data": json.dumps(view, **_DUMP),  # type: ignore[arg-type]
            }, ["node_id"])  # fmt: skip

    def put_offer(self, view: dict[str, Any], price_per_gpu_hour: int) -> None:
        """An offer's projection; ``view`` carries its node's fields (gpuModel, vramMiB, region, nodeActive)."""
        with self._db.write() as s:
            prov = s.get(ProviderRow, view["provider"])
            upsert(s, OfferRow, {
                "offer_id": view["offerId"],
                "node_id": view["nodeId"],
                "provider": view["provider"],
                "gpu_model": view["gpuModel"],
                "gpu_count": view["gpuCount"],
                "vram_mib": view["vramMiB"],
                "region": view["region"],
                "token": view["token"],
                "billing_mode": view["billingMode"],
                "live_lease_id": view["liveLeaseId"],
                "price_per_gpu_hour": pad_uint(price_per_gpu_hour),
                "valid_until": view["validUntil"],
                "provider_score_bps": prov.score_bps if prov else 0,
                "active": view["nodeActive"],
                "data": json.dumps(view, **_DUMP),  # type: ignore[arg-type]
            }, ["offer_id"])  # fmt: skip

    def put_provider(self, address: str, view: dict[str, Any], score_bps: int) -> None:
        """A provider's projection; its offers take its new score."""
        with self._db.write() as s:
            upsert(s, ProviderRow, {"address": address, "data": json.dumps(view, **_DUMP), "score_bps": score_bps},  # type: ignore[arg-type]
                   ["address"])
            s.execute(update(OfferRow).where(OfferRow.provider == address).values(provider_score_bps=score_bps))

    def drop(self, kind: str, key: int | str) -> bool:
        """Remove a projection ("lease", "node", "offer", "provider") the chain no longer has; whether it was there."""
        model = {"lease": LeaseRow, "node": NodeRow, "offer": OfferRow, "provider": ProviderRow}[kind]
        with self._db.write() as s:
            row = s.get(model, key)
            if row is not None:
                s.delete(row)
                return True
        return False

    def offer_ids_of_node(self, node_id: int) -> list[int]:
        with self._db.session() as s:
            return [int(i) for i in s.scalars(select(OfferRow.offer_id).where(OfferRow.node_id == node_id))]

    # --- listings ----------------------------------------------------------------------------------------

    def offers(self, q: OfferQuery, sort: str, limit: int, offset: int) -> tuple[int, list[OfferRow]]:
        """(total matching, one page) of offers; ``sort`` is a key of :data:`OFFER_SORTS`, '-' for descending,
        ties broken by offer id."""
        stmt = self._offer_filter(select(OfferRow), q)
        desc = sort.startswith("-")
        col = OFFER_SORTS[sort.lstrip("-")]
        with self._db.session() as s:
            total = int(s.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
            rows = s.scalars(
                stmt.order_by(col.desc() if desc else col.asc(), OfferRow.offer_id.asc()).limit(limit).offset(offset)
            ).all()
        return total, list(rows)

    def offer_nodes(self, q: OfferQuery) -> list[tuple[int, int]]:
        """(offer id, node id) of every matching offer, by offer id: for orders SQL does not hold (uptime)."""
        stmt = self._offer_filter(select(OfferRow.offer_id, OfferRow.node_id), q).order_by(OfferRow.offer_id)
        with self._db.session() as s:
            return [(int(o), int(n)) for o, n in s.execute(stmt)]

    def offer_models_prices(self, q: OfferQuery) -> list[tuple[int, str, int]]:
        """(offer id, GPU model, price per GPU-hour) of every matching offer, by offer id: for the book's
        price-per-performance order, which needs the model's figure (not a column)."""
        stmt = self._offer_filter(select(OfferRow.offer_id, OfferRow.gpu_model, OfferRow.price_per_gpu_hour), q)
        with self._db.session() as s:
            return [(int(o), str(m), int(p)) for o, m, p in s.execute(stmt.order_by(OfferRow.offer_id))]

    def offers_by_id(self, ids: Sequence[int]) -> list[OfferRow]:
        """The offers with these ids, in the order given."""
        with self._db.session() as s:
            found = {r.offer_id: r for r in s.scalars(select(OfferRow).where(OfferRow.offer_id.in_(list(ids))))}
        return [found[i] for i in ids if i in found]

    def nodes_of(self, provider: str) -> list[NodeRow]:
        with self._db.session() as s:
            return list(s.scalars(select(NodeRow).where(NodeRow.provider == provider).order_by(NodeRow.node_id)))

    def offer_facets(self) -> tuple[list[str], list[str]]:
        """The GPU models and regions some indexed offer has (the web book's filter choices)."""
        with self._db.session() as s:
            models = sorted(str(m) for m in s.scalars(select(OfferRow.gpu_model).distinct()))
            regions = sorted(str(r) for r in s.scalars(select(OfferRow.region).distinct()))
        return models, regions

    def _offer_filter(self, stmt: Any, q: OfferQuery) -> Any:
        if q.gpu_model is not None:  # case-insensitive, any part: "h100" finds "NVIDIA H100 80GB HBM3"
            pattern = "%" + q.gpu_model.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(func.lower(OfferRow.gpu_model).like(pattern, escape="\\"))
        if q.region is not None:
            stmt = stmt.where(OfferRow.region == q.region)
        if q.min_vram_mib is not None:
            stmt = stmt.where(OfferRow.vram_mib >= q.min_vram_mib)
        if q.min_gpu_count is not None:
            stmt = stmt.where(OfferRow.gpu_count >= q.min_gpu_count)
        if q.max_price_per_gpu_hour is not None:
            stmt = stmt.where(OfferRow.price_per_gpu_hour <= pad_uint(q.max_price_per_gpu_hour))
        if q.token is not None:
            stmt = stmt.where(OfferRow.token == q.token)
        if q.billing_mode is not None:
            stmt = stmt.where(OfferRow.billing_mode == q.billing_mode)
        if q.provider is not None:
            stmt = stmt.where(OfferRow.provider == q.provider)
        if q.min_provider_score_bps is not None:
            stmt = stmt.where(OfferRow.provider_score_bps >= q.min_provider_score_bps)
        if q.available_at is not None:
            stmt = stmt.where(OfferRow.active.is_(True), OfferRow.live_lease_id == 0, OfferRow.valid_until > q.available_at)
        if q.node_ids is not None:
            stmt = stmt.where(OfferRow.node_id.in_(sorted(q.node_ids)))
        if q.min_valid_until is not None:
            stmt = stmt.where(OfferRow.valid_until >= q.min_valid_until)
        return stmt

    def offer_expiries(self) -> list[int]:
        """The distinct ``validUntil`` of indexed offers, ascending: the only times an offer list changes by
        itself."""
        with self._db.session() as s:
            return [int(t) for t in s.scalars(select(OfferRow.valid_until).distinct().order_by(OfferRow.valid_until))]

    def offer_tokens(self) -> list[str]:
        """Token addresses some indexed offer is priced in."""
        with self._db.session() as s:
            return sorted(str(t) for t in s.scalars(select(OfferRow.token).distinct()))

    def leases(
        self,
        *,
        buyer: str | None = None,
        provider: str | None = None,
        node_id: int | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[LeaseRow]]:
        stmt = select(LeaseRow)
        if buyer is not None:
            stmt = stmt.where(LeaseRow.buyer == buyer)
        if provider is not None:
            stmt = stmt.where(LeaseRow.provider == provider)
        if node_id is not None:
            stmt = stmt.where(LeaseRow.node_id == node_id)
        if state is not None:
            stmt = stmt.where(LeaseRow.status == state)
        with self._db.session() as s:
            total = int(s.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
            rows = s.scalars(stmt.order_by(LeaseRow.lease_id).limit(limit).offset(offset)).all()
        return total, list(rows)

    def leases_after(self, cursor: int | None, limit: int) -> list[LeaseRow]:
        """Up to ``limit + 1`` leases with an id above ``cursor``, by id (the extra one says a page follows)."""
        with self._db.session() as s:
            q = select(LeaseRow).order_by(LeaseRow.lease_id).limit(limit + 1)
            if cursor is not None:
                q = q.where(LeaseRow.lease_id > cursor)
            return list(s.scalars(q))

    def active_leases_of_node(self, node_id: int) -> tuple[list[LeaseRow], dict[int, OfferRow]]:
        """The node's Active leases and its offers by id."""
        with self._db.session() as s:
            rows = list(s.scalars(select(LeaseRow).where(LeaseRow.node_id == node_id, LeaseRow.status == "Active")))
            offers = {o.offer_id: o for o in s.scalars(select(OfferRow).where(OfferRow.node_id == node_id))}
        return rows, offers

    def report_count(self) -> int:
        with self._db.session() as s:
            return int(s.scalar(select(func.count()).select_from(Report)) or 0)
