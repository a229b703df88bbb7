"""Dynamic prices (DynamicPricer, deployed with the suite): the provider moves an offer's rights to the pricer
under a rule (floor, ceiling per GPU-second); the pricer's ask follows the share of the offer's GPU-seconds
leased, never outside [floor, ceiling]; a lease opened from the pricer pays the ask of its opening; the holder's
earnings reach the provider through the pricer (pull payments), and no wei is created or lost."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .conftest import PRICE, World, expect_revert, meter_close_release

FLOOR, CEILING = PRICE, 3 * PRICE


def _put_under_rule(world: World, offer_id: int, floor: int = FLOOR, ceiling: int = CEILING) -> str:
    pricer = world.cl.read.pricer_address
    assert pricer is not None and pricer == world.dep.dynamic_pricer
    res = world.cl.set_dynamic_rule(world.provider, offer_id, floor, ceiling)
    assert res.event("RuleSet").args == {"offerId": offer_id, "owner": world.provider, "floor": floor, "ceiling": ceiling}
    held = world.cl.rights_balance(world.provider, offer_id)
    res = world.cl.transfer_rights(world.provider, pricer, offer_id, held)
    assert res.event("RightsDeposited").args == {"offerId": offer_id, "owner": world.provider, "amount": held}
    assert res.event("Repriced").args["price"] == floor  # nothing leased yet
    return pricer


def _run_and_release(world: World, lid: int, seconds: int) -> int:
    world.cl.activate_lease(world.provider, lid)
    return meter_close_release(world, lid, lambda i: world.cl.close_lease(world.buyer, i), 1, seconds * 1000)


def test_a_lease_at_the_dynamic_price_pays_the_provider_through_the_pricer(world: World) -> None:
    offer = world.offer_reserved  # 2 GPUs, ETH
    pricer = _put_under_rule(world, offer)
    w3 = world.chain.w3
    escrow, provider = world.dep.escrow, world.provider
    held_before = w3.eth.get_balance(escrow) + w3.eth.get_balance(pricer)
    # the price is shown before opening, and it is what the lease pays
    assert world.cl.lease_price(offer, pricer, 3600) == FLOOR
    a = world.cl.open_lease(world.buyer, offer, pricer, 3600, world.chain.now() + 600).id
    assert world.cl.lease(a).price_per_gpu_second == FLOOR
    charged_a = _run_and_release(world, a, 600)
    # the lease ran 2 GPUs for 600 s (and the block seconds until it closed): those rights were burned, and
    # the price rises by that share of the band
    rights = world.cl.rights_of(offer)
    quote = world.cl.read.dynamic_quote(offer)
    assert quote.taken == rights.locked + rights.burned >= 2 * 600
    assert quote.price == FLOOR + (CEILING - FLOOR) * quote.taken // rights.minted
    assert world.cl.ask_of(offer, pricer) == FLOOR  # not yet repriced: the ask in force is still the floor
    res = world.cl.reprice(world.relayer, offer)  # anyone
    assert res.event("Repriced").args == {"offerId": offer, "price": quote.price, "taken": quote.taken,
                                          "minted": rights.minted}
    assert world.cl.lease_price(offer, pricer, 600) == quote.price
    q = world.cl.quote_lease(offer, 600, pricer)
    b = world.cl.open_lease(world.buyer, offer, pricer, 600, world.chain.now() + 600).id
    world.cl.reprice(world.relayer, offer)  # a later reprice does not touch an open lease
    lease_b = world.cl.lease(b)
    assert lease_b.price_per_gpu_second == quote.price and lease_b.escrowed + lease_b.fee_held == q.total
    charged_b = _run_and_release(world, b, 300)

    # the escrow released the holder's earnings to the pricer; claims attribute them to the provider, once
    assert world.cl.withdrawable(pricer) == charged_a + charged_b
    got = [world.cl.pricer_claim(world.relayer, lid).event("EarningsClaimed").args for lid in (a, b)]
    assert [(g["leaseId"], g["owner"], g["amount"]) for g in got] == [(a, provider, charged_a), (b, provider, charged_b)]
    expect_revert("DynamicPricerNothingToClaim", world.cl.pricer_claim, world.relayer, a)
    assert world.cl.read.pricer_owed(provider) == world.cl.read.pricer_liabilities() == charged_a + charged_b
    assert w3.eth.get_balance(pricer) + world.cl.withdrawable(pricer) == world.cl.read.pricer_liabilities()
    before = w3.eth.get_balance(provider)
    res = world.cl.pricer_withdraw(provider)
    assert res.event("PricerWithdrawn").args["amount"] == charged_a + charged_b
    assert res.event("EscrowPulled").args["amount"] == charged_a + charged_b
    gas = res.gas_used * w3.eth.get_transaction(res.tx_hash)["gasPrice"]
    assert w3.eth.get_balance(provider) - before == charged_a + charged_b - gas
    # conservation: what buyers paid in = what stays in escrow (refunds, fees) + what left through the pricer
    paid_in = sum(world.cl.lease(lid).escrowed + world.cl.lease(lid).fee_held for lid in (a, b))
    held_after = w3.eth.get_balance(escrow) + w3.eth.get_balance(pricer)
    assert held_after - held_before == paid_in - (charged_a + charged_b)
    assert w3.eth.get_balance(pricer) == 0 and world.cl.read.pricer_liabilities() == 0
    expect_revert("DynamicPricerNothingToWithdraw", world.cl.pricer_withdraw, provider)


def test_rule_refusals(world: World) -> None:
    offer = world.offer_reserved
    raw = world.cl.calls.call  # past the client-side check, so the contract's own refusal is what is tested
    e = expect_revert("DynamicPricerBadRule", world.cl._send, raw("pricer", "setRule", offer, 2 * PRICE, PRICE), world.provider)
    assert e.error_args == (2 * PRICE, PRICE)
    expect_revert("DynamicPricerBadRule", world.cl._send, raw("pricer", "setRule", offer, 0, PRICE), world.provider)
    expect_revert("DynamicPricerBadRule", world.cl._send, raw("pricer", "setRule", offer, 1, 2**96), world.provider)
    expect_revert("DynamicPricerNotOwner", world.cl.set_dynamic_rule, world.buyer, offer, PRICE, PRICE)
    expect_revert("DynamicPricerNoRule", world.cl.reprice, world.buyer, offer)
    pricer = world.dep.dynamic_pricer
    assert pricer is not None
    # rights arrive only under a rule, and only from its owner
    expect_revert("DynamicPricerBadDeposit", world.cl.transfer_rights, world.provider, pricer, offer, 1)


def test_ending_the_rule_returns_the_rights(world: World) -> None:
    offer = world.offer_metered
    pricer = _put_under_rule(world, offer)
    held = world.cl.rights_balance(pricer, offer)
    world.cl.set_dynamic_rule(world.provider, offer, 5 * PRICE, 6 * PRICE)  # replaced: repriced at once
    assert world.cl.ask_of(offer, pricer) == 5 * PRICE
    res = world.cl.end_dynamic_rule(world.provider, offer)
    assert res.event("RuleEnded").args == {"offerId": offer, "owner": world.provider, "rightsReturned": held}
    assert world.cl.ask_of(offer, pricer) == 0 and world.cl.rights_balance(world.provider, offer) == held
    assert not world.cl.read.dynamic_rule(offer).active


@settings(max_examples=8, deadline=None, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(floor=st.integers(1, 10**12), spread=st.integers(0, 2**96), leased_s=st.integers(1, 5 * 86_400))
def test_an_ask_is_never_outside_its_band(world: World, floor: int, spread: int, leased_s: int) -> None:
    """Arbitrary rules (ceilings up to the 96-bit limit) and leased shares (a lease of any length taken from
    the offer's rights): the ask after reprice is the rule's formula, inside [floor, ceiling]."""
    snap = world.chain.snapshot()
    try:
        ceiling = min(floor + spread, 2**96 - 1)
        offer = world.offer_metered  # 2 GPUs: a lease of leased_s locks 2 × leased_s GPU-seconds
        pricer = _put_under_rule(world, offer, floor, ceiling)
        assert world.cl.ask_of(offer, pricer) == floor
        world.cl.open_lease(world.buyer, offer, pricer, leased_s, world.chain.now() + 600)
        ev = world.cl.reprice(world.relayer, offer).event("Repriced").args
        price, taken, minted = ev["price"], ev["taken"], ev["minted"]
        assert taken == 2 * leased_s and minted == world.cl.rights_of(offer).minted
        assert price == floor + (ceiling - floor) * taken // minted
        assert floor <= world.cl.ask_of(offer, pricer) == price <= ceiling
    finally:
        world.chain.revert(snap)
