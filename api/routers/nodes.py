"""GPU nodes: register, rotate the attestor key, deactivate; active leases of a node for its attestor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..deps import CallerDep, NodesDep
from ..errors import COMMON_RESPONSES, READ_RESPONSES
from ..schemas import ActionOut, Address, Hex32, Strict

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])

NodeId = Annotated[int, Path(ge=0, lt=2**63)]


class NodeIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"attestor": "0xD2Dd117bAF36791B4ce32F30fd041c4aaa7018bE", "gpuModel": "NVIDIA H100 80GB HBM3", "gpuUuids": ["GPU-d0853727-e074-4b70-b839-cfdf259f6c37"], "vramMiB": 81559, "maxPowerMwPerGpu": 700000, "region": "eu-west", "gpm": True}]})
    attestor: Address = Field(description="the key that signs this node's metering reports")
    gpuModel: str = Field(min_length=1, max_length=32, description="e.g. NVIDIA H100 80GB HBM3 (≤ 32 bytes)")
    gpuUuids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, min_length=1, max_length=256, description="GPU UUIDs as NVML prints them"
    )
    gpuUuidHashes: list[Hex32] | None = Field(default=None, min_length=1, max_length=256)
    vramMiB: int = Field(ge=1, lt=2**32)
    maxPowerMwPerGpu: int = Field(ge=1, lt=2**32)
    region: str = Field(min_length=1, max_length=8, description="region code, ≤ 8 bytes, e.g. eu-west1")
    gpm: bool = Field(
        default=False,
        description="the GPUs measure SM activity (NVML GPM: Hopper and later; `compute-ledger attest gpus` says): "
        "needed to publish SM-active offers",
    )

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
    gpm: bool = Field(description="registered as measuring SM activity (GPM): may publish SM-active offers")
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


@router.post("", response_model=ActionOut, responses=COMMON_RESPONSES)
def register_node(body: NodeIn, caller: CallerDep, nodes: NodesDep) -> ActionOut:
    """Register a node of the calling provider; ``result.nodeId`` is the new id."""
    return nodes.register(caller, body.attestor, body.gpuModel, body.gpuUuids, body.gpuUuidHashes, body.vramMiB,
                          body.maxPowerMwPerGpu, body.region, gpm=body.gpm)


@router.post("/{nodeId}/rotate-attestor", response_model=ActionOut, responses=COMMON_RESPONSES)
def rotate_attestor(nodeId: NodeId, body: RotateIn, caller: CallerDep, nodes: NodesDep) -> ActionOut:
    """Replace the node's attestor key (the node's provider only)."""
    return nodes.rotate_attestor(caller, nodeId, body.attestor)


@router.post("/{nodeId}/deactivate", response_model=ActionOut, responses=COMMON_RESPONSES)
def deactivate_node(nodeId: NodeId, caller: CallerDep, nodes: NodesDep) -> ActionOut:
    """No new offers or leases on the node; running leases continue (the node's provider only)."""
    return nodes.deactivate(caller, nodeId)


@router.get("/{nodeId}", response_model=NodeOut, responses=READ_RESPONSES)
def get_node(nodeId: NodeId, nodes: NodesDep) -> NodeOut:
    return NodeOut(**nodes.get(nodeId))


@router.get("/{nodeId}/active-leases", response_model=ActiveLeases, responses=READ_RESPONSES)
def active_leases(nodeId: NodeId, nodes: NodesDep) -> ActiveLeases:
    """Leases the node's attestor must meter now (api/METERING_API.md §2)."""
    return ActiveLeases(leases=[ActiveLease(**x) for x in nodes.active_leases(nodeId)])
