"""Every route of the bridge a buyer, provider, arbiter or auditor uses, as one program each (see
``_core``): the sync and the async client both run these. Documentation of each operation is here; the
clients' methods carry it."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ._core import Program, Reply, Request, Sleep, new_idempotency_key
from .errors import ApprovalRequired, Conflict, WaitTimeout
from .models import (
    Account,
    Action,
    ActiveLease,
    AuditLeasePage,
    Balance,
    BillingMode,
    ChainInfo,
    Dispute,
    Health,
    Lease,
    LeasePage,
    MeteringDomain,
    Node,
    Offer,
    OfferPage,
    Provider,
    ReportEntry,
    ReportPage,
    Reputation,
    SampleProof,
    TokenList,
    AccountCreated,
)
from .wallet import sign_unsigned

ETH = "0x0000000000000000000000000000000000000000"
ZERO_HASH = "0x" + "00" * 32
LeaseState = Literal["Open", "Active", "Closed", "Expired", "Exhausted"]


@dataclass(frozen=True)
class Session:
    """Who the client acts as: a managed account (API key, in the HTTP client's headers), a wallet with its
    key here (writes are signed and submitted), or a wallet address alone (writes come back unsigned)."""

    wallet: LocalAccount | None = None
    wallet_address: str | None = None


# --- building blocks -----------------------------------------------------------------------------------


def _read(path: str, params: dict[str, Any] | None = None) -> Program[Any]:
    reply: Reply = yield Request("GET", path, params=params, repeatable=True)
    return reply.body


def _action(reply: Reply, key: str | None) -> Action:
    body = dict(reply.body) if isinstance(reply.body, dict) else {}
    return Action.model_validate({**body, "replayed": reply.replayed, "idempotencyKey": key})


def _write(
    s: Session, path: str, body: Any = None, *, keyed: bool = False, key: str | None = None, prefix: str = "call"
) -> Program[Action]:
    """POST a write. ``keyed``: the route takes an Idempotency-Key; one is made for this call unless given, and
    every retry sends the same one. A wallet with its key here signs what comes back unsigned (an ERC-20
    approval first when the bridge asks for one) and submits it."""
    if keyed and key is None:
        key = new_idempotency_key(prefix)
    # a wallet's write only builds a transaction: sending it twice cannot do anything twice
    req = Request("POST", path, json=body, idempotency_key=key if keyed else None,
                  repeatable=keyed or s.wallet_address is not None)  # fmt: skip
    while True:
        try:
            reply: Reply = yield req
        except ApprovalRequired as e:
            if s.wallet is None:
                raise
            yield from _submit_signed(s.wallet, e.unsigned_tx)
            continue  # the same request (same key) now builds the transaction itself
        break
    action = _action(reply, req.idempotency_key)
    if action.status == "unsigned" and s.wallet is not None and action.unsigned_tx is not None:
        return (yield from _submit_signed(s.wallet, action.unsigned_tx))
    return action


def _submit_signed(wallet: LocalAccount, unsigned_tx: dict[str, Any]) -> Program[Action]:
    # a key of this call: its retries get the first answer; a later call (the same bytes, say, once a
    # challenge period is over) is judged anew, not answered with an old refusal
    signed = sign_unsigned(wallet, unsigned_tx)
    return (yield from submit_transaction(Session(), signed.raw_transaction, idempotency_key=new_idempotency_key("tx")))


def _me_address(s: Session) -> Program[str]:
    if s.wallet_address is not None:
        return s.wallet_address
    return str((yield from _read("/v1/accounts/me"))["address"])


# --- everyone ------------------------------------------------------------------------------------------


def health(s: Session) -> Program[Health]:
    """The bridge's state: ``ok`` when the chain answers; the indexer's lag is head − indexed_block."""
    return Health.model_validate((yield from _read("/v1/health")))


def chain(s: Session) -> Program[ChainInfo]:
    """The chain id, RPC URL, deployment record, chain time and challenge period."""
    return ChainInfo.model_validate((yield from _read("/v1/chain")))


def create_account(s: Session, roles: Sequence[str], label: str = "") -> Program[AccountCreated]:
    """A managed account with ``roles`` (provider, buyer, auditor, arbiter). Its ``api_key`` is shown once:
    make a client with it (``ComputeLedger(url, api_key=...)``). It holds no ETH: :meth:`faucet` on dev chains."""
    reply: Reply = yield Request("POST", "/v1/accounts", json={"roles": list(roles), "label": label})
    return AccountCreated.model_validate(reply.body)


def me(s: Session) -> Program[Account]:
    """The calling account (API key) or wallet."""
    return Account.model_validate((yield from _read("/v1/accounts/me")))


def faucet(
    s: Session,
    address: str | None = None,
    amount_wei: int | None = None,
    token: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> Program[Action]:
    """Test ETH (or the dev token, ``token``) for ``address`` (default: this client's own account). Dev chains
    only (409 ``faucet_disabled`` elsewhere)."""
    addr = address if address is not None else (yield from _me_address(s))
    body: dict[str, Any] = {"address": addr, "token": token or ETH}
    if amount_wei is not None:
        body["amountWei"] = int(amount_wei)
    return (yield from _write(Session(), "/v1/faucet", body, keyed=True, key=idempotency_key, prefix="faucet"))


def tokens(s: Session) -> Program[TokenList]:
    """ETH, the dev token and the ERC-20s offers are priced in."""
    return TokenList.model_validate((yield from _read("/v1/tokens")))


def balance(s: Session, address: str | None = None, token: str | None = None) -> Program[Balance]:
    """What ``address`` (default: this client's account) may withdraw in ``token`` (default ETH), its wallet
    balance of that token and its ETH balance, in wei."""
    addr = address if address is not None else (yield from _me_address(s))
    return Balance.model_validate((yield from _read(f"/v1/balances/{addr}", {"token": token})))


def withdraw(s: Session, token: str | None = None, *, idempotency_key: str | None = None) -> Program[Action]:
    """Pull everything this account may withdraw in ``token`` (earnings, refunds; default ETH)."""
    return (yield from _write(s, "/v1/withdraw", {"token": token or ETH}, keyed=True, key=idempotency_key,
                              prefix="withdraw"))  # fmt: skip


def reputation(s: Session, address: str) -> Program[Reputation]:
    """A provider's (or buyer's) score in basis points with the counts it comes from."""
    return Reputation.model_validate((yield from _read(f"/v1/reputation/{address}")))


def submit_transaction(
    s: Session, raw_transaction: str | bytes, *, idempotency_key: str | None = None
) -> Program[Action]:
    """Relay a signed transaction (``POST /v1/tx``) and wait for it to be mined. The key defaults to one per
    signed transaction (its hash), so sending the same bytes again, after a lost answer or a crash, gets the
    first answer instead of a nonce error."""
    raw = raw_transaction if isinstance(raw_transaction, str) else "0x" + bytes(raw_transaction).hex()
    if idempotency_key is None:
        idempotency_key = "tx-0x" + keccak(hexstr=raw).hex()
    return (yield from _write(s, "/v1/tx", {"rawTransaction": raw}, keyed=True, key=idempotency_key))


# --- providers -----------------------------------------------------------------------------------------


def register_provider(s: Session, metadata_uri: str = "", payout: str | None = None) -> Program[Action]:
    """Register as a provider (role ``provider``); ``payout`` receives the capacity rights (default: you)."""
    body: dict[str, Any] = {"metadataURI": metadata_uri}
    if payout is not None:
        body["payout"] = payout
    return (yield from _write(s, "/v1/providers", body))


def stake(s: Session, amount_wei: int, token: str | None = None, *, idempotency_key: str | None = None) -> Program[Action]:
    """Add stake (ETH by default, or an ERC-20, approved first)."""
    body = {"token": token or ETH, "amountWei": int(amount_wei)}
    return (yield from _write(s, "/v1/providers/stake", body, keyed=True, key=idempotency_key, prefix="stake"))


def request_unstake(s: Session, amount_wei: int, token: str | None = None) -> Program[Action]:
    """Start unbonding ``amount_wei`` of bonded stake."""
    return (yield from _write(s, "/v1/providers/unstake", {"token": token or ETH, "amountWei": int(amount_wei)}))


def withdraw_stake(s: Session, token: str | None = None, *, idempotency_key: str | None = None) -> Program[Action]:
    """Withdraw unbonded stake after the delay (no open lease)."""
    return (yield from _write(s, "/v1/providers/withdraw-stake", {"token": token or ETH}, keyed=True,
                              key=idempotency_key, prefix="unstake"))  # fmt: skip


def provider(s: Session, address: str) -> Program[Provider]:
    """A provider: registration, payout, stake, locked rights and reputation."""
    return Provider.model_validate((yield from _read(f"/v1/providers/{address}")))


def register_node(
    s: Session,
    attestor: str,
    gpu_model: str,
    vram_mib: int,
    max_power_mw_per_gpu: int,
    region: str,
    *,
    gpu_uuids: Sequence[str] | None = None,
    gpu_uuid_hashes: Sequence[str] | None = None,
    gpm: bool = False,
) -> Program[Action]:
    """Register a GPU node (its GPUs by their NVML UUIDs, or their hashes); ``attestor`` is the address of the
    key that signs its metering reports (``compute-ledger attest keygen``). ``.node_id`` on the result."""
    body: dict[str, Any] = {
        "attestor": attestor, "gpuModel": gpu_model, "vramMiB": int(vram_mib),
        "maxPowerMwPerGpu": int(max_power_mw_per_gpu), "region": region, "gpm": gpm,
    }  # fmt: skip
    if gpu_uuids is not None:
        body["gpuUuids"] = list(gpu_uuids)
    if gpu_uuid_hashes is not None:
        body["gpuUuidHashes"] = list(gpu_uuid_hashes)
    return (yield from _write(s, "/v1/nodes", body))


def rotate_attestor(s: Session, node_id: int, attestor: str) -> Program[Action]:
    """Replace the node's attestor key."""
    return (yield from _write(s, f"/v1/nodes/{int(node_id)}/rotate-attestor", {"attestor": attestor}))


def deactivate_node(s: Session, node_id: int) -> Program[Action]:
    """No new offers or leases on the node; running leases continue."""
    return (yield from _write(s, f"/v1/nodes/{int(node_id)}/deactivate"))


def node(s: Session, node_id: int) -> Program[Node]:
    return Node.model_validate((yield from _read(f"/v1/nodes/{int(node_id)}")))


def active_leases(s: Session, node_id: int) -> Program[list[ActiveLease]]:
    """The leases the node's attestor must meter now."""
    body = yield from _read(f"/v1/nodes/{int(node_id)}/active-leases")
    return [ActiveLease.model_validate(x) for x in body["leases"]]


def publish_offer(
    s: Session,
    node_id: int,
    gpu_indices: Sequence[int],
    price_per_gpu_second_wei: int,
    valid_from: int,
    valid_until: int,
    *,
    billing_mode: BillingMode = "reserved",
    token: str | None = None,
    min_buyer_score_bps: int = 0,
    terms_hash: str | None = None,
) -> Program[Action]:
    """Publish an offer on GPUs of one of your nodes (unix-second validity window; ``billing_mode``: reserved
    bills allocated time, metered busy time, sm_active SM-active time). ``.offer_id`` on the result."""
    body = {
        "nodeId": int(node_id), "gpuIndices": [int(i) for i in gpu_indices],
        "pricePerGpuSecondWei": int(price_per_gpu_second_wei), "token": token or ETH, "billingMode": billing_mode,
        "validFrom": int(valid_from), "validUntil": int(valid_until), "minBuyerScoreBps": int(min_buyer_score_bps),
        "termsHash": terms_hash or ZERO_HASH,
    }  # fmt: skip
    return (yield from _write(s, "/v1/offers", body))


def activate_lease(s: Session, lease_id: int) -> Program[Action]:
    """Start an Open lease (its provider, payout address or the node's attestor)."""
    return (yield from _write(s, f"/v1/leases/{int(lease_id)}/activate"))


def release_earnings(s: Session, lease_id: int) -> Program[Action]:
    """Move charges past their challenge period to the holder's withdrawable balance (anyone may; 409 before
    ``lease.earnings.releasable_at``)."""
    return (yield from _write(s, f"/v1/leases/{int(lease_id)}/release-earnings"))


# --- buyers --------------------------------------------------------------------------------------------


def offers(
    s: Session,
    *,
    gpu_model: str | None = None,
    region: str | None = None,
    min_vram_mib: int | None = None,
    min_gpu_count: int | None = None,
    max_price_per_gpu_hour_wei: int | None = None,
    token: str | None = None,
    billing_mode: BillingMode | None = None,
    provider: str | None = None,
    min_provider_score_bps: int | None = None,
    available: bool = True,
    sort: str = "price",
    limit: int = 50,
    offset: int = 0,
) -> Program[OfferPage]:
    """Offers to compare (``gpu_model`` matches any part, any case; ``sort`` by price, vram, gpuModel, region,
    reputation, gpuCount, '-' for descending)."""
    params = {
        "gpuModel": gpu_model, "region": region, "minVramMiB": min_vram_mib, "minGpuCount": min_gpu_count,
        "maxPricePerGpuHourWei": max_price_per_gpu_hour_wei, "token": token, "billingMode": billing_mode,
        "provider": provider, "minProviderScoreBps": min_provider_score_bps, "available": available, "sort": sort,
        "limit": limit, "offset": offset,
    }  # fmt: skip
    return OfferPage.model_validate((yield from _read("/v1/offers", params)))


def offer(s: Session, offer_id: int) -> Program[Offer]:
    return Offer.model_validate((yield from _read(f"/v1/offers/{int(offer_id)}")))


def open_lease(
    s: Session,
    offer_id: int,
    duration_s: int,
    *,
    start_by: int | None = None,
    max_total_wei: int | None = None,
    holder: str | None = None,
    idempotency_key: str | None = None,
) -> Program[Action]:
    """Open a lease with escrow (price × GPUs × duration_s, plus the fee), in the offer's token.
    ``max_total_wei`` refuses a dearer lease. Retried with one Idempotency-Key: escrowed once. ``.lease_id``."""
    body: dict[str, Any] = {"offerId": int(offer_id), "durationS": int(duration_s)}
    for k, v in (("startBy", start_by), ("maxTotalWei", max_total_wei), ("holder", holder)):
        if v is not None:
            body[k] = v
    return (yield from _write(s, "/v1/leases", body, keyed=True, key=idempotency_key, prefix="lease"))


def leases(
    s: Session,
    *,
    buyer: str | None = None,
    provider: str | None = None,
    node_id: int | None = None,
    state: LeaseState | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Program[LeasePage]:
    params = {"buyer": buyer, "provider": provider, "nodeId": node_id, "state": state, "limit": limit, "offset": offset}
    return LeasePage.model_validate((yield from _read("/v1/leases", params)))


def lease(s: Session, lease_id: int) -> Program[Lease]:
    """A lease's terms, money, settlements, checkpoint, earnings and usage."""
    return Lease.model_validate((yield from _read(f"/v1/leases/{int(lease_id)}")))


def top_up(s: Session, lease_id: int, amount_wei: int, *, idempotency_key: str | None = None) -> Program[Action]:
    """Extend the lease by amount_wei / (price × GPUs) seconds (a whole number of seconds); the fee is added."""
    return (yield from _write(s, f"/v1/leases/{int(lease_id)}/top-up", {"amountWei": int(amount_wei)}, keyed=True,
                              key=idempotency_key, prefix="topup"))  # fmt: skip


def close_lease(s: Session, lease_id: int, *, idempotency_key: str | None = None) -> Program[Action]:
    """Close (buyer any time; anyone after the end): the latest report is settled first, the rest refunded."""
    return (yield from _write(s, f"/v1/leases/{int(lease_id)}/close", keyed=True, key=idempotency_key, prefix="close"))


def dispute(s: Session, lease_id: int) -> Program[Action]:
    """Freeze the lease's pending charges (buyer, within the challenge period) until an arbiter rules."""
    return (yield from _write(s, f"/v1/leases/{int(lease_id)}/dispute"))


def rate(s: Session, lease_id: int, stars: int) -> Program[Action]:
    """Rate the provider 1..5 once the lease is Closed or Exhausted."""
    return (yield from _write(s, f"/v1/leases/{int(lease_id)}/rate", {"stars": int(stars)}))


def expire_lease(s: Session, lease_id: int) -> Program[Action]:
    """Expire an Open lease past its start deadline: a full refund to the buyer (anyone may)."""
    return (yield from _write(s, f"/v1/leases/{int(lease_id)}/expire"))


# --- arbiters ------------------------------------------------------------------------------------------


def disputes(s: Session, status: Literal["open", "resolved", "all"] = "open") -> Program[list[Dispute]]:
    """Disputes in chain order (default: the open ones)."""
    body = yield from _read("/v1/disputes", {"status": status})
    return [Dispute.model_validate(x) for x in body["disputes"]]


def resolve_dispute(s: Session, lease_id: int, buyer_share_bps: int, provider_fault: bool = False) -> Program[Action]:
    """Rule on a lease's open dispute (arbiters): ``buyer_share_bps`` of the frozen charges go back to the
    buyer, the rest to the holder; ``provider_fault`` also slashes the provider's stake to the buyer."""
    body = {"buyerShareBps": int(buyer_share_bps), "providerFault": provider_fault}
    return (yield from _write(s, f"/v1/leases/{int(lease_id)}/resolve", body))


# --- auditors ------------------------------------------------------------------------------------------


def audit_leases(s: Session, cursor: int | None = None, limit: int = 200) -> Program[AuditLeasePage]:
    """A page of every lease the bridge knows with its report and settlement counts (``next_cursor``)."""
    return AuditLeasePage.model_validate((yield from _read("/v1/audit/leases", {"cursor": cursor, "limit": limit})))


def reports(
    s: Session, lease_id: int, from_seq: int = 1, limit: int = 500, samples: bool = True
) -> Program[ReportPage]:
    """A lease's stored reports in seq order, with their raw samples (``next_from_seq`` for the next page)."""
    params = {"fromSeq": from_seq, "limit": limit, "samples": samples}
    return ReportPage.model_validate((yield from _read(f"/v1/leases/{int(lease_id)}/reports", params)))


def sample_proofs(s: Session, lease_id: int, seq: int, indices: Sequence[int]) -> Program[list[SampleProof]]:
    """Raw samples of one report, each with its Merkle proof against the report's samples root."""
    path = f"/v1/leases/{int(lease_id)}/reports/{int(seq)}/samples/proofs"
    body = yield from _read(path, {"indices": ",".join(str(int(i)) for i in indices)})
    return [SampleProof.model_validate(x) for x in body["proofs"]]


def sample_proof(s: Session, lease_id: int, seq: int, index: int) -> Program[SampleProof]:
    """One raw sample of a report with its Merkle proof against the report's samples root."""
    path = f"/v1/leases/{int(lease_id)}/reports/{int(seq)}/samples/{int(index)}/proof"
    return SampleProof.model_validate((yield from _read(path)))


def chain_abi(s: Session, name: str) -> Program[list[dict[str, Any]]]:
    """The ABI a deployed contract answers to (``LeaseEscrow``, ``CapacityRegistry``, ...), to read the chain."""
    return list((yield from _read(f"/v1/chain/abi/{name}")))


def archive(s: Session, lease_id: int | None = None) -> Program[list[ReportEntry]]:
    """The samples archive (every stored report with its samples), for an audit without the bridge."""
    reply: Reply = yield Request("GET", "/v1/audit/archive", params={"leaseId": lease_id}, repeatable=True, raw=True)
    return [ReportEntry.model_validate(json.loads(line)) for line in str(reply.body).splitlines() if line.strip()]


def metering_domain(s: Session) -> Program[MeteringDomain]:
    """The EIP-712 domain reports are signed under."""
    return MeteringDomain.model_validate((yield from _read("/v1/metering/domain")))


# --- waiting -------------------------------------------------------------------------------------------


def _deadline(timeout_s: float) -> float:
    return time.monotonic() + timeout_s


def _pause(deadline: float, poll_s: float, what: str) -> Program[None]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise WaitTimeout(what)
    yield Sleep(min(poll_s, left))


def wait_for_settlement(
    s: Session, lease_id: int, seq: int | None = None, *, timeout_s: float = 120.0, poll_s: float = 1.0
) -> Program[Lease]:
    """Wait until the lease's report ``seq`` is settled on-chain (default: every report the bridge has
    accepted, at least one). Returns the lease as then indexed; :class:`WaitTimeout` after ``timeout_s``."""
    deadline = _deadline(timeout_s)
    while True:
        doc = yield from lease(s, lease_id)
        target = seq if seq is not None else (doc.usage.reports if doc.usage is not None else 0)
        if target >= 1 and doc.checkpoint.last_seq >= target:
            return doc
        yield from _pause(deadline, poll_s, f"lease {lease_id}: report {target or 1} not settled within "
                                            f"{timeout_s} s (settled through seq {doc.checkpoint.last_seq})")


def wait_for_state(
    s: Session, lease_id: int, *states: LeaseState, timeout_s: float = 120.0, poll_s: float = 1.0
) -> Program[Lease]:
    """Wait until the lease is in one of ``states`` (e.g. ``"Closed", "Exhausted"``)."""
    deadline = _deadline(timeout_s)
    while True:
        doc = yield from lease(s, lease_id)
        if doc.state in states:
            return doc
        yield from _pause(deadline, poll_s, f"lease {lease_id} is {doc.state}, not {'/'.join(states)}, "
                                            f"after {timeout_s} s")


def release_earnings_when_due(
    s: Session, lease_id: int, *, timeout_s: float = 300.0, poll_s: float = 1.0
) -> Program[Action]:
    """Release the lease's earnings as soon as the challenge period allows (it asks again while the bridge
    answers 409 "in challenge period"); other refusals are raised at once."""
    deadline = _deadline(timeout_s)
    while True:
        try:
            return (yield from release_earnings(s, lease_id))
        except Conflict as e:
            if e.contract_error != "LeaseEscrowInChallengePeriod":
                raise
            yield from _pause(deadline, poll_s, f"lease {lease_id}: earnings not releasable within {timeout_s} s "
                                                f"({e.message})")
