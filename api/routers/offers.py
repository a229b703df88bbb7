"""Offers: publish (providers), and the price-comparison list buyers asked for.

The list is served from the indexer's projection, filtered and sorted in SQL, and cached per (projection
generation, chain time, query) so that a burst of identical comparisons costs one query.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from starlette.types import ASGIApp, Receive, Scope, Send
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import func, select

from .. import chainview
from ..actions import act
from ..deps import CallerDep, ServicesDep
from ..errors import COMMON_RESPONSES, READ_RESPONSES, ApiError, NotFound
from ..schemas import ETH, ActionOut, Address, Hex32, Strict
from ..store import OfferRow, pad_uint

router = APIRouter(prefix="/v1/offers", tags=["offers"])

OfferId = Annotated[int, Path(ge=0, lt=2**63)]
BILLING = {"reserved": 0, "metered": 1}
SORTS = {
    "price": (OfferRow.price_per_gpu_hour, False),
    "-price": (OfferRow.price_per_gpu_hour, True),
    "vram": (OfferRow.vram_mib, False),
    "-vram": (OfferRow.vram_mib, True),
    "gpuModel": (OfferRow.gpu_model, False),
    "-gpuModel": (OfferRow.gpu_model, True),
    "region": (OfferRow.region, False),
    "-region": (OfferRow.region, True),
    "reputation": (OfferRow.provider_score_bps, False),
    "-reputation": (OfferRow.provider_score_bps, True),
    "gpuCount": (OfferRow.gpu_count, False),
    "-gpuCount": (OfferRow.gpu_count, True),
}
SortKey = Literal[
    "price", "-price", "vram", "-vram", "gpuModel", "-gpuModel", "region", "-region",
    "reputation", "-reputation", "gpuCount", "-gpuCount",
]


class OfferIn(Strict):
    nodeId: int = Field(ge=0, lt=2**63)
    gpuIndices: list[Annotated[int, Field(ge=0, lt=256)]] = Field(min_length=1, max_length=256)
    pricePerGpuSecondWei: int = Field(gt=0, lt=2**96)
    token: Address = ETH
    billingMode: Literal["reserved", "metered"] = "reserved"
    validFrom: int = Field(ge=0, lt=2**40, description="unix seconds")
    validUntil: int = Field(ge=1, lt=2**40, description="unix seconds")
    minBuyerScoreBps: int = Field(default=0, ge=0, le=10_000)
    termsHash: Hex32 = "0x" + "00" * 32

    @model_validator(mode="after")
    def _window(self) -> "OfferIn":
        if self.validUntil <= self.validFrom:
            raise ValueError("validUntil must be after validFrom")
        return self


class OfferOut(BaseModel):
    offerId: int
    provider: str
    nodeId: int
    gpuModel: str
    gpuCount: int
    gpuIndices: list[int]
    vramMiB: int
    region: str
    pricePerGpuSecond: str = Field(description="wei per GPU-second")
    pricePerGpuHour: str = Field(description="wei per GPU-hour")
    token: str
    billingMode: Literal["reserved", "metered"]
    validFrom: int
    validUntil: int
    minBuyerScoreBps: int
    providerScoreBps: int
    gpuSetHash: str
    available: bool = Field(description="node active, no live lease, not expired")
    liveLeaseId: int


class OfferList(BaseModel):
    offers: list[OfferOut]
    total: int
    limit: int
    offset: int


def offer_out(row: OfferRow, now_s: int) -> dict[str, Any]:
    d = json.loads(row.data)
    return OfferOut(
        offerId=row.offer_id,
        provider=row.provider,
        nodeId=row.node_id,
        gpuModel=row.gpu_model,
        gpuCount=row.gpu_count,
        gpuIndices=d["gpuIndices"],
        vramMiB=row.vram_mib,
        region=row.region,
        pricePerGpuSecond=str(d["pricePerGpuSecond"]),
        pricePerGpuHour=str(d["pricePerGpuHour"]),
        token=row.token,
        billingMode="metered" if row.billing_mode == 1 else "reserved",
        validFrom=int(d["validFrom"]),
        validUntil=row.valid_until,
        minBuyerScoreBps=int(d["minBuyerScoreBps"]),
        providerScoreBps=row.provider_score_bps,
        gpuSetHash=d["gpuSetHash"],
        available=bool(row.active and row.live_lease_id == 0 and row.valid_until > now_s),
        liveLeaseId=row.live_lease_id,
    ).model_dump()


@router.post("", response_model=ActionOut, responses=COMMON_RESPONSES)
def publish_offer(body: OfferIn, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Publish an offer on one of the caller's nodes; mints the capacity rights to its payout address."""
    caller.require("provider")
    node = chainview.node(svc.gateway, body.nodeId)
    if caller.managed and node["provider"] != caller.address:
        raise ApiError(403, "forbidden", f"node {body.nodeId} belongs to another provider")
    mask = 0
    for i in body.gpuIndices:
        mask |= 1 << i
    fn = svc.client.registry.functions.publishOffer(
        body.nodeId,
        mask,
        body.pricePerGpuSecondWei,
        body.token,
        BILLING[body.billingMode],
        body.validFrom,
        body.validUntil,
        body.minBuyerScoreBps,
        bytes.fromhex(body.termsHash[2:]),
    )
    return act(svc, caller, fn)


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


_cache = _Cache()
raw_cache = _Cache(size=2048)


class OffersFastPath:
    """ASGI shortcut for the hottest read: a ``GET /v1/offers`` whose exact query string was already
    validated and answered under the same projection generation and chain time is answered from memory,
    without routing or re-validation. Anything else goes through the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/v1/offers":
            services = getattr(scope["app"].state, "services", None)
            if services is not None:
                ix = services.indexer
                body = raw_cache.get((ix.generation, ix.head_ts, scope.get("query_string", b"")))
                if body is not None:
                    scope["route"] = _FAST_ROUTE  # for the metrics middleware's route label
                    await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS(len(body))})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


class _FastRoute:
    path = "/v1/offers"


_FAST_ROUTE = _FastRoute()


def _JSON_HEADERS(length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]


@router.get("", response_model=OfferList, responses=READ_RESPONSES)
async def list_offers(
    request: Request,
    svc: ServicesDep,
    gpuModel: Annotated[str | None, Query(max_length=64, description="exact GPU model")] = None,
    region: Annotated[str | None, Query(max_length=16)] = None,
    minVramMiB: Annotated[int | None, Query(ge=0, lt=2**32)] = None,
    minGpuCount: Annotated[int | None, Query(ge=0, le=256)] = None,
    maxPricePerGpuHourWei: Annotated[int | None, Query(ge=0, lt=2**256)] = None,
    token: Annotated[Address | None, Query()] = None,
    billingMode: Annotated[Literal["reserved", "metered"] | None, Query()] = None,
    provider: Annotated[Address | None, Query()] = None,
    minProviderScoreBps: Annotated[int | None, Query(ge=0, le=10_000)] = None,
    available: Annotated[bool, Query(description="only offers a lease can be opened on now")] = True,
    sort: Annotated[SortKey, Query(description="sort key; '-' for descending")] = "price",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Compare offers by price per GPU-hour, GPU model, VRAM, region and provider reputation."""
    now_s = svc.indexer.head_ts
    key = (
        svc.indexer.generation, now_s, gpuModel, region, minVramMiB, minGpuCount, maxPricePerGpuHourWei,
        token, billingMode, provider, minProviderScoreBps, available, sort, limit, offset,
    )
    cached = _cache.get(key)
    if cached is None:  # the store is read off the event loop; a hit costs no thread hop
        cached = await run_in_threadpool(
            _query_offers, svc, key, now_s, gpuModel, region, minVramMiB, minGpuCount, maxPricePerGpuHourWei,
            token, billingMode, provider, minProviderScoreBps, available, sort, limit, offset,
        )
    # the raw query string of a request that validated answers the same bytes next time (OffersFastPath)
    raw_cache.put((key[0], now_s, request.scope.get("query_string", b"")), cached)
    return Response(cached, media_type="application/json")


def _query_offers(
    svc: Any,
    key: tuple[Any, ...],
    now_s: int,
    gpuModel: str | None,
    region: str | None,
    minVramMiB: int | None,
    minGpuCount: int | None,
    maxPricePerGpuHourWei: int | None,
    token: str | None,
    billingMode: str | None,
    provider: str | None,
    minProviderScoreBps: int | None,
    available: bool,
    sort: str,
    limit: int,
    offset: int,
) -> bytes:
    q = select(OfferRow)
    if gpuModel is not None:
        q = q.where(OfferRow.gpu_model == gpuModel)
    if region is not None:
        q = q.where(OfferRow.region == region)
    if minVramMiB is not None:
        q = q.where(OfferRow.vram_mib >= minVramMiB)
    if minGpuCount is not None:
        q = q.where(OfferRow.gpu_count >= minGpuCount)
    if maxPricePerGpuHourWei is not None:
        q = q.where(OfferRow.price_per_gpu_hour <= pad_uint(maxPricePerGpuHourWei))
    if token is not None:
        q = q.where(OfferRow.token == token)
    if billingMode is not None:
        q = q.where(OfferRow.billing_mode == BILLING[billingMode])
    if provider is not None:
        q = q.where(OfferRow.provider == provider)
    if minProviderScoreBps is not None:
        q = q.where(OfferRow.provider_score_bps >= minProviderScoreBps)
    if available:
        q = q.where(OfferRow.active.is_(True), OfferRow.live_lease_id == 0, OfferRow.valid_until > now_s)
    col, desc = SORTS[sort]
    with svc.store.session() as s:
        total = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
        rows = s.scalars(
            q.order_by(col.desc() if desc else col.asc(), OfferRow.offer_id.asc()).limit(limit).offset(offset)
        ).all()
    body = {"offers": [offer_out(r, now_s) for r in rows], "total": total, "limit": limit, "offset": offset}
    data = json.dumps(body, separators=(",", ":")).encode()
    _cache.put(key, data)
    return data


@router.get("/{offerId}", response_model=OfferOut, responses=READ_RESPONSES)
def get_offer(offerId: OfferId, svc: ServicesDep) -> Response:
    with svc.store.session() as s:
        row = s.get(OfferRow, offerId)
    if row is None:
        svc.indexer.refresh(offers=[offerId])
        with svc.store.session() as s:
            row = s.get(OfferRow, offerId)
    if row is None:
        raise NotFound("offer", offerId)
    return Response(json.dumps(offer_out(row, svc.indexer.head_ts)), media_type="application/json")
