"""Prometheus metrics of one bridge process (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ledger_api_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ledger_api_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.reports_accepted = Counter(
            "ledger_api_reports_accepted_total", "metering reports stored", registry=self.registry
        )
        self.reports_rejected = Counter(
            "ledger_api_reports_rejected_total", "metering reports refused", ["code"], registry=self.registry
        )
        self.checkpoints_settled = Counter(
            "ledger_api_checkpoints_settled_total", "lease checkpoints settled on-chain", registry=self.registry
        )
        self.reports_reopened = Counter(
            "ledger_api_reports_reopened_total", "reports taken for settled that the chain does not hold, queued again",
            registry=self.registry,
        )
        self.chain_restarts = Counter(
            "ledger_api_chain_restarts_total", "supervised chain node (anvil) restarts", registry=self.registry
        )
        self.settlement_txs = Counter(
            "ledger_api_settlement_txs_total", "settlement transactions by outcome", ["outcome"],
            registry=self.registry,
        )
        self.relayer_pending = Gauge(
            "ledger_api_relayer_pending_leases", "leases with an unsettled report", registry=self.registry
        )
        self.indexed_block = Gauge("ledger_api_indexed_block", "last indexed block", registry=self.registry)
        self.chain_head = Gauge("ledger_api_chain_head", "latest chain block seen", registry=self.registry)
        self.reorgs = Counter("ledger_api_reorgs_total", "chain reorganisations rewound", registry=self.registry)
