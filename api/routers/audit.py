"""What auditors list and download (api/AUDIT_API.md §4-5). Public: anybody may audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..deps import AuditDep
from ..errors import READ_RESPONSES

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditLease(BaseModel):
    leaseId: int
    state: str
    reports: int
    settlements: int


class AuditLeases(BaseModel):
    leases: list[AuditLease]
    nextCursor: int | None


@router.get("/leases", response_model=AuditLeases, responses=READ_RESPONSES)
def audit_leases(
    audit: AuditDep,
    cursor: Annotated[int | None, Query(ge=0, lt=2**63, description="leaseId to start after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> AuditLeases:
    """Every lease the bridge knows, with its report and settlement counts."""
    leases, next_cursor = audit.leases(cursor, limit)
    return AuditLeases(leases=[AuditLease(**x) for x in leases], nextCursor=next_cursor)


@router.get(
    "/archive",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "one report entry per line"}, **READ_RESPONSES},
)
def archive(audit: AuditDep, leaseId: Annotated[int | None, Query(ge=0, lt=2**63)] = None) -> StreamingResponse:
    """The samples archive: every stored report with its samples, lease by lease, in seq order."""
    return StreamingResponse(audit.archive(leaseId), media_type="application/x-ndjson")
