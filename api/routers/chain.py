"""Where the bridge's chain is (api/AUDIT_API.md §0): what an auditor needs to check the bridge against the chain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..deps import ChainInfoDep
from ..errors import READ_RESPONSES

router = APIRouter(prefix="/v1/chain", tags=["audit"])


class ChainOut(BaseModel):
    chainId: int
    rpcUrl: str | None = Field(description="an RPC endpoint of the chain, or null; auditors may use any node")
    rpcNote: str
    deployment: dict[str, Any] = Field(description="the deployment record: addresses, roles, configuration, block")
    domain: dict[str, Any] = Field(description="the EIP-712 domain reports are signed under")
    abis: dict[str, str] = Field(description="where to fetch the ABI of each deployed address")
    challengePeriodS: int = Field(description="seconds a checkpoint's charge waits before it can be released")
    chainTime: int | None = Field(description="the chain's current time: the latest block's timestamp (unix s)")


@router.get("", response_model=ChainOut)
def chain(info: ChainInfoDep) -> ChainOut:
    """The chain id, an RPC URL, the deployment record, the EIP-712 domain and the contracts' ABIs: everything
    an auditor needs to read the chain itself and trust the bridge for nothing the chain holds."""
    return ChainOut(**info.document())


@router.get("/abi/{name}", responses=READ_RESPONSES)
def abi(name: str, info: ChainInfoDep) -> list[dict[str, Any]]:
    """The ABI a deployed address answers to (``LeaseEscrow``: the whole escrow interface, views included)."""
    return info.abi(name)
