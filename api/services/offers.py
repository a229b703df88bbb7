"""Offers: publish (providers), and the price-comparison list buyers asked for.

The list is served from the indexer's projection, filtered and sorted in SQL, and cached per (projection
generation, chain time, query) so that a burst of identical comparisons costs one query; the exact raw query
string of a request that validated is cached too, for the HTTP fast path (``api.app``'s ``OffersFastPath``).
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from typing import Any

from ledger.chain.errors import ChainError
from ledger.chain.suite import LedgerChain
from ledger.protocol.economics import ETH, BillingMode, quote_lease

MAX_OFFER_LEAD_S = 90 * 86_400
"""How far ahead an offer's validity may start: an offer far in the future would be listed long before anyone
can lease it."""

from ..errors import ApiError, NotFound, from_chain
from ..schemas import ActionOut
from ..store import OfferQuery, Store
from ..store.models import OfferRow
from ..workers.indexer import Indexer
from .actions import Actor
from .caller import Caller
from ..chain_reads import ChainViews
from .price_index import PriceIndex


OfferFilters = OfferQuery
"""The offer list's filters (the store's query, named for the HTTP layer)."""


class _Cache:
    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.data: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self.lock:
            v = self.data.get(key)
            if v is not None:
                self.data.move_to_end(key)
            return v

    def put(self, key: tuple[Any, ...], value: bytes) -> None:
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)


def offer_out(row: OfferRow, now_s: int, bands: PriceIndex | None = None) -> dict[str, Any]:
    """An offer as the API lists it (api ``OfferOut``); ``bands``: flag its price against its reference band."""
    d = json.loads(row.data)
    band = None if bands is None else bands.flag(row.gpu_model, row.token, int(d["pricePerGpuHour"]))
    return {
        "offerId": row.offer_id,
        "provider": row.provider,
        "nodeId": row.node_id,
        "gpuModel": row.gpu_model,
        "gpuCount": row.gpu_count,
        "gpuIndices": d["gpuIndices"],
        "vramMiB": row.vram_mib,
        "region": row.region,
        "pricePerGpuSecond": str(d["pricePerGpuSecond"]),
        "pricePerGpuHour": str(d["pricePerGpuHour"]),
        "token": row.token,
        "billingMode": BillingMode(row.billing_mode).label,
        "validFrom": int(d["validFrom"]),
        "validUntil": row.valid_until,
        "minBuyerScoreBps": int(d["minBuyerScoreBps"]),
        "providerScoreBps": row.provider_score_bps,
        "gpuSetHash": d["gpuSetHash"],
        "available": bool(row.active and row.live_lease_id == 0 and row.valid_until > now_s),
        "liveLeaseId": row.live_lease_id,
        "priceBand": band,
    }


class Offers:
    def __init__(self, ledger: LedgerChain, views: ChainViews, actor: Actor, store: Store, indexer: Indexer,
                 bands: PriceIndex | None = None) -> None:
        self._ledger = ledger
        self._bands = bands
        self._calls = ledger.calls
        self._views = views
        self._actor = actor
        self._store = store
        self._indexer = indexer
        self._cache = _Cache()
        self._expiries: list[int] = []
        self._expiries_generation = -1
        self._expiries_lock = threading.Lock()
        self.raw_cache = _Cache(size=2048)

    def publish(
        self,
        caller: Caller,
        node_id: int,
        gpu_indices: list[int],
        price_per_gpu_second: int,
        token: str,
        billing_mode: str,
        valid_from: int,
        valid_until: int,
        min_buyer_score_bps: int,
        terms_hash: str,
    ) -> ActionOut:
        """Publish an offer on one of the caller's nodes; mints the capacity rights to its payout address."""
        caller.require("provider")
        node = self._views.node(node_id)
        if caller.managed and node["provider"] != caller.address:
            raise ApiError(403, "forbidden", f"node {node_id} belongs to another provider")
        now = self._views.now()
        if valid_until <= now:
            raise ApiError(422, "validation_error", f"validUntil {valid_until} is already past (now {now})", field="validUntil")
        if valid_from > now + MAX_OFFER_LEAD_S:
            raise ApiError(422, "validation_error", f"validFrom may be at most {MAX_OFFER_LEAD_S // 86_400} days ahead "
                           f"(until {now + MAX_OFFER_LEAD_S})", field="validFrom")  # fmt: skip
        if token != ETH:
            self._require_erc20(token)
        mode = BillingMode.parse(billing_mode)
        if mode == BillingMode.SM_ACTIVE and not node.get("gpm"):
            raise ApiError(
                422,
                "node_lacks_gpm",
                f"node {node_id} was registered without GPM (its GPUs cannot measure SM activity: Hopper or later "
                "needed), so it cannot sell SM-active time; offer reserved or metered time instead",
                field="billingMode",
            )
        mask = 0
        for i in gpu_indices:
            mask |= 1 << i
        call = self._calls.publish_offer(
            node_id, mask, price_per_gpu_second, token, int(mode), valid_from, valid_until,
            min_buyer_score_bps, bytes.fromhex(terms_hash[2:]),
        )
        return self._actor.act(caller, call)

    def list_rights(self, caller: Caller, offer_id: int, price_per_gpu_second: int) -> ActionOut:
        """Resale: the caller's ask for its rights of the offer (0 withdraws it)."""
        self._views.offer(offer_id)
        return self._actor.act(caller, self._calls.list_rights(offer_id, price_per_gpu_second))

    def set_tiers(self, caller: Caller, offer_id: int, tiers: list[tuple[int, int]]) -> ActionOut:
        """Tiered prices by committed duration (the offer's provider)."""
        caller.require("provider")
        offer = self._views.offer(offer_id)
        if caller.managed and offer["provider"] != caller.address:
            raise ApiError(403, "forbidden", f"offer {offer_id} belongs to another provider")
        return self._actor.act(caller, self._calls.set_tiers(offer_id, tiers))

    def price(self, offer_id: int, duration_s: int, holder: str | None) -> dict[str, Any]:
        """What a lease of ``duration_s`` would pay now, before opening it (fixed at opening). Without a
        ``holder``: the dynamic pricer's rights when the offer has a dynamic price and the pricer holds some,
        else the provider's payout address."""
        offer = self._views.offer(offer_id)
        dynamic = self.dynamic(offer_id) if self._pricer() is not None else None
        if dynamic is not None and not dynamic["active"]:
            dynamic = None
        who = holder or (dynamic["pricer"] if dynamic and dynamic["rights"] else self._views.provider(offer["provider"])["payout"])
        price = self._views.lease_price(offer_id, who, duration_s)
        q = quote_lease(price, offer["gpuCount"], duration_s, self._views.fee_bps(offer["provider"]))
        return {"offerId": offer_id, "holder": who, "durationS": duration_s, "pricePerGpuSecond": str(price),
                "escrowWei": str(q.escrowed), "feeWei": str(q.fee), "totalWei": str(q.total), "dynamic": dynamic}

    # --- dynamic prices (DynamicPricer) --------------------------------------------------------------

    def _pricer(self) -> str | None:
        return self._ledger.deployment.dynamic_pricer

    def _require_pricer(self) -> str:
        addr = self._pricer()
        if addr is None:
            raise ApiError(409, "conflict", "this deployment has no DynamicPricer: redeploy the contracts to use dynamic prices")
        return addr

    def dynamic(self, offer_id: int) -> dict[str, Any]:
        """The offer's dynamic-price rule, the price it gives now and the ask in force (what a lease from the
        pricer pays if opened now; ``POST .../dynamic-price/reprice`` brings the ask to the rule's price)."""
        pricer = self._require_pricer()
        self._views.offer(offer_id)
        read = self._ledger.read
        try:
            rule = read.dynamic_rule(offer_id)
            rights = read.rights_of(offer_id)
            quote = read.dynamic_quote(offer_id) if rule.active else None
            ask, held = read.ask_of(offer_id, pricer), read.rights_balance(pricer, offer_id)
        except ChainError as e:
            raise from_chain(e) from e
        return {
            "offerId": offer_id, "pricer": pricer, "active": rule.active,
            "owner": None if rule.owner == ETH else rule.owner,
            "floorPerGpuSecond": str(rule.floor), "ceilingPerGpuSecond": str(rule.ceiling),
            "rulePricePerGpuSecond": None if quote is None else str(quote.price),
            "askPerGpuSecond": str(ask),
            "leasedGpuSeconds": rights.locked + rights.burned, "mintedGpuSeconds": rights.minted, "rights": held,
        }

    def _require_offer_provider(self, caller: Caller, offer_id: int) -> None:
        caller.require("provider")
        offer = self._views.offer(offer_id)
        if caller.managed and caller.address not in (offer["provider"], self._views.provider(offer["provider"])["payout"]):
            raise ApiError(403, "forbidden", f"offer {offer_id} belongs to another provider")

    def set_dynamic(self, caller: Caller, offer_id: int, floor: int, ceiling: int) -> ActionOut:
        self._require_pricer()
        self._require_offer_provider(caller, offer_id)
        return self._actor.act(caller, self._calls.set_dynamic_rule(offer_id, floor, ceiling))

    def deposit_dynamic(self, caller: Caller, offer_id: int, gpu_seconds: int) -> ActionOut:
        """The rule's owner moves rights of the offer to the pricer (repriced on arrival)."""
        pricer = self._require_pricer()
        self._require_offer_provider(caller, offer_id)
        return self._actor.act(caller, self._calls.transfer_rights(caller.address, pricer, offer_id, gpu_seconds))

    def end_dynamic(self, caller: Caller, offer_id: int) -> ActionOut:
        self._require_pricer()
        self._require_offer_provider(caller, offer_id)
        return self._actor.act(caller, self._calls.end_dynamic_rule(offer_id))

    def reprice(self, caller: Caller | None, offer_id: int) -> ActionOut:
        self._require_pricer()
        self._views.offer(offer_id)
        return self._actor.act_public(caller, self._calls.reprice(offer_id))

    def claim_dynamic(self, caller: Caller | None, lease_id: int) -> ActionOut:
        """Attribute what the escrow released to the pricer for a lease to the rule's owner (anyone)."""
        self._require_pricer()
        return self._actor.act_public(caller, self._calls.pricer_claim(self._views.lease_state(lease_id)))

    def withdraw_dynamic(self, caller: Caller, token: str) -> ActionOut:
        self._require_pricer()
        return self._actor.act(caller, self._calls.pricer_withdraw(token))

    def ask(self, offer_id: int, holder: str) -> dict[str, Any]:
        self._views.offer(offer_id)
        read = self._ledger.read
        return {
            "offerId": offer_id,
            "holder": holder,
            "askPerGpuSecond": str(read.ask_of(offer_id, holder)),
            "leasePricePerGpuSecond": str(self._views.lease_price(offer_id, holder, 1)),
            "rights": read.rights_balance(holder, offer_id),
        }

    def _require_erc20(self, token: str) -> None:
        """422 unless ``token`` is a contract answering ERC-20 ``balanceOf`` and ``totalSupply``: the escrow must be
        able to pull and pay it."""
        try:
            self._ledger.read.erc20_balance(token, self._ledger.deployment.escrow)
            self._ledger.read.erc20_field(token, "totalSupply")
        except Exception:
            raise ApiError(422, "unknown_token", f"{token} is not an ERC-20 token (it does not answer balanceOf and "
                           "totalSupply); price offers in ETH or a token the escrow can pull", field="token") from None

    def cache_key(self) -> tuple[int, int]:
        """(projection generation, how many offer expiries the chain's time has passed): what an offer list
        depends on. Not the time itself: a new block changes no list unless an offer expired at it."""
        generation = self._indexer.generation
        with self._expiries_lock:
            if self._expiries_generation != generation:
                self._expiries = self._store.index.offer_expiries()
                self._expiries_generation = generation
            return generation, bisect.bisect_right(self._expiries, self._indexer.head_ts)

    def now_s(self) -> int:
        """The chain's time as the list judges availability (the last indexed block's)."""
        return self._indexer.head_ts

    def fast(self, raw_query: bytes) -> bytes | None:
        """The cached answer to a raw query string that validated before under the same cache key."""
        return self.raw_cache.get((*self.cache_key(), raw_query))

    def remember(self, raw_query: bytes, key: tuple[int, int], body: bytes) -> None:
        self.raw_cache.put((*key, raw_query), body)

    def cached_list(self, key: tuple[Any, ...]) -> bytes | None:
        return self._cache.get(key)

    def list_json(self, key: tuple[Any, ...], q: OfferQuery, sort: str, limit: int, offset: int, now_s: int) -> bytes:
        """The offer list as JSON bytes (cached under ``key``)."""
        total, rows = self._store.index.offers(q, sort, limit, offset)
        body = {"offers": [offer_out(r, now_s, self._bands) for r in rows], "total": total, "limit": limit, "offset": offset}
        data = json.dumps(body, separators=(",", ":")).encode()
        self._cache.put(key, data)
        return data

    def get(self, offer_id: int) -> dict[str, Any]:
        row = self._store.index.offer(offer_id)
        if row is None:
            self._indexer.refresh(offers=[offer_id])
            row = self._store.index.offer(offer_id)
        if row is None:
            raise NotFound("offer", offer_id)
        return offer_out(row, self._indexer.head_ts, self._bands)
