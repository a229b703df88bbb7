// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Suite} from "../base/Suite.sol";
import {ILeaseEscrowTypes} from "../../src/interfaces/ILeaseEscrow.sol";
import {DynamicPricer} from "../../src/DynamicPricer.sol";
import {IDynamicPricer} from "../../src/interfaces/IDynamicPricer.sol";

/// @notice Dynamic prices (DynamicPricer): the ask is never outside [floor, ceiling] whatever the rule and the
/// leased share; a rule with floor > ceiling is refused; a lease opened from the pricer pays the ask fixed at
/// opening and its earnings reach the provider through the pricer, with money conserved.
contract DynamicPricerTest is Suite {
    DynamicPricer internal pricer;

    function setUp() public {
        _deploySuite();
        pricer = new DynamicPricer(escrow);
    }

    /// @notice The formula stays in [floor, ceiling] for any rule and any leased/minted GPU-seconds, rounds
    /// down, and is monotone in the leased share.
    function testFuzz_priceForNeverOutsideBand(uint256 floor, uint256 ceiling, uint256 taken, uint256 minted) public view {
        floor = bound(floor, 1, 2 ** 96 - 1);
        ceiling = bound(ceiling, floor, 2 ** 96 - 1);
        minted = bound(minted, 0, 2 ** 128);
        taken = bound(taken, 0, 2 ** 129);
        uint256 p = pricer.priceFor(floor, ceiling, taken, minted);
        assertGe(p, floor, "at least the floor");
        assertLe(p, ceiling, "at most the ceiling");
        if (minted != 0 && taken <= minted) {
            assertEq(p, floor + ((ceiling - floor) * taken) / minted, "floor + (ceiling - floor) * share, rounded down");
            if (taken < minted) assertLe(p, pricer.priceFor(floor, ceiling, taken + 1, minted), "monotone");
        }
    }

    /// @notice A rule with floor > ceiling, floor 0 or a bound of 96 bits is refused with DynamicPricerBadRule.
    function testFuzz_badRuleRefused(uint256 floor, uint256 ceiling) public {
        vm.assume(floor == 0 || floor > ceiling || ceiling >= 2 ** 96);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IDynamicPricer.DynamicPricerBadRule.selector, floor, ceiling));
        pricer.setRule(offers[0], floor, ceiling);
    }

    /// @notice Only the offer's provider side sets a rule; only the rule's owner deposits rights.
    function test_onlyProviderSetsRuleAndDeposits() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IDynamicPricer.DynamicPricerNotOwner.selector, offers[0], stranger));
        pricer.setRule(offers[0], 1, 2);
        vm.prank(reseller); // holds rights of the offer, but is not its provider: no rule, no deposit
        vm.expectRevert();
        registry.safeTransferFrom(reseller, address(pricer), offers[0], 1, "");
    }

    /// @notice Over arbitrary rules and leased shares (a lease of any length taken from the offer's rights),
    /// the pricer's registry ask after reprice is inside [floor, ceiling], and a lease opened from the pricer is
    /// fixed at that ask.
    function testFuzz_askNeverOutsideBand(uint256 floor, uint256 ceiling, uint32 leasedS, uint32 nextS) public {
        floor = bound(floor, 1, 1e12);
        ceiling = bound(ceiling, floor, 1e12);
        uint256 offerId = offers[1]; // ETH, metered, 1 GPU
        _deposit(offerId, floor, ceiling);
        uint256 held = registry.balanceOf(address(pricer), offerId);
        leasedS = uint32(bound(leasedS, 1, held - 1));
        _openFromPricer(buyers[0], offerId, leasedS);
        uint256 price = pricer.reprice(offerId);
        uint256 ask = registry.askOf(offerId, address(pricer));
        assertEq(ask, price, "ask = rule's price");
        assertGe(ask, floor, "ask >= floor");
        assertLe(ask, ceiling, "ask <= ceiling");
        (uint256 minted,,) = registry.rightsOf(offerId);
        assertEq(ask, floor + ((ceiling - floor) * leasedS) / minted, "share of the window leased");
        // and the offer the escrow prices a lease by carries it
        nextS = uint32(bound(nextS, 1, 1 days));
        assertEq(registry.offerFor(offerId, address(pricer), nextS).pricePerGpuSecond, ask, "offerFor");
    }

    /// @notice Replacing a rule reprices; a narrower band never leaves the old ask standing, and endRule
    /// withdraws the ask and returns the unlocked rights.
    function test_ruleChangeAndEnd() public {
        uint256 offerId = offers[1];
        _deposit(offerId, 100, 200);
        assertEq(registry.askOf(offerId, address(pricer)), 100, "nothing leased: the floor");
        vm.prank(provider);
        pricer.setRule(offerId, 300, 400);
        assertEq(registry.askOf(offerId, address(pricer)), 300, "new floor");
        uint256 held = registry.balanceOf(address(pricer), offerId);
        uint256 before = registry.balanceOf(provider, offerId);
        vm.prank(provider);
        pricer.endRule(offerId);
        assertEq(registry.askOf(offerId, address(pricer)), 0, "ask withdrawn");
        assertEq(registry.balanceOf(provider, offerId) - before, held, "rights back");
        vm.expectRevert(abi.encodeWithSelector(IDynamicPricer.DynamicPricerNoRule.selector, offerId));
        pricer.reprice(offerId);
    }

    /// @notice Adversarial: a rule replaced while every right of the pricer is locked by a lease (so it cannot
    /// list) must not leave the old ask standing outside the new band: the ask is withdrawn, and when the rights
    /// come back the next reprice lists them inside the new band. Nobody else can set the pricer's ask.
    function test_noStaleAskOutsideANewBand() public {
        uint256 offerId = offers[1];
        _deposit(offerId, 100, 200);
        uint32 all = uint32(registry.balanceOf(address(pricer), offerId));
        (uint256 leaseId,) = _openFromPricer(buyers[0], offerId, all);
        assertEq(registry.balanceOf(address(pricer), offerId), 0, "every right locked");
        vm.prank(provider);
        pricer.setRule(offerId, 1_000, 2_000);
        assertEq(registry.askOf(offerId, address(pricer)), 0, "the old ask (100, below the new floor) withdrawn");
        assertEq(registry.offerFor(offerId, address(pricer), 1).pricePerGpuSecond, ETH_PRICE, "no ask: the offer's price");
        vm.prank(stranger); // listRights only ever sets the caller's own ask (here refused: it holds no rights)
        vm.expectRevert();
        registry.listRights(offerId, 1);
        LeaseState memory s = _state(leaseId);
        vm.prank(buyers[0]);
        escrow.closeLease(leaseId, s.ckpt, s.lastHash); // before it started: every right comes back
        uint256 price = pricer.reprice(offerId);
        assertEq(price, 1_000, "nothing used: the new floor");
        assertEq(registry.askOf(offerId, address(pricer)), price, "listed in the new band");
    }

    /// @notice A lease opened from the pricer pays the dynamic ask fixed at opening; the provider is paid
    /// through the pricer; ETH is conserved (paid in = escrow + pricer holdings + withdrawn).
    function test_leaseAtDynamicPricePaysProviderThroughPricer() public {
        uint256 offerId = offers[1]; // ETH, metered, 1 GPU
        (uint256 minted,,) = registry.rightsOf(offerId);
        _deposit(offerId, 1e9, 3e9);
        (uint256 leaseA,) = _openFromPricer(buyers[0], offerId, 600);
        assertEq(escrow.lease(leaseA).pricePerGpuSecond, 1e9, "first lease at the floor");
        _runToEnd(leaseA, 600);
        uint256 price = pricer.reprice(offerId);
        assertEq(price, 1e9 + (2e9 * 600) / minted, "repriced by the leased share");
        (uint256 leaseB, uint256 totalB) = _openFromPricer(buyers[1], offerId, 100);
        pricer.reprice(offerId); // repricing later does not touch an open lease
        assertEq(escrow.lease(leaseB).pricePerGpuSecond, price, "fixed at opening");
        assertEq(escrow.lease(leaseB).escrowed + escrow.lease(leaseB).feeHeld, totalB, "paid the quote");
        uint256 charged = _runToEnd(leaseB, 100);
        assertEq(charged, price * 100, "charged at the dynamic price");

        LeaseState memory sa = _state(leaseA);
        LeaseState memory sb = _state(leaseB);
        uint256 a = pricer.claim(leaseA, sa.ckpt, sa.lastHash);
        uint256 b = pricer.claim(leaseB, sb.ckpt, sb.lastHash);
        assertEq(a, 1e9 * 600, "lease A's earnings");
        assertEq(b, price * 100, "lease B's earnings");
        vm.expectRevert(abi.encodeWithSelector(IDynamicPricer.DynamicPricerNothingToClaim.selector, leaseA));
        pricer.claim(leaseA, sa.ckpt, sa.lastHash);
        assertEq(pricer.owed(provider, address(0)), a + b, "owed to the provider");
        assertEq(
            address(pricer).balance + escrow.withdrawable(address(pricer), address(0)), pricer.liabilities(address(0)),
            "pricer's assets = its liabilities"
        );
        uint256 before = provider.balance;
        vm.prank(provider);
        assertEq(pricer.withdraw(address(0)), a + b, "withdrawn");
        assertEq(provider.balance - before, a + b, "provider paid");
        assertEq(address(pricer).balance, 0, "pricer keeps nothing");
        assertEq(pricer.liabilities(address(0)), 0, "nothing owed");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IDynamicPricer.DynamicPricerNothingToWithdraw.selector, provider, address(0)));
        pricer.withdraw(address(0));
    }

    // --- helpers ------------------------------------------------------------------------------------

    function _deposit(uint256 offerId, uint256 floor, uint256 ceiling) internal {
        vm.prank(provider);
        pricer.setRule(offerId, floor, ceiling);
        uint256 amount = registry.balanceOf(provider, offerId);
        vm.prank(provider);
        registry.safeTransferFrom(provider, address(pricer), offerId, amount, "");
    }

    function _openFromPricer(address buyer, uint256 offerId, uint32 durationS)
        internal
        returns (uint256 leaseId, uint256 total)
    {
        uint256 escrowed = registry.offerFor(offerId, address(pricer), durationS).pricePerGpuSecond * durationS;
        total = escrowed + (escrowed * escrow.feeBpsFor(provider)) / 10_000;
        vm.deal(buyer, total);
        vm.prank(buyer);
        leaseId = escrow.openLease{value: total}(offerId, address(pricer), durationS, uint64(block.timestamp + 60), total);
    }

    /// @dev Activates, settles the whole lease as busy (one report), waits out the challenge, releases.
    function _runToEnd(uint256 leaseId, uint32 durationS) internal returns (uint256 charged) {
        vm.prank(provider);
        escrow.activateLease(leaseId);
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        vm.warp(block.timestamp + durationS);
        uint64 ms = uint64(durationS) * 1000;
        ILeaseEscrowTypes.MeteringReport memory r =
            _report(leaseId, 1, bytes32(0), l.startMs, l.startMs + ms, Cum(ms, ms, 0, 0));
        r.busyMs = ms;
        r.allocatedMs = ms;
        Outcome memory o = _submit(_entry(ATTESTOR_PK, r, _state(leaseId), false), false);
        assertTrue(o.ok, "settled");
        vm.warp(block.timestamp + CHALLENGE_S);
        LeaseState memory s = _state(leaseId);
        charged = _checkpoint(leaseId).charged;
        escrow.releaseEarnings(leaseId, s.ckpt, s.lastHash);
    }
}
