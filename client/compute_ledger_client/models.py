"""What the bridge answers, as typed objects: snake_case attributes (``lease.money.escrow``), money as ``int``
wei (the bridge sends decimal strings so that JavaScript keeps every digit; here they are parsed back), unix
seconds and milliseconds as ``int``. Fields the bridge adds later are kept (``model_extra``), never refused."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

BillingMode = Literal["reserved", "metered", "sm_active"]


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)


class Event(Model):
    """A contract event of a transaction: ``args`` as the bridge gives them (integers as decimal strings)."""

    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int

    def int_arg(self, name: str) -> int:
        """An integer argument (an amount, an id) as an ``int``."""
        return int(self.args[name])


class Action(Model):
    """The outcome of a write. ``status``: ``mined`` (a managed account's transaction, or a wallet's once this
    client signed and submitted it) or ``unsigned`` (a wallet address without a key: sign ``unsigned_tx`` and
    :meth:`~compute_ledger_client.ComputeLedger.submit_transaction`). ``replayed``: the bridge answered a
    retry with the first answer of the same Idempotency-Key (nothing was done twice)."""

    status: Literal["mined", "unsigned"]
    tx_hash: str | None = None
    block_number: int | None = None
    events: list[Event] = Field(default_factory=list)
    result: dict[str, Any] = Field(default_factory=dict)
    unsigned_tx: dict[str, Any] | None = None
    ethers_tx: dict[str, Any] | None = None
    replayed: bool = False
    idempotency_key: str | None = None

    def events_named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    def _id(self, key: str) -> int:
        if key not in self.result:
            raise KeyError(f"the action's result has no {key} (status {self.status}; result {self.result})")
        return int(self.result[key])

    @property
    def lease_id(self) -> int:
        return self._id("leaseId")

    @property
    def node_id(self) -> int:
        return self._id("nodeId")

    @property
    def offer_id(self) -> int:
        return self._id("offerId")


class AccountCreated(Model):
    address: str
    roles: list[str]
    api_key: str = Field(description="shown once: keep it")
    notes: list[str] = Field(default_factory=list)


class Account(Model):
    address: str
    roles: list[str]
    kind: str
    label: str
    eth_balance_wei: int


class Health(Model):
    status: str
    chain_backend: str
    chain_id: int
    head: int
    indexed_block: int
    pending_leases: int
    escrow: str
    registry: str
    reputation: str


class ChainInfo(Model):
    chain_id: int
    rpc_url: str | None
    rpc_note: str
    deployment: dict[str, Any]
    domain: dict[str, Any]
    abis: dict[str, str]
    challenge_period_s: int
    chain_time: int | None


class Token(Model):
    address: str
    name: str | None
    symbol: str | None
    decimals: int | None
    native: bool
    dev: bool
    faucet: bool
    in_offers: bool


class TokenList(Model):
    tokens: list[Token]
    dev_token: str | None


class Balance(Model):
    address: str
    token: str
    withdrawable_wei: int
    wallet_balance_wei: int
    eth_balance_wei: int


class Reputation(Model):
    address: str
    score_bps: int
    counts: dict[str, Any]


class Provider(Model):
    address: str
    registered: bool
    payout: str
    metadata_uri: str = Field(alias="metadataURI")
    locked_rights: int
    score_bps: int
    counts: dict[str, Any]
    stake: dict[str, Any]


class Node(Model):
    node_id: int
    provider: str
    attestor: str
    gpu_model: str
    gpu_count: int
    vram_mib: int = Field(alias="vramMiB")
    max_power_mw_per_gpu: int
    region: str
    active: bool
    gpm: bool
    gpu_uuid_hashes: list[str]


class ActiveLease(Model):
    lease_id: int
    gpu_indices: list[int]
    start_ms: int
    end_ms: int
    state: str
    gpu_set_hash: str


class Offer(Model):
    offer_id: int
    provider: str
    node_id: int
    gpu_model: str
    gpu_count: int
    gpu_indices: list[int]
    vram_mib: int = Field(alias="vramMiB")
    region: str
    price_per_gpu_second: int
    price_per_gpu_hour: int
    token: str
    billing_mode: BillingMode
    valid_from: int
    valid_until: int
    min_buyer_score_bps: int
    provider_score_bps: int
    gpu_set_hash: str
    available: bool
    live_lease_id: int


class OfferPage(Model):
    offers: list[Offer]
    total: int
    limit: int
    offset: int


class AttestorPeriod(Model):
    address: str
    from_ms: int
    until_ms: int | None


class TopUp(Model):
    amount: int
    fee: int
    block: int
    log_index: int


class Money(Model):
    """The lease's money in wei, folded from the escrow's events."""

    escrow: int
    fee: int
    top_ups: list[TopUp]
    closed: bool
    exhausted: bool
    refund: int
    closed_charged: int | None
    fee_kept: int | None
    fee_refund: int
    charged: int
    disputed: int
    released: int


class Settlement(Model):
    seq: int
    report_hash: str
    ckpt: int
    cum_busy_ms: int
    cum_allocated_ms: int
    cum_energy_mj: int
    cum_sm_active_ms: int
    settled_at: int
    billable_delta: int
    charged: int
    samples_root: str | None
    block: int
    log_index: int
    record_index: int
    tx_hash: str | None


class LeaseDispute(Model):
    frozen: int
    block: int
    resolved: bool
    buyer_share: int
    provider_share: int
    slashed: int
    provider_fault: bool


class Checkpoint(Model):
    last_seq: int
    last_report_hash: str
    cum_busy_ms: int
    cum_energy_mj: int
    cum_allocated_ms: int
    cum_sm_active_ms: int
    last_settled_at: int
    charged: int
    paid: int
    pending: int
    frozen: int
    refunded: int
    remaining: int


class Earnings(Model):
    pending: int
    frozen: int
    challenge_period_s: int
    releasable_at: int | None


class Usage(Model):
    reports: int
    through_ms: int
    allocated_ms: int
    busy_ms: int
    sm_active_ms: int
    energy_mj: int
    sm_active_share_of_busy_pct: float | None


class Lease(Model):
    """A lease's terms, money, settlements, checkpoint, earnings and usage, as the bridge indexed them."""

    lease_id: int
    chain_id: int
    escrow: str
    state: str
    offer_id: int
    node_id: int
    buyer: str
    holder: str
    provider: str
    token: str
    gpu_indices: list[int]
    gpu_count: int
    gpu_set_hash: str
    start_by: int
    start_ms: int
    end_ms: int
    duration_s: int
    price_per_gpu_second: int
    billing_mode: BillingMode
    fee_bps: int
    max_power_mw_per_gpu: int
    attestors: list[AttestorPeriod]
    money: Money
    settlements: list[Settlement]
    disputes: list[LeaseDispute] = Field(default_factory=list)
    checkpoint: Checkpoint
    earnings: Earnings
    usage: Usage | None = None
    sample_period_ms: int | None = None


class LeaseSummary(Model):
    lease_id: int
    offer_id: int
    node_id: int
    buyer: str
    provider: str
    state: str


class LeasePage(Model):
    leases: list[LeaseSummary]
    total: int


class Dispute(Model):
    lease_id: int
    buyer: str
    frozen_wei: int
    opened_at: int
    status: str
    resolution: dict[str, Any] | None = None


class ReportEntry(Model):
    """A signed report as stored (``report``: the wire form, 64-bit fields as decimal strings) with its raw
    samples; ``status`` (accepted | queued | settled | superseded | rejected) on lease pages, not in the archive."""

    report: dict[str, Any]
    signature: str
    report_hash: str
    node_id: int
    status: str | None = None
    reason: str | None = None
    samples: list[list[int | str]] | None = None


class ReportPage(Model):
    reports: list[ReportEntry]
    next_from_seq: int | None


class SampleProof(Model):
    index: int
    sample: list[int | str]
    leaf: str
    proof: list[str]
    root: str


class AuditLease(Model):
    lease_id: int
    state: str
    reports: int
    settlements: int


class AuditLeasePage(Model):
    leases: list[AuditLease]
    next_cursor: int | None


class MeteringDomain(Model):
    chain_id: int
    verifying_contract: str
    domain_version: str
    chain_clock: str
