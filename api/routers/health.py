"""Liveness and state of the bridge, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
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


@router.get("/v1/health", response_model=HealthOut)
def health(health: HealthDep) -> HealthOut:
    """``ok`` when the chain answers; the indexer's lag is head − indexedBlock."""
    return HealthOut(**health.status())


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(health: HealthDep) -> Response:
    return Response(health.prometheus(), media_type=CONTENT_TYPE_LATEST)
