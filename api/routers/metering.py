"""Metering: attestors submit signed reports with their raw samples (api/METERING_API.md); anyone reads them
back with Merkle proofs (api/AUDIT_API.md §2-3)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from ledger import safejson
from ledger.protocol import REPORT_FIELDS

from ..deps import ServicesDep
from ..errors import ApiError, ErrorResponse, READ_RESPONSES
from ..metering import accept_report_async
from ..samples import sample_with_proof, samples_with_proofs, unpack_samples
from ..store import LeaseRow, Report, SampleSet

router = APIRouter(tags=["metering"])

_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [name for name, _ in REPORT_FIELDS],
    "properties": {
        name: (
            {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}
            if typ == "bytes32"
            else {"type": "integer", "minimum": 0}
        )
        for name, typ in REPORT_FIELDS
    },
}
_SUBMIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["nodeId", "report", "signature", "samples"],
    "properties": {
        "nodeId": {"type": "integer", "minimum": 0},
        "report": _REPORT_SCHEMA,
        "signature": {"type": "string", "pattern": "^0x[0-9a-fA-F]{130}$"},
        "samples": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 8, "maxItems": 8},
        },
    },
}


class SubmitOut(BaseModel):
    accepted: bool
    reportHash: str
    duplicate: bool


class DomainOut(BaseModel):
    chainId: int
    verifyingContract: str


class ReportEntry(BaseModel):
    report: dict[str, Any]
    signature: str
    reportHash: str
    nodeId: int
    status: str = Field(description="accepted | queued | settled | superseded | rejected")
    samples: list[list[int]] | None = None


class ReportPage(BaseModel):
    reports: list[ReportEntry]
    nextFromSeq: int | None


class SampleProofOut(BaseModel):
    index: int
    sample: list[int]
    leaf: str
    proof: list[str]
    root: str


def _e(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


@router.post(
    "/v1/metering/reports",
    status_code=201,
    response_model=SubmitOut,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _SUBMIT_SCHEMA}}}},
    responses={
        200: {"model": SubmitOut, "description": "exact duplicate of a stored report: acknowledged again"},
        400: _e("invalid_report: body, report fields, samples or signature malformed"),
        403: _e("wrong_signer: not the node's attestor, or the lease is not on that node"),
        404: _e("unknown_lease: node or lease unknown (indexer lag: retry)"),
        409: _e("seq_conflict | seq_gap | chain_mismatch"),
        413: _e("body too large"),
        422: _e("samples_mismatch"),
    },
)
async def submit_report(request: Request, svc: ServicesDep) -> JSONResponse:
    """Submit one signed report with its raw samples (the attestor authenticates by its signature)."""
    raw = await request.body()
    try:
        body = safejson.loads(raw)
    except safejson.JsonRefused as e:
        raise ApiError(400, "invalid_report", str(e)) from e
    try:
        res = await accept_report_async(svc, body)
    except ApiError as e:
        svc.metrics.reports_rejected.labels(e.code).inc()
        raise
    return JSONResponse(
        status_code=200 if res.duplicate else 201,
        content={"accepted": True, "reportHash": res.report_hash, "duplicate": res.duplicate},
    )


@router.get("/v1/metering/domain", response_model=DomainOut)
def domain(svc: ServicesDep) -> DomainOut:
    """The EIP-712 domain reports are signed under."""
    return DomainOut(chainId=svc.gateway.chain_id, verifyingContract=svc.client.escrow.address)


def _lease_known(svc: Any, lease_id: int) -> LeaseRow:
    row = svc.indexer.lease_row(lease_id)
    if row is None:
        raise ApiError(404, "unknown_lease", f"lease {lease_id} is unknown to the bridge")
    return row


@router.get("/v1/leases/{leaseId}/reports", response_model=ReportPage, responses=READ_RESPONSES)
def lease_reports(
    leaseId: Annotated[int, Path(ge=0, lt=2**63)],
    svc: ServicesDep,
    fromSeq: Annotated[int, Query(ge=1, lt=2**63)] = 1,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    samples: Annotated[bool, Query(description="include raw samples")] = True,
) -> ReportPage:
    """Every stored report of the lease in seq order (api/AUDIT_API.md §2)."""
    lease = _lease_known(svc, leaseId)
    with svc.store.session() as s:
        rows = list(
            s.scalars(
                select(Report)
                .where(Report.lease_id == leaseId, Report.seq >= fromSeq)
                .order_by(Report.seq)
                .limit(limit + 1)
            )
        )
        roots = {r.samples_root for r in rows[:limit]} if samples else set()
        sets = {ss.root: ss.data for ss in s.scalars(select(SampleSet).where(SampleSet.root.in_(roots)))} if roots else {}
    out = []
    for r in rows[:limit]:
        entry = ReportEntry(
            report=json.loads(r.body),
            signature=r.signature,
            reportHash=r.struct_hash,
            nodeId=lease.node_id,
            status=r.status,
        )
        if samples:
            data = sets.get(r.samples_root)
            entry.samples = [smp.to_list() for smp in unpack_samples(data)] if data else []
        out.append(entry)
    return ReportPage(reports=out, nextFromSeq=rows[limit].seq if len(rows) > limit else None)


MAX_PROOFS_PER_REQUEST = 256


class SampleProofsOut(BaseModel):
    proofs: list[SampleProofOut]


def _report_samples(svc: Any, leaseId: int, seq: int) -> tuple[Any, list[Any]]:
    with svc.store.session() as s:
        r = s.scalars(select(Report).where(Report.lease_id == leaseId, Report.seq == seq)).first()
        if r is None:
            raise ApiError(404, "unknown_report", f"no report {seq} of lease {leaseId}")
        ss = s.get(SampleSet, r.samples_root)
    return r, unpack_samples(ss.data) if ss else []


@router.get(
    "/v1/leases/{leaseId}/reports/{seq}/samples/proofs", response_model=SampleProofsOut, responses=READ_RESPONSES
)
def sample_proofs(
    leaseId: Annotated[int, Path(ge=0, lt=2**63)],
    seq: Annotated[int, Path(ge=1, lt=2**63)],
    indices: Annotated[
        str,
        Query(
            pattern=r"^[0-9]{1,10}(,[0-9]{1,10}){0,%d}$" % (MAX_PROOFS_PER_REQUEST - 1),
            description=f"comma-separated sample indices, at most {MAX_PROOFS_PER_REQUEST}",
        ),
    ],
    svc: ServicesDep,
) -> SampleProofsOut:
    """Many raw samples of one report, each with its Merkle proof against the report's samplesRoot (the
    tree is built once): an auditor's spot checks of a report in one request."""
    r, smps = _report_samples(svc, leaseId, seq)
    try:
        found = samples_with_proofs(smps, [int(i) for i in indices.split(",")])
    except IndexError as e:
        raise ApiError(404, "unknown_sample", f"report {seq} has {len(smps)} samples; no index {e.args[0]}") from e
    return SampleProofsOut(
        proofs=[
            SampleProofOut(
                index=int(i),
                sample=sample.to_list(),
                leaf="0x" + leaf.hex(),
                proof=["0x" + p.hex() for p in proof],
                root=r.samples_root,
            )
            for i, (sample, leaf, proof) in zip(indices.split(","), found)
        ]
    )


@router.get(
    "/v1/leases/{leaseId}/reports/{seq}/samples/{index}/proof", response_model=SampleProofOut, responses=READ_RESPONSES
)
def sample_proof(
    leaseId: Annotated[int, Path(ge=0, lt=2**63)],
    seq: Annotated[int, Path(ge=1, lt=2**63)],
    index: Annotated[int, Path(ge=0, lt=2**31)],
    svc: ServicesDep,
) -> SampleProofOut:
    """One raw sample with its Merkle proof against the report's samplesRoot (api/AUDIT_API.md §3)."""
    r, smps = _report_samples(svc, leaseId, seq)
    try:
        sample, leaf, proof = sample_with_proof(smps, index)
    except IndexError as e:
        raise ApiError(404, "unknown_sample", f"report {seq} has {len(smps)} samples") from e
    return SampleProofOut(
        index=index,
        sample=sample.to_list(),
        leaf="0x" + leaf.hex(),
        proof=["0x" + p.hex() for p in proof],
        root=r.samples_root,
    )
