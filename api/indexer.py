"""The indexer: follows the contracts' events into the store, and keeps projections for cheap reads.

From the deployment block on, it reads ``eth_getLogs`` in chunks up to ``head − confirmations``, stores
every decoded event with its block, and refreshes the projections (providers, nodes, offers, leases) of
the entities the events touch by reading their current state from the contracts. A ``CheckpointsSettled``
log is stored as one ``CheckpointSettled`` event per record (as ``ledger.client`` decodes it): they share
the log's index and differ by ``record_index``. Its checkpoint (last
indexed block and hash) survives restarts. Before each pass it checks that the checkpoint block's hash is
still the chain's; when it is not (a reorg), it walks back through the stored block hashes to the newest
block the chain still has, deletes everything indexed above it and re-reads the touched entities.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from web3.exceptions import BlockNotFound

from . import chainview
from .errors import ApiError
from .gateway import jsonable
from .store import ChainEvent, Checkpoint, IndexedBlock, LeaseRow, NodeRow, OfferRow, ProviderRow, pad_uint

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("api.indexer")
CHECKPOINT = "events"
KEEP_BLOCK_HASHES = 2048  # how far back a reorg can be rewound exactly


# events after which a lease's projected fields (state, times, duration) may differ; settlement events only
# move money, which readers take from the chain itself
LEASE_STATE_EVENTS = frozenset(
    {"LeaseOpened", "LeaseActivated", "LeaseClosed", "LeaseExpired", "LeaseExhausted", "ToppedUp",
     "DisputeOpened", "DisputeResolved"}
)


class Touched:
    """Entities whose projection must be re-read."""

    def __init__(self) -> None:
        self.providers: set[str] = set()
        self.nodes: set[int] = set()
        self.offers: set[int] = set()
        self.leases: set[int] = set()

    def add(self, args: dict[str, Any], event: str | None = None) -> None:
        for key in ("provider", "account", "subject"):
            v = args.get(key)
            if isinstance(v, str) and v.startswith("0x") and len(v) == 42:
                self.providers.add(v)
        if isinstance(args.get("nodeId"), int):
            self.nodes.add(int(args["nodeId"]))
        if isinstance(args.get("offerId"), int):
            self.offers.add(int(args["offerId"]))
        if isinstance(args.get("leaseId"), int) and (event is None or event in LEASE_STATE_EVENTS):
            self.leases.add(int(args["leaseId"]))

    def __bool__(self) -> bool:
        return bool(self.providers or self.nodes or self.offers or self.leases)


class Indexer:
    def __init__(self, svc: "Services") -> None:
        self.svc = svc
        self.lock = threading.RLock()
        self.generation = 0  # bumped on every projection change: read caches key on it
        self.head_ts = 0  # timestamp (s) of the last indexed block: "now" for offer availability
        self._row_cache: dict[tuple[str, int], Any] = {}
        self._cache_generation = -1
        self.start_block = int(getattr(svc.deployment, "block", 0) or getattr(svc.deployment, "deploy_block", 0) or 0)
        self.addresses = [svc.client.registry.address, svc.client.escrow.address, svc.client.reputation.address]

    # --- loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.svc.settings.indexer_poll_s):
            try:
                self.sync_once()
            except Exception:  # keep following the chain; the error is logged and retried next tick
                log.exception("indexer pass failed")

    def indexed_block(self) -> int:
        with self.svc.store.session() as s:
            cp = s.get(Checkpoint, CHECKPOINT)
        return int(cp.block_number) if cp else self.start_block - 1

    def sync_once(self) -> int:
        """One pass up to head − confirmations; returns the number of events stored."""
        with self.lock:
            gw = self.svc.gateway
            w3 = gw.w3
            with gw.lock:
                head = int(w3.eth.block_number)
            self.svc.metrics.chain_head.set(head)
            target = head - self.svc.settings.confirmations
            self._check_reorg()
            start = self.indexed_block() + 1
            stored = 0
            while start <= target:
                end = min(target, start + self.svc.settings.indexer_chunk_blocks - 1)
                stored += self._index_range(start, end)
                start = end + 1
            indexed = self.indexed_block()
            if self.head_ts == 0 and indexed >= 0:
                with gw.lock:
                    self.head_ts = int(w3.eth.get_block(indexed)["timestamp"])
            self.svc.metrics.indexed_block.set(indexed)
            return stored

    # --- one range ------------------------------------------------------------------------------------

    def _index_range(self, start: int, end: int) -> int:
        gw = self.svc.gateway
        with gw.lock:
            logs = gw.w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": self.addresses})
            events = gw.decode_logs(list(logs))
            blocks: dict[int, Any] = {}
            for n in {e.block_number for e in events} | {end}:
                blocks[n] = gw.w3.eth.get_block(n)
        touched = Touched()
        with self.svc.store.write() as s:
            for e in events:
                args = jsonable(e.args)
                touched.add(e.args, e.name)
                s.add(
                    ChainEvent(
                        block_number=e.block_number,
                        block_hash=e.block_hash,
                        block_ts=int(blocks[e.block_number]["timestamp"]),
                        tx_hash=e.tx_hash,
                        log_index=e.log_index,
                        record_index=_small(e.args.get("recordIndex")) or 0,
                        contract=e.contract,
                        name=e.name,
                        args=json.dumps(args, separators=(",", ":")),
                        lease_id=_small(e.args.get("leaseId")),
                        node_id=_small(e.args.get("nodeId")),
                        offer_id=_small(e.args.get("offerId")),
                    )
                )
            for n, b in blocks.items():
                s.merge(IndexedBlock(number=n, hash=_hex(b["hash"]), parent_hash=_hex(b["parentHash"])))
            s.merge(Checkpoint(name=CHECKPOINT, block_number=end, block_hash=_hex(blocks[end]["hash"])))
            s.execute(delete(IndexedBlock).where(IndexedBlock.number < end - KEEP_BLOCK_HASHES))
        self.head_ts = int(blocks[end]["timestamp"])
        if touched:
            self._refresh(touched)
        return len(events)

    # --- reorgs ---------------------------------------------------------------------------------------

    def _check_reorg(self) -> None:
        with self.svc.store.session() as s:
            cp = s.get(Checkpoint, CHECKPOINT)
        if cp is None:
            return
        if self._chain_hash(cp.block_number) == cp.block_hash:
            return
        with self.svc.store.session() as s:
            known = s.scalars(
                select(IndexedBlock).where(IndexedBlock.number <= cp.block_number).order_by(IndexedBlock.number.desc())
            ).all()
        fork = self.start_block - 1
        for b in known:
            if self._chain_hash(b.number) == b.hash:
                fork = b.number
                break
        fork_hash = self._chain_hash(fork) if fork >= 0 else "0x" + "00" * 32
        log.warning("reorg: indexed block %s changed; rewinding to %s", cp.block_number, fork)
        touched = Touched()
        with self.svc.store.write() as s:
            for ev in s.scalars(select(ChainEvent).where(ChainEvent.block_number > fork)):
                touched.add(_ints(json.loads(ev.args)))
            s.execute(delete(ChainEvent).where(ChainEvent.block_number > fork))
            s.execute(delete(IndexedBlock).where(IndexedBlock.number > fork))
            s.merge(Checkpoint(name=CHECKPOINT, block_number=fork, block_hash=fork_hash or ""))
        self.svc.metrics.reorgs.inc()
        if touched:
            self._refresh(touched)

    def _chain_hash(self, number: int) -> str | None:
        gw = self.svc.gateway
        with gw.lock:
            try:
                return _hex(gw.w3.eth.get_block(number)["hash"])
            except BlockNotFound:
                # Only a block the chain no longer has is a fork. Any other failure (node down, timeout)
                # propagates: taking it for a reorg would rewind and delete the whole index.
                return None

    # --- projections ----------------------------------------------------------------------------------

    def _refresh(self, t: Touched) -> None:
        gw = self.svc.gateway
        for lease_id in sorted(t.leases):
            view = self._try(chainview.lease, gw, lease_id)
            if view is None:
                self._drop(LeaseRow, lease_id)
            else:
                with self.svc.store.session() as s:
                    before = s.get(LeaseRow, lease_id)
                if before is None or before.status != view["state"]:  # the offer's availability changed
                    t.offers.add(int(view["offerId"]))
                    t.providers.add(str(view["provider"]))
                self._put_lease(view)
        for node_id in sorted(t.nodes):
            nview = self._try(chainview.node, gw, node_id)
            if nview is None:
                self._drop(NodeRow, node_id)
            if nview is not None:
                self._put_node(nview)
                with self.svc.store.session() as s:
                    t.offers.update(s.scalars(select(OfferRow.offer_id).where(OfferRow.node_id == node_id)))
        scores: dict[str, int] = {}
        for addr in sorted(t.providers):
            p = self._try(chainview.provider, gw, addr)
            if p is None or not p["registered"]:
                self._drop(ProviderRow, addr)
                continue
            rep = self._try(chainview.reputation, gw, addr) or {"scoreBps": 0, "counts": {}}
            scores[addr] = int(rep["scoreBps"])
            with self.svc.store.write() as s:
                s.merge(
                    ProviderRow(
                        address=addr, data=json.dumps(jsonable({**p, **rep}), separators=(",", ":")), score_bps=scores[addr]
                    )
                )
                s.execute(update(OfferRow).where(OfferRow.provider == addr).values(provider_score_bps=scores[addr]))
        changed = bool(t.leases or t.nodes or t.providers)
        for offer_id in sorted(t.offers):
            o = self._try(chainview.offer, gw, offer_id)
            if o is None:
                changed |= self._drop(OfferRow, offer_id)
            else:
                self._put_offer(o)
                changed = True
        if changed:  # read caches are keyed by generation: an unknown id looked up changes nothing
            self.generation += 1

    def _drop(self, model: Any, key: Any) -> bool:
        """An entity the chain no longer has (a rewound reorg) leaves the projections; whether it was there."""
        with self.svc.store.write() as s:
            row = s.get(model, key)
            if row is not None:
                s.delete(row)
                return True
        return False

    def _try(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def _put_node(self, n: dict[str, Any]) -> None:
        with self.svc.store.write() as s:
            s.merge(
                NodeRow(
                    node_id=n["nodeId"],
                    provider=n["provider"],
                    attestor=n["attestor"],
                    active=n["active"],
                    data=json.dumps(jsonable(n), separators=(",", ":")),
                )
            )

    def _put_offer(self, o: dict[str, Any]) -> None:
        with self.svc.store.session() as s:
            node = s.get(NodeRow, o["nodeId"])
            prov = s.get(ProviderRow, o["provider"])
        nd = json.loads(node.data) if node else {}
        o = {
            **o,
            "gpuModel": nd.get("gpuModel", ""),
            "vramMiB": int(nd.get("vramMiB", 0)),
            "region": nd.get("region", ""),
            "nodeActive": bool(nd.get("active", False)),
        }
        with self.svc.store.write() as s:
            s.merge(
                OfferRow(
                    offer_id=o["offerId"],
                    node_id=o["nodeId"],
                    provider=o["provider"],
                    gpu_model=o["gpuModel"],
                    gpu_count=o["gpuCount"],
                    vram_mib=o["vramMiB"],
                    region=o["region"],
                    token=o["token"],
                    billing_mode=o["billingMode"],
                    live_lease_id=o["liveLeaseId"],
                    price_per_gpu_hour=pad_uint(o["pricePerGpuHour"]),
                    valid_until=o["validUntil"],
                    provider_score_bps=prov.score_bps if prov else 0,
                    active=o["nodeActive"],
                    data=json.dumps(jsonable(o), separators=(",", ":")),
                )
            )

    def _put_lease(self, v: dict[str, Any]) -> None:
        with self.svc.store.write() as s:
            s.merge(
                LeaseRow(
                    lease_id=v["leaseId"],
                    offer_id=v["offerId"],
                    node_id=v["nodeId"],
                    buyer=v["buyer"],
                    provider=v["provider"],
                    status=v["state"],
                    data=json.dumps(jsonable(v), separators=(",", ":")),
                )
            )

    # --- lookups with a chain fallback (indexer lag) --------------------------------------------------

    def _cache_get(self, key: tuple[str, int]) -> Any:
        if self._cache_generation != self.generation:
            self._row_cache.clear()
            self._cache_generation = self.generation
        return self._row_cache.get(key)

    def is_cached(self, kind: str, key: int) -> bool:
        """Whether ``node_row`` / ``lease_row`` (kind "node" / "lease") would answer from memory, without
        the store or the chain."""
        return self._cache_get((kind, key)) is not None

    def node_row(self, node_id: int) -> NodeRow | None:
        """The node's projection (cached until the projections change), read from the chain on a miss."""
        cached = self._cache_get(("node", node_id))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        with self.svc.store.session() as s:
            row = s.get(NodeRow, node_id)
        if row is None and 0 <= node_id < 2**63:
            n = self._try(chainview.node, self.svc.gateway, node_id)
            if n is None:
                return None
            self._put_node(n)
            with self.svc.store.session() as s:
                row = s.get(NodeRow, node_id)
        if row is not None:
            self._row_cache[("node", node_id)] = row
        return row

    def lease_row(self, lease_id: int, fresh: bool = False) -> LeaseRow | None:
        cached = None if fresh else self._cache_get(("lease", lease_id))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        with self.svc.store.session() as s:
            row = s.get(LeaseRow, lease_id)
        if (row is None or fresh) and 0 <= lease_id < 2**63:
            v = self._try(chainview.lease, self.svc.gateway, lease_id)
            if v is None:
                return None
            self._put_lease(v)
            with self.svc.store.session() as s:
                row = s.get(LeaseRow, lease_id)
        if row is not None:
            self._row_cache[("lease", lease_id)] = row
        return row

    def refresh(self, *, leases: Iterable[int] = (), offers: Iterable[int] = (), providers: Iterable[str] = ()) -> None:
        t = Touched()
        t.leases.update(leases)
        t.offers.update(offers)
        t.providers.update(providers)
        with self.lock:
            self._refresh(t)


def _hex(b: Any) -> str:
    return "0x" + bytes(b).hex()


def _small(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and 0 <= v < 2**63 else None


def _ints(args: dict[str, Any]) -> dict[str, Any]:
    """Stored event args back to ints where the id keys were stringified (above 2**53)."""
    out = dict(args)
    for k in ("nodeId", "offerId", "leaseId"):
        v = out.get(k)
        if isinstance(v, str) and v.isdigit():
            out[k] = int(v)
    return out


def events_of(svc: "Services", **where: int) -> list[ChainEvent]:
    with svc.store.session() as s:
        q = select(ChainEvent)
        for k, v in where.items():
            q = q.where(getattr(ChainEvent, k) == v)
        return list(s.scalars(q.order_by(ChainEvent.block_number, ChainEvent.log_index, ChainEvent.record_index)))

