"""The auditor behind the web market's audit page: what ``compute-ledger audit lease N --api URL`` runs (the
bridge supplies reports, samples and proofs over HTTP; the chain supplies the terms, checkpoints and money),
given the bridge's own chain because a memory chain publishes no RPC URL. Handed to ``create_app`` by the
entry points (``api.routers.web`` cannot import the auditor)."""

from __future__ import annotations

import json
from typing import Any

from api.services.web_audit import AuditOutcome
from auditor.cli import format_table, run
from auditor.core import lease_usage
from auditor.report_html import render_html
from auditor.sources import ApiSource


def web_auditor(bridge_url: str, chain: Any, lease_id: int, spot_check_k: int | None) -> AuditOutcome:
    with ApiSource(bridge_url, chain=chain) as source:
        [(inp, verdict)] = run(source, [lease_id], spot_check_k=spot_check_k)
    usage = lease_usage(inp) if inp is not None else None
    return AuditOutcome(
        lease_id=lease_id,
        verdict=json.loads(json.dumps(verdict.to_json())),
        table=format_table(verdict, usage),
        html=render_html([(inp, verdict)], title=f"Compute Ledger audit of lease {lease_id}"),
    )
