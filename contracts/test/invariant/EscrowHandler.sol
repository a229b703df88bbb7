// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Suite} from "../base/Suite.sol";
import {ILeaseEscrowTypes} from "../../src/interfaces/ILeaseEscrow.sol";
import {ICapacityRegistry} from "../../src/interfaces/ICapacityRegistry.sol";

/// @notice The invariant fuzzer calls these actions in random order with random arguments. Each action
/// picks a lease (or actor) from the seed, skips when the action cannot apply, and otherwise drives the
/// escrow exactly as a buyer, provider, attestor, arbiter or stranger would. It deploys and owns the suite
/// (it is the admin); the invariant test reads the state through the getters below.
contract EscrowHandler is Suite {
    /// @dev The attestor's view of a lease's report chain (what it signed last and accepted on-chain).
    struct Meter {
        uint64 seq;
        bytes32 prev;
        uint64 endMs;
        uint64 cumBusy;
        uint64 cumAlloc;
        uint64 cumEnergy;
    }

    /// @dev Scratch of one settle action (keeps the stack shallow without via-IR).
    struct SettleCase {
        uint256 leaseId;
        uint8 kind;
        uint64 startMs;
        uint64 toMs;
        uint256 cap;
        uint256 oldBill;
        uint256 chargedBefore;
        bool valid;
    }

    uint256 internal constant WRONG_PK = 0xBAD5EED;

    uint256[] internal _leaseIds;
    mapping(uint256 leaseId => Meter) internal _meters;
    mapping(uint256 leaseId => uint256 offerIdx) internal _offerIdxOf;

    // --- ghosts: what entered and left the escrow, and every broken expectation ----------------------
    mapping(address token => uint256) public ghostIn;
    mapping(address token => uint256) public ghostOut;
    uint256 public ghostInvalidAccepted;
    uint256 public ghostValidRejected;
    uint256 public ghostChargeMismatch;
    uint256 public ghostDigestMismatch;
    uint256 public ghostWithdrawMismatch;
    mapping(bytes32 action => uint256) public calls;

    constructor() {
        _deploySuite();
    }

    // --- views for the invariant test ----------------------------------------------------------------

    function leaseIds() external view returns (uint256[] memory) {
        return _leaseIds;
    }

    function suite()
        external
        view
        returns (address registry_, address escrow_, address token_, address reputation_)
    {
        return (address(registry), address(escrow), address(token), address(reputation));
    }

    function offerIds() external view returns (uint256[4] memory) {
        return offers;
    }

    /// @notice Everyone who may hold rights or withdrawable balances.
    function actors() external view returns (address[] memory a) {
        a = new address[](7);
        a[0] = provider;
        a[1] = reseller;
        a[2] = treasury;
        a[3] = buyers[0];
        a[4] = buyers[1];
        a[5] = buyers[2];
        a[6] = stranger;
    }

    function stakeHolder() external view returns (address) {
        return provider;
    }

    // --- actions ---------------------------------------------------------------------------------------

    function openLease(uint256 buyerSeed, uint256 offerSeed, uint256 durationSeed, uint256 startBySeed, bool resold)
        external
    {
        uint256 idx = offerSeed % 4;
        uint256 offerId = offers[idx];
        if (escrow.liveLeaseOf(offerId) != 0) return;
        uint32 duration = uint32(bound(durationSeed, 60, 4 hours));
        uint64 startBy = uint64(block.timestamp + bound(startBySeed, 1, 8 hours));
        if (startBy + duration > t0 + OFFER_SPAN_S) return;
        address holder = resold ? reseller : provider;
        uint256 gpus = registry.offer(offerId).gpuCount;
        if (registry.balanceOf(holder, offerId) < gpus * duration) return;
        (uint256 leaseId, uint256 total) = _open(buyers[buyerSeed % 3], idx, holder, duration, startBy);
        _leaseIds.push(leaseId);
        _offerIdxOf[leaseId] = idx;
        ghostIn[_tokenOf(idx)] += total;
        calls["openLease"]++;
    }

    function activateLease(uint256 leaseSeed, bool byAttestor) external {
        (uint256 leaseId, bool found) = _pick(leaseSeed, ILeaseEscrowTypes.LeaseStatus.Open);
        if (!found) return;
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        if (block.timestamp > l.startBy) return;
        vm.prank(byAttestor ? attestor : provider);
        escrow.activateLease(leaseId);
        l = escrow.lease(leaseId);
        _meters[leaseId].endMs = l.startMs;
        calls["activateLease"]++;
    }

    /// @param kind 0-5 valid report; 6 wrong signer; 7 counter below the settled one; 8 above capacity;
    /// 9 replay of the settled seq; 10 window in the future; 11 broken hash chain.
    function settle(uint256 leaseSeed, uint256 toSeed, uint256 busySeed, uint256 allocSeed, uint256 energySeed, uint8 kind)
        external
    {
        SettleCase memory c;
        bool found;
        (c.leaseId, found) = _pick(leaseSeed, ILeaseEscrowTypes.LeaseStatus.Active);
        if (!found) return;
        c.kind = kind % 12;
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(c.leaseId);
        Meter memory m = _meters[c.leaseId];
        if (block.timestamp * 1000 <= m.endMs) vm.warp(m.endMs / 1000 + bound(toSeed, 1, 900)); // let time pass
        uint256 nowMs = block.timestamp * 1000;
        uint256 maxTo = nowMs < l.endMs ? nowMs : l.endMs;
        if (maxTo <= m.endMs) return;
        c.startMs = l.startMs;
        c.toMs = uint64(m.endMs + bound(toSeed, 1, maxTo - m.endMs));
        c.cap = uint256(l.gpuCount) * (c.toMs - c.startMs);
        ILeaseEscrowTypes.MeteringReport memory r = _build(c, m, busySeed, allocSeed, energySeed);
        uint256 pk = _corrupt(r, c, m, nowMs);
        c.oldBill = l.billingMode == 0 ? m.cumAlloc : m.cumBusy;
        c.chargedBefore = escrow.checkpoint(c.leaseId).charged;

        bytes32 digest = escrow.reportDigest(r);
        ILeaseEscrowTypes.PackedReport memory p = _pack(r);
        if (escrow.packedReportDigest(p) != digest) ghostDigestMismatch++;
        try escrow.settle(p, _sign(pk, digest)) {
            if (!c.valid) {
                ghostInvalidAccepted++;
                return;
            }
            _accept(c, r, l);
        } catch {
            if (c.valid) ghostValidRejected++;
            calls["settle.rejected"]++;
        }
    }

    function topUp(uint256 leaseSeed, uint256 secondsSeed) external {
        (uint256 leaseId, bool found) = _pickLive(leaseSeed);
        if (!found) return;
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        uint256 secs = bound(secondsSeed, 1, 1 hours);
        uint256 startS = l.status == ILeaseEscrowTypes.LeaseStatus.Active ? l.startMs / 1000 : l.startBy;
        if (startS + l.durationS + secs > t0 + OFFER_SPAN_S) return;
        if (registry.balanceOf(l.holder, l.offerId) < l.gpuCount * secs) return;
        uint256 unit = l.pricePerGpuSecond * l.gpuCount;
        uint256 amount = unit * secs;
        uint256 fee = ((l.escrowed + amount) * l.feeBps) / 10_000 - (l.escrowed * l.feeBps) / 10_000;
        if (l.token == address(0)) {
            vm.deal(l.buyer, l.buyer.balance + amount + fee);
            vm.prank(l.buyer);
            escrow.topUp{value: amount + fee}(leaseId, amount);
        } else {
            token.mint(l.buyer, amount + fee);
            vm.prank(l.buyer);
            token.approve(address(escrow), amount + fee);
            vm.prank(l.buyer);
            escrow.topUp(leaseId, amount);
        }
        ghostIn[l.token] += amount + fee;
        calls["topUp"]++;
    }

    /// @param mode 0 the buyer closes now; 1 a stranger tries now (refused before the end); 2 a stranger
    /// closes once the lease has ended
    function closeLease(uint256 leaseSeed, uint8 mode) external {
        (uint256 leaseId, bool found) = _pickLive(leaseSeed);
        if (!found) return;
        mode %= 3;
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        if (mode == 2 && l.endMs != 0 && block.timestamp * 1000 < l.endMs) vm.warp(l.endMs / 1000);
        vm.prank(mode == 0 ? l.buyer : stranger);
        try escrow.closeLease(leaseId) {
            calls["closeLease"]++;
        } catch {
            calls["closeLease.rejected"]++;
        }
    }

    function expireLease(uint256 leaseSeed) external {
        (uint256 leaseId, bool found) = _pick(leaseSeed, ILeaseEscrowTypes.LeaseStatus.Open);
        if (!found) return;
        if (block.timestamp <= escrow.lease(leaseId).startBy) return;
        vm.prank(stranger);
        escrow.expireLease(leaseId);
        calls["expireLease"]++;
    }

    function dispute(uint256 leaseSeed) external {
        (uint256 leaseId, bool found) = _pickMoney(leaseSeed, 1);
        if (!found) return;
        ILeaseEscrowTypes.CheckpointView memory ck = escrow.checkpoint(leaseId);
        if (block.timestamp >= ck.lastSettledAt + CHALLENGE_S) return;
        vm.prank(escrow.lease(leaseId).buyer);
        escrow.dispute(leaseId);
        calls["dispute"]++;
    }

    function resolveDispute(uint256 leaseSeed, uint256 bpsSeed, bool providerFault) external {
        (uint256 leaseId, bool found) = _pickMoney(leaseSeed, 2);
        if (!found) return;
        address tok = escrow.lease(leaseId).token;
        uint256 stakeBefore = _stake(tok);
        vm.prank(arbiter);
        escrow.resolveDispute(leaseId, uint16(bound(bpsSeed, 0, 10_000)), providerFault);
        ghostIn[tok] += stakeBefore - _stake(tok); // slashed stake moved into the escrow
        calls["resolveDispute"]++;
    }

    /// @param waitOut first let the challenge period of the lease's last settlement pass
    function releaseEarnings(uint256 leaseSeed, bool waitOut) external {
        (uint256 leaseId, bool found) = _pickMoney(leaseSeed, 0);
        if (!found) return;
        uint256 endsAt = escrow.checkpoint(leaseId).lastSettledAt + CHALLENGE_S;
        if (waitOut && block.timestamp < endsAt) vm.warp(endsAt);
        vm.prank(stranger);
        try escrow.releaseEarnings(leaseId) {
            calls["releaseEarnings"]++;
        } catch {
            calls["releaseEarnings.rejected"]++;
        }
    }

    function withdraw(uint256 actorSeed, bool inToken) external {
        address[] memory a = this.actors();
        address tok = inToken ? address(token) : address(0);
        address who;
        uint256 due;
        for (uint256 i; i < a.length && due == 0; ++i) {
            who = a[(actorSeed % a.length + i) % a.length];
            due = escrow.withdrawable(who, tok);
        }
        if (due == 0) return;
        uint256 before = tok == address(0) ? who.balance : token.balanceOf(who);
        vm.prank(who);
        uint256 got = escrow.withdraw(tok);
        uint256 afterBal = tok == address(0) ? who.balance : token.balanceOf(who);
        if (got != due || afterBal - before != due || escrow.withdrawable(who, tok) != 0) ghostWithdrawMismatch++;
        ghostOut[tok] += got;
        calls["withdraw"]++;
    }

    function warp(uint256 secondsSeed) external {
        vm.warp(block.timestamp + bound(secondsSeed, 1, 2 hours));
        calls["warp"]++;
    }

    // --- internals -------------------------------------------------------------------------------------

    /// @dev The next valid report of the chain `m`: counters grow by random amounts within the caps.
    function _build(SettleCase memory c, Meter memory m, uint256 busySeed, uint256 allocSeed, uint256 energySeed)
        internal
        view
        returns (ILeaseEscrowTypes.MeteringReport memory r)
    {
        r = _report(c.leaseId, m.seq + 1, m.prev, m.endMs, c.toMs, 0, 0, 0);
        r.cumBusyMs = uint64(m.cumBusy + bound(busySeed, 0, c.cap - m.cumBusy));
        r.cumAllocatedMs = uint64(m.cumAlloc + bound(allocSeed, 0, c.cap - m.cumAlloc));
        r.cumEnergyMj = uint64(m.cumEnergy + bound(energySeed, 0, _energyCap(c.cap) - m.cumEnergy));
        r.busyMs = r.cumBusyMs - m.cumBusy;
        r.allocatedMs = r.cumAllocatedMs - m.cumAlloc;
        r.energyMj = r.cumEnergyMj - m.cumEnergy;
    }

    /// @dev Applies the corruption `c.kind` asks for; returns the signing key and sets `c.valid`.
    function _corrupt(
        ILeaseEscrowTypes.MeteringReport memory r,
        SettleCase memory c,
        Meter memory m,
        uint256 nowMs
    ) internal pure returns (uint256 pk) {
        pk = ATTESTOR_PK;
        c.valid = false;
        if (c.kind == 6) {
            pk = WRONG_PK;
        } else if (c.kind == 7 && m.cumAlloc > 0) {
            r.cumAllocatedMs = m.cumAlloc - 1;
        } else if (c.kind == 8) {
            r.cumBusyMs = uint64(c.cap + 1);
        } else if (c.kind == 9 && m.seq > 0) {
            r.seq = m.seq;
        } else if (c.kind == 10) {
            r.windowEndMs = uint64(nowMs + 1000);
        } else if (c.kind == 11) {
            r.prevReportHash = keccak256(abi.encode(m.prev));
        } else {
            c.valid = true;
        }
    }

    function _accept(SettleCase memory c, ILeaseEscrowTypes.MeteringReport memory r, ILeaseEscrowTypes.LeaseView memory l)
        internal
    {
        _meters[c.leaseId] = Meter({
            seq: r.seq,
            prev: escrow.hashReport(r),
            endMs: r.windowEndMs,
            cumBusy: r.cumBusyMs,
            cumAlloc: r.cumAllocatedMs,
            cumEnergy: r.cumEnergyMj
        });
        uint256 newBill = l.billingMode == 0 ? r.cumAllocatedMs : r.cumBusyMs;
        uint256 want = (l.pricePerGpuSecond * newBill) / 1000 - (l.pricePerGpuSecond * c.oldBill) / 1000;
        if (escrow.checkpoint(c.leaseId).charged - c.chargedBefore != want) ghostChargeMismatch++;
        calls["settle"]++;
    }

    function _pick(uint256 seed, ILeaseEscrowTypes.LeaseStatus want) internal view returns (uint256, bool) {
        uint256 n = _leaseIds.length;
        for (uint256 i; i < n; ++i) {
            uint256 id = _leaseIds[(seed % n + i) % n];
            if (escrow.lease(id).status == want) return (id, true);
        }
        return (0, false);
    }

    /// @dev A lease with money in play: need 0 = pending, 1 = pending and not frozen, 2 = frozen.
    function _pickMoney(uint256 seed, uint8 need) internal view returns (uint256, bool) {
        uint256 n = _leaseIds.length;
        for (uint256 i; i < n; ++i) {
            uint256 id = _leaseIds[(seed % n + i) % n];
            ILeaseEscrowTypes.CheckpointView memory c = escrow.checkpoint(id);
            bool ok = need == 0 ? c.pending != 0 : need == 1 ? c.pending != 0 && c.frozen == 0 : c.frozen != 0;
            if (ok) return (id, true);
        }
        return (0, false);
    }

    function _pickLive(uint256 seed) internal view returns (uint256, bool) {
        uint256 n = _leaseIds.length;
        for (uint256 i; i < n; ++i) {
            uint256 id = _leaseIds[(seed % n + i) % n];
            ILeaseEscrowTypes.LeaseStatus st = escrow.lease(id).status;
            if (st == ILeaseEscrowTypes.LeaseStatus.Open || st == ILeaseEscrowTypes.LeaseStatus.Active) return (id, true);
        }
        return (0, false);
    }

    function _tokenOf(uint256 idx) internal view returns (address) {
        return idx < 2 ? address(0) : address(token);
    }

    function _stake(address tok) internal view returns (uint256) {
        ICapacityRegistry.Stake memory s = registry.stakeOf(provider, tok);
        return s.bonded + s.unbonding;
    }
}
