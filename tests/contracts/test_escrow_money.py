"""LeaseEscrow money paths: challenge period, disputes, release, slashing, reentrancy, hostile receivers,
rights that cannot be sold twice, and conservation of funds."""

from __future__ import annotations

from typing import Any

from tests.support.ledger_client import ETH, BillingMode, LeaseStatus
from ledger.chain.deployment import ARBITER_ROLE
from ledger.chain.reverts import decode_exception, decode_revert_data, error_selector
from ledger.protocol import report_struct_hash
from ledger.protocol.settlement import LeaseState, encode_entry

from .conftest import (
    CHALLENGE_S,
    FEE_BPS,
    PRICE,
    World,
    expect_revert,
    expected_ckpt,
    pending_timestamp,
    settle_in_one_batch,
)


def _settled(world: World, windows: int = 2, duration_s: int = 3600):  # type: ignore[no-untyped-def]
    lease = world.open_active(duration_s=duration_s)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + windows * 60_000)
    reports, sigs = [], []
    for _ in range(windows):
        r, s = m.next()
        reports.append(r)
        sigs.append(s)
    settle_in_one_batch(world, reports, sigs)
    return lease, m, PRICE * reports[-1].cumAllocatedMs // 1000


def _escrow_eth_owed(world: World, accounts: list[str]) -> int:
    return sum(world.cl.withdrawable(a) for a in accounts)


def test_release_after_challenge_period_credits_holder(world: World) -> None:
    lease, _, charged = _settled(world)
    settled_at = world.cl.checkpoint(lease.lease_id).last_settled_at
    e = expect_revert("LeaseEscrowInChallengePeriod", world.cl.release_earnings, world.relayer, lease.lease_id)
    assert e.error_args == (lease.lease_id, settled_at + CHALLENGE_S)
    world.chain.time_travel(settled_at + CHALLENGE_S)
    res = world.cl.release_earnings(world.relayer, lease.lease_id)
    assert res.event("EarningsReleased").args == {"leaseId": lease.lease_id, "holder": world.provider, "amount": charged}
    assert not res.named("FeesSettled")  # the lease is still active
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.paid, cp.pending) == (charged, 0)
    assert world.cl.withdrawable(world.provider) == charged
    expect_revert("LeaseEscrowNothingToRelease", world.cl.release_earnings, world.relayer, lease.lease_id)


def test_dispute_freezes_pending_and_blocks_release(world: World) -> None:
    lease, _, charged = _settled(world)
    e = expect_revert("LeaseEscrowNotBuyer", world.cl.dispute, world.provider, lease.lease_id)
    assert e.error_args == (lease.lease_id, world.provider)
    res = world.cl.dispute(world.buyer, lease.lease_id)
    assert res.event("DisputeOpened").args == {"leaseId": lease.lease_id, "buyer": world.buyer, "amount": charged}
    assert world.cl.checkpoint(lease.lease_id).frozen == charged
    expect_revert("LeaseEscrowAlreadyDisputed", world.cl.dispute, world.buyer, lease.lease_id)
    world.chain.increase_time(CHALLENGE_S + 1)
    expect_revert("LeaseEscrowDisputeOpen", world.cl.release_earnings, world.relayer, lease.lease_id)


def test_dispute_after_challenge_period_rejected(world: World) -> None:
    lease, _, _ = _settled(world)
    settled_at = world.cl.checkpoint(lease.lease_id).last_settled_at
    world.chain.time_travel(settled_at + CHALLENGE_S)
    e = expect_revert("LeaseEscrowChallengePeriodOver", world.cl.dispute, world.buyer, lease.lease_id)
    assert e.error_args == (lease.lease_id, settled_at + CHALLENGE_S)


def test_dispute_rejects_nothing_pending(world: World) -> None:
    lease = world.open_active()
    e = expect_revert("LeaseEscrowNothingToDispute", world.cl.dispute, world.buyer, lease.lease_id)
    assert e.error_args == (lease.lease_id,)
    e = expect_revert("LeaseEscrowUnknownLease", world.send, world.cl.escrow.functions.dispute(999, 0, bytes(32)), world.buyer)
    assert e.error_args == (999,)


def test_resolve_dispute_splits_slashes_and_records_reputation(world: World) -> None:
    lease, _, charged = _settled(world)
    world.cl.dispute(world.buyer, lease.lease_id)
    e = expect_revert("AccessControlUnauthorizedAccount", world.cl.resolve_dispute, world.buyer, lease.lease_id, 10_000, True)
    assert e.error_args == (world.buyer, ARBITER_ROLE)
    expect_revert("LeaseEscrowBadBps", world.cl.resolve_dispute, world.arbiter, lease.lease_id, 10_001, True)
    stake_before = world.cl.stake_of(world.provider, ETH).bonded
    res = world.cl.resolve_dispute(world.arbiter, lease.lease_id, 7_000, True)
    buyer_share = charged * 7_000 // 10_000
    provider_share = charged - buyer_share
    slashed = charged * 5_000 // 10_000
    assert res.event("DisputeResolved").args == {
        "leaseId": lease.lease_id,
        "buyerShare": buyer_share,
        "providerShare": provider_share,
        "slashed": slashed,
        "providerFault": True,
    }
    assert res.event("Slashed").args == {"provider": world.provider, "token": ETH, "amount": slashed, "to": world.dep.escrow}
    assert world.cl.stake_of(world.provider, ETH).bonded == stake_before - slashed
    assert world.cl.withdrawable(world.buyer) == buyer_share + slashed
    assert world.cl.withdrawable(world.provider) == provider_share
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.frozen, cp.refunded, cp.paid, cp.pending) == (0, buyer_share, provider_share, 0)
    assert world.cl.counts_of(world.provider).disputes_lost == 1
    assert world.cl.counts_of(world.buyer).disputes_won == 1
    expect_revert("LeaseEscrowNoDispute", world.cl.resolve_dispute, world.arbiter, lease.lease_id, 0, False)


def test_resolve_dispute_for_provider_records_buyer_loss(world: World) -> None:
    lease, _, charged = _settled(world)
    world.cl.dispute(world.buyer, lease.lease_id)
    res = world.cl.resolve_dispute(world.arbiter, lease.lease_id, 0, False)
    assert res.event("DisputeResolved").args["providerShare"] == charged
    assert world.cl.withdrawable(world.provider) == charged
    assert world.cl.counts_of(world.buyer).disputes_lost == 1
    assert world.cl.counts_of(world.provider).disputes_won == 1


def _tiny_dispute(world: World, charged_units: int):  # type: ignore[no-untyped-def]
    """A token lease (1 GPU, 1 unit per GPU-ms) charged ``charged_units`` and disputed by the buyer."""
    lease = world.open_active(offer_id=world.offer_token)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 60_000)
    r, sig = m.next(power_mw=50_000, allocatedMs=charged_units, cumAllocatedMs=charged_units, busyMs=0, cumBusyMs=0)
    world.cl.settle(world.relayer, r, sig)
    world.cl.dispute(world.buyer, lease.lease_id)
    assert world.cl.checkpoint(lease.lease_id).frozen == charged_units
    return lease


def test_resolve_dispute_outcome_follows_ruling_not_rounded_share(world: World) -> None:
    lease = _tiny_dispute(world, 3)
    res = world.cl.resolve_dispute(world.arbiter, lease.lease_id, 5_001, False)
    # 3 × 5001 / 10000 rounds down to 1 (less than half of 3), yet the arbiter ruled for the buyer
    args = res.event("DisputeResolved").args
    assert (args["buyerShare"], args["providerShare"]) == (1, 2)
    assert world.cl.counts_of(world.buyer).disputes_won == 1
    assert world.cl.counts_of(world.provider2).disputes_lost == 1
    assert world.cl.counts_of(world.provider2).disputes_won == 0


def test_resolve_dispute_even_split_counts_for_provider(world: World) -> None:
    lease = _tiny_dispute(world, 3)
    res = world.cl.resolve_dispute(world.arbiter, lease.lease_id, 5_000, False)
    assert res.event("DisputeResolved").args["buyerShare"] == 1
    assert world.cl.counts_of(world.provider2).disputes_won == 1
    assert world.cl.counts_of(world.buyer).disputes_lost == 1
    assert world.cl.counts_of(world.buyer).disputes_won == 0


def test_dispute_refund_on_closed_lease_conserves_funds(world: World) -> None:
    lease, _, charged = _settled(world)
    world.cl.close_lease(world.buyer, lease.lease_id)
    world.cl.dispute(world.buyer, lease.lease_id)
    res = world.cl.resolve_dispute(world.arbiter, lease.lease_id, 10_000, False)
    # everything charged went back: the treasury earns nothing, the buyer gets the whole fee back
    assert res.event("FeesSettled").args == {"leaseId": lease.lease_id, "treasuryFee": 0, "buyerRefund": lease.fee_held}
    assert world.cl.withdrawable(world.buyer) == lease.escrowed + lease.fee_held
    owed = _escrow_eth_owed(world, [world.buyer, world.provider, world.treasury])
    assert world.w3.eth.get_balance(world.dep.escrow) == owed
    assert world.cl.lease(lease.lease_id).fees_settled


def test_payment_never_exceeds_escrow_even_with_top_up(world: World) -> None:
    lease = world.open_active(duration_s=60)
    world.cl.top_up(world.buyer, lease.lease_id, PRICE * 2 * 60)
    m = world.meter(world.cl.lease(lease.lease_id))
    world.advance_to_ms(lease.start_ms + 120_000)
    r1, s1 = m.next(120_000)
    res = world.cl.settle(world.relayer, r1, s1)
    assert res.event("LeaseExhausted").args["charged"] == PRICE * 2 * 120
    cp = world.cl.checkpoint(lease.lease_id)
    assert cp.charged == world.cl.lease(lease.lease_id).escrowed and cp.remaining == 0


def test_rights_cannot_be_sold_twice(world: World) -> None:
    minted = world.cl.rights_of(world.offer_reserved).minted
    world.cl.transfer_rights(world.provider, world.buyer2, world.offer_reserved, minted - 100)
    e = expect_revert(
        "CapacityRegistryInsufficientRights",
        world.cl.open_lease, world.buyer, world.offer_reserved, world.provider, 51, world.chain.now() + 60,
    )
    assert e.error_args == (world.provider, world.offer_reserved, 102, 100)
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 50, world.chain.now() + 600).id
    # the same GPUs cannot be leased again while this lease lives, whoever holds rights
    expect_revert(
        "LeaseEscrowOfferBusy", world.cl.open_lease, world.buyer2, world.offer_reserved, world.buyer2, 10, world.chain.now() + 60
    )
    r = world.cl.rights_of(world.offer_reserved)
    held = world.cl.rights_balance(world.provider, world.offer_reserved) + world.cl.rights_balance(world.buyer2, world.offer_reserved)
    assert r.minted == held + r.locked + r.burned and r.locked == 100
    world.cl.close_lease(world.buyer, lid)
    assert world.cl.rights_balance(world.provider, world.offer_reserved) == 100


# --- hostile tokens and receivers -------------------------------------------------------------------


def _token_offer(world: World, token_addr: str) -> int:
    now = world.chain.now()
    return world.cl.publish_offer(world.provider2, world.node2, 0b10, 1_000, token_addr, BillingMode.RESERVED, now, now + 86_400).id


def test_reentrant_token_cannot_reenter_open_or_withdraw(world: World) -> None:
    tok = world.deploy("ReentrantToken")
    world.send(tok.functions.mint(world.buyer, 10**12), world.admin)
    oid = _token_offer(world, tok.address)
    payload = world.cl.escrow.encode_abi("withdraw", args=[tok.address])
    world.send(tok.functions.arm(world.dep.escrow, payload), world.admin)
    world.cl.erc20_approve(world.buyer, tok.address, world.dep.escrow, 10**12)
    lid = world.cl.open_lease(world.buyer, oid, world.provider2, 100, world.chain.now() + 60, approve=False).id
    assert tok.functions.attempts().call() == 1
    assert tok.functions.lastReentrySucceeded().call() is False
    assert bytes(tok.functions.lastReentryData().call()) == error_selector("ReentrancyGuardReentrantCall")
    world.cl.close_lease(world.buyer, lid)
    owed = world.cl.withdrawable(world.buyer, tok.address)
    world.send(tok.functions.arm(world.dep.escrow, payload), world.admin)
    before = tok.functions.balanceOf(world.buyer).call()
    world.cl.withdraw(world.buyer, tok.address)
    assert tok.functions.lastReentrySucceeded().call() is False
    assert tok.functions.balanceOf(world.buyer).call() == before + owed
    assert tok.functions.balanceOf(world.dep.escrow).call() == 0


def _reentrant_token_lease(world: World, duration_s: int):  # type: ignore[no-untyped-def]
    """An Active lease paid in ReentrantToken (provider2's node, 1 GPU at 1 000 units per GPU-second)."""
    tok = world.deploy("ReentrantToken")
    world.send(tok.functions.mint(world.buyer, 10**12), world.admin)
    oid = _token_offer(world, tok.address)
    world.cl.erc20_approve(world.buyer, tok.address, world.dep.escrow, 10**12)
    lid = world.cl.open_lease(world.buyer, oid, world.provider2, duration_s, world.chain.now() + 60, approve=False).id
    world.cl.activate_lease(world.provider2, lid)
    lease = world.cl.lease(lid)
    return tok, lease, world.meter(lease)


def test_reentrant_token_may_settle_during_top_up_without_breaking_the_books(world: World) -> None:
    """settle takes no lock (its fast path calls nothing outside): a token that reenters it while topUp pulls
    the payment settles against the state topUp has already committed, and every unit stays owed."""
    tok, lease, m = _reentrant_token_lease(world, duration_s=100)
    lid = lease.lease_id
    world.advance_to_ms(lease.start_ms + 60_000)
    r, sig = m.next(60_000, power_mw=50_000)
    st = world.cl.lease_state(lid)
    extra = 50
    # the entry carries the terms topUp is about to commit (50 s longer): valid only once topUp committed
    # them, i.e. from inside the token transfer that follows
    entry = encode_entry(r, sig, LeaseState(lid, st.terms + (extra << 64), st.ckpt, st.last_hash))
    world.send(tok.functions.arm(world.dep.escrow, world.cl.escrow.encode_abi("settle", args=[entry])), world.admin)
    t = pending_timestamp(world)
    res = world.cl.top_up(world.buyer, lid, 1_000 * extra, approve=False)
    assert tok.functions.attempts().call() == 1 and tok.functions.lastReentrySucceeded().call() is True
    assert res.event("ToppedUp").args["durationS"] == 100 + extra
    assert [e.args["reportHash"] for e in res.named("CheckpointSettled")] == [report_struct_hash(r)]
    assert world.cl.lease_state(lid) == LeaseState(lid, st.terms + (extra << 64), expected_ckpt(r, t), report_struct_hash(r))
    cp = world.cl.checkpoint(lid)
    assert cp.charged == 1_000 * r.cumAllocatedMs // 1000 and cp.remaining == 1_000 * (100 + extra) - cp.charged
    world.cl.close_lease(world.buyer, lid)
    owed = world.cl.withdrawable(world.buyer, tok.address) + cp.pending + world.cl.lease(lid).fee_held
    assert tok.functions.balanceOf(world.dep.escrow).call() == owed


def test_reentrant_token_cannot_exhaust_a_lease_inside_top_up(world: World) -> None:
    """The exhausting settlement calls out (rights, reputation) and takes the lock: reentered from topUp's
    payment it reverts with ReentrancyGuardReentrantCall; settled afterwards it exhausts the lease."""
    tok, lease, m = _reentrant_token_lease(world, duration_s=100)
    lid = lease.lease_id
    extra = 50
    world.advance_to_ms(lease.start_ms + (100 + extra) * 1000)
    r, sig = m.next((100 + extra) * 1000, power_mw=50_000)  # all of the topped-up lease, allocated
    st = world.cl.lease_state(lid)
    topped = LeaseState(lid, st.terms + (extra << 64), st.ckpt, st.last_hash)
    entry = encode_entry(r, sig, topped)
    world.send(tok.functions.arm(world.dep.escrow, world.cl.escrow.encode_abi("settle", args=[entry])), world.admin)
    res = world.cl.top_up(world.buyer, lid, 1_000 * extra, approve=False)
    assert tok.functions.attempts().call() == 1 and tok.functions.lastReentrySucceeded().call() is False
    assert bytes(tok.functions.lastReentryData().call()) == error_selector("ReentrancyGuardReentrantCall")
    assert not res.named("CheckpointSettled") and world.cl.lease_state(lid) == topped
    res = world.cl.settle(world.relayer, r, sig)
    assert res.event("LeaseExhausted").args == {"leaseId": lid, "charged": 1_000 * (100 + extra)}
    assert world.cl.lease(lid).status == LeaseStatus.EXHAUSTED


def _actor_call(world: World, actor: Any, data: str, value: int = 0, sender: str | None = None) -> Any:
    return world.send(actor.functions.execute(world.dep.escrow, data, value), sender or world.buyer, value)


def _actor_lease(world: World, actor: Any) -> int:
    q = world.cl.quote_lease(world.offer_reserved, 100)
    data = world.cl.escrow.encode_abi(
        "openLease", args=[world.offer_reserved, world.provider, 100, world.chain.now() + 600, q.total]
    )
    _actor_call(world, actor, data, q.total)
    lid = world.cl.lease_count()
    st = world.cl.lease_state(lid)
    assert (st.ckpt, st.last_hash) == (0, b"\x00" * 32)  # an Open lease
    _actor_call(world, actor, world.cl.escrow.encode_abi("closeLease", args=[lid, st.ckpt, st.last_hash]))
    return lid


def test_reentrant_receiver_cannot_withdraw_twice(world: World) -> None:
    actor = world.deploy("ReentrantReceiver")
    _actor_lease(world, actor)
    owed = world.cl.withdrawable(actor.address)
    assert owed > 0
    withdraw = world.cl.escrow.encode_abi("withdraw", args=[ETH])
    world.send(actor.functions.arm(world.dep.escrow, withdraw), world.buyer)
    escrow_before = world.w3.eth.get_balance(world.dep.escrow)
    _actor_call(world, actor, withdraw)
    assert actor.functions.attempts().call() == 1
    assert actor.functions.lastReentrySucceeded().call() is False
    assert bytes(actor.functions.lastReentryData().call()) == error_selector("ReentrancyGuardReentrantCall")
    assert world.w3.eth.get_balance(world.dep.escrow) == escrow_before - owed
    assert world.w3.eth.get_balance(actor.address) == owed
    assert world.cl.withdrawable(actor.address) == 0


def test_reverting_receiver_blocks_only_itself(world: World) -> None:
    actor = world.deploy("RevertingReceiver")
    _actor_lease(world, actor)
    owed = world.cl.withdrawable(actor.address)
    with_data = world.cl.escrow.encode_abi("withdraw", args=[ETH])
    e = expect_revert("ActorCallFailed", _actor_call, world, actor, with_data)
    inner = decode_revert_data(e.error_args[0])
    assert (inner.name, inner.error_args) == ("LeaseEscrowTransferFailed", (actor.address, ETH, owed))
    assert world.cl.withdrawable(actor.address) == owed  # still owed, nothing lost
    # everyone else is unaffected
    lid = world.cl.open_lease(world.buyer2, world.offer_metered, world.provider, 60, world.chain.now() + 600).id
    world.cl.close_lease(world.buyer2, lid)
    world.cl.withdraw(world.buyer2, ETH)
    assert world.cl.withdrawable(world.buyer2) == 0


def test_escrow_rejects_stray_eth(world: World) -> None:
    tx = {"from": world.buyer, "to": world.dep.escrow, "value": 1}
    try:
        world.w3.eth.call(tx)  # type: ignore[arg-type]
    except Exception as exc:  # the backend's own revert form, decoded in one place
        rev = decode_exception(exc)
    else:
        raise AssertionError("plain ETH transfer to the escrow did not revert")
    assert rev is not None and (rev.name, rev.error_args) == ("LeaseEscrowUnexpectedEth", (world.buyer,))


def test_full_life_conserves_funds_and_pays_fees(world: World) -> None:
    lease, m, charged = _settled(world, windows=3)
    world.cl.close_lease(world.buyer, lease.lease_id)
    world.chain.increase_time(CHALLENGE_S + 1)
    world.cl.release_earnings(world.relayer, lease.lease_id)
    parties = [world.buyer, world.provider, world.treasury]
    assert world.w3.eth.get_balance(world.dep.escrow) == _escrow_eth_owed(world, parties)
    assert world.cl.withdrawable(world.treasury) == charged * FEE_BPS // 10_000
    for p in parties:
        world.cl.withdraw(p, ETH)
    assert world.w3.eth.get_balance(world.dep.escrow) == 0
    assert world.cl.lease(lease.lease_id).status == LeaseStatus.CLOSED


def test_settlement_goes_on_while_paused_and_buyers_keep_their_recourse(world: World) -> None:
    """Pause stops money entering and earnings leaving to providers, not settlement; a buyer may dispute
    pending charges while paused whatever the challenge period."""
    lease, m, charged = _settled(world)
    lid = lease.lease_id
    world.cl.pause(world.admin)
    world.advance_to_ms(lease.start_ms + 180_000)
    r, sig = m.next()
    res = world.cl.settle(world.relayer, r, sig)
    assert res.event("CheckpointSettled").args["charged"] == PRICE * 120
    settled_at = world.cl.checkpoint(lid).last_settled_at
    world.chain.time_travel(settled_at + CHALLENGE_S + 10)
    expect_revert("EnforcedPause", world.cl.release_earnings, world.relayer, lid)
    expect_revert("EnforcedPause", world.cl.top_up, world.buyer, lid, PRICE * 2)
    res = world.cl.dispute(world.buyer, lid)  # past the challenge period, allowed while paused
    assert res.event("DisputeOpened").args["amount"] == charged + PRICE * 120
    world.cl.unpause(world.admin)
    world.cl.resolve_dispute(world.arbiter, lid, 0, False)
    assert world.cl.withdrawable(world.provider) == charged + PRICE * 120
    # unpaused, a dispute after the challenge period is refused again
    world.advance_to_ms(lease.start_ms + 240_000)
    r2, s2 = m.next()
    world.cl.settle(world.relayer, r2, s2)
    world.chain.increase_time(CHALLENGE_S + 1)
    ends = world.cl.checkpoint(lid).last_settled_at + CHALLENGE_S
    e = expect_revert("LeaseEscrowChallengePeriodOver", world.cl.dispute, world.buyer, lid)
    assert e.error_args == (lid, ends)
