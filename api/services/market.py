"""The web market's reads: the offer book with the columns buyers compare (reputation, attested uptime, audit
status, the reference price band of settled leases), a lease's live figures (burn rate, time left, per-window
usage), a provider's nodes, leases, earnings and refusals. No HTTP: ``api.routers.web`` renders these.

Everything here is read from the indexer's projections and the bridge's report store (cached per projection
generation where it is a fold over many rows), and from the chain for a single lease's money.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ledger.protocol import MeteringReport
from ledger.protocol.economics import ETH, BillingMode
from ledger.protocol.pricing import (
    BandKey, PaidRate, PriceBand, format_units, price_per_pflop_hour, reference_price_bands, spec_bf16_tflops,
)
from ledger.protocol.settlement import Checkpoint

from ..chain_reads import ChainViews
from ..store import OfferQuery, Store
from ..store.models import OfferRow
from ..workers.indexer import Indexer
from .leases import Leases
from .metering import Metering, Refusal
from .tokens import Tokens

PAGE_SIZE = 50
ALERT_WITHIN_S = 3600
"""The lease page warns when escrow runs out within this many seconds at the current burn rate."""

PARSED_KEPT = 200_000
"""Report figures kept parsed (about 200 bytes each)."""

BOOK_SORTS = (
    "price", "vram", "gpuModel", "region", "reputation", "gpuCount", "validUntil", "billingMode", "uptime", "perf",
)  # fmt: skip


@dataclass(frozen=True)
class Unit:
    """How a token's amounts are shown."""

    symbol: str
    decimals: int

    def show(self, amount: int) -> str:
        return format_units(amount, self.decimals, self.symbol)


@dataclass(frozen=True)
class AuditMark:
    """The last audit run from the web auditor page on one of a provider's leases."""

    lease_id: int
    status: str  # VERIFIED | FAILED | COULD NOT AUDIT
    at_s: int


@dataclass
class NodeStats:
    """Attested uptime of a node: GPU time its attestor reported allocated, over the GPU time its leases ran."""

    reported_gpu_ms: int = 0
    elapsed_gpu_ms: int = 0

    @property
    def uptime_pct(self) -> float | None:
        if self.elapsed_gpu_ms <= 0:
            return None
        return min(100.0, 100.0 * self.reported_gpu_ms / self.elapsed_gpu_ms)


@dataclass
class _Folds:
    """What is folded over all leases, once per projection generation."""

    key: tuple[int, int]
    bands: dict[BandKey, PriceBand] = field(default_factory=dict)
    nodes: dict[int, NodeStats] = field(default_factory=dict)
    provider_counts: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class BookQuery:
    """The offer book's filters (None: any), beyond the store's: uptime and audit status."""

    store: OfferQuery
    min_uptime_pct: float | None = None
    audited_only: bool = False


class Market:
    def __init__(
        self, store: Store, indexer: Indexer, views: ChainViews, leases: Leases, metering: Metering, tokens: Tokens,
        *, chain_now: Callable[[], int], chain_block: Callable[[], int], challenge_period_s: int,
    ) -> None:  # fmt: skip
        self._store = store
        self._indexer = indexer
        self._views = views
        self._leases = leases
        self._metering = metering
        self._tokens = tokens
        self._now = chain_now
        self._block = chain_block
        self._docs: dict[int, tuple[tuple[int, str | None], dict[str, Any]]] = {}
        self._challenge_period_s = challenge_period_s
        self._lock = threading.Lock()
        self._folds: _Folds | None = None
        self._units: dict[str, Unit] = {ETH: Unit("ETH", 18)}
        self._audits: dict[str, AuditMark] = {}  # provider -> last web audit of one of its leases
        self._parsed: dict[str, dict[str, int]] = {}  # report struct hash -> its window figures

    # --- units -------------------------------------------------------------------------------------------

    def unit(self, token: str) -> Unit:
        """ETH, or an ERC-20 by its symbol and decimals (read once); an unreadable token shows base units."""
        u = self._units.get(token)
        if u is None:
            meta = self._tokens.metadata(token)
            sym = meta.get("symbol") if isinstance(meta.get("symbol"), str) else token[:10] + "…"
            dec = meta.get("decimals") if isinstance(meta.get("decimals"), int) else 0
            u = self._units[token] = Unit(str(sym), int(dec or 0))
        return u

    # --- folds over every lease: price bands, node uptime --------------------------------------------------

    def _fold(self) -> _Folds:
        key = (self._indexer.generation, self._indexer.head_ts // 60)
        with self._lock:
            if self._folds is not None and self._folds.key == key:
                return self._folds
        folds = _Folds(key)
        folds.bands = reference_price_bands(self.paid_rates())
        folds.nodes = self._node_stats()
        with self._lock:
            self._folds = folds
        return folds

    def paid_rates(self) -> list[PaidRate]:
        """Every lease with a settled checkpoint: its charges and the GPU time allocated up to its last one."""
        charged: dict[int, int] = {}
        last_ckpt: dict[int, int] = {}
        for e in self._store.index.events_named(["CheckpointSettled"]):
            if e.lease_id is None:
                continue
            a = json.loads(e.args)
            charged[e.lease_id] = charged.get(e.lease_id, 0) + int(a["charged"])
            last_ckpt[e.lease_id] = int(a["ckpt"])
        out: list[PaidRate] = []
        offers: dict[int, OfferRow | None] = {}
        for lease_id, total in charged.items():
            row = self._store.index.lease(lease_id)
            if row is None:
                continue
            if row.offer_id not in offers:
                offers[row.offer_id] = self._store.index.offer(row.offer_id)
            offer = offers[row.offer_id]
            if offer is None:
                continue
            alloc = Checkpoint.of(last_ckpt[lease_id]).cum_allocated_ms
            out.append(PaidRate(lease_id, offer.gpu_model, offer.region, offer.token, total, alloc))
        return out

    def _node_stats(self) -> dict[int, NodeStats]:
        _, rows = self._store.index.leases(limit=1_000_000)
        started = [(r, json.loads(r.data)) for r in rows]
        started = [(r, d) for r, d in started if int(d.get("startMs") or 0) > 0]
        bodies = self._store.reports.latest_bodies([r.lease_id for r, _ in started])
        now_ms = self._now() * 1000
        stats: dict[int, NodeStats] = {}
        for r, d in started:
            st = stats.setdefault(r.node_id, NodeStats())
            start, end = int(d["startMs"]), int(d.get("endMs") or 0)
            body = bodies.get(r.lease_id)
            rep = MeteringReport.from_json(json.loads(body)) if body else None
            through = min(now_ms, end) if end else now_ms
            if r.status not in ("Open", "Active") and rep is not None:
                through = min(through, rep.windowEndMs)  # closed early: its time ran until its last report
            st.elapsed_gpu_ms += max(0, through - start) * int(d["gpuCount"])
            st.reported_gpu_ms += rep.cumAllocatedMs if rep else 0
        return stats

    def band(self, gpu_model: str, region: str, token: str) -> PriceBand | None:
        return self._fold().bands.get((gpu_model, region, token))

    def node_stats(self, node_id: int) -> NodeStats:
        return self._fold().nodes.get(node_id, NodeStats())

    # --- audit marks (the web auditor page records its verdicts) -------------------------------------------

    def record_audit(self, provider: str, lease_id: int, status: str) -> None:
        self._audits[provider] = AuditMark(lease_id, status, self._now())

    def audit_mark(self, provider: str) -> AuditMark | None:
        return self._audits.get(provider)

    # --- small reads for the pages -------------------------------------------------------------------------

    def now_head(self) -> int:
        """Chain time of the last indexed block: "now" for offer availability (as ``GET /v1/offers``)."""
        return self._indexer.head_ts

    def node_view(self, node_id: int) -> dict[str, Any] | None:
        row = self._store.index.node(node_id)
        return None if row is None else dict(json.loads(row.data))

    def provider_summary(self, address: str) -> dict[str, Any]:
        """The provider's projection (payout, metadata, score and reputation counts) and its last web audit."""
        row = self._store.index.provider(address)
        d: dict[str, Any] = dict(json.loads(row.data)) if row is not None else {}
        return {"address": address, "scorePct": (row.score_bps if row else 0) / 100, "counts": d.get("counts") or {},
                "metadataURI": d.get("metadataURI", ""), "audit": self._audits.get(address)}  # fmt: skip

    # --- the offer book ----------------------------------------------------------------------------------

    def facets(self) -> tuple[list[str], list[str]]:
        return self._store.index.offer_facets()

    def token_choices(self) -> list[tuple[str, str]]:
        """(address, symbol) of the tokens offers are priced in, ETH first."""
        return [(t, self.unit(t).symbol) for t in sorted(self._store.index.offer_tokens(), key=lambda t: t != ETH)]

    def book(self, q: BookQuery, sort: str, page: int) -> tuple[int, list[dict[str, Any]]]:
        """(total, one page of offers as the book shows them)."""
        folds = self._fold()
        sq = q.store
        nodes: set[int] | None = None
        if q.min_uptime_pct is not None:
            nodes = {n for n, s in folds.nodes.items() if (s.uptime_pct or 0.0) >= q.min_uptime_pct}
        if q.audited_only:
            audited = {p for p, m in self._audits.items() if m.status == "VERIFIED"}
            of_audited = {n.node_id for p in audited for n in self._store.index.nodes_of(p)}
            nodes = of_audited if nodes is None else nodes & of_audited
        if nodes is not None:
            sq = OfferQuery(**{**sq.__dict__, "node_ids": frozenset(nodes)})
        offset = max(0, page - 1) * PAGE_SIZE
        key = sort.lstrip("-")
        if key == "uptime":  # not a column: order (offer, node) pairs by their node's uptime here
            pairs = self._store.index.offer_nodes(sq)
            desc = sort.startswith("-")
            pairs.sort(key=lambda p: (folds.nodes.get(p[1], NodeStats()).uptime_pct or -1.0) * (-1 if desc else 1))
            total = len(pairs)
            rows = self._store.index.offers_by_id([o for o, _ in pairs[offset : offset + PAGE_SIZE]])
        elif key == "perf":  # price per PFLOP-hour of the model's datasheet figure; models without one last
            desc = sort.startswith("-")
            known, unknown = [], []
            for offer_id, model, price in self._store.index.offer_models_prices(sq):
                tflops = spec_bf16_tflops(model)
                if tflops is None:
                    unknown.append(offer_id)
                else:
                    known.append((price_per_pflop_hour(price, tflops), offer_id))
            known.sort(key=lambda t: (-t[0] if desc else t[0], t[1]))
            ordered = [o for _, o in known] + unknown
            total = len(ordered)
            rows = self._store.index.offers_by_id(ordered[offset : offset + PAGE_SIZE])
        else:
            total, rows = self._store.index.offers(sq, sort, PAGE_SIZE, offset)
        now = self._indexer.head_ts
        return total, [self._book_row(r, folds, now) for r in rows]

    def _book_row(self, r: OfferRow, folds: _Folds, now: int) -> dict[str, Any]:
        d = json.loads(r.data)
        unit = self.unit(r.token)
        price_h = int(d["pricePerGpuHour"])
        band = folds.bands.get((r.gpu_model, r.region, r.token))
        tflops = spec_bf16_tflops(r.gpu_model)
        counts = folds.provider_counts.get(r.provider)
        if counts is None:
            counts = folds.provider_counts[r.provider] = self._provider_counts(r.provider)
        mark = self._audits.get(r.provider)
        return {
            "offerId": r.offer_id,
            "provider": r.provider,
            "nodeId": r.node_id,
            "gpuModel": r.gpu_model,
            "gpuCount": r.gpu_count,
            "vramGiB": round(r.vram_mib / 1024, 1),
            "region": r.region,
            "billing": BillingMode(r.billing_mode).label,
            "priceText": unit.show(price_h),
            "specTflops": tflops,
            "perfText": None if tflops is None else unit.show(price_per_pflop_hour(price_h, tflops)),
            "pricePerGpuHour": price_h,
            "validFrom": int(d["validFrom"]),
            "validUntil": r.valid_until,
            "scorePct": r.provider_score_bps / 100,
            "counts": counts,
            "uptimePct": folds.nodes.get(r.node_id, NodeStats()).uptime_pct,
            "audit": mark,
            "band": band,
            "bandText": None if band is None else f"{unit.show(band.low)} – {unit.show(band.high)}",
            "bandPosition": None if band is None else band.position(price_h),
            "available": bool(r.active and r.live_lease_id == 0 and r.valid_until > now),
        }

    def _provider_counts(self, address: str) -> dict[str, int]:
        """The provider's reputation counts from its projection (ratings, completed, disputes...)."""
        row = self._store.index.provider(address)
        if row is None:
            return {}
        return {k: int(v) for k, v in (json.loads(row.data).get("counts") or {}).items()}

    # --- one lease -----------------------------------------------------------------------------------------

    def lease_page(self, lease_id: int) -> dict[str, Any]:
        """The lease document plus what the buyer watches: accrued charge, burn rate, time left, per-window
        usage for the charts, and the reports with their status."""
        windows: list[dict[str, Any]] = []
        for seq, struct_hash, status, reason, cum_billable, body in self._store.reports.window_rows(lease_id):
            fig = self._figures(struct_hash, body)
            windows.append({**fig, "seq": seq, "status": status, "reason": reason, "hash": struct_hash,
                            "cumBillable": cum_billable})  # fmt: skip
        doc = self._document(lease_id, windows[-1]["hash"] if windows else None)
        unit = self.unit(doc["token"])
        price = int(doc["pricePerGpuSecond"])
        money = doc["money"]
        escrow_total = int(money["escrow"]) + sum(int(t["amount"]) for t in money["topUps"])
        settled = int(money["charged"])
        live = [w for w in windows if w["status"] != "rejected"]
        accrued = max(settled, live[-1]["cumBillable"] * price // 1000 if live else 0)
        burn = self._burn_per_s(doc, live, price)
        left = max(0, escrow_total - accrued)
        active = doc["state"] == "Active"
        time_left = None if not active or burn <= 0 else left // burn
        end_left = None
        if active and doc["endMs"]:
            end_left = max(0, doc["endMs"] // 1000 - self._now())
        stops = min((x for x in (time_left, end_left) if x is not None), default=None)
        return {
            "doc": doc,
            "unit": unit,
            "windows": windows,
            "escrowTotal": escrow_total,
            "settled": settled,
            "accrued": accrued,
            "left": left,
            "burnPerS": burn,
            "timeLeftS": time_left,
            "endLeftS": end_left,
            # the lease stops at its end or when escrow runs out, whichever comes first: top-ups extend both
            "stopsInS": stops,
            "stopsAtEnd": stops is not None and stops == end_left,
            "alert": stops is not None and stops < ALERT_WITHIN_S,
            "refunded": int(money["refund"]) + int(money["feeRefund"]),
        }

    def _document(self, lease_id: int, last_report: str | None) -> dict[str, Any]:
        """The lease document, read again when a block was mined or a report arrived since (it reads the chain
        at its head and the latest report; a page polled every few seconds by many viewers reads it once)."""
        key = (self._block(), last_report)
        cached = self._docs.get(lease_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        doc = self._leases.document(lease_id)
        if len(self._docs) >= 1000:
            self._docs.clear()
        self._docs[lease_id] = (key, doc)
        return doc

    def _figures(self, struct_hash: str, body: str) -> dict[str, int]:
        """A report's window figures, parsed once (a report's body never changes: its hash names it)."""
        fig = self._parsed.get(struct_hash)
        if fig is None:
            rep = json.loads(body)
            fig = {"startMs": int(rep["windowStartMs"]), "endMs": int(rep["windowEndMs"]), "busyMs": int(rep["busyMs"]),
                   "allocatedMs": int(rep["allocatedMs"]), "energyMj": int(rep["energyMj"]),
                   "smActiveMs": int(rep["smActiveMs"])}  # fmt: skip
            if len(self._parsed) >= PARSED_KEPT:
                self._parsed.clear()
            self._parsed[struct_hash] = fig
        return fig

    @staticmethod
    def _burn_per_s(doc: dict[str, Any], live: list[dict[str, Any]], price: int) -> int:
        """Base units per second at the current rate: the billable GPU-time of the latest windows (up to ten)
        over their wall time, times the price; before any report, the most the lease can burn."""
        full = price * int(doc["gpuCount"])
        if not live:
            return full
        recent = live[-10:]
        first_cum = live[-11]["cumBillable"] if len(live) > 10 else 0
        span_ms = recent[-1]["endMs"] - recent[0]["startMs"]
        if span_ms <= 0:
            return full
        billable = recent[-1]["cumBillable"] - first_cum
        return int(billable * price // span_ms)

    # --- a provider ----------------------------------------------------------------------------------------

    def offer_track_record(self, node_id: int, provider: str) -> dict[str, Any]:
        """For an offer's page: the node's per-day attested availability, the provider's ratings and disputes."""
        _, node_leases = self._store.index.leases(node_id=node_id, limit=500)
        _, provider_leases = self._store.index.leases(provider=provider, limit=500)
        days = self._availability_days([(r.lease_id, json.loads(r.data), r.status) for r in node_leases], self._now())
        return {"days": days, "history": self._history(provider_leases)}

    def _history(self, lease_rows: list[Any]) -> list[dict[str, Any]]:
        """Ratings and dispute outcomes of these leases, in chain order, amounts in their token."""
        token_of = {r.lease_id: str(json.loads(r.data).get("token", ETH)) for r in lease_rows}
        history: list[dict[str, Any]] = []
        for e in self._store.index.events_named(["Rated", "DisputeOpened", "DisputeResolved"]):
            if e.lease_id in token_of:
                history.append({"at": e.block_ts, "leaseId": e.lease_id, "event": e.name, "args": json.loads(e.args),
                                "tx": e.tx_hash, "unit": self.unit(token_of[e.lease_id])})  # fmt: skip
        return history

    def _availability_days(self, leases: list[tuple[int, dict[str, Any], str]], now_s: int, days: int = 14) -> list[dict[str, Any]]:
        """Per UTC day of the last ``days``: GPU time the provider's attestors reported allocated over the GPU
        time its started leases ran that day (the per-day attested availability bars)."""
        first_day = now_s // 86_400 - days + 1
        leased = [0] * days
        attested = [0] * days
        now_ms = now_s * 1000

        def spread(into: list[int], start_ms: int, end_ms: int, gpus: int) -> None:
            t = start_ms
            while t < end_ms:
                day = t // 86_400_000
                nxt = min(end_ms, (day + 1) * 86_400_000)
                if day >= first_day:
                    into[day - first_day] += (nxt - t) * gpus
                t = nxt

        for lease_id, d, status in leases:
            start = int(d.get("startMs") or 0)
            if not start:
                continue
            rows, _, _ = self._store.reports.page(lease_id, 0, 100_000, samples=False)
            windows = [json.loads(r.body) for r in rows if r.status != "rejected"]
            end = int(d.get("endMs") or 0) or now_ms
            through = min(now_ms, end)
            if status not in ("Open", "Active") and windows:
                through = min(through, int(windows[-1]["windowEndMs"]))
            spread(leased, start, through, int(d["gpuCount"]))
            for w in windows:
                ws, we = int(w["windowStartMs"]), int(w["windowEndMs"])
                if we > ws:  # the window's allocated GPU time, spread evenly over it
                    share = int(w["allocatedMs"]) / (we - ws)
                    t = ws
                    while t < we:
                        day = t // 86_400_000
                        nxt = min(we, (day + 1) * 86_400_000)
                        if day >= first_day:
                            attested[day - first_day] += int((nxt - t) * share)
                        t = nxt
        return [{"day": (first_day + i) * 86_400, "pct": None if not leased[i] else min(100.0, 100 * attested[i] / leased[i])}
                for i in range(days)]  # fmt: skip

    def provider_page(self, address: str) -> dict[str, Any]:
        """Nodes with their uptime, offers, leases with earnings, balances, refusals and failed settlements."""
        folds = self._fold()
        nodes = []
        for n in self._store.index.nodes_of(address):
            d = json.loads(n.data)
            nodes.append({**d, "uptimePct": folds.nodes.get(n.node_id, NodeStats()).uptime_pct})
        _, offer_rows = self._store.index.offers(OfferQuery(provider=address), "price", 500, 0)
        now = self._indexer.head_ts
        offers = [self._book_row(r, folds, now) for r in offer_rows]
        _, lease_rows = self._store.index.leases(provider=address, limit=500)
        challenge = self._challenge_period_s
        leases: list[dict[str, Any]] = []
        totals: dict[str, dict[str, int]] = {}
        chain_now = self._now()
        for r in lease_rows:
            v = self._views.lease(r.lease_id)
            cp = v["checkpoint"]
            pending, frozen = int(cp["pending"]), int(cp["frozen"])
            ends = int(cp["lastSettledAt"]) + challenge if pending else None
            t = totals.setdefault(v["token"], {"pending": 0, "challenge": 0, "releasable": 0, "frozen": 0})
            if frozen:
                t["frozen"] += frozen
            if pending and not frozen:
                t["releasable" if ends is not None and ends <= chain_now else "challenge"] += pending
            t["pending"] += pending
            leases.append({"leaseId": r.lease_id, "state": r.status, "buyer": r.buyer, "token": v["token"],
                           "unit": self.unit(v["token"]), "charged": int(cp["charged"]), "pending": pending,
                           "frozen": frozen, "challengeEnds": ends if pending and not frozen else None})  # fmt: skip
        tokens = sorted(set(totals) | {ETH})
        balances = {tok: self._views.withdrawable(address, tok) for tok in tokens}
        node_ids = {n["nodeId"] for n in nodes}
        refusals: list[Refusal] = self._metering.refusals(node_ids)
        lease_ids = [r.lease_id for r in lease_rows]
        last_window: dict[int, int] = {}  # node -> end (ms) of the latest window its attestor reported
        for lid, body in self._store.reports.latest_bodies(lease_ids).items():
            node_of = next(r.node_id for r in lease_rows if r.lease_id == lid)
            last_window[node_of] = max(last_window.get(node_of, 0), int(json.loads(body)["windowEndMs"]))
        for view in nodes:
            view["lastWindowEndMs"] = last_window.get(view["nodeId"])
        rejected = self._store.reports.with_reason(lease_ids)
        return {
            "address": address,
            "nodes": nodes,
            "offers": offers,
            "leases": leases,
            "totals": {tok: {k: self.unit(tok).show(v) for k, v in t.items()} for tok, t in totals.items()},
            "withdrawable": {tok: self.unit(tok).show(v) for tok, v in balances.items()},
            "refusals": refusals,
            "rejected": rejected,
            "history": self._history(lease_rows),
            "days": self._availability_days([(r.lease_id, json.loads(r.data), r.status) for r in lease_rows], chain_now),
            "symbols": {tok: self.unit(tok).symbol for tok in tokens},
            "now": chain_now,
            "audit": self._audits.get(address),
        }

