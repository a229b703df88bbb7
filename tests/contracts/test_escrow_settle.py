"""LeaseEscrow settlement (metering protocol v2): the happy path in each billing mode, every check of the
design (the v2 cumulative bounds instead of window order), the one-slot state commitment, settlement entries
(layout, malformed blobs), batches, exhaustion, digests."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from eth_abi import decode as abi_decode
from eth_utils import keccak

from tests.support.ledger_client import BillingMode, ClientError, LeaseStatus, LedgerClient
from ledger.chain.reverts import ContractRevert, decode_revert_data, error_selector
from ledger.protocol import REPORT_TYPEHASH, SECP256K1_HALF_N, SECP256K1_N, WINDOW_TYPEHASH, ZERO_HASH, MeteringReport, ProtocolError, domain_separator, gpu_set_hash, report_digest, report_struct_hash, window_struct_hash
from ledger.chain.signing import sign_digest
from ledger.protocol.economics import checkpoint_billable
from ledger.protocol.settlement import (
    ENTRY_SIZE,
    ENTRY_SIZE_WITH_LAST,
    Checkpoint,
    LeaseState,
    commitment,
    compact_signature,
    decode_records,
    encode_entries,
    encode_entry,
    initial_ckpt,
    terms_duration_s,
    terms_gpus,
    terms_mode,
    terms_node,
    terms_price,
    terms_start_s,
    terms_status,
)

from .conftest import (
    MAX_POWER_MW,
    PRICE,
    World,
    expect_revert,
    expected_ckpt,
    pending_timestamp,
    send_entries,
    state_after,
)

CONTRACTS_SRC = Path(__file__).resolve().parents[2] / "contracts" / "src"
TOPIC_BATCH = keccak(text="CheckpointsSettled(bytes)")
TOPIC_ONE = keccak(text="CheckpointSettled(uint256,bytes32,uint256,uint256)")


def recover_signer_raw(digest: bytes, signature: bytes) -> str:
    """The signer of a 65-byte signature, high s allowed (what a malleated signature recovers to)."""
    from eth_keys import keys

    v = signature[64] - 27
    sig = keys.Signature(vrs=(v, int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")))
    return sig.recover_public_key_from_msg_hash(digest).to_checksum_address()


def _active(world: World, offer: int | None = None, duration_s: int = 3600):  # type: ignore[no-untyped-def]
    lease = world.open_active(offer, duration_s)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 600_000)
    return lease, m


def _record(lease_id: int, h: bytes, ckpt: int, charged: int) -> bytes:
    """One CheckpointsSettled record, written out from ILeaseEscrow's header (not from ledger.protocol.settlement)."""
    return lease_id.to_bytes(4, "big") + h + ckpt.to_bytes(32, "big") + charged.to_bytes(16, "big")


def _raw_logs(world: World, tx_hash: bytes, topic: bytes) -> list[bytes]:
    """Data of the escrow's logs with ``topic`` in a transaction (straight from the receipt)."""
    receipt = world.w3.eth.get_transaction_receipt(tx_hash)
    return [
        bytes(log["data"])
        for log in receipt["logs"]
        if log["address"] == world.dep.escrow and bytes(log["topics"][0]) == topic
    ]


# --- the happy path -------------------------------------------------------------------------------


def test_settle_charges_allocated_time_for_reserved_offer(world: World) -> None:
    lease, m = _active(world)
    r, sig = m.next(60_000)
    res = world.cl.settle(world.relayer, r, sig)
    now = world.chain.now()
    assert world.w3.eth.get_block(res.block_number)["timestamp"] == now
    h = report_struct_hash(r)
    ck = expected_ckpt(r, now)
    assert [e.args for e in res.named("CheckpointSettled")] == [
        {
            "leaseId": lease.lease_id,
            "seq": 1,
            "reportHash": h,
            "ckpt": ck,
            "charged": PRICE * r.cumAllocatedMs // 1000,
            "cumBusyMs": r.cumBusyMs,
            "cumAllocatedMs": r.cumAllocatedMs,
            "cumEnergyMj": r.cumEnergyMj,
            "cumSmActiveMs": r.cumSmActiveMs,
            "settledAt": now,
            "recordIndex": 0,
        }
    ]
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.last_seq, cp.last_report_hash, cp.cum_busy_ms, cp.cum_allocated_ms, cp.cum_energy_mj) == (
        1, h, r.cumBusyMs, r.cumAllocatedMs, r.cumEnergyMj,
    )
    assert cp.cum_sm_active_ms == r.cumSmActiveMs == 72_000 and cp.last_settled_at == now
    assert (cp.charged, cp.pending, cp.paid) == (PRICE * 120, PRICE * 120, 0)
    assert cp.remaining == lease.escrowed - PRICE * 120
    # the lease's one slot is the commitment to (terms, the new ckpt, the report's hash)
    st = world.cl.lease_state(lease.lease_id)
    assert (st.ckpt, st.last_hash) == (ck, h)
    assert world.cl.state_hash(lease.lease_id) == commitment(st.terms, ck, h)


def test_settle_charges_busy_time_for_metered_offer(world: World) -> None:
    lease, m = _active(world, world.offer_metered)
    before = world.cl.lease_state(lease.lease_id).checkpoint
    r, sig = m.next(60_000, busy_bps=2_500)
    res = world.cl.settle(world.relayer, r, sig)
    ev = res.event("CheckpointSettled").args
    after = Checkpoint.of(ev["ckpt"])
    assert checkpoint_billable(1, after) - checkpoint_billable(1, before) == r.cumBusyMs == 30_000  # metered bills busy time
    assert after.cum_allocated_ms == 120_000  # allocated time is recorded, not billed
    assert ev["charged"] == PRICE * 30
    assert world.cl.checkpoint(lease.lease_id).charged == PRICE * 30


def test_settle_charges_sm_active_time_for_sm_active_offer(world: World) -> None:
    """Billing mode 2: the lease pays for the SM-active GPU time GPM measured (cumSmActiveMs), neither the
    allocated nor the busy time; each checkpoint charges the growth of that cumulative figure."""
    lease, m = _active(world, world.offer_sm)
    assert lease.billing_mode == BillingMode.SM_ACTIVE and terms_mode(world.cl.lease_state(lease.lease_id).terms) == 2
    r1, s1 = m.next(60_000, busy_bps=9_000, sm_bps=4_500)
    ev = world.cl.settle(world.relayer, r1, s1).event("CheckpointSettled").args
    assert (r1.cumAllocatedMs, r1.cumBusyMs, r1.cumSmActiveMs) == (120_000, 108_000, 54_000)
    assert ev["cumSmActiveMs"] == 54_000 and ev["charged"] == PRICE * 54
    assert checkpoint_billable(2, Checkpoint.of(ev["ckpt"])) == 54_000
    r2, s2 = m.next(30_000, sm_bps=1_001)
    ev = world.cl.settle(world.relayer, r2, s2).event("CheckpointSettled").args
    assert r2.cumSmActiveMs == 60_006 and ev["charged"] == PRICE * 60_006 // 1000 - PRICE * 54
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.cum_sm_active_ms, cp.charged) == (60_006, PRICE * 60_006 // 1000)
    assert cp.remaining == lease.escrowed - cp.charged


def test_sm_active_bills_independently_of_busy_and_allocated_time(world: World) -> None:
    """SM-active time is bounded by capacity alone: a report may show more SM-active than busy or allocated
    time (GPM measures the SMs, the utilization samples the kernels), and a mode-2 lease bills it."""
    lease, m = _active(world, world.offer_sm)
    r, sig = m.next(60_000, busy_bps=1_000, alloc_bps=2_000, sm_bps=10_000)
    assert r.cumSmActiveMs == 120_000 > r.cumAllocatedMs == 24_000 > r.cumBusyMs == 12_000
    ev = world.cl.settle(world.relayer, r, sig).event("CheckpointSettled").args
    assert ev["charged"] == PRICE * 120


def test_settle_latest_report_pays_every_skipped_window(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    for _ in range(3):
        m.next()
    r5, s5 = m.next()  # seq 5: its prevReportHash is seq 4's, which was never settled (not checked)
    st = world.cl.lease_state(lease.lease_id)
    entry = encode_entry(r5, s5, st)
    # the entry carries the last settled hash (seq 1's) after its own prevReportHash (seq 4's)
    assert len(entry) == ENTRY_SIZE_WITH_LAST and entry[38] == 1
    assert entry[39:71] == r5.prevReportHash and entry[231:263] == report_struct_hash(r1)
    res = world.cl.settle(world.relayer, r5, s5, state=st)
    ev = res.event("CheckpointSettled").args
    assert ev["seq"] == 5 and ev["charged"] == PRICE * 480
    assert checkpoint_billable(0, Checkpoint.of(ev["ckpt"])) - checkpoint_billable(0, st.checkpoint) == 4 * 120_000
    cp = world.cl.checkpoint(lease.lease_id)
    assert cp.charged == PRICE * 600 and cp.last_seq == 5 and cp.last_report_hash == report_struct_hash(r5)


def test_checkpoint_records_are_what_the_reports_imply(world: World) -> None:
    """settleBatch: ONE CheckpointsSettled per transaction whose 84-byte records (decoded here from the raw
    log) are leaseId | reportHash | the new ckpt | charged, exactly as the reports and the block imply;
    settle: one CheckpointSettled with the same content."""
    lease_a, ma = _active(world)
    lease_b, mb = _active(world, world.offer_metered)
    ra, sa = ma.next(60_000, alloc_bps=7_500)
    rb, sb = mb.next(45_000, busy_bps=3_000)
    res = world.cl.settle_batch(world.relayer, [ra, rb], [sa, sb])
    t = world.w3.eth.get_block(res.block_number)["timestamp"]
    raw = _raw_logs(world, res.tx_hash, TOPIC_BATCH)
    assert len(raw) == 1 and not _raw_logs(world, res.tx_hash, TOPIC_ONE)
    (records,) = abi_decode(["bytes"], raw[0])
    want_a = _record(lease_a.lease_id, report_struct_hash(ra), expected_ckpt(ra, t), PRICE * ra.cumAllocatedMs // 1000)
    want_b = _record(lease_b.lease_id, report_struct_hash(rb), expected_ckpt(rb, t), PRICE * rb.cumBusyMs // 1000)
    assert records == want_a + want_b
    assert [(x.lease_id, x.ckpt) for x in decode_records(records)] == [
        (lease_a.lease_id, expected_ckpt(ra, t)),
        (lease_b.lease_id, expected_ckpt(rb, t)),
    ]
    # the client expands the one log into one event per record, sharing its log index
    evs = res.named("CheckpointSettled")
    assert [e.args["recordIndex"] for e in evs] == [0, 1] and evs[0].log_index == evs[1].log_index
    assert [e.args["charged"] for e in evs] == [PRICE * 90, PRICE * 27]  # 90 000 / 27 000 GPU-ms
    # next window of lease a by settle(): one CheckpointSettled(leaseId indexed, reportHash, ckpt, charged)
    ra2, sa2 = ma.next(30_000)
    res = world.cl.settle(world.relayer, ra2, sa2)
    t2 = world.w3.eth.get_block(res.block_number)["timestamp"]
    receipt = world.w3.eth.get_transaction_receipt(res.tx_hash)
    (log,) = [x for x in receipt["logs"] if bytes(x["topics"][0]) == TOPIC_ONE]
    assert int.from_bytes(bytes(log["topics"][1]), "big") == lease_a.lease_id
    charged = PRICE * ra2.cumAllocatedMs // 1000 - PRICE * ra.cumAllocatedMs // 1000
    assert abi_decode(["bytes32", "uint256", "uint256"], bytes(log["data"])) == (
        report_struct_hash(ra2), expected_ckpt(ra2, t2), charged,
    )
    assert not _raw_logs(world, res.tx_hash, TOPIC_BATCH)
    assert world.cl.checkpoint(lease_a.lease_id).charged == PRICE * ra2.cumAllocatedMs // 1000


def test_state_hash_is_the_commitment_of_terms_checkpoint_and_last_hash(world: World) -> None:
    now = world.chain.now()
    lid = world.cl.open_lease(world.buyer, world.offer_reserved, world.provider, 3600, now + 600).id
    terms_of = lambda: int(world.cl.escrow.functions.leaseTerms([lid]).call()[0][0])  # noqa: E731
    t = terms_of()
    # terms: nodeId | startS | durationS | gpuCount | mode | status | price (ILeaseEscrow's header)
    assert (terms_node(t), terms_start_s(t), terms_duration_s(t), terms_gpus(t), terms_mode(t)) == (
        world.node, 0, 3600, 2, 0,
    )
    assert (terms_status(t), terms_price(t)) == (LeaseStatus.OPEN, PRICE)
    assert world.cl.state_hash(lid) == commitment(t, 0, ZERO_HASH)  # Open: ckpt 0, no report
    world.cl.activate_lease(world.provider, lid)
    start_s = world.chain.now()
    t = terms_of()
    assert (terms_start_s(t), terms_status(t)) == (start_s, LeaseStatus.ACTIVE)
    # Active: every counter 0, the settlement clock starts at activation (no window end is kept)
    assert initial_ckpt(t) == start_s << 224
    assert world.cl.state_hash(lid) == commitment(t, initial_ckpt(t), ZERO_HASH)
    lease = world.cl.lease(lid)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 120_000)
    r, sig = m.next()
    world.cl.settle(world.relayer, r, sig)
    ck = expected_ckpt(r, world.chain.now())
    assert world.cl.state_hash(lid) == commitment(t, ck, report_struct_hash(r))
    world.cl.top_up(world.buyer, lid, PRICE * 2 * 60)  # the terms change, the checkpoint does not
    t2 = terms_of()
    assert terms_duration_s(t2) == 3660 and t2 == t + (60 << 64)
    assert world.cl.state_hash(lid) == commitment(t2, ck, report_struct_hash(r))
    world.cl.close_lease(world.buyer, lid)
    t3 = terms_of()
    assert terms_status(t3) == LeaseStatus.CLOSED and t3 == t2 + ((LeaseStatus.CLOSED - LeaseStatus.ACTIVE) << 116)
    assert world.cl.state_hash(lid) == commitment(t3, ck, report_struct_hash(r))
    assert world.cl.lease_state(lid) == LeaseState(lid, t3, ck, report_struct_hash(r))
    # the metered offer's mode is 1; an unknown lease has neither terms nor commitment
    lid2 = world.cl.open_lease(world.buyer, world.offer_metered, world.provider, 60, world.chain.now() + 600).id
    terms, hashes = world.cl.escrow.functions.leaseTerms([lid2, 999, lid]).call()
    assert terms_mode(terms[0]) == 1 and (terms[1], bytes(hashes[1])) == (0, ZERO_HASH) and terms[2] == t3
    assert world.cl.state_hash(999) == ZERO_HASH
    with pytest.raises(ClientError):
        world.cl.lease_state(999)


# --- the adversarial cases ------------------------------------------------------------------------


def test_settle_rejects_replayed_report(world: World) -> None:
    lease, m = _active(world)
    r, sig = m.next()
    world.cl.settle(world.relayer, r, sig)
    committed = world.cl.state_hash(lease.lease_id)
    e = expect_revert("LeaseEscrowStaleReport", world.cl.settle, world.relayer, r, sig)
    assert e.error_args == (lease.lease_id, 1, 1)
    assert world.cl.checkpoint(lease.lease_id).charged == PRICE * 120
    assert world.cl.state_hash(lease.lease_id) == committed


def test_settle_rejects_older_report_after_newer(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    r2, s2 = m.next()
    world.cl.settle(world.relayer, r2, s2)
    e = expect_revert("LeaseEscrowStaleReport", world.cl.settle, world.relayer, r1, s1)
    assert e.error_args == (lease.lease_id, 1, 2)
    assert world.cl.checkpoint(lease.lease_id).last_seq == 2


def test_settle_rejects_report_signed_by_another_nodes_attestor(world: World) -> None:
    lease, m = _active(world)
    r = m.build()
    sig = m.sign(r, key=world.key(world.attestor2))
    e = expect_revert("LeaseEscrowWrongSigner", world.cl.settle, world.relayer, r, sig)
    assert e.error_args == (lease.lease_id, world.attestor2, world.attestor)


def test_settle_rejects_wrong_chain_id(world: World) -> None:
    lease, m = _active(world)
    r = m.build()
    sig = m.sign(r, chain_id=world.chain.chain_id + 1)
    e = expect_revert("LeaseEscrowWrongSigner", world.cl.settle, world.relayer, r, sig)
    assert e.error_args[0] == lease.lease_id and e.error_args[2] == world.attestor and e.error_args[1] != world.attestor


def test_settle_rejects_wrong_verifying_contract(world: World) -> None:
    lease, m = _active(world)
    r = m.build()
    sig = m.sign(r, contract=world.dep.registry)
    e = expect_revert("LeaseEscrowWrongSigner", world.cl.settle, world.relayer, r, sig)
    assert e.error_args[1] != world.attestor and e.error_args[2] == world.attestor


def test_settle_rejects_broken_hash_chain(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    st = world.cl.lease_state(lease.lease_id)
    forged = keccak(b"forged")
    r2 = m.build(prevReportHash=forged)
    s2 = m.sign(r2)
    # lastReportHash passed explicitly (flag bit 0): the contract compares prev with it
    entry = encode_entry(r2, s2, st)
    assert len(entry) == ENTRY_SIZE_WITH_LAST and entry[38] == 1 and entry[231:] == report_struct_hash(r1)
    e = expect_revert("LeaseEscrowBrokenChain", send_entries, world, entry, strict=True)
    assert e.error_args == (lease.lease_id, 2, forged, report_struct_hash(r1))
    e = expect_revert("LeaseEscrowBrokenChain", world.cl.settle, world.relayer, r2, s2)
    assert e.error_args == (lease.lease_id, 2, forged, report_struct_hash(r1))
    # lastReportHash omitted: the contract takes prev as the last hash, which the commitment refuses
    implicit = encode_entry(r2, s2, LeaseState(st.lease_id, st.terms, st.ckpt, forged))
    assert len(implicit) == ENTRY_SIZE and implicit[38] == 0
    e = expect_revert("LeaseEscrowStaleState", send_entries, world, implicit, strict=True)
    assert e.error_args == (lease.lease_id, world.cl.state_hash(lease.lease_id))
    # in a batch both are skipped with their error's selector
    res = send_entries(world, entry + implicit)
    assert [e.args["reason"] for e in res.named("CheckpointSkipped")] == [
        error_selector("LeaseEscrowBrokenChain"),
        error_selector("LeaseEscrowStaleState"),
    ]
    assert not res.named("CheckpointSettled")
    assert world.cl.lease_state(lease.lease_id) == st
    # the first report must link to zero
    lease2, m2 = _active(world, world.offer_metered)
    r = m2.build(prevReportHash=b"\x01" * 32)
    e = expect_revert("LeaseEscrowBrokenChain", world.cl.settle, world.relayer, r, m2.sign(r))
    assert e.error_args == (lease2.lease_id, 1, b"\x01" * 32, ZERO_HASH)


def test_settle_rejects_decreasing_counters(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    for field_, idx in (("cumBusyMs", 0), ("cumAllocatedMs", 1), ("cumEnergyMj", 2), ("cumSmActiveMs", 3)):
        r = m.build(**{field_: getattr(r1, field_) - 1})
        e = expect_revert("LeaseEscrowCounterDecreased", world.cl.settle, world.relayer, r, m.sign(r))
        assert e.error_args == (lease.lease_id, idx, getattr(r1, field_) - 1, getattr(r1, field_))
    # the same counters unchanged are fine (nothing was used in the window)
    same = m.build(**{f: getattr(r1, f) for f in ("cumBusyMs", "cumAllocatedMs", "cumEnergyMj", "cumSmActiveMs")})
    assert world.cl.settle(world.relayer, same, m.sign(same)).event("CheckpointSettled").args["charged"] == 0


def test_windows_are_not_compared_on_chain(world: World) -> None:
    """v2: the chain keeps no window end. A report whose window overlaps or precedes the last settled one
    settles as long as its cumulative counters grow and fit that window's bounds; what it charges is the growth
    of the billed counter, so overlapping windows cannot bill any GPU time twice."""
    lease, m = _active(world)
    r1, s1 = m.next(120_000, alloc_bps=5_000, sm_bps=2_500)  # 120 000 GPU-ms allocated of 240 000
    world.cl.settle(world.relayer, r1, s1)
    assert not hasattr(world.cl.checkpoint(lease.lease_id), "last_window_end_ms")
    kept = {f: getattr(r1, f) for f in ("cumBusyMs", "cumEnergyMj", "cumSmActiveMs")}
    # window (start, start + 70 s]: before and overlapping the first; +10 000 GPU-ms allocated
    r2 = m.build(windowStartMs=lease.start_ms, windowEndMs=lease.start_ms + 70_000, cumAllocatedMs=130_000, **kept)
    ev = world.cl.settle(world.relayer, r2, m.sign(r2)).event("CheckpointSettled").args
    assert ev["charged"] == PRICE * 10 and ev["cumAllocatedMs"] == 130_000
    m.accept(r2)
    # but its counters must fit its own window: 2 GPUs × 60 s is less than what was already allocated
    r3 = m.build(windowEndMs=lease.start_ms + 60_000, cumAllocatedMs=130_000, **kept)
    e = expect_revert("LeaseEscrowTimeAboveCapacity", world.cl.settle, world.relayer, r3, m.sign(r3))
    assert e.error_args == (lease.lease_id, 1, 130_000, 120_000)
    # an empty window (start = end) signs and settles like any other: only its end is bounded
    r4 = m.build(windowStartMs=r2.windowEndMs, windowEndMs=r2.windowEndMs, cumAllocatedMs=130_000, **kept)
    assert world.cl.settle(world.relayer, r4, m.sign(r4)).event("CheckpointSettled").args["charged"] == 0
    assert world.cl.checkpoint(lease.lease_id).charged == PRICE * 130


def test_settle_rejects_window_not_ending_after_lease_start(world: World) -> None:
    lease, m = _active(world)
    for end in (lease.start_ms, lease.start_ms - 1):
        r = m.build(windowStartMs=end - 60_000, windowEndMs=end, cumBusyMs=0, cumAllocatedMs=0, cumSmActiveMs=0,
                    cumEnergyMj=0)
        e = expect_revert("LeaseEscrowWindowOutsideLease", world.cl.settle, world.relayer, r, m.sign(r))
        assert e.error_args == (lease.lease_id, end, lease.start_ms, lease.end_ms)
    # a window that starts before the lease but ends inside it is the attestor's business (the start is signed,
    # not checked)
    r = m.build(windowStartMs=lease.start_ms - 60_000, windowEndMs=lease.start_ms + 60_000)
    assert world.cl.settle(world.relayer, r, m.sign(r)).event("CheckpointSettled").args["seq"] == 1


def test_settle_rejects_future_window(world: World) -> None:
    lease, m = _active(world)
    r = m.build(window_ms=3_000_000)
    now_ms = world.chain.now() * 1000
    e = expect_revert("LeaseEscrowWindowInFuture", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args[0:2] == (lease.lease_id, r.windowEndMs) and e.error_args[2] > now_ms


def test_settle_rejects_window_after_lease_end(world: World) -> None:
    lease, m = _active(world, duration_s=120)
    world.advance_to_ms(lease.end_ms + 60_000)
    r = m.build(window_ms=180_000, alloc_bps=5_000, sm_bps=5_000)
    e = expect_revert("LeaseEscrowWindowOutsideLease", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, r.windowEndMs, lease.start_ms, lease.end_ms)
    ok = m.build(window_ms=120_000)  # ending exactly at the lease end is inside
    assert world.cl.settle(world.relayer, ok, m.sign(ok)).event("CheckpointSettled").args["seq"] == 1


def test_settle_rejects_time_above_gpu_capacity(world: World) -> None:
    lease, m = _active(world, world.offer_sm)
    cap = 2 * 60_000
    r = m.build(cumAllocatedMs=cap + 1)
    e = expect_revert("LeaseEscrowTimeAboveCapacity", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, 1, cap + 1, cap)
    r = m.build(cumSmActiveMs=cap + 1)
    e = expect_revert("LeaseEscrowTimeAboveCapacity", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, 3, cap + 1, cap)
    # busy time is bounded by allocated time (hence by capacity too)
    r = m.build(cumBusyMs=cap + 1, cumAllocatedMs=cap)
    e = expect_revert("LeaseEscrowBusyAboveAllocated", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, cap + 1, cap)
    r = m.build(cumBusyMs=1_001, cumAllocatedMs=1_000)
    e = expect_revert("LeaseEscrowBusyAboveAllocated", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, 1_001, 1_000)
    ok = m.build(cumBusyMs=cap, cumAllocatedMs=cap, cumSmActiveMs=cap)  # exactly gpuCount × elapsed is accepted
    ev = world.cl.settle(world.relayer, ok, m.sign(ok)).event("CheckpointSettled").args
    assert (ev["cumAllocatedMs"], ev["cumSmActiveMs"], ev["charged"]) == (cap, cap, PRICE * 120)


def test_settle_rejects_energy_above_power_cap(world: World) -> None:
    lease, m = _active(world)
    cap = MAX_POWER_MW * 2 * 60_000 * 10_500 // 10_000_000
    ok = m.build(cumEnergyMj=cap)
    bad = m.build(cumEnergyMj=cap + 1)
    e = expect_revert("LeaseEscrowEnergyAboveCap", world.cl.settle, world.relayer, bad, m.sign(bad))
    assert e.error_args == (lease.lease_id, cap + 1, cap)
    res = world.cl.settle(world.relayer, ok, m.sign(ok))  # exactly at the cap (+ margin) is accepted
    assert res.event("CheckpointSettled").args["cumEnergyMj"] == cap


def test_wrong_gpu_set_is_not_checked_on_chain_but_bound_by_the_signature(world: World) -> None:
    """The rule now: the GPU set is inside the signed WindowDetail, not compared on-chain (auditors compare
    it with lease(id).gpuSetHash). A report about other GPUs settles; what the chain keeps (the report
    hash) commits to the GPU set it claimed, and a relayer cannot swap the set under the signature."""
    lease, m = _active(world)
    other = gpu_set_hash(world.uuids[:1])
    assert other != lease.gpu_set_hash
    honest = m.build()
    r = m.build(gpuSetHash=other)
    sig = m.sign(r)
    st = world.cl.lease_state(lease.lease_id)
    # the entry carries the window's hash, which differs with the GPU set; swapping it breaks the signature
    swapped = encode_entry(honest, sig, st)
    assert swapped[71:103] == window_struct_hash(honest) != window_struct_hash(r)
    e = expect_revert("LeaseEscrowWrongSigner", send_entries, world, swapped, strict=True)
    assert e.error_args[0] == lease.lease_id and e.error_args[2] == world.attestor
    res = world.cl.settle(world.relayer, r, sig)
    ev = res.event("CheckpointSettled").args
    assert ev["reportHash"] == report_struct_hash(r) != report_struct_hash(honest)
    assert world.cl.checkpoint(lease.lease_id).last_report_hash == report_struct_hash(r)
    # what an auditor compares: the lease's GPU set (unchanged) against the report's
    assert world.cl.lease(lease.lease_id).gpu_set_hash == lease.gpu_set_hash != r.gpuSetHash


def test_settle_batch_rejected_report_writes_nothing_before_a_good_one(world: World) -> None:
    lease, m = _active(world)
    bad = m.build(cumAllocatedMs=10**7)  # above capacity
    good, sig = m.next()
    st = world.cl.lease_state(lease.lease_id)
    res = world.cl.settle_batch(world.relayer, [bad, good], [m.sign(bad), sig], states={lease.lease_id: st})
    assert [(e.args["leaseId"], e.args["seq"], e.args["reason"]) for e in res.named("CheckpointSkipped")] == [
        (lease.lease_id, 1, error_selector("LeaseEscrowTimeAboveCapacity")),
    ]
    assert [e.args["reportHash"] for e in res.named("CheckpointSettled")] == [report_struct_hash(good)]
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.last_seq, cp.last_report_hash, cp.cum_allocated_ms) == (1, report_struct_hash(good), good.cumAllocatedMs)


def test_entry_field_bounds_are_refused_before_sending(world: World) -> None:
    """leaseId and seq must fit 32 bits, times and cumulative counters 48 (the on-chain overflow errors are
    gone: an entry cannot carry a wider value)."""
    lease, m = _active(world)
    st = world.cl.lease_state(lease.lease_id)
    block = world.w3.eth.block_number
    for field_, value in (
        ("seq", 2**32),
        ("cumEnergyMj", 2**48),
        ("cumBusyMs", 2**48),
        ("cumAllocatedMs", 2**48),
        ("cumSmActiveMs", 2**48),
        ("windowEndMs", 2**48),
    ):
        r = m.build(**{field_: value})
        with pytest.raises(ProtocolError, match=field_):
            encode_entry(r, m.sign(r), st)
        with pytest.raises(ProtocolError, match=field_):
            world.cl.settle(world.relayer, r, m.sign(r))
    big = m.build(leaseId=2**32)
    with pytest.raises(ProtocolError, match="leaseId"):
        encode_entry(big, m.sign(big), LeaseState(2**32, st.terms, st.ckpt))
    assert world.w3.eth.block_number == block  # nothing was sent
    r = m.build(seq=2**32 - 1)  # the widest seq fits and settles
    assert world.cl.settle(world.relayer, r, m.sign(r)).event("CheckpointSettled").args["seq"] == 2**32 - 1


def test_settle_rejects_high_s_signature(world: World) -> None:
    lease, m = _active(world)
    r = m.build()
    sig = m.sign(r)
    s = int.from_bytes(sig[32:64], "big")
    assert s <= SECP256K1_HALF_N
    st = world.cl.lease_state(lease.lease_id)
    # the malleated twin (n - s, v flipped) is >= 2^255: EIP-2098 cannot even carry it
    flipped_v = 55 - sig[64]  # 27 <-> 28
    high = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped_v])
    assert recover_signer_raw(report_digest(r, world.chain.chain_id, world.dep.escrow), high) == world.attestor
    with pytest.raises(ProtocolError, match="high bit"):
        compact_signature(high)
    with pytest.raises(ProtocolError, match="high bit"):
        world.cl.settle(world.relayer, r, high)
    entry = encode_entry(r, sig, st)
    # an s above n/2 that fits the compact form is refused on-chain
    vs = int.from_bytes(entry[135:167], "big")
    bad_s = SECP256K1_HALF_N + 1 + (s % 2**64)
    malleable = entry[:135] + ((vs >> 255 << 255) | bad_s).to_bytes(32, "big") + entry[167:]
    e = expect_revert("LeaseEscrowMalleableSignature", send_entries, world, malleable, strict=True)
    assert e.error_args == (lease.lease_id, bad_s.to_bytes(32, "big"))
    # the malleated s with its top bit dropped is another s: it does not recover the attestor
    dropped = entry[:135] + ((flipped_v - 27) << 255 | (SECP256K1_N - s) % 2**255).to_bytes(32, "big") + entry[167:]
    with pytest.raises(ContractRevert) as info:
        send_entries(world, dropped, strict=True)
    assert info.value.name in ("LeaseEscrowWrongSigner", "LeaseEscrowInvalidSignature", "LeaseEscrowMalleableSignature")
    if info.value.name == "LeaseEscrowWrongSigner":
        assert info.value.error_args[1] != world.attestor
    # r = 0 recovers nobody
    zero_r = entry[:103] + bytes(32) + entry[135:]
    e = expect_revert("LeaseEscrowInvalidSignature", send_entries, world, zero_r, strict=True)
    assert e.error_args == (lease.lease_id,)
    res = send_entries(world, malleable + zero_r)
    assert [x.args["reason"] for x in res.named("CheckpointSkipped")] == [
        error_selector("LeaseEscrowMalleableSignature"),
        error_selector("LeaseEscrowInvalidSignature"),
    ]
    assert world.cl.state_hash(lease.lease_id) == st.commitment()
    world.cl.settle(world.relayer, r, sig)  # the low-s original settles


def test_malformed_entries_revert_with_the_offset(world: World) -> None:
    lease, m = _active(world)
    r, sig = m.next()
    st = world.cl.lease_state(lease.lease_id)
    entry = encode_entry(r, sig, st)
    assert len(entry) == ENTRY_SIZE and entry[38] == 0
    # the same entry with its (equal) last hash given explicitly: 263 bytes, flag bit 0
    explicit = entry[:38] + b"\x01" + entry[39:] + st.last_hash
    assert len(explicit) == ENTRY_SIZE_WITH_LAST
    committed = world.cl.state_hash(lease.lease_id)
    cases = [
        (entry[:-1], 0),  # truncated
        (entry[:38] + b"\x01" + entry[39:], 0),  # flag says a last hash follows: it does not
        (entry[:38] + b"\x02" + entry[39:], 0),  # unknown flag bit
        (entry[:38] + b"\x80" + entry[39:] + bytes(32), 0),  # unknown flag bit, whatever the length
        (entry[:38] + b"\x03" + entry[39:] + st.last_hash, 0),  # known bit plus an unknown one
        (entry + entry[:100], ENTRY_SIZE),  # a whole entry, then a truncated one
        (explicit + entry[:-1], ENTRY_SIZE_WITH_LAST),  # the offset counts the first entry's last hash
        (entry + entry[:38] + b"\x04" + entry[39:], ENTRY_SIZE),  # bad flags in the second entry
    ]
    for data, offset in cases:
        e = expect_revert("LeaseEscrowMalformedEntries", send_entries, world, data, strict=False)
        assert e.error_args == (offset,), data.hex()
        # settle takes one whole entry: anything else is malformed at 0
        e = expect_revert("LeaseEscrowMalformedEntries", send_entries, world, data, strict=True)
        assert e.error_args == (0,)
    # two well-formed entries, or none, are not one entry
    for data in (entry + entry, b""):
        e = expect_revert("LeaseEscrowMalformedEntries", send_entries, world, data, strict=True)
        assert e.error_args == (0,)
    res = send_entries(world, b"")  # an empty batch settles nothing
    assert not res.events
    e = expect_revert("LeaseEscrowMalformedEntries", world.cl.tx.call, world.cl.escrow.functions.entryDigest(entry[:-1]))
    assert e.error_args == (0,)
    assert world.cl.state_hash(lease.lease_id) == committed  # nothing settled
    # the well-formed explicit form settles
    res = send_entries(world, explicit, strict=True)
    assert res.event("CheckpointSettled").args["reportHash"] == report_struct_hash(r)


def test_settle_rejects_open_closed_and_unknown_lease(world: World) -> None:
    lid_open = world.cl.open_lease(world.buyer, world.offer_metered, world.provider, 600, world.chain.now() + 600).id
    lease, m = _active(world)
    r1, s1 = m.next()
    opened = world.cl.lease(lid_open)
    r_open = r1.replace(leaseId=lid_open, gpuSetHash=opened.gpu_set_hash)
    e = expect_revert("LeaseEscrowBadStatus", world.cl.settle, world.relayer, r_open, m.sign(r_open))
    assert e.error_args == (lid_open, LeaseStatus.OPEN)
    # settle after close: with the closed lease's state it is refused for the status, with the state from
    # before the close for the commitment
    active = world.cl.lease_state(lease.lease_id)
    world.cl.close_lease(world.buyer, lease.lease_id)
    e = expect_revert("LeaseEscrowBadStatus", world.cl.settle, world.relayer, r1, s1)
    assert e.error_args == (lease.lease_id, LeaseStatus.CLOSED)
    e = expect_revert("LeaseEscrowStaleState", world.cl.settle, world.relayer, r1, s1, state=active)
    assert e.error_args == (lease.lease_id, world.cl.state_hash(lease.lease_id))
    assert world.cl.checkpoint(lease.lease_id).charged == 0
    ghost = r1.replace(leaseId=999)
    with pytest.raises(ClientError):
        world.cl.settle(world.relayer, ghost, m.sign(ghost))
    entry = encode_entry(ghost, m.sign(ghost), LeaseState(999, world.cl.lease_state(lease.lease_id).terms, 0))
    e = expect_revert("LeaseEscrowUnknownLease", send_entries, world, entry, strict=True)
    assert e.error_args == (999,)


def test_settle_after_attestor_rotation_needs_new_key(world: World) -> None:
    lease, m = _active(world)
    world.cl.rotate_attestor(world.provider, world.node, world.relayer)
    r, sig = m.next()
    e = expect_revert("LeaseEscrowWrongSigner", world.cl.settle, world.relayer, r, sig)
    assert e.error_args == (lease.lease_id, world.attestor, world.relayer)
    res = world.cl.settle(world.relayer, r, m.sign(r, key=world.key(world.relayer)))
    assert res.event("CheckpointSettled").args["seq"] == 1


# --- the state commitment -------------------------------------------------------------------------


def test_settle_with_an_outdated_or_forged_state_is_rejected(world: World) -> None:
    lease, m = _active(world)
    lid = lease.lease_id
    st0 = world.cl.lease_state(lid)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1, state=st0)
    st1 = world.cl.lease_state(lid)
    assert st1 == state_after(st0, r1, world.chain.now())
    r2, s2 = m.next()
    committed = world.cl.state_hash(lid)
    forgeries = {
        "old": st0,  # a relayer that missed the last settlement
        "higher price": LeaseState(lid, st1.terms + (1 << 120), st1.ckpt, st1.last_hash),
        "more GPUs": LeaseState(lid, st1.terms + (1 << 96), st1.ckpt, st1.last_hash),
        "longer lease": LeaseState(lid, st1.terms + (3600 << 64), st1.ckpt, st1.last_hash),
        "lower counters": LeaseState(lid, st1.terms, expected_ckpt(r1.replace(cumAllocatedMs=0), st1.checkpoint.settled_at), st1.last_hash),
        "older settlement time": LeaseState(lid, st1.terms, st1.ckpt - (3600 << 224), st1.last_hash),
        "other last hash": LeaseState(lid, st1.terms, st1.ckpt, keccak(b"x")),
    }
    for name, forged in forgeries.items():
        e = expect_revert("LeaseEscrowStaleState", world.cl.settle, world.relayer, r2, s2, state=forged)
        assert e.error_args == (lid, committed), name
    res = world.cl.settle_batch(world.relayer, [r2], [s2], states={lid: st0})
    assert [x.args["reason"] for x in res.named("CheckpointSkipped")] == [error_selector("LeaseEscrowStaleState")]
    assert world.cl.state_hash(lid) == committed
    res = world.cl.settle(world.relayer, r2, s2, state=st1)
    assert res.event("CheckpointSettled").args["charged"] == PRICE * 120


def test_every_call_that_takes_the_checkpoint_rejects_a_stale_one(world: World) -> None:
    lease, m = _active(world)
    lid = lease.lease_id
    st0 = world.cl.lease_state(lid)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    st1 = world.cl.lease_state(lid)
    committed = world.cl.state_hash(lid)
    fns = world.cl.escrow.functions
    unit = PRICE * 2
    fee = (lease.escrowed + unit) * lease.fee_bps // 10_000 - lease.fee_held
    wrong = [
        (st0.ckpt, st0.last_hash),  # before the settlement
        (st1.ckpt, st0.last_hash),
        (st0.ckpt, st1.last_hash),
        (st1.ckpt ^ 1 << 224, st1.last_hash),
        (st1.ckpt + 1, st1.last_hash),
    ]
    for ck, h in wrong:
        for fn, sender, value in (
            (fns.closeLease(lid, ck, h), world.buyer, 0),
            (fns.dispute(lid, ck, h), world.buyer, 0),
            (fns.releaseEarnings(lid, ck, h), world.relayer, 0),
            (fns.topUp(lid, unit, ck, h), world.buyer, unit + fee),
        ):
            e = expect_revert("LeaseEscrowStaleState", world.send, fn, sender, value)
            assert e.error_args == (lid, committed)
        e = expect_revert("LeaseEscrowStaleState", world.cl.tx.call, fns.checkpoint(lid, ck, h))
        assert e.error_args == (lid, committed)
    world.cl.dispute(world.buyer, lid)
    for ck, h in wrong:
        e = expect_revert("LeaseEscrowStaleState", world.send, fns.resolveDispute(lid, 5_000, False, ck, h), world.arbiter)
        assert e.error_args == (lid, committed)
    # with the committed state every one of them goes through
    world.send(fns.resolveDispute(lid, 5_000, False, st1.ckpt, st1.last_hash), world.arbiter)
    world.send(fns.topUp(lid, unit, st1.ckpt, st1.last_hash), world.buyer, unit + fee)
    assert world.cl.lease(lid).duration_s == 3601
    world.send(fns.closeLease(lid, st1.ckpt, st1.last_hash), world.buyer)
    assert world.cl.lease(lid).status == LeaseStatus.CLOSED
    # closing changed the terms but not the checkpoint: the calls that read the terms from storage take
    # the same words (and refuse for the status), a settlement entry carrying the Active terms is stale
    e = expect_revert("LeaseEscrowBadStatus", world.send, fns.closeLease(lid, st1.ckpt, st1.last_hash), world.buyer)
    assert e.error_args == (lid, LeaseStatus.CLOSED)
    r2, s2 = m.next()
    e = expect_revert("LeaseEscrowStaleState", world.cl.settle, world.relayer, r2, s2, state=st1)
    assert e.error_args == (lid, world.cl.state_hash(lid))
    # an unknown lease is not stale: it does not exist
    for fn in (fns.closeLease(777, 0, ZERO_HASH), fns.releaseEarnings(777, 0, ZERO_HASH), fns.dispute(777, 0, ZERO_HASH)):
        e = expect_revert("LeaseEscrowUnknownLease", world.send, fn, world.buyer)
        assert e.error_args == (777,)


# --- batches and exhaustion -----------------------------------------------------------------------


def test_settle_batch_skips_bad_entries_and_settles_the_rest(world: World) -> None:
    lease_a, ma = _active(world)
    lease_b, mb = _active(world, world.offer_metered)
    ra, sa = ma.next()
    ra2, sa2 = ma.next()
    rb = mb.build()
    bad_sig = mb.sign(rb, key=world.key(world.attestor2))
    sta, stb = world.cl.lease_state(lease_a.lease_id), world.cl.lease_state(lease_b.lease_id)
    t = pending_timestamp(world)
    after_a = state_after(sta, ra, t)
    data = encode_entries(
        [
            (ra, sa, sta),
            (rb, bad_sig, stb),  # another node's attestor
            (ra, sa, after_a),  # replay, with the state it would have after the first entry
            (ra2, sa2, sta),  # the next report with the state from before the batch: stale
        ]
    )
    assert world.cl.escrow.functions.settleBatch(data).call({"from": world.relayer}) == 1
    res = send_entries(world, data)
    assert world.w3.eth.get_block(res.block_number)["timestamp"] == t
    assert [(e.args["leaseId"], e.args["seq"]) for e in res.named("CheckpointSettled")] == [(lease_a.lease_id, 1)]
    assert [(e.args["leaseId"], e.args["seq"], e.args["reason"]) for e in res.named("CheckpointSkipped")] == [
        (lease_b.lease_id, 1, error_selector("LeaseEscrowWrongSigner")),
        (lease_a.lease_id, 1, error_selector("LeaseEscrowStaleReport")),
        (lease_a.lease_id, 2, error_selector("LeaseEscrowStaleState")),
    ]
    assert world.cl.lease_state(lease_a.lease_id) == after_a
    assert world.cl.lease_state(lease_b.lease_id) == stb and world.cl.checkpoint(lease_b.lease_id).last_seq == 0
    # nothing valid: no CheckpointsSettled at all
    res = send_entries(world, encode_entry(rb, bad_sig, stb))
    assert not res.named("CheckpointSettled") and not _raw_logs(world, res.tx_hash, TOPIC_BATCH)
    assert len(res.named("CheckpointSkipped")) == 1


def test_settle_batch_chains_entries_of_one_lease_when_the_state_is_predicted(world: World) -> None:
    """Two reports of one lease in one batch: the second entry must carry the state after the first,
    whose ckpt holds the block's timestamp. Predicted right, both settle; predicted wrong, the second is
    skipped as stale and the first still settles."""
    lease, m = _active(world)
    lid = lease.lease_id
    r1, s1 = m.next()
    r2, s2 = m.next()
    st0 = world.cl.lease_state(lid)
    t = pending_timestamp(world)
    st1 = state_after(st0, r1, t)
    res = send_entries(world, encode_entries([(r1, s1, st0), (r2, s2, st1)]))
    assert [(e.args["seq"], e.args["ckpt"], e.args["charged"]) for e in res.named("CheckpointSettled")] == [
        (1, expected_ckpt(r1, t), PRICE * 120),
        (2, expected_ckpt(r2, t), PRICE * 120),
    ]
    assert world.cl.state_hash(lid) == state_after(st1, r2, t).commitment()
    r3, s3 = m.next()
    r4, s4 = m.next()
    st2 = world.cl.lease_state(lid)
    t = pending_timestamp(world)
    res = send_entries(world, encode_entries([(r3, s3, st2), (r4, s4, state_after(st2, r3, t + 1))]))
    assert [e.args["seq"] for e in res.named("CheckpointSettled")] == [3]
    assert [(e.args["seq"], e.args["reason"]) for e in res.named("CheckpointSkipped")] == [
        (4, error_selector("LeaseEscrowStaleState"))
    ]
    assert world.cl.lease_state(lid) == state_after(st2, r3, t)


def test_settle_exhausts_lease_and_never_pays_beyond_escrow(world: World) -> None:
    lease, m = _active(world, duration_s=120)
    world.advance_to_ms(lease.end_ms)
    r1, s1 = m.next(60_000)
    r2, s2 = m.next(60_000)
    st0 = world.cl.lease_state(lease.lease_id)
    t = pending_timestamp(world)
    res = send_entries(world, encode_entries([(r1, s1, st0), (r2, s2, state_after(st0, r1, t))]))
    assert res.event("LeaseExhausted").args == {"leaseId": lease.lease_id, "charged": lease.escrowed}
    assert not res.named("LeaseClosed")  # exhaustion is its own terminal state
    charged = [e.args["charged"] for e in res.named("CheckpointSettled")]
    assert charged == [PRICE * 120, PRICE * 120] and sum(charged) == lease.escrowed
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.charged, cp.remaining) == (lease.escrowed, 0)
    assert world.cl.lease(lease.lease_id).status == LeaseStatus.EXHAUSTED
    # the commitment now holds the Exhausted terms with the last checkpoint
    st = world.cl.lease_state(lease.lease_id)
    assert terms_status(st.terms) == LeaseStatus.EXHAUSTED and (st.ckpt, st.last_hash) == (
        expected_ckpt(r2, t), report_struct_hash(r2),
    )
    rights = world.cl.rights_of(world.offer_reserved)
    assert (rights.locked, rights.burned) == (0, 240)
    assert world.cl.withdrawable(world.buyer) == 0  # nothing left to refund (fee share waits for release)
    # a further report can charge nothing: the lease no longer accepts settlements
    r3 = m.build(60_000)
    e = expect_revert("LeaseEscrowBadStatus", world.cl.settle, world.relayer, r3, m.sign(r3))
    assert e.error_args == (lease.lease_id, LeaseStatus.EXHAUSTED)


def test_settle_exhausting_by_settle_alone(world: World) -> None:
    lease, m = _active(world, duration_s=60)
    world.advance_to_ms(lease.end_ms)
    r, s = m.next(60_000)
    res = world.cl.settle(world.relayer, r, s)
    assert res.event("CheckpointSettled").args["charged"] == lease.escrowed
    assert res.event("LeaseExhausted").args["charged"] == lease.escrowed
    assert world.cl.lease(lease.lease_id).status == LeaseStatus.EXHAUSTED
    assert world.cl.counts_of(world.provider).completed == 1


# --- digests and the type hash ----------------------------------------------------------------------


def _random_report(rng: random.Random, entry_bounds: bool) -> MeteringReport:
    small = 2**32 if entry_bounds else 2**64
    wide = 2**48 if entry_bounds else 2**64
    return MeteringReport(
        leaseId=rng.randrange(small),
        seq=rng.randrange(small),
        prevReportHash=rng.randbytes(32),
        windowEndMs=rng.randrange(wide),
        cumBusyMs=rng.randrange(wide),
        cumEnergyMj=rng.randrange(wide),
        cumAllocatedMs=rng.randrange(wide),
        cumSmActiveMs=rng.randrange(wide),
        windowStartMs=rng.randrange(2**64),
        gpuSetHash=rng.randbytes(32),
        busyMs=rng.randrange(2**64),
        smActiveMs=rng.randrange(2**64),
        tensorActiveMs=rng.randrange(2**64),
        energyMj=rng.randrange(2**64),
        allocatedMs=rng.randrange(2**64),
        maxMemUsedMiB=rng.randrange(2**32),
        sampleCount=rng.randrange(2**32),
        samplesRoot=rng.randbytes(32),
        flags=rng.randrange(2**32),
        configHash=rng.randbytes(32),
    )


def test_report_typehash_constants_match_protocol(world: World) -> None:
    fns = world.cl.escrow.functions
    assert bytes(fns.REPORT_TYPEHASH().call()) == REPORT_TYPEHASH
    assert bytes(fns.WINDOW_TYPEHASH().call()) == WINDOW_TYPEHASH
    # The settlement fast path hashes with an assembly literal, not the constant (entryDigest and the
    # checked path use the constant, so they cannot catch a wrong literal): check the literal itself ...
    src = (CONTRACTS_SRC / "LeaseEscrowBase.sol").read_text()
    found = re.findall(r"_REPORT_TYPEHASH_LITERAL\s*=\s*0x([0-9a-fA-F]{64})\s*;", src)
    assert found == [REPORT_TYPEHASH.hex()]
    assert "_REPORT_TYPEHASH_LITERAL" in (CONTRACTS_SRC / "LeaseEscrow.sol").read_text()
    # ... and that a good entry is settled by that path: a wrong literal would fail its signature check
    # and fall back to the checked path, which costs more than a skipped entry (fast path + checked path
    # up to the signer).
    lease, m = _active(world)
    r = m.build()
    st = world.cl.lease_state(lease.lease_id)
    skipped = send_entries(world, encode_entry(r, m.sign(r, key=world.key(world.attestor2)), st))
    assert len(skipped.named("CheckpointSkipped")) == 1
    settled = send_entries(world, encode_entry(r, m.sign(r), st))
    assert len(settled.named("CheckpointSettled")) == 1
    assert settled.gas_used < skipped.gas_used, (settled.gas_used, skipped.gas_used)


def test_report_digest_matches_python_for_random_reports(world: World) -> None:
    rng = random.Random(1234)
    for i in range(16):
        r = _random_report(rng, entry_bounds=i % 2 == 0)
        expected = report_digest(r, world.chain.chain_id, world.dep.escrow)
        assert world.cl.hash_report(r) == report_struct_hash(r)
        assert world.cl.report_digest(r) == expected
    assert world.cl.domain_separator() == domain_separator(world.chain.chain_id, world.dep.escrow)


def test_entry_digest_matches_protocol_digest_for_random_reports(world: World) -> None:
    rng = random.Random(98765)
    for _ in range(16):
        r = _random_report(rng, entry_bounds=True)
        expected = report_digest(r, world.chain.chain_id, world.dep.escrow)
        assert world.cl.entry_digest(r) == expected
        # whatever state and signature the entry carries, with or without the trailing last hash
        st = LeaseState(r.leaseId, rng.randrange(2**256), rng.randrange(2**256), rng.randbytes(32))
        entry = encode_entry(r, sign_digest(expected, rng.randbytes(32)), st)
        assert len(entry) == ENTRY_SIZE_WITH_LAST
        assert bytes(world.cl.escrow.functions.entryDigest(entry).call()) == expected


def test_signature_recovery_matches_contract(world: World) -> None:
    lease, m = _active(world)
    r = m.build()
    digest = world.cl.entry_digest(r)
    assert digest == report_digest(r, world.chain.chain_id, world.dep.escrow) == world.cl.report_digest(r)
    sig = sign_digest(digest, world.key(world.attestor))
    assert world.cl.settle(world.relayer, r, sig).event("CheckpointSettled").args["reportHash"] == report_struct_hash(r)


def test_revert_decoding_handles_error_string_and_unknown() -> None:
    from eth_abi import encode

    e = decode_revert_data(bytes.fromhex("08c379a0") + encode(["string"], ["boom"]))
    assert (e.name, e.error_args) == ("Error", ("boom",))
    assert decode_revert_data(b"\x01\x02\x03\x04").name == "Unknown"
    sel = error_selector("LeaseEscrowStaleReport")
    e = decode_revert_data(sel + encode(["uint256", "uint64", "uint64"], [1, 2, 3]))
    assert (e.name, e.error_args, e.kwargs) == ("LeaseEscrowStaleReport", (1, 2, 3), {"leaseId": 1, "seq": 2, "lastSeq": 3})
    sel = error_selector("LeaseEscrowStaleState")
    e = decode_revert_data(sel + encode(["uint256", "bytes32"], [7, b"\x11" * 32]))
    assert (e.name, e.kwargs) == ("LeaseEscrowStaleState", {"leaseId": 7, "stateHash": b"\x11" * 32})
    e = decode_revert_data(error_selector("LeaseEscrowMalformedEntries") + encode(["uint256"], [231]))
    assert (e.name, e.kwargs) == ("LeaseEscrowMalformedEntries", {"offset": 231})


def test_events_and_lease_state_read_the_log_range_in_bounded_requests(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """eth_getLogs ranges are capped by public providers: the client reads a long range in bounded requests,
    and a client that never saw the settlements rebuilds the lease state from them that way."""
    lease, m = _active(world)
    for _ in range(3):
        r, sig = m.next()
        world.cl.settle(world.relayer, r, sig)
    whole = [(e.name, e.block_number, e.log_index, e.args.get("recordIndex")) for e in world.cl.events()]
    requests: list[tuple[int, int]] = []
    real_get_logs = world.w3.eth.get_logs

    def counting_get_logs(flt):  # type: ignore[no-untyped-def]
        requests.append((int(flt["fromBlock"]), int(flt["toBlock"])))
        assert int(flt["toBlock"]) - int(flt["fromBlock"]) < 3
        return real_get_logs(flt)

    monkeypatch.setattr("ledger.chain.events.LOG_SCAN_BLOCKS", 3)
    monkeypatch.setattr(world.w3.eth, "get_logs", counting_get_logs)
    chunked = [(e.name, e.block_number, e.log_index, e.args.get("recordIndex")) for e in world.cl.events()]
    assert chunked == whole and len(requests) > 1
    fresh = LedgerClient(world.chain, world.cl.deployment)  # knows no settlement: must scan
    requests.clear()
    st = fresh.lease_state(lease.lease_id)
    assert st == world.cl.lease_state(lease.lease_id) and st.checkpoint.seq == 3 and len(requests) > 1
