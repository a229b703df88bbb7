// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Suite} from "../base/Suite.sol";
import {ILeaseEscrowTypes} from "../../src/interfaces/ILeaseEscrow.sol";
import {LeaseEscrowExtension} from "../../src/LeaseEscrowExtension.sol";

/// @notice Property tests of single escrow operations with fuzzed amounts: charges, fees, top-ups, disputes.
contract EscrowFuzzTest is Suite {
    LeaseEscrowExtension internal ext; // the escrow address, typed with the extension's ABI

    function setUp() public {
        _deploySuite();
        ext = LeaseEscrowExtension(address(escrow));
    }

    /// @dev Opens offer `idx` for `durationS`, activates it now and returns the lease.
    function _running(uint256 idx, uint32 durationS) internal returns (uint256 leaseId, uint256 total) {
        (leaseId, total) = _open(buyers[0], idx, provider, durationS, uint64(block.timestamp + 60));
        vm.prank(provider);
        escrow.activateLease(leaseId);
    }

    /// @dev Settles one report (seq 1, whole lease so far) with the given cumulative counters.
    function _settleFirst(uint256 leaseId, uint64 toMs, uint64 cumBusy, uint64 cumAlloc) internal returns (bytes memory err) {
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        ILeaseEscrowTypes.MeteringReport memory r = _report(leaseId, 1, bytes32(0), l.startMs, toMs, cumBusy, cumAlloc, 0);
        r.busyMs = cumBusy;
        r.allocatedMs = cumAlloc;
        try escrow.settle(_pack(r), _sign(ATTESTOR_PK, escrow.reportDigest(r))) {
            return "";
        } catch (bytes memory data) {
            return data.length == 0 ? bytes("?") : data;
        }
    }

    /// @notice The charge is price × billable / 1000, never above escrow; billing the full capacity
    /// exhausts the lease and leaves nothing to refund.
    function testFuzz_chargeNeverExceedsEscrow(uint32 durationSeed, uint256 billSeed, uint256 elapsedSeed, bool metered)
        public
    {
        uint32 duration = uint32(bound(durationSeed, 1, 3 days));
        uint256 idx = metered ? 1 : 0;
        (uint256 leaseId,) = _running(idx, duration);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        uint256 elapsedMs = bound(elapsedSeed, 1, uint256(duration) * 1000);
        vm.warp(block.timestamp + (elapsedMs + 999) / 1000);
        uint256 cap = uint256(l.gpuCount) * elapsedMs;
        uint64 bill = uint64(bound(billSeed, 0, cap));
        bytes memory err = metered
            ? _settleFirst(leaseId, uint64(l.startMs + elapsedMs), bill, 0)
            : _settleFirst(leaseId, uint64(l.startMs + elapsedMs), 0, bill);
        assertEq(err.length, 0, "valid report rejected");
        ILeaseEscrowTypes.CheckpointView memory c = escrow.checkpoint(leaseId);
        assertEq(c.charged, (l.pricePerGpuSecond * bill) / 1000, "charge = price x billable / 1000");
        assertLe(c.charged, l.escrowed, "charged <= escrowed");
        assertEq(c.remaining, l.escrowed - c.charged, "remaining");
        bool full = bill == uint256(l.gpuCount) * duration * 1000;
        ILeaseEscrowTypes.LeaseStatus st = escrow.lease(leaseId).status;
        assertTrue(full == (st == ILeaseEscrowTypes.LeaseStatus.Exhausted), "exhausted iff fully billed");
        if (full) assertEq(escrow.withdrawable(buyers[0], address(0)), 0, "nothing refunded from exhausted escrow");
    }

    /// @notice A report claiming more GPU time than gpuCount × elapsed is rejected, whatever the excess.
    function testFuzz_settleRejectsTimeAboveCapacity(uint32 durationSeed, uint256 excessSeed, bool busy) public {
        uint32 duration = uint32(bound(durationSeed, 2, 3 days));
        (uint256 leaseId,) = _running(0, duration);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        vm.warp(block.timestamp + duration);
        uint256 cap = uint256(l.gpuCount) * duration * 1000;
        uint64 over = uint64(cap + bound(excessSeed, 1, 1e12));
        bytes memory err = busy
            ? _settleFirst(leaseId, uint64(l.endMs), over, 0)
            : _settleFirst(leaseId, uint64(l.endMs), 0, over);
        assertTrue(_selector(err) == ILeaseEscrowTypes.LeaseEscrowTimeAboveCapacity.selector, "not TimeAboveCapacity");
        assertEq(escrow.checkpoint(leaseId).charged, 0, "charged after rejection");
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
        if (usedMs > 0) assertEq(_settleFirst(leaseId, uint64(l.startMs + usedMs), 0, uint64(usedMs)).length, 0, "settle");
        vm.prank(buyers[0]);
        escrow.closeLease(leaseId);
        vm.warp(block.timestamp + CHALLENGE_S);
        uint256 charged = escrow.checkpoint(leaseId).charged;
        if (charged > 0) ext.releaseEarnings(leaseId);
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
        vm.deal(buyers[2], amount + fee);
        vm.prank(buyers[2]);
        escrow.topUp{value: amount + fee}(leaseId, amount);
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
        assertEq(_settleFirst(leaseId, uint64(l.startMs + usedMs), 0, uint64(usedMs)).length, 0, "settle");
        uint256 frozen = escrow.checkpoint(leaseId).pending;
        vm.prank(buyers[0]);
        ext.dispute(leaseId);
        uint256 stakeBefore = registry.stakeOf(provider, address(0)).bonded;
        uint256 balBefore = address(escrow).balance;
        vm.prank(arbiter);
        ext.resolveDispute(leaseId, bps, fault);
        uint256 buyerShare = (frozen * bps) / 10_000;
        uint256 slashWant = fault ? (frozen * 5_000) / 10_000 : 0;
        uint256 slashed = slashWant < stakeBefore ? slashWant : stakeBefore;
        ILeaseEscrowTypes.CheckpointView memory c = escrow.checkpoint(leaseId);
        assertEq(c.refunded, buyerShare, "refunded");
        assertEq(c.paid, frozen - buyerShare, "paid");
        assertEq(c.frozen, 0, "unfrozen");
        assertEq(escrow.withdrawable(buyers[0], address(0)), buyerShare + slashed, "buyer credit");
        assertEq(escrow.withdrawable(provider, address(0)), frozen - buyerShare, "holder credit");
        assertEq(stakeBefore - registry.stakeOf(provider, address(0)).bonded, slashed, "stake slashed");
        assertEq(address(escrow).balance - balBefore, slashed, "slash moved into escrow");
    }

    function _locked(uint256 idx) internal view returns (uint256 locked) {
        (, locked,) = registry.rightsOf(offers[idx]);
    }
}
