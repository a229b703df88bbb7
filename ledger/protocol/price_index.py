"""The verified price index: per GPU model, region, payment token and UTC day, the price actually paid per
billable GPU-hour, computed only from checkpoints settled on chain. Pure Python: no web3, no HTTP; the bridge
(GET /v1/price-index...) and ``compute-ledger price-index --rpc-url`` run this same fold on the same events.

Method (docs/economics.md, "A verified price index"):

- Inputs: the registry's ``NodeRegistered`` (GPU model, region) and ``OfferPublished`` (node, token, billing
  mode), the escrow's ``LeaseOpened`` (lease → offer) and every settled checkpoint (``CheckpointSettled``, one
  per record of ``CheckpointsSettled``: the new checkpoint word and the amount it charged). Nothing the bridge
  says, no offer's asking price: what was paid.
- Each checkpoint contributes (charged, billable GPU-ms): billable = the growth of the lease's billing-mode
  counter (allocated, busy or SM-active time) since its previous checkpoint; its day is the UTC day of the
  block that settled it (``settledAt`` in the checkpoint word).
- A lease-day is one lease's checkpoints of one day: unit price = Σ charged × 3,600,000 / Σ billable ms
  (token base units per GPU-hour). Lease-days without billable time are left out.
- Outliers: in each cell (model, region, token, day) the volume-weighted median of its lease-days' unit prices
  is taken; a lease-day priced above ``OUTLIER_FACTOR`` × that median or below it / ``OUTLIER_FACTOR`` is
  excluded (and counted). One lease-day alone is its own median.
- Index: Σ charged × 3,600,000 // Σ billable ms over the kept lease-days (volume-weighted, rounded down).
  Published only with at least ``MIN_GPU_HOURS`` billable GPU-hours and ``MIN_LEASES`` distinct leases kept;
  otherwise the cell is listed with ``price`` None and why.
- Band (per model, region, token): over the last ``BAND_DAYS`` days up to a day, the volume-weighted 10th and
  90th percentiles of the kept lease-days' unit prices.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .economics import as_int, checkpoint_billable
from .settlement import Checkpoint

MS_PER_HOUR = 3_600_000
DAY_S = 86_400
OUTLIER_FACTOR = 3
MIN_GPU_HOURS = 1
MIN_LEASES = 2
BAND_DAYS = 7
INDEX_EVENTS = frozenset({"NodeRegistered", "OfferPublished", "LeaseOpened", "CheckpointSettled"})


@dataclass(frozen=True, slots=True)
class IndexEvent:
    """An event as the index reads it, in chain order (block, log index, record index)."""

    name: str
    args: Mapping[str, Any]
    order: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class CellKey:
    gpu_model: str
    region: str
    token: str
    day: str  # YYYY-MM-DD (UTC)


@dataclass
class LeaseDay:
    lease_id: int
    charged: int = 0
    billable_ms: int = 0

    @property
    def unit_price(self) -> int:
        return self.charged * MS_PER_HOUR // self.billable_ms


@dataclass
class Cell:
    key: CellKey
    lease_days: list[LeaseDay] = field(default_factory=list)
    kept: list[LeaseDay] = field(default_factory=list)
    outliers: int = 0
    price: int | None = None  # token base units per billable GPU-hour
    note: str = ""

    @property
    def charged(self) -> int:
        return sum(d.charged for d in self.kept)

    @property
    def billable_ms(self) -> int:
        return sum(d.billable_ms for d in self.kept)

    def to_json(self) -> dict[str, Any]:
        return {
            "gpuModel": self.key.gpu_model,
            "region": self.key.region,
            "token": self.key.token,
            "day": self.key.day,
            "pricePerGpuHour": None if self.price is None else str(self.price),
            "chargedTotal": str(self.charged),
            "billableGpuMs": self.billable_ms,
            "leases": len({d.lease_id for d in self.kept}),
            "outliersExcluded": self.outliers,
            "note": self.note,
        }


def _label(value: Any) -> str:
    """A bytes32 / bytes8 label (bytes, or 0x-hex from JSON) as text."""
    raw = bytes(value) if isinstance(value, (bytes, bytearray)) else bytes.fromhex(str(value)[2:])
    return raw.rstrip(b"\x00").decode("utf-8", "replace")


def _day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")


def _weighted_quantile(days: list[LeaseDay], pct: int) -> int:
    """The unit price at the ``pct``-th percentile of the lease-days weighted by billable time (the lowest price
    whose cumulative weight reaches it)."""
    ordered = sorted(days, key=lambda d: d.unit_price)
    total = sum(d.billable_ms for d in ordered)
    run = 0
    for d in ordered:
        run += d.billable_ms
        if run * 100 >= pct * total:
            return d.unit_price
    return ordered[-1].unit_price


def lease_days(events: Iterable[IndexEvent]) -> dict[CellKey, dict[int, LeaseDay]]:
    """Every settled checkpoint's (charged, billable GPU-ms), summed per cell and lease."""
    nodes: dict[int, tuple[str, str]] = {}
    offers: dict[int, tuple[int, str, int]] = {}  # offer -> node, token, billing mode
    leases: dict[int, int] = {}  # lease -> offer
    last_billable: dict[int, int] = {}
    cells: dict[CellKey, dict[int, LeaseDay]] = {}
    for e in sorted(events, key=lambda e: e.order):
        a = e.args
        if e.name == "NodeRegistered":
            nodes[as_int(a["nodeId"])] = (_label(a["gpuModel"]), _label(a["region"]))
        elif e.name == "OfferPublished":
            o = a["offer"]
            offers[as_int(a["offerId"])] = (as_int(o["nodeId"]), str(o["token"]), as_int(o["billingMode"]))
        elif e.name == "LeaseOpened":
            leases[as_int(a["leaseId"])] = as_int(a["offerId"])
        elif e.name == "CheckpointSettled":
            lid = as_int(a["leaseId"])
            offer = offers.get(leases.get(lid, -1))
            if offer is None or offer[0] not in nodes:
                continue  # a lease of another deployment window: nothing to place it by
            node_id, token, mode = offer
            ck = Checkpoint.of(as_int(a["ckpt"]))
            billable = checkpoint_billable(mode, ck)
            delta = billable - last_billable.get(lid, 0)
            last_billable[lid] = billable
            model, region = nodes[node_id]
            key = CellKey(model, region, token, _day(ck.settled_at))
            ld = cells.setdefault(key, {}).setdefault(lid, LeaseDay(lid))
            ld.charged += as_int(a["charged"])
            ld.billable_ms += delta
    return cells


def price_index(events: Iterable[IndexEvent], *, outlier_factor: int = OUTLIER_FACTOR,
                min_gpu_hours: int = MIN_GPU_HOURS, min_leases: int = MIN_LEASES) -> list[Cell]:
    """The index, one cell per (GPU model, region, token, day), sorted by those."""
    out: list[Cell] = []
    for key, by_lease in sorted(lease_days(events).items(), key=lambda kv: (kv[0].gpu_model, kv[0].region, kv[0].token, kv[0].day)):
        cell = Cell(key, [d for d in by_lease.values() if d.billable_ms > 0])
        if cell.lease_days:
            median = _weighted_quantile(cell.lease_days, 50)
            for d in cell.lease_days:
                if d.unit_price * outlier_factor < median or d.unit_price > median * outlier_factor:
                    cell.outliers += 1
                else:
                    cell.kept.append(d)
        leases_kept = len({d.lease_id for d in cell.kept})
        if cell.billable_ms < min_gpu_hours * MS_PER_HOUR:
            cell.note = f"below the minimum volume ({min_gpu_hours} billable GPU-hour)"
        elif leases_kept < min_leases:
            cell.note = f"fewer than {min_leases} leases"
        else:
            cell.price = cell.charged * MS_PER_HOUR // cell.billable_ms
        out.append(cell)
    return out


def latest(cells: list[Cell]) -> list[Cell]:
    """Per (model, region, token), the most recent day with a published price."""
    best: dict[tuple[str, str, str], Cell] = {}
    for c in cells:
        if c.price is not None:
            k = (c.key.gpu_model, c.key.region, c.key.token)
            if k not in best or c.key.day > best[k].key.day:
                best[k] = c
    return [best[k] for k in sorted(best)]


def band(cells: list[Cell], gpu_model: str, region: str | None = None, token: str | None = None, *,
         until_day: str | None = None, days: int = BAND_DAYS) -> dict[str, Any] | None:
    """The reference band of a GPU model (optionally one region and token): the volume-weighted 10th and 90th
    percentiles of kept lease-days' unit prices over the ``days`` days up to ``until_day`` (default: the
    model's latest day). None without any priced lease-day."""
    mine = [c for c in cells if c.key.gpu_model == gpu_model and (region is None or c.key.region == region)
            and (token is None or c.key.token == token)]
    if not mine:
        return None
    last = until_day or max(c.key.day for c in mine)
    first = (dt.date.fromisoformat(last) - dt.timedelta(days=days - 1)).isoformat()
    kept = [d for c in mine if first <= c.key.day <= last for d in c.kept]
    if not kept:
        return None
    return {
        "gpuModel": gpu_model, "region": region, "token": token, "from": first, "to": last,
        "low": str(_weighted_quantile(kept, 10)), "high": str(_weighted_quantile(kept, 90)),
        "median": str(_weighted_quantile(kept, 50)), "leaseDays": len(kept),
        "billableGpuMs": sum(d.billable_ms for d in kept),
    }


CSV_COLUMNS = ("gpuModel", "region", "token", "day", "pricePerGpuHour", "chargedTotal", "billableGpuMs", "leases",
               "outliersExcluded", "note")


def to_csv(cells: Iterable[Cell]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for c in cells:
        j = c.to_json()
        w.writerow(["" if j[k] is None else j[k] for k in CSV_COLUMNS])
    return out.getvalue()


def band_status(price_per_gpu_hour: int, low: int, high: int) -> str:
    """Where a price stands against a band: ``below``, ``within`` (bounds included) or ``above``."""
    if price_per_gpu_hour < low:
        return "below"
    return "above" if price_per_gpu_hour > high else "within"
