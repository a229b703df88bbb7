"""Compute vouchers (VoucherVault): a voucher lease end to end, the pro-rata split of what the escrow returns,
and the adversarial cases (redeemed twice, beyond face value, by a related party, after expiry, on an
ineligible offer, by someone else), with the vault's money rule checked after every path."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.chain.events import ChainEvent
from ledger.protocol import ZERO_HASH
from ledger.protocol.settlement import LeaseState
from ledger.protocol.vouchers import Evt, buyer_return, redemption_report, split_return, voucher_split
from tests.support.ledger_client import ETH, BillingMode, LeaseStatus

from .conftest import CHALLENGE_S, PRICE, TOKEN_PRICE, World, expect_revert, meter_close_release, settle_in_one_batch

H100 = "NVIDIA H100 80GB HBM3"
FACE = 10**16  # wei: covers a few GPU-hours at PRICE


def _vault_assets(world: World, token: str = ETH) -> int:
    vault = world.dep.voucher_vault
    assert vault is not None
    held = world.w3.eth.get_balance(vault) if token == ETH else world.token_contract.functions.balanceOf(vault).call()
    return int(held) + world.cl.withdrawable(vault, token)


def _check_money(world: World, token: str = ETH, *, exact: bool = True) -> None:
    """The vault owns at least what it owes (exactly, once every ended lease is reconciled)."""
    assets, owed = _vault_assets(world, token), world.cl.vault_liabilities(token)
    assert assets >= owed
    if exact:
        assert assets == owed


def _programme(world: World, token: str = ETH, fund: int = 3 * FACE, **elig: Any) -> int:
    pid = world.cl.create_programme(world.admin, token, **elig).id
    world.cl.fund_programme(world.admin, pid, fund)
    return pid


def _voucher(world: World, pid: int, face: int = FACE, copay_bps: int = 2_000, *, days: int = 10,
             beneficiary: str | None = None) -> int:
    return world.cl.grant_voucher(world.admin, pid, beneficiary or world.buyer, face, world.chain.now() + days * 86_400,
                                  copay_bps).id


def _meter_and_close(world: World, lease_id: int, windows: int = 3) -> int:
    """Settle ``windows`` one-minute reports, close through the vault, release after the challenge period;
    returns what was charged."""
    return meter_close_release(world, lease_id, lambda lid: world.cl.voucher_close_lease(world.buyer, lid), windows)


def test_deploy_wires_the_vault(world: World) -> None:
    assert world.dep.voucher_vault is not None and world.dep.issuer == world.admin
    assert world.cl.vault.functions.escrow().call() == world.dep.escrow
    abi_names = {i.get("name") for i in world.cl.vault.abi}
    assert not abi_names & {"transfer", "transferFrom", "safeTransferFrom", "approve"}  # vouchers do not move


def test_voucher_lease_end_to_end(world: World) -> None:
    pid = _programme(world, gpu_models=[H100], regions=["eu-west1"], providers=[world.provider])
    vid = _voucher(world, pid)
    assert world.cl.voucher_eligible(pid, world.offer_reserved) == (True, 0)
    q = world.cl.quote_lease(world.offer_reserved, 3600)
    from_voucher, copay = voucher_split(q.total, 2_000, FACE)
    assert from_voucher == q.total * 8_000 // 10_000 and copay == q.total - from_voucher
    buyer_before = world.w3.eth.get_balance(world.buyer)
    res = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600, world.chain.now() + 600)
    lid = res.id
    red = res.tx.event("VoucherRedeemed").args
    assert (red["voucherPaid"], red["copayPaid"], red["balance"]) == (from_voucher, copay, FACE - from_voucher)
    lease = world.cl.lease(lid)
    assert lease.buyer == world.dep.voucher_vault and lease.holder == world.provider
    assert lease.escrowed + lease.fee_held == q.total
    assert world.cl.voucher(vid).balance == FACE - from_voucher
    gas_price = world.w3.eth.get_transaction(res.tx.tx_hash)["gasPrice"]
    assert buyer_before - world.w3.eth.get_balance(world.buyer) == copay + res.tx.gas_used * gas_price
    _check_money(world)

    world.cl.activate_lease(world.provider, lid)
    charged = _meter_and_close(world, lid)
    lease = world.cl.lease(lid)
    assert lease.fees_settled and lease.status == LeaseStatus.CLOSED
    # the provider is paid for attested usage only, as for any lease
    assert charged == PRICE * 2 * 3 * 60_000 // 1000
    assert world.cl.withdrawable(world.provider) == charged
    _check_money(world, exact=False)  # the escrow's refunds are not yet split

    out = world.cl.reconcile(world.relayer, lid)
    back = buyer_return(lease.escrowed, lease.fee_held, charged, lease.fee_bps)
    v_back, c_back = split_return(back, from_voucher, copay)
    ev = out.event("RedemptionClosedOut").args
    assert (ev["voucherReturned"], ev["copayReturned"]) == (v_back, c_back)
    assert ev["voucherSpent"] + ev["copaySpent"] == charged + charged * lease.fee_bps // 10_000
    assert world.cl.voucher(vid).balance == FACE - from_voucher + v_back
    assert world.cl.vault_withdrawable(world.buyer) == c_back
    assert world.cl.withdrawable(world.dep.voucher_vault) == 0  # the vault pulled its refunds
    _check_money(world)
    expect_revert("VoucherVaultAlreadyReconciled", world.cl.reconcile, world.relayer, lid)  # never paid twice
    world.cl.vault_withdraw(world.buyer)
    expect_revert("VoucherVaultNothingToWithdraw", world.cl.vault_withdraw, world.buyer)
    _check_money(world)
    assert world.cl.programme(pid).spent == ev["voucherSpent"]


def test_same_charge_as_an_escrow_lease(world: World) -> None:
    """The provider earns the same from a voucher lease as from a lease paid from escrow."""
    vid = _voucher(world, _programme(world))
    lid_v = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600, world.chain.now() + 600).id
    lid_e = world.cl.open_lease(world.buyer2, world.offer_metered, world.provider, 3600, world.chain.now() + 600).id
    a, b = world.cl.lease(lid_v), world.cl.lease(lid_e)
    assert (a.escrowed, a.fee_held, a.price_per_gpu_second) == (b.escrowed, b.fee_held, b.price_per_gpu_second)


def test_reconcile_waits_for_the_escrow(world: World) -> None:
    vid = _voucher(world, _programme(world))
    lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600, world.chain.now() + 600).id
    expect_revert("VoucherVaultLeaseNotFinal", world.cl.reconcile, world.relayer, lid)
    stranger = LeaseState(lid + 1, 0, 0, ZERO_HASH)
    expect_revert("VoucherVaultUnknownLease", world.cl._send, world.cl.calls.reconcile_voucher_lease(stranger), world.relayer)


def test_unstarted_lease_expires_and_the_voucher_gets_it_all_back(world: World) -> None:
    vid = _voucher(world, _programme(world))
    start_by = world.chain.now() + 600
    lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600, start_by).id
    vl = world.cl.voucher_lease(lid)
    world.chain.time_travel(start_by + 1)
    world.cl.expire_lease(world.relayer, lid)
    world.cl.reconcile(world.relayer, lid)
    assert world.cl.voucher(vid).balance == FACE
    assert world.cl.vault_withdrawable(world.buyer) == vl.copay_paid
    _check_money(world)


def test_dispute_refund_comes_back_through_the_vault(world: World) -> None:
    vid = _voucher(world, _programme(world))
    lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600, world.chain.now() + 600).id
    world.cl.activate_lease(world.provider, lid)
    lease = world.cl.lease(lid)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 120_000)
    reps = [m.next() for _ in range(2)]
    settle_in_one_batch(world, [r for r, _ in reps], [s for _, s in reps])
    expect_revert("VoucherVaultNotBeneficiary", world.cl.voucher_dispute, world.buyer2, lid)
    world.cl.voucher_dispute(world.buyer, lid)
    world.cl.voucher_close_lease(world.buyer, lid)
    world.cl.resolve_dispute(world.arbiter, lid, 10_000, False)  # all back to the buyer: the vault
    vl = world.cl.voucher_lease(lid)
    world.cl.reconcile(world.relayer, lid)
    # nothing was paid to the provider: everything the lease took comes back, split as it was paid
    assert world.cl.voucher(vid).balance == FACE
    assert world.cl.vault_withdrawable(world.buyer) == vl.copay_paid
    world.cl.voucher_rate(world.buyer, lid, 1)
    _check_money(world)


def test_redeemed_twice_never_beyond_face_value(world: World) -> None:
    """A voucher smaller than the lease pays its balance only; the second redemption finds it empty."""
    pid = _programme(world)
    q = world.cl.quote_lease(world.offer_reserved, 3600)
    face = q.total // 2
    vid = _voucher(world, pid, face=face, copay_bps=0)
    assert world.cl.voucher_quote(vid, world.offer_reserved, 3600) == (face, q.total - face)
    # the co-pay cap is enforced: a buyer who expected the voucher to cover it all is refused
    expect_revert("VoucherVaultCopayAboveMax", world.cl.voucher_open_lease, world.buyer, vid, world.offer_reserved,
                  world.provider, 3600, world.chain.now() + 600, 0)
    lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600, world.chain.now() + 600).id
    assert world.cl.voucher(vid).balance == 0
    assert world.cl.voucher_lease(lid).voucher_paid == face
    expect_revert("VoucherVaultExhausted", world.cl.voucher_open_lease, world.buyer, vid, world.offer_metered,
                  world.provider, 3600, world.chain.now() + 600)
    # a wrong co-pay value is refused, not kept
    vid2 = _voucher(world, pid, face=face, copay_bps=0)
    expect_revert("VoucherVaultWrongValue", world.cl.voucher_open_lease, world.buyer, vid2, world.offer_metered,
                  world.provider, 3600, world.chain.now() + 600, value=1)
    _check_money(world)


def test_grants_are_bounded_by_the_pool(world: World) -> None:
    pid = _programme(world, fund=FACE)
    _voucher(world, pid, face=FACE)
    expect_revert("VoucherVaultPoolTooSmall", _voucher, world, pid, 1)
    expect_revert("VoucherVaultNotIssuer", world.cl.grant_voucher, world.buyer, pid, world.buyer, 1, world.chain.now() + 99)
    expect_revert("AccessControlUnauthorizedAccount", world.cl.create_programme, world.buyer)
    expect_revert("VoucherVaultBadArgument", world.cl.grant_voucher, world.admin, pid, world.buyer, 0, world.chain.now() + 99)


def test_related_parties_cannot_redeem(world: World) -> None:
    pid = _programme(world)
    vid = _voucher(world, pid)
    start_by = world.chain.now() + 600
    # the issuer's list: the buyer's affiliate provider
    world.cl.set_related(world.admin, pid, [world.provider])
    e = expect_revert("VoucherVaultRelatedParty", world.cl.voucher_open_lease, world.buyer, vid, world.offer_reserved,
                      world.provider, 3600, start_by)
    assert e.error_args == (vid, world.provider)
    world.cl.set_related(world.admin, pid, [world.provider], False)
    # the beneficiary as the rights holder (it would pay itself)
    world.cl.transfer_rights(world.provider, world.buyer, world.offer_reserved, 2 * 3600)
    expect_revert("VoucherVaultRelatedParty", world.cl.voucher_open_lease, world.buyer, vid, world.offer_reserved,
                  world.buyer, 3600, start_by)
    # the provider itself as beneficiary
    vid_p = _voucher(world, pid, beneficiary=world.provider)
    expect_revert("VoucherVaultRelatedParty", world.cl.voucher_open_lease, world.provider, vid_p, world.offer_metered,
                  world.provider, 3600, start_by)
    # a related beneficiary gets no voucher at all
    world.cl.set_related(world.admin, pid, [world.buyer2])
    expect_revert("VoucherVaultRelatedParty", _voucher, world, pid, beneficiary=world.buyer2)
    # nor may anyone else redeem the buyer's voucher
    expect_revert("VoucherVaultNotBeneficiary", world.cl.voucher_open_lease, world.buyer2, vid, world.offer_metered,
                  world.provider, 3600, start_by)


def test_expiry_returns_the_balance_to_the_issuer(world: World) -> None:
    pid = _programme(world, fund=2 * FACE)
    vid = _voucher(world, pid, days=1)
    lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600, world.chain.now() + 600).id
    left = world.cl.voucher(vid).balance
    expect_revert("VoucherVaultNotExpired", world.cl.expire_voucher, world.relayer, vid)
    expiry = world.cl.voucher(vid).expiry
    world.chain.time_travel(expiry)
    e = expect_revert("VoucherVaultExpired", world.cl.voucher_open_lease, world.buyer, vid, world.offer_metered,
                      world.provider, 3600, world.chain.now() + 600)
    assert e.error_args == (vid, expiry)
    res = world.cl.expire_voucher(world.relayer, vid)
    assert res.event("VoucherExpired").args["returned"] == left
    expect_revert("VoucherVaultNotExpired", world.cl.expire_voucher, world.relayer, vid)
    # the lease it paid ran out unstarted: its return goes to the issuer, the voucher is closed
    world.cl.expire_lease(world.relayer, lid)
    vl = world.cl.voucher_lease(lid)
    world.cl.reconcile(world.relayer, lid)
    assert world.cl.voucher(vid).balance == 0
    assert world.cl.vault_withdrawable(world.admin) == left + vl.voucher_paid
    res = world.cl.close_programme(world.admin, pid)
    assert res.event("ProgrammeClosed").args["returned"] == FACE
    assert world.cl.vault_withdrawable(world.admin) == left + vl.voucher_paid + FACE
    expect_revert("VoucherVaultProgrammeClosed", world.cl.fund_programme, world.admin, pid, 1)
    p = world.cl.programme(pid)
    assert (p.granted, p.spent, p.returned, p.pool) == (FACE, 0, FACE + FACE, 0)
    world.cl.vault_withdraw(world.admin)
    _check_money(world)
    assert world.cl.vault_liabilities(ETH) == world.cl.vault_withdrawable(world.buyer) == vl.copay_paid


def test_ineligible_offers_are_refused(world: World) -> None:
    start_by = world.chain.now() + 600
    now = world.chain.now()
    l4_eth = world.cl.publish_offer(world.provider2, world.node2, 0b10, PRICE, ETH, BillingMode.RESERVED, now,
                                    now + 86_400).id
    cases = [
        (dict(), world.offer_token, 0),  # an ETH programme, an ERC-20 offer
        (dict(gpu_models=[H100]), l4_eth, 1),
        (dict(regions=["us-east1"]), world.offer_reserved, 2),
        (dict(providers=[world.provider2]), world.offer_reserved, 3),
    ]
    for elig, offer, rule in cases:
        pid = _programme(world, fund=FACE, **elig)
        vid = _voucher(world, pid)
        assert world.cl.voucher_eligible(pid, offer) == (False, rule)
        e = expect_revert("VoucherVaultIneligibleOffer", world.cl.voucher_open_lease, world.buyer, vid, offer,
                          world.cl.offer(offer).provider, 3600, start_by, 10**18, value=0)
        assert e.error_args == (vid, offer, rule)


def test_erc20_programme(world: World) -> None:
    fund = 10**9
    world.send(world.token_contract.functions.mint(world.admin, fund), world.admin)
    pid = _programme(world, token=world.token, fund=fund, gpu_models=["NVIDIA L4"])
    vid = _voucher(world, pid, face=fund, copay_bps=5_000)
    lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_token, world.provider2, 600, world.chain.now() + 600).id
    vl = world.cl.voucher_lease(lid)
    assert vl.voucher_paid == vl.copay_paid or vl.voucher_paid + 1 == vl.copay_paid
    assert vl.voucher_paid + vl.copay_paid == world.cl.quote_lease(world.offer_token, 600).total
    world.cl.activate_lease(world.provider2, lid)
    lease = world.cl.lease(lid)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 60_000)
    r, s = m.next(power_mw=50_000)  # an L4 draws at most 72 W
    settle_in_one_batch(world, [r], [s])
    world.cl.voucher_close_lease(world.buyer, lid)
    world.chain.time_travel(world.cl.checkpoint(lid).last_settled_at + CHALLENGE_S)
    world.cl.release_earnings(world.relayer, lid)
    world.cl.reconcile(world.relayer, lid)
    assert world.cl.withdrawable(world.provider2, world.token) == TOKEN_PRICE * r.cumAllocatedMs // 1000
    _check_money(world, world.token)
    world.cl.vault_withdraw(world.buyer, world.token)
    _check_money(world, world.token)


def test_redemption_report_from_events(world: World) -> None:
    pid = _programme(world)
    vid = _voucher(world, pid)
    lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600, world.chain.now() + 600).id
    world.cl.activate_lease(world.provider, lid)
    charged = _meter_and_close(world, lid, windows=2)
    world.cl.reconcile(world.relayer, lid)
    evs = [_evt(e) for e in world.cl.events()]
    rep = redemption_report(pid, evs)
    assert rep.funded == 3 * FACE and rep.granted == FACE
    (row,) = rep.rows
    vl = world.cl.voucher_lease(lid)
    assert (row.lease_id, row.voucher_id, row.status) == (lid, vid, "closed-out")
    assert (row.voucher_paid, row.copay_paid, row.charged, row.checkpoints) == (vl.voucher_paid, vl.copay_paid, charged, 2)
    assert row.voucher_spent == world.cl.programme(pid).spent == rep.voucher_spent
    assert row.billable_hint["cumAllocatedMs"] == 2 * 2 * 60_000
    assert len(row.report_hashes) == 2 and len(row.tx_hashes) >= 5
    csv_text = rep.to_csv()
    assert csv_text.splitlines()[1].startswith(f"{pid},{lid},{vid},")
    assert rep.to_json()["leases"][0]["voucherSpent"] == str(row.voucher_spent)
    assert redemption_report(pid + 1, evs).rows == []


def _evt(e: ChainEvent) -> Evt:
    return Evt(e.name, e.args, e.block_number, e.tx_hash, e.log_index, e.record_index)


@pytest.mark.parametrize("voucher_paid", [True, False])
def test_settled_checkpoint_gas_is_the_same(world: World, voucher_paid: bool) -> None:
    """Settlement does not know who paid: a voucher lease's checkpoint costs what an escrow lease's does."""
    if voucher_paid:
        vid = _voucher(world, _programme(world))
        lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, world.provider, 3600,
                                          world.chain.now() + 600).id
    else:
        lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 3600, world.chain.now() + 600).id
    world.cl.activate_lease(world.provider, lid)
    lease = world.cl.lease(lid)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 120_000)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    r2, s2 = m.next()
    out = world.cl.settle(world.relayer, r2, s2)
    data = bytes(world.w3.eth.get_transaction(out.tx_hash)["input"])
    # execution gas: the transaction's, less its intrinsic cost (calldata bytes differ with the lease's numbers)
    _GAS[voucher_paid] = out.gas_used - 21_000 - sum(16 if b else 4 for b in data)
    if len(_GAS) == 2:
        assert _GAS[True] == _GAS[False]


_GAS: dict[bool, int] = {}
