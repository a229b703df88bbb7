"""What auditors list and download (api/AUDIT_API.md §4-5). Public: anybody may audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import func, select

from ..deps import ServicesDep
from ..errors import READ_RESPONSES, ApiError
from ..samples import unpack_samples
from ..store import ChainEvent, LeaseRow, Report, SampleSet

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
    svc: ServicesDep,
    cursor: Annotated[int | None, Query(ge=0, lt=2**63, description="leaseId to start after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> AuditLeases:
    """Every lease the bridge knows, with its report and settlement counts."""
    with svc.store.session() as s:
        q = select(LeaseRow).order_by(LeaseRow.lease_id).limit(limit + 1)
        if cursor is not None:
            q = q.where(LeaseRow.lease_id > cursor)
        rows = list(s.scalars(q))
        ids = [r.lease_id for r in rows[:limit]]
        reports = dict(
            s.execute(select(Report.lease_id, func.count()).where(Report.lease_id.in_(ids)).group_by(Report.lease_id)).all()
        ) if ids else {}
        settlements = dict(
            s.execute(
                select(ChainEvent.lease_id, func.count())
                .where(ChainEvent.lease_id.in_(ids), ChainEvent.name == "CheckpointSettled")
                .group_by(ChainEvent.lease_id)
            ).all()
        ) if ids else {}
    return AuditLeases(
        leases=[
            AuditLease(
                leaseId=r.lease_id,
                state=r.status,
                reports=int(reports.get(r.lease_id, 0)),
                settlements=int(settlements.get(r.lease_id, 0)),
            )
            for r in rows[:limit]
        ],
        nextCursor=rows[limit - 1].lease_id if len(rows) > limit else None,
    )


@router.get(
    "/archive",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "one report entry per line"}, **READ_RESPONSES},
)
def archive(
    svc: ServicesDep,
    leaseId: Annotated[int | None, Query(ge=0, lt=2**63)] = None,
) -> StreamingResponse:
    """The samples archive: every stored report with its samples, lease by lease, in seq order."""
    if leaseId is not None and svc.indexer.lease_row(leaseId) is None:
        raise ApiError(404, "unknown_lease", f"lease {leaseId} is unknown to the bridge")

    def lines() -> Iterator[bytes]:
        with svc.store.session() as s:
            nodes = {r.lease_id: r.node_id for r in s.scalars(select(LeaseRow))}
            q = select(Report).order_by(Report.lease_id, Report.seq)
            if leaseId is not None:
                q = q.where(Report.lease_id == leaseId)
            for r in s.scalars(q).yield_per(200):
                ss = s.get(SampleSet, r.samples_root)
                entry: dict[str, Any] = {
                    "report": json.loads(r.body),
                    "signature": r.signature,
                    "reportHash": r.struct_hash,
                    "nodeId": nodes.get(r.lease_id),
                    "samples": [x.to_list() for x in unpack_samples(ss.data)] if ss else [],
                }
                yield json.dumps(entry, separators=(",", ":")).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
