"""Disputes: a buyer freezes a lease's charges within the challenge period; an arbiter (ARBITER_ROLE on the
escrow) splits the frozen amount. Through the API an arbiter is a managed account with the ``arbiter`` role
(on dev chains the bridge grants it the on-chain role with the deployer's key) or a wallet holding the role."""

from __future__ import annotations

import json
from typing import Any

from eth_account.signers.local import LocalAccount

from ledger.chain.deployment import ARBITER_ROLE
from ledger.chain.suite import LedgerChain

from ..schemas import ActionOut
from ..store import Store
from .actions import Actor
from .caller import Caller
from .leases import Leases


class Disputes:
    def __init__(self, ledger: LedgerChain, store: Store, actor: Actor, leases: Leases, admin: LocalAccount | None) -> None:
        self._ledger = ledger
        self._store = store
        self._actor = actor
        self._leases = leases
        self._admin = admin  # dev chains only: the deployer, who may grant ARBITER_ROLE

    def grant_arbiter(self, address: str) -> str:
        """Give a new arbiter account the escrow's ARBITER_ROLE; what was done, in words."""
        if self._admin is None:
            return (
                f"the escrow's admin must grant ARBITER_ROLE to {address} on chain "
                f"(grantRole(0x{ARBITER_ROLE.hex()}, {address}) on {self._ledger.deployment.escrow})"
            )
        self._actor.send(self._admin, self._ledger.calls.grant_role("escrow", ARBITER_ROLE, address))
        return f"ARBITER_ROLE granted to {address} on the escrow (dev chain: by the deployer)"

    def list(self, status: str) -> list[dict[str, Any]]:
        """Disputes in chain order: ``open``, ``resolved`` or ``all``."""
        opened: dict[int, dict[str, Any]] = {}
        for e in self._store.index.events_named(("DisputeOpened", "DisputeResolved")):
            a = json.loads(e.args)
            lease_id = int(a["leaseId"])
            if e.name == "DisputeOpened":
                opened[lease_id] = {
                    "leaseId": lease_id,
                    "buyer": a["buyer"],
                    "frozenWei": str(a["amount"]),
                    "openedAt": e.block_ts,
                    "status": "open",
                    "resolution": None,
                }
            elif lease_id in opened:
                opened[lease_id]["status"] = "resolved"
                opened[lease_id]["resolution"] = {
                    "buyerShareWei": str(a["buyerShare"]),
                    "providerShareWei": str(a["providerShare"]),
                    "slashedWei": str(a["slashed"]),
                    "providerFault": bool(a["providerFault"]),
                    "resolvedAt": e.block_ts,
                }
        rows = list(opened.values())
        return rows if status == "all" else [r for r in rows if r["status"] == status]

    def resolve(self, caller: Caller, lease_id: int, buyer_share_bps: int, provider_fault: bool) -> ActionOut:
        """Split a lease's frozen charges: ``buyer_share_bps`` of them back to the buyer, the rest released to
        the holder; ``provider_fault`` also slashes the provider's stake to the buyer."""
        caller.require("arbiter")
        self._leases.require(lease_id)
        return self._leases.with_state(
            lease_id,
            lambda st: self._actor.act(caller, self._ledger.calls.resolve_dispute(st, buyer_share_bps, provider_fault)),
        )
