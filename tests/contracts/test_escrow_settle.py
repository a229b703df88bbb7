"""LeaseEscrow settlement: the happy path, every check of the design, batches, exhaustion, digests."""

from __future__ import annotations

import random

from eth_utils import keccak

from ledger.client import LeaseStatus, pack_report, split_signature
from ledger.errors import decode_revert_data, error_selector
from ledger.protocol import (
    SECP256K1_N,
    ZERO_HASH,
    MeteringReport,
    gpu_set_hash,
    report_digest,
    report_struct_hash,
    sign_digest,
)

from .conftest import MAX_POWER_MW, PRICE, SAMPLES_ROOT, World, expect_revert


def _active(world: World, offer: int | None = None, duration_s: int = 3600):  # type: ignore[no-untyped-def]
    lease = world.open_active(offer, duration_s)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + 600_000)
    return lease, m


def test_settle_charges_allocated_time_for_reserved_offer(world: World) -> None:
    lease, m = _active(world)
    r, sig = m.next(60_000)
    res = world.cl.settle(world.relayer, r, sig)
    h = report_struct_hash(r)
    assert res.event("CheckpointSettled").args == {
        "leaseId": lease.lease_id,
        "seq": 1,
        "reportHash": h,
        "billableDelta": r.cumAllocatedMs,
        "charged": PRICE * r.cumAllocatedMs // 1000,
        "samplesRoot": SAMPLES_ROOT,
    }
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.last_seq, cp.last_report_hash, cp.cum_busy_ms, cp.cum_allocated_ms, cp.cum_energy_mj) == (
        1, h, r.cumBusyMs, r.cumAllocatedMs, r.cumEnergyMj,
    )
    assert cp.last_window_end_ms == r.windowEndMs and cp.last_settled_at == world.chain.now()
    assert (cp.charged, cp.pending, cp.paid) == (PRICE * 120, PRICE * 120, 0)
    assert cp.remaining == lease.escrowed - PRICE * 120


def test_settle_charges_busy_time_for_metered_offer(world: World) -> None:
    lease, m = _active(world, world.offer_metered)
    r, sig = m.next(60_000, busy_bps=2_500)
    res = world.cl.settle(world.relayer, r, sig)
    ev = res.event("CheckpointSettled").args
    assert ev["billableDelta"] == r.cumBusyMs == 30_000
    assert ev["charged"] == PRICE * 30
    assert world.cl.checkpoint(lease.lease_id).charged == PRICE * 30


def test_settle_latest_report_pays_every_skipped_window(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    for _ in range(3):
        m.next()
    r5, s5 = m.next()  # seq 5: prevReportHash is seq 4's, not checked on-chain
    res = world.cl.settle(world.relayer, r5, s5)
    ev = res.event("CheckpointSettled").args
    assert ev["seq"] == 5 and ev["billableDelta"] == 4 * 120_000 and ev["charged"] == PRICE * 480
    cp = world.cl.checkpoint(lease.lease_id)
    assert cp.charged == PRICE * 600 and cp.last_seq == 5


def test_settle_rejects_replayed_report(world: World) -> None:
    lease, m = _active(world)
    r, sig = m.next()
    world.cl.settle(world.relayer, r, sig)
    e = expect_revert("LeaseEscrowStaleReport", world.cl.settle, world.relayer, r, sig)
    assert e.error_args == (lease.lease_id, 1, 1)
    assert world.cl.checkpoint(lease.lease_id).charged == PRICE * 120


def test_settle_rejects_older_report_after_newer(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    r2, s2 = m.next()
    world.cl.settle(world.relayer, r2, s2)
    e = expect_revert("LeaseEscrowStaleReport", world.cl.settle, world.relayer, r1, s1)
    assert e.error_args == (lease.lease_id, 1, 2)


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
    assert e.error_args[1] != world.attestor


def test_settle_rejects_broken_hash_chain(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    r2 = m.build(prevReportHash=keccak(b"forged"))
    e = expect_revert("LeaseEscrowBrokenChain", world.cl.settle, world.relayer, r2, m.sign(r2))
    assert e.error_args == (lease.lease_id, 2, keccak(b"forged"), report_struct_hash(r1))
    # the first report must link to zero
    lease2, m2 = _active(world, world.offer_metered)
    r = m2.build(prevReportHash=b"\x01" * 32)
    e = expect_revert("LeaseEscrowBrokenChain", world.cl.settle, world.relayer, r, m2.sign(r))
    assert e.error_args == (lease2.lease_id, 1, b"\x01" * 32, ZERO_HASH)


def test_settle_rejects_decreasing_counters(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    for field_, idx in (("cumBusyMs", 0), ("cumAllocatedMs", 1), ("cumEnergyMj", 2)):
        r = m.build(**{field_: getattr(r1, field_) - 1})
        e = expect_revert("LeaseEscrowCounterDecreased", world.cl.settle, world.relayer, r, m.sign(r))
        assert e.error_args == (lease.lease_id, idx, getattr(r1, field_) - 1, getattr(r1, field_))


def test_settle_rejects_overlapping_window(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    world.cl.settle(world.relayer, r1, s1)
    r = m.build(windowStartMs=r1.windowEndMs - 1)
    e = expect_revert("LeaseEscrowBadWindow", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, r1.windowEndMs - 1, r.windowEndMs, r1.windowEndMs)
    empty = m.build(windowEndMs=r1.windowEndMs)
    expect_revert("LeaseEscrowBadWindow", world.cl.settle, world.relayer, empty, m.sign(empty))


def test_settle_rejects_window_before_lease_start(world: World) -> None:
    lease, m = _active(world)
    r = m.build(windowStartMs=lease.start_ms - 1)
    e = expect_revert("LeaseEscrowBadWindow", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args[3] == lease.start_ms


def test_settle_rejects_future_window(world: World) -> None:
    lease, m = _active(world)
    r = m.build(window_ms=3_000_000)
    now_ms = world.chain.now() * 1000
    e = expect_revert("LeaseEscrowWindowInFuture", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args[0:2] == (lease.lease_id, r.windowEndMs) and e.error_args[2] > now_ms


def test_settle_rejects_window_after_lease_end(world: World) -> None:
    lease, m = _active(world, duration_s=120)
    world.advance_to_ms(lease.end_ms + 60_000)
    r = m.build(window_ms=180_000, alloc_bps=5_000)
    e = expect_revert("LeaseEscrowWindowOutsideLease", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, r.windowEndMs, lease.end_ms)


def test_settle_rejects_time_above_gpu_capacity(world: World) -> None:
    lease, m = _active(world)
    cap = 2 * 60_000
    r = m.build(cumBusyMs=cap + 1)
    e = expect_revert("LeaseEscrowTimeAboveCapacity", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, 0, cap + 1, cap)
    r = m.build(cumAllocatedMs=cap + 1)
    e = expect_revert("LeaseEscrowTimeAboveCapacity", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, 1, cap + 1, cap)


def test_settle_rejects_energy_above_power_cap(world: World) -> None:
    lease, m = _active(world)
    cap = MAX_POWER_MW * 2 * 60_000 * 10_500 // 10_000_000
    ok = m.build(cumEnergyMj=cap)
    bad = m.build(cumEnergyMj=cap + 1)
    e = expect_revert("LeaseEscrowEnergyAboveCap", world.cl.settle, world.relayer, bad, m.sign(bad))
    assert e.error_args == (lease.lease_id, cap + 1, cap)
    world.cl.settle(world.relayer, ok, m.sign(ok))  # exactly at the cap (+ margin) is accepted


def test_settle_rejects_wrong_gpu_set(world: World) -> None:
    lease, m = _active(world)
    other = gpu_set_hash(world.uuids[:1])
    r = m.build(gpuSetHash=other)
    e = expect_revert("LeaseEscrowWrongGpuSet", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, other, lease.gpu_set_hash)


def test_settle_rejects_gpu_set_sharing_the_stored_fingerprint_bits(world: World) -> None:
    # The terms slot keeps the top 40 bits of keccak(gpuSetHash), not of the hash itself: a value that
    # only copies the hash's leading bits is rejected, with the full expected hash in the error.
    lease, m = _active(world)
    near = lease.gpu_set_hash[:5] + bytes(27)
    r = m.build(gpuSetHash=near)
    e = expect_revert("LeaseEscrowWrongGpuSet", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, near, lease.gpu_set_hash)


def test_settle_batch_rejected_report_writes_nothing_before_a_good_one(world: World) -> None:
    lease, m = _active(world)
    bad = m.build(gpuSetHash=gpu_set_hash(world.uuids[:1]))
    good, sig = m.next()
    res = world.cl.settle_batch(world.relayer, [bad, good], [m.sign(bad), sig])
    assert [(e.args["leaseId"], e.args["seq"], e.args["reason"]) for e in res.named("CheckpointSkipped")] == [
        (lease.lease_id, 1, error_selector("LeaseEscrowWrongGpuSet")),
    ]
    assert [e.args["reportHash"] for e in res.named("CheckpointSettled")] == [report_struct_hash(good)]
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.last_seq, cp.last_report_hash, cp.cum_allocated_ms) == (1, report_struct_hash(good), good.cumAllocatedMs)


def test_settle_rejects_counter_overflow(world: World) -> None:
    lease, m = _active(world)
    r = m.build(seq=2**32)
    e = expect_revert("LeaseEscrowCounterOverflow", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, 3, 2**32)
    r = m.build(cumEnergyMj=2**48)
    e = expect_revert("LeaseEscrowCounterOverflow", world.cl.settle, world.relayer, r, m.sign(r))
    assert e.error_args == (lease.lease_id, 2, 2**48)


def test_settle_rejects_high_s_signature(world: World) -> None:
    lease, m = _active(world)
    r = m.build()
    sig = m.sign(r)
    s = int.from_bytes(sig[32:64], "big")
    high = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    e = expect_revert("LeaseEscrowMalleableSignature", world.cl.settle, world.relayer, r, high)
    assert e.error_args == (lease.lease_id, (SECP256K1_N - s).to_bytes(32, "big"))
    bad_v = sig[:64] + bytes([29])
    e = expect_revert("LeaseEscrowInvalidSignature", world.cl.settle, world.relayer, r, bad_v)
    assert e.error_args == (lease.lease_id,)


def test_settle_rejects_malformed_packing(world: World) -> None:
    lease, m = _active(world)
    r = m.build()
    packed = list(pack_report(r))
    packed[2] |= 1  # reserved low bits of w2
    fn = world.cl.escrow.functions.settle(tuple(packed), split_signature(m.sign(r)))
    e = expect_revert("LeaseEscrowMalformedReport", world.send, fn, world.relayer)
    assert e.error_args == (lease.lease_id, 1)


def test_settle_rejects_open_closed_and_unknown_lease(world: World) -> None:
    lease, m = _active(world)
    r1, s1 = m.next()
    world.cl.close_lease(world.buyer, lease.lease_id)
    e = expect_revert("LeaseEscrowBadStatus", world.cl.settle, world.relayer, r1, s1)
    assert e.error_args == (lease.lease_id, LeaseStatus.CLOSED)
    ghost = r1.replace(leaseId=999)
    e = expect_revert("LeaseEscrowBadStatus", world.cl.settle, world.relayer, ghost, m.sign(ghost))
    assert e.error_args == (999, LeaseStatus.NONE)


def test_settle_after_attestor_rotation_needs_new_key(world: World) -> None:
    lease, m = _active(world)
    world.cl.rotate_attestor(world.provider, world.node, world.relayer)
    r, sig = m.next()
    e = expect_revert("LeaseEscrowWrongSigner", world.cl.settle, world.relayer, r, sig)
    assert e.error_args == (lease.lease_id, world.attestor, world.relayer)
    world.cl.settle(world.relayer, r, m.sign(r, key=world.key(world.relayer)))


def test_settle_batch_skips_bad_reports_and_settles_the_rest(world: World) -> None:
    lease_a, ma = _active(world)
    lease_b, mb = _active(world, world.offer_metered)
    ra, sa = ma.next()
    rb = mb.build()
    bad_sig = mb.sign(rb, key=world.key(world.attestor2))
    res = world.cl.settle_batch(world.relayer, [ra, rb, ra], [sa, bad_sig, sa])
    settled = res.named("CheckpointSettled")
    skipped = res.named("CheckpointSkipped")
    assert [e.args["leaseId"] for e in settled] == [lease_a.lease_id]
    assert [(e.args["leaseId"], e.args["seq"], e.args["reason"]) for e in skipped] == [
        (lease_b.lease_id, 1, error_selector("LeaseEscrowWrongSigner")),
        (lease_a.lease_id, 1, error_selector("LeaseEscrowStaleReport")),
    ]
    assert world.cl.checkpoint(lease_b.lease_id).last_seq == 0
    e = expect_revert("LeaseEscrowLengthMismatch", world.send, world.cl.escrow.functions.settleBatch([], [(b"\x00" * 32, b"\x00" * 32, 27)]), world.relayer)
    assert e.error_args == (0, 1)


def test_settle_exhausts_lease_and_never_pays_beyond_escrow(world: World) -> None:
    lease, m = _active(world, duration_s=120)
    world.advance_to_ms(lease.end_ms)
    r1, s1 = m.next(60_000)
    r2, s2 = m.next(60_000)
    res = world.cl.settle_batch(world.relayer, [r1, r2], [s1, s2])
    assert res.event("LeaseExhausted").args == {"leaseId": lease.lease_id, "charged": lease.escrowed}
    closed = res.event("LeaseClosed") if res.named("LeaseClosed") else None
    assert closed is None  # exhaustion is its own terminal state
    cp = world.cl.checkpoint(lease.lease_id)
    assert (cp.charged, cp.remaining) == (lease.escrowed, 0)
    assert world.cl.lease(lease.lease_id).status == LeaseStatus.EXHAUSTED
    rights = world.cl.rights_of(world.offer_reserved)
    assert (rights.locked, rights.burned) == (0, 240)
    assert world.cl.withdrawable(world.buyer) == 0  # nothing left to refund (fee share waits for release)
    # a further report can charge nothing: the lease no longer accepts settlements
    r3 = m.build(60_000)
    e = expect_revert("LeaseEscrowBadStatus", world.cl.settle, world.relayer, r3, m.sign(r3))
    assert e.error_args == (lease.lease_id, LeaseStatus.EXHAUSTED)


def test_settle_rejected_while_paused(world: World) -> None:
    lease, m = _active(world)
    r, s = m.next()
    world.cl.pause(world.admin)
    expect_revert("EnforcedPause", world.cl.settle, world.relayer, r, s)


def test_report_digest_matches_python_for_random_reports(world: World) -> None:
    rng = random.Random(1234)
    for _ in range(12):
        r = MeteringReport(
            leaseId=rng.randrange(2**64),
            seq=rng.randrange(2**64),
            prevReportHash=rng.randbytes(32),
            windowStartMs=rng.randrange(2**64),
            windowEndMs=rng.randrange(2**64),
            gpuSetHash=rng.randbytes(32),
            busyMs=rng.randrange(2**64),
            energyMj=rng.randrange(2**64),
            allocatedMs=rng.randrange(2**64),
            cumBusyMs=rng.randrange(2**64),
            cumEnergyMj=rng.randrange(2**64),
            cumAllocatedMs=rng.randrange(2**64),
            maxMemUsedMiB=rng.randrange(2**32),
            sampleCount=rng.randrange(2**32),
            samplesRoot=rng.randbytes(32),
            flags=rng.randrange(2**32),
            configHash=rng.randbytes(32),
        )
        expected = report_digest(r, world.chain.chain_id, world.dep.escrow)
        assert world.cl.report_digest(r) == expected
        assert world.cl.packed_report_digest(r) == expected
        assert world.cl.hash_report(r) == report_struct_hash(r)


def test_signature_recovery_matches_contract(world: World) -> None:
    lease, m = _active(world)
    r = m.build()
    digest = world.cl.packed_report_digest(r)
    assert digest == report_digest(r, world.chain.chain_id, world.dep.escrow)
    sig = sign_digest(digest, world.key(world.attestor))
    world.cl.settle(world.relayer, r, sig)


def test_revert_decoding_handles_error_string_and_unknown() -> None:
    from eth_abi import encode

    e = decode_revert_data(bytes.fromhex("08c379a0") + encode(["string"], ["boom"]))
    assert (e.name, e.error_args) == ("Error", ("boom",))
    assert decode_revert_data(b"\x01\x02\x03\x04").name == "Unknown"
    sel = error_selector("LeaseEscrowStaleReport")
    e = decode_revert_data(sel + encode(["uint256", "uint64", "uint64"], [1, 2, 3]))
    assert (e.name, e.error_args, e.kwargs) == ("LeaseEscrowStaleReport", (1, 2, 3), {"leaseId": 1, "seq": 2, "lastSeq": 3})
