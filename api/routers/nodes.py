"""GPU nodes: register, rotate the attestor key, deactivate; active leases of a node for its attestor."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from ledger.protocol import gpu_uuid_hash

from .. import chainview
from ..actions import act
from ..deps import CallerDep, ServicesDep
from ..errors import COMMON_RESPONSES, READ_RESPONSES, ApiError
from ..schemas import ActionOut, Address, Hex32, Strict
from ..store import LeaseRow, OfferRow

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])

NodeId = Annotated[int, Path(ge=0, lt=2**63)]


class NodeIn(Strict):
    attestor: Address = Field(description="the key that signs this node's metering reports")
    gpuModel: str = Field(min_length=1, max_length=32, description="e.g. NVIDIA H100 80GB HBM3 (≤ 32 bytes)")
    gpuUuids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, min_length=1, max_length=256, description="GPU UUIDs as NVML prints them"
    )
    gpuUuidHashes: list[Hex32] | None = Field(default=None, min_length=1, max_length=256)
    vramMiB: int = Field(ge=1, lt=2**32)
    maxPowerMwPerGpu: int = Field(ge=1, lt=2**32)
    region: str = Field(min_length=1, max_length=8, description="region code, ≤ 8 bytes, e.g. eu-west1")

    @model_validator(mode="after")
    def _one_gpu_list(self) -> "NodeIn":
        if (self.gpuUuids is None) == (self.gpuUuidHashes is None):
            raise ValueError("give exactly one of gpuUuids or gpuUuidHashes")
        if len(self.gpuModel.encode()) > 32 or len(self.region.encode()) > 8:
            raise ValueError("gpuModel must fit 32 bytes and region 8 bytes")
        return self


class RotateIn(Strict):
    attestor: Address


class NodeOut(BaseModel):
    nodeId: int
    provider: str
    attestor: str
    gpuModel: str
    gpuCount: int
    vramMiB: int
    maxPowerMwPerGpu: int
    region: str
    active: bool
    gpuUuidHashes: list[str]


class ActiveLease(BaseModel):
    leaseId: int
    gpuIndices: list[int]
    startMs: int
    endMs: int
    state: str
    gpuSetHash: str


class ActiveLeases(BaseModel):
    leases: list[ActiveLease]


def _pad(text: str, size: int) -> bytes:
    return text.encode().ljust(size, b"\x00")


@router.post("", response_model=ActionOut, responses=COMMON_RESPONSES)
def register_node(body: NodeIn, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Register a node of the calling provider; ``result.nodeId`` is the new id."""
    caller.require("provider")
    if body.gpuUuids is not None:
        hashes = [gpu_uuid_hash(u) for u in body.gpuUuids]
    else:
        hashes = [bytes.fromhex(h[2:]) for h in body.gpuUuidHashes or []]
    if len(set(hashes)) != len(hashes):
        raise ApiError(422, "validation_error", "a GPU is listed twice", field="gpuUuids")
    fn = svc.client.registry.functions.registerNode(
        body.attestor, _pad(body.gpuModel, 32), hashes, body.vramMiB, body.maxPowerMwPerGpu, _pad(body.region, 8)
    )
    return act(svc, caller, fn)


def _own_node(svc: Any, caller: Any, node_id: int) -> dict[str, Any]:
    node = chainview.node(svc.gateway, node_id)
    if caller.managed and node["provider"] != caller.address:
        raise ApiError(403, "forbidden", f"node {node_id} belongs to another provider")
    return node


@router.post("/{nodeId}/rotate-attestor", response_model=ActionOut, responses=COMMON_RESPONSES)
def rotate_attestor(nodeId: NodeId, body: RotateIn, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """Replace the node's attestor key (the node's provider only)."""
    caller.require("provider")
    _own_node(svc, caller, nodeId)
    return act(svc, caller, svc.client.registry.functions.rotateAttestor(nodeId, body.attestor))


@router.post("/{nodeId}/deactivate", response_model=ActionOut, responses=COMMON_RESPONSES)
def deactivate_node(nodeId: NodeId, caller: CallerDep, svc: ServicesDep) -> ActionOut:
    """No new offers or leases on the node; running leases continue (the node's provider only)."""
    caller.require("provider")
    _own_node(svc, caller, nodeId)
    return act(svc, caller, svc.client.registry.functions.deactivateNode(nodeId))


@router.get("/{nodeId}", response_model=NodeOut, responses=READ_RESPONSES)
def get_node(nodeId: NodeId, svc: ServicesDep) -> NodeOut:
    return NodeOut(**chainview.node(svc.gateway, nodeId))


@router.get("/{nodeId}/active-leases", response_model=ActiveLeases, responses=READ_RESPONSES)
def active_leases(nodeId: NodeId, svc: ServicesDep) -> ActiveLeases:
    """Leases the node's attestor must meter now (api/METERING_API.md §2)."""
    if svc.indexer.node_row(nodeId) is None:
        raise ApiError(404, "unknown_node", f"node {nodeId} is unknown to the bridge")
    with svc.store.session() as s:
        rows = list(s.scalars(select(LeaseRow).where(LeaseRow.node_id == nodeId, LeaseRow.status == "Active")))
        offers = {o.offer_id: o for o in s.scalars(select(OfferRow).where(OfferRow.node_id == nodeId))}
    out = []
    for r in rows:
        d = json.loads(r.data)
        offer = offers.get(r.offer_id)
        indices = json.loads(offer.data)["gpuIndices"] if offer else []
        out.append(
            ActiveLease(
                leaseId=r.lease_id,
                gpuIndices=indices,
                startMs=int(d["startMs"]),
                endMs=int(d["endMs"]),
                state=r.status,
                gpuSetHash=d["gpuSetHash"],
            )
        )
    return ActiveLeases(leases=sorted(out, key=lambda x: x.leaseId))


