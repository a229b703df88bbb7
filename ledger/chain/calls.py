"""Call builders: every write of the suite (and of an ERC-20) as a :class:`Call`, plain data that the one
sender (:class:`ledger.chain.sender.TxSender`) simulates, signs and sends, or turns into an unsigned
transaction for a wallet.

Arguments are checked and encoded here (addresses checksummed, labels padded to their bytes32/bytes8
fields); a value that cannot be encoded raises :class:`ledger.protocol.ProtocolError`. Calls that act on a
lease's settlement state (close, top-up, dispute, resolve, release) take its
:class:`ledger.protocol.settlement.LeaseState`: the escrow checks ``ckpt`` and ``lastReportHash`` against
its one-slot commitment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from ..protocol.economics import BillingMode, NodeFeature
from ..protocol.errors import ProtocolError
from ..protocol.report import MeteringReport
from ..protocol.settlement import LeaseState, encode_entries, encode_entry
from .contracts import Contracts


@dataclass(frozen=True, slots=True)
class Call:
    """A transaction to make: ``data`` to ``to`` with ``value`` wei. ``label`` names it in logs and errors
    (``escrow.openLease``)."""

    to: str
    data: bytes
    value: int = 0
    label: str = ""


def pad_bytes(value: bytes | str, size: int, name: str) -> bytes:
    """A right-padded fixed-size label (bytes32, bytes8) from bytes or UTF-8 text."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) > size:
        raise ProtocolError(f"{name} is longer than {size} bytes")
    return raw.ljust(size, b"\x00")


class Calls:
    """Builds the suite's calls for one deployment."""

    def __init__(self, contracts: Contracts) -> None:
        self.contracts = contracts

    def call(self, contract: str, function: str, *args: Any, value: int = 0) -> Call:
        """Any function of "registry", "escrow" or "reputation" by name (the typed builders below use it)."""
        c = self.contracts.by_name.get(contract)
        if c is None:
            raise ProtocolError(f"this deployment has no {contract} contract")
        data = c.encode_abi(function, args=list(args))
        return Call(c.address, bytes.fromhex(data[2:]), int(value), f"{contract}.{function}")

    def erc20(self, token: str, function: str, *args: Any) -> Call:
        c = self.contracts.erc20(token)
        data = c.encode_abi(function, args=list(args))
        return Call(c.address, bytes.fromhex(data[2:]), 0, f"erc20.{function}")

    # --- ERC-20 ------------------------------------------------------------------------------------------

    def approve(self, token: str, spender: str, amount: int) -> Call:
        return self.erc20(token, "approve", to_checksum_address(spender), amount)

    def mint(self, token: str, to: str, amount: int) -> Call:
        """The dev token's open ``mint`` (MockERC20, dev chains only)."""
        return self.erc20(token, "mint", to_checksum_address(to), amount)

    def transfer(self, token: str, to: str, amount: int) -> Call:
        return self.erc20(token, "transfer", to_checksum_address(to), amount)

    # --- CapacityRegistry --------------------------------------------------------------------------------

    def register_provider(self, payout: str, metadata_uri: str) -> Call:
        return self.call("registry", "registerProvider", to_checksum_address(payout), metadata_uri)

    def update_provider(self, payout: str, metadata_uri: str) -> Call:
        return self.call("registry", "updateProvider", to_checksum_address(payout), metadata_uri)

    def stake(self, token: str, amount: int, *, value: int = 0) -> Call:
        """Add stake: ``value`` = ``amount`` for ETH (token = ETH), 0 for an ERC-20 (pulled)."""
        return self.call("registry", "stake", to_checksum_address(token), amount, value=value)

    def request_unstake(self, token: str, amount: int) -> Call:
        return self.call("registry", "requestUnstake", to_checksum_address(token), amount)

    def withdraw_stake(self, token: str) -> Call:
        return self.call("registry", "withdrawStake", to_checksum_address(token))

    def register_node(
        self,
        attestor: str,
        gpu_model: bytes | str,
        gpu_uuid_hashes: Sequence[bytes],
        vram_mib: int,
        max_power_mw_per_gpu: int,
        region: bytes | str,
        features: int = NodeFeature.NONE,
    ) -> Call:
        """``gpu_uuid_hashes[i]`` = ``ledger.protocol.gpu_uuid_hash`` of GPU i, in the node's order. ``features``:
        :class:`ledger.protocol.economics.NodeFeature` bits, fixed for the node's life (``GPM`` for GPUs that
        measure SM activity: without it the node cannot offer SM-active billing; any other bit is refused)."""
        if not 0 <= int(features) <= 0xFF:
            raise ProtocolError(f"features={int(features)} does not fit uint8")
        return self.call(
            "registry",
            "registerNode",
            to_checksum_address(attestor),
            pad_bytes(gpu_model, 32, "gpuModel"),
            [bytes(h) for h in gpu_uuid_hashes],
            vram_mib,
            max_power_mw_per_gpu,
            pad_bytes(region, 8, "region"),
            int(features),
        )

    def rotate_attestor(self, node_id: int, new_attestor: str) -> Call:
        return self.call("registry", "rotateAttestor", node_id, to_checksum_address(new_attestor))

    def deactivate_node(self, node_id: int) -> Call:
        return self.call("registry", "deactivateNode", node_id)

    def publish_offer(
        self,
        node_id: int,
        gpu_mask: int,
        price_per_gpu_second: int,
        token: str,
        billing_mode: int,
        valid_from: int,
        valid_until: int,
        min_buyer_score_bps: int = 0,
        terms_hash: bytes = b"",
    ) -> Call:
        """Publish an offer; mints gpuCount × (valid_until − valid_from) rights to the payout address.
        ``billing_mode``: a :class:`ledger.protocol.economics.BillingMode` (or its number / name); anything else
        raises :class:`ProtocolError`. SM-active billing needs a node registered with ``NodeFeature.GPM``."""
        return self.call(
            "registry",
            "publishOffer",
            node_id,
            gpu_mask,
            price_per_gpu_second,
            to_checksum_address(token),
            int(BillingMode.parse(billing_mode)),
            valid_from,
            valid_until,
            min_buyer_score_bps,
            pad_bytes(terms_hash, 32, "termsHash"),
        )

    def transfer_rights(self, holder: str, to: str, offer_id: int, amount: int) -> Call:
        """ERC-1155 ``safeTransferFrom`` (sent by the holder or an approved operator)."""
        return self.call("registry", "safeTransferFrom", to_checksum_address(holder), to_checksum_address(to), offer_id, amount, b"")

    def list_rights(self, offer_id: int, price_per_gpu_second: int) -> Call:
        """Resale: the sender's ask for leases locking its rights of the offer (0 withdraws it)."""
        return self.call("registry", "listRights", offer_id, price_per_gpu_second)

    def set_tiers(self, offer_id: int, tiers: Sequence[tuple[int, int]]) -> Call:
        """Tiered prices of an offer: up to two (minimum committed duration in s, price per GPU-second), the
        longer duration second; an empty list clears them."""
        if len(tiers) > 2:
            raise ProtocolError("an offer has at most two price tiers")
        words = [(int(d) << 96) | int(p) for d, p in tiers]
        if any(not 0 <= d < 2**32 or not 0 < p < 2**96 for d, p in tiers):
            raise ProtocolError("a tier's minimum duration must fit 32 bits and its price be positive below 2^96")
        packed = (words[0] if words else 0) | ((words[1] << 128) if len(words) == 2 else 0)
        return self.call("registry", "setTiers", offer_id, packed)

    def set_rights_approval(self, operator: str, approved: bool) -> Call:
        return self.call("registry", "setApprovalForAll", to_checksum_address(operator), approved)

    def set_registry_escrow(self, escrow: str) -> Call:
        return self.call("registry", "setEscrow", to_checksum_address(escrow))

    def set_unbonding_delay(self, seconds: int) -> Call:
        return self.call("registry", "setUnbondingDelay", seconds)

    def grant_role(self, contract: str, role: bytes, account: str) -> Call:
        return self.call(contract, "grantRole", role, to_checksum_address(account))

    def revoke_role(self, contract: str, role: bytes, account: str) -> Call:
        return self.call(contract, "revokeRole", role, to_checksum_address(account))

    # --- LeaseEscrow -------------------------------------------------------------------------------------

    def open_lease(
        self, offer_id: int, holder: str, duration_s: int, start_by: int, max_total: int, *, value: int = 0
    ) -> Call:
        """Open a lease; ``value`` = the quoted total for an ETH offer, 0 for an ERC-20 one (pulled)."""
        return self.call(
            "escrow", "openLease", offer_id, to_checksum_address(holder), duration_s, start_by, max_total, value=value
        )

    def activate_lease(self, lease_id: int) -> Call:
        return self.call("escrow", "activateLease", lease_id)

    def settle(self, report: MeteringReport, signature: bytes, state: LeaseState) -> Call:
        """Settle one signed report (reverts with the failing check's error)."""
        return self.call("escrow", "settle", encode_entry(report, signature, state))

    def settle_entries(self, entries: bytes) -> Call:
        """``settleBatch`` of packed entries (``ledger.protocol.settlement.encode_entries``)."""
        return self.call("escrow", "settleBatch", entries)

    def settle_batch(self, items: Iterable[tuple[MeteringReport, bytes, LeaseState]]) -> Call:
        return self.settle_entries(encode_entries(items))

    def top_up(self, state: LeaseState, amount: int, *, value: int = 0) -> Call:
        """Extend the lease by amount / (price × gpuCount) seconds; ``value`` = amount + fee for ETH."""
        return self.call("escrow", "topUp", state.lease_id, amount, state.ckpt, state.last_hash, value=value)

    def close_lease(self, state: LeaseState) -> Call:
        return self.call("escrow", "closeLease", state.lease_id, state.ckpt, state.last_hash)

    def expire_lease(self, lease_id: int) -> Call:
        return self.call("escrow", "expireLease", lease_id)

    def dispute(self, state: LeaseState) -> Call:
        return self.call("escrow", "dispute", state.lease_id, state.ckpt, state.last_hash)

    def resolve_dispute(self, state: LeaseState, buyer_share_bps: int, provider_fault: bool) -> Call:
        return self.call(
            "escrow", "resolveDispute", state.lease_id, buyer_share_bps, provider_fault, state.ckpt, state.last_hash
        )

    def release_earnings(self, state: LeaseState) -> Call:
        return self.call("escrow", "releaseEarnings", state.lease_id, state.ckpt, state.last_hash)

    def withdraw(self, token: str) -> Call:
        return self.call("escrow", "withdraw", to_checksum_address(token))

    def rate(self, lease_id: int, stars: int) -> Call:
        return self.call("escrow", "rate", lease_id, stars)

    def sync_node(self, node_id: int) -> Call:
        return self.call("escrow", "syncNode", node_id)

    def pause(self) -> Call:
        return self.call("escrow", "pause")

    def unpause(self) -> Call:
        return self.call("escrow", "unpause")

    def set_fee_config(
        self, base_fee_bps: int, discounted_fee_bps: int, discount_min_score_bps: int, discount_min_completed: int
    ) -> Call:
        return self.call(
            "escrow", "setFeeConfig", base_fee_bps, discounted_fee_bps, discount_min_score_bps, discount_min_completed
        )

    def set_challenge_period(self, seconds: int) -> Call:
        return self.call("escrow", "setChallengePeriod", seconds)

    def set_slash_bps(self, slash_bps: int) -> Call:
        return self.call("escrow", "setSlashBps", slash_bps)

    def set_treasury(self, treasury: str) -> Call:
        return self.call("escrow", "setTreasury", to_checksum_address(treasury))

    # --- VoucherVault ------------------------------------------------------------------------------------

    def create_programme(
        self,
        token: str,
        gpu_models: Sequence[bytes | str] = (),
        regions: Sequence[bytes | str] = (),
        providers: Sequence[str] = (),
    ) -> Call:
        """A voucher programme paying in ``token``; empty eligibility lists allow any GPU model, region,
        provider (models and regions as the registry stores them: padded labels)."""
        return self.call(
            "vault",
            "createProgramme",
            to_checksum_address(token),
            [pad_bytes(m, 32, "gpuModel") for m in gpu_models],
            [pad_bytes(r, 8, "region") for r in regions],
            [to_checksum_address(a) for a in providers],
        )

    def fund_programme(self, programme_id: int, amount: int, *, value: int = 0) -> Call:
        """``value`` = ``amount`` for an ETH programme, 0 for an ERC-20 one (pulled: approve the vault first)."""
        return self.call("vault", "fundProgramme", programme_id, amount, value=value)

    def set_related(self, programme_id: int, accounts: Sequence[str], related: bool = True) -> Call:
        return self.call("vault", "setRelated", programme_id, [to_checksum_address(a) for a in accounts], related)

    def grant_voucher(self, programme_id: int, beneficiary: str, face_value: int, expiry: int, copay_bps: int = 0) -> Call:
        return self.call("vault", "grantVoucher", programme_id, to_checksum_address(beneficiary), face_value, expiry, copay_bps)

    def close_programme(self, programme_id: int) -> Call:
        return self.call("vault", "closeProgramme", programme_id)

    def voucher_open_lease(
        self, voucher_id: int, offer_id: int, holder: str, duration_s: int, start_by: int, max_copay: int, *, value: int = 0
    ) -> Call:
        """Open a lease paid by a voucher; ``value`` = the co-pay for an ETH offer (0 for an ERC-20: pulled)."""
        return self.call(
            "vault", "openLease", voucher_id, offer_id, to_checksum_address(holder), duration_s, start_by, max_copay, value=value
        )

    def voucher_close_lease(self, state: LeaseState) -> Call:
        return self.call("vault", "closeLease", state.lease_id, state.ckpt, state.last_hash)

    def voucher_dispute(self, state: LeaseState) -> Call:
        return self.call("vault", "dispute", state.lease_id, state.ckpt, state.last_hash)

    def voucher_rate(self, lease_id: int, stars: int) -> Call:
        return self.call("vault", "rate", lease_id, stars)

    def reconcile_voucher_lease(self, state: LeaseState) -> Call:
        return self.call("vault", "reconcile", state.lease_id, state.ckpt, state.last_hash)

    def expire_voucher(self, voucher_id: int) -> Call:
        return self.call("vault", "expireVoucher", voucher_id)

    def vault_withdraw(self, token: str) -> Call:
        return self.call("vault", "withdraw", to_checksum_address(token))

    # --- DynamicPricer -----------------------------------------------------------------------------------

    def set_dynamic_rule(self, offer_id: int, floor: int, ceiling: int) -> Call:
        """The offer's dynamic price between ``floor`` and ``ceiling`` per GPU-second (the offer's provider or its
        payout address; then move the offer's rights to the pricer with :meth:`transfer_rights`)."""
        if not 0 < floor <= ceiling < 2**96:
            raise ProtocolError("a dynamic price needs 0 < floor <= ceiling < 2^96 (per GPU-second)")
        return self.call("pricer", "setRule", offer_id, floor, ceiling)

    def end_dynamic_rule(self, offer_id: int) -> Call:
        """End the rule: the pricer's ask is withdrawn and its unlocked rights go back to the rule's owner."""
        return self.call("pricer", "endRule", offer_id)

    def reprice(self, offer_id: int) -> Call:
        """Set the pricer's ask to the rule's current price (anyone)."""
        return self.call("pricer", "reprice", offer_id)

    def pricer_claim(self, state: LeaseState) -> Call:
        """Attribute what the escrow released to the pricer for a lease to the rule's owner (anyone)."""
        return self.call("pricer", "claim", state.lease_id, state.ckpt, state.last_hash)

    def pricer_withdraw(self, token: str) -> Call:
        return self.call("pricer", "withdraw", to_checksum_address(token))
