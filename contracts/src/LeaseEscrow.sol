// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ICapacityRegistry} from "./interfaces/ICapacityRegistry.sol";
import {IReputation} from "./interfaces/IReputation.sol";
import {ILeaseEscrow} from "./interfaces/ILeaseEscrow.sol";
import {LeaseEscrowBase} from "./LeaseEscrowBase.sol";

/// @title LeaseEscrow
/// @notice Escrow of GPU leases, settled on metering reports signed (EIP-712) by the node's attestor.
/// @dev Money rules: pull payments only (`withdraw`), every external entry point is nonReentrant, and
/// for each token: balance = Σ escrow not yet charged + Σ fee held + Σ pending charges + Σ withdrawable.
/// A lease can never be charged beyond its escrow: a report's cumulative billable time is bounded by
/// gpuCount × (windowEnd − start) and windowEnd by the lease end, so the total charge is bounded by
/// price × gpuCount × durationS, the escrow itself; reaching it makes the lease Exhausted.
///
/// IMPORTANT: fee-on-transfer (and rebasing) ERC-20 tokens are NOT supported: openLease and topUp compare
/// the balance before and after the transfer and revert with LeaseEscrowFeeOnTransferToken if less arrived.
///
/// NOTE: earnings of a lease are held for `challengePeriod` after the lease's LAST settlement (the clock
/// restarts at each settlement); a dispute freezes everything pending. A buyer may close an Active lease at
/// any time: reports not yet settled by then are not paid, so the relayer settles the latest report first.
///
/// Hot-path storage per lease: one slot of immutable-ish terms (read; it carries a 40-bit fingerprint of the
/// gpu set hash, so the full hash is not read), one slot of checkpoint state (seq, three cumulative counters,
/// last window end, settlement time) and one slot with the last report hash (both written, never back to zero
/// once the lease is active). Settlement first runs `_fastSettle` (every check in one assembly pass); any
/// rejection, and the exhausting report, fall back to the checked Solidity path `_settleOne`, which reports the
/// precise error, so settlement accepts exactly the reports the checked path accepts.
contract LeaseEscrow is LeaseEscrowBase {
    using SafeERC20 for IERC20;

    address private immutable _extension;

    constructor(
        address admin,
        ICapacityRegistry registry_,
        IReputation reputation_,
        address treasury_,
        uint32 challengePeriodSeconds,
        uint16 baseFeeBps,
        address extension_
    ) LeaseEscrowBase(registry_, reputation_) {
        if (admin == address(0) || treasury_ == address(0) || baseFeeBps > 10_000) revert LeaseEscrowBadConfig();
        if (extension_ == address(0)) revert LeaseEscrowBadConfig();
        _extension = extension_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _treasury = treasury_;
        _fees = FeeConfig({
            baseFeeBps: baseFeeBps,
            discountedFeeBps: baseFeeBps,
            discountMinScoreBps: 10_000,
            discountMinCompleted: type(uint32).max,
            slashBps: 5_000,
            challengePeriod: challengePeriodSeconds
        });
        emit TreasurySet(treasury_);
        emit ChallengePeriodSet(challengePeriodSeconds);
        emit FeeConfigSet(baseFeeBps, baseFeeBps, 10_000, type(uint32).max);
        emit SlashBpsSet(5_000);
    }

    /// @dev ETH arrives only with openLease/topUp or from the registry when a stake is slashed.
    receive() external payable {
        if (msg.sender != address(_registry)) revert LeaseEscrowUnexpectedEth(msg.sender);
    }

    /// @dev Every function not implemented here (disputes, payouts release, rating, admin, views) runs in
    /// LeaseEscrowExtension by DELEGATECALL, on this contract's storage.
    fallback() external payable {
        address ext = _extension;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), ext, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return interfaceId == type(ILeaseEscrow).interfaceId || super.supportsInterface(interfaceId);
    }

    /// @notice The extension contract the fallback delegates to.
    function extension() external view returns (address) {
        return _extension;
    }

    // --- leases -------------------------------------------------------------------------------------

    /// @notice See ILeaseEscrow.
    function openLease(uint256 offerId, address holder, uint32 durationS, uint64 startBy, uint256 maxTotal)
        external
        payable
        nonReentrant
        whenNotPaused
        returns (uint256 leaseId)
    {
        ICapacityRegistry.Offer memory o = _registry.offer(offerId);
        {
            uint256 live = _liveLease[offerId];
            if (live != 0) revert LeaseEscrowOfferBusy(offerId, live);
        }
        if (durationS == 0) revert LeaseEscrowBadDuration(durationS);
        if (startBy <= block.timestamp || startBy < o.validFrom || uint256(startBy) + durationS > o.validUntil) {
            revert LeaseEscrowBadStartBy(startBy, o.validFrom, o.validUntil);
        }
        if (!_syncNode(o.nodeId)) revert LeaseEscrowNodeInactive(o.nodeId);
        {
            uint256 score = _reputation.scoreOf(msg.sender);
            if (score < o.minBuyerScoreBps) revert LeaseEscrowBuyerScoreTooLow(msg.sender, score, o.minBuyerScoreBps);
        }
        uint16 feeBps = feeBpsFor(o.provider);
        // Resale hook: a lease's price is fixed per lease (stored in its terms) and comes from here, so a later
        // resale market only has to return a holder's own ask for its rights instead of the offer price.
        uint256 price = _leasePrice(o, holder);
        if (price > _M96) revert LeaseEscrowAmountTooLarge(price); // 96-bit price field of the terms slot
        uint256 escrowed = price * o.gpuCount * durationS;
        if (escrowed > type(uint128).max) revert LeaseEscrowAmountTooLarge(escrowed);
        uint256 fee = (escrowed * feeBps) / 10_000;
        if (escrowed + fee > maxTotal) revert LeaseEscrowTotalAboveMax(escrowed + fee, maxTotal);

        leaseId = ++_leaseCount;
        _ls[leaseId].terms = uint256(o.nodeId) | (uint256(durationS) << 64) | (uint256(o.gpuCount) << 96)
            | (uint256(uint8(o.billingMode)) << 112) | (uint256(uint8(LeaseStatus.Open)) << 116) | (price << 120)
            | _gpuSetFp(o.gpuSetHash);
        _gpuSet[leaseId] = o.gpuSetHash;
        _info[leaseId] = LeaseInfo({buyer: msg.sender, startBy: uint40(startBy), feesSettled: false, feeBps: feeBps});
        _parties[leaseId] = LeaseParties({holder: holder, offerId: uint64(offerId)});
        _accounts[leaseId] = LeaseAccounts({provider: o.provider, token: o.token});
        _liveLease[offerId] = leaseId;

        _registry.lockRights(holder, offerId, uint256(o.gpuCount) * durationS);
        _pull(o.token, escrowed + fee, msg.value);
        emit LeaseOpened(leaseId, offerId, msg.sender, holder, durationS, startBy, escrowed, fee, feeBps);
    }

    /// @notice See ILeaseEscrow.
    function activateLease(uint256 leaseId) external nonReentrant whenNotPaused {
        uint256 terms = _requireStatus(leaseId, LeaseStatus.Open);
        LeaseAccounts memory acc = _accounts[leaseId];
        uint256 nodeId = _tNode(terms);
        if (
            msg.sender != acc.provider && msg.sender != _registry.provider(acc.provider).payout
                && msg.sender != address(uint160(_nodeCache[nodeId]))
        ) revert LeaseEscrowNotProviderSide(leaseId, msg.sender);
        uint256 validFrom = _registry.offer(_parties[leaseId].offerId).validFrom;
        if (block.timestamp < validFrom) revert LeaseEscrowOfferNotStarted(leaseId, validFrom);
        uint256 startBy = _info[leaseId].startBy;
        if (block.timestamp > startBy) revert LeaseEscrowStartByPassed(leaseId, startBy);

        uint256 startMs = block.timestamp * 1000;
        _ls[leaseId].terms = _withStatus(terms | (block.timestamp << 32), LeaseStatus.Active);
        _ls[leaseId].ckpt = (startMs << 176) | (block.timestamp << 224);
        _ls[leaseId].lastHash = _NO_REPORT;
        uint256 endMs = startMs + _tDuration(terms) * 1000;
        emit LeaseActivated(leaseId, uint64(startMs), uint64(endMs));
    }

    /// @notice See ILeaseEscrow.
    function settle(PackedReport calldata report, Signature calldata signature) external nonReentrant whenNotPaused {
        if (!_fastSettle(report, signature)) _settleOne(report, signature, true);
    }

    /// @notice See ILeaseEscrow.
    function settleBatch(PackedReport[] calldata reports, Signature[] calldata signatures)
        external
        nonReentrant
        whenNotPaused
        returns (uint256 settled)
    {
        uint256 n = reports.length;
        if (n != signatures.length) revert LeaseEscrowLengthMismatch(n, signatures.length);
        for (uint256 i; i < n; ++i) {
            if (_fastSettle(reports[i], signatures[i]) || _settleOne(reports[i], signatures[i], false)) ++settled;
        }
    }

    /// @notice See ILeaseEscrow.
    function topUp(uint256 leaseId, uint256 amount) external payable nonReentrant whenNotPaused {
        uint256 terms = _ls[leaseId].terms;
        LeaseStatus st = _status(terms);
        if (st != LeaseStatus.Open && st != LeaseStatus.Active) {
            if (st == LeaseStatus.None) revert LeaseEscrowUnknownLease(leaseId);
            revert LeaseEscrowBadStatus(leaseId, st);
        }
        if (msg.sender != _info[leaseId].buyer) revert LeaseEscrowNotBuyer(leaseId, msg.sender);
        uint256 gpus = _tGpus(terms);
        uint256 unit = _tPrice(terms) * gpus;
        if (amount == 0 || amount % unit != 0) revert LeaseEscrowTopUpNotWholeSeconds(amount, unit);
        uint256 oldDuration = _tDuration(terms);
        uint256 newDuration = oldDuration + amount / unit;
        if (newDuration > type(uint32).max) revert LeaseEscrowBadDuration(newDuration);
        LeaseParties memory pt = _parties[leaseId];
        {
            uint256 validUntil = _registry.offer(pt.offerId).validUntil;
            uint256 startS = st == LeaseStatus.Active ? (terms >> 32) & _M32 : _info[leaseId].startBy;
            if (startS + newDuration > validUntil) revert LeaseEscrowBeyondOffer(leaseId, startS + newDuration, validUntil);
        }
        uint256 feeBps = _info[leaseId].feeBps;
        uint256 oldEscrow = unit * oldDuration;
        uint256 newEscrow = unit * newDuration;
        if (newEscrow > type(uint128).max) revert LeaseEscrowAmountTooLarge(newEscrow);
        uint256 fee = (newEscrow * feeBps) / 10_000 - (oldEscrow * feeBps) / 10_000;
        _ls[leaseId].terms = (terms & ~(_M32 << 64)) | (newDuration << 64);
        _registry.lockRights(pt.holder, pt.offerId, gpus * (newDuration - oldDuration));
        _pull(_accounts[leaseId].token, amount + fee, msg.value);
        emit ToppedUp(leaseId, amount, fee, uint32(newDuration));
    }

    /// @notice See ILeaseEscrow.
    function closeLease(uint256 leaseId) external nonReentrant {
        uint256 terms = _ls[leaseId].terms;
        LeaseStatus st = _status(terms);
        if (st != LeaseStatus.Open && st != LeaseStatus.Active) {
            if (st == LeaseStatus.None) revert LeaseEscrowUnknownLease(leaseId);
            revert LeaseEscrowBadStatus(leaseId, st);
        }
        if (msg.sender != _info[leaseId].buyer) {
            uint256 endMs = _tStartMs(terms) + _tDuration(terms) * 1000;
            if (st == LeaseStatus.Open || block.timestamp * 1000 < endMs) revert LeaseEscrowNotEnded(leaseId, endMs);
        }
        (uint256 charged, uint256 refund, uint256 burned, uint256 released) = _finalize(leaseId, terms, LeaseStatus.Closed);
        emit LeaseClosed(leaseId, msg.sender, charged, refund, burned, released);
        _trySettleFees(leaseId);
        _endInteractions(leaseId, terms, charged, burned, released);
    }

    /// @notice See ILeaseEscrow.
    function expireLease(uint256 leaseId) external nonReentrant {
        uint256 terms = _requireStatus(leaseId, LeaseStatus.Open);
        uint256 startBy = _info[leaseId].startBy;
        if (block.timestamp <= startBy) revert LeaseEscrowStartByNotPassed(leaseId, startBy);
        (, uint256 refund,, uint256 released) = _finalize(leaseId, terms, LeaseStatus.Expired);
        emit LeaseExpired(leaseId, refund);
        _trySettleFees(leaseId);
        _endInteractions(leaseId, terms, 0, 0, released);
        _reputation.recordOutcome(_accounts[leaseId].provider, IReputation.Outcome.NoShow);
    }

    /// @notice See ILeaseEscrow.
    function withdraw(address token) external nonReentrant returns (uint256 amount) {
        amount = _withdrawable[msg.sender][token];
        if (amount == 0) revert LeaseEscrowNothingToWithdraw(msg.sender, token);
        _withdrawable[msg.sender][token] = 0;
        if (token == address(0)) {
            (bool ok,) = msg.sender.call{value: amount}("");
            if (!ok) revert LeaseEscrowTransferFailed(msg.sender, token, amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
        emit Withdrawn(msg.sender, token, amount);
    }

    /// @notice See ILeaseEscrow.
    function syncNode(uint256 nodeId) external {
        _syncNode(nodeId);
    }

    /// @notice See ILeaseEscrow.
    function withdrawable(address account, address token) external view returns (uint256) {
        return _withdrawable[account][token];
    }

    /// @notice See ILeaseEscrow.
    function liveLeaseOf(uint256 offerId) external view returns (uint256) {
        return _liveLease[offerId];
    }

    /// @notice See ILeaseEscrow.
    function leaseCount() external view returns (uint256) {
        return _leaseCount;
    }

    // --- internal: settlement -----------------------------------------------------------------------

    /// @dev Gas fast path of settlement: the same checks as `_settleOne` (all must pass) on stack values in
    /// one pass, then the checkpoint write and CheckpointSettled. Returns false, having changed nothing, when
    /// any check fails or the report would exhaust the lease: the caller then runs `_settleOne`, which
    /// re-checks in order and reverts / skips with the precise error (or finalizes the exhausted lease). So
    /// this path can only accept what `_settleOne` accepts, with the same effects.
    function _fastSettle(PackedReport calldata p, Signature calldata sig) private returns (bool ok) {
        bytes32 h = _packedStructHash(p);
        bytes32 digest = _hashTypedDataV4(h);
        assembly ("memory-safe") {
            // slot of mapping(uint256 => ...) at `base` for `key`
            function mslot(key, base) -> sl {
                mstore(0, key)
                mstore(0x20, base)
                sl := keccak256(0, 0x40)
            }
            for {} 1 {} {
                // _ls[leaseId]: terms, ckpt, lastHash in consecutive slots
                let ls := mslot(shr(192, calldataload(p)), _ls.slot)
                let terms := sload(ls)
                // Active
                if iszero(eq(and(shr(116, terms), 0xf), 2)) { break }
                let ck := sload(add(ls, 1))
                let newCk := shl(224, timestamp())
                let cap := 0
                let node := 0
                {
                    // lastSeq < seq < 2^32; hash chain when consecutive; flags word clean
                    let seq := and(shr(128, calldataload(p)), 0xffffffffffffffff)
                    let lastSeq := and(ck, 0xffffffff)
                    if iszero(gt(seq, lastSeq)) { break }
                    if gt(seq, 0xffffffff) { break }
                    if and(calldataload(add(p, 0x40)), 0xffffffff) { break }
                    if eq(seq, add(lastSeq, 1)) {
                        let expected := sload(add(ls, 2))
                        if eq(expected, 1) { expected := 0 }
                        if iszero(eq(calldataload(add(p, 0x60)), expected)) { break }
                    }
                    newCk := or(newCk, seq)
                }
                // gpu set fingerprint: top 40 bits of keccak(gpuSetHash)
                mstore(0, calldataload(add(p, 0x80)))
                if iszero(eq(shr(216, keccak256(0, 0x20)), shr(216, terms))) { break }
                {
                    // last window end <= start < end <= lease end; end <= now
                    let w0 := calldataload(p)
                    let we := and(w0, 0xffffffffffffffff)
                    let startMs := mul(and(shr(32, terms), 0xffffffff), 1000)
                    if lt(and(shr(64, w0), 0xffffffffffffffff), and(shr(176, ck), 0xffffffffffff)) { break }
                    if iszero(gt(we, and(shr(64, w0), 0xffffffffffffffff))) { break }
                    if gt(we, add(startMs, mul(and(shr(64, terms), 0xffffffff), 1000))) { break }
                    if gt(we, mul(timestamp(), 1000)) { break }
                    if lt(we, startMs) { break }
                    cap := mul(and(shr(96, terms), 0xffff), sub(we, startMs))
                    newCk := or(newCk, shl(176, we))
                }
                {
                    // counters: 48 bits, never decreasing, busy/allocated within gpuCount x elapsed
                    let w2 := calldataload(add(p, 0x40))
                    let cumBusy := and(calldataload(add(p, 0x20)), 0xffffffffffffffff)
                    let cumEnergy := shr(192, w2)
                    let cumAlloc := and(shr(128, w2), 0xffffffffffffffff)
                    if gt(or(or(cumBusy, cumEnergy), cumAlloc), 0xffffffffffff) { break }
                    if lt(cumBusy, and(shr(32, ck), 0xffffffffffff)) { break }
                    if lt(cumAlloc, and(shr(80, ck), 0xffffffffffff)) { break }
                    if lt(cumEnergy, and(shr(128, ck), 0xffffffffffff)) { break }
                    if or(gt(cumBusy, cap), gt(cumAlloc, cap)) { break }
                    newCk := or(newCk, or(or(shl(32, cumBusy), shl(80, cumAlloc)), shl(128, cumEnergy)))
                }
                // energy within power cap x GPU time (+ ENERGY_MARGIN_BPS): mW x ms = uJ, / 1000 -> mJ
                node := sload(mslot(and(terms, 0xffffffff), _nodeCache.slot))
                if gt(shr(128, and(newCk, shl(128, 0xffffffffffff))), div(mul(mul(and(shr(160, node), 0xffffffff), cap), 10500), 10000000)) {
                    break
                }
                let fm := mload(0x40)
                {
                    // signature: v 27/28, low s, recovers to the node's attestor (non-zero)
                    let v := calldataload(add(sig, 0x40))
                    if iszero(or(eq(v, 27), eq(v, 28))) { break }
                    if gt(calldataload(add(sig, 0x20)), 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0) {
                        break
                    }
                    mstore(fm, digest)
                    mstore(add(fm, 0x20), v)
                    mstore(add(fm, 0x40), calldataload(sig))
                    mstore(add(fm, 0x60), calldataload(add(sig, 0x20)))
                    mstore(0, 0)
                    if iszero(staticcall(gas(), 1, fm, 0x80, 0, 0x20)) { break }
                    if iszero(mload(0)) { break }
                    if iszero(eq(mload(0), and(node, 0xffffffffffffffffffffffffffffffffffffffff))) { break }
                }
                // billable: mode 0 reserved = allocated time, 1 metered = busy time
                let shift := 32
                if iszero(and(shr(112, terms), 0xf)) { shift := 80 }
                let newBill := and(shr(shift, newCk), 0xffffffffffff)
                let oldBill := and(shr(shift, ck), 0xffffffffffff)
                // exhausting the escrow: the full path finalizes the lease
                if iszero(lt(newBill, mul(mul(and(shr(96, terms), 0xffff), and(shr(64, terms), 0xffffffff)), 1000))) {
                    break
                }
                sstore(add(ls, 1), newCk)
                sstore(add(ls, 2), h)
                let price := and(shr(120, terms), 0xffffffffffffffffffffffff)
                mstore(fm, and(newCk, 0xffffffff))
                mstore(add(fm, 0x20), h)
                mstore(add(fm, 0x40), sub(newBill, oldBill))
                mstore(add(fm, 0x60), sub(div(mul(price, newBill), 1000), div(mul(price, oldBill), 1000)))
                mstore(add(fm, 0x80), calldataload(add(p, 0xa0)))
                // CheckpointSettled(uint256 indexed,uint64,bytes32,uint64,uint256,bytes32)
                log2(fm, 0xa0, 0xbb3983757c0017ae2951a95e9d11e3d77d7e50c4e814711fb792db407f1649be, shr(192, calldataload(p)))
                ok := 1
                break
            }
        }
    }

    /// @dev Every DESIGN check, cheapest first; signature last. strict: revert with the custom error;
    /// otherwise emit CheckpointSkipped(reason = that error's selector) and return false.
    function _settleOne(PackedReport calldata p, Signature calldata sig, bool strict) private returns (bool) {
        uint256 w0 = p.w0;
        uint256 leaseId = w0 >> 192;
        uint64 seq = uint64(w0 >> 128);
        uint256 terms = _ls[leaseId].terms;
        uint256 ck = _ls[leaseId].ckpt;
        bytes4 err = _checkLease(p, leaseId, seq, terms, ck, strict);
        if (err == 0) err = _checkCounters(p, leaseId, terms, ck, strict);
        if (err != 0) return _skip(leaseId, seq, err);
        bytes32 h = _packedStructHash(p);
        err = _checkSigner(h, sig, leaseId, terms, strict);
        if (err != 0) return _skip(leaseId, seq, err);
        _apply(p, leaseId, seq, terms, ck, h);
        return true;
    }

    function _skip(uint256 leaseId, uint64 seq, bytes4 reason) private returns (bool) {
        emit CheckpointSkipped(leaseId, seq, reason);
        return false;
    }

    function _checkLease(PackedReport calldata p, uint256 leaseId, uint64 seq, uint256 terms, uint256 ck, bool strict)
        private
        view
        returns (bytes4)
    {
        LeaseStatus st = _status(terms);
        if (st != LeaseStatus.Active) {
            if (strict) revert LeaseEscrowBadStatus(leaseId, st);
            return LeaseEscrowBadStatus.selector;
        }
        if (p.w2 & _M32 != 0) {
            if (strict) revert LeaseEscrowMalformedReport(leaseId, seq);
            return LeaseEscrowMalformedReport.selector;
        }
        uint64 lastSeq = uint64(ck & _M32);
        if (seq <= lastSeq) {
            if (strict) revert LeaseEscrowStaleReport(leaseId, seq, lastSeq);
            return LeaseEscrowStaleReport.selector;
        }
        if (seq > _M32) {
            if (strict) revert LeaseEscrowCounterOverflow(leaseId, 3, seq);
            return LeaseEscrowCounterOverflow.selector;
        }
        if (seq == lastSeq + 1) {
            bytes32 expected = _ls[leaseId].lastHash;
            if (expected == _NO_REPORT) expected = 0;
            if (p.prevReportHash != expected) {
                if (strict) revert LeaseEscrowBrokenChain(leaseId, seq, p.prevReportHash, expected);
                return LeaseEscrowBrokenChain.selector;
            }
        }
        {
            if (_gpuSetFp(p.gpuSetHash) != (terms >> 216) << 216) {
                if (strict) revert LeaseEscrowWrongGpuSet(leaseId, p.gpuSetHash, _gpuSet[leaseId]);
                return LeaseEscrowWrongGpuSet.selector;
            }
        }
        uint64 ws = uint64(p.w0 >> 64);
        uint64 we = uint64(p.w0);
        {
            uint64 notBefore = uint64((ck >> 176) & _M48);
            if (ws < notBefore || we <= ws) {
                if (strict) revert LeaseEscrowBadWindow(leaseId, ws, we, notBefore);
                return LeaseEscrowBadWindow.selector;
            }
        }
        uint64 endMs = uint64(_tStartMs(terms) + _tDuration(terms) * 1000);
        if (we > endMs) {
            if (strict) revert LeaseEscrowWindowOutsideLease(leaseId, we, endMs);
            return LeaseEscrowWindowOutsideLease.selector;
        }
        if (we > block.timestamp * 1000) {
            if (strict) revert LeaseEscrowWindowInFuture(leaseId, we, block.timestamp * 1000);
            return LeaseEscrowWindowInFuture.selector;
        }
        return 0;
    }

    function _checkCounters(PackedReport calldata p, uint256 leaseId, uint256 terms, uint256 ck, bool strict)
        private
        view
        returns (bytes4)
    {
        uint64 cumBusy = uint64(p.w1);
        uint64 cumEnergy = uint64(p.w2 >> 192);
        uint64 cumAlloc = uint64(p.w2 >> 128);
        {
            (uint8 c, uint64 v) = cumBusy > _M48 ? (0, cumBusy) : cumAlloc > _M48 ? (1, cumAlloc) : (2, cumEnergy);
            if (v > _M48) {
                if (strict) revert LeaseEscrowCounterOverflow(leaseId, c, v);
                return LeaseEscrowCounterOverflow.selector;
            }
        }
        {
            uint64 lastBusy = uint64((ck >> 32) & _M48);
            uint64 lastAlloc = uint64((ck >> 80) & _M48);
            uint64 lastEnergy = uint64((ck >> 128) & _M48);
            (bool down, uint8 c, uint64 v, uint64 last) = cumBusy < lastBusy
                ? (true, 0, cumBusy, lastBusy)
                : cumAlloc < lastAlloc ? (true, 1, cumAlloc, lastAlloc) : (cumEnergy < lastEnergy, 2, cumEnergy, lastEnergy);
            if (down) {
                if (strict) revert LeaseEscrowCounterDecreased(leaseId, c, v, last);
                return LeaseEscrowCounterDecreased.selector;
            }
        }
        return _checkCaps(p, leaseId, terms, strict);
    }

    /// @dev Busy and allocated GPU time within gpuCount × elapsed; energy within power cap × that (+ margin).
    function _checkCaps(PackedReport calldata p, uint256 leaseId, uint256 terms, bool strict)
        private
        view
        returns (bytes4)
    {
        uint256 cap = _tGpus(terms) * (uint64(p.w0) - _tStartMs(terms));
        uint64 cumBusy = uint64(p.w1);
        uint64 cumAlloc = uint64(p.w2 >> 128);
        if (cumBusy > cap || cumAlloc > cap) {
            (uint8 c, uint64 v) = cumBusy > cap ? (0, cumBusy) : (1, cumAlloc);
            if (strict) revert LeaseEscrowTimeAboveCapacity(leaseId, c, v, cap);
            return LeaseEscrowTimeAboveCapacity.selector;
        }
        // mW × ms = µJ; / 1000 → mJ; times (1 + margin)
        cap = (((_nodeCache[_tNode(terms)] >> 160) & _M32) * cap * (10_000 + ENERGY_MARGIN_BPS)) / 10_000_000;
        uint64 cumEnergy = uint64(p.w2 >> 192);
        if (cumEnergy > cap) {
            if (strict) revert LeaseEscrowEnergyAboveCap(leaseId, cumEnergy, cap);
            return LeaseEscrowEnergyAboveCap.selector;
        }
        return 0;
    }

    function _checkSigner(bytes32 structHash, Signature calldata sig, uint256 leaseId, uint256 terms, bool strict)
        private
        view
        returns (bytes4)
    {
        (address signer, ECDSA.RecoverError e, bytes32 errArg) =
            ECDSA.tryRecover(_hashTypedDataV4(structHash), sig.v, sig.r, sig.s);
        if (e != ECDSA.RecoverError.NoError) {
            if (e == ECDSA.RecoverError.InvalidSignatureS) {
                // errArg is the offending s
                if (strict) revert LeaseEscrowMalleableSignature(leaseId, errArg);
                return LeaseEscrowMalleableSignature.selector;
            }
            if (strict) revert LeaseEscrowInvalidSignature(leaseId);
            return LeaseEscrowInvalidSignature.selector;
        }
        address attestor = address(uint160(_nodeCache[_tNode(terms)]));
        if (signer != attestor) {
            if (strict) revert LeaseEscrowWrongSigner(leaseId, signer, attestor);
            return LeaseEscrowWrongSigner.selector;
        }
        return 0;
    }

    function _apply(PackedReport calldata p, uint256 leaseId, uint64 seq, uint256 terms, uint256 ck, bytes32 h) private {
        uint256 newBill;
        {
            uint256 w2 = p.w2;
            uint256 cumBusy = uint64(p.w1);
            uint256 cumAlloc = uint64(w2 >> 128);
            _ls[leaseId].ckpt = uint256(seq) | (cumBusy << 32) | (cumAlloc << 80) | (uint256(uint64(w2 >> 192)) << 128)
                | (uint256(uint64(p.w0)) << 176) | (block.timestamp << 224);
            _ls[leaseId].lastHash = h;
            newBill = _tMode(terms) == 0 ? cumAlloc : cumBusy;
        }
        uint256 oldBill = _tMode(terms) == 0 ? (ck >> 80) & _M48 : (ck >> 32) & _M48;
        uint256 price = _tPrice(terms);
        emit CheckpointSettled(
            leaseId, seq, h, uint64(newBill - oldBill), (price * newBill) / 1000 - (price * oldBill) / 1000, p.samplesRoot
        );
        // All escrow charged: billable reached gpuCount × durationS (the bound the checks enforce).
        if (newBill >= _tGpus(terms) * _tDuration(terms) * 1000) {
            emit LeaseExhausted(leaseId, (price * newBill) / 1000);
            (uint256 charged,, uint256 burned, uint256 released) = _finalize(leaseId, terms, LeaseStatus.Exhausted);
            _trySettleFees(leaseId);
            _endInteractions(leaseId, terms, charged, burned, released);
        }
    }

    // --- internal: lease end and money ---------------------------------------------------------------

    /// @dev Ends an Open or Active lease, effects only (checks-effects-interactions): sets the final status,
    /// frees the offer and credits the uncharged escrow to the buyer. Every caller then emits its event, runs
    /// `_trySettleFees` and finally `_endInteractions` (rights and reputation), so no state is written after
    /// an external call.
    function _finalize(uint256 leaseId, uint256 terms, LeaseStatus to)
        private
        returns (uint256 charged, uint256 refund, uint256 burned, uint256 released)
    {
        uint256 gpus = _tGpus(terms);
        uint256 duration = _tDuration(terms);
        _ls[leaseId].terms = _withStatus(terms, to);
        delete _liveLease[_parties[leaseId].offerId];
        if (_status(terms) == LeaseStatus.Active) {
            charged = _charged(terms, _ls[leaseId].ckpt);
            // used rights: GPU-seconds the lease ran (activation and now are whole block seconds)
            uint256 startS = (terms >> 32) & _M32;
            uint256 endS = startS + duration;
            burned = gpus * ((block.timestamp < endS ? block.timestamp : endS) - startS);
        }
        refund = _tPrice(terms) * gpus * duration - charged;
        released = gpus * duration - burned;
        if (refund != 0) _credit(_info[leaseId].buyer, _accounts[leaseId].token, refund);
    }

    /// @dev Interactions of a lease `_finalize` ended (`terms` as before it): burns the used rights, returns
    /// the rest to the holder and, for a lease that was Active, records the provider's uptime and (only if
    /// it delivered billable time: no free reputation farming) a completed lease. Writes no escrow state.
    function _endInteractions(uint256 leaseId, uint256 terms, uint256 charged, uint256 burned, uint256 released)
        private
    {
        LeaseParties memory pt = _parties[leaseId];
        if (burned != 0) _registry.burnLocked(pt.offerId, burned);
        if (released != 0) _registry.releaseRights(pt.holder, pt.offerId, released);
        if (_status(terms) != LeaseStatus.Active) return;
        address providerAccount = _accounts[leaseId].provider;
        uint256 leaseMs = burned * 1000;
        if (leaseMs != 0) {
            uint256 attested = (_ls[leaseId].ckpt >> 80) & _M48;
            _reputation.recordUptime(providerAccount, attested < leaseMs ? attested : leaseMs, leaseMs);
        }
        if (charged != 0) _reputation.recordOutcome(providerAccount, IReputation.Outcome.Completed);
    }

    /// @dev Takes `amount` from the caller: `value` is the msg.value of the payable entry point (openLease,
    /// topUp), passed in so this helper never reads msg.value itself.
    function _pull(address token, uint256 amount, uint256 value) private {
        if (token == address(0)) {
            if (value != amount) revert LeaseEscrowWrongValue(amount, value);
            return;
        }
        if (value != 0) revert LeaseEscrowWrongValue(0, value);
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert LeaseEscrowFeeOnTransferToken(token, amount, received);
    }

    /// @dev Price per GPU-second a lease on `o` pays to `holder`: today the offer's price (resale: the
    /// holder's ask, bounded to 96 bits like offer prices).
    function _leasePrice(ICapacityRegistry.Offer memory o, address holder) private pure returns (uint256) {
        holder;
        return o.pricePerGpuSecond;
    }

    /// @dev Copies a node's attestor and power cap from the registry; returns whether the node is active.
    function _syncNode(uint256 nodeId) private returns (bool active) {
        (address attestor, uint32 maxPower, bool isActive) = _registry.nodeAttestor(nodeId);
        uint256 packed = uint256(uint160(attestor)) | (uint256(maxPower) << 160);
        if (_nodeCache[nodeId] != packed) {
            _nodeCache[nodeId] = packed;
            emit NodeSynced(nodeId, attestor, maxPower);
        }
        return isActive;
    }
}
