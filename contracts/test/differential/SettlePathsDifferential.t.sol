// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Suite} from "../base/Suite.sol";
import {Vm} from "../base/TestBase.sol";
import {ILeaseEscrowTypes} from "../../src/interfaces/ILeaseEscrow.sol";
import {LeaseEscrowPathsHarness} from "./LeaseEscrowPathsHarness.sol";

/// @notice Differential test of settlement's two paths: the assembly fast path (`_fastSettle`) and the checked
/// Solidity path (`_settleOne`), each run alone on a copy of the same state (vm.snapshotState / revertToState)
/// with the same fuzzed entry on a lease of any billing mode (reserved, metered, SM-active), valid or broken in
/// one way (stale state, lease not Active, replayed seq, broken hash chain, window ending at or before the lease
/// start / past the lease / in the future, one of the four counters going down, busy above allocated,
/// allocated or SM-active time over capacity, energy over cap, bad / foreign / malleable signature, unknown
/// lease, a report exhausting the escrow), or valid with its window ending before the last settled one (v2
/// does not compare windows). They must agree: accept the same entries with the same record (charge included)
/// and the same state written, and reject the same, the fast path writing nothing when it declines. The one
/// entry the fast path leaves to the checked path by design is the one that exhausts the lease.
contract SettlePathsDifferentialTest is Suite {
    uint256 internal constant OTHER_PK = 0xB0B5EC;
    /// @dev Node B's attestor (node A keeps the suite's): a fast path that kept the wrong node's memo would check
    /// the wrong signer.
    uint256 internal constant ATTESTOR_B_PK = 0xA11CE6;
    uint256 internal constant LEASE_S = 7200;
    /// @dev secp256k1 order / 2: ECDSA accepts s up to this.
    uint256 internal constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 internal constant SETTLED_FLAG = 1 << 255;
    uint256 internal constant KINDS = 18;

    /// @dev What broke the entry (0: nothing; 16: nothing either, but it bills the whole escrow; 17: nothing
    /// either, but its window ends before the last settled one).
    enum Kind {
        Valid,
        StaleState,
        NotActive,
        SeqNotAdvancing,
        BrokenChain,
        WindowNotAfterStart,
        BusyAboveAllocated,
        WindowPastLease,
        WindowInFuture,
        CounterDecreased,
        TimeOverCapacity,
        EnergyOverCap,
        BadSignature,
        ForeignSigner,
        MalleableSignature,
        UnknownLease,
        Exhausting,
        EarlierWindow
    }

    /// @dev Fuzzed choices of one entry; each field is bounded where it is used.
    struct Draw {
        uint256 lease;
        uint256 warp;
        uint256 start;
        uint256 end;
        uint256 busy;
        uint256 alloc;
        uint256 energy;
        uint256 gap;
        uint256 twist;
        uint256 edges;
        uint256 memo;
        bool withLast;
    }

    /// @dev One path's result.
    struct Run {
        bool settled;
        bytes record;
        uint256 memo;
        bytes32 stateHash;
        uint256 terms;
        uint256 buyerCredit;
    }

    LeaseEscrowPathsHarness internal paths;
    /// @dev One lease per offer (2-GPU reserved, metered, token reserved, token metered, SM-active), all
    /// Active; 0, 2 and 4 have a settled checkpoint.
    uint256[N_OFFERS] internal leases;
    /// @dev End of each lease's last settled window (the checkpoint no longer holds it).
    mapping(uint256 leaseId => uint256) internal lastEnd;

    /// @dev The harness is over EIP-170's size: run its constructor as a call at a fixed address and install
    /// the code it returns (immutables included) there, as forge-std's deployCodeTo does.
    function _newEscrow(address extension_) internal override returns (address escrowAt) {
        escrowAt = address(uint160(uint256(keccak256("LeaseEscrowPathsHarness"))));
        vm.etch(
            escrowAt,
            abi.encodePacked(
                type(LeaseEscrowPathsHarness).creationCode,
                abi.encode(admin, registry, reputation, treasury, CHALLENGE_S, FEE_BPS, extension_)
            )
        );
        (bool ok, bytes memory runtime) = escrowAt.call("");
        assertTrue(ok, "harness constructor");
        vm.etch(escrowAt, runtime);
    }

    function setUp() public {
        _deploySuite();
        paths = LeaseEscrowPathsHarness(payable(address(escrow)));
        vm.prank(provider);
        registry.rotateAttestor(nodeB, vm.addr(ATTESTOR_B_PK));
        for (uint256 i; i < N_OFFERS; ++i) {
            (leases[i],) = _open(buyers[i % 3], i, provider, uint32(LEASE_S), uint64(block.timestamp + 60));
            vm.prank(provider);
            escrow.activateLease(leases[i]);
            lastEnd[leases[i]] = escrow.lease(leases[i]).startMs;
        }
        vm.warp(block.timestamp + 600);
        for (uint256 i; i < N_OFFERS; i += 2) {
            ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leases[i]);
            uint64 toMs = uint64(block.timestamp * 1000);
            // counters at a fraction of the capacity so far, so an earlier window end can still hold them
            uint64 cap = uint64((toMs - l.startMs) * l.gpuCount);
            ILeaseEscrowTypes.MeteringReport memory r =
                _report(leases[i], 1, bytes32(0), l.startMs, toMs, Cum(cap / 4, cap / 2, cap / 4, (cap * 3) / 8));
            assertTrue(_submit(_entry(_attestorKey(l.nodeId), r, _state(leases[i]), false), false).ok, "first checkpoint");
            lastEnd[leases[i]] = toMs;
        }
    }

    /// @notice Both paths, run alone on the same state and the same fuzzed entry, accept, charge, write and
    /// reject alike; and each kind of entry gets the verdict it should (valid: settled; broken: rejected).
    /// forge-config: default.fuzz.runs = 2048
    function testFuzz_fastAndCheckedPathsAgree(uint8 kind, Draw memory d) public {
        // about half the entries valid, the rest broken one way each
        uint256 k = kind % 32;
        _differential(Kind(k < KINDS ? k : 0), d);
    }

    /// @notice Every kind of entry at least once, with fixed draws (the fuzz test spreads them at random).
    function test_fastAndCheckedPathsAgreeOnEveryKind() public {
        for (uint256 k; k < KINDS; ++k) {
            uint256 snap = vm.snapshotState();
            Draw memory d = Draw({
                lease: k,
                warp: 600 + k * 97,
                start: k * 7,
                end: k * 31_337,
                busy: k * 11,
                alloc: k * 13,
                energy: k * 17,
                gap: k,
                twist: k * 19,
                edges: k,
                memo: k,
                withLast: k % 2 == 1
            });
            _differential(Kind(k), d);
            vm.revertToState(snap);
        }
    }

    // --- the comparison ---------------------------------------------------------------------------

    function _differential(Kind kind, Draw memory d) internal {
        (bytes memory entry, uint256 leaseId, uint256 memo) = _build(kind, d);
        address buyer = escrow.lease(leaseId).buyer;
        Run memory before;
        _observe(before, leaseId, buyer);

        uint256 snap = vm.snapshotState();
        Run memory fast;
        (fast.memo, fast.record) = paths.fastPath(entry, memo);
        fast.settled = fast.memo & SETTLED_FLAG != 0;
        _observe(fast, leaseId, buyer);
        vm.revertToState(snap);
        Run memory checked;
        vm.recordLogs();
        (checked.settled, checked.record) = paths.checkedPath(entry);
        bytes4 reason = _skipReason(vm.getRecordedLogs());
        _observe(checked, leaseId, buyer);

        bool exhausted = checked.settled && _status(checked.terms) == ILeaseEscrowTypes.LeaseStatus.Exhausted;
        if (fast.settled) {
            assertTrue(checked.settled, "fast settled what checked rejects");
            assertEq(keccak256(fast.record), keccak256(checked.record), "same record (hash, ckpt, charge)");
            assertEq(fast.stateHash, checked.stateHash, "same state commitment written");
            assertEq(fast.terms, checked.terms, "same terms");
            assertTrue(!exhausted, "fast settled an exhausting report");
            assertEq(fast.buyerCredit, before.buyerCredit, "settling moves no money");
            assertEq(checked.buyerCredit, before.buyerCredit, "settling moves no money");
            _assertMemo(fast.memo, leaseId);
        } else {
            assertEq(fast.stateHash, before.stateHash, "a declining fast path writes nothing");
            assertEq(fast.terms, before.terms, "a declining fast path writes nothing");
            assertEq(fast.buyerCredit, before.buyerCredit, "a declining fast path moves no money");
            if (checked.settled) {
                assertTrue(exhausted, "checked settled what fast declined, not exhausting");
            } else {
                assertEq(checked.stateHash, before.stateHash, "a rejecting checked path writes nothing");
                assertEq(checked.terms, before.terms, "a rejecting checked path writes nothing");
                assertEq(checked.buyerCredit, before.buyerCredit, "a rejecting checked path moves no money");
            }
        }
        // the verdict the entry deserves
        if (kind == Kind.Valid || kind == Kind.EarlierWindow) {
            assertTrue(checked.settled, "valid entry settled");
        } else if (kind == Kind.Exhausting) {
            assertTrue(exhausted && !fast.settled, "exhausting entry: checked path ends the lease");
        } else {
            assertTrue(!checked.settled && !fast.settled, "broken entry rejected");
            // rejected for the break it has, so each of the fast path's checks meets its own entries
            (bytes4 want, bytes4 orWant) = _reasons(kind);
            assertTrue(reason == want || reason == orWant, "rejected for its break");
        }
    }

    /// @dev The reason of the CheckpointSkipped the checked path emitted (0 if none).
    function _skipReason(Vm.Log[] memory logs) internal view returns (bytes4 reason) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(escrow) && logs[i].topics[0] == CHECKPOINT_SKIPPED) {
                (, reason) = abi.decode(logs[i].data, (uint64, bytes4));
            }
        }
    }

    /// @dev The custom error(s) the checked path names for an entry broken as `kind` says.
    function _reasons(Kind kind) internal pure returns (bytes4, bytes4) {
        if (kind == Kind.StaleState) return (ILeaseEscrowTypes.LeaseEscrowStaleState.selector, 0);
        if (kind == Kind.NotActive) return (ILeaseEscrowTypes.LeaseEscrowBadStatus.selector, 0);
        if (kind == Kind.SeqNotAdvancing) return (ILeaseEscrowTypes.LeaseEscrowStaleReport.selector, 0);
        if (kind == Kind.BrokenChain) return (ILeaseEscrowTypes.LeaseEscrowBrokenChain.selector, 0);
        if (kind == Kind.WindowNotAfterStart || kind == Kind.WindowPastLease) {
            return (ILeaseEscrowTypes.LeaseEscrowWindowOutsideLease.selector, 0);
        }
        if (kind == Kind.BusyAboveAllocated) return (ILeaseEscrowTypes.LeaseEscrowBusyAboveAllocated.selector, 0);
        if (kind == Kind.WindowInFuture) {
            // a window ending in the future may also end after the lease, which is checked first
            return (
                ILeaseEscrowTypes.LeaseEscrowWindowInFuture.selector,
                ILeaseEscrowTypes.LeaseEscrowWindowOutsideLease.selector
            );
        }
        if (kind == Kind.CounterDecreased) return (ILeaseEscrowTypes.LeaseEscrowCounterDecreased.selector, 0);
        if (kind == Kind.TimeOverCapacity) return (ILeaseEscrowTypes.LeaseEscrowTimeAboveCapacity.selector, 0);
        if (kind == Kind.EnergyOverCap) return (ILeaseEscrowTypes.LeaseEscrowEnergyAboveCap.selector, 0);
        if (kind == Kind.BadSignature) {
            // random (r, s): no point on the curve, or one that recovers to somebody else
            return (
                ILeaseEscrowTypes.LeaseEscrowInvalidSignature.selector,
                ILeaseEscrowTypes.LeaseEscrowWrongSigner.selector
            );
        }
        if (kind == Kind.ForeignSigner) return (ILeaseEscrowTypes.LeaseEscrowWrongSigner.selector, 0);
        if (kind == Kind.MalleableSignature) return (ILeaseEscrowTypes.LeaseEscrowMalleableSignature.selector, 0);
        return (ILeaseEscrowTypes.LeaseEscrowUnknownLease.selector, 0);
    }

    function _observe(Run memory run, uint256 leaseId, address buyer) internal view {
        run.stateHash = escrow.stateHash(leaseId);
        run.terms = _termsOf(leaseId);
        run.buyerCredit = escrow.withdrawable(buyer, address(0)) + escrow.withdrawable(buyer, address(token));
    }

    /// @dev A settling fast path returns the memo of the lease's node: (nodeId + 1) << 192 | its cache word.
    function _assertMemo(uint256 memoOut, uint256 leaseId) internal view {
        uint256 nodeId = escrow.lease(leaseId).nodeId;
        (address attestor_, uint32 power) = ext.nodeCache(nodeId);
        uint256 m = memoOut ^ SETTLED_FLAG;
        assertEq(m >> 192, nodeId + 1, "memo node");
        assertEq(m & ((1 << 192) - 1), uint256(uint160(attestor_)) | (uint256(power) << 160), "memo cache word");
    }

    function _status(uint256 terms) internal pure returns (ILeaseEscrowTypes.LeaseStatus) {
        return ILeaseEscrowTypes.LeaseStatus((terms >> 116) & 0xf);
    }

    // --- building entries ---------------------------------------------------------------------------

    /// @dev Last settled values of a lease: its checkpoint word's, and the end of its last settled window.
    struct Last {
        uint256 seq;
        uint256 busy;
        uint256 alloc;
        uint256 energy;
        uint256 sm;
        uint256 windowEnd;
    }

    function _last(LeaseState memory s) internal view returns (Last memory l) {
        uint256 ckpt = s.ckpt;
        l.seq = ckpt & M32;
        l.busy = (ckpt >> 32) & M48;
        l.alloc = (ckpt >> 80) & M48;
        l.energy = (ckpt >> 128) & M48;
        l.sm = (ckpt >> 176) & M48;
        l.windowEnd = lastEnd[s.leaseId];
    }

    function _build(Kind kind, Draw memory d) internal returns (bytes memory entry, uint256 leaseId, uint256 memo) {
        // the lease: counter-decreasing and earlier-window entries need one with a settled checkpoint
        uint256 idx = d.lease % N_OFFERS;
        if (kind == Kind.CounterDecreased || kind == Kind.EarlierWindow) idx = (idx % 3) * 2;
        leaseId = leases[idx];
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);

        // time: within the lease, or past its end for entries that need it
        if (kind == Kind.WindowPastLease || kind == Kind.Exhausting) {
            vm.warp(l.endMs / 1000 + 1 + d.warp % 3600);
        } else {
            vm.warp(block.timestamp + 1 + d.warp % (l.endMs / 1000 - block.timestamp));
        }
        if (kind == Kind.NotActive) (leaseId, l) = _notActive(idx, d.twist);
        LeaseState memory s = _state(leaseId);
        Last memory last = _last(s);
        ILeaseEscrowTypes.MeteringReport memory r = _validReport(l, s, last, d);

        _break(kind, r, l, last, d);
        if (kind == Kind.StaleState) {
            if (d.twist % 3 == 0) s.terms ^= 1 << (d.twist % 216);
            else if (d.twist % 3 == 1) s.ckpt ^= 1 << (d.twist % 256);
            else s.lastHash ^= bytes32(uint256(1) << (d.twist % 256));
            d.withLast = true; // a changed lastHash only reaches the contract as the appended word
        }
        entry = _sign(kind, r, s, d);
        memo = _memo(l.nodeId, d.memo);
    }

    /// @dev A lease that is not Active: lease `idx` closed by its buyer, or a fresh Open lease on its offer.
    function _notActive(uint256 idx, uint256 twist)
        internal
        returns (uint256 leaseId, ILeaseEscrowTypes.LeaseView memory l)
    {
        leaseId = leases[idx];
        LeaseState memory s = _state(leaseId);
        vm.prank(escrow.lease(leaseId).buyer);
        escrow.closeLease(leaseId, s.ckpt, s.lastHash);
        if (twist % 2 == 1) (leaseId,) = _open(buyers[0], idx, provider, uint32(LEASE_S), uint64(block.timestamp + 60));
        l = escrow.lease(leaseId);
    }

    /// @dev A report the escrow accepts for lease `l` in state `s` at the current time: a window ending after the
    /// last one's end (or later), counters within their bounds (busy within allocated, allocated and SM-active
    /// within capacity, energy within the cap). `d.edges` pins values to their bounds: the window end to now /
    /// the lease end, allocated, SM-active and busy time to capacity / allocated time, energy to the cap.
    function _validReport(
        ILeaseEscrowTypes.LeaseView memory l,
        LeaseState memory s,
        Last memory last,
        Draw memory d
    ) internal view returns (ILeaseEscrowTypes.MeteringReport memory r) {
        uint256 nowMs = block.timestamp * 1000;
        uint256 lo = last.windowEnd == 0 ? l.startMs : last.windowEnd; // (an Open lease: start 0)
        uint256 hi = l.startMs == 0 ? lo + 60_000 : (l.endMs < nowMs ? l.endMs : nowMs);
        if (hi <= lo) hi = lo + 1;
        uint256 end = d.edges & 1 != 0 ? hi : bound(d.end, lo + 1, hi);
        uint256 cap = l.gpuCount * (end - l.startMs);
        Cum memory c;
        c.alloc = uint64(d.edges & 2 != 0 ? cap : bound(d.alloc, last.alloc, cap));
        c.busy = uint64(d.edges & 4 != 0 ? c.alloc : bound(d.busy, last.busy, c.alloc));
        c.sm = uint64(d.edges & 16 != 0 ? cap : bound(d.busy >> 64, last.sm, cap));
        uint256 energyCap = _energyCap(cap);
        c.energy = uint64(d.edges & 8 != 0 ? energyCap : bound(d.energy, last.energy, energyCap));
        uint256 seq = last.seq + 1 + (d.gap % 4 == 0 ? d.gap % 100 : 0);
        bytes32 prev = seq == last.seq + 1 ? s.lastHash : keccak256(abi.encode("another report", d.gap));
        // the window's start is the attestor's (signed in WindowDetail, not checked on chain)
        r = _report(s.leaseId, uint64(seq), prev, uint64(lo + d.start % (end - lo)), uint64(end), c);
        r.busyMs = uint64(c.busy - last.busy);
        r.allocatedMs = uint64(c.alloc - last.alloc);
        r.energyMj = uint64(c.energy - last.energy);
        r.smActiveMs = uint64(c.sm - last.sm);
        r.tensorActiveMs = r.smActiveMs / 3;
    }

    /// @dev Breaks the valid report `r` in the way `kind` names (signatures and state words break later).
    function _break(
        Kind kind,
        ILeaseEscrowTypes.MeteringReport memory r,
        ILeaseEscrowTypes.LeaseView memory l,
        Last memory last,
        Draw memory d
    ) internal view {
        uint256 t = d.twist;
        if (kind == Kind.SeqNotAdvancing) {
            r.seq = uint64(last.seq - t % (last.seq + 1));
        } else if (kind == Kind.BrokenChain) {
            r.seq = uint64(last.seq + 1);
            r.prevReportHash = keccak256(abi.encode("not the last report", t));
        } else if (kind == Kind.WindowNotAfterStart) {
            r.windowEndMs = uint64(l.startMs - (t % 2 == 0 ? 0 : _past(t >> 1, l.startMs)));
        } else if (kind == Kind.BusyAboveAllocated) {
            r.cumBusyMs = uint64(r.cumAllocatedMs + _past(t, 100_000));
        } else if (kind == Kind.EarlierWindow) {
            // any end from the first millisecond the settled counters fit to just before the last end; the
            // counters stay as settled (they cannot grow past that earlier capacity in general)
            uint256 need = last.alloc > last.sm ? last.alloc : last.sm;
            uint256 from = l.startMs + need / l.gpuCount + 1;
            uint256 eFrom = l.startMs + (last.energy * 10_000_000) / (uint256(MAX_POWER_MW) * 10_500 * l.gpuCount) + 1;
            if (eFrom > from) from = eFrom;
            require(from < last.windowEnd, "no room for an earlier window end");
            r.windowEndMs = uint64(from + t % (last.windowEnd - from));
            r.cumBusyMs = uint64(last.busy);
            r.cumAllocatedMs = uint64(last.alloc);
            r.cumEnergyMj = uint64(last.energy);
            r.cumSmActiveMs = uint64(last.sm);
        } else if (kind == Kind.WindowPastLease) {
            r.windowEndMs = uint64(l.endMs + _past(t, block.timestamp * 1000 - l.endMs));
        } else if (kind == Kind.WindowInFuture) {
            r.windowEndMs = uint64(block.timestamp * 1000 + _past(t, 600_000));
        } else if (kind == Kind.CounterDecreased) {
            uint256 c = (t >> 8) % 4;
            if (c == 0) {
                r.cumBusyMs = uint64(last.busy - _past(t, last.busy));
            } else if (c == 1) {
                r.cumAllocatedMs = uint64(last.alloc - _past(t, last.alloc));
                if (r.cumBusyMs > r.cumAllocatedMs) r.cumBusyMs = r.cumAllocatedMs; // (may go down too)
            } else if (c == 2) {
                r.cumEnergyMj = uint64(last.energy - _past(t, last.energy));
            } else {
                r.cumSmActiveMs = uint64(last.sm - _past(t, last.sm));
            }
        } else if (kind == Kind.TimeOverCapacity) {
            uint64 over = uint64(l.gpuCount * (r.windowEndMs - l.startMs) + _past(t, 100_000));
            if ((t >> 8) % 2 == 0) r.cumSmActiveMs = over;
            else r.cumAllocatedMs = over; // busy stays within it
        } else if (kind == Kind.EnergyOverCap) {
            r.cumEnergyMj = uint64(_energyCap(l.gpuCount * (r.windowEndMs - l.startMs)) + _past(t, 100_000));
        } else if (kind == Kind.UnknownLease) {
            r.leaseId = escrow.leaseCount() + 1 + t % 1000;
        } else if (kind == Kind.Exhausting) {
            // the whole lease reported and billed: billable = gpuCount × durationS × 1000
            uint256 full = uint256(l.gpuCount) * l.durationS * 1000;
            r.windowEndMs = l.endMs;
            r.cumAllocatedMs = uint64(full);
            r.cumBusyMs = uint64(full);
            r.cumSmActiveMs = uint64(full);
            r.cumEnergyMj = uint64(_energyCap(full));
        }
    }

    /// @dev How far past a bound a broken value lies, 1..max: half the draws 1..4 (the boundary itself), the
    /// others anywhere.
    function _past(uint256 t, uint256 max) internal pure returns (uint256) {
        return 1 + (t % 2 == 0 ? (t >> 1) % 4 : (t >> 1) % max) % max;
    }

    /// @dev Signs `r` as the node's attestor (or breaks the signature as `kind` says) and packs the entry.
    function _sign(Kind kind, ILeaseEscrowTypes.MeteringReport memory r, LeaseState memory s, Draw memory d)
        internal
        view
        returns (bytes memory)
    {
        bytes32 digest = _digest(r);
        uint256 key = kind == Kind.ForeignSigner ? OTHER_PK : _attestorKey(escrow.lease(s.leaseId).nodeId);
        (bytes32 sigR, bytes32 sigVs) = _signCompact(key, digest);
        if (kind == Kind.BadSignature) {
            sigR = keccak256(abi.encode("r", d.twist));
            sigVs = bytes32(uint256(keccak256(abi.encode("s", d.twist))) >> 2); // low s, random: recovers to nobody
        } else if (kind == Kind.MalleableSignature) {
            // s in the upper half of the order (EIP-2098 leaves room for s up to 2^255 - 1)
            uint256 highS = HALF_ORDER + 1 + d.twist % ((1 << 255) - 1 - HALF_ORDER);
            sigVs = bytes32(highS | (uint256(sigVs) & (1 << 255)));
        }
        return _encodeEntry(r, sigR, sigVs, s, d.withLast || r.prevReportHash != s.lastHash);
    }

    function _attestorKey(uint256 nodeId) internal view returns (uint256) {
        return nodeId == nodeB ? ATTESTOR_B_PK : ATTESTOR_PK;
    }

    /// @dev The node memo the fast path starts from: none, this node's (as after an entry of the same node in
    /// a batch), or the other node's.
    function _memo(uint256 nodeId, uint256 sel) internal view returns (uint256) {
        if (sel % 3 == 0) return 0;
        uint256 n = sel % 3 == 1 ? nodeId : (nodeId == nodeA ? nodeB : nodeA);
        (address attestor_, uint32 power) = ext.nodeCache(n);
        return ((n + 1) << 192) | uint256(uint160(attestor_)) | (uint256(power) << 160);
    }
}
