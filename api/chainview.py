"""Plain JSON-able views of on-chain entities, read through ``ledger.client``'s typed views.

Every function takes the gateway (for its lock and revert mapping) and returns a dict with camelCase keys;
money and uint256 values stay Python ints here (routers turn them into strings where needed). An id the
contracts do not know raises :class:`NotFound`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ledger.client import ClientError, LeaseStatus
from ledger.settlement import LeaseState

from .errors import ApiError, ChainUnavailable, NotFound

if TYPE_CHECKING:
    from .gateway import Gateway

ETH = "0x0000000000000000000000000000000000000000"
_ZERO = "0x0000000000000000000000000000000000000000"


def text32(b: bytes) -> str:
    """A right-padded bytes32/bytes8 label as text."""
    return bytes(b).rstrip(b"\x00").decode("utf-8", errors="replace")


def mask_indices(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def _known(gw: "Gateway", what: str, ident: object, read: Any) -> Any:
    try:
        return gw.view(read)
    except ApiError as e:
        if e.status == 404 or e.details.get("error") in ("Panic", "Unknown"):
            raise NotFound(what, ident) from e
        raise


def node(gw: "Gateway", node_id: int) -> dict[str, Any]:
    if not 0 <= node_id < 2**256:
        raise NotFound("node", node_id)
    n = _known(gw, "node", node_id, lambda: gw.client.node(node_id))
    if n.provider == _ZERO:
        raise NotFound("node", node_id)
    return {
        "nodeId": node_id,
        "provider": n.provider,
        "attestor": n.attestor,
        "gpuModel": text32(n.gpu_model),
        "gpuCount": n.gpu_count,
        "vramMiB": n.vram_mib,
        "maxPowerMwPerGpu": n.max_power_mw_per_gpu,
        "region": text32(n.region),
        "active": n.active,
        "gpuUuidHashes": [_hex(h) for h in n.gpu_uuid_hashes],
    }


def offer(gw: "Gateway", offer_id: int) -> dict[str, Any]:
    if not 0 <= offer_id < 2**256:
        raise NotFound("offer", offer_id)
    o = _known(gw, "offer", offer_id, lambda: gw.client.offer(offer_id))
    if o.provider == _ZERO:
        raise NotFound("offer", offer_id)
    live = gw.view(lambda: gw.client.live_lease_of(offer_id))
    return {
        "offerId": offer_id,
        "provider": o.provider,
        "nodeId": o.node_id,
        "gpuMask": o.gpu_mask,
        "gpuIndices": mask_indices(o.gpu_mask),
        "gpuCount": o.gpu_count,
        "pricePerGpuSecond": o.price_per_gpu_second,
        "pricePerGpuHour": o.price_per_gpu_second * 3600,
        "token": o.token,
        "billingMode": int(o.billing_mode),
        "validFrom": o.valid_from,
        "validUntil": o.valid_until,
        "minBuyerScoreBps": o.min_buyer_score_bps,
        "gpuSetHash": _hex(o.gpu_set_hash),
        "termsHash": _hex(o.terms_hash),
        "liveLeaseId": int(live),
    }


def provider(gw: "Gateway", address: str) -> dict[str, Any]:
    p = gw.view(lambda: gw.client.provider(address))
    return {
        "address": address,
        "registered": p.registered,
        "payout": p.payout,
        "lockedRights": p.locked_rights,
        "metadataURI": p.metadata_uri,
    }


def reputation(gw: "Gateway", address: str) -> dict[str, Any]:
    score = gw.view(lambda: gw.client.score_of(address))
    counts = gw.view(lambda: gw.client.counts_of(address))
    return {"address": address, "scoreBps": int(score), "counts": {k: int(v) for k, v in asdict(counts).items()}}


def stake(gw: "Gateway", address: str, token: str) -> dict[str, int]:
    st = gw.view(lambda: gw.client.stake_of(address, token))
    return {"bonded": st.bonded, "unbonding": st.unbonding, "unbondingEnds": st.unbonding_ends}


def lease(gw: "Gateway", lease_id: int) -> dict[str, Any]:
    if not 0 <= lease_id < 2**256:
        raise NotFound("lease", lease_id)
    v = _known(gw, "lease", lease_id, lambda: gw.client.lease(lease_id))
    if v.status == LeaseStatus.NONE:
        raise NotFound("lease", lease_id)
    cp = gw.view(lambda: gw.client.checkpoint(lease_id))
    return {
        "leaseId": lease_id,
        "offerId": v.offer_id,
        "nodeId": v.node_id,
        "buyer": v.buyer,
        "holder": v.holder,
        "provider": v.provider,
        "token": v.token,
        "state": v.status.name.capitalize(),
        "billingMode": int(v.billing_mode),
        "gpuCount": v.gpu_count,
        "pricePerGpuSecond": v.price_per_gpu_second,
        "feeBps": v.fee_bps,
        "durationS": v.duration_s,
        "startBy": v.start_by,
        "startMs": v.start_ms,
        "endMs": v.end_ms,
        "gpuSetHash": _hex(v.gpu_set_hash),
        "escrowed": v.escrowed,
        "feeHeld": v.fee_held,
        "checkpoint": {
            "lastSeq": cp.last_seq,
            "lastReportHash": _hex(cp.last_report_hash),
            "cumBusyMs": cp.cum_busy_ms,
            "cumEnergyMj": cp.cum_energy_mj,
            "cumAllocatedMs": cp.cum_allocated_ms,
            "lastWindowEndMs": cp.last_window_end_ms,
            "lastSettledAt": cp.last_settled_at,
            "charged": cp.charged,
            "paid": cp.paid,
            "pending": cp.pending,
            "frozen": cp.frozen,
            "refunded": cp.refunded,
            "remaining": cp.remaining,
        },
    }


def lease_states(gw: "Gateway", lease_ids: list[int]) -> dict[int, LeaseState | None]:
    """The state (terms, ckpt, last report hash) each lease's escrow calls must carry, read in ONE
    ``leaseTerms`` call and checked by the client against the escrow's commitment. ``None``: no such lease.

    Only when that call fails (a lease unknown, or events that do not explain a commitment) are the leases
    read one by one; a lease whose state cannot be rebuilt is left out (the caller retries later)."""
    ids = list(dict.fromkeys(int(i) for i in lease_ids))
    try:
        return dict(gw.view(lambda: gw.client.lease_states(ids)))
    except ChainUnavailable as e:
        if not isinstance(e.__cause__, ClientError):
            raise
    out: dict[int, LeaseState | None] = {}
    for lid in ids:
        try:
            out[lid] = gw.view(lambda: gw.client.lease_state(lid))
        except ChainUnavailable as e:
            if not isinstance(e.__cause__, ClientError):
                raise
            if gw.view(lambda: gw.client.state_hash(lid)) == bytes(32):
                out[lid] = None
    return out


def lease_state(gw: "Gateway", lease_id: int) -> LeaseState:
    """The lease's state for ``closeLease`` / ``topUp`` / ``dispute`` / ``releaseEarnings`` /
    ``resolveDispute`` (their ``ckpt`` and ``lastReportHash`` arguments). 404 for an unknown lease."""
    if not 0 <= lease_id < 2**256:
        raise NotFound("lease", lease_id)
    st = lease_states(gw, [lease_id])
    if lease_id not in st:
        raise ChainUnavailable(f"the state of lease {lease_id} cannot be rebuilt from the escrow's events")
    found = st[lease_id]
    if found is None:
        raise NotFound("lease", lease_id)
    return found


def withdrawable(gw: "Gateway", account: str, token: str) -> int:
    return int(gw.view(lambda: gw.client.withdrawable(account, token)))


def fee_bps(gw: "Gateway", provider_addr: str) -> int:
    return int(gw.view(lambda: gw.client.fee_bps_for(provider_addr)))
