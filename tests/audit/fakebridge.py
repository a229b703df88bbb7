"""A minimal bridge serving api/AUDIT_API.md from fixture leases, to test the auditor's API source and CLI.

It implements the documented wire format only (not the real bridge's store); requests are counted so
tests can assert the traffic a spot check causes. The auditor reads what the chain holds from the chain:
:class:`FixtureChain` stands in for a chain holding the same fixture leases (for tests of the API source's
wire handling and of the command's output; the tamper tests run against a deployed chain).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import FastAPI, HTTPException

from auditor.core import AuditInput, ChainLease
from auditor.sources import AuditSourceError, report_to_json, settlement_to_json
from ledger.protocol import DOMAIN_NAME, DOMAIN_VERSION, MerkleTree, sample_leaf


def _state(inp: AuditInput) -> str:
    return "Closed" if inp.money is not None and inp.money.closed else "Active"


class FixtureChain:
    """A chain holding the fixture leases exactly as the fake bridge serves them (a ``ChainView``)."""

    def __init__(self, leases: dict[int, AuditInput]) -> None:
        self.leases = leases
        any_terms = next(iter(leases.values())).terms
        self.chain_id = any_terms.chainId
        self.escrow = any_terms.escrow

    def lease_ids(self) -> list[int]:
        return sorted(self.leases)

    def refresh(self) -> None:
        pass

    def record(self, lease_id: int, *, as_of_block: int | None = None) -> ChainLease:
        if lease_id not in self.leases:
            raise AuditSourceError(f"lease {lease_id} does not exist on chain {self.chain_id}")
        inp = self.leases[lease_id]
        last_end = max((sr.report.windowEndMs for sr in inp.reports), default=inp.terms.startMs)
        return ChainLease(
            terms=inp.terms,
            settlements=inp.settlements,
            money=inp.money,
            status=_state(inp),
            nodeId=1,
            nowMs=last_end + 2_000,  # the chain's latest block, a little after the last window
        )


def chain_json(chain_id: int, escrow: str, rpc_url: str | None = None) -> dict[str, Any]:
    """GET /v1/chain as the bridge serves it (api/AUDIT_API.md §0)."""
    return {
        "chainId": chain_id,
        "rpcUrl": rpc_url,
        "rpcNote": "the chain runs inside the bridge's process (memory backend): no RPC endpoint exists",
        "deployment": {"chainId": chain_id, "block": 0, "addresses": {"LeaseEscrow": escrow}},
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id, "verifyingContract": escrow},
        "abis": {},
    }


def lease_json(inp: AuditInput) -> dict[str, Any]:
    t = inp.terms
    out: dict[str, Any] = {
        "leaseId": t.leaseId,
        "chainId": t.chainId,
        "escrow": t.escrow,
        "state": _state(inp),
        "nodeId": 1,
        "token": t.token,
        "gpuIndices": list(t.gpuIndices or ()),
        "gpuCount": t.gpuCount,
        "gpuSetHash": "0x" + t.gpuSetHash.hex(),
        "startMs": t.startMs,
        "endMs": t.endMs,
        "pricePerGpuSecond": str(t.pricePerGpuSecond),  # a decimal string: amounts may exceed 2^53
        "billingMode": t.billingMode.name.lower(),
        "maxPowerMwPerGpu": t.maxPowerMwPerGpu,
        "samplePeriodMs": t.samplePeriodMs,
        "attestors": [{"address": a.address, "fromMs": a.fromMs, "untilMs": a.untilMs} for a in t.attestors],
        "settlements": [settlement_to_json(s) for s in inp.settlements],
    }
    m = inp.money
    if m is not None:
        out["money"] = {
            "escrow": m.escrow,
            "fee": m.fee,
            "topUps": [
                {"amount": u.amount, "fee": u.fee, "block": u.order[0], "logIndex": u.order[1]} for u in m.topUps
            ],
            "closed": m.closed,
            "refund": m.refund,
            "closedCharged": m.closedCharged,
            "feeKept": m.feeKept,
            "feeRefund": m.feeRefund,
        }
    return out


def create_fake_bridge(leases: dict[int, AuditInput]) -> tuple[FastAPI, Counter[str]]:
    app = FastAPI()
    hits: Counter[str] = Counter()

    @app.get("/v1/chain")
    def chain() -> dict[str, Any]:
        hits["chain"] += 1
        t = next(iter(leases.values())).terms
        return chain_json(t.chainId, t.escrow)

    def _lease(lease_id: int) -> AuditInput:
        if lease_id not in leases:
            raise HTTPException(404, detail={"code": "unknown_lease", "message": f"no lease {lease_id}"})
        return leases[lease_id]

    @app.get("/v1/audit/leases")
    def audit_leases(limit: int = 500, cursor: int | None = None) -> dict[str, Any]:
        hits["leases"] += 1
        ids = [i for i in sorted(leases) if cursor is None or i > cursor]  # cursor: the lease to start after
        page = ids[:limit]
        nxt = page[-1] if len(ids) > limit else None
        return {
            "leases": [{"leaseId": i, "reports": len(leases[i].reports)} for i in page],
            "nextCursor": nxt,
        }

    @app.get("/v1/leases/{lease_id}")
    def lease(lease_id: int) -> dict[str, Any]:
        hits["lease"] += 1
        return lease_json(_lease(lease_id))

    @app.get("/v1/leases/{lease_id}/reports")
    def reports(lease_id: int, fromSeq: int = 1, limit: int = 500, samples: bool = True) -> dict[str, Any]:
        hits["reports"] += 1
        rs = [sr for sr in _lease(lease_id).reports if sr.report.seq >= fromSeq]
        page = rs[:limit]
        entries = []
        for sr in page:
            e = report_to_json(sr, node_id=1)
            if not samples:
                e.pop("samples", None)
            entries.append(e)
        return {"reports": entries, "nextFromSeq": rs[limit].report.seq if len(rs) > limit else None}

    def _report(lease_id: int, seq: int, indices: list[int]) -> Any:
        sr = next((r for r in _lease(lease_id).reports if r.report.seq == seq), None)
        if sr is None or sr.samples is None or not all(0 <= i < len(sr.samples) for i in indices):
            raise HTTPException(404, detail={"code": "unknown_sample", "message": "no such sample"})
        return sr

    def _proof(sr: Any, tree: MerkleTree, index: int) -> dict[str, Any]:
        leaf = sample_leaf(sr.samples[index])
        return {
            "index": index,
            "sample": sr.samples[index].to_list(),
            "leaf": "0x" + leaf.hex(),
            "proof": ["0x" + p.hex() for p in tree.proof(leaf)],
            "root": "0x" + tree.root.hex(),
        }

    @app.get("/v1/leases/{lease_id}/reports/{seq}/samples/proofs")
    def proofs(lease_id: int, seq: int, indices: str) -> dict[str, Any]:
        hits["proofs"] += 1
        idx = [int(i) for i in indices.split(",")]
        sr = _report(lease_id, seq, idx)
        tree = MerkleTree.of_samples(sr.samples)
        return {"proofs": [_proof(sr, tree, i) for i in idx]}

    @app.get("/v1/leases/{lease_id}/reports/{seq}/samples/{index}/proof")
    def proof(lease_id: int, seq: int, index: int) -> dict[str, Any]:
        hits["proof"] += 1
        sr = _report(lease_id, seq, [index])
        return _proof(sr, MerkleTree.of_samples(sr.samples), index)

    return app, hits
