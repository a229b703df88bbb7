"""The indexer: follows the contracts' events into the store, and keeps projections for cheap reads.

From the deployment block on, it reads ``eth_getLogs`` in chunks up to ``head − confirmations``, stores
every decoded event with its block, and refreshes the projections (providers, nodes, offers, leases) of
the entities the events touch by reading their current state from the contracts. A ``CheckpointsSettled``
log is stored as one ``CheckpointSettled`` event per record (as ``ledger.chain.events`` decodes it): they
share the log's index and differ by ``record_index``. Its checkpoint (last indexed block and hash)
survives restarts. Before each pass it checks that the checkpoint block's hash is still the chain's; when
it is not (a reorg), it walks back through the stored block hashes to the newest block the chain still
has, deletes everything indexed above it and re-reads the touched entities.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from ledger.chain.suite import LedgerChain

from ..errors import ApiError, jsonable
from ..metrics import Metrics
from ..chain_reads import ChainViews
from ..store import EventRow, Store
from ..store.models import LeaseRow, NodeRow

log = logging.getLogger("api.indexer")
CHECKPOINT = "events"
KEEP_BLOCK_HASHES = 2048  # how far back a reorg can be rewound exactly
T = TypeVar("T")


# events after which a lease's projected fields (state, times, duration) may differ; settlement events only
# move money, which readers take from the chain itself
LEASE_STATE_EVENTS = frozenset(
    {"LeaseOpened", "LeaseActivated", "LeaseClosed", "LeaseExpired", "LeaseExhausted", "ToppedUp",
     "DisputeOpened", "DisputeResolved"}
)


@dataclass(frozen=True)
class IndexerSettings:
    confirmations: int
    chunk_blocks: int
    poll_s: float


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
    def __init__(self, store: Store, ledger: LedgerChain, metrics: Metrics, settings: IndexerSettings) -> None:
        self.store = store
        self.ledger = ledger
        self.views = ChainViews(ledger)
        self.metrics = metrics
        self.settings = settings
        self.lock = threading.RLock()
        self.generation = 0  # bumped on every projection change: read caches key on it
        self.head_ts = 0  # timestamp (s) of the last indexed block: "now" for offer availability
        self._row_cache: dict[tuple[str, int], Any] = {}
        self._cache_generation = -1
        self.start_block = int(ledger.deployment.block)

    # --- loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.poll_s):
            try:
                self.sync_once()
            except Exception:  # keep following the chain; the error is logged and retried next tick
                log.exception("indexer pass failed")

    def indexed_block(self) -> int:
        cp = self.store.index.checkpoint(CHECKPOINT)
        return cp[0] if cp else self.start_block - 1

    def _chain(self, read: Callable[[], T]) -> T:
        """A chain read; its :class:`ledger.chain.errors.ChainError` propagates (the loop logs it and retries;
        a request that indexes its own write answers it through the app's handler)."""
        return read()

    def sync_once(self) -> int:
        """One pass up to head − confirmations; returns the number of events stored. One pass at a time per
        database (the ``indexer`` lock: bridges sharing it index in turn; their writes are idempotent anyway)."""
        with self.store.locks.hold("indexer"), self.lock:
            head = self._chain(self.ledger.read.block_number)
            self.metrics.chain_head.set(head)
            target = head - self.settings.confirmations
            self._check_reorg()
            start = self.indexed_block() + 1
            stored = 0
            while start <= target:
                end = min(target, start + self.settings.chunk_blocks - 1)
                stored += self._index_range(start, end)
                start = end + 1
            indexed = self.indexed_block()
            if self.head_ts == 0 and indexed >= 0:
                self.head_ts = int(self._chain(lambda: self.ledger.read.block(indexed))["timestamp"])
            self.metrics.indexed_block.set(indexed)
            return stored

    # --- one range ------------------------------------------------------------------------------------

    def _index_range(self, start: int, end: int) -> int:
        events = self._chain(lambda: self.ledger.events.logs_between(start, end))
        numbers = sorted({e.block_number for e in events} | {end})
        blocks: dict[int, Any] = dict(zip(numbers, self._chain(lambda: self.ledger.read.blocks(numbers))))
        touched = Touched()
        rows = []
        for e in events:
            touched.add(e.args, e.name)
            rows.append(
                EventRow(
                    block_number=e.block_number,
                    block_hash=e.block_hash,
                    block_ts=int(blocks[e.block_number]["timestamp"]),
                    tx_hash=e.tx_hash,
                    log_index=e.log_index,
                    record_index=e.record_index,
                    contract=e.contract,
                    name=e.name,
                    args=jsonable(e.args),
                    lease_id=_small(e.args.get("leaseId")),
                    node_id=_small(e.args.get("nodeId")),
                    offer_id=_small(e.args.get("offerId")),
                )
            )
        self.store.index.store_range(
            CHECKPOINT,
            rows,
            [(n, _hex(b["hash"]), _hex(b["parentHash"])) for n, b in blocks.items()],
            (end, _hex(blocks[end]["hash"])),
            KEEP_BLOCK_HASHES,
        )
        self.head_ts = int(blocks[end]["timestamp"])
        if touched:
            self._refresh(touched)
        return len(events)

    # --- reorgs ---------------------------------------------------------------------------------------

    def _check_reorg(self) -> None:
        cp = self.store.index.checkpoint(CHECKPOINT)
        if cp is None:
            return
        if self._chain_hash(cp[0]) == cp[1]:
            return
        fork = self.start_block - 1
        for number, h in self.store.index.known_blocks(cp[0]):
            if self._chain_hash(number) == h:
                fork = number
                break
        fork_hash = self._chain_hash(fork) if fork >= 0 else "0x" + "00" * 32
        log.warning("reorg: indexed block %s changed; rewinding to %s", cp[0], fork)
        touched = Touched()
        for args in self.store.index.rewind(CHECKPOINT, fork, fork_hash or ""):
            touched.add(_ints(args))
        self.metrics.reorgs.inc()
        if touched:
            self._refresh(touched)

    def _chain_hash(self, number: int) -> str | None:
        """The chain's hash of block ``number``; None only for a block the chain no longer has (a fork). Any
        other failure (node down, timeout) propagates: taking it for a reorg would rewind the whole index."""
        block = self._chain(lambda: self.ledger.read.block_or_none(number)) if number >= 0 else None
        if block is None:
            return None
        return _hex(block["hash"])

    # --- projections ----------------------------------------------------------------------------------

    def _refresh(self, t: Touched) -> None:
        for lease_id in sorted(t.leases):
            view = self._try(self.views.lease, lease_id)
            if view is None:
                self.store.index.drop("lease", lease_id)
            else:
                before = self.store.index.lease(lease_id)
                if before is None or before.status != view["state"]:  # the offer's availability changed
                    t.offers.add(int(view["offerId"]))
                    t.providers.add(str(view["provider"]))
                self.store.index.put_lease(jsonable(view))
        for node_id in sorted(t.nodes):
            nview = self._try(self.views.node, node_id)
            if nview is None:
                self.store.index.drop("node", node_id)
            else:
                self.store.index.put_node(jsonable(nview))
                t.offers.update(self.store.index.offer_ids_of_node(node_id))
        for addr in sorted(t.providers):
            p = self._try(self.views.provider, addr)
            if p is None or not p["registered"]:
                self.store.index.drop("provider", addr)
                continue
            rep = self._try(self.views.reputation, addr) or {"scoreBps": 0, "counts": {}}
            self.store.index.put_provider(addr, jsonable({**p, **rep}), int(rep["scoreBps"]))
        changed = bool(t.leases or t.nodes or t.providers)
        for offer_id in sorted(t.offers):
            o = self._try(self.views.offer, offer_id)
            if o is None:
                changed |= self.store.index.drop("offer", offer_id)
            else:
                self._put_offer(o)
                changed = True
        if changed:  # read caches are keyed by generation: an unknown id looked up changes nothing
            self.generation += 1

    def _try(self, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return fn(*args)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def _put_offer(self, o: dict[str, Any]) -> None:
        node = self.store.index.node(o["nodeId"])
        nd = json.loads(node.data) if node else {}
        view = {
            **o,
            "gpuModel": nd.get("gpuModel", ""),
            "vramMiB": int(nd.get("vramMiB", 0)),
            "region": nd.get("region", ""),
            "nodeActive": bool(nd.get("active", False)),
        }
        self.store.index.put_offer(jsonable(view), int(o["pricePerGpuHour"]))

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
        row = self.store.index.node(node_id)
        if row is None and 0 <= node_id < 2**63:
            n = self._try(self.views.node, node_id)
            if n is None:
                return None
            self.store.index.put_node(jsonable(n))
            row = self.store.index.node(node_id)
        if row is not None:
            self._row_cache[("node", node_id)] = row
        return row

    def lease_row(self, lease_id: int, fresh: bool = False) -> LeaseRow | None:
        cached = None if fresh else self._cache_get(("lease", lease_id))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        row = self.store.index.lease(lease_id)
        if (row is None or fresh) and 0 <= lease_id < 2**63:
            v = self._try(self.views.lease, lease_id)
            if v is None:
                return None
            self.store.index.put_lease(jsonable(v))
            row = self.store.index.lease(lease_id)
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
