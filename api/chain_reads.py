"""Plain JSON-able views of on-chain entities, read through ``ledger.chain``'s typed views.

Every method returns a dict with camelCase keys; money and uint256 values stay Python ints here (the HTTP
layer turns them into strings where needed). An id the contracts do not know raises :class:`NotFound`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ledger.chain.errors import ChainError, UnknownLease
from ledger.chain.reverts import ContractRevert
from ledger.chain.suite import LedgerChain
from ledger.protocol.economics import LeaseStatus, NodeFeature
from ledger.protocol.settlement import LeaseState

from .errors import NotFound, from_chain, revert_status

_ZERO = "0x0000000000000000000000000000000000000000"


def text32(b: bytes) -> str:
    """A right-padded bytes32/bytes8 label as text."""
    return bytes(b).rstrip(b"\x00").decode("utf-8", errors="replace")


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


class ChainViews:
    """Reads of the suite for the bridge's services (chain errors become API errors here)."""

    def __init__(self, ledger: LedgerChain) -> None:
        self._ledger = ledger
        self._read = ledger.read

    def _known(self, what: str, ident: object, read: Any) -> Any:
        try:
            return read()
        except ContractRevert as e:
            if e.name in ("Panic", "Unknown") or revert_status(e.name)[0] == 404:
                raise NotFound(what, ident) from e
            raise from_chain(e) from e
        except ChainError as e:
            raise from_chain(e) from e

    def _call(self, read: Any) -> Any:
        try:
            return read()
        except ChainError as e:
            raise from_chain(e) from e

    def _checkpoint(self, lease_id: int) -> Any:
        """The lease's checkpoint view, read with its current state: a settlement mined between the state read
        and the call (``LeaseEscrowStaleState``) is read again with the new state."""
        for attempt in range(3):
            try:
                return self._read.checkpoint(lease_id, self._ledger.states.state(lease_id))
            except ContractRevert as e:
                if attempt == 2 or e.name != "LeaseEscrowStaleState":
                    raise
        raise AssertionError("unreachable")

    def now(self) -> int:
        """The chain's clock: timestamp (unix s) of the latest block."""
        return int(self._call(self._read.now))

    def node(self, node_id: int) -> dict[str, Any]:
        if not 0 <= node_id < 2**256:
            raise NotFound("node", node_id)
        n = self._known("node", node_id, lambda: self._read.node(node_id))
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
            "gpm": bool(n.features & NodeFeature.GPM),
            "gpuUuidHashes": [_hex(h) for h in n.gpu_uuid_hashes],
        }

    def lease_price(self, offer_id: int, holder: str, duration_s: int) -> int:
        """Price per GPU-second of a lease of ``duration_s`` locking ``holder``'s rights: its resale ask, else the
        offer's tier for that duration, else the offer's price."""
        return int(self._call(lambda: self._read.lease_price(offer_id, holder, duration_s)))

    def offer(self, offer_id: int) -> dict[str, Any]:
        if not 0 <= offer_id < 2**256:
            raise NotFound("offer", offer_id)
        o = self._known("offer", offer_id, lambda: self._read.offer(offer_id))
        if o.provider == _ZERO:
            raise NotFound("offer", offer_id)
        live = self._call(lambda: self._read.live_lease_of(offer_id))
        return {
            "offerId": offer_id,
            "provider": o.provider,
            "nodeId": o.node_id,
            "gpuMask": o.gpu_mask,
            "gpuIndices": o.gpu_indices,
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

    def provider(self, address: str) -> dict[str, Any]:
        p = self._call(lambda: self._read.provider(address))
        return {
            "address": address,
            "registered": p.registered,
            "payout": p.payout,
            "lockedRights": p.locked_rights,
            "metadataURI": p.metadata_uri,
        }

    def reputation(self, address: str) -> dict[str, Any]:
        score = self._call(lambda: self._read.score_of(address))
        counts = self._call(lambda: self._read.counts_of(address))
        return {"address": address, "scoreBps": int(score), "counts": {k: int(v) for k, v in asdict(counts).items()}}

    def stake(self, address: str, token: str) -> dict[str, int]:
        st = self._call(lambda: self._read.stake_of(address, token))
        return {"bonded": st.bonded, "unbonding": st.unbonding, "unbondingEnds": st.unbonding_ends}

    def lease(self, lease_id: int) -> dict[str, Any]:
        if not 0 <= lease_id < 2**256:
            raise NotFound("lease", lease_id)
        v = self._known("lease", lease_id, lambda: self._read.lease(lease_id))
        if v.status == LeaseStatus.NONE:
            raise NotFound("lease", lease_id)
        cp = self._call(lambda: self._checkpoint(lease_id))
        return {
            "leaseId": lease_id,
            "offerId": v.offer_id,
            "nodeId": v.node_id,
            "buyer": v.buyer,
            "holder": v.holder,
            "provider": v.provider,
            "token": v.token,
            "state": v.status.label,
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
                "cumSmActiveMs": cp.cum_sm_active_ms,
                "lastSettledAt": cp.last_settled_at,
                "charged": cp.charged,
                "paid": cp.paid,
                "pending": cp.pending,
                "frozen": cp.frozen,
                "refunded": cp.refunded,
                "remaining": cp.remaining,
            },
        }

    def lease_states(self, lease_ids: list[int]) -> dict[int, LeaseState | None]:
        """States for a batch (``LeaseStates.states_or_none``): None for no such lease; a lease whose state
        cannot be rebuilt now is left out."""
        return dict(self._call(lambda: self._ledger.states.states_or_none(lease_ids)))

    def lease_state(self, lease_id: int) -> LeaseState:
        """The lease's state for closeLease / topUp / dispute / releaseEarnings / resolveDispute. 404 for an
        unknown lease, 503 when it cannot be rebuilt now."""
        if not 0 <= lease_id < 2**256:
            raise NotFound("lease", lease_id)
        try:
            return self._ledger.states.state(lease_id)
        except UnknownLease as e:
            raise NotFound("lease", lease_id) from e
        except ChainError as e:
            raise from_chain(e) from e

    def withdrawable(self, account: str, token: str) -> int:
        return int(self._call(lambda: self._read.withdrawable(account, token)))

    def fee_bps(self, provider_addr: str) -> int:
        return int(self._call(lambda: self._read.fee_bps_for(provider_addr)))

    def balance(self, token: str, account: str) -> int:
        return int(self._call(lambda: self._read.balance(token, account)))

    def state_hash(self, lease_id: int) -> bytes:
        return bytes(self._call(lambda: self._read.state_hash(lease_id)))
