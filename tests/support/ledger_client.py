"""A test-side client of the contracts: one method per contract function, sender first.

It is a thin layer over the product's chain layer (``ledger.chain``: call builders, the one transaction
sender, typed views, event decoding, lease states), so tests exercise exactly what the bridge and the demo
use; only the convenience of one method per write (and a quote-and-pay ``open_lease``) lives here.

Every write returns a :class:`ledger.chain.sender.TxOutcome` (``TxResult``) or, when it creates something,
a :class:`Created` with the new id. A revert raises :class:`ledger.chain.reverts.ContractRevert`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from ledger.chain.backends import Chain
from ledger.chain.calls import Call
from ledger.chain.deployment import Deployment
from ledger.chain.errors import ChainError
from ledger.chain.events import ChainEvent
from ledger.chain.sender import TxOutcome
from ledger.chain.suite import LedgerChain
from ledger.chain.views import (
    CheckpointInfo,
    FeeConfig,
    LeaseInfo,
    NodeInfo,
    OfferInfo,
    ProviderInfo,
    ReputationCounts,
    RightsInfo,
    StakeInfo,
)
from ledger.protocol.economics import (
    ETH,
    BillingMode,
    LeaseQuote,
    LeaseStatus,
    NodeFeature,
    Outcome,
    quote_lease,
    top_up_fee,
)
from ledger.protocol.report import MeteringReport
from ledger.protocol.vouchers import voucher_split
from ledger.protocol.settlement import LeaseState, encode_entries

TxResult = TxOutcome
Event = ChainEvent
ClientError = ChainError

__all__ = [
    "ETH",
    "BillingMode",
    "CheckpointInfo",
    "ClientError",
    "Created",
    "Event",
    "FeeConfig",
    "LeaseInfo",
    "LeaseQuote",
    "LeaseStatus",
    "LedgerClient",
    "NodeFeature",
    "NodeInfo",
    "OfferInfo",
    "Outcome",
    "ProviderInfo",
    "ReputationCounts",
    "RightsInfo",
    "StakeInfo",
    "TxResult",
]


@dataclass(frozen=True, slots=True)
class Created:
    """Result of a call that creates something with an id (node, offer, lease)."""

    id: int
    tx: TxOutcome


class _RawTx:
    """Sends or calls a bound web3 contract function (tests that poke at functions the product never calls,
    such as the registry's escrow-only hooks)."""

    def __init__(self, ledger: LedgerChain) -> None:
        self._ledger = ledger

    def call(self, fn: Any, sender: str | None = None) -> Any:
        if sender is None:
            return self._ledger.read.call(fn)
        return self._ledger.read._read(lambda: fn.call({"from": to_checksum_address(sender)}))

    def send(self, fn: Any, sender: str, value: int = 0, gas: int | None = None) -> TxOutcome:
        call = Call(fn.address, bytes.fromhex(fn._encode_transaction_data()[2:]), value, str(fn.fn_name))
        return self._ledger.sender.send(sender, call, gas_limit=gas)

    def deploy(self, artifact: Mapping[str, Any], sender: str, args: Sequence[Any]) -> str:
        return self._ledger.sender.deploy(sender, artifact, args)[0]


class LedgerClient:
    """Typed access to CapacityRegistry, LeaseEscrow (+ extension) and Reputation of one deployment."""

    def __init__(self, chain: Chain, deployment: Deployment, *, keys: Mapping[str, bytes] | None = None) -> None:
        self.chain = chain
        self.w3 = chain.w3
        self.deployment = deployment
        self.ledger = LedgerChain(chain, deployment, keys=keys, estimate=False, poll_s=0.002)
        self.registry = self.ledger.contracts.registry
        self.escrow = self.ledger.contracts.escrow
        self.reputation = self.ledger.contracts.reputation
        self.read = self.ledger.read
        self.calls = self.ledger.calls
        self.tx = _RawTx(self.ledger)

    def __getattr__(self, name: str) -> Any:
        # every view of ledger.chain.views.ChainReader (lease, offer, node, withdrawable, ...) by its name
        read = self.__dict__.get("read")
        if read is not None and hasattr(read, name):
            return getattr(read, name)
        raise AttributeError(name)

    # --- plumbing ----------------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        return self.ledger.chain_id

    def _send(self, call: Call, sender: str, gas: int | None = None) -> TxOutcome:
        return self.ledger.sender.send(sender, call, gas_limit=gas)

    def _result(self, receipt: Any) -> TxOutcome:
        """A receipt decoded (an outcome is already decoded)."""
        if isinstance(receipt, TxOutcome):
            return receipt
        return self.ledger.sender.outcome(receipt)

    def decode_logs(self, logs: Any) -> list[ChainEvent]:
        return self.ledger.decoder.decode(logs)

    def events(self, name: str | None = None, *, from_block: int | None = None, to_block: int | str = "latest",
               contract: str | None = None) -> list[ChainEvent]:
        return self.ledger.events.read(name, from_block=from_block, to_block=to_block, contract=contract)

    def note_settlements(self, events: Any) -> None:
        self.ledger.states.note(events)

    def lease_states(self, lease_ids: Sequence[int]) -> dict[int, LeaseState]:
        return self.ledger.states.states(lease_ids)

    def lease_state(self, lease_id: int) -> LeaseState:
        return self.ledger.states.state(lease_id)

    def checkpoint(self, lease_id: int) -> CheckpointInfo:
        return self.read.checkpoint(lease_id, self.lease_state(lease_id))

    # --- ERC-20 ------------------------------------------------------------------------------------------

    def erc20(self, token: str) -> Any:
        return self.ledger.contracts.erc20(token)

    def erc20_approve(self, sender: str, token: str, spender: str, amount: int) -> TxOutcome:
        return self._send(self.calls.approve(token, spender, amount), sender)

    def _ensure_allowance(self, sender: str, token: str, spender: str, amount: int) -> None:
        if self.read.erc20_allowance(token, sender, spender) < amount:
            self._send(self.calls.approve(token, spender, amount), sender)

    # --- CapacityRegistry --------------------------------------------------------------------------------

    def register_provider(self, sender: str, payout: str, metadata_uri: str) -> TxOutcome:
        return self._send(self.calls.register_provider(payout, metadata_uri), sender)

    def update_provider(self, sender: str, payout: str, metadata_uri: str) -> TxOutcome:
        return self._send(self.calls.update_provider(payout, metadata_uri), sender)

    def stake(self, sender: str, token: str, amount: int, *, approve: bool = True) -> TxOutcome:
        token = to_checksum_address(token)
        if token == ETH:
            return self._send(self.calls.stake(token, amount, value=amount), sender)
        if approve:
            self._ensure_allowance(sender, token, self.deployment.registry, amount)
        return self._send(self.calls.stake(token, amount), sender)

    def request_unstake(self, sender: str, token: str, amount: int) -> TxOutcome:
        return self._send(self.calls.request_unstake(token, amount), sender)

    def withdraw_stake(self, sender: str, token: str) -> TxOutcome:
        return self._send(self.calls.withdraw_stake(token), sender)

    def register_node(self, sender: str, attestor: str, gpu_model: bytes | str, gpu_uuid_hashes: Sequence[bytes],
                      vram_mib: int, max_power_mw_per_gpu: int, region: bytes | str, *,
                      features: int = NodeFeature.NONE) -> Created:
        call = self.calls.register_node(attestor, gpu_model, gpu_uuid_hashes, vram_mib, max_power_mw_per_gpu, region, features)
        res = self._send(call, sender)
        return Created(int(res.event("NodeRegistered").args["nodeId"]), res)

    def rotate_attestor(self, sender: str, node_id: int, new_attestor: str) -> TxOutcome:
        return self._send(self.calls.rotate_attestor(node_id, new_attestor), sender)

    def deactivate_node(self, sender: str, node_id: int) -> TxOutcome:
        return self._send(self.calls.deactivate_node(node_id), sender)

    def publish_offer(self, sender: str, node_id: int, gpu_mask: int, price_per_gpu_second: int, token: str,
                      billing_mode: BillingMode | int, valid_from: int, valid_until: int, min_buyer_score_bps: int = 0,
                      terms_hash: bytes = b"") -> Created:
        call = self.calls.publish_offer(node_id, gpu_mask, price_per_gpu_second, token, int(billing_mode), valid_from,
                                        valid_until, min_buyer_score_bps, terms_hash)
        res = self._send(call, sender)
        return Created(int(res.event("OfferPublished").args["offerId"]), res)

    def transfer_rights(self, sender: str, to: str, offer_id: int, amount: int) -> TxOutcome:
        return self._send(self.calls.transfer_rights(sender, to, offer_id, amount), sender)

    def set_rights_approval(self, sender: str, operator: str, approved: bool) -> TxOutcome:
        return self._send(self.calls.set_rights_approval(operator, approved), sender)

    def transfer_rights_from(self, sender: str, holder: str, to: str, offer_id: int, amount: int) -> TxOutcome:
        return self._send(self.calls.transfer_rights(holder, to, offer_id, amount), sender)

    def set_registry_escrow(self, sender: str, escrow: str) -> TxOutcome:
        return self._send(self.calls.set_registry_escrow(escrow), sender)

    def set_unbonding_delay(self, sender: str, seconds: int) -> TxOutcome:
        return self._send(self.calls.set_unbonding_delay(seconds), sender)

    def grant_role(self, sender: str, contract: str, role: bytes, account: str) -> TxOutcome:
        return self._send(self.calls.grant_role(contract, role, account), sender)

    def revoke_role(self, sender: str, contract: str, role: bytes, account: str) -> TxOutcome:
        return self._send(self.calls.revoke_role(contract, role, account), sender)

    # --- LeaseEscrow -------------------------------------------------------------------------------------

    def quote_lease(self, offer_id: int, duration_s: int, holder: str | None = None) -> LeaseQuote:
        """What openLease will charge now: escrow = price × gpuCount × duration, plus the fee; the price is
        ``holder``'s resale ask when it set one, else the offer's tier for the duration, else its price."""
        o = self.read.offer(offer_id)
        price = self.read.lease_price(offer_id, holder or ETH, duration_s)
        return quote_lease(price, o.gpu_count, duration_s, self.read.fee_bps_for(o.provider))

    def set_tiers(self, sender: str, offer_id: int, tiers: Sequence[tuple[int, int]]) -> TxOutcome:
        return self._send(self.calls.set_tiers(offer_id, tiers), sender)

    def list_rights(self, sender: str, offer_id: int, price_per_gpu_second: int) -> TxOutcome:
        return self._send(self.calls.list_rights(offer_id, price_per_gpu_second), sender)

    def open_lease(self, sender: str, offer_id: int, holder: str, duration_s: int, start_by: int,
                   max_total: int | None = None, *, approve: bool = True) -> Created:
        """Open a lease as ``sender`` paying the quoted total (ETH value, or an ERC-20 approved first if
        ``approve``). ``max_total`` defaults to the quote."""
        o = self.read.offer(offer_id)
        q = self.quote_lease(offer_id, duration_s, holder)
        cap = q.total if max_total is None else max_total
        if to_checksum_address(o.token) == ETH:
            res = self._send(self.calls.open_lease(offer_id, holder, duration_s, start_by, cap, value=q.total), sender)
        else:
            if approve:
                self._ensure_allowance(sender, o.token, self.deployment.escrow, q.total)
            res = self._send(self.calls.open_lease(offer_id, holder, duration_s, start_by, cap), sender)
        return Created(int(res.event("LeaseOpened").args["leaseId"]), res)

    def activate_lease(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.activate_lease(lease_id), sender)

    def settle(self, sender: str, report: MeteringReport, signature: bytes, *, state: LeaseState | None = None,
               gas: int | None = None) -> TxOutcome:
        st = state or self.lease_state(report.leaseId)
        return self._send(self.calls.settle(report, signature, st), sender, gas=gas)

    def settle_batch(self, sender: str, reports: Sequence[MeteringReport], signatures: Sequence[bytes], *,
                     states: Mapping[int, LeaseState] | None = None, gas: int | None = None) -> TxOutcome:
        """Settle many reports in one transaction; every entry of a lease carries the same (pre-batch) state."""
        if len(reports) != len(signatures):
            raise ChainError("reports and signatures differ in length")
        if states is None:
            states = self.lease_states([r.leaseId for r in reports])
        data = encode_entries((r, s, states[r.leaseId]) for r, s in zip(reports, signatures))
        return self._send(self.calls.settle_entries(data), sender, gas=gas)

    def top_up(self, sender: str, lease_id: int, amount: int, *, approve: bool = True) -> TxOutcome:
        ls = self.read.lease(lease_id)
        fee = top_up_fee(ls.price_per_gpu_second * ls.gpu_count * ls.duration_s, amount, ls.fee_bps)
        st = self.lease_state(lease_id)
        if to_checksum_address(ls.token) == ETH:
            return self._send(self.calls.top_up(st, amount, value=amount + fee), sender)
        if approve:
            self._ensure_allowance(sender, ls.token, self.deployment.escrow, amount + fee)
        return self._send(self.calls.top_up(st, amount), sender)

    def close_lease(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.close_lease(self.lease_state(lease_id)), sender)

    def expire_lease(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.expire_lease(lease_id), sender)

    def dispute(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.dispute(self.lease_state(lease_id)), sender)

    def resolve_dispute(self, sender: str, lease_id: int, buyer_share_bps: int, provider_fault: bool) -> TxOutcome:
        return self._send(self.calls.resolve_dispute(self.lease_state(lease_id), buyer_share_bps, provider_fault), sender)

    def release_earnings(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.release_earnings(self.lease_state(lease_id)), sender)

    def withdraw(self, sender: str, token: str = ETH) -> TxOutcome:
        return self._send(self.calls.withdraw(token), sender)

    def rate(self, sender: str, lease_id: int, stars: int) -> TxOutcome:
        return self._send(self.calls.rate(lease_id, stars), sender)

    def sync_node(self, sender: str, node_id: int) -> TxOutcome:
        return self._send(self.calls.sync_node(node_id), sender)

    def pause(self, sender: str) -> TxOutcome:
        return self._send(self.calls.pause(), sender)

    def unpause(self, sender: str) -> TxOutcome:
        return self._send(self.calls.unpause(), sender)

    def set_fee_config(self, sender: str, base_fee_bps: int, discounted_fee_bps: int, discount_min_score_bps: int,
                       discount_min_completed: int) -> TxOutcome:
        call = self.calls.set_fee_config(base_fee_bps, discounted_fee_bps, discount_min_score_bps, discount_min_completed)
        return self._send(call, sender)

    def set_challenge_period(self, sender: str, seconds: int) -> TxOutcome:
        return self._send(self.calls.set_challenge_period(seconds), sender)

    def set_slash_bps(self, sender: str, slash_bps: int) -> TxOutcome:
        return self._send(self.calls.set_slash_bps(slash_bps), sender)

    def set_treasury(self, sender: str, treasury: str) -> TxOutcome:
        return self._send(self.calls.set_treasury(treasury), sender)

    # --- VoucherVault ------------------------------------------------------------------------------------

    @property
    def vault(self) -> Any:
        return self.read.vault

    def create_programme(self, sender: str, token: str = ETH, gpu_models: Sequence[bytes | str] = (),
                         regions: Sequence[bytes | str] = (), providers: Sequence[str] = ()) -> Created:
        res = self._send(self.calls.create_programme(token, gpu_models, regions, providers), sender)
        return Created(int(res.event("ProgrammeCreated").args["programmeId"]), res)

    def fund_programme(self, sender: str, programme_id: int, amount: int, *, approve: bool = True) -> TxOutcome:
        token = self.read.programme(programme_id).token
        if to_checksum_address(token) == ETH:
            return self._send(self.calls.fund_programme(programme_id, amount, value=amount), sender)
        if approve:
            self._ensure_allowance(sender, token, self.deployment.voucher_vault or "", amount)
        return self._send(self.calls.fund_programme(programme_id, amount), sender)

    def set_related(self, sender: str, programme_id: int, accounts: Sequence[str], related: bool = True) -> TxOutcome:
        return self._send(self.calls.set_related(programme_id, accounts, related), sender)

    def grant_voucher(self, sender: str, programme_id: int, beneficiary: str, face_value: int, expiry: int,
                      copay_bps: int = 0) -> Created:
        res = self._send(self.calls.grant_voucher(programme_id, beneficiary, face_value, expiry, copay_bps), sender)
        return Created(int(res.event("VoucherGranted").args["voucherId"]), res)

    def close_programme(self, sender: str, programme_id: int) -> TxOutcome:
        return self._send(self.calls.close_programme(programme_id), sender)

    def voucher_quote(self, voucher_id: int, offer_id: int, duration_s: int, holder: str | None = None) -> tuple[int, int]:
        """(paid by the voucher, co-pay) of a lease opened now."""
        v = self.read.voucher(voucher_id)
        q = self.quote_lease(offer_id, duration_s, holder)
        return voucher_split(q.total, v.copay_bps, v.balance)

    def voucher_open_lease(self, sender: str, voucher_id: int, offer_id: int, holder: str, duration_s: int,
                           start_by: int, max_copay: int | None = None, *, value: int | None = None,
                           approve: bool = True) -> Created:
        """Open a lease through the vault paying the quoted co-pay (ETH value, or an ERC-20 approved first)."""
        o = self.read.offer(offer_id)
        _, copay = self.voucher_quote(voucher_id, offer_id, duration_s, holder)
        cap = copay if max_copay is None else max_copay
        if to_checksum_address(o.token) == ETH:
            call = self.calls.voucher_open_lease(voucher_id, offer_id, holder, duration_s, start_by, cap,
                                                 value=copay if value is None else value)
        else:
            if approve and copay:
                self._ensure_allowance(sender, o.token, self.deployment.voucher_vault or "", copay)
            call = self.calls.voucher_open_lease(voucher_id, offer_id, holder, duration_s, start_by, cap)
        res = self._send(call, sender)
        return Created(int(res.event("LeaseOpened").args["leaseId"]), res)

    def voucher_close_lease(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.voucher_close_lease(self.lease_state(lease_id)), sender)

    def voucher_dispute(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.voucher_dispute(self.lease_state(lease_id)), sender)

    def voucher_rate(self, sender: str, lease_id: int, stars: int) -> TxOutcome:
        return self._send(self.calls.voucher_rate(lease_id, stars), sender)

    def reconcile(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.reconcile_voucher_lease(self.lease_state(lease_id)), sender)

    def expire_voucher(self, sender: str, voucher_id: int) -> TxOutcome:
        return self._send(self.calls.expire_voucher(voucher_id), sender)

    def vault_withdraw(self, sender: str, token: str = ETH) -> TxOutcome:
        return self._send(self.calls.vault_withdraw(token), sender)

    # --- DynamicPricer -------------------------------------------------------------------------------------

    def set_dynamic_rule(self, sender: str, offer_id: int, floor: int, ceiling: int) -> TxOutcome:
        return self._send(self.calls.set_dynamic_rule(offer_id, floor, ceiling), sender)

    def end_dynamic_rule(self, sender: str, offer_id: int) -> TxOutcome:
        return self._send(self.calls.end_dynamic_rule(offer_id), sender)

    def reprice(self, sender: str, offer_id: int) -> TxOutcome:
        return self._send(self.calls.reprice(offer_id), sender)

    def pricer_claim(self, sender: str, lease_id: int) -> TxOutcome:
        return self._send(self.calls.pricer_claim(self.lease_state(lease_id)), sender)

    def pricer_withdraw(self, sender: str, token: str = ETH) -> TxOutcome:
        return self._send(self.calls.pricer_withdraw(token), sender)
