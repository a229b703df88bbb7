"""Resale of capacity rights (ERC-1155, minted at publication): a holder lists its rights at its own price; a
lease locking them pays that price to the holder, fixed at opening; rights locked by a lease can be neither
leased again, nor moved, nor listed; withdrawing the ask brings back the offer's price."""

from __future__ import annotations

from tests.support.ledger_client import ETH

from .conftest import CHALLENGE_S, PRICE, World, expect_revert, settle_in_one_batch

RESELLER_ASK = 3 * PRICE // 2


def _resell(world: World, rights: int) -> str:
    """The provider sells ``rights`` GPU-seconds of its reserved offer to a reseller (buyer2), who lists them."""
    reseller = world.buyer2
    world.cl.transfer_rights(world.provider, reseller, world.offer_reserved, rights)
    res = world.cl.list_rights(reseller, world.offer_reserved, RESELLER_ASK)
    assert res.event("RightsListed").args == {"holder": reseller, "offerId": world.offer_reserved,
                                              "pricePerGpuSecond": RESELLER_ASK}
    return reseller


def test_a_lease_from_a_listing_pays_the_holder_its_ask(world: World) -> None:
    reseller = _resell(world, 2 * 3600)
    assert world.cl.lease_price(world.offer_reserved, reseller, 3600) == RESELLER_ASK
    assert world.cl.lease_price(world.offer_reserved, world.provider, 3600) == PRICE  # the provider's own rights
    q = world.cl.quote_lease(world.offer_reserved, 3600, reseller)
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, reseller, 3600, world.chain.now() + 600).id
    lease = world.cl.lease(lid)
    assert (lease.holder, lease.price_per_gpu_second, lease.escrowed) == (reseller, RESELLER_ASK, RESELLER_ASK * 2 * 3600)
    assert lease.escrowed + lease.fee_held == q.total
    # the ask is fixed at opening: changing it later changes nothing for this lease
    world.cl.list_rights(reseller, world.offer_reserved, 0)
    world.cl.activate_lease(world.provider, lid)  # the node's provider runs it; its attestor meters it as any other
    lease = world.cl.lease(lid)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 120_000)
    reps = [m.next() for _ in range(2)]
    settle_in_one_batch(world, [r for r, _ in reps], [s for _, s in reps])
    closed = world.cl.close_lease(world.buyer, lid).event("LeaseClosed").args
    cp = world.cl.checkpoint(lid)
    assert cp.charged == RESELLER_ASK * reps[-1][0].cumAllocatedMs // 1000
    world.chain.time_travel(cp.last_settled_at + CHALLENGE_S)
    res = world.cl.release_earnings(world.relayer, lid)
    assert res.event("EarningsReleased").args["holder"] == reseller
    assert world.cl.withdrawable(reseller) == cp.charged and world.cl.withdrawable(world.provider) == 0
    # unused rights came back to the reseller, used ones (GPU-seconds the lease ran) were burned
    assert closed["rightsBurned"] >= 2 * 120 and closed["rightsBurned"] + closed["rightsReleased"] == 2 * 3600
    assert world.cl.rights_balance(reseller, world.offer_reserved) == closed["rightsReleased"]


def test_rights_already_locked_cannot_be_resold(world: World) -> None:
    reseller = _resell(world, 2 * 3600)
    start_by = world.chain.now() + 600
    # more than the reseller holds
    e = expect_revert("CapacityRegistryInsufficientRights", world.cl.open_lease, world.buyer, world.offer_reserved,
                      reseller, 3601, start_by)
    assert e.error_args == (reseller, world.offer_reserved, 2 * 3601, 2 * 3600)
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, reseller, 3600, start_by).id
    assert world.cl.rights_balance(reseller, world.offer_reserved) == 0  # all locked by the lease
    # not leasable again (the offer is taken, and the rights are gone from the holder), not movable, not listable
    expect_revert("LeaseEscrowOfferBusy", world.cl.open_lease, world.buyer2, world.offer_reserved, reseller, 60, start_by)
    expect_revert("ERC1155InsufficientBalance", world.cl.transfer_rights, reseller, world.provider, world.offer_reserved, 1)
    expect_revert("CapacityRegistryInsufficientRights", world.cl.list_rights, reseller, world.offer_reserved, PRICE)
    # closed before it started: every right comes back, listable and leasable again
    world.cl.close_lease(world.buyer, lid)
    assert world.cl.rights_balance(reseller, world.offer_reserved) == 2 * 3600
    world.cl.list_rights(reseller, world.offer_reserved, PRICE * 2)
    lid2 = world.cl.open_lease(world.buyer, world.offer_reserved, reseller, 1800, world.chain.now() + 600).id
    assert world.cl.lease(lid2).price_per_gpu_second == PRICE * 2


def test_listing_rules(world: World) -> None:
    expect_revert("CapacityRegistryInsufficientRights", world.cl.list_rights, world.buyer, world.offer_reserved, PRICE)
    expect_revert("CapacityRegistryBadPrice", world.cl.list_rights, world.provider, world.offer_reserved, 2**96)
    expect_revert("CapacityRegistryUnknownOffer", world.cl.list_rights, world.provider, 999, PRICE)
    # the provider may list its own rights too: leases of them then pay its ask instead of the offer's price
    world.cl.list_rights(world.provider, world.offer_reserved, PRICE // 2)
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 600, world.chain.now() + 600).id
    assert world.cl.lease(lid).price_per_gpu_second == PRICE // 2
    assert world.cl.ask_of(world.offer_reserved, world.provider) == PRICE // 2


def test_a_voucher_lease_from_a_listing(world: World) -> None:
    reseller = _resell(world, 2 * 3600)
    pid = world.cl.create_programme(world.admin, ETH).id
    world.cl.fund_programme(world.admin, pid, 10**16)
    vid = world.cl.grant_voucher(world.admin, pid, world.buyer, 10**16, world.chain.now() + 86_400, 1_000).id
    lid = world.cl.voucher_open_lease(world.buyer, vid, world.offer_reserved, reseller, 600, world.chain.now() + 600).id
    vl, lease = world.cl.voucher_lease(lid), world.cl.lease(lid)
    assert lease.price_per_gpu_second == RESELLER_ASK and vl.voucher_paid + vl.copay_paid == lease.escrowed + lease.fee_held
