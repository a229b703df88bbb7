// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Suite} from "../base/Suite.sol";
import {Vm} from "../base/TestBase.sol";
import {ILeaseEscrowTypes} from "../../src/interfaces/ILeaseEscrow.sol";
import {ICapacityRegistry, NODE_FEATURE_GPM} from "../../src/interfaces/ICapacityRegistry.sol";

/// @notice Property tests of single escrow operations with fuzzed amounts: charges (every billing mode, the
/// v2 cumulative bounds), fees, top-ups, disputes, the registry's node features, and the lease state
/// commitment every settlement and cold call is checked against.
contract EscrowFuzzTest is Suite {
    function setUp() public {
        _deploySuite();
    }

    /// @dev Opens offer `idx` for `durationS`, activates it now and returns the lease.
    function _running(uint256 idx, uint32 durationS) internal returns (uint256 leaseId, uint256 total) {
        (leaseId, total) = _open(buyers[0], idx, provider, durationS, uint64(block.timestamp + 60));
        vm.prank(provider);
        escrow.activateLease(leaseId);
    }

    /// @dev Settles one report (seq 1, whole lease so far) with the given cumulative counters; returns the
    /// revert data ("" when settled). A settled report must leave exactly one record, whose ckpt and report
    /// hash are the lease's new committed state, and charge price × the mode's counter / 1000.
    function _settleFirst(uint256 leaseId, uint64 toMs, Cum memory c) internal returns (bytes memory err) {
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        ILeaseEscrowTypes.MeteringReport memory r = _report(leaseId, 1, bytes32(0), l.startMs, toMs, c);
        r.busyMs = c.busy;
        r.allocatedMs = c.alloc;
        r.smActiveMs = c.sm;
        r.energyMj = c.energy;
        Outcome memory o = _submit(_entry(ATTESTOR_PK, r, _state(leaseId), false), false);
        if (!o.ok) return o.ret.length == 0 ? bytes("?") : o.ret;
        _assertSettled(o, r);
        uint256 bill = l.billingMode == 0 ? c.alloc : l.billingMode == 1 ? c.busy : c.sm;
        assertEq(o.records[0].charged, (l.pricePerGpuSecond * bill) / 1000, "record charged");
        return "";
    }

    /// @dev Cumulative counters (busy, allocated, energy, SM-active).
    function _cum(uint256 busy, uint256 alloc, uint256 energy, uint256 sm) internal pure returns (Cum memory) {
        return Cum(uint64(busy), uint64(alloc), uint64(energy), uint64(sm));
    }

    /// @dev One settlement event with one record: the report's struct hash and the ckpt the escrow must
    /// have built (seq | cumBusy << 32 | cumAlloc << 80 | cumEnergy << 128 | cumSmActive << 176 | now << 224),
    /// and the commitment is now keccak256(abi.encode(terms, that ckpt, that hash)).
    function _assertSettled(Outcome memory o, ILeaseEscrowTypes.MeteringReport memory r) internal view {
        assertEq(o.singleEvents, 1, "settle emits one CheckpointSettled");
        assertEq(o.batchEvents, 0, "settle emits no CheckpointsSettled");
        assertEq(o.records.length, 1, "one record");
        Record memory rec = o.records[0];
        assertEq(rec.leaseId, r.leaseId, "record lease");
        assertEq(rec.reportHash, escrow.hashReport(r), "record hash = hashReport");
        assertEq(rec.reportHash, _structHash(r), "record hash = EIP-712 struct hash");
        assertEq(rec.ckpt, _ckptOf(r, block.timestamp), "record ckpt");
        LeaseState memory s = _state(r.leaseId);
        assertEq(_commitment(s), escrow.stateHash(r.leaseId), "stateHash = keccak(terms, ckpt, lastHash)");
    }

    /// @notice The charge is price × billable / 1000 under each billing mode (allocated, busy or SM-active
    /// time), never above escrow; billing the full capacity exhausts the lease and leaves nothing to refund.
    /// `exhaust` bills the whole lease (else random); the counters not billed are random within their bounds.
    function testFuzz_chargeNeverExceedsEscrow(
        uint32 durationSeed,
        uint256 billSeed,
        uint256 elapsedSeed,
        uint8 modeSeed,
        bool exhaust,
        uint256 otherSeed
    ) public {
        uint32 duration = uint32(bound(durationSeed, 1, 3 days));
        uint256 mode = modeSeed % 3;
        (uint256 leaseId,) = _running(mode == 0 ? 0 : mode == 1 ? 1 : 4, duration);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        assertEq(l.billingMode, mode, "lease billing mode");
        uint256 elapsedMs = exhaust ? uint256(duration) * 1000 : bound(elapsedSeed, 1, uint256(duration) * 1000);
        vm.warp(block.timestamp + (elapsedMs + 999) / 1000);
        uint256 cap = uint256(l.gpuCount) * elapsedMs;
        uint256 bill = exhaust ? cap : bound(billSeed, 0, cap);
        uint256 other = bound(otherSeed, 0, cap);
        Cum memory counters;
        if (mode == 0) counters = _cum(bound(otherSeed, 0, bill), bill, 0, other); // busy <= allocated
        else if (mode == 1) counters = _cum(bill, bound(otherSeed, bill, cap), 0, other); // allocated >= busy
        else counters = _cum(other, other, 0, bill); // SM-active is bounded by capacity alone
        bytes memory err = _settleFirst(leaseId, uint64(l.startMs + elapsedMs), counters);
        assertEq(err.length, 0, "valid report rejected");
        ILeaseEscrowTypes.CheckpointView memory c = _checkpoint(leaseId);
        assertEq(c.charged, (l.pricePerGpuSecond * bill) / 1000, "charge = price x billable / 1000");
        assertLe(c.charged, l.escrowed, "charged <= escrowed");
        assertEq(c.remaining, l.escrowed - c.charged, "remaining");
        bool full = bill == uint256(l.gpuCount) * duration * 1000;
        ILeaseEscrowTypes.LeaseStatus st = escrow.lease(leaseId).status;
        assertTrue(full == (st == ILeaseEscrowTypes.LeaseStatus.Exhausted), "exhausted iff fully billed");
        if (full) assertEq(escrow.withdrawable(buyers[0], address(0)), 0, "nothing refunded from exhausted escrow");
    }

    /// @notice A report claiming more allocated or SM-active GPU time than gpuCount × (window end − start) is
    /// rejected, whatever the excess and whatever the lease bills, with TimeAboveCapacity naming the counter and
    /// the cap; busy time above allocated time with BusyAboveAllocated.
    function testFuzz_settleRejectsTimeAboveCapacity(
        uint32 durationSeed,
        uint256 excessSeed,
        uint256 elapsedSeed,
        uint8 which,
        uint8 modeSeed
    ) public {
        uint32 duration = uint32(bound(durationSeed, 2, 3 days));
        uint256 mode = modeSeed % 3;
        (uint256 leaseId,) = _running(mode == 0 ? 0 : mode == 1 ? 1 : 4, duration);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        vm.warp(block.timestamp + duration);
        uint256 elapsedMs = bound(elapsedSeed, 1, uint256(duration) * 1000);
        uint256 cap = uint256(l.gpuCount) * elapsedMs;
        uint64 over = uint64(cap + bound(excessSeed, 1, 1e12));
        uint64 toMs = uint64(l.startMs + elapsedMs);
        which %= 3;
        bytes memory err;
        if (which == 0) {
            err = _settleFirst(leaseId, toMs, _cum(0, over, 0, 0));
            assertEq(
                keccak256(err),
                keccak256(abi.encodeWithSelector(ILeaseEscrowTypes.LeaseEscrowTimeAboveCapacity.selector, leaseId, 1, over, cap)),
                "allocated above capacity"
            );
        } else if (which == 1) {
            err = _settleFirst(leaseId, toMs, _cum(0, 0, 0, over));
            assertEq(
                keccak256(err),
                keccak256(abi.encodeWithSelector(ILeaseEscrowTypes.LeaseEscrowTimeAboveCapacity.selector, leaseId, 3, over, cap)),
                "SM-active above capacity"
            );
        } else {
            uint64 alloc = uint64(bound(excessSeed, 0, cap));
            err = _settleFirst(leaseId, toMs, _cum(alloc + 1, alloc, 0, 0));
            assertEq(
                keccak256(err),
                keccak256(abi.encodeWithSelector(ILeaseEscrowTypes.LeaseEscrowBusyAboveAllocated.selector, leaseId, alloc + 1, alloc)),
                "busy above allocated"
            );
        }
        assertEq(_checkpoint(leaseId).charged, 0, "charged after rejection");
    }

    /// @notice Windows are not compared with each other (v2): a later report may end its window before the
    /// last settled one, as long as its cumulative counters stay within that earlier window's bounds; its
    /// charge is still the growth of the billed counter. A window ending at or before the lease start, after
    /// the lease end or in the future is refused.
    function testFuzz_windowEndOnlyBoundedByLeaseAndNow(uint256 firstSeed, uint256 backSeed, uint256 growSeed, uint8 modeSeed)
        public
    {
        uint256 mode = modeSeed % 3;
        (uint256 leaseId,) = _running(mode == 0 ? 0 : mode == 1 ? 1 : 4, 3600);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        vm.warp(block.timestamp + 3600);
        uint256 g = l.gpuCount;
        // first report: window end anywhere in the lease, counters at a fraction of its capacity
        uint256 end1 = bound(firstSeed, 1000, 3_599_000); // (not the whole lease: it would be Exhausted)
        uint256 c1 = bound(firstSeed >> 64, 0, (g * end1) / 2);
        assertEq(_settleFirst(leaseId, uint64(l.startMs + end1), _cum(c1, c1, 0, c1)).length, 0, "first report");
        // second report: window ends earlier, counters grow within the earlier window's capacity
        uint256 end2 = bound(backSeed, (c1 + g - 1) / g + 1, end1);
        uint256 c2 = bound(growSeed, c1, g * end2);
        LeaseState memory s = _state(leaseId);
        ILeaseEscrowTypes.MeteringReport memory r =
            _report(leaseId, 2, s.lastHash, uint64(l.startMs), uint64(l.startMs + end2), _cum(c2, c2, 0, c2));
        Outcome memory o = _submit(_entry(ATTESTOR_PK, r, s, false), false);
        assertTrue(o.ok, "an earlier window end within the bounds settles");
        assertEq(o.records[0].charged, (l.pricePerGpuSecond * c2) / 1000 - (l.pricePerGpuSecond * c1) / 1000, "charge");
        // the window must end inside the lease and not in the future
        _assertWindowRefused(leaseId, l, _cum(c2, c2, 0, c2));
    }

    /// @dev The next report of `leaseId` with counters `c` is refused when its window ends at the lease start,
    /// after the lease end (WindowOutsideLease) or, with time back inside the lease, after now (WindowInFuture).
    function _assertWindowRefused(uint256 leaseId, ILeaseEscrowTypes.LeaseView memory l, Cum memory c) internal {
        LeaseState memory s = _state(leaseId);
        uint64 seq = uint64(s.ckpt & M32) + 1;
        uint64[2] memory outside = [uint64(l.startMs), uint64(l.endMs + 1)];
        for (uint256 i; i < 2; ++i) {
            bytes memory entry = _entry(ATTESTOR_PK, _report(leaseId, seq, s.lastHash, l.startMs, outside[i], c), s, false);
            vm.expectRevert(
                abi.encodeWithSelector(
                    ILeaseEscrowTypes.LeaseEscrowWindowOutsideLease.selector, leaseId, outside[i], l.startMs, l.endMs
                )
            );
            escrow.settle(entry);
        }
        vm.warp(l.startMs / 1000 + 600); // now inside the lease: a window ending after now
        uint64 future = uint64(block.timestamp * 1000 + 1);
        bytes memory late = _entry(ATTESTOR_PK, _report(leaseId, seq, s.lastHash, l.startMs, future, c), s, false);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrowTypes.LeaseEscrowWindowInFuture.selector, leaseId, future, block.timestamp * 1000
            )
        );
        escrow.settle(late);
    }

    /// @notice Each cumulative counter (0 busy, 1 allocated, 2 energy, 3 SM-active) going down by any amount is
    /// refused with CounterDecreased naming it, whatever the lease bills.
    function testFuzz_everyCounterDecreaseIsRefused(uint8 which, uint256 downSeed, uint8 modeSeed) public {
        uint256 mode = modeSeed % 3;
        (uint256 leaseId,) = _running(mode == 0 ? 0 : mode == 1 ? 1 : 4, 3600);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        vm.warp(block.timestamp + 600);
        Cum memory c = _cum(100_000, 200_000, 300_000, 150_000);
        assertEq(_settleFirst(leaseId, uint64(l.startMs + 300_000), c).length, 0, "first report");
        which %= 4;
        Cum memory d = _cum(c.busy, c.alloc, c.energy, c.sm);
        uint64 last = which == 0 ? c.busy : which == 1 ? c.alloc : which == 2 ? c.energy : c.sm;
        uint64 value = uint64(last - bound(downSeed, 1, last));
        if (which == 0) d.busy = value;
        else if (which == 1) d.alloc = value;
        else if (which == 2) d.energy = value;
        else d.sm = value;
        if (which == 1 && d.busy > d.alloc) d.busy = d.alloc; // (busy going down too is named first, as busy)
        LeaseState memory s = _state(leaseId);
        ILeaseEscrowTypes.MeteringReport memory r =
            _report(leaseId, 2, s.lastHash, uint64(l.startMs), uint64(l.startMs + 600_000), d);
        uint8 named = which == 1 && d.busy < c.busy ? 0 : which;
        uint64 namedValue = named == 0 ? d.busy : value;
        uint64 namedLast = named == 0 ? c.busy : last;
        bytes memory entry = _entry(ATTESTOR_PK, r, s, false);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrowTypes.LeaseEscrowCounterDecreased.selector, leaseId, named, namedValue, namedLast
            )
        );
        escrow.settle(entry);
    }

    /// @notice Node features: an SM-active offer needs a GPM node (CapacityRegistryNodeLacksFeature otherwise);
    /// the node view and NodeRegistered carry the features; unknown feature bits and billing modes are refused.
    function testFuzz_smActiveOffersNeedGpm(uint8 features, uint8 mode) public {
        features = uint8(bound(features, 0, 1));
        bytes32[] memory gpus = new bytes32[](1);
        gpus[0] = keccak256(abi.encode("GPU-features", features));
        vm.recordLogs();
        vm.prank(provider);
        uint256 node = registry.registerNode(attestor, "GPU", gpus, 1, 1, "r", features);
        assertEq(registry.node(node).features, features, "node view features");
        bytes32 topic = keccak256("NodeRegistered(uint256,address,address,bytes32,bytes32[],uint32,uint32,bytes8,uint8)");
        bool seen;
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics.length > 0 && logs[i].topics[0] == topic) {
                (,,,,, bytes8 region, uint8 f) = abi.decode(logs[i].data, (address, bytes32, bytes32[], uint32, uint32, bytes8, uint8));
                assertEq(f, features, "NodeRegistered features");
                assertTrue(region == bytes8("r"), "NodeRegistered region");
                seen = true;
            }
        }
        assertTrue(seen, "NodeRegistered emitted");
        mode %= 4;
        uint64 from = uint64(block.timestamp);
        if (mode == 3) {
            vm.expectRevert(abi.encodeWithSelector(ICapacityRegistry.CapacityRegistryBadBillingMode.selector, 3));
        } else if (mode == SM_ACTIVE && features & NODE_FEATURE_GPM == 0) {
            vm.expectRevert(
                abi.encodeWithSelector(ICapacityRegistry.CapacityRegistryNodeLacksFeature.selector, node, NODE_FEATURE_GPM)
            );
        }
        vm.prank(provider);
        uint256 offerId = registry.publishOffer(node, 1, 1, address(0), mode, from, from + 100, 0, bytes32(0));
        if (mode < 3 && !(mode == SM_ACTIVE && features == 0)) {
            assertEq(uint8(registry.offer(offerId).billingMode), mode, "offer mode");
        }
        // feature bits the registry does not define
        uint8 unknown = uint8(2 << (features % 7));
        gpus[0] = keccak256(abi.encode("GPU-unknown", features));
        vm.expectRevert(abi.encodeWithSelector(ICapacityRegistry.CapacityRegistryUnknownFeatures.selector, unknown | features));
        vm.prank(provider);
        registry.registerNode(attestor, "GPU", gpus, 1, 1, "r", unknown | features);
    }

    /// @notice Opening pays exactly escrow + fee (fee = escrow × bps / 10000) and locks gpuCount × duration rights.
    function testFuzz_openLeasePaysEscrowPlusFee(uint32 durationSeed, uint16 bpsSeed, bool inToken) public {
        uint16 bps = uint16(bound(bpsSeed, 0, 10_000));
        ext.setFeeConfig(bps, bps, 10_000, type(uint32).max);
        uint32 duration = uint32(bound(durationSeed, 1, 10 days));
        uint256 idx = inToken ? 2 : 0;
        uint256 before = inToken ? token.balanceOf(address(escrow)) : address(escrow).balance;
        uint256 lockedBefore = _locked(idx);
        (uint256 leaseId, uint256 total) =
            _open(buyers[1], idx, provider, duration, uint64(block.timestamp + 60));
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        uint256 escrowed = _price(idx) * l.gpuCount * duration;
        uint256 fee = (escrowed * bps) / 10_000;
        assertEq(total, escrowed + fee, "quoted total");
        assertEq((inToken ? token.balanceOf(address(escrow)) : address(escrow).balance) - before, escrowed + fee, "paid in");
        assertEq(l.escrowed, escrowed, "escrowed");
        assertEq(l.feeHeld, fee, "fee held");
        assertEq(l.feeBps, bps, "fee bps");
        assertEq(_locked(idx) - lockedBefore, uint256(l.gpuCount) * duration, "rights locked");
    }

    /// @notice When a lease ends, the held fee splits into treasury = paid × bps / 10000 and the buyer's
    /// refund of the rest; escrow refund + holder earnings = escrowed.
    function testFuzz_feeSplitOnClose(uint32 durationSeed, uint256 usedSeed, uint16 bpsSeed) public {
        uint16 bps = uint16(bound(bpsSeed, 0, 10_000));
        ext.setFeeConfig(bps, bps, 10_000, type(uint32).max);
        uint32 duration = uint32(bound(durationSeed, 10, 2 days));
        (uint256 leaseId,) = _running(2, duration); // token, reserved, 1 GPU
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        uint256 usedMs = bound(usedSeed, 0, uint256(duration) * 1000 - 1);
        vm.warp(block.timestamp + usedMs / 1000 + 1);
        if (usedMs > 0) {
            assertEq(_settleFirst(leaseId, uint64(l.startMs + usedMs), _cum(0, usedMs, 0, 0)).length, 0, "settle");
        }
        LeaseState memory s = _state(leaseId);
        vm.prank(buyers[0]);
        escrow.closeLease(leaseId, s.ckpt, s.lastHash);
        vm.warp(block.timestamp + CHALLENGE_S);
        uint256 charged = _checkpoint(leaseId).charged;
        if (charged > 0) escrow.releaseEarnings(leaseId, s.ckpt, s.lastHash);
        assertTrue(escrow.lease(leaseId).feesSettled, "fees settled");
        uint256 treasuryFee = (charged * bps) / 10_000;
        assertEq(escrow.withdrawable(treasury, address(token)), treasuryFee, "treasury fee");
        assertEq(escrow.withdrawable(provider, address(token)), charged, "holder earnings");
        assertEq(
            escrow.withdrawable(buyers[0], address(token)),
            (l.escrowed - charged) + (l.feeHeld - treasuryFee),
            "buyer refund"
        );
        assertEq(token.balanceOf(address(escrow)), l.escrowed + l.feeHeld, "all of it is withdrawable");
    }

    /// @notice A top-up of n seconds pays n × price × gpus plus exactly the fee difference, extends the
    /// lease by n seconds and locks n × gpus more rights.
    function testFuzz_topUpExtendsExactly(uint32 durationSeed, uint256 secondsSeed, bool active) public {
        uint32 duration = uint32(bound(durationSeed, 1, 5 days));
        (uint256 leaseId,) = _open(buyers[2], 0, provider, duration, uint64(block.timestamp + 60));
        if (active) {
            vm.prank(provider);
            escrow.activateLease(leaseId);
        }
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        uint256 secs = bound(secondsSeed, 1, 10 days);
        uint256 amount = l.pricePerGpuSecond * l.gpuCount * secs;
        uint256 fee = ((l.escrowed + amount) * l.feeBps) / 10_000 - l.feeHeld;
        uint256 lockedBefore = _locked(0);
        uint256 balBefore = address(escrow).balance;
        LeaseState memory s = _state(leaseId);
        vm.deal(buyers[2], amount + fee);
        vm.prank(buyers[2]);
        escrow.topUp{value: amount + fee}(leaseId, amount, s.ckpt, s.lastHash);
        ILeaseEscrowTypes.LeaseView memory after_ = escrow.lease(leaseId);
        assertEq(after_.durationS, duration + secs, "duration");
        assertEq(after_.escrowed, l.escrowed + amount, "escrow");
        assertEq(after_.feeHeld, l.feeHeld + fee, "fee");
        assertEq(address(escrow).balance - balBefore, amount + fee, "paid");
        assertEq(_locked(0) - lockedBefore, l.gpuCount * secs, "rights");
    }

    /// @notice A resolved dispute splits the frozen amount exactly (buyer + holder = frozen) and slashes
    /// min(frozen × slashBps / 10000, stake) to the buyer on provider fault.
    function testFuzz_disputeSplitConserves(uint256 usedSeed, uint16 bpsSeed, bool fault) public {
        uint16 bps = uint16(bound(bpsSeed, 0, 10_000));
        (uint256 leaseId,) = _running(0, 3600);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        uint256 usedMs = bound(usedSeed, 1, 3_600_000);
        vm.warp(block.timestamp + usedMs / 1000 + 1);
        assertEq(_settleFirst(leaseId, uint64(l.startMs + usedMs), _cum(0, usedMs, 0, 0)).length, 0, "settle");
        uint256 frozen = _checkpoint(leaseId).pending;
        LeaseState memory s = _state(leaseId);
        vm.prank(buyers[0]);
        escrow.dispute(leaseId, s.ckpt, s.lastHash);
        uint256 stakeBefore = registry.stakeOf(provider, address(0)).bonded;
        uint256 balBefore = address(escrow).balance;
        vm.prank(arbiter);
        escrow.resolveDispute(leaseId, bps, fault, s.ckpt, s.lastHash);
        uint256 buyerShare = (frozen * bps) / 10_000;
        uint256 slashWant = fault ? (frozen * 5_000) / 10_000 : 0;
        uint256 slashed = slashWant < stakeBefore ? slashWant : stakeBefore;
        ILeaseEscrowTypes.CheckpointView memory c = _checkpoint(leaseId);
        assertEq(c.refunded, buyerShare, "refunded");
        assertEq(c.paid, frozen - buyerShare, "paid");
        assertEq(c.frozen, 0, "unfrozen");
        assertEq(escrow.withdrawable(buyers[0], address(0)), buyerShare + slashed, "buyer credit");
        assertEq(escrow.withdrawable(provider, address(0)), frozen - buyerShare, "holder credit");
        assertEq(stakeBefore - registry.stakeOf(provider, address(0)).bonded, slashed, "stake slashed");
        assertEq(address(escrow).balance - balBefore, slashed, "slash moved into escrow");
    }

    /// @notice The typehashes the entries are signed under are the protocol's nested EIP-712 types
    /// (ledger.protocol), and hashReport / entryDigest agree with the digest built here.
    function test_typehashesAndDigestsMatchProtocol() public {
        assertEq(
            ext.WINDOW_TYPEHASH(),
            keccak256(
                "WindowDetail(uint64 windowStartMs,bytes32 gpuSetHash,uint64 busyMs,uint64 smActiveMs,uint64 tensorActiveMs,uint64 energyMj,uint64 allocatedMs,uint32 maxMemUsedMiB,uint32 sampleCount,bytes32 samplesRoot,uint32 flags,bytes32 configHash)"
            ),
            "WINDOW_TYPEHASH"
        );
        assertEq(
            ext.REPORT_TYPEHASH(),
            keccak256(
                "MeteringReport(uint256 leaseId,uint64 seq,bytes32 prevReportHash,uint64 windowEndMs,uint64 cumBusyMs,uint64 cumEnergyMj,uint64 cumAllocatedMs,uint64 cumSmActiveMs,WindowDetail window)WindowDetail(uint64 windowStartMs,bytes32 gpuSetHash,uint64 busyMs,uint64 smActiveMs,uint64 tensorActiveMs,uint64 energyMj,uint64 allocatedMs,uint32 maxMemUsedMiB,uint32 sampleCount,bytes32 samplesRoot,uint32 flags,bytes32 configHash)"
            ),
            "REPORT_TYPEHASH"
        );
        (uint256 leaseId,) = _running(1, 600);
        vm.warp(block.timestamp + 60);
        ILeaseEscrowTypes.MeteringReport memory r = _next(_state(leaseId));
        r.flags = 7;
        r.maxMemUsedMiB = 80_000;
        r.tensorActiveMs = 123;
        r.smActiveMs = 456;
        assertEq(escrow.hashReport(r), _structHash(r), "hashReport = struct hash");
        assertEq(escrow.reportDigest(r), _digest(r), "reportDigest");
        assertEq(escrow.entryDigest(_entry(ATTESTOR_PK, r, _state(leaseId), false)), _digest(r), "entryDigest");
        assertEq(escrow.entryDigest(_entry(ATTESTOR_PK, r, _state(leaseId), true)), _digest(r), "entryDigest, long");
    }

    /// @notice A settlement entry whose state words are not the lease's committed state (terms, ckpt or
    /// lastReportHash tampered: given after the entry, or implied by prevReportHash) always reverts with
    /// LeaseEscrowStaleState(leaseId, stateHash); settleBatch skips it with that reason; nothing changes.
    /// The same report with the true state then settles (so the tampered word was the only defect).
    function testFuzz_settleWithTamperedStateReverts(
        uint8 word,
        uint256 mask,
        bool settledBefore,
        bool withLast,
        bool metered
    ) public {
        (uint256 leaseId,) = _running(metered ? 1 : 0, 3600);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        vm.warp(block.timestamp + 600);
        if (settledBefore) {
            assertEq(
                _settleFirst(leaseId, uint64(l.startMs + 300_000), _cum(1_000, 2_000, 0, 1_500)).length, 0, "first settle"
            );
            vm.warp(block.timestamp + 60);
        }
        LeaseState memory s = _state(leaseId);
        bytes32 committed = escrow.stateHash(leaseId);
        assertEq(_commitment(s), committed, "tracked state");
        if (mask == 0) mask = 1;
        word %= 4;

        ILeaseEscrowTypes.MeteringReport memory bad = _next(s);
        LeaseState memory t = LeaseState(s.leaseId, s.terms, s.ckpt, s.lastHash);
        if (word == 0) {
            t.terms ^= mask;
        } else if (word == 1) {
            t.ckpt ^= mask;
        } else if (word == 2) {
            t.lastHash ^= bytes32(mask); // appended after the entry (flag bit 0)
        } else {
            bad.prevReportHash ^= bytes32(mask); // no trailing word: lastHash = the report's prevReportHash
            t.lastHash = bad.prevReportHash;
        }
        bytes memory entry = _entry(ATTESTOR_PK, bad, t, withLast && word != 3);
        assertEq(entry.length, word == 2 || (withLast && word != 3) ? 263 : 231, "entry size");

        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrowTypes.LeaseEscrowStaleState.selector, leaseId, committed));
        escrow.settle(entry);

        Outcome memory o = _submit(entry, true);
        assertTrue(o.ok, "settleBatch returned");
        assertEq(abi.decode(o.ret, (uint256)), 0, "nothing settled");
        assertEq(o.singleEvents + o.batchEvents, 0, "no settlement event");
        assertEq(o.skips.length, 1, "one skip");
        assertEq(o.skips[0].leaseId, leaseId, "skip lease");
        assertEq(o.skips[0].seq, bad.seq, "skip seq");
        assertTrue(o.skips[0].reason == ILeaseEscrowTypes.LeaseEscrowStaleState.selector, "skip reason StaleState");
        assertEq(escrow.stateHash(leaseId), committed, "state unchanged");

        ILeaseEscrowTypes.MeteringReport memory good = _next(s);
        o = _submit(_entry(ATTESTOR_PK, good, s, withLast), false);
        assertTrue(o.ok, "true state settles");
        _assertSettled(o, good);
    }

    /// @notice settleBatch over two leases on two nodes (the first report possibly exhausting its lease, which
    /// then finalizes inside the batch): both settle, in order, in ONE CheckpointsSettled whose records are
    /// each lease's new state; replaying the batch settles nothing and skips both as StaleState.
    function testFuzz_batchSettlesInOrderAndReplayIsStale(uint256 billSeed, bool exhaustFirst, bool withLast) public {
        (uint256 a,) = _running(0, 600); // ETH reserved, 2 GPUs, node A
        (uint256 b,) = _running(3, 3600); // token metered, 1 GPU, node B
        vm.warp(block.timestamp + 600);
        ILeaseEscrowTypes.MeteringReport memory ra;
        ILeaseEscrowTypes.MeteringReport memory rb;
        {
            ILeaseEscrowTypes.LeaseView memory la = escrow.lease(a);
            Cum memory ca = _cum(0, exhaustFirst ? 2 * 600_000 : bound(billSeed, 0, 2 * 600_000 - 1), 0, 0);
            ra = _report(a, 1, bytes32(0), la.startMs, la.endMs, ca);
            uint256 busyB = bound(billSeed, 0, 600_000);
            Cum memory cb = _cum(busyB, 600_000, 0, busyB / 2);
            rb = _report(b, 1, bytes32(0), la.startMs, uint64(block.timestamp * 1000), cb);
        }
        bytes memory entries =
            bytes.concat(_entry(ATTESTOR_PK, ra, _state(a), withLast), _entry(ATTESTOR_PK, rb, _state(b), false));
        assertEq(entries.length, withLast ? 263 + 231 : 2 * 231, "entries size");

        Outcome memory o = _submit(entries, true);
        assertTrue(o.ok, "batch returned");
        assertEq(abi.decode(o.ret, (uint256)), 2, "settled");
        assertEq(o.batchEvents, 1, "one CheckpointsSettled");
        assertEq(o.singleEvents, 0, "no CheckpointSettled from a batch");
        assertEq(o.skips.length, 0, "no skips");
        assertEq(o.records.length, 2, "two records");
        assertEq(o.records[0].leaseId, a, "first record: first entry");
        assertEq(o.records[1].leaseId, b, "second record: second entry");
        assertEq(o.records[0].reportHash, escrow.hashReport(ra), "hash a");
        assertEq(o.records[1].reportHash, escrow.hashReport(rb), "hash b");
        assertEq(o.records[0].charged, (ETH_PRICE * ra.cumAllocatedMs) / 1000, "charged a (reserved: allocated)");
        assertEq(o.records[1].charged, (TOKEN_PRICE * rb.cumBusyMs) / 1000, "charged b (metered: busy)");
        assertEq(_commitment(_state(a)), escrow.stateHash(a), "state a");
        assertEq(_commitment(_state(b)), escrow.stateHash(b), "state b");
        assertTrue(
            (escrow.lease(a).status == ILeaseEscrowTypes.LeaseStatus.Exhausted) == exhaustFirst, "exhausted iff billed all"
        );
        assertEq(_checkpoint(a).charged, (ETH_PRICE * ra.cumAllocatedMs) / 1000, "checkpoint a");

        o = _submit(entries, true);
        assertTrue(o.ok, "replay returned");
        assertEq(abi.decode(o.ret, (uint256)), 0, "replay settles nothing");
        assertEq(o.batchEvents + o.singleEvents, 0, "no settlement event");
        assertEq(o.skips.length, 2, "both skipped");
        assertTrue(o.skips[0].reason == ILeaseEscrowTypes.LeaseEscrowStaleState.selector, "a stale");
        assertTrue(o.skips[1].reason == ILeaseEscrowTypes.LeaseEscrowStaleState.selector, "b stale");
    }

    /// @notice Every call that takes the lease state (checkpoint view, closeLease, topUp, dispute,
    /// releaseEarnings, resolveDispute) reverts with LeaseEscrowStaleState when ckpt or lastReportHash is
    /// not the committed one, and succeeds with the committed one.
    function testFuzz_coldCallsRejectStaleState(uint8 fn, uint256 mask, bool tamperHash) public {
        (uint256 leaseId,) = _running(0, 3600);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        vm.warp(block.timestamp + 600);
        assertEq(_settleFirst(leaseId, uint64(l.startMs + 300_000), _cum(0, 100_000, 0, 0)).length, 0, "settle");
        fn %= 6;
        LeaseState memory s = _state(leaseId);
        if (fn == 5) {
            vm.prank(buyers[0]);
            escrow.dispute(leaseId, s.ckpt, s.lastHash);
        }
        if (fn == 4) vm.warp(block.timestamp + CHALLENGE_S);
        if (mask == 0) mask = 1;
        LeaseState memory t = LeaseState(s.leaseId, s.terms, s.ckpt, s.lastHash);
        if (tamperHash) t.lastHash ^= bytes32(mask);
        else t.ckpt ^= mask;
        bytes32 committed = escrow.stateHash(leaseId);
        for (uint256 pass; pass < 2; ++pass) {
            LeaseState memory use = pass == 0 ? t : s;
            if (pass == 0) {
                vm.expectRevert(
                    abi.encodeWithSelector(ILeaseEscrowTypes.LeaseEscrowStaleState.selector, leaseId, committed)
                );
            }
            _coldCall(fn, leaseId, use, pass == 1);
        }
        assertTrue(escrow.stateHash(leaseId) != bytes32(0), "commitment never zero");
    }

    /// @dev Calls `fn` with state `u`; `ok`: it must have succeeded (else an expectRevert is armed).
    function _coldCall(uint8 fn, uint256 leaseId, LeaseState memory u, bool ok) internal {
        if (fn == 0) {
            ILeaseEscrowTypes.CheckpointView memory v = escrow.checkpoint(leaseId, u.ckpt, u.lastHash);
            if (ok) assertEq(v.lastReportHash, u.lastHash, "checkpoint view");
        } else if (fn == 1) {
            vm.prank(buyers[0]);
            escrow.closeLease(leaseId, u.ckpt, u.lastHash);
        } else if (fn == 2) {
            uint256 amount = ETH_PRICE * 2 * 60;
            uint256 fee = (amount * FEE_BPS) / 10_000;
            vm.deal(buyers[0], buyers[0].balance + amount + fee);
            vm.prank(buyers[0]);
            escrow.topUp{value: amount + fee}(leaseId, amount, u.ckpt, u.lastHash);
        } else if (fn == 3) {
            vm.prank(buyers[0]);
            escrow.dispute(leaseId, u.ckpt, u.lastHash);
        } else if (fn == 4) {
            vm.prank(stranger);
            escrow.releaseEarnings(leaseId, u.ckpt, u.lastHash);
        } else {
            vm.prank(arbiter);
            escrow.resolveDispute(leaseId, 5_000, false, u.ckpt, u.lastHash);
        }
    }

    /// @dev The next consecutive report after state `s`: a window of the last minute up to now, +500 GPU-ms
    /// busy, allocated and SM-active.
    function _next(LeaseState memory s) internal view returns (ILeaseEscrowTypes.MeteringReport memory r) {
        uint256 ck = s.ckpt;
        r = _report(
            s.leaseId,
            uint64(ck & M32) + 1,
            s.lastHash,
            uint64(block.timestamp * 1000 - 60_000),
            uint64(block.timestamp * 1000),
            _cum(((ck >> 32) & M48) + 500, ((ck >> 80) & M48) + 500, (ck >> 128) & M48, ((ck >> 176) & M48) + 500)
        );
        r.busyMs = 500;
        r.allocatedMs = 500;
        r.smActiveMs = 500;
    }

    function _locked(uint256 idx) internal view returns (uint256 locked) {
        (, locked,) = registry.rightsOf(offers[idx]);
    }
}
