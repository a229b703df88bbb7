"""Offers: publish (providers), and the price-comparison list buyers asked for (served from the indexer's
projection and cached, ``api.services.offers``)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ..deps import CallerDep, OffersDep, OptionalCaller
from ..errors import COMMON_RESPONSES, MONEY_RESPONSES, READ_RESPONSES, Invalid
from ..schemas import ETH, ActionOut, Address, Hex32, Strict
from ..services.offers import OfferFilters

router = APIRouter(prefix="/v1/offers", tags=["offers"])

OfferId = Annotated[int, Path(ge=0, lt=2**63)]
BILLING = {"reserved": 0, "metered": 1, "sm_active": 2}
SortKey = Literal[
    "price", "-price", "vram", "-vram", "gpuModel", "-gpuModel", "region", "-region",
    "reputation", "-reputation", "gpuCount", "-gpuCount",
]


class OfferIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"nodeId": 1, "gpuIndices": [0, 1], "pricePerGpuSecondWei": 2500000000000, "billingMode": "metered", "validFrom": 1764120000, "validUntil": 1764206400}]})
    nodeId: int = Field(ge=0, lt=2**63)
    gpuIndices: list[Annotated[int, Field(ge=0, lt=256)]] = Field(min_length=1, max_length=256)
    pricePerGpuSecondWei: int = Field(gt=0, lt=2**96)
    token: Address = ETH
    billingMode: Literal["reserved", "metered", "sm_active"] = Field(
        default="reserved",
        description="what a GPU-second is charged on: reserved (allocated time), metered (busy time: a kernel "
        "running), sm_active (SM-active time from GPM: the compute used; the node must be registered with gpm)",
    )
    validFrom: int = Field(ge=0, lt=2**40, description="unix seconds")
    validUntil: int = Field(ge=1, lt=2**40, description="unix seconds")
    minBuyerScoreBps: int = Field(default=0, ge=0, le=10_000)
    termsHash: Hex32 = "0x" + "00" * 32

    @model_validator(mode="after")
    def _window(self) -> "OfferIn":
        if self.validUntil <= self.validFrom:
            raise ValueError("validUntil must be after validFrom")
        return self

    @field_validator("gpuIndices")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("lists a GPU more than once")
        return v


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
    billingMode: Literal["reserved", "metered", "sm_active"]
    validFrom: int
    validUntil: int
    minBuyerScoreBps: int
    providerScoreBps: int
    gpuSetHash: str
    available: bool = Field(description="node active, no live lease, not expired")
    liveLeaseId: int
    priceBand: dict[str, Any] | None = Field(
        default=None,
        description="the GPU model's reference band in the offer's token (source operator | index; low, high per "
        "GPU-hour) and where this offer's price stands: below | within | above. A flag: offers outside are listed "
        "and leasable. null without a band",
    )


class OfferList(BaseModel):
    offers: list[OfferOut]
    total: int
    limit: int
    offset: int


@router.post("", response_model=ActionOut, responses=COMMON_RESPONSES)
def publish_offer(body: OfferIn, caller: CallerDep, offers: OffersDep) -> ActionOut:
    """Publish an offer on one of the caller's nodes; mints the capacity rights to its payout address."""
    return offers.publish(
        caller, body.nodeId, body.gpuIndices, body.pricePerGpuSecondWei, body.token, body.billingMode, body.validFrom,
        body.validUntil, body.minBuyerScoreBps, body.termsHash,
    )


class OffersFastPath:
    """ASGI shortcut for the hottest read: a ``GET /v1/offers`` whose exact query string was already
    validated and answered under the same projection generation and chain time is answered from memory,
    without routing or re-validation. Anything else goes through the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/v1/offers":
            bridge = getattr(scope["app"].state, "bridge", None)
            if bridge is not None:
                body = bridge.offers.fast(scope.get("query_string", b""))
                if body is not None:
                    scope["route"] = _FAST_ROUTE  # for the metrics middleware's route label
                    await send({"type": "http.response.start", "status": 200, "headers": _json_headers(len(body))})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


class _FastRoute:
    path = "/v1/offers"


_FAST_ROUTE = _FastRoute()


def _json_headers(length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]


@router.get("", response_model=OfferList, responses=READ_RESPONSES)
async def list_offers(
    request: Request,
    offers: OffersDep,
    gpuModel: Annotated[str | None, Query(max_length=64, description="GPU model, any part of it, any case (h100 finds NVIDIA H100 80GB HBM3)")] = None,
    region: Annotated[str | None, Query(max_length=16)] = None,
    minVramMiB: Annotated[int | None, Query(ge=0, lt=2**32)] = None,
    minGpuCount: Annotated[int | None, Query(ge=0, le=256)] = None,
    maxPricePerGpuHourWei: Annotated[int | None, Query(ge=0, lt=2**256)] = None,
    token: Annotated[Address | None, Query()] = None,
    billingMode: Annotated[Literal["reserved", "metered", "sm_active"] | None, Query()] = None,
    provider: Annotated[Address | None, Query()] = None,
    minProviderScoreBps: Annotated[int | None, Query(ge=0, le=10_000)] = None,
    available: Annotated[bool, Query(description="only offers a lease can be opened on now")] = True,
    sort: Annotated[SortKey, Query(description="sort key; '-' for descending")] = "price",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Compare offers by price per GPU-hour, GPU model, VRAM, region and provider reputation."""
    generation, epoch = offers.cache_key()
    now_s = offers.now_s()
    key = (
        generation, epoch, gpuModel, region, minVramMiB, minGpuCount, maxPricePerGpuHourWei,
        token, billingMode, provider, minProviderScoreBps, available, sort, limit, offset,
    )
    cached = offers.cached_list(key)
    if cached is None:  # the store is read off the event loop; a hit costs no thread hop
        filters = OfferFilters(
            gpu_model=gpuModel, region=region, min_vram_mib=minVramMiB, min_gpu_count=minGpuCount,
            max_price_per_gpu_hour=maxPricePerGpuHourWei, token=token,
            billing_mode=None if billingMode is None else BILLING[billingMode], provider=provider,
            min_provider_score_bps=minProviderScoreBps, available_at=now_s if available else None,
        )
        cached = await run_in_threadpool(offers.list_json, key, filters, sort, limit, offset, now_s)
    # the raw query string of a request that validated answers the same bytes next time (OffersFastPath)
    offers.remember(request.scope.get("query_string", b""), (generation, epoch), cached)
    return Response(cached, media_type="application/json")


@router.get("/{offerId}", response_model=OfferOut, responses=READ_RESPONSES)
def get_offer(offerId: OfferId, offers: OffersDep) -> Response:
    return Response(json.dumps(offers.get(offerId)), media_type="application/json")


class ListingIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"pricePerGpuSecondWei": "1500000000"}]})
    pricePerGpuSecondWei: int = Field(ge=0, lt=2**96, description="the caller's ask for its rights of the offer; 0 withdraws it")


class AskOut(BaseModel):
    offerId: int
    holder: str
    askPerGpuSecond: str = Field(description="0: no ask (a lease of these rights pays the offer's price)")
    leasePricePerGpuSecond: str = Field(description="what a lease locking these rights pays per GPU-second now (its ask, "
                                        "else the offer's price for the shortest lease)")
    rights: int = Field(description="the holder's unlocked rights of the offer, GPU-seconds")


@router.post("/{offerId}/listing", response_model=ActionOut, responses=COMMON_RESPONSES)
def list_rights(offerId: OfferId, body: ListingIn, caller: CallerDep, offers: OffersDep) -> ActionOut:
    """Resale of capacity rights: the caller, holding some of the offer's rights (ERC-1155), sets the price per
    GPU-second a lease locking its rights pays it (``POST /v1/leases`` with ``holder`` = the caller). The price
    is fixed at the lease's opening; rights a lease locked cannot be leased, moved or listed again."""
    return offers.list_rights(caller, offerId, body.pricePerGpuSecondWei)


@router.get("/{offerId}/asks/{holder}", response_model=AskOut, responses=READ_RESPONSES)
def ask(offerId: OfferId, holder: Address, offers: OffersDep) -> AskOut:
    """A holder's ask for the offer's rights, what a lease of them pays now, and how many it holds."""
    return AskOut(**offers.ask(offerId, holder))


class TierIn(Strict):
    minDurationS: int = Field(ge=0, lt=2**32, description="the lease must commit to at least this many seconds")
    pricePerGpuSecondWei: int = Field(gt=0, lt=2**96)


class TiersIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"tiers": [
        {"minDurationS": 86400, "pricePerGpuSecondWei": "900000000"},
        {"minDurationS": 604800, "pricePerGpuSecondWei": "800000000"}]}]})
    tiers: list[TierIn] = Field(max_length=2, description="at most two, the longer duration second; [] clears")


class PriceOut(BaseModel):
    offerId: int
    holder: str
    durationS: int
    pricePerGpuSecond: str = Field(description="the holder's ask, else the offer's tier for this duration, else its price")
    escrowWei: str
    feeWei: str
    totalWei: str
    dynamic: "DynamicOut | None" = Field(default=None, description="the offer's dynamic price, when it has one in force")


class DynamicIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"floorPerGpuSecondWei": "800000000",
                                                               "ceilingPerGpuSecondWei": "1600000000"}]})
    floorPerGpuSecondWei: int = Field(gt=0, lt=2**96)
    ceilingPerGpuSecondWei: int = Field(gt=0, lt=2**96)

    @model_validator(mode="after")
    def _band(self) -> "DynamicIn":
        if self.floorPerGpuSecondWei > self.ceilingPerGpuSecondWei:
            raise ValueError("floorPerGpuSecondWei must not be above ceilingPerGpuSecondWei")
        return self


class DynamicRightsIn(Strict):
    gpuSeconds: int = Field(gt=0, lt=2**256, description="GPU-seconds of the offer's rights to move to the pricer")


class PricerWithdrawIn(Strict):
    token: Address = Field(default=ETH, description="ETH (zero address) or an ERC-20")


class DynamicOut(BaseModel):
    offerId: int
    active: bool
    floorPerGpuSecond: str
    ceilingPerGpuSecond: str
    pricer: str = Field(description="the DynamicPricer: lease with holder = this address to pay the dynamic price")
    owner: str | None = Field(description="who set the rule (the offer's provider or its payout); paid the earnings")
    rulePricePerGpuSecond: str | None = Field(description="floor + (ceiling - floor) x leased / minted, rounded down")
    askPerGpuSecond: str = Field(description="the pricer's ask in force: what a lease from the pricer pays if opened now")
    leasedGpuSeconds: int = Field(description="locked + burned rights of the offer")
    mintedGpuSeconds: int
    rights: int = Field(description="the pricer's unlocked rights of the offer, GPU-seconds")


PriceOut.model_rebuild()


@router.post("/{offerId}/tiers", response_model=ActionOut, responses=COMMON_RESPONSES)
def set_tiers(offerId: OfferId, body: TiersIn, caller: CallerDep, offers: OffersDep) -> ActionOut:
    """Tiered prices by committed duration (the offer's provider): a lease committing to at least
    ``minDurationS`` pays that tier's price, fixed at opening (``GET /v1/offers/{id}/price`` shows it before)."""
    if len(body.tiers) == 2 and body.tiers[1].minDurationS <= body.tiers[0].minDurationS:
        raise Invalid("the second tier must ask a longer minimum duration than the first", field="tiers")
    return offers.set_tiers(caller, offerId, [(t.minDurationS, t.pricePerGpuSecondWei) for t in body.tiers])


@router.get("/{offerId}/price", response_model=PriceOut, responses=READ_RESPONSES)
def lease_price(offerId: OfferId, offers: OffersDep, durationS: Annotated[int, Query(ge=1, lt=2**32)],
                holder: Annotated[Address | None, Query()] = None) -> PriceOut:
    """What a lease of ``durationS`` would escrow now (price, escrow, fee, total), shown before opening and fixed at
    opening: the holder's resale ask, else the offer's tier for that duration, else the offer's price."""
    return PriceOut(**offers.price(offerId, durationS, holder))


@router.get("/{offerId}/dynamic-price", response_model=DynamicOut, responses=READ_RESPONSES)
def dynamic_price(offerId: OfferId, offers: OffersDep) -> DynamicOut:
    """The offer's dynamic price: its rule (floor, ceiling per GPU-second), the price the rule gives now from the
    share of the offer's GPU-seconds leased, and the pricer's ask in force (fixed in a lease at its opening)."""
    return DynamicOut(**offers.dynamic(offerId))


@router.post("/{offerId}/dynamic-price", response_model=ActionOut, responses=COMMON_RESPONSES)
def set_dynamic_price(offerId: OfferId, body: DynamicIn, caller: CallerDep, offers: OffersDep) -> ActionOut:
    """Set (or replace) the offer's dynamic price between a floor and a ceiling (its provider or payout address);
    then move rights to the pricer (``POST .../dynamic-price/rights``). The ask never leaves [floor, ceiling]."""
    return offers.set_dynamic(caller, offerId, body.floorPerGpuSecondWei, body.ceilingPerGpuSecondWei)


@router.post("/{offerId}/dynamic-price/rights", response_model=ActionOut, responses=COMMON_RESPONSES)
def deposit_dynamic_rights(offerId: OfferId, body: DynamicRightsIn, caller: CallerDep, offers: OffersDep) -> ActionOut:
    """The rule's owner moves rights of the offer to the pricer, which lists them at the rule's price."""
    return offers.deposit_dynamic(caller, offerId, body.gpuSeconds)


@router.delete("/{offerId}/dynamic-price", response_model=ActionOut, responses=COMMON_RESPONSES)
def end_dynamic_price(offerId: OfferId, caller: CallerDep, offers: OffersDep) -> ActionOut:
    """End the rule: the pricer's ask is withdrawn and its unlocked rights go back to the owner (again later
    for rights a running lease gives back)."""
    return offers.end_dynamic(caller, offerId)


@router.post("/{offerId}/dynamic-price/reprice", response_model=ActionOut, responses=COMMON_RESPONSES)
def reprice(offerId: OfferId, caller: OptionalCaller, offers: OffersDep) -> ActionOut:
    """Bring the pricer's ask to the rule's price now (anyone, with no key at all)."""
    return offers.reprice(caller, offerId)


@router.post("/dynamic-price/claims/{leaseId}", response_model=ActionOut, responses=MONEY_RESPONSES)
def claim_dynamic_earnings(leaseId: Annotated[int, Path(ge=1, lt=2**256)], caller: OptionalCaller,
                           offers: OffersDep) -> ActionOut:
    """Attribute what the escrow released to the pricer for a lease to the rule's owner (anyone)."""
    return offers.claim_dynamic(caller, leaseId)


@router.post("/dynamic-price/withdrawals", response_model=ActionOut, responses=MONEY_RESPONSES)
def withdraw_dynamic_earnings(body: PricerWithdrawIn, caller: CallerDep, offers: OffersDep) -> ActionOut:
    """Pull what the pricer owes the caller in ``token`` (the earnings of its offers' dynamic-price leases)."""
    return offers.withdraw_dynamic(caller, body.token)
