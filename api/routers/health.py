"""Liveness and state of the bridge, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from ..deps import HealthDep

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: str
    chainBackend: str
    chainId: int
    head: int
    indexedBlock: int
    pendingLeases: int
    escrow: str
    registry: str
    reputation: str


@router.get(
    "/v1/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the chain (or the store) does not answer: status says which"}},
)
def health(health: HealthDep) -> Response:
    """200 ``ok`` when the chain and the store answer; 503 otherwise (``chain_unreachable``,
    ``store_unreachable``), so a load balancer takes the bridge out. The indexer's lag is head − indexedBlock."""
    out = HealthOut(**health.status())
    return JSONResponse(out.model_dump(), status_code=200 if out.status == "ok" else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(health: HealthDep) -> Response:
    return Response(health.prometheus(), media_type=CONTENT_TYPE_LATEST)
