"""Metering: attestors submit signed reports with their raw samples (api/METERING_API.md); anyone reads them
back with Merkle proofs (api/AUDIT_API.md §2-3)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ledger.protocol import DOMAIN_VERSION, REPORT_FIELDS
from ledger.protocol.samples import SAMPLE_FIELDS

from ..deps import MeteringDep
from ..errors import COMMON_RESPONSES, ErrorResponse, READ_RESPONSES
from ..services.metering import MAX_PROOFS_PER_REQUEST, SampleProof

router = APIRouter(tags=["metering"])

_UINT: dict[str, Any] = {
    "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]{1,78}$"}],
    "description": "64- and 256-bit integers are decimal strings (JavaScript numbers stop at 2^53); narrower "
    "ones numbers; either is read",
}
_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [name for name, _ in REPORT_FIELDS],
    "properties": {
        name: {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"} if typ == "bytes32" else _UINT
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
            "items": {
                "type": "array", "items": _UINT,
                "minItems": len(SAMPLE_FIELDS), "maxItems": len(SAMPLE_FIELDS),
            },  # fmt: skip
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
    domainVersion: str = Field(description="the EIP-712 domain version (the metering protocol)")
    chainClock: str = Field(
        description="real: reports whose window ends after the chain's time (+30 s) are refused; follows: the "
        "chain has no clock of its own (in-process dev chain) and is moved forward to reports' windows"
    )


class ReportEntry(BaseModel):
    report: dict[str, Any]
    signature: str
    reportHash: str
    nodeId: int
    status: str = Field(description="accepted | queued | settled | superseded | rejected")
    reason: str | None = Field(default=None, description="why a report was rejected at settlement (the escrow's "
                               "error), or why it went back to the queue")
    samples: list[list[int | str]] | None = None


class ReportPage(BaseModel):
    reports: list[ReportEntry]
    nextFromSeq: int | None


class SampleProofOut(BaseModel):
    index: int
    sample: list[int | str]
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
        429: COMMON_RESPONSES[429],
        422: _e(
            "samples_mismatch | figures_mismatch (the window's figures are not what its samples give) | "
            "window_in_future (the window ends after the chain's time + 30 s) | unsettleable_report"
        ),
        503: _e("intake_unavailable | store_unavailable: retry"),
    },
)
async def submit_report(request: Request, metering: MeteringDep) -> JSONResponse:
    """Submit one signed report with its raw samples (the attestor authenticates by its signature)."""
    res = await metering.accept_raw_async(await request.body())
    return JSONResponse(
        status_code=200 if res.duplicate else 201,
        content={"accepted": True, "reportHash": res.report_hash, "duplicate": res.duplicate},
    )


@router.get("/v1/metering/domain", response_model=DomainOut)
def domain(metering: MeteringDep) -> DomainOut:
    """The EIP-712 domain reports are signed under."""
    chain_id, escrow = metering.domain()
    return DomainOut(
        chainId=chain_id,
        verifyingContract=escrow,
        domainVersion=DOMAIN_VERSION,
        chainClock="follows" if metering.chain_time.follows else "real",
    )


@router.get("/v1/leases/{leaseId}/reports", response_model=ReportPage, responses=READ_RESPONSES)
def lease_reports(
    leaseId: Annotated[int, Path(ge=0, lt=2**63)],
    metering: MeteringDep,
    fromSeq: Annotated[int, Query(ge=1, lt=2**63)] = 1,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    samples: Annotated[bool, Query(description="include raw samples")] = True,
) -> ReportPage:
    """Every stored report of the lease in seq order (api/AUDIT_API.md §2)."""
    entries, next_seq = metering.reports(leaseId, fromSeq, limit, samples=samples)
    return ReportPage(reports=[ReportEntry(**e) for e in entries], nextFromSeq=next_seq)


class SampleProofsOut(BaseModel):
    proofs: list[SampleProofOut]


def _proof_out(p: SampleProof, root: str) -> SampleProofOut:
    return SampleProofOut(
        index=p.index,
        sample=p.sample.to_list(),
        leaf="0x" + p.leaf.hex(),
        proof=["0x" + x.hex() for x in p.proof],
        root=root,
    )


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
    metering: MeteringDep,
) -> SampleProofsOut:
    """Many raw samples of one report, each with its Merkle proof against the report's samplesRoot (the
    tree is built once): an auditor's spot checks of a report in one request."""
    root, found = metering.proofs(leaseId, seq, [int(i) for i in indices.split(",")])
    return SampleProofsOut(proofs=[_proof_out(p, root) for p in found])


@router.get(
    "/v1/leases/{leaseId}/reports/{seq}/samples/{index}/proof", response_model=SampleProofOut, responses=READ_RESPONSES
)
def sample_proof(
    leaseId: Annotated[int, Path(ge=0, lt=2**63)],
    seq: Annotated[int, Path(ge=1, lt=2**63)],
    index: Annotated[int, Path(ge=0, lt=2**31)],
    metering: MeteringDep,
) -> SampleProofOut:
    """One raw sample with its Merkle proof against the report's samplesRoot (api/AUDIT_API.md §3)."""
    root, found = metering.proofs(leaseId, seq, [index])
    return _proof_out(found[0], root)
