"""Leases: open with escrow, read (terms, money and settlements as indexed), top up, close, dispute, rate,
release earnings, expire.

Buyer actions check that the caller is the lease's buyer before anything is sent (403), as the contract
would; the contract stays the authority (its reverts are mapped to statuses too). The lease's money is the
one fold of its events (``ledger.protocol.economics.fold_lease``), the same the auditor uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from ledger.chain.suite import LedgerChain
from ledger.protocol import MeteringReport
from ledger.protocol.economics import (
    BillingMode,
    ETH,
    LeaseEvent,
    checkpoint_billable,
    fold_lease,
    lease_escrow,
    quote_lease,
    top_up_fee,
)
from ledger.protocol.settlement import LeaseState

from ..errors import ApiError, Invalid
from ..schemas import ActionOut
from ..store import Store
from ..workers.relayer import Relayer
from .actions import Actor
from .caller import Caller
from ..chain_reads import ChainViews
from .idempotency import Answer, Idempotency, fingerprint
from .metering import Metering

T = TypeVar("T")
DEFAULT_START_WINDOW_S = 3600


_AMOUNTS = frozenset({"charged", "paid", "pending", "frozen", "refunded", "remaining"})


def _s(value: int | None) -> str | None:
    return None if value is None else str(value)


class Leases:
    def __init__(
        self,
        ledger: LedgerChain,
        views: ChainViews,
        actor: Actor,
        idempotency: Idempotency,
        store: Store,
        relayer: Relayer,
        metering: Metering,
    ) -> None:
        self._ledger = ledger
        self._calls = ledger.calls
        self._escrow = ledger.deployment.escrow
        self._views = views
        self._actor = actor
        self._idem = idempotency
        self._store = store
        self._relayer = relayer
        self._metering = metering

    # --- reads -------------------------------------------------------------------------------------------

    def list(self, **where: Any) -> tuple[int, list[dict[str, Any]]]:
        total, rows = self._store.index.leases(**where)
        return total, [
            {"leaseId": r.lease_id, "offerId": r.offer_id, "nodeId": r.node_id, "buyer": r.buyer,
             "provider": r.provider, "state": r.status}
            for r in rows
        ]

    def document(self, lease_id: int) -> dict[str, Any]:
        """api/AUDIT_API.md §1: terms, money and settlements, as indexed from the chain."""
        v = self._views.lease(lease_id)
        offer = self._store.index.offer(v["offerId"])
        node = self._store.index.node(v["nodeId"])
        indices = json.loads(offer.data)["gpuIndices"] if offer else self._views.offer(v["offerId"])["gpuIndices"]
        node_data = json.loads(node.data) if node else self._views.node(v["nodeId"])
        attestors: list[dict[str, Any]] = []
        for e in self._store.index.events_of(node_id=v["nodeId"]):
            a = json.loads(e.args)
            if e.name == "NodeRegistered":
                attestors = [{"address": a["attestor"], "fromMs": 0, "untilMs": None}]
            elif e.name == "AttestorRotated":
                at_ms = e.block_ts * 1000
                if attestors:
                    attestors[-1]["untilMs"] = at_ms
                attestors.append({"address": a["newAttestor"], "fromMs": at_ms, "untilMs": None})
        if not attestors:
            attestors = [{"address": node_data["attestor"], "fromMs": 0, "untilMs": None}]
        book = fold_lease(
            LeaseEvent(e.name, json.loads(e.args), (e.block_number, e.log_index, e.record_index), e.tx_hash)
            for e in self._store.index.events_of(lease_id=lease_id)
        )
        m = book.money
        money = {
            "escrow": str(m.escrow),
            "fee": str(m.fee),
            "topUps": [
                {"amount": str(t.amount), "fee": str(t.fee), "block": t.order[0], "logIndex": t.order[1]} for t in m.topUps
            ],
            "closed": m.closed,
            "exhausted": m.exhausted,
            "refund": str(m.refund),
            "closedCharged": _s(m.closedCharged),
            "feeKept": _s(m.feeKept),
            "feeRefund": str(m.feeRefund),
            "charged": str(book.charged),
            "disputed": str(m.disputed),
            "released": str(m.released),
        }
        roots = self._store.reports.roots_by_hash("0x" + s.reportHash.hex() for s in book.settlements)
        mode = int(v["billingMode"])
        settlements: list[dict[str, Any]] = []
        last_billable = 0  # cumulative billable GPU-ms before the lease's first checkpoint
        for st in book.settlements:
            billable_now = checkpoint_billable(mode, st.checkpoint)
            report_hash = "0x" + st.reportHash.hex()
            settlements.append(
                {
                    "seq": st.seq,
                    "reportHash": report_hash,
                    # what the chain recorded: the lease's new checkpoint word (decimal: above 2^53) and its fields
                    "ckpt": str(st.ckpt),
                    "cumBusyMs": st.cumBusyMs,
                    "cumAllocatedMs": st.cumAllocatedMs,
                    "cumEnergyMj": st.cumEnergyMj,
                    "cumSmActiveMs": st.cumSmActiveMs,
                    "settledAt": st.settledAt,
                    "billableDelta": billable_now - last_billable,
                    "charged": str(st.charged),
                    "samplesRoot": roots.get(report_hash),  # bound by the report hash: the bridge's copy has it
                    "block": st.order[0],
                    "logIndex": st.order[1],
                    "recordIndex": st.order[2],
                    "txHash": st.txHash,
                }
            )
            last_billable = billable_now
        disputes = [
            {"frozen": str(d.frozen), "block": d.order[0], "resolved": d.resolved, "buyerShare": str(d.buyerShare),
             "providerShare": str(d.providerShare), "slashed": str(d.slashed), "providerFault": d.providerFault}
            for d in book.disputes
        ]
        return {
            "leaseId": lease_id,
            "chainId": self._ledger.chain_id,
            "escrow": self._escrow,
            "state": v["state"],
            "offerId": v["offerId"],
            "nodeId": v["nodeId"],
            "buyer": v["buyer"],
            "holder": v["holder"],
            "provider": v["provider"],
            "token": v["token"],
            "gpuIndices": indices,
            "gpuCount": v["gpuCount"],
            "gpuSetHash": v["gpuSetHash"],
            "startBy": v["startBy"],
            "startMs": v["startMs"],
            "endMs": v["endMs"],
            "durationS": v["durationS"],
            "pricePerGpuSecond": str(v["pricePerGpuSecond"]),
            "billingMode": BillingMode(int(v["billingMode"])).label,
            "feeBps": v["feeBps"],
            "maxPowerMwPerGpu": int(node_data["maxPowerMwPerGpu"]),
            "attestors": attestors,
            "money": money,
            "settlements": settlements,
            "disputes": disputes,
            "checkpoint": {k: str(x) if k in _AMOUNTS else x for k, x in v["checkpoint"].items()},
            "earnings": self._earnings(v["checkpoint"]),
            "usage": self.usage(lease_id),
            "samplePeriodMs": self._metering.observed_sample_period_ms(lease_id),
        }

    # --- writes ------------------------------------------------------------------------------------------

    def _earnings(self, cp: dict[str, Any]) -> dict[str, Any]:
        """What the provider side can expect: charges pending release, and from when the release may be asked
        (the last checkpoint's time plus the challenge period); frozen by an open dispute."""
        period = int(self._ledger.deployment.challenge_period_s)
        pending, frozen = int(cp["pending"]), int(cp["frozen"])
        at = int(cp["lastSettledAt"]) + period if pending and not frozen else None
        return {"pending": str(pending), "frozen": str(frozen), "challengePeriodS": period, "releasableAt": at}

    def usage(self, lease_id: int) -> dict[str, Any] | None:
        """What the lease's attested reports say so far (the latest report the bridge holds, settled or not):
        GPU time allocated, busy and SM-active, and how much of the busy time the SMs were active."""
        body = self._store.reports.latest_body(lease_id)
        if body is None:
            return None
        r = MeteringReport.from_json(json.loads(body))
        share = None if r.cumBusyMs == 0 else round(100 * r.cumSmActiveMs / r.cumBusyMs, 1)
        return {
            "reports": r.seq,
            "throughMs": r.windowEndMs,
            "allocatedMs": r.cumAllocatedMs,
            "busyMs": r.cumBusyMs,
            "smActiveMs": r.cumSmActiveMs,
            "energyMj": r.cumEnergyMj,
            "smActiveShareOfBusyPct": share,
        }

    def _buyer_lease(self, caller: Caller, lease_id: int) -> dict[str, Any]:
        lease = self._views.lease(lease_id)
        if caller.managed and lease["buyer"] != caller.address:
            raise ApiError(403, "forbidden", f"lease {lease_id} belongs to another buyer")
        return lease

    def require(self, lease_id: int) -> dict[str, Any]:
        """The lease's chain view; 404 for an unknown lease."""
        return self._views.lease(lease_id)

    def with_state(self, lease_id: int, run: Callable[[LeaseState], T]) -> T:
        """``run`` with the lease's current state (closeLease, topUp, dispute, releaseEarnings and
        resolveDispute take its ``ckpt`` and ``lastReportHash``; the escrow checks them against its
        commitment). If the lease moved between the read and the call (the relayer settled a checkpoint:
        ``LeaseEscrowStaleState``), once more with the new state. The call itself was not sent when that error
        comes: the simulation raises it (a managed ERC-20 top-up's approval is set back to 0 by ``act_paying``
        and made again)."""
        for attempt in range(2):
            try:
                return run(self._views.lease_state(lease_id))
            except ApiError as e:
                if attempt or e.details.get("error") != "LeaseEscrowStaleState":
                    raise
        raise AssertionError("unreachable")

    def open(
        self, caller: Caller, offer_id: int, duration_s: int, start_by: int | None, max_total: int | None,
        holder: str | None, key: str | None, body: BaseModel,
    ) -> Answer:
        """Open a lease: escrow price × gpuCount × durationS plus the fee, in the offer's token."""
        caller.require("buyer")

        def action() -> ActionOut:
            offer = self._views.offer(offer_id)
            who = holder or self._views.provider(offer["provider"])["payout"]
            price = self._views.lease_price(offer_id, who, duration_s)  # an ask, a tier, or the offer's price
            q = quote_lease(price, offer["gpuCount"], duration_s, self._views.fee_bps(offer["provider"]))
            now = self._views.now()
            valid_from, valid_until = int(offer["validFrom"]), int(offer["validUntil"])
            if valid_until <= now:
                raise ApiError(409, "offer_expired", f"offer {offer_id} was valid until {valid_until}; it is {now} now")
            by = start_by
            if by is None:
                by = max(now, valid_from) + DEFAULT_START_WINDOW_S
                by = min(by, valid_until - duration_s)
                if by <= max(now, valid_from - 1):
                    longest = valid_until - max(now + 1, valid_from)
                    raise Invalid(
                        f"durationS {duration_s} reaches beyond the offer's validUntil ({valid_until}): the longest "
                        f"lease it can take now is {max(longest, 0)} s",
                        field="durationS",
                    )
            elif by <= now or by < valid_from:
                raise Invalid(f"startBy must be after now ({now}) and not before the offer's validFrom ({valid_from})",
                              field="startBy")  # fmt: skip
            elif by + duration_s > valid_until:
                raise Invalid(f"startBy + durationS must not pass the offer's validUntil ({valid_until})", field="durationS")
            cap = q.total if max_total is None else max_total
            call = self._calls.open_lease(offer_id, who, duration_s, by, cap, value=q.total if offer["token"] == ETH else 0)
            out = self._actor.act_paying(caller, call, offer["token"], self._escrow, q.total)
            out.result.update({"escrowWei": str(q.escrowed), "feeWei": str(q.fee), "totalWei": str(q.total),
                               "token": offer["token"]})
            return out

        return self._idem.run(caller.address, key, fingerprint("POST", "/v1/leases", body), action)

    def activate(self, caller: Caller, lease_id: int) -> ActionOut:
        """Start an Open lease (its provider, payout address or the node's attestor)."""
        caller.require("provider")
        lease = self._views.lease(lease_id)
        if caller.managed and lease["provider"] != caller.address:
            raise ApiError(403, "forbidden", f"lease {lease_id} is on another provider's offer")
        return self._actor.act(caller, self._calls.activate_lease(lease_id))

    def top_up(self, caller: Caller, lease_id: int, amount: int, key: str | None, body: BaseModel) -> Answer:
        caller.require("buyer")

        def action() -> ActionOut:
            lease = self._buyer_lease(caller, lease_id)
            escrowed = lease_escrow(lease["pricePerGpuSecond"], lease["gpuCount"], lease["durationS"])
            fee = top_up_fee(escrowed, amount, lease["feeBps"])
            total = amount + fee
            value = total if lease["token"] == ETH else 0
            out = self.with_state(lease_id, lambda st: self._actor.act_paying(
                caller, self._calls.top_up(st, amount, value=value), lease["token"], self._escrow, total,
            ))
            out.result.update({"feeWei": str(fee), "totalWei": str(total), "token": lease["token"]})
            return out

        return self._idem.run(caller.address, key, fingerprint("POST", f"/v1/leases/{lease_id}/top-up", body), action)

    def close(self, caller: Caller, lease_id: int, key: str | None) -> Answer:
        """Close (buyer any time; anyone after the end). The latest accepted report is settled first, so the
        provider is paid for the usage up to now; the rest of the escrow is refunded."""

        def action() -> ActionOut:
            lease = self._views.lease(lease_id)
            ended = lease["endMs"] and self._views.now() * 1000 >= lease["endMs"]
            if caller.managed and lease["buyer"] != caller.address and not ended:
                raise ApiError(403, "forbidden", f"lease {lease_id} belongs to another buyer")
            # refused closes settle nothing
            self.with_state(lease_id, lambda st: self._actor.simulate(self._calls.close_lease(st), caller.address))
            self._relayer.settle_lease_now(lease_id)  # the provider is paid for the usage attested so far
            return self.with_state(lease_id, lambda st: self._actor.act(caller, self._calls.close_lease(st)))

        return self._idem.run(caller.address, key, fingerprint("POST", f"/v1/leases/{lease_id}/close", None), action)

    def dispute(self, caller: Caller, lease_id: int) -> ActionOut:
        """Freeze the pending charges (buyer, within the challenge period)."""
        caller.require("buyer")
        self._buyer_lease(caller, lease_id)
        return self.with_state(lease_id, lambda st: self._actor.act(caller, self._calls.dispute(st)))

    def rate(self, caller: Caller, lease_id: int, stars: int) -> ActionOut:
        """Rate the provider 1..5 once the lease is Closed or Exhausted (buyer, once)."""
        caller.require("buyer")
        self._buyer_lease(caller, lease_id)
        return self._actor.act(caller, self._calls.rate(lease_id, stars))

    def release_earnings(self, caller: Caller | None, lease_id: int) -> ActionOut:
        """Move charges past their challenge period to the rights holder's withdrawable balance (anyone; without
        an account the bridge sends it)."""
        self._views.lease(lease_id)
        return self.with_state(lease_id, lambda st: self._actor.act_public(caller, self._calls.release_earnings(st)))

    def expire(self, caller: Caller | None, lease_id: int) -> ActionOut:
        """Expire an Open lease past its start deadline: full refund to the buyer (anyone; without an account the
        bridge sends it)."""
        self._views.lease(lease_id)
        return self._actor.act_public(caller, self._calls.expire_lease(lease_id))
