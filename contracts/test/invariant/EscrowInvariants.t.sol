// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "../base/TestBase.sol";
import {console} from "../base/Console.sol";
import {EscrowHandler} from "./EscrowHandler.sol";
import {CapacityRegistry} from "../../src/CapacityRegistry.sol";
import {ICapacityRegistry} from "../../src/interfaces/ICapacityRegistry.sol";
import {ILeaseEscrow, ILeaseEscrowTypes} from "../../src/interfaces/ILeaseEscrow.sol";
import {MockERC20} from "../../src/test/MockERC20.sol";

/// @notice Money, rights and state-commitment invariants of the escrow under random sequences of handler
/// actions (open, activate, settle and settleBatch valid and corrupted packed entries, top-up, close, expire,
/// dispute, resolve, release, withdraw, pause, time travel) on leases of every billing mode (reserved,
/// metered, SM-active; ETH and a token). Checked after every call. The handler tracks
/// each lease's (ckpt, lastReportHash) from the settlement events' records, as a client does, and passes it
/// to every call that takes the lease state.
contract EscrowInvariantsTest is TestBase {
    EscrowHandler internal handler;
    CapacityRegistry internal registry;
    ILeaseEscrow internal escrow;
    MockERC20 internal token;

    function setUp() public {
        handler = new EscrowHandler();
        (address r, address e, address t,) = handler.suite();
        registry = CapacityRegistry(r);
        escrow = ILeaseEscrow(e);
        token = MockERC20(t);
        targetContract(address(handler));
    }

    // --- invariants ----------------------------------------------------------------------------------

    /// @dev balance = Σ uncharged escrow of live leases + Σ fee held and not yet split + Σ pending
    /// (charged, neither released nor refunded; includes frozen) + Σ withdrawable, for ETH and the token.
    function invariant_conservation() public view {
        _checkConservation(address(0));
        _checkConservation(address(token));
    }

    /// @dev What the escrow holds is exactly what entered (payments, slashed stake) minus what was withdrawn.
    function invariant_ghostFlow() public view {
        assertEq(address(escrow).balance, handler.ghostIn(address(0)) - handler.ghostOut(address(0)), "eth flow");
        assertEq(
            token.balanceOf(address(escrow)),
            handler.ghostIn(address(token)) - handler.ghostOut(address(token)),
            "token flow"
        );
    }

    /// @dev The registry holds exactly the provider's stakes (bonded + unbonding) in each token.
    function invariant_stakes() public view {
        address p = handler.stakeHolder();
        ICapacityRegistry.Stake memory se = registry.stakeOf(p, address(0));
        ICapacityRegistry.Stake memory st = registry.stakeOf(p, address(token));
        assertEq(address(registry).balance, se.bonded + se.unbonding, "eth stake");
        assertEq(token.balanceOf(address(registry)), st.bonded + st.unbonding, "token stake");
    }

    /// @dev Per offer: minted = held + locked + burned, and locked = the live lease's gpuCount × durationS.
    function invariant_rights() public view {
        uint256[5] memory offerIds = handler.offerIds();
        address[] memory actors = handler.actors();
        for (uint256 i; i < offerIds.length; ++i) {
            (uint256 minted, uint256 locked, uint256 burned) = registry.rightsOf(offerIds[i]);
            uint256 held;
            for (uint256 j; j < actors.length; ++j) {
                held += registry.balanceOf(actors[j], offerIds[i]);
            }
            assertEq(minted, held + locked + burned, "minted = held + locked + burned");
            assertEq(registry.balanceOf(address(registry), offerIds[i]), locked, "locked sits in the registry");
            uint256 live = escrow.liveLeaseOf(offerIds[i]);
            uint256 want;
            if (live != 0) {
                ILeaseEscrowTypes.LeaseView memory l = escrow.lease(live);
                want = uint256(l.gpuCount) * l.durationS;
            }
            assertEq(locked, want, "locked = live lease rights");
        }
    }

    /// @dev Nobody is paid beyond escrow: charged <= escrowed, paid + refunded + pending = charged,
    /// frozen <= pending, and a finished lease holds no uncharged escrow.
    function invariant_neverBeyondEscrow() public view {
        uint256[] memory ids = handler.leaseIds();
        for (uint256 i; i < ids.length; ++i) {
            ILeaseEscrowTypes.LeaseView memory l = escrow.lease(ids[i]);
            ILeaseEscrowTypes.CheckpointView memory c = _checkpoint(ids[i]);
            assertLe(c.charged, l.escrowed, "charged <= escrowed");
            assertEq(c.paid + c.refunded + c.pending, c.charged, "paid + refunded + pending = charged");
            assertLe(c.frozen, c.pending, "frozen <= pending");
            assertEq(c.remaining, l.escrowed - c.charged, "remaining = escrowed - charged");
            assertEq(l.escrowed, l.pricePerGpuSecond * l.gpuCount * l.durationS, "escrow = price x gpus x duration");
            if (l.status == ILeaseEscrowTypes.LeaseStatus.Exhausted) assertEq(c.charged, l.escrowed, "exhausted");
            if (l.status == ILeaseEscrowTypes.LeaseStatus.Open || l.status == ILeaseEscrowTypes.LeaseStatus.Expired) {
                assertEq(c.charged, 0, "never-started lease charged");
            }
        }
    }

    /// @dev Every valid report settles with charge = price × Δbillable / 1000 and a record holding its struct
    /// hash and the ckpt built from it, every corrupted one is rejected (skipped in a batch) with its precise
    /// error, a batch settles exactly its valid entries in one event, the struct, packed-entry and test-built
    /// digests agree, and withdrawals pay exactly what was due.
    function invariant_settlementChecks() public view {
        assertEq(handler.ghostInvalidAccepted(), 0, "corrupted report accepted");
        assertEq(handler.ghostValidRejected(), 0, "valid report rejected");
        assertEq(handler.ghostWrongError(), 0, "rejected with the wrong error");
        assertEq(handler.ghostChargeMismatch(), 0, "charge != price x delta / 1000");
        assertEq(handler.ghostRecordMismatch(), 0, "record != (leaseId, struct hash, rebuilt ckpt)");
        assertEq(handler.ghostBatchMismatch(), 0, "batch settled / skipped the wrong entries");
        assertEq(handler.ghostDigestMismatch(), 0, "entry digest != struct digest");
        assertEq(handler.ghostWithdrawMismatch(), 0, "withdraw paid != withdrawable");
    }

    /// @dev The state tracked from the CheckpointsSettled records is the committed one for every lease:
    /// stateHash(id) = keccak256(abi.encode(terms, ckpt, lastReportHash)), terms = leaseTerms(id), never zero;
    /// and it agrees with the lease view (status, duration, start) and the checkpoint view.
    function invariant_stateCommitment() public view {
        uint256[] memory ids = handler.leaseIds();
        (uint256[] memory terms, bytes32[] memory hashes) = escrow.leaseTerms(ids);
        for (uint256 i; i < ids.length; ++i) {
            (uint256 t, uint256 ck, bytes32 last) = handler.stateOf(ids[i]);
            assertEq(t, terms[i], "tracked terms = leaseTerms");
            assertEq(escrow.stateHash(ids[i]), hashes[i], "leaseTerms hash = stateHash");
            assertTrue(hashes[i] != bytes32(0), "commitment never zero");
            assertEq(keccak256(abi.encode(t, ck, last)), hashes[i], "stateHash = keccak(terms, ckpt, lastHash)");
            ILeaseEscrowTypes.LeaseView memory l = escrow.lease(ids[i]);
            assertEq((t >> 116) & 0xf, uint256(l.status), "terms status");
            assertEq((t >> 64) & 0xffffffff, l.durationS, "terms duration");
            assertEq(((t >> 32) & 0xffffffff) * 1000, l.startMs, "terms start");
            ILeaseEscrowTypes.CheckpointView memory c = escrow.checkpoint(ids[i], ck, last);
            assertEq(c.lastSeq, ck & 0xffffffff, "checkpoint seq");
            assertEq(c.lastReportHash, last, "checkpoint hash");
            if (l.startMs == 0) {
                assertEq(ck, 0, "never started: no checkpoint");
            } else {
                assertLe(c.lastSettledAt, block.timestamp, "settled in the past");
                assertGe(c.lastSettledAt * 1000, l.startMs, "settled after the start");
            }
            if (c.lastSeq == 0) assertEq(last, bytes32(0), "no report: zero hash");
        }
    }

    /// @dev The v2 cumulative bounds hold for every lease's settled checkpoint, whatever it bills: busy <=
    /// allocated <= gpuCount × (min(now, lease end) − start), SM-active within the same capacity, energy within
    /// the power cap (+ margin) of that capacity; and what was charged is price × the billing mode's counter
    /// (allocated, busy or SM-active) / 1000, so no lease is charged for GPU time that has not passed.
    function invariant_cumulativeBounds() public view {
        uint256[] memory ids = handler.leaseIds();
        for (uint256 i; i < ids.length; ++i) {
            ILeaseEscrowTypes.LeaseView memory l = escrow.lease(ids[i]);
            ILeaseEscrowTypes.CheckpointView memory c = _checkpoint(ids[i]);
            uint256 elapsed;
            if (l.startMs != 0) {
                uint256 to = block.timestamp * 1000 < l.endMs ? block.timestamp * 1000 : l.endMs;
                elapsed = to > l.startMs ? to - l.startMs : 0;
            }
            uint256 cap = uint256(l.gpuCount) * elapsed;
            assertLe(c.cumBusyMs, c.cumAllocatedMs, "busy <= allocated");
            assertLe(c.cumAllocatedMs, cap, "allocated <= capacity so far");
            assertLe(c.cumSmActiveMs, cap, "SM-active <= capacity so far");
            assertLe(c.cumEnergyMj, (uint256(700_000) * cap * 10_500) / 10_000_000, "energy <= power cap");
            uint256 bill = l.billingMode == 0 ? c.cumAllocatedMs : l.billingMode == 1 ? c.cumBusyMs : c.cumSmActiveMs;
            assertLe(l.billingMode, 2, "billing mode");
            assertEq(c.charged, (l.pricePerGpuSecond * bill) / 1000, "charged = price x billable(mode) / 1000");
        }
    }

    /// @dev Run statistics (forge test -vv): how far each sequence got.
    function afterInvariant() public view {
        string[15] memory names = [
            "openLease", "activateLease", "settle", "settle.rejected", "settle.exhausted", "settle.rewound",
            "settleBatch", "topUp", "closeLease", "expireLease", "dispute", "resolveDispute", "releaseEarnings",
            "withdraw", "pause"
        ];
        for (uint256 i; i < names.length; ++i) {
            console.log(names[i], handler.calls(bytes32(bytes(names[i]))));
        }
    }

    // --- a scripted run through the handler: proves the actions reach the escrow ----------------------

    function test_handlerScriptedRunKeepsInvariants() public {
        handler.openLease(0, 0, 3600, 60, false); // ETH reserved, holder = provider
        handler.openLease(1, 2, 1800, 60, true); // token reserved, holder = reseller
        handler.openLease(2, 3, 600, 1, false); // token metered, left to expire
        handler.openLease(0, 4, 3600, 60, false); // ETH SM-active (GPM node), holder = provider
        handler.activateLease(0, false);
        handler.activateLease(1, true);
        handler.activateLease(3, false); // the SM-active lease (the Open one from index 3)
        handler.warp(600);
        // every kind of report on each running lease (seed k % 3: leases 0, 1 and, from index 2 on, 3)
        for (uint256 k; k < 3 * 18; ++k) {
            handler.settle(k % 3, 300_000 + k, 1e9 + k, 1e9 + 7 * k, 1e9 + 13 * k, uint8(k / 3));
            handler.warp(30);
        }
        // both running leases in one batch: valid + wrong signer, then valid + valid with a replay
        handler.settleBatch(1, 0x0600, false);
        handler.warp(30);
        handler.settleBatch(2, 0x0100, true);
        handler.warp(30);
        handler.topUp(0, 120);
        handler.dispute(0);
        handler.resolveDispute(0, 6_000, true);
        // paused: settlement goes on, and a buyer may dispute past the challenge period
        handler.setPaused(0);
        handler.warp(2 hours);
        uint256 settledBefore = handler.calls("settle");
        handler.settle(0, 60_000, 1e9, 1e9, 1e9, 0);
        assertEq(handler.calls("settle"), settledBefore + 1, "settled while paused");
        handler.warp(2 hours);
        uint256 disputesBefore = handler.calls("dispute");
        handler.dispute(0);
        assertEq(handler.calls("dispute"), disputesBefore + 1, "disputed while paused, after the challenge period");
        handler.resolveDispute(0, 5_000, false);
        handler.setPaused(1);
        handler.warp(3 hours);
        handler.expireLease(2);
        handler.closeLease(0, 0);
        handler.closeLease(1, 2);
        handler.closeLease(3, 0);
        handler.releaseEarnings(0, true);
        handler.releaseEarnings(1, true);
        handler.releaseEarnings(3, true);
        for (uint256 a; a < 7; ++a) {
            handler.withdraw(a, false);
            handler.withdraw(a, true);
        }
        assertEq(handler.calls("openLease"), 4, "opened");
        assertEq(handler.calls("activateLease"), 3, "activated");
        assertGe(handler.calls("settle"), 3 * 8, "settled");
        assertGe(handler.calls("settle.rejected"), 3 * 9, "rejected");
        assertGe(handler.calls("settle.rewound"), 1, "a window ending before the last settled one settled");
        assertEq(handler.calls("settleBatch"), 2, "batches");
        assertEq(handler.calls("pause"), 1, "paused");
        assertEq(handler.calls("unpause"), 1, "unpaused");
        assertEq(handler.calls("expireLease"), 1, "expired");
        assertGe(handler.calls("withdraw"), 3, "withdrawals");
        invariant_conservation();
        invariant_ghostFlow();
        invariant_stakes();
        invariant_rights();
        invariant_neverBeyondEscrow();
        invariant_cumulativeBounds();
        invariant_settlementChecks();
        invariant_stateCommitment();
    }

    // --- internal ------------------------------------------------------------------------------------

    function _checkpoint(uint256 leaseId) internal view returns (ILeaseEscrowTypes.CheckpointView memory) {
        (, uint256 ck, bytes32 last) = handler.stateOf(leaseId);
        return escrow.checkpoint(leaseId, ck, last);
    }

    function _checkConservation(address tok) internal view {
        uint256[] memory ids = handler.leaseIds();
        uint256 owed;
        for (uint256 i; i < ids.length; ++i) {
            ILeaseEscrowTypes.LeaseView memory l = escrow.lease(ids[i]);
            if (l.token != tok) continue;
            ILeaseEscrowTypes.CheckpointView memory c = _checkpoint(ids[i]);
            bool live = l.status == ILeaseEscrowTypes.LeaseStatus.Open || l.status == ILeaseEscrowTypes.LeaseStatus.Active;
            if (live) owed += l.escrowed - c.charged;
            if (!l.feesSettled) owed += l.feeHeld;
            owed += c.pending;
        }
        address[] memory actors = handler.actors();
        for (uint256 j; j < actors.length; ++j) {
            owed += escrow.withdrawable(actors[j], tok);
        }
        uint256 bal = tok == address(0) ? address(escrow).balance : token.balanceOf(address(escrow));
        assertEq(bal, owed, tok == address(0) ? "eth conservation" : "token conservation");
    }
}
