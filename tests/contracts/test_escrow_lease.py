"""LeaseEscrow: opening, activation, top-up, close, expiry, withdrawals, pause, rating and fees."""

from __future__ import annotations

import pytest

from tests.support.ledger_client import ETH, BillingMode, ClientError, LeaseStatus
from ledger.chain.deployment import ARBITER_ROLE, PAUSER_ROLE

from .conftest import FEE_BPS, PRICE, TOKEN_PRICE, World, expect_revert, settle_in_one_batch


def _gas_cost(world: World, res: object) -> int:
    tx = world.w3.eth.get_transaction(res.tx_hash)  # type: ignore[attr-defined]
    return int(res.gas_used) * int(tx["gasPrice"])  # type: ignore[attr-defined]


def test_deploy_suite_wires_roles(world: World) -> None:
    cl, dep = world.cl, world.dep
    assert cl.has_role("registry", bytes.fromhex("00" * 32), world.admin)
    assert cl.has_role("escrow", ARBITER_ROLE, world.arbiter)
    assert cl.has_role("escrow", PAUSER_ROLE, world.admin)
    assert world.cl.registry.functions.escrow().call() == dep.escrow
    assert cl.treasury() == world.treasury and cl.challenge_period() == 3600
    assert cl.fee_config().base_fee_bps == FEE_BPS
    assert dep.chain_id == world.chain.chain_id and dep.block > 0


def test_open_lease_eth_escrows_and_locks_rights(world: World) -> None:
    start_by = world.chain.now() + 600
    before = world.w3.eth.get_balance(world.dep.escrow)
    created = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 3600, start_by)
    escrowed = PRICE * 2 * 3600
    fee = escrowed * FEE_BPS // 10_000
    ev = created.tx.event("LeaseOpened").args
    assert ev == {
        "leaseId": created.id,
        "offerId": world.offer_reserved,
        "buyer": world.buyer,
        "holder": world.provider,
        "durationS": 3600,
        "startBy": start_by,
        "escrowed": escrowed,
        "fee": fee,
        "feeBps": FEE_BPS,
    }
    assert world.w3.eth.get_balance(world.dep.escrow) == before + escrowed + fee
    lease = world.cl.lease(created.id)
    assert (lease.status, lease.buyer, lease.holder, lease.gpu_count, lease.escrowed, lease.fee_held) == (
        LeaseStatus.OPEN, world.buyer, world.provider, 2, escrowed, fee,
    )
    assert lease.gpu_set_hash == world.cl.offer(world.offer_reserved).gpu_set_hash
    rights = world.cl.rights_of(world.offer_reserved)
    assert rights.locked == 2 * 3600
    assert world.cl.rights_balance(world.provider, world.offer_reserved) == rights.minted - 2 * 3600
    assert world.cl.provider(world.provider).locked_rights == 2 * 3600
    assert world.cl.live_lease_of(world.offer_reserved) == created.id
    locked = created.tx.event("RightsLocked").args
    assert locked == {"holder": world.provider, "offerId": world.offer_reserved, "amount": 7200}


def test_open_lease_erc20_pulls_exact_total(world: World) -> None:
    before = world.cl.erc20_balance(world.token, world.buyer)
    created = world.cl.open_lease(world.buyer, world.offer_token, world.provider2, 1000, world.chain.now() + 600)
    escrowed = TOKEN_PRICE * 1 * 1000
    total = escrowed + escrowed * FEE_BPS // 10_000
    assert world.cl.erc20_balance(world.token, world.buyer) == before - total
    assert world.cl.erc20_balance(world.token, world.dep.escrow) == total
    assert created.tx.event("LeaseOpened").args["escrowed"] == escrowed


def test_open_lease_rejects_bad_requests(world: World) -> None:
    now = world.chain.now()
    cl, b, o = world.cl, world.buyer, world.offer_reserved
    fn = cl.escrow.functions.openLease(o, world.provider, 60, now + 60, 10**30)
    q = cl.quote_lease(o, 60)
    e = expect_revert("LeaseEscrowWrongValue", world.send, fn, b, q.total - 1)
    assert e.error_args == (q.total, q.total - 1)
    e = expect_revert("LeaseEscrowTotalAboveMax", cl.open_lease, b, o, world.provider, 60, now + 60, q.total - 1)
    assert e.error_args == (q.total, q.total - 1)
    expect_revert("LeaseEscrowBadDuration", cl.open_lease, b, o, world.provider, 0, now + 600)
    until = cl.offer(o).valid_until
    e = expect_revert("LeaseEscrowBadStartBy", cl.open_lease, b, o, world.provider, 600, until - 10)
    assert e.error_args[0] == until - 10
    expect_revert("LeaseEscrowBadStartBy", cl.open_lease, b, o, world.provider, 60, now - 1)
    expect_revert("CapacityRegistryUnknownOffer", cl.open_lease, b, 99, world.provider, 60, now + 600)
    e = expect_revert("CapacityRegistryInsufficientRights", cl.open_lease, b, o, world.buyer2, 60, now + 600)
    assert e.error_args == (world.buyer2, o, 120, 0)
    token_fn = cl.escrow.functions.openLease(world.offer_token, world.provider2, 60, now + 60, 10**30)
    expect_revert("LeaseEscrowWrongValue", world.send, token_fn, b, 1)


def test_open_lease_rejects_busy_offer(world: World) -> None:
    first = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 60, world.chain.now() + 600).id
    e = expect_revert(
        "LeaseEscrowOfferBusy", world.cl.open_lease, world.buyer2, world.offer_reserved, world.provider, 60, world.chain.now() + 600
    )
    assert e.error_args == (world.offer_reserved, first)


def test_open_lease_rejects_buyer_below_minimum_score(world: World) -> None:
    now = world.chain.now()
    gated = world.cl.publish_offer(
        world.provider2, world.node2, 0b10, PRICE, ETH, BillingMode.RESERVED, now, now + 86_400, 6_000
    ).id
    e = expect_revert("LeaseEscrowBuyerScoreTooLow", world.cl.open_lease, world.buyer, gated, world.provider2, 60, now + 600)
    assert e.error_args == (world.buyer, 5_000, 6_000)


def test_open_lease_rejects_fee_on_transfer_token(world: World) -> None:
    fot = world.deploy("FeeOnTransferToken")
    world.send(fot.functions.mint(world.buyer, 10**12), world.admin)
    now = world.chain.now()
    oid = world.cl.publish_offer(world.provider2, world.node2, 0b10, 1_000, fot.address, 0, now, now + 86_400).id
    e = expect_revert("LeaseEscrowFeeOnTransferToken", world.cl.open_lease, world.buyer, oid, world.provider2, 100, now + 600)
    total = 100_000 + 100_000 * FEE_BPS // 10_000
    assert e.error_args == (fot.address, total, total - total // 100)


def test_activate_lease_starts_clock(world: World) -> None:
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 3600, world.chain.now() + 600).id
    res = world.cl.activate_lease(world.attestor, lid)  # the node's attestor may start it
    now = world.chain.now()
    assert res.event("LeaseActivated").args == {"leaseId": lid, "startMs": now * 1000, "endMs": now * 1000 + 3_600_000}
    lease = world.cl.lease(lid)
    assert (lease.status, lease.start_ms, lease.end_ms) == (LeaseStatus.ACTIVE, now * 1000, now * 1000 + 3_600_000)
    cp = world.cl.checkpoint(lid)
    assert (cp.last_seq, cp.last_report_hash, cp.last_settled_at, cp.remaining) == (0, b"\x00" * 32, now, lease.escrowed)
    assert (cp.cum_busy_ms, cp.cum_allocated_ms, cp.cum_energy_mj, cp.cum_sm_active_ms) == (0, 0, 0, 0)
    e = expect_revert("LeaseEscrowBadStatus", world.cl.activate_lease, world.provider, lid)
    assert e.error_args == (lid, LeaseStatus.ACTIVE)


def test_activate_lease_rejects_wrong_caller_late_and_early(world: World) -> None:
    now = world.chain.now()
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 60, now + 600).id
    e = expect_revert("LeaseEscrowNotProviderSide", world.cl.activate_lease, world.buyer, lid)
    assert e.error_args == (lid, world.buyer)
    world.chain.time_travel(now + 601)
    e = expect_revert("LeaseEscrowStartByPassed", world.cl.activate_lease, world.provider, lid)
    assert e.error_args == (lid, now + 600)
    expect_revert("LeaseEscrowUnknownLease", world.cl.activate_lease, world.provider, 999)
    later = world.cl.publish_offer(world.provider2, world.node2, 0b10, PRICE, ETH, 0, now + 5_000, now + 9_000).id
    lid2 = world.cl.open_lease(world.buyer, later, world.provider2, 60, now + 6_000).id
    e = expect_revert("LeaseEscrowOfferNotStarted", world.cl.activate_lease, world.provider2, lid2)
    assert e.error_args == (lid2, now + 5_000)


def test_expire_lease_refunds_everything_and_records_no_show(world: World) -> None:
    now = world.chain.now()
    created = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 600, now + 100)
    lid = created.id
    escrowed, fee = PRICE * 2 * 600, PRICE * 2 * 600 * FEE_BPS // 10_000
    e = expect_revert("LeaseEscrowStartByNotPassed", world.cl.expire_lease, world.relayer, lid)
    assert e.error_args == (lid, now + 100)
    world.chain.time_travel(now + 101)
    res = world.cl.expire_lease(world.relayer, lid)
    assert res.event("LeaseExpired").args == {"leaseId": lid, "refund": escrowed}
    assert res.event("FeesSettled").args == {"leaseId": lid, "treasuryFee": 0, "buyerRefund": fee}
    assert res.event("OutcomeRecorded").args["account"] == world.provider
    assert world.cl.withdrawable(world.buyer) == escrowed + fee
    assert world.cl.lease(lid).status == LeaseStatus.EXPIRED
    assert world.cl.counts_of(world.provider).no_shows == 1
    assert world.cl.score_of(world.provider) == 4 * 10_000 // 16  # (0+4)/(0+8+8)
    rights = world.cl.rights_of(world.offer_reserved)
    assert (rights.locked, rights.burned) == (0, 0)
    assert world.cl.live_lease_of(world.offer_reserved) == 0
    expect_revert("LeaseEscrowBadStatus", world.cl.expire_lease, world.relayer, lid)


def test_close_open_lease_by_buyer_refunds_all(world: World) -> None:
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 600, world.chain.now() + 600).id
    e = expect_revert("LeaseEscrowNotEnded", world.cl.close_lease, world.relayer, lid)
    assert e.error_args[0] == lid
    res = world.cl.close_lease(world.buyer, lid)
    ev = res.event("LeaseClosed").args
    assert ev == {"leaseId": lid, "closedBy": world.buyer, "charged": 0, "refund": PRICE * 1200, "rightsBurned": 0, "rightsReleased": 1200}
    fee = PRICE * 1200 * FEE_BPS // 10_000
    assert world.cl.withdrawable(world.buyer) == PRICE * 1200 + fee
    assert world.cl.counts_of(world.provider).completed == 0


def test_close_active_lease_burns_used_rights_and_refunds_rest(world: World) -> None:
    lease = world.open_active(duration_s=3600)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 120_000)
    r1, s1 = m.next(60_000)
    r2, s2 = m.next(60_000)
    settle_in_one_batch(world, [r1, r2], [s1, s2])
    world.chain.time_travel(lease.start_ms // 1000 + 600)
    res = world.cl.close_lease(world.buyer, lease.lease_id)
    charged = PRICE * r2.cumAllocatedMs // 1000
    ev = res.event("LeaseClosed").args
    assert ev["charged"] == charged and ev["refund"] == lease.escrowed - charged
    ran_s = world.w3.eth.get_block(res.block_number)["timestamp"] - lease.start_ms // 1000
    assert (ev["rightsBurned"], ev["rightsReleased"]) == (2 * ran_s, 2 * (3600 - ran_s))
    assert world.cl.withdrawable(world.buyer) == lease.escrowed - charged  # fee waits for pending earnings
    rights = world.cl.rights_of(world.offer_reserved)
    held = world.cl.rights_balance(world.provider, world.offer_reserved)
    assert rights.minted == held + rights.locked + rights.burned and rights.burned == 2 * ran_s and rights.locked == 0
    counts = world.cl.counts_of(world.provider)
    assert (counts.completed, counts.attested_ms, counts.lease_ms) == (1, r2.cumAllocatedMs, 2 * ran_s * 1000)
    assert world.cl.lease(lease.lease_id).status == LeaseStatus.CLOSED
    # fees settle once the pending earnings are released
    world.chain.increase_time(3601)
    rel = world.cl.release_earnings(world.relayer, lease.lease_id)
    assert rel.event("EarningsReleased").args == {"leaseId": lease.lease_id, "holder": world.provider, "amount": charged}
    fee_held = lease.fee_held
    treasury_fee = charged * FEE_BPS // 10_000
    assert rel.event("FeesSettled").args == {"leaseId": lease.lease_id, "treasuryFee": treasury_fee, "buyerRefund": fee_held - treasury_fee}
    assert world.cl.withdrawable(world.provider) == charged
    assert world.cl.withdrawable(world.treasury) == treasury_fee
    assert world.cl.withdrawable(world.buyer) == lease.escrowed - charged + fee_held - treasury_fee
    # conservation: everything the escrow holds is owed to someone
    owed = sum(world.cl.withdrawable(a) for a in (world.buyer, world.provider, world.treasury))
    assert world.w3.eth.get_balance(world.dep.escrow) == owed


def test_close_by_anyone_only_after_end(world: World) -> None:
    lease = world.open_active(duration_s=60)
    e = expect_revert("LeaseEscrowNotEnded", world.cl.close_lease, world.relayer, lease.lease_id)
    assert e.error_args == (lease.lease_id, lease.end_ms)
    world.advance_to_ms(lease.end_ms)
    res = world.cl.close_lease(world.relayer, lease.lease_id)
    assert res.event("LeaseClosed").args["closedBy"] == world.relayer
    assert res.event("LeaseClosed").args["rightsBurned"] == 120
    expect_revert("LeaseEscrowBadStatus", world.cl.close_lease, world.buyer, lease.lease_id)


def test_top_up_extends_lease_and_locks_rights(world: World) -> None:
    lease = world.open_active(duration_s=600)
    amount = PRICE * 2 * 300
    res = world.cl.top_up(world.buyer, lease.lease_id, amount)
    fee = (PRICE * 2 * 900 * FEE_BPS // 10_000) - lease.fee_held
    assert res.event("ToppedUp").args == {"leaseId": lease.lease_id, "amount": amount, "fee": fee, "durationS": 900}
    after = world.cl.lease(lease.lease_id)
    assert (after.duration_s, after.end_ms, after.escrowed) == (900, lease.start_ms + 900_000, PRICE * 2 * 900)
    assert world.cl.rights_of(world.offer_reserved).locked == 2 * 900
    e = expect_revert("LeaseEscrowTopUpNotWholeSeconds", world.cl.top_up, world.buyer, lease.lease_id, amount + 1)
    assert e.error_args == (amount + 1, PRICE * 2)
    expect_revert("LeaseEscrowNotBuyer", world.cl.top_up, world.buyer2, lease.lease_id, amount)
    far = PRICE * 2 * 40 * 86_400
    expect_revert("LeaseEscrowBeyondOffer", world.cl.top_up, world.buyer, lease.lease_id, far)


def test_withdraw_pays_and_rejects_empty(world: World) -> None:
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 600, world.chain.now() + 600).id
    world.cl.close_lease(world.buyer, lid)
    owed = world.cl.withdrawable(world.buyer)
    before = world.w3.eth.get_balance(world.buyer)
    res = world.cl.withdraw(world.buyer, ETH)
    assert res.event("Withdrawn").args == {"account": world.buyer, "token": ETH, "amount": owed}
    assert world.w3.eth.get_balance(world.buyer) == before + owed - _gas_cost(world, res)
    assert world.cl.withdrawable(world.buyer) == 0
    e = expect_revert("LeaseEscrowNothingToWithdraw", world.cl.withdraw, world.buyer, ETH)
    assert e.error_args == (world.buyer, ETH)


def test_withdraw_erc20_refund(world: World) -> None:
    lid = world.cl.open_lease(world.buyer, world.offer_token, world.provider2, 100, world.chain.now() + 600).id
    world.cl.close_lease(world.buyer, lid)
    before = world.cl.erc20_balance(world.token, world.buyer)
    owed = world.cl.withdrawable(world.buyer, world.token)
    assert owed == 100_000 + 100_000 * FEE_BPS // 10_000
    world.cl.withdraw(world.buyer, world.token)
    assert world.cl.erc20_balance(world.token, world.buyer) == before + owed


def test_pause_blocks_new_money_but_not_withdrawals(world: World) -> None:
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 600, world.chain.now() + 600).id
    world.cl.close_lease(world.buyer, lid)
    e = expect_revert("AccessControlUnauthorizedAccount", world.cl.pause, world.buyer)
    assert e.error_args == (world.buyer, PAUSER_ROLE)
    res = world.cl.pause(world.admin)
    assert res.event("Paused").args == {"account": world.admin}
    assert world.cl.paused() is True
    expect_revert("EnforcedPause", world.cl.open_lease, world.buyer, world.offer_reserved, world.provider, 60, world.chain.now() + 600)
    world.cl.withdraw(world.buyer, ETH)  # still open
    world.cl.unpause(world.admin)
    world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 60, world.chain.now() + 600)


def test_rate_records_rating_once(world: World) -> None:
    lease = world.open_active(duration_s=120)
    e = expect_revert("LeaseEscrowNotRateable", world.cl.rate, world.buyer, lease.lease_id, 5)
    assert e.error_args == (lease.lease_id, LeaseStatus.ACTIVE)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 60_000)
    r, s = m.next(60_000, alloc_bps=5_000)
    world.cl.settle(world.relayer, r, s)
    res = world.cl.close_lease(world.buyer, lease.lease_id)
    ran_ms = 1000 * res.event("LeaseClosed").args["rightsBurned"]  # GPU-ms the lease ran
    expect_revert("LeaseEscrowNotBuyer", world.cl.rate, world.buyer2, lease.lease_id, 5)
    e = expect_revert("ReputationBadStars", world.cl.rate, world.buyer, lease.lease_id, 6)
    assert e.error_args == (6,)
    res = world.cl.rate(world.buyer, lease.lease_id, 4)
    assert res.event("Rated").args == {"leaseId": lease.lease_id, "rater": world.buyer, "subject": world.provider, "stars": 4}
    c = world.cl.counts_of(world.provider)
    assert (c.ratings, c.rating_sum, c.completed) == (1, 4, 1)
    assert (c.attested_ms, c.lease_ms) == (r.cumAllocatedMs, ran_ms)
    penalty = 4 * (ran_ms - r.cumAllocatedMs) // ran_ms
    # completed: +4; rating 4: +3 pos, +1 neg; uptime: 4 x unattested share neg
    assert (c.positive, c.negative) == (7, 1 + penalty)
    assert world.cl.score_of(world.provider) == (7 + 4) * 10_000 // (7 + 1 + penalty + 8)
    assert world.cl.rated(lease.lease_id)
    expect_revert("ReputationAlreadyRated", world.cl.rate, world.buyer, lease.lease_id, 5)


def test_close_without_charges_records_no_completion(world: World) -> None:
    lease = world.open_active(duration_s=60)
    world.cl.close_lease(world.buyer, lease.lease_id)
    c = world.cl.counts_of(world.provider)
    assert c.completed == 0 and c.lease_ms > 0 and c.attested_ms == 0


def test_rate_rejects_self_rating(world: World) -> None:
    lease = world.open_active(duration_s=60, buyer=world.provider)
    world.cl.close_lease(world.provider, lease.lease_id)
    e = expect_revert("ReputationSelfRating", world.cl.rate, world.provider, lease.lease_id, 5)
    assert e.error_args == (world.provider,)


def test_rate_rejects_expired_lease(world: World) -> None:
    now = world.chain.now()
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 60, now + 300).id
    world.chain.time_travel(now + 301)
    world.cl.expire_lease(world.buyer, lid)
    e = expect_revert("LeaseEscrowNotRateable", world.cl.rate, world.buyer, lid, 1)
    assert e.error_args == (lid, LeaseStatus.EXPIRED)


def test_reputation_record_only_by_escrow(world: World) -> None:
    fn = world.cl.reputation.functions.recordOutcome(world.buyer, 0)
    expect_revert("AccessControlUnauthorizedAccount", world.send, fn, world.admin)
    fn = world.cl.reputation.functions.recordRating(1, world.buyer, world.provider, 5)
    expect_revert("AccessControlUnauthorizedAccount", world.send, fn, world.buyer)
    assert world.cl.score_of(world.buyer2) == 5_000


def test_fee_discount_for_high_reputation_provider(world: World) -> None:
    e = expect_revert("AccessControlUnauthorizedAccount", world.cl.set_fee_config, world.buyer, 250, 100, 5_000, 1)
    assert e.error_args[0] == world.buyer
    expect_revert("LeaseEscrowBadConfig", world.cl.set_fee_config, world.admin, 250, 300, 5_000, 1)
    res = world.cl.set_fee_config(world.admin, 250, 100, 5_000, 1)
    assert res.event("FeeConfigSet").args == {"baseFeeBps": 250, "discountedFeeBps": 100, "discountMinScoreBps": 5_000, "discountMinCompleted": 1}
    assert world.cl.fee_bps_for(world.provider) == 250
    lease = world.open_active(duration_s=60)
    m = world.meter(lease)
    world.advance_to_ms(lease.end_ms)
    r, s = m.next(60_000)
    world.cl.settle(world.relayer, r, s)  # full allocation: exhausted, completed
    assert world.cl.counts_of(world.provider).completed == 1
    assert world.cl.fee_bps_for(world.provider) == 100
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 60, world.chain.now() + 600).id
    assert world.cl.lease(lid).fee_bps == 100


def test_admin_setters_emit_and_check_roles(world: World) -> None:
    assert world.cl.set_challenge_period(world.admin, 10).event("ChallengePeriodSet").args == {"seconds_": 10}
    assert world.cl.challenge_period() == 10
    assert world.cl.set_slash_bps(world.admin, 1_000).event("SlashBpsSet").args == {"slashBps": 1_000}
    expect_revert("LeaseEscrowBadConfig", world.cl.set_slash_bps, world.admin, 10_001)
    assert world.cl.set_treasury(world.admin, world.buyer2).event("TreasurySet").args == {"treasury": world.buyer2}
    expect_revert("LeaseEscrowBadConfig", world.cl.set_treasury, world.admin, ETH)
    expect_revert("AccessControlUnauthorizedAccount", world.cl.set_challenge_period, world.buyer, 1)


def test_unknown_lease_is_rejected_everywhere(world: World) -> None:
    fns = world.cl.escrow.functions
    zero = b"\x00" * 32
    for fn in (
        fns.closeLease(777, 0, zero),
        fns.releaseEarnings(777, 0, zero),
        fns.dispute(777, 0, zero),
        fns.topUp(777, 1, 0, zero),
        fns.expireLease(777),
        fns.rate(777, 5),
    ):
        e = expect_revert("LeaseEscrowUnknownLease", world.send, fn, world.buyer)
        assert e.error_args == (777,)
    e = expect_revert("LeaseEscrowUnknownLease", world.send, fns.resolveDispute(777, 0, False, 0, zero), world.arbiter)
    assert e.error_args == (777,)
    e = expect_revert("LeaseEscrowUnknownLease", world.cl.tx.call, fns.checkpoint(777, 0, zero))
    assert e.error_args == (777,)
    expect_revert("LeaseEscrowUnknownLease", world.cl.expire_lease, world.buyer, 777)
    expect_revert("LeaseEscrowUnknownLease", world.cl.rate, world.buyer, 777, 5)
    expect_revert("LeaseEscrowUnknownLease", world.cl.lease, 777)
    assert world.cl.state_hash(777) == zero
    # the client's calls that need the lease state refuse before sending anything
    block = world.w3.eth.block_number
    for call in (
        lambda: world.cl.close_lease(world.buyer, 777),
        lambda: world.cl.release_earnings(world.buyer, 777),
        lambda: world.cl.dispute(world.buyer, 777),
        lambda: world.cl.checkpoint(777),
    ):
        with pytest.raises(ClientError, match="no lease 777"):
            call()
    assert world.w3.eth.block_number == block


def test_top_up_rejected_after_close_and_works_with_token(world: World) -> None:
    lid = world.cl.open_lease(world.buyer, world.offer_token, world.provider2, 100, world.chain.now() + 600).id
    before = world.cl.erc20_balance(world.token, world.buyer)
    world.cl.top_up(world.buyer, lid, TOKEN_PRICE * 50)
    fee = TOKEN_PRICE * 150 * FEE_BPS // 10_000 - TOKEN_PRICE * 100 * FEE_BPS // 10_000
    assert world.cl.erc20_balance(world.token, world.buyer) == before - TOKEN_PRICE * 50 - fee
    assert world.cl.lease(lid).duration_s == 150
    world.cl.close_lease(world.buyer, lid)
    e = expect_revert("LeaseEscrowBadStatus", world.cl.top_up, world.buyer, lid, TOKEN_PRICE)
    assert e.error_args == (lid, LeaseStatus.CLOSED)


def test_activate_by_payout_address_and_unpause_event(world: World) -> None:
    world.cl.update_provider(world.provider, world.buyer2, "ipfs://p")
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 60, world.chain.now() + 600).id
    world.cl.activate_lease(world.buyer2, lid)
    assert world.cl.lease(lid).status == LeaseStatus.ACTIVE
    world.cl.pause(world.admin)
    assert world.cl.unpause(world.admin).event("Unpaused").args == {"account": world.admin}


def test_reputation_rejects_bad_uptime(world: World) -> None:
    from ledger.chain.deployment import ESCROW_ROLE

    world.send(world.cl.reputation.functions.grantRole(ESCROW_ROLE, world.admin), world.admin)
    fn = world.cl.reputation.functions.recordUptime(world.buyer, 11, 10)
    e = expect_revert("ReputationBadUptime", world.send, fn, world.admin)
    assert e.error_args == (11, 10)
    expect_revert("ReputationBadUptime", world.send, world.cl.reputation.functions.recordUptime(world.buyer, 0, 0), world.admin)
    res = world.cl._result(world.send(world.cl.reputation.functions.recordUptime(world.buyer, 5, 10), world.admin))
    assert res.event("UptimeRecorded").args == {"account": world.buyer, "attestedMs": 5, "leaseMs": 10, "penalty": 2}
    c = world.cl.counts_of(world.buyer)
    assert (c.attested_ms, c.lease_ms, c.negative) == (5, 10, 2)


def test_escrow_constructor_rejects_bad_config(world: World) -> None:
    from ledger.chain.compiler import load_artifact

    art = load_artifact("LeaseEscrow")
    args = [world.admin, world.dep.registry, world.dep.reputation, world.treasury, 60, 10_001, world.dep.escrow_extension]
    e = expect_revert("LeaseEscrowBadConfig", world.cl.tx.deploy, art, world.admin, args)
    assert e.error_args == ()
