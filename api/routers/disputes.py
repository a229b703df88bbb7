"""Disputes: list them, and resolve one (arbiters)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ..deps import CallerDep, DisputesDep
from ..errors import COMMON_RESPONSES, READ_RESPONSES
from ..schemas import ActionOut, Strict
from .leases import LeaseId

router = APIRouter(tags=["disputes"])


class DisputeList(BaseModel):
    disputes: list[dict[str, Any]] = Field(
        description="leaseId, buyer, frozenWei, openedAt (unix s), status (open | resolved), resolution "
        "(buyerShareWei, providerShareWei, slashedWei, providerFault, resolvedAt) once resolved"
    )


class ResolveIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"buyerShareBps": 5000, "providerFault": False}]})
    buyerShareBps: int = Field(ge=0, le=10_000, description="share of the frozen amount refunded to the buyer")
    providerFault: bool = Field(default=False, description="also slash the provider's stake to the buyer")


@router.get("/v1/disputes", response_model=DisputeList, responses=READ_RESPONSES)
def list_disputes(
    disputes: DisputesDep, status: Annotated[Literal["open", "resolved", "all"], Query()] = "open"
) -> DisputeList:
    """Disputes in chain order (default: the open ones, whose charges are frozen until an arbiter rules)."""
    return DisputeList(disputes=disputes.list(status))


@router.post("/v1/leases/{leaseId}/resolve", response_model=ActionOut, responses=COMMON_RESPONSES)
def resolve_dispute(leaseId: LeaseId, body: ResolveIn, caller: CallerDep, disputes: DisputesDep) -> ActionOut:
    """Rule on a lease's open dispute (an account with the ``arbiter`` role, or a wallet holding the escrow's
    ARBITER_ROLE): ``buyerShareBps`` of the frozen charges go back to the buyer, the rest to the holder; with
    ``providerFault`` the provider's stake is slashed to the buyer. 409 without an open dispute."""
    return disputes.resolve(caller, leaseId, body.buyerShareBps, body.providerFault)
