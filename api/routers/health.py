"""Liveness and state of the bridge, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from ..deps import ServicesDep

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
def health(svc: ServicesDep) -> HealthOut:
    """``ok`` when the chain answers; the indexer's lag is head − indexedBlock."""
    try:
        with svc.gateway.lock:
            head = int(svc.chain.w3.eth.block_number)
        status = "ok"
    except Exception:
        head, status = -1, "chain_unreachable"
    return HealthOut(
        status=status,
        chainBackend=svc.chain.backend,
        chainId=svc.gateway.chain_id,
        head=head,
        indexedBlock=svc.indexer.indexed_block(),
        pendingLeases=svc.relayer.pending_count(),
        escrow=svc.client.escrow.address,
        registry=svc.client.registry.address,
        reputation=svc.client.reputation.address,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(svc: ServicesDep) -> Response:
    svc.metrics.relayer_pending.set(svc.relayer.pending_count())
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
