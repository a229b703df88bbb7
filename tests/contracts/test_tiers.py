"""Tiered prices by committed duration: the offer's provider sets up to two tiers; a lease pays the tier its
duration reaches, read before opening (offerFor) and fixed at opening; a resale ask takes precedence."""

from __future__ import annotations

import pytest

from ledger.protocol.economics import ETH
from ledger.protocol.errors import ProtocolError

from .conftest import PRICE, World, expect_revert

DAY, WEEK = 86_400, 7 * 86_400
TIERS = [(DAY, PRICE * 9 // 10), (WEEK, PRICE * 8 // 10)]


def test_a_lease_pays_the_tier_its_duration_reaches(world: World) -> None:
    oid = world.offer_reserved
    res = world.cl.set_tiers(world.provider, oid, TIERS)
    assert res.event("TiersSet").args["tiers"] == (WEEK << 96 | TIERS[1][1]) << 128 | (DAY << 96 | TIERS[0][1])
    shown = {d: world.cl.lease_price(oid, ETH, d) for d in (3600, DAY - 1, DAY, WEEK - 1, WEEK, 2 * WEEK)}
    assert shown == {3600: PRICE, DAY - 1: PRICE, DAY: TIERS[0][1], WEEK - 1: TIERS[0][1], WEEK: TIERS[1][1],
                     2 * WEEK: TIERS[1][1]}
    lid = world.cl.open_lease(world.buyer, oid, world.provider, WEEK, world.chain.now() + 600).id
    lease = world.cl.lease(lid)
    assert (lease.price_per_gpu_second, lease.escrowed) == (TIERS[1][1], TIERS[1][1] * 2 * WEEK)
    # fixed at opening: new tiers change later leases only
    world.cl.set_tiers(world.provider, oid, [])
    assert world.cl.lease(lid).price_per_gpu_second == TIERS[1][1]
    assert world.cl.lease_price(oid, ETH, WEEK) == PRICE


def test_tier_rules(world: World) -> None:
    oid = world.offer_reserved
    expect_revert("CapacityRegistryNotProvider", world.cl.set_tiers, world.buyer, oid, TIERS)
    expect_revert("CapacityRegistryNotProvider", world.cl.set_tiers, world.provider2, oid, TIERS)
    expect_revert("CapacityRegistryBadTiers", world.cl.set_tiers, world.provider, oid, [(WEEK, PRICE), (DAY, PRICE)])
    expect_revert("CapacityRegistryBadTiers", world.cl.set_tiers, world.provider, oid, [(DAY, PRICE), (DAY, PRICE)])
    # a zero price does not even encode (the chain layer refuses it before anything is sent)
    with pytest.raises(ProtocolError, match="price"):
        world.cl.set_tiers(world.provider, oid, [(DAY, 0)])
    # raw: a tier word with a zero price is refused by the registry itself
    fn = world.cl.registry.functions.setTiers(oid, DAY << 96)
    expect_revert("CapacityRegistryBadTiers", world.send, fn, world.provider)


def test_a_resale_ask_takes_precedence_over_tiers(world: World) -> None:
    oid = world.offer_reserved
    world.cl.set_tiers(world.provider, oid, TIERS)
    world.cl.transfer_rights(world.provider, world.buyer2, oid, 2 * WEEK)
    world.cl.list_rights(world.buyer2, oid, PRICE * 2)
    assert world.cl.lease_price(oid, world.buyer2, WEEK) == PRICE * 2
    assert world.cl.lease_price(oid, world.provider, WEEK) == TIERS[1][1]
