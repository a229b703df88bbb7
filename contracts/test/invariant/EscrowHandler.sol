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
    /// @dev The attestor's view of a lease's report chain: the last settled checkpoint (from the lease state) and
    /// the end of the last settled window (which the chain no longer keeps: tracked from the accepted reports).
    struct Meter {
        uint64 seq;
        bytes32 prev;
        uint64 endMs;
        uint64 cumBusy;
        uint64 cumAlloc;
        uint64 cumEnergy;
        uint64 cumSm;
    }

    /// @dev One report prepared for settlement (keeps the stack shallow without via-IR): the lease, what was
    /// done to the report (`kind`), whether the escrow must accept it or which error it must give, and what
    /// accepting it must produce (record hash, ckpt, charge).
    struct Case {
        uint256 leaseId;
        uint8 kind;
        bool valid;
        bytes4 want;
        uint256 pk;
        bool longForm;
        LeaseState state;
        LeaseState sent;
        ILeaseEscrowTypes.MeteringReport r;
        bytes entry;
        bytes32 hash;
        uint256 newCkpt;
        uint256 charge;
        uint256 chargedBefore;
    }

    uint256 internal constant WRONG_PK = 0xBAD5EED;

    uint256[] internal _leaseIds;
    mapping(uint256 leaseId => uint256 offerIdx) internal _offerIdxOf;
    /// @dev End of the window of the lease's last settled report (0: none settled; then the lease start).
    mapping(uint256 leaseId => uint64) internal _lastEnd;

    // --- ghosts: what entered and left the escrow, and every broken expectation ----------------------
    mapping(address token => uint256) public ghostIn;
    mapping(address token => uint256) public ghostOut;
    uint256 public ghostInvalidAccepted;
    uint256 public ghostValidRejected;
    uint256 public ghostWrongError;
    uint256 public ghostChargeMismatch;
    uint256 public ghostRecordMismatch;
    uint256 public ghostBatchMismatch;
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

    function offerIds() external view returns (uint256[N_OFFERS] memory) {
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

    /// @notice The lease's state as tracked from the CheckpointsSettled records: what every cold call takes.
    function stateOf(uint256 leaseId) external view returns (uint256 terms, uint256 ckpt, bytes32 lastHash) {
        LeaseState memory s = _state(leaseId);
        return (s.terms, s.ckpt, s.lastHash);
    }

    // --- actions ---------------------------------------------------------------------------------------

    function openLease(uint256 buyerSeed, uint256 offerSeed, uint256 durationSeed, uint256 startBySeed, bool resold)
        external
    {
        if (ext.paused()) return;
        uint256 idx = offerSeed % N_OFFERS;
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
        if (ext.paused()) return;
        (uint256 leaseId, bool found) = _pick(leaseSeed, ILeaseEscrowTypes.LeaseStatus.Open);
        if (!found) return;
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        if (block.timestamp > l.startBy) return;
        vm.prank(byAttestor ? attestor : provider);
        escrow.activateLease(leaseId);
        calls["activateLease"]++;
    }

    /// @param kind (mod KINDS) 0-5 valid report (odd: lastReportHash given explicitly; 5: bills all capacity up
    /// to the latest possible window end, which exhausts a lease that has ended); 13 valid with a seq gap
    /// (chain not checked); 17 valid with a window ending before the last settled one (windows are not compared
    /// on chain: the counters stay within the earlier end's bounds); invalid: 6 wrong signer; 7 a counter (busy,
    /// allocated, energy or SM-active, from the seed) below the settled one; 8 allocated or SM-active time above
    /// capacity; 9 replay of the settled seq; 10 window in the future; 11 broken hash chain; 12 stale state
    /// words; 14 energy above the power cap; 15 busy above allocated time; 16 window ending at the lease start.
    function settle(uint256 leaseSeed, uint256 toSeed, uint256 busySeed, uint256 allocSeed, uint256 energySeed, uint8 kind)
        external
    {
        (uint256 leaseId, bool found) = _pick(leaseSeed, ILeaseEscrowTypes.LeaseStatus.Active);
        if (!found) return;
        uint64 lastEnd = _meter(_state(leaseId)).endMs;
        if (block.timestamp * 1000 <= lastEnd) vm.warp(lastEnd / 1000 + bound(toSeed, 1, 900)); // let time pass
        Case memory c;
        if (!_prepare(c, leaseId, toSeed, [busySeed, allocSeed, energySeed], kind)) return;
        Outcome memory o = _submit(c.entry, false);
        if (o.ok) {
            if (!c.valid) {
                ghostInvalidAccepted++;
                return;
            }
            if (o.singleEvents != 1 || o.batchEvents != 0 || o.records.length != 1 || o.skips.length != 0) {
                ghostRecordMismatch++;
            }
            if (o.records.length > 0) _checkAccepted(c, o.records[0]);
            calls["settle"]++;
        } else {
            if (c.valid) ghostValidRejected++;
            else if (_selector(o.ret) != c.want) ghostWrongError++;
            calls["settle.rejected"]++;
        }
    }

    /// @notice One settleBatch over every Active lease with room for a window (one report each, kind from
    /// `kinds`), optionally followed by a replay of the first entry (then stale: skipped as StaleState if the
    /// first settled, else with the first one's error). The batch must settle exactly the valid entries, in
    /// order, in one CheckpointsSettled event, and skip every other one with its precise error.
    function settleBatch(uint256 seed, uint256 kinds, bool replayFirst) external {
        uint256 n = _leaseIds.length;
        Case[] memory cs = new Case[](n);
        uint256 m;
        bytes memory entries;
        for (uint256 i; i < n; ++i) {
            uint256 id = _leaseIds[i];
            if (escrow.lease(id).status != ILeaseEscrowTypes.LeaseStatus.Active) continue;
            uint256 h = uint256(keccak256(abi.encode(seed, i)));
            Case memory c;
            if (!_prepare(c, id, h, [h >> 64, h >> 128, h >> 192], uint8(kinds >> (8 * m)))) continue;
            cs[m++] = c;
            entries = bytes.concat(entries, c.entry);
        }
        if (m == 0) return;
        if (replayFirst) entries = bytes.concat(entries, cs[0].entry);
        Outcome memory o = _submit(entries, true);
        if (!o.ok) {
            ghostBatchMismatch++;
            return;
        }
        _checkBatch(cs, m, replayFirst, o);
        calls["settleBatch"]++;
    }

    function topUp(uint256 leaseSeed, uint256 secondsSeed) external {
        if (ext.paused()) return;
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
        LeaseState memory s = _state(leaseId);
        if (l.token == address(0)) {
            vm.deal(l.buyer, l.buyer.balance + amount + fee);
            vm.prank(l.buyer);
            escrow.topUp{value: amount + fee}(leaseId, amount, s.ckpt, s.lastHash);
        } else {
            token.mint(l.buyer, amount + fee);
            vm.prank(l.buyer);
            token.approve(address(escrow), amount + fee);
            vm.prank(l.buyer);
            escrow.topUp(leaseId, amount, s.ckpt, s.lastHash);
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
        LeaseState memory s = _state(leaseId);
        vm.prank(mode == 0 ? l.buyer : stranger);
        try escrow.closeLease(leaseId, s.ckpt, s.lastHash) {
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
        LeaseState memory s = _state(leaseId);
        ILeaseEscrowTypes.CheckpointView memory ck = escrow.checkpoint(leaseId, s.ckpt, s.lastHash);
        // while paused a buyer may dispute whatever the challenge period
        if (block.timestamp >= ck.lastSettledAt + CHALLENGE_S && !ext.paused()) return;
        address buyer = escrow.lease(leaseId).buyer;
        vm.prank(buyer);
        escrow.dispute(leaseId, s.ckpt, s.lastHash);
        calls["dispute"]++;
    }

    function resolveDispute(uint256 leaseSeed, uint256 bpsSeed, bool providerFault) external {
        (uint256 leaseId, bool found) = _pickMoney(leaseSeed, 2);
        if (!found) return;
        address tok = escrow.lease(leaseId).token;
        uint256 stakeBefore = _stake(tok);
        LeaseState memory s = _state(leaseId);
        vm.prank(arbiter);
        escrow.resolveDispute(leaseId, uint16(bound(bpsSeed, 0, 10_000)), providerFault, s.ckpt, s.lastHash);
        ghostIn[tok] += stakeBefore - _stake(tok); // slashed stake moved into the escrow
        calls["resolveDispute"]++;
    }

    /// @param waitOut first let the challenge period of the lease's last settlement pass
    function releaseEarnings(uint256 leaseSeed, bool waitOut) external {
        (uint256 leaseId, bool found) = _pickMoney(leaseSeed, 0);
        if (!found) return;
        uint256 endsAt = _checkpoint(leaseId).lastSettledAt + CHALLENGE_S;
        if (waitOut && block.timestamp < endsAt) vm.warp(endsAt);
        LeaseState memory s = _state(leaseId);
        vm.prank(stranger);
        try escrow.releaseEarnings(leaseId, s.ckpt, s.lastHash) {
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

    /// @notice The pauser pauses (one call in four) or unpauses. Paused: no opening, activation or top-up
    /// (the actions skip), no release of earnings (refused); settlement, closing, disputes, rulings and
    /// withdrawals go on (a valid report refused while paused counts as ghostValidRejected).
    function setPaused(uint8 seed) external {
        bool on = seed % 4 == 0;
        if (on == ext.paused()) return;
        if (on) ext.pause();
        else ext.unpause();
        calls[on ? bytes32("pause") : bytes32("unpause")]++;
    }

    function warp(uint256 secondsSeed) external {
        vm.warp(block.timestamp + bound(secondsSeed, 1, 2 hours));
        calls["warp"]++;
    }

    // --- internals -------------------------------------------------------------------------------------

    uint8 internal constant KINDS = 18;

    function _meter(LeaseState memory s) internal view returns (Meter memory m) {
        m.seq = uint64(s.ckpt & M32);
        m.prev = s.lastHash;
        m.cumBusy = uint64((s.ckpt >> 32) & M48);
        m.cumAlloc = uint64((s.ckpt >> 80) & M48);
        m.cumEnergy = uint64((s.ckpt >> 128) & M48);
        m.cumSm = uint64((s.ckpt >> 176) & M48);
        m.endMs = _lastEnd[s.leaseId];
        if (m.endMs == 0) m.endMs = uint64(((s.terms >> 32) & M32) * 1000);
    }

    /// @dev Builds, corrupts (per `kind`), signs and encodes the next report of lease `leaseId` into `c`, with
    /// what settling it must produce. False when there is no room for a window yet.
    function _prepare(Case memory c, uint256 leaseId, uint256 toSeed, uint256[3] memory seeds, uint8 kind)
        internal
        returns (bool)
    {
        ILeaseEscrowTypes.LeaseView memory l = escrow.lease(leaseId);
        c.leaseId = leaseId;
        c.kind = kind % KINDS;
        c.state = _state(leaseId);
        Meter memory m = _meter(c.state);
        uint256 nowMs = block.timestamp * 1000;
        uint256 maxTo = nowMs < l.endMs ? nowMs : l.endMs;
        if (maxTo <= m.endMs) return false;
        uint64 toMs = uint64(c.kind == 5 ? maxTo : m.endMs + bound(toSeed, 1, maxTo - m.endMs));
        uint256 cap = uint256(l.gpuCount) * (toMs - l.startMs);
        c.r = _build(leaseId, m, toMs, cap, seeds);
        c.sent = LeaseState(c.state.leaseId, c.state.terms, c.state.ckpt, c.state.lastHash);
        if (c.kind == 17 && !_rewind(c, m, l)) c.kind = 0;
        _corrupt(c, m, cap, nowMs, l);
        _seal(c);
        _expect(c, m, l.billingMode, l.pricePerGpuSecond);
        return true;
    }

    /// @dev Kind 17: the next report ends its window before the last settled one, counters unchanged (they must
    /// fit the earlier end's capacity and energy cap). False when no such end exists (nothing settled yet, or
    /// the counters need all the time up to the last end).
    function _rewind(Case memory c, Meter memory m, ILeaseEscrowTypes.LeaseView memory l) internal pure returns (bool) {
        if (m.seq == 0) return false;
        uint256 g = l.gpuCount;
        uint256 need = m.cumAlloc > m.cumSm ? m.cumAlloc : m.cumSm;
        uint256 lo = l.startMs + need / g + 1; // gpuCount × (lo − start) > need
        // the energy cap grows with the window end: the smallest end whose cap holds the settled energy
        uint256 eMs = (uint256(m.cumEnergy) * 10_000_000) / (uint256(MAX_POWER_MW) * 10_500 * g) + 1;
        if (l.startMs + eMs > lo) lo = l.startMs + eMs;
        if (lo >= m.endMs) return false;
        ILeaseEscrowTypes.MeteringReport memory r = c.r;
        r.windowEndMs = uint64(lo + (uint256(keccak256(abi.encode(m.prev))) % (m.endMs - lo)));
        r.cumBusyMs = m.cumBusy;
        r.cumAllocatedMs = m.cumAlloc;
        r.cumEnergyMj = m.cumEnergy;
        r.cumSmActiveMs = m.cumSm;
        r.busyMs = 0;
        r.allocatedMs = 0;
        r.energyMj = 0;
        r.smActiveMs = 0;
        return true;
    }

    /// @dev Struct hash, signature and entry of `c.r`; every digest path must agree.
    function _seal(Case memory c) internal {
        c.hash = _structHash(c.r);
        bytes32 digest = _digest(c.r);
        if (escrow.hashReport(c.r) != c.hash || escrow.reportDigest(c.r) != digest) ghostDigestMismatch++;
        c.entry = _entry(c.pk, c.r, c.sent, c.longForm);
        if (escrow.entryDigest(c.entry) != digest) ghostDigestMismatch++;
    }

    /// @dev What settling `c.r` must produce: the charge (price × Δ of the mode's counter / 1000), the new
    /// ckpt (Suite._ckptOf: the report's counters and now), and the charged total before.
    function _expect(Case memory c, Meter memory m, uint8 mode, uint256 price) internal view {
        uint256 oldBill = mode == 0 ? m.cumAlloc : mode == 1 ? m.cumBusy : m.cumSm;
        uint256 newBill = mode == 0 ? c.r.cumAllocatedMs : mode == 1 ? c.r.cumBusyMs : c.r.cumSmActiveMs;
        // (a corrupted report may lower the counter: it must not settle, its charge is never compared)
        if (newBill >= oldBill) c.charge = (price * newBill) / 1000 - (price * oldBill) / 1000;
        c.newCkpt = _ckptOf(c.r, block.timestamp);
        c.chargedBefore = escrow.checkpoint(c.leaseId, c.state.ckpt, c.state.lastHash).charged;
    }

    /// @dev The next valid report of the chain `m`: counters grow by random amounts within the bounds (busy
    /// within allocated, allocated and SM-active within capacity, energy within the cap; kind 5 of `_corrupt`
    /// raises them to the caps).
    function _build(uint256 leaseId, Meter memory m, uint64 toMs, uint256 cap, uint256[3] memory seeds)
        internal
        view
        returns (ILeaseEscrowTypes.MeteringReport memory r)
    {
        Cum memory c;
        c.alloc = uint64(m.cumAlloc + bound(seeds[1], 0, cap - m.cumAlloc));
        c.busy = uint64(m.cumBusy + bound(seeds[0], 0, c.alloc - m.cumBusy));
        c.energy = uint64(m.cumEnergy + bound(seeds[2], 0, _energyCap(cap) - m.cumEnergy));
        c.sm = uint64(m.cumSm + bound(seeds[0] >> 128, 0, cap - m.cumSm));
        r = _report(leaseId, m.seq + 1, m.prev, m.endMs, toMs, c);
        r.busyMs = c.busy - m.cumBusy;
        r.allocatedMs = c.alloc - m.cumAlloc;
        r.energyMj = c.energy - m.cumEnergy;
        r.smActiveMs = c.sm - m.cumSm;
        r.tensorActiveMs = r.smActiveMs / 2;
    }

    /// @dev Applies the corruption `c.kind` asks for; sets the signing key, `c.valid` and the error it must
    /// cause (`c.want`).
    function _corrupt(Case memory c, Meter memory m, uint256 cap, uint256 nowMs, ILeaseEscrowTypes.LeaseView memory l)
        internal
        pure
    {
        ILeaseEscrowTypes.MeteringReport memory r = c.r;
        uint8 k = c.kind;
        uint256 leaseEndMs = l.endMs;
        c.pk = ATTESTOR_PK;
        c.valid = false;
        c.longForm = k < 6 && k % 2 == 1;
        // kind 7: which counter goes down (0 busy, 1 allocated, 2 energy, 3 SM-active), from the report's values
        uint256 which = uint256(keccak256(abi.encode(r.cumBusyMs, r.cumSmActiveMs))) % 4;
        if (k == 6) {
            c.pk = WRONG_PK;
            c.want = ILeaseEscrowTypes.LeaseEscrowWrongSigner.selector;
        } else if (k == 7 && _lower(r, m, which)) {
            c.want = ILeaseEscrowTypes.LeaseEscrowCounterDecreased.selector;
        } else if (k == 8) {
            if (which % 2 == 0) r.cumAllocatedMs = uint64(cap + 1);
            else r.cumSmActiveMs = uint64(cap + 1);
            c.want = ILeaseEscrowTypes.LeaseEscrowTimeAboveCapacity.selector;
        } else if (k == 15) {
            r.cumBusyMs = r.cumAllocatedMs + 1;
            c.want = ILeaseEscrowTypes.LeaseEscrowBusyAboveAllocated.selector;
        } else if (k == 16) {
            r.windowEndMs = uint64(l.startMs);
            c.want = ILeaseEscrowTypes.LeaseEscrowWindowOutsideLease.selector;
        } else if (k == 9 && m.seq > 0) {
            r.seq = m.seq;
            c.want = ILeaseEscrowTypes.LeaseEscrowStaleReport.selector;
        } else if (k == 10) {
            r.windowEndMs = uint64(nowMs + 1000);
            c.want = r.windowEndMs > leaseEndMs
                ? ILeaseEscrowTypes.LeaseEscrowWindowOutsideLease.selector
                : ILeaseEscrowTypes.LeaseEscrowWindowInFuture.selector;
        } else if (k == 11) {
            r.prevReportHash = keccak256(abi.encode(m.prev));
            c.want = ILeaseEscrowTypes.LeaseEscrowBrokenChain.selector;
        } else if (k == 12) {
            // a stale state: back to the initial checkpoint (re-billing from zero) once something settled,
            // else terms claiming an hour more of lease
            if (m.seq > 0) {
                c.sent.ckpt = _initialCkpt(c.sent.terms);
                c.sent.lastHash = bytes32(0);
            } else {
                c.sent.terms += uint256(3600) << 64;
            }
            c.want = ILeaseEscrowTypes.LeaseEscrowStaleState.selector;
        } else if (k == 14) {
            r.cumEnergyMj = uint64(_energyCap(cap) + 1);
            c.want = ILeaseEscrowTypes.LeaseEscrowEnergyAboveCap.selector;
        } else if (k == 13) {
            // a gap in seq: allowed, the chain is only checked between consecutive reports
            r.seq = m.seq + 2;
            r.prevReportHash = keccak256(abi.encode("gap", m.prev));
            c.valid = true;
        } else {
            if (k == 5) {
                r.cumBusyMs = uint64(cap);
                r.cumAllocatedMs = uint64(cap);
                r.cumSmActiveMs = uint64(cap);
                r.busyMs = r.cumBusyMs - m.cumBusy;
                r.allocatedMs = r.cumAllocatedMs - m.cumAlloc;
                r.smActiveMs = r.cumSmActiveMs - m.cumSm;
            }
            c.valid = true;
        }
    }

    /// @dev Sets counter `which` of `r` one below the settled value (busy first if lowering allocated time would
    /// leave it above: the escrow names busy then too, it is checked first); false if that counter is still 0.
    function _lower(ILeaseEscrowTypes.MeteringReport memory r, Meter memory m, uint256 which) internal pure returns (bool) {
        if (which == 0 && m.cumBusy > 0) r.cumBusyMs = m.cumBusy - 1;
        else if (which == 1 && m.cumAlloc > 0) r.cumAllocatedMs = m.cumAlloc - 1;
        else if (which == 2 && m.cumEnergy > 0) r.cumEnergyMj = m.cumEnergy - 1;
        else if (which == 3 && m.cumSm > 0) r.cumSmActiveMs = m.cumSm - 1;
        else return false;
        if (r.cumBusyMs > r.cumAllocatedMs) r.cumBusyMs = r.cumAllocatedMs;
        return true;
    }

    /// @dev An accepted report: the record is the report's hash, the ckpt the escrow must build and the
    /// charge price × Δbillable / 1000; the commitment is now keccak256(abi.encode(terms, ckpt, hash)) and the
    /// checkpoint view moved by the charge.
    function _checkAccepted(Case memory c, Record memory rec) internal {
        if (rec.leaseId != c.leaseId || rec.reportHash != c.hash || rec.ckpt != c.newCkpt) ghostRecordMismatch++;
        _lastEnd[c.leaseId] = c.r.windowEndMs;
        if (c.kind == 17) calls["settle.rewound"]++;
        if (rec.charged != c.charge) ghostChargeMismatch++;
        LeaseState memory s = _state(c.leaseId);
        if (s.ckpt != c.newCkpt || s.lastHash != c.hash || _commitment(s) != escrow.stateHash(c.leaseId)) {
            ghostRecordMismatch++;
            return;
        }
        if (escrow.checkpoint(c.leaseId, s.ckpt, s.lastHash).charged - c.chargedBefore != c.charge) {
            ghostChargeMismatch++;
        }
        if (escrow.lease(c.leaseId).status == ILeaseEscrowTypes.LeaseStatus.Exhausted) calls["settle.exhausted"]++;
    }

    function _checkBatch(Case[] memory cs, uint256 m, bool replayFirst, Outcome memory o) internal {
        uint256 valid;
        uint256 invalid;
        for (uint256 i; i < m; ++i) {
            if (cs[i].valid) valid++;
            else invalid++;
        }
        if (replayFirst) invalid++; // the replay never settles: stale if the first did, else the same error
        uint256 settled = abi.decode(o.ret, (uint256));
        if (settled != valid || o.records.length != valid || o.skips.length != invalid) {
            ghostBatchMismatch++;
            return;
        }
        if (o.singleEvents != 0 || o.batchEvents != (valid == 0 ? 0 : 1)) ghostBatchMismatch++;
        uint256 r;
        uint256 k;
        for (uint256 i; i < m; ++i) {
            Case memory c = cs[i];
            if (c.valid) {
                _checkAccepted(c, o.records[r++]);
            } else {
                Skip memory sk = o.skips[k++];
                if (sk.leaseId != c.leaseId || sk.seq != c.r.seq) ghostBatchMismatch++;
                if (sk.reason != c.want) ghostWrongError++;
            }
        }
        if (replayFirst) {
            Skip memory sk = o.skips[k];
            bytes4 want = cs[0].valid ? ILeaseEscrowTypes.LeaseEscrowStaleState.selector : cs[0].want;
            if (sk.leaseId != cs[0].leaseId || sk.seq != cs[0].r.seq) ghostBatchMismatch++;
            if (sk.reason != want) ghostWrongError++;
        }
        calls["settle"] += valid;
        calls["settle.rejected"] += invalid;
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
            ILeaseEscrowTypes.CheckpointView memory c = _checkpoint(id);
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
        return _isEth(idx) ? address(0) : address(token);
    }

    function _stake(address tok) internal view returns (uint256) {
        ICapacityRegistry.Stake memory s = registry.stakeOf(provider, tok);
        return s.bonded + s.unbonding;
    }
}
