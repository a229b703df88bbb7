"""Providers (register, stake, unstake; read with reputation) and their GPU nodes (register, rotate the
attestor key, deactivate; the active leases a node's attestor must meter)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from ledger.chain.calls import Call
from ledger.chain.suite import LedgerChain
from ledger.protocol import gpu_uuid_hash
from ledger.protocol.economics import ETH, NodeFeature

from ..errors import ApiError, NotFound
from ..schemas import ActionOut
from ..store import Store
from ..workers.indexer import Indexer
from .actions import Actor
from .caller import Caller
from ..chain_reads import ChainViews
from .idempotency import Answer, Idempotency, fingerprint


class Providers:
    def __init__(self, ledger: LedgerChain, views: ChainViews, actor: Actor, idempotency: Idempotency) -> None:
        self._calls = ledger.calls
        self._registry = ledger.deployment.registry
        self._views = views
        self._actor = actor
        self._idem = idempotency

    def register(self, caller: Caller, payout: str | None, metadata_uri: str) -> ActionOut:
        caller.require("provider")
        return self._actor.act(caller, self._calls.register_provider(payout or caller.address, metadata_uri))

    def stake(self, caller: Caller, token: str, amount: int, key: str | None, body: BaseModel) -> Answer:
        caller.require("provider")
        call = self._calls.stake(token, amount, value=amount if token == ETH else 0)
        return self._idem.run(
            caller.address, key, fingerprint("POST", "/v1/providers/stake", body),
            lambda: self._actor.act_paying(caller, call, token, self._registry, amount),
        )

    def request_unstake(self, caller: Caller, token: str, amount: int) -> ActionOut:
        caller.require("provider")
        return self._actor.act(caller, self._calls.request_unstake(token, amount))

    def withdraw_stake(self, caller: Caller, token: str, key: str | None, body: BaseModel) -> Answer:
        caller.require("provider")
        call = self._calls.withdraw_stake(token)
        return self._idem.run(
            caller.address, key, fingerprint("POST", "/v1/providers/withdraw-stake", body),
            lambda: self._actor.act(caller, call),
        )

    def get(self, address: str) -> dict[str, Any]:
        p = self._views.provider(address)
        if not p["registered"]:
            raise NotFound("provider", address)
        rep = self._views.reputation(address)
        st = self._views.stake(address, ETH)
        return {
            "address": address,
            "registered": True,
            "payout": p["payout"],
            "metadataURI": p["metadataURI"],
            "lockedRights": str(p["lockedRights"]),
            "scoreBps": rep["scoreBps"],
            "counts": rep["counts"],
            "stake": {"token": ETH, **{k: str(int(v)) for k, v in st.items()}},
        }


class Nodes:
    def __init__(self, ledger: LedgerChain, views: ChainViews, actor: Actor, store: Store, indexer: Indexer) -> None:
        self._calls = ledger.calls
        self._views = views
        self._actor = actor
        self._store = store
        self._indexer = indexer

    def register(
        self,
        caller: Caller,
        attestor: str,
        gpu_model: str,
        uuids: list[str] | None,
        uuid_hashes: list[str] | None,
        vram_mib: int,
        max_power_mw_per_gpu: int,
        region: str,
        *,
        gpm: bool = False,
    ) -> ActionOut:
        caller.require("provider")
        hashes = [gpu_uuid_hash(u) for u in uuids] if uuids is not None else [bytes.fromhex(h[2:]) for h in uuid_hashes or []]
        if len(set(hashes)) != len(hashes):
            raise ApiError(422, "validation_error", "a GPU is listed twice", field="gpuUuids")
        features = NodeFeature.GPM if gpm else 0
        call = self._calls.register_node(attestor, gpu_model, hashes, vram_mib, max_power_mw_per_gpu, region, features)
        return self._actor.act(caller, call)

    def _own(self, caller: Caller, node_id: int) -> dict[str, Any]:
        node = self._views.node(node_id)
        if caller.managed and node["provider"] != caller.address:
            raise ApiError(403, "forbidden", f"node {node_id} belongs to another provider")
        return node

    def _owned_call(self, caller: Caller, node_id: int, call: Call) -> ActionOut:
        caller.require("provider")
        self._own(caller, node_id)
        return self._actor.act(caller, call)

    def rotate_attestor(self, caller: Caller, node_id: int, attestor: str) -> ActionOut:
        if self._views.node(node_id)["attestor"].lower() == attestor.lower():
            raise ApiError(422, "validation_error", f"{attestor} already is node {node_id}'s attestor", field="attestor")
        return self._owned_call(caller, node_id, self._calls.rotate_attestor(node_id, attestor))

    def deactivate(self, caller: Caller, node_id: int) -> ActionOut:
        return self._owned_call(caller, node_id, self._calls.deactivate_node(node_id))

    def get(self, node_id: int) -> dict[str, Any]:
        return self._views.node(node_id)

    def active_leases(self, node_id: int) -> list[dict[str, Any]]:
        """Leases the node's attestor must meter now (api/METERING_API.md §2)."""
        if self._indexer.node_row(node_id) is None:
            raise ApiError(404, "unknown_node", f"node {node_id} is unknown to the bridge")
        rows, offers = self._store.index.active_leases_of_node(node_id)
        out = []
        for r in rows:
            d = json.loads(r.data)
            offer = offers.get(r.offer_id)
            out.append(
                {
                    "leaseId": r.lease_id,
                    "gpuIndices": json.loads(offer.data)["gpuIndices"] if offer else [],
                    "startMs": int(d["startMs"]),
                    "endMs": int(d["endMs"]),
                    "state": r.status,
                    "gpuSetHash": d["gpuSetHash"],
                }
            )
        return sorted(out, key=lambda x: x["leaseId"])
