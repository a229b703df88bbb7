"""Liveness and state of the bridge, and its Prometheus metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from ledger.chain.errors import ChainError
from ledger.chain.suite import LedgerChain

from ..metrics import Metrics
from ..workers.indexer import Indexer
from ..workers.relayer import Relayer


class Health:
    def __init__(self, ledger: LedgerChain, indexer: Indexer, relayer: Relayer, metrics: Metrics) -> None:
        self._ledger = ledger
        self._indexer = indexer
        self._relayer = relayer
        self._metrics = metrics

    def status(self) -> dict[str, Any]:
        """``ok`` when the chain answers; the indexer's lag is head − indexedBlock."""
        try:
            head = self._ledger.read.block_number()
            status = "ok"
        except ChainError:
            head, status = -1, "chain_unreachable"
        try:
            indexed, pending = self._indexer.indexed_block(), self._relayer.pending_count()
        except Exception:  # the database does not answer
            indexed, pending, status = -1, -1, "store_unreachable"
        return {
            "status": status,
            "chainBackend": self._ledger.chain.backend,
            "chainId": self._ledger.chain_id,
            "head": head,
            "indexedBlock": indexed,
            "pendingLeases": pending,
            "escrow": self._ledger.deployment.escrow,
            "registry": self._ledger.deployment.registry,
            "reputation": self._ledger.deployment.reputation,
        }

    def prometheus(self) -> bytes:
        self._metrics.relayer_pending.set(self._relayer.pending_count())
        return bytes(generate_latest(self._metrics.registry))
