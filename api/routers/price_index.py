"""The verified price index: what was actually paid per billable GPU-hour, per GPU model, region, token and
day, from settled checkpoints only (method: docs/economics.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ledger.protocol.price_index import BAND_DAYS, MIN_GPU_HOURS, MIN_LEASES, OUTLIER_FACTOR, to_csv

from ..deps import PriceIndexDep
from ..errors import READ_RESPONSES
from ..schemas import Address

router = APIRouter(prefix="/v1/price-index", tags=["price index"])

Day = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD (UTC)")]


class IndexCell(BaseModel):
    gpuModel: str
    region: str
    token: str = Field(description="zero address: ETH, else the ERC-20 the price is in")
    day: str
    pricePerGpuHour: str | None = Field(description="token base units per billable GPU-hour; null below the minimum volume")
    chargedTotal: str
    billableGpuMs: int
    leases: int
    outliersExcluded: int
    note: str


class IndexOut(BaseModel):
    method: dict[str, int] = Field(description="outlierFactor, minGpuHours, minLeases (docs/economics.md)")
    cells: list[IndexCell]


class BandOut(BaseModel):
    gpuModel: str
    region: str | None
    token: str | None
    from_: str = Field(alias="from")
    to: str
    low: str = Field(description="volume-weighted 10th percentile of lease-day prices (per GPU-hour)")
    high: str = Field(description="volume-weighted 90th percentile")
    median: str
    leaseDays: int
    billableGpuMs: int


METHOD = {"outlierFactor": OUTLIER_FACTOR, "minGpuHours": MIN_GPU_HOURS, "minLeases": MIN_LEASES}


@router.get("", response_model=IndexOut, responses={**READ_RESPONSES, 200: {
    "description": "the index", "content": {"application/json": {}, "text/csv": {}}}})
def history(index: PriceIndexDep, gpuModel: Annotated[str | None, Query(max_length=32)] = None,
            region: Annotated[str | None, Query(max_length=8)] = None, token: Annotated[Address | None, Query()] = None,
            since: Day = None, until: Day = None, format: Annotated[Literal["json", "csv"], Query()] = "json") -> Response:
    """The index's history, one cell per GPU model, region, token and day (filters optional). ``format=csv``."""
    cells = index.history(gpuModel, region, token, since, until)
    if format == "csv":
        return Response(to_csv(cells), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="price-index.csv"'})
    return Response(IndexOut(method=METHOD, cells=[IndexCell(**c.to_json()) for c in cells]).model_dump_json(),
                    media_type="application/json")


@router.get("/latest", response_model=IndexOut, responses=READ_RESPONSES)
def latest(index: PriceIndexDep) -> IndexOut:
    """Per GPU model, region and token, the most recent day with a published price."""
    return IndexOut(method=METHOD, cells=[IndexCell(**c.to_json()) for c in index.latest()])


@router.get("/band", response_model=BandOut, responses=READ_RESPONSES)
def reference_band(index: PriceIndexDep, gpuModel: Annotated[str, Query(min_length=1, max_length=32)],
                   region: Annotated[str | None, Query(max_length=8)] = None,
                   token: Annotated[Address | None, Query()] = None,
                   days: Annotated[int, Query(ge=1, le=90)] = BAND_DAYS) -> BandOut:
    """The band of a GPU model (optionally one region and token) from the index: the volume-weighted 10th–90th
    percentiles of what was paid per GPU-hour over the last ``days`` days with usage. 404 without settled usage.
    The band offers are flagged against (``priceBand`` in the offer list) is the operator's when it set one
    (``LEDGER_API_PRICE_BANDS``), else this one over 7 days."""
    return BandOut.model_validate(index.band(gpuModel, region, token, days))
