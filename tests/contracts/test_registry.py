"""CapacityRegistry: providers, stake, nodes, offers and capacity rights."""

from __future__ import annotations

import pytest

from tests.support.ledger_client import ETH, BillingMode, NodeFeature
from ledger.chain.deployment import ESCROW_ROLE
from ledger.protocol import ProtocolError, gpu_set_hash, gpu_uuid_hash

from .conftest import PRICE, UNBONDING_S, World, expect_revert


def test_register_provider_records_payout_and_emits(world: World) -> None:
    who, payout = world.chain.accounts[10 % len(world.chain.accounts)], world.buyer2
    who = world.relayer
    res = world.cl.register_provider(who, payout, "ipfs://new")
    ev = res.event("ProviderRegistered").args
    assert ev == {"provider": who, "payout": payout, "metadataURI": "ipfs://new"}
    p = world.cl.provider(who)
    assert (p.payout, p.registered, p.locked_rights, p.metadata_uri) == (payout, True, 0, "ipfs://new")


def test_register_provider_rejects_duplicate_and_zero_payout(world: World) -> None:
    e = expect_revert("CapacityRegistryAlreadyRegistered", world.cl.register_provider, world.provider, world.provider, "x")
    assert e.error_args == (world.provider,)
    expect_revert("CapacityRegistryZeroAddress", world.cl.register_provider, world.relayer, ETH, "x")


def test_update_provider_changes_payout(world: World) -> None:
    res = world.cl.update_provider(world.provider, world.buyer2, "ipfs://v2")
    assert res.event("ProviderUpdated").args == {"provider": world.provider, "payout": world.buyer2, "metadataURI": "ipfs://v2"}
    assert world.cl.provider(world.provider).payout == world.buyer2
    expect_revert("CapacityRegistryNotProvider", world.cl.update_provider, world.relayer, world.relayer, "x")


def test_stake_eth_and_token_accumulates(world: World) -> None:
    res = world.cl.stake(world.provider, ETH, 5)
    assert res.event("Staked").args == {"provider": world.provider, "token": ETH, "amount": 5, "bonded": 10**18 + 5}
    assert world.cl.stake_of(world.provider, ETH).bonded == 10**18 + 5
    world.cl.stake(world.provider2, world.token, 7)
    assert world.cl.stake_of(world.provider2, world.token).bonded == 10**12 + 7
    assert world.cl.erc20_balance(world.token, world.dep.registry) == 10**12 + 7


def test_stake_rejects_wrong_value_zero_and_non_provider(world: World) -> None:
    fn = world.cl.registry.functions.stake(ETH, 10)
    e = expect_revert("CapacityRegistryWrongValue", world.send, fn, world.provider, 9)
    assert e.error_args == (10, 9)
    expect_revert("CapacityRegistryZeroAmount", world.cl.stake, world.provider, ETH, 0)
    expect_revert("CapacityRegistryNotProvider", world.cl.stake, world.relayer, ETH, 1)


def test_stake_rejects_fee_on_transfer_token(world: World) -> None:
    fot = world.deploy("FeeOnTransferToken")
    world.send(fot.functions.mint(world.provider, 10_000), world.admin)
    e = expect_revert("CapacityRegistryFeeOnTransferToken", world.cl.stake, world.provider, fot.address, 1_000)
    assert e.error_args == (fot.address, 1_000, 990)


def test_unstake_after_delay_pays_back(world: World) -> None:
    res = world.cl.request_unstake(world.provider, ETH, 4 * 10**17)
    ends = res.event("UnstakeRequested").args["unbondingEnds"]
    assert ends == world.chain.now() + UNBONDING_S
    s = world.cl.stake_of(world.provider, ETH)
    assert (s.bonded, s.unbonding, s.unbonding_ends) == (6 * 10**17, 4 * 10**17, ends)
    e = expect_revert("CapacityRegistryStillUnbonding", world.cl.withdraw_stake, world.provider, ETH)
    assert e.error_args == (world.provider, ETH, ends)
    world.chain.time_travel(ends)
    before = world.w3.eth.get_balance(world.provider)
    res = world.cl.withdraw_stake(world.provider, ETH)
    assert res.event("StakeWithdrawn").args == {"provider": world.provider, "token": ETH, "amount": 4 * 10**17}
    gas_cost = res.gas_used * world.w3.eth.get_transaction(res.tx_hash)["gasPrice"]
    assert world.w3.eth.get_balance(world.provider) == before + 4 * 10**17 - gas_cost
    assert world.cl.stake_of(world.provider, ETH).unbonding == 0


def test_unstake_rejects_insufficient_and_nothing_to_withdraw(world: World) -> None:
    e = expect_revert("CapacityRegistryInsufficientStake", world.cl.request_unstake, world.provider, ETH, 2 * 10**18)
    assert e.error_args == (world.provider, ETH, 2 * 10**18, 10**18)
    expect_revert("CapacityRegistryZeroAmount", world.cl.request_unstake, world.provider, ETH, 0)
    expect_revert("CapacityRegistryNothingToWithdraw", world.cl.withdraw_stake, world.provider, ETH)


def test_withdraw_stake_blocked_while_a_lease_holds_rights(world: World) -> None:
    world.open_active(duration_s=600)
    world.cl.request_unstake(world.provider, ETH, 10**17)
    world.chain.increase_time(UNBONDING_S + 1)
    e = expect_revert("CapacityRegistryOpenLeases", world.cl.withdraw_stake, world.provider, ETH)
    assert e.error_args == (world.provider, 2 * 600)


def test_register_node_stores_gpus_and_emits(world: World) -> None:
    uu = [gpu_uuid_hash("GPU-new-0"), gpu_uuid_hash("GPU-new-1")]
    created = world.cl.register_node(world.provider, world.relayer, "A100", uu, 40_000, 400_000, "ap-1")
    ev = created.tx.event("NodeRegistered").args
    assert ev["nodeId"] == created.id == 3
    assert ev["gpuUuidHashes"] == uu and ev["attestor"] == world.relayer and ev["maxPowerMwPerGpu"] == 400_000
    assert ev["features"] == 0  # an A100 has no GPM: the default
    n = world.cl.node(created.id)
    assert (n.provider, n.attestor, n.gpu_count, n.vram_mib, n.active) == (world.provider, world.relayer, 2, 40_000, True)
    assert n.gpu_model.rstrip(b"\x00") == b"A100" and n.region.rstrip(b"\x00") == b"ap-1"
    assert n.gpu_uuid_hashes == tuple(uu)
    assert (n.features, n.gpm) == (NodeFeature.NONE, False)


def test_register_node_records_gpm_feature(world: World) -> None:
    uu = [gpu_uuid_hash("GPU-h200-0")]
    created = world.cl.register_node(
        world.provider, world.relayer, "NVIDIA H200", uu, 143_771, 700_000, "eu-1", features=NodeFeature.GPM
    )
    assert created.tx.event("NodeRegistered").args["features"] == 1
    n = world.cl.node(created.id)
    assert (n.features, n.gpm) == (NodeFeature.GPM, True)
    # the suite's nodes: an H100 with GPM, an L4 without
    assert world.cl.node(world.node).gpm and not world.cl.node(world.node2).gpm


def test_register_node_rejects_unknown_feature_bits(world: World) -> None:
    for features in (2, 3, 0x80, 0xFF):
        uu = [gpu_uuid_hash(f"GPU-feat-{features}")]
        e = expect_revert(
            "CapacityRegistryUnknownFeatures",
            world.cl.register_node, world.provider, world.relayer, "m", uu, 1, 1, "r", features=features,
        )
        assert e.error_args == (features,)
    with pytest.raises(ProtocolError, match="uint8"):
        world.cl.calls.register_node(world.relayer, "m", [gpu_uuid_hash("GPU-x")], 1, 1, "r", features=256)
    assert world.cl.node_count() == 2


def test_sm_active_offer_needs_a_gpm_node(world: World) -> None:
    """Billing SM-active time needs GPUs that measure it: the registry refuses the offer on a node registered
    without the GPM feature, and takes the same offer on a GPM node."""
    now = world.chain.now()
    e = expect_revert(
        "CapacityRegistryNodeLacksFeature",
        world.cl.publish_offer, world.provider2, world.node2, 0b10, PRICE, ETH, BillingMode.SM_ACTIVE, now, now + 100,
    )
    assert e.error_args == (world.node2, NodeFeature.GPM)
    # the other modes are fine on that node
    ok = world.cl.publish_offer(world.provider2, world.node2, 0b10, PRICE, ETH, BillingMode.METERED, now, now + 100)
    assert world.cl.offer(ok.id).billing_mode == BillingMode.METERED
    sm = world.cl.offer(world.offer_sm)
    assert (sm.billing_mode, sm.node_id, sm.gpu_count) == (BillingMode.SM_ACTIVE, world.node, 2)
    assert world.cl.offer(world.offer_sm).billing_mode.label == "sm_active"


def test_publish_offer_refuses_unknown_billing_mode(world: World) -> None:
    now = world.chain.now()
    with pytest.raises(ProtocolError, match="billing mode"):
        world.cl.calls.publish_offer(world.node, 0b1000000, PRICE, ETH, 3, now, now + 100)
    # sent anyway, the registry names it (the mode is a uint8 so that the refusal has a name)
    for mode in (3, 15, 255):
        fn = world.cl.registry.functions.publishOffer(world.node, 0b1, PRICE, ETH, mode, now, now + 100, 0, b"\x00" * 32)
        e = expect_revert("CapacityRegistryBadBillingMode", world.send, fn, world.provider)
        assert e.error_args == (mode,)
    assert world.cl.offer_count() == 4


def test_register_node_rejects_bad_input(world: World) -> None:
    uu = [gpu_uuid_hash("GPU-x")]
    expect_revert("CapacityRegistryNotProvider", world.cl.register_node, world.relayer, world.relayer, "m", uu, 1, 1, "r")
    expect_revert("CapacityRegistryZeroAddress", world.cl.register_node, world.provider, ETH, "m", uu, 1, 1, "r")
    e = expect_revert("CapacityRegistryBadGpuCount", world.cl.register_node, world.provider, world.relayer, "m", [], 1, 1, "r")
    assert e.error_args == (0,)
    expect_revert("CapacityRegistryBadNodeSpec", world.cl.register_node, world.provider, world.relayer, "m", uu, 0, 1, "r")
    e = expect_revert(
        "CapacityRegistryGpuAlreadyRegistered",
        world.cl.register_node, world.provider2, world.relayer, "m", [world.uuids[1]], 1, 1, "r",
    )
    assert e.error_args == (world.uuids[1], world.node)


def test_rotate_attestor_updates_registry_and_escrow_cache(world: World) -> None:
    res = world.cl.rotate_attestor(world.provider, world.node, world.relayer)
    assert res.event("AttestorRotated").args == {"nodeId": world.node, "oldAttestor": world.attestor, "newAttestor": world.relayer}
    assert res.event("NodeSynced").args == {"nodeId": world.node, "attestor": world.relayer, "maxPowerMwPerGpu": 700_000}
    assert world.cl.node(world.node).attestor == world.relayer
    assert world.cl.node_cache(world.node) == (world.relayer, 700_000)
    e = expect_revert("CapacityRegistryNotNodeOwner", world.cl.rotate_attestor, world.provider2, world.node, world.relayer)
    assert e.error_args == (world.node, world.provider2)
    expect_revert("CapacityRegistryUnknownNode", world.cl.rotate_attestor, world.provider, 99, world.relayer)


def test_deactivate_node_blocks_offers_and_frees_gpus(world: World) -> None:
    live = world.cl.open_lease(world.buyer, world.offer_token, world.provider2, 60, world.chain.now() + 600).id
    res = world.cl.deactivate_node(world.provider2, world.node2)
    assert res.event("NodeDeactivated").args == {"nodeId": world.node2}
    assert world.cl.node(world.node2).active is False
    now = world.chain.now()
    expect_revert(
        "CapacityRegistryNodeInactive",
        world.cl.publish_offer, world.provider2, world.node2, 0b10, PRICE, ETH, BillingMode.RESERVED, now, now + 100,
    )
    expect_revert("CapacityRegistryNodeInactive", world.cl.deactivate_node, world.provider2, world.node2)
    # a running lease keeps its GPUs bound to the old node ...
    e = expect_revert("CapacityRegistryGpuAlreadyRegistered", world.cl.register_node, world.provider2, world.attestor2, "L4", world.uuids2, 1, 1, "r")
    assert e.error_args == (world.uuids2[0], world.node2)
    world.cl.close_lease(world.buyer, live)
    e = expect_revert("LeaseEscrowNodeInactive", world.cl.open_lease, world.buyer, world.offer_token, world.provider2, 60, now + 600)
    assert e.error_args == (world.node2,)
    # ... then they may be registered again on a new node
    again = world.cl.register_node(world.provider2, world.attestor2, "L4", world.uuids2, 1, 1, "r")
    assert again.id == 3


def test_publish_offer_mints_rights_and_binds_gpu_set(world: World) -> None:
    world.cl.register_node(world.provider, world.relayer, "m", [gpu_uuid_hash(f"G-{i}") for i in range(3)], 1, 1, "r")
    now = world.chain.now()
    created = world.cl.publish_offer(
        world.provider, 3, 0b101, 7, ETH, BillingMode.METERED, now + 10, now + 110, 6_000, b"\x09" * 32
    )
    ev = created.tx.event("OfferPublished").args
    expected_set = gpu_set_hash([gpu_uuid_hash("G-0"), gpu_uuid_hash("G-2")])
    assert ev["rightsMinted"] == 2 * 100 and ev["offerId"] == created.id and ev["nodeId"] == 3
    assert ev["offer"]["gpuSetHash"] == expected_set and ev["offer"]["termsHash"] == b"\x09" * 32
    o = world.cl.offer(created.id)
    assert (o.gpu_count, o.price_per_gpu_second, o.billing_mode, o.min_buyer_score_bps) == (2, 7, BillingMode.METERED, 6_000)
    assert (o.valid_from, o.valid_until, o.gpu_set_hash) == (now + 10, now + 110, expected_set)
    assert world.cl.rights_balance(world.provider, created.id) == 200
    r = world.cl.rights_of(created.id)
    assert (r.minted, r.locked, r.burned) == (200, 0, 0)
    transfer = [e for e in created.tx.events if e.name == "TransferSingle"][0].args
    assert (transfer["from"], transfer["to"], transfer["id"], transfer["value"]) == (ETH, world.provider, created.id, 200)


def test_publish_offer_rejects_bad_terms(world: World) -> None:
    now = world.chain.now()
    pub = world.cl.publish_offer
    e = expect_revert("CapacityRegistryBadGpuMask", pub, world.provider, world.node, 0b1000000, 1, ETH, 0, now, now + 5_000)
    assert e.error_args == (0b1000000, 6)
    expect_revert("CapacityRegistryBadGpuMask", pub, world.provider, world.node, 0, 1, ETH, 0, now, now + 5_000)
    expect_revert("CapacityRegistryBadPrice", pub, world.provider, world.node, 1, 0, ETH, 0, now, now + 5_000)
    expect_revert("CapacityRegistryBadPrice", pub, world.provider, world.node, 1, 2**96, ETH, 0, now, now + 5_000)
    expect_revert("CapacityRegistryBadWindow", pub, world.provider, world.node, 1, 1, ETH, 0, now + 5_000, now + 5_000)
    expect_revert("CapacityRegistryBadWindow", pub, world.provider, world.node, 1, 1, ETH, 0, now - 20, now - 10)
    expect_revert("CapacityRegistryBadMinScore", pub, world.provider, world.node, 1, 1, ETH, 0, now, now + 5_000, 10_001)
    expect_revert("CapacityRegistryNotNodeOwner", pub, world.provider2, world.node, 1, 1, ETH, 0, now, now + 5_000)


def test_publish_offer_rejects_overlap_on_a_gpu(world: World) -> None:
    until = world.cl.offer(world.offer_reserved).valid_until
    e = expect_revert(
        "CapacityRegistryGpuAlreadyOffered",
        world.cl.publish_offer, world.provider, world.node, 0b0010, PRICE, ETH, 0, until - 1, until + 100,
    )
    assert e.error_args == (1, until)
    # a window starting when the previous one ends is fine
    ok = world.cl.publish_offer(world.provider, world.node, 0b0010, PRICE, ETH, 0, until, until + 100)
    assert world.cl.rights_balance(world.provider, ok.id) == 100


def test_rights_transfer_moves_earnings_to_new_holder(world: World) -> None:
    world.cl.transfer_rights(world.provider, world.buyer2, world.offer_reserved, 1_000)
    assert world.cl.rights_balance(world.buyer2, world.offer_reserved) == 1_000
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.buyer2, 500, world.chain.now() + 600).id
    assert world.cl.rights_balance(world.buyer2, world.offer_reserved) == 0
    lease = world.cl.lease(lid)
    assert lease.holder == world.buyer2 and lease.provider == world.provider
    assert world.cl.rights_of(world.offer_reserved).locked == 1_000


def test_rights_functions_only_escrow_role(world: World) -> None:
    fns = [
        world.cl.registry.functions.lockRights(world.provider, world.offer_reserved, 1),
        world.cl.registry.functions.releaseRights(world.provider, world.offer_reserved, 1),
        world.cl.registry.functions.burnLocked(world.offer_reserved, 1),
        world.cl.registry.functions.slash(world.provider, ETH, 1),
    ]
    for fn in fns:
        e = expect_revert("AccessControlUnauthorizedAccount", world.send, fn, world.provider)
        assert e.error_args == (world.provider, ESCROW_ROLE)


def test_registry_admin_setters_emit_and_check_roles(world: World) -> None:
    res = world.cl.set_unbonding_delay(world.admin, 10)
    assert res.event("UnbondingDelaySet").args == {"delaySeconds": 10}
    assert world.cl.unbonding_delay() == 10
    expect_revert("AccessControlUnauthorizedAccount", world.cl.set_unbonding_delay, world.provider, 1)
    expect_revert("CapacityRegistryZeroAddress", world.cl.set_registry_escrow, world.admin, ETH)
    res = world.cl.set_registry_escrow(world.admin, world.relayer)
    assert res.event("EscrowSet").args == {"escrow": world.relayer}
    assert world.cl.registry_escrow() == world.relayer
    assert world.cl.has_role("registry", ESCROW_ROLE, world.relayer)
    assert not world.cl.has_role("registry", ESCROW_ROLE, world.dep.escrow)


def test_sync_node_copies_registry_values(world: World) -> None:
    assert world.cl.node_cache(world.node2) == (ETH, 0)  # no lease on node 2 yet: nothing cached
    res = world.cl.sync_node(world.buyer, world.node2)  # anyone may refresh
    assert res.event("NodeSynced").args == {"nodeId": world.node2, "attestor": world.attestor2, "maxPowerMwPerGpu": 72_000}
    assert world.cl.node_cache(world.node2) == (world.attestor2, 72_000)
    assert world.cl.sync_node(world.buyer, world.node2).named("NodeSynced") == []  # unchanged: no write
    expect_revert("CapacityRegistryUnknownNode", world.cl.sync_node, world.buyer, 42)


def test_node_and_offer_views_reject_unknown_ids(world: World) -> None:
    expect_revert("CapacityRegistryUnknownNode", world.cl.node, 42)
    expect_revert("CapacityRegistryUnknownOffer", world.cl.offer, 42)
    assert world.cl.node_count() == 2 and world.cl.offer_count() == 4


def test_lock_rights_never_uses_rights_locked_by_other_leases(world: World) -> None:
    e = expect_revert(
        "CapacityRegistryInsufficientRights",
        world.cl.open_lease, world.buyer, world.offer_reserved, world.dep.registry, 10, world.chain.now() + 60,
    )
    assert e.error_args == (world.dep.registry, world.offer_reserved, 20, 0)


def test_rights_operator_approval_allows_transfer(world: World) -> None:
    res = world.cl.set_rights_approval(world.provider, world.relayer, True)
    assert res.event("ApprovalForAll").args == {"account": world.provider, "operator": world.relayer, "approved": True}
    assert world.cl.is_rights_approved(world.provider, world.relayer)
    world.cl.transfer_rights_from(world.relayer, world.provider, world.buyer2, world.offer_metered, 10)
    assert world.cl.rights_balance(world.buyer2, world.offer_metered) == 10
    expect_revert("ERC1155MissingApprovalForAll", world.cl.transfer_rights_from, world.buyer, world.provider, world.buyer, world.offer_metered, 1)
