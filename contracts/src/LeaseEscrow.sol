// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ICapacityRegistry} from "./interfaces/ICapacityRegistry.sol";
import {IReputation} from "./interfaces/IReputation.sol";
import {ILeaseEscrowCore, LEASE_ESCROW_INTERFACE_ID} from "./interfaces/ILeaseEscrow.sol";
import {LeaseEscrowBase} from "./LeaseEscrowBase.sol";
import {
    Terms,
    TermsLibrary,
    TERMS_NODE_MASK,
    TERMS_START_OFFSET,
    TERMS_START_MASK,
    TERMS_DURATION_OFFSET,
    TERMS_DURATION_MASK,
    TERMS_GPUS_OFFSET,
    TERMS_GPUS_MASK,
    TERMS_MODE_OFFSET,
    TERMS_MODE_MASK,
    TERMS_STATUS_OFFSET,
    TERMS_STATUS_MASK,
    TERMS_STATUS_ACTIVE,
    TERMS_PRICE_OFFSET,
    TERMS_PRICE_MASK,
    TERMS_BILL_OFFSETS
} from "./types/Terms.sol";
import {
    Checkpoint,
    CheckpointLibrary,
    CKPT_SEQ_MASK,
    CKPT_BUSY_OFFSET,
    CKPT_ALLOC_OFFSET,
    CKPT_ENERGY_OFFSET,
    CKPT_SM_OFFSET,
    CKPT_FIELD_MASK,
    CKPT_SETTLED_AT_OFFSET,
    CKPT_LANES_A,
    CKPT_GUARDS_A,
    CKPT_LANES_B,
    CKPT_GUARDS_B
} from "./types/Checkpoint.sol";
import {
    NodeCache, NodeCacheLibrary, NODE_CACHE_ATTESTOR_MASK, NODE_CACHE_POWER_OFFSET, NODE_CACHE_POWER_MASK
} from "./types/NodeCache.sol";
import {
    EntryHead,
    ENTRY_LEASE_ID_SHIFT,
    ENTRY_SEQ_SHIFT,
    ENTRY_SEQ_MASK,
    ENTRY_WINDOW_END_SHIFT,
    ENTRY_CUM_BUSY_SHIFT,
    ENTRY_CUM_ENERGY_SHIFT,
    ENTRY_FIELD_MASK,
    ENTRY_WORD1,
    ENTRY_CUM_SM_SHIFT,
    ENTRY_FLAGS_SHIFT,
    ENTRY_FLAGS_MASK,
    ENTRY_FLAG_WITH_LAST,
    ENTRY_PREV_HASH,
    ENTRY_WINDOW_HASH,
    ENTRY_SIG_R,
    ENTRY_SIG_VS,
    ENTRY_TERMS,
    ENTRY_CKPT,
    ENTRY_LAST_HASH,
    ENTRY_SIZE,
    RECORD_SIZE,
    RECORD_LEASE_ID_SHIFT,
    RECORD_REPORT_HASH,
    RECORD_CKPT,
    RECORD_CHARGED,
    RECORD_CHARGED_SHIFT
} from "./types/SettlementEntry.sol";

/// @title LeaseEscrow
/// @notice Escrow of GPU leases, settled on metering reports (protocol v2) signed (EIP-712) by the node's
/// attestor.
/// @dev Money rules: pull payments only (`withdraw`), every external entry point that can call out is
/// nonReentrant (settlement calls out only when a report exhausts a lease, and takes the lock there), and
/// for each token: balance = Σ escrow not yet charged + Σ fee held + Σ pending charges + Σ withdrawable.
///
/// What a report may bill, and why cumulative bounds are enough (protocol v2). A report carries the lease's
/// cumulative counters since activation: busy, allocated, energy and SM-active. The escrow never bills a
/// window: a lease's total charge is price × (its billing mode's cumulative counter at the last settled
/// checkpoint) / 1000, rounded down once, and each checkpoint charges the growth of that total. So the sum
/// of all charges is the total of the last checkpoint, whatever windows the reports described, however they
/// overlapped, and whichever reports were skipped or settled out of the attestor's order (seq only grows).
/// Per entry the escrow checks, besides the signature by the node's attestor, the hash chain, seq order, the
/// state commitment and Active status:
///  - lease start < windowEndMs ≤ lease end, and windowEndMs ≤ now;
///  - no cumulative counter (busy, allocated, energy, SM-active) decreases: no charge is ever negative, and a
///    later report cannot lower a figure an earlier one billed or vouched for;
///  - cumBusyMs ≤ cumAllocatedMs (busy time is time the driver's samples covered: the metered basis never
///    exceeds the reserved one);
///  - cumAllocatedMs and cumSmActiveMs ≤ gpuCount × (windowEndMs − lease start), hence cumBusyMs too;
///  - cumEnergyMj ≤ maxPowerMwPerGpu × gpuCount × (windowEndMs − lease start) / 1000 × (1 + ENERGY_MARGIN_BPS).
/// Every billing basis is one of the three time counters, so at any checkpoint the billed GPU time is at most
/// the lease's capacity up to that report's window end, which is at most the lease end and at most now: a
/// lease can never be charged beyond its escrow (price × gpuCount × durationS), nor for time that has not
/// happened yet (closing refunds the rest at once, and nothing settles after close). Reaching the escrow
/// makes the lease Exhausted. Windows on the driver's timeline are therefore not compared with each other
/// on chain (v1 did, at a cost of a checkpoint field): auditors check the window sequence from the reports
/// and samples, and a wrong figure inside these bounds is a matter for a dispute, as before.
///
/// IMPORTANT: fee-on-transfer (and rebasing) ERC-20 tokens are NOT supported: openLease and topUp compare
/// the balance before and after the transfer and revert with LeaseEscrowFeeOnTransferToken if less arrived.
///
/// Pause (PAUSER_ROLE) stops money entering (openLease, topUp, activateLease) and earnings leaving to
/// providers (releaseEarnings); withdrawals stay open. Settlement is NOT paused: it only books escrow as
/// pending, nothing pending can leave while paused, and while paused a buyer may dispute pending charges
/// whatever the challenge period (so a pause outlasting it takes no buyer's recourse). Leaving the pause
/// check out of settlement keeps its cost to one storage slot per lease and one per node.
///
/// NOTE: earnings of a lease are held for `challengePeriod` after the lease's LAST settlement (the clock
/// restarts at each settlement); a dispute freezes everything pending. A buyer may close an Active lease at
/// any time: reports not yet settled by then are not paid, so the relayer settles the latest report first.
///
/// Hot-path storage per lease: ONE slot, the state commitment keccak256(abi.encode(terms, ckpt, lastReportHash));
/// a settlement entry carries the three words in calldata and the contract checks them against it (layouts in
/// ILeaseEscrow). Terms are also kept in their own slot for views and the non-settlement paths. Settlement
/// first runs `_fastSettle` (every check in one assembly pass); any rejection, and the exhausting report, fall
/// back to the checked Solidity path `_settleOne`, which reports the precise error, so settlement accepts
/// exactly the reports the checked path accepts.
///
/// The GPU set is not checked on-chain: the signed report binds it (`WindowDetail.gpuSetHash`), only the
/// node's registered attestor can sign, and auditors compare it with `lease(id).gpuSetHash` (a mismatch is
/// grounds for a dispute). An on-chain comparison would cost a 32-byte word per checkpoint and catch only an
/// attestor that signs its own mistake. Likewise the node's GPM feature is not read at settlement: a lease
/// bills SM-active time only if its offer did, and the registry refuses such an offer on a node without GPM
/// (features never change after registration).
contract LeaseEscrow is LeaseEscrowBase, ILeaseEscrowCore {
    using SafeERC20 for IERC20;

    address private immutable _extension;

    /// @dev Settlement fast path (`_fastSettle`): the node memo's layout and the settled flag (bit 255) it returns.
    uint256 private constant _MEMO_NODE_SHIFT = 192;
    uint256 private constant _SETTLED_FLAG = 0x8000000000000000000000000000000000000000000000000000000000000000;
    /// @dev Signature recovery in the fast path: the ecrecover precompile, EIP-2098's s bits, and the
    /// largest s accepted (secp256k1 order / 2, the bound ECDSA.tryRecover applies).
    uint256 private constant _ECRECOVER = 1;
    uint256 private constant _EIP2098_S_MASK = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;
    uint256 private constant _SECP256K1_HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

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

    /// @notice ERC-165: the escrow's own interface, LEASE_ESCROW_INTERFACE_ID (the XOR of every function
    /// ILeaseEscrowBase, ILeaseEscrowCore and ILeaseEscrowExtension declare), and what AccessControl claims
    /// (IAccessControl, IERC165).
    /// @param interfaceId the ERC-165 id asked about
    /// @return whether the escrow implements it
    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return interfaceId == LEASE_ESCROW_INTERFACE_ID || super.supportsInterface(interfaceId);
    }

    /// @inheritdoc ILeaseEscrowCore
    function extension() external view returns (address) {
        return _extension;
    }

    // --- leases -------------------------------------------------------------------------------------

    /// @inheritdoc ILeaseEscrowCore
    function openLease(uint256 offerId, address holder, uint32 durationS, uint64 startBy, uint256 maxTotal)
        external
        payable
        nonReentrant
        whenNotPaused
        returns (uint256 leaseId)
    {
        // priced for this lease: the holder's resale ask, else the offer's tier for durationS, else its price
        ICapacityRegistry.Offer memory o = _registry.offerFor(offerId, holder, durationS);
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
        // a lease's price is fixed per lease (stored in its terms): the holder's ask or the offer's price
        uint256 price = o.pricePerGpuSecond;
        if (price > TERMS_PRICE_MASK) revert LeaseEscrowAmountTooLarge(price); // the terms' 96-bit price field
        uint256 escrowed = price * o.gpuCount * durationS;
        if (escrowed > type(uint128).max) revert LeaseEscrowAmountTooLarge(escrowed);
        uint256 fee = (escrowed * feeBps) / 10_000;
        if (escrowed + fee > maxTotal) revert LeaseEscrowTotalAboveMax(escrowed + fee, maxTotal);

        leaseId = ++_leaseCount;
        _setTerms(
            leaseId,
            TermsLibrary.open(price, uint8(o.billingMode), o.gpuCount, durationS, o.nodeId),
            Checkpoint.wrap(0),
            0
        );
        _gpuSet[leaseId] = o.gpuSetHash;
        _info[leaseId] = LeaseInfo({buyer: msg.sender, startBy: uint40(startBy), feesSettled: false, feeBps: feeBps});
        _parties[leaseId] = LeaseParties({holder: holder, offerId: uint64(offerId)});
        _accounts[leaseId] = LeaseAccounts({provider: o.provider, token: o.token});
        _liveLease[offerId] = leaseId;

        _registry.lockRights(holder, offerId, uint256(o.gpuCount) * durationS);
        _pull(o.token, escrowed + fee, msg.value);
        emit LeaseOpened(leaseId, offerId, msg.sender, holder, durationS, startBy, escrowed, fee, feeBps);
    }

    /// @inheritdoc ILeaseEscrowCore
    function activateLease(uint256 leaseId) external nonReentrant whenNotPaused {
        Terms terms = _requireStatus(leaseId, LeaseStatus.Open);
        LeaseAccounts memory acc = _accounts[leaseId];
        if (
            msg.sender != acc.provider && msg.sender != _registry.provider(acc.provider).payout
                && msg.sender != _nodeCache[terms.nodeId()].attestor()
        ) revert LeaseEscrowNotProviderSide(leaseId, msg.sender);
        uint256 validFrom = _registry.offer(_parties[leaseId].offerId).validFrom;
        if (block.timestamp < validFrom) revert LeaseEscrowOfferNotStarted(leaseId, validFrom);
        uint256 startBy = _info[leaseId].startBy;
        if (block.timestamp > startBy) revert LeaseEscrowStartByPassed(leaseId, startBy);

        uint256 startMs = block.timestamp * 1000;
        _setTerms(
            leaseId,
            terms.activated(block.timestamp),
            CheckpointLibrary.initial(block.timestamp),
            0
        );
        uint256 endMs = startMs + terms.durationS() * 1000;
        emit LeaseActivated(leaseId, uint64(startMs), uint64(endMs));
    }

    /// @inheritdoc ILeaseEscrowCore
    /// @dev Not Pausable and not nonReentrant (see the contract's NatSpec): the fast path makes no external
    /// call, and the exhausting path (`_exhaust`) takes the reentrancy lock itself.
    function settle(bytes calldata entry) external {
        uint256 p;
        uint256 rec;
        assembly ("memory-safe") {
            p := entry.offset
            rec := mload(0x40)
            mstore(0x40, add(rec, 0x80)) // the record (RECORD_SIZE) + the unaligned tail of its last word
        }
        if (_entrySize(p, p + entry.length, p) != entry.length) revert LeaseEscrowMalformedEntries(0);
        bytes32 domain = _domainSeparatorV4();
        if (_fastSettle(p, rec, domain, 0) >> 255 == 0) _settleOne(p, rec, domain, true);
        // CheckpointSettled(leaseId, reportHash, ckpt, charged): the record's words, charged realigned
        bytes32 topic = CheckpointSettled.selector;
        assembly ("memory-safe") {
            mstore(add(rec, RECORD_CHARGED), shr(RECORD_CHARGED_SHIFT, mload(add(rec, RECORD_CHARGED))))
            log2(add(rec, RECORD_REPORT_HASH), 0x60, topic, shr(RECORD_LEASE_ID_SHIFT, mload(rec)))
        }
    }

    /// @inheritdoc ILeaseEscrowCore
    /// @dev Not Pausable and not nonReentrant, like `settle`.
    function settleBatch(bytes calldata entries) external returns (uint256 settled) {
        return _settleEntries(entries);
    }

    /// @inheritdoc ILeaseEscrowCore
    function topUp(uint256 leaseId, uint256 amount, uint256 ckpt, bytes32 lastReportHash)
        external
        payable
        nonReentrant
        whenNotPaused
    {
        Terms terms = _verifiedTerms(leaseId, Checkpoint.wrap(ckpt), lastReportHash);
        LeaseStatus st = terms.status();
        if (st != LeaseStatus.Open && st != LeaseStatus.Active) revert LeaseEscrowBadStatus(leaseId, st);
        if (msg.sender != _info[leaseId].buyer) revert LeaseEscrowNotBuyer(leaseId, msg.sender);
        uint256 unit = terms.price() * terms.gpuCount();
        if (amount == 0 || amount % unit != 0) revert LeaseEscrowTopUpNotWholeSeconds(amount, unit);
        uint256 oldDuration = terms.durationS();
        uint256 newDuration = oldDuration + amount / unit;
        if (newDuration > type(uint32).max) revert LeaseEscrowBadDuration(newDuration);
        LeaseParties memory pt = _parties[leaseId];
        {
            uint256 validUntil = _registry.offer(pt.offerId).validUntil;
            uint256 startS = st == LeaseStatus.Active ? terms.startS() : _info[leaseId].startBy;
            if (startS + newDuration > validUntil) revert LeaseEscrowBeyondOffer(leaseId, startS + newDuration, validUntil);
        }
        uint256 fee = _topUpFee(leaseId, unit, oldDuration, newDuration);
        _setTerms(leaseId, terms.withDuration(newDuration), Checkpoint.wrap(ckpt), lastReportHash);
        _registry.lockRights(pt.holder, pt.offerId, terms.gpuCount() * (newDuration - oldDuration));
        _pull(_accounts[leaseId].token, amount + fee, msg.value);
        emit ToppedUp(leaseId, amount, fee, uint32(newDuration));
    }

    /// @dev Fee on the escrow a top-up adds: the fee on the new escrow minus the fee already held.
    function _topUpFee(uint256 leaseId, uint256 unit, uint256 oldDuration, uint256 newDuration)
        private
        view
        returns (uint256)
    {
        uint256 feeBps = _info[leaseId].feeBps;
        uint256 newEscrow = unit * newDuration;
        if (newEscrow > type(uint128).max) revert LeaseEscrowAmountTooLarge(newEscrow);
        return (newEscrow * feeBps) / 10_000 - (unit * oldDuration * feeBps) / 10_000;
    }

    /// @inheritdoc ILeaseEscrowCore
    function closeLease(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external nonReentrant {
        Terms terms = _verifiedTerms(leaseId, Checkpoint.wrap(ckpt), lastReportHash);
        LeaseStatus st = terms.status();
        if (st != LeaseStatus.Open && st != LeaseStatus.Active) revert LeaseEscrowBadStatus(leaseId, st);
        if (msg.sender != _info[leaseId].buyer) {
            uint256 endMs = terms.endMs();
            if (st == LeaseStatus.Open || block.timestamp * 1000 < endMs) revert LeaseEscrowNotEnded(leaseId, endMs);
        }
        (uint256 charged, uint256 refund, uint256 burned, uint256 released) =
            _finalize(leaseId, terms, LeaseStatus.Closed, Checkpoint.wrap(ckpt), lastReportHash);
        emit LeaseClosed(leaseId, msg.sender, charged, refund, burned, released);
        _trySettleFees(leaseId, Checkpoint.wrap(ckpt));
        _endInteractions(leaseId, terms, charged, burned, released, Checkpoint.wrap(ckpt));
    }

    /// @inheritdoc ILeaseEscrowCore
    function expireLease(uint256 leaseId) external nonReentrant {
        Terms terms = _requireStatus(leaseId, LeaseStatus.Open);
        uint256 startBy = _info[leaseId].startBy;
        if (block.timestamp <= startBy) revert LeaseEscrowStartByNotPassed(leaseId, startBy);
        // an Open lease's state is (terms, 0, 0) by construction
        Checkpoint none = Checkpoint.wrap(0);
        (, uint256 refund,, uint256 released) = _finalize(leaseId, terms, LeaseStatus.Expired, none, 0);
        emit LeaseExpired(leaseId, refund);
        _trySettleFees(leaseId, none);
        _endInteractions(leaseId, terms, 0, 0, released, none);
        _reputation.recordOutcome(_accounts[leaseId].provider, IReputation.Outcome.NoShow);
    }

    /// @inheritdoc ILeaseEscrowCore
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

    /// @inheritdoc ILeaseEscrowCore
    function syncNode(uint256 nodeId) external {
        _syncNode(nodeId);
    }

    /// @inheritdoc ILeaseEscrowCore
    function withdrawable(address account, address token) external view returns (uint256) {
        return _withdrawable[account][token];
    }

    /// @inheritdoc ILeaseEscrowCore
    function liveLeaseOf(uint256 offerId) external view returns (uint256) {
        return _liveLease[offerId];
    }

    /// @inheritdoc ILeaseEscrowCore
    function leaseCount() external view returns (uint256) {
        return _leaseCount;
    }

    // --- internal: settlement -----------------------------------------------------------------------

    /// @dev A settlement entry, decoded (layout in ILeaseEscrow's header).
    struct Entry {
        uint256 leaseId;
        uint64 seq;
        uint64 windowEndMs;
        uint64 cumBusy;
        uint64 cumEnergy;
        uint64 cumAlloc;
        uint64 cumSm;
        bytes32 prev;
        bytes32 r;
        bytes32 vs;
        Terms terms;
        Checkpoint ck;
        bytes32 lastHash;
    }

    /// @dev Settles the entries in `data` in order; a failing one is skipped with CheckpointSkipped. One
    /// CheckpointsSettled carries a record per settled entry.
    function _settleEntries(bytes calldata data) private returns (uint256 settled) {
        bytes32 domain = _domainSeparatorV4();
        uint256 p;
        uint256 end;
        uint256 buf; // the event's ABI data: 0x20 | length | records (RECORD_SIZE each) | zero padding
        assembly ("memory-safe") {
            p := data.offset
            end := add(p, data.length)
            buf := mload(0x40)
            // at most length / ENTRY_SIZE records (rounded up here: + RECORD_SIZE), header 64, slack 32 for the
            // last unaligned write
            mstore(0x40, add(buf, add(add(RECORD_SIZE, 0x60), div(mul(data.length, RECORD_SIZE), ENTRY_SIZE))))
        }
        uint256 start = p;
        uint256 rec = buf + 0x40;
        uint256 memo; // (nodeId + 1) << _MEMO_NODE_SHIFT | _nodeCache[nodeId] of the last node read
        unchecked {
            while (p < end) {
                uint256 size;
                bool bad;
                // `_entrySize` inlined: a call per entry costs ~50 gas on the batch's hot path
                assembly ("memory-safe") {
                    let flags := and(shr(ENTRY_FLAGS_SHIFT, calldataload(add(p, ENTRY_WORD1))), ENTRY_FLAGS_MASK)
                    size := add(ENTRY_SIZE, mul(flags, 32))
                    bad := or(gt(flags, ENTRY_FLAG_WITH_LAST), gt(add(p, size), end))
                }
                if (bad) revert LeaseEscrowMalformedEntries(p - start);
                memo = _fastSettle(p, rec, domain, memo);
                if (memo & _SETTLED_FLAG != 0) {
                    memo ^= _SETTLED_FLAG;
                    rec += RECORD_SIZE;
                    ++settled;
                } else if (_settleOne(p, rec, domain, false)) {
                    rec += RECORD_SIZE;
                    ++settled;
                }
                p += size;
            }
        }
        if (settled != 0) {
            bytes32 topic = CheckpointsSettled.selector;
            assembly ("memory-safe") {
                let len := sub(rec, add(buf, 0x40))
                mstore(rec, 0) // zero padding after the last record
                mstore(buf, 0x20)
                mstore(add(buf, 0x20), len)
                log1(buf, add(0x40, and(add(len, 31), not(31))), topic)
            }
        }
    }

    /// @dev Size of the entry at calldata offset p (reverts unless it is whole and its flags are known).
    function _entrySize(uint256 p, uint256 end, uint256 start) private pure returns (uint256 size) {
        bool bad;
        assembly ("memory-safe") {
            let flags := and(shr(ENTRY_FLAGS_SHIFT, calldataload(add(p, ENTRY_WORD1))), ENTRY_FLAGS_MASK)
            size := add(ENTRY_SIZE, mul(flags, 32))
            bad := or(gt(flags, ENTRY_FLAG_WITH_LAST), gt(add(p, size), end))
        }
        if (bad) revert LeaseEscrowMalformedEntries(p - start);
    }

    /// @dev Gas fast path of settlement: the same checks as `_settleOne` (all must pass) on stack values in
    /// one pass, then the commitment write and the record at `rec`. Returns false, having changed nothing,
    /// when any check fails or the report would exhaust the lease: the caller then runs `_settleOne`, which
    /// re-checks in order and reverts / skips with the precise error (or finalizes the exhausted lease). So
    /// this path can only accept what `_settleOne` accepts, with the same effects
    /// (test/differential/SettlePathsDifferential.t.sol runs both alone on the same fuzzed entries).
    /// Every field is read with the constants its type's library uses (types/): Terms, Checkpoint, NodeCache,
    /// the entry and record layouts (SettlementEntry); the energy cap with _ENERGY_CAP_NUMERATOR / _DENOMINATOR.
    /// `memo` caches the last node read: (nodeId + 1) << _MEMO_NODE_SHIFT | _nodeCache[nodeId]. Returns the
    /// memo, with _SETTLED_FLAG set when the entry was settled.
    function _fastSettle(uint256 p, uint256 rec, bytes32 domain, uint256 memo) internal returns (uint256 memoOut) {
        memoOut = memo;
        assembly ("memory-safe") {
            for {} 1 {} {
                let fm := mload(0x40)
                let w0 := calldataload(p) // EntryHead
                let terms := calldataload(add(p, ENTRY_TERMS))
                let ck := calldataload(add(p, ENTRY_CKPT))
                let sl := 0
                {
                    // state commitment; lastHash = prevReportHash unless given (ENTRY_FLAG_WITH_LAST)
                    let lh := calldataload(add(p, ENTRY_PREV_HASH))
                    if and(shr(ENTRY_FLAGS_SHIFT, calldataload(add(p, ENTRY_WORD1))), ENTRY_FLAG_WITH_LAST) {
                        lh := calldataload(add(p, ENTRY_LAST_HASH))
                    }
                    mstore(fm, terms)
                    mstore(add(fm, 0x20), ck)
                    mstore(add(fm, 0x40), lh)
                    mstore(0, shr(ENTRY_LEASE_ID_SHIFT, w0))
                    mstore(0x20, _stateHash.slot)
                    sl := keccak256(0, 0x40)
                    if iszero(eq(sload(sl), keccak256(fm, 0x60))) { break }
                    // Active
                    if iszero(eq(and(shr(TERMS_STATUS_OFFSET, terms), TERMS_STATUS_MASK), TERMS_STATUS_ACTIVE)) {
                        break
                    }
                    // lastSeq < seq; hash chain when consecutive
                    let seq := and(shr(ENTRY_SEQ_SHIFT, w0), ENTRY_SEQ_MASK)
                    let lastSeq := and(ck, CKPT_SEQ_MASK)
                    if iszero(gt(seq, lastSeq)) { break }
                    if eq(seq, add(lastSeq, 1)) { if iszero(eq(calldataload(add(p, ENTRY_PREV_HASH)), lh)) { break } }
                }
                let cap := 0
                {
                    // lease start < window end <= lease end; window end <= now
                    let we := and(shr(ENTRY_WINDOW_END_SHIFT, w0), ENTRY_FIELD_MASK)
                    let startMs := mul(and(shr(TERMS_START_OFFSET, terms), TERMS_START_MASK), 1000)
                    if iszero(gt(we, startMs)) { break }
                    if gt(we, add(startMs, mul(and(shr(TERMS_DURATION_OFFSET, terms), TERMS_DURATION_MASK), 1000))) {
                        break
                    }
                    if gt(we, mul(timestamp(), 1000)) { break }
                    cap := mul(and(shr(TERMS_GPUS_OFFSET, terms), TERMS_GPUS_MASK), sub(we, startMs))
                }
                // the new checkpoint (CheckpointLibrary.pack of the entry's counters, settled now)
                let newCk := or(
                    or(
                        or(shl(CKPT_SETTLED_AT_OFFSET, timestamp()), and(shr(ENTRY_SEQ_SHIFT, w0), ENTRY_SEQ_MASK)),
                        shl(CKPT_SM_OFFSET, shr(ENTRY_CUM_SM_SHIFT, calldataload(add(p, ENTRY_WORD1))))
                    ),
                    or(
                        or(
                            shl(CKPT_BUSY_OFFSET, and(shr(ENTRY_CUM_BUSY_SHIFT, w0), ENTRY_FIELD_MASK)),
                            shl(CKPT_ALLOC_OFFSET, and(w0, ENTRY_FIELD_MASK))
                        ),
                        shl(CKPT_ENERGY_OFFSET, and(shr(ENTRY_CUM_ENERGY_SHIFT, w0), ENTRY_FIELD_MASK))
                    )
                )
                {
                    // no counter went down (busy, allocated, energy, SM-active: types/Checkpoint.sol's lanes):
                    // each lane of new | guard − old keeps its guard bit iff new >= old
                    let a := sub(or(and(newCk, CKPT_LANES_A), CKPT_GUARDS_A), and(ck, CKPT_LANES_A))
                    let b := sub(or(and(newCk, CKPT_LANES_B), CKPT_GUARDS_B), and(ck, CKPT_LANES_B))
                    if or(and(not(a), CKPT_GUARDS_A), and(not(b), CKPT_GUARDS_B)) { break }
                    // busy <= allocated <= gpuCount x elapsed; SM-active <= gpuCount x elapsed
                    let alloc := and(w0, ENTRY_FIELD_MASK)
                    if or(
                        gt(and(shr(ENTRY_CUM_BUSY_SHIFT, w0), ENTRY_FIELD_MASK), alloc),
                        or(gt(alloc, cap), gt(shr(ENTRY_CUM_SM_SHIFT, calldataload(add(p, ENTRY_WORD1))), cap))
                    ) { break }
                }
                // node: attestor and power cap (memo: the previous entry's node)
                {
                    let nodeKey := add(and(terms, TERMS_NODE_MASK), 1)
                    if iszero(eq(shr(_MEMO_NODE_SHIFT, memoOut), nodeKey)) {
                        mstore(0, sub(nodeKey, 1))
                        mstore(0x20, _nodeCache.slot)
                        memoOut := or(shl(_MEMO_NODE_SHIFT, nodeKey), sload(keccak256(0, 0x40)))
                    }
                }
                // energy within power cap x GPU time (+ ENERGY_MARGIN_BPS): mW x ms = uJ, / 1000 -> mJ
                if gt(
                    and(shr(ENTRY_CUM_ENERGY_SHIFT, w0), ENTRY_FIELD_MASK),
                    div(
                        mul(
                            mul(and(shr(NODE_CACHE_POWER_OFFSET, memoOut), NODE_CACHE_POWER_MASK), cap),
                            _ENERGY_CAP_NUMERATOR
                        ),
                        _ENERGY_CAP_DENOMINATOR
                    )
                ) { break }
                // struct hash (as `_entryStructHash`), digest, signer
                mstore(fm, _REPORT_TYPEHASH_LITERAL)
                mstore(add(fm, 0x20), shr(ENTRY_LEASE_ID_SHIFT, w0))
                mstore(add(fm, 0x40), and(shr(ENTRY_SEQ_SHIFT, w0), ENTRY_SEQ_MASK))
                mstore(add(fm, 0x60), calldataload(add(p, ENTRY_PREV_HASH)))
                mstore(add(fm, 0x80), and(shr(ENTRY_WINDOW_END_SHIFT, w0), ENTRY_FIELD_MASK))
                mstore(add(fm, 0xa0), and(shr(ENTRY_CUM_BUSY_SHIFT, w0), ENTRY_FIELD_MASK))
                mstore(add(fm, 0xc0), and(shr(ENTRY_CUM_ENERGY_SHIFT, w0), ENTRY_FIELD_MASK))
                mstore(add(fm, 0xe0), and(w0, ENTRY_FIELD_MASK))
                mstore(add(fm, 0x100), shr(ENTRY_CUM_SM_SHIFT, calldataload(add(p, ENTRY_WORD1))))
                mstore(add(fm, 0x120), calldataload(add(p, ENTRY_WINDOW_HASH)))
                let h := keccak256(fm, 0x140)
                {
                    mstore(fm, 0x1901)
                    mstore(add(fm, 0x20), domain)
                    mstore(add(fm, 0x40), h)
                    // ecrecover input at fm + 0x80: digest, v, r, s (EIP-2098: vs = s | (v - 27) << 255)
                    mstore(add(fm, 0x80), keccak256(add(fm, 30), 66))
                    let vs := calldataload(add(p, ENTRY_SIG_VS))
                    mstore(add(fm, 0xa0), add(shr(255, vs), 27))
                    mstore(add(fm, 0xc0), calldataload(add(p, ENTRY_SIG_R)))
                    vs := and(vs, _EIP2098_S_MASK)
                    // low s only (as ECDSA.tryRecover)
                    if gt(vs, _SECP256K1_HALF_ORDER) { break }
                    mstore(add(fm, 0xe0), vs)
                    mstore(0, 0)
                    if iszero(staticcall(gas(), _ECRECOVER, add(fm, 0x80), 0x80, 0, 0x20)) { break }
                    if iszero(mload(0)) { break }
                    if iszero(eq(mload(0), and(memoOut, NODE_CACHE_ATTESTOR_MASK))) { break }
                }
                // billable (Terms.billOffset / billableMs): the counter of the terms' mode, via TERMS_BILL_OFFSETS
                let shift := and(shr(shl(3, and(shr(TERMS_MODE_OFFSET, terms), TERMS_MODE_MASK)), TERMS_BILL_OFFSETS), 0xff)
                let newBill := and(shr(shift, newCk), CKPT_FIELD_MASK)
                // exhausting the escrow: the full path finalizes the lease
                if iszero(
                    lt(
                        newBill,
                        mul(
                            mul(
                                and(shr(TERMS_GPUS_OFFSET, terms), TERMS_GPUS_MASK),
                                and(shr(TERMS_DURATION_OFFSET, terms), TERMS_DURATION_MASK)
                            ),
                            1000
                        )
                    )
                ) { break }
                mstore(fm, terms)
                mstore(add(fm, 0x20), newCk)
                mstore(add(fm, 0x40), h)
                sstore(sl, keccak256(fm, 0x60))
                // the record (SettlementEntry's RECORD_*), charged as TermsLibrary.charged (new - old)
                let price := and(shr(TERMS_PRICE_OFFSET, terms), TERMS_PRICE_MASK)
                // leaseId: the head's top 32 bits are the record's (ENTRY_LEASE_ID_SHIFT = RECORD_LEASE_ID_SHIFT,
                // checked at construction); the rest of the word is overwritten next
                mstore(rec, w0)
                mstore(add(rec, RECORD_REPORT_HASH), h)
                mstore(add(rec, RECORD_CKPT), newCk)
                mstore(
                    add(rec, RECORD_CHARGED),
                    shl(
                        RECORD_CHARGED_SHIFT,
                        sub(div(mul(price, newBill), 1000), div(mul(price, and(shr(shift, ck), CKPT_FIELD_MASK)), 1000))
                    )
                )
                memoOut := or(memoOut, _SETTLED_FLAG)
                break
            }
        }
    }

    /// @dev Every check, cheapest first; signature last. strict: revert with the custom error; otherwise
    /// emit CheckpointSkipped(reason = that error's selector) and return false. On success writes the
    /// record at `rec` (and finalizes a lease this report exhausts).
    function _settleOne(uint256 p, uint256 rec, bytes32 domain, bool strict) internal returns (bool) {
        Entry memory e = _decode(p);
        bytes4 err = _checkState(e, strict);
        if (err == 0) err = _checkWindow(e, strict);
        if (err == 0) err = _checkCounters(e, strict);
        if (err != 0) return _skip(e.leaseId, e.seq, err);
        bytes32 h = _entryStructHash(p);
        err = _checkSigner(keccak256(abi.encodePacked(hex"1901", domain, h)), e, strict);
        if (err != 0) return _skip(e.leaseId, e.seq, err);
        _apply(e, h, rec);
        return true;
    }

    function _decode(uint256 p) private pure returns (Entry memory e) {
        EntryHead head;
        uint256 w1;
        assembly ("memory-safe") {
            head := calldataload(p)
            w1 := calldataload(add(p, ENTRY_WORD1))
        }
        e.leaseId = head.leaseId();
        e.seq = uint64(head.seq());
        e.windowEndMs = uint64(head.windowEndMs());
        e.cumBusy = uint64(head.cumBusyMs());
        e.cumEnergy = uint64(head.cumEnergyMj());
        e.cumAlloc = uint64(head.cumAllocatedMs());
        e.cumSm = uint64(w1 >> ENTRY_CUM_SM_SHIFT);
        // e.prev .. e.lastHash are the struct's words 7..12
        assembly ("memory-safe") {
            let prev := calldataload(add(p, ENTRY_PREV_HASH))
            mstore(add(e, 0xe0), prev)
            mstore(add(e, 0x100), calldataload(add(p, ENTRY_SIG_R)))
            mstore(add(e, 0x120), calldataload(add(p, ENTRY_SIG_VS)))
            mstore(add(e, 0x140), calldataload(add(p, ENTRY_TERMS)))
            mstore(add(e, 0x160), calldataload(add(p, ENTRY_CKPT)))
            switch and(shr(ENTRY_FLAGS_SHIFT, w1), ENTRY_FLAG_WITH_LAST)
            case 0 { mstore(add(e, 0x180), prev) }
            default { mstore(add(e, 0x180), calldataload(add(p, ENTRY_LAST_HASH))) }
        }
    }

    function _skip(uint256 leaseId, uint64 seq, bytes4 reason) private returns (bool) {
        emit CheckpointSkipped(leaseId, seq, reason);
        return false;
    }

    /// @dev The lease exists, the entry's state is its committed state, it is Active, seq advances and, when
    /// consecutive, the report links to the last settled one.
    function _checkState(Entry memory e, bool strict) private view returns (bytes4) {
        bytes32 committed = _stateHash[e.leaseId];
        if (committed == 0) {
            if (strict) revert LeaseEscrowUnknownLease(e.leaseId);
            return LeaseEscrowUnknownLease.selector;
        }
        if (_commitment(e.terms, e.ck, e.lastHash) != committed) {
            if (strict) revert LeaseEscrowStaleState(e.leaseId, committed);
            return LeaseEscrowStaleState.selector;
        }
        LeaseStatus st = e.terms.status();
        if (st != LeaseStatus.Active) {
            if (strict) revert LeaseEscrowBadStatus(e.leaseId, st);
            return LeaseEscrowBadStatus.selector;
        }
        uint64 lastSeq = uint64(e.ck.seq());
        if (e.seq <= lastSeq) {
            if (strict) revert LeaseEscrowStaleReport(e.leaseId, e.seq, lastSeq);
            return LeaseEscrowStaleReport.selector;
        }
        if (e.seq == lastSeq + 1 && e.prev != e.lastHash) {
            if (strict) revert LeaseEscrowBrokenChain(e.leaseId, e.seq, e.prev, e.lastHash);
            return LeaseEscrowBrokenChain.selector;
        }
        return 0;
    }

    /// @dev The window ends inside the lease (after its start, at most its end) and not in the future. Windows
    /// are not compared with each other (see the contract's NatSpec).
    function _checkWindow(Entry memory e, bool strict) private view returns (bytes4) {
        // terms fields are 32 bits wide and block.timestamp far below 2^200: nothing here can overflow
        unchecked {
            uint64 startMs = uint64(e.terms.startMs());
            uint64 endMs = uint64(e.terms.endMs());
            if (e.windowEndMs <= startMs || e.windowEndMs > endMs) {
                if (strict) revert LeaseEscrowWindowOutsideLease(e.leaseId, e.windowEndMs, startMs, endMs);
                return LeaseEscrowWindowOutsideLease.selector;
            }
            uint256 nowMs = block.timestamp * 1000;
            if (e.windowEndMs > nowMs) {
                if (strict) revert LeaseEscrowWindowInFuture(e.leaseId, e.windowEndMs, nowMs);
                return LeaseEscrowWindowInFuture.selector;
            }
        }
        return 0;
    }

    /// @dev Counters never decrease; busy within allocated; allocated and SM-active GPU time within gpuCount ×
    /// (window end − lease start); energy within power cap × that (+ margin).
    function _checkCounters(Entry memory e, bool strict) private view returns (bytes4) {
        {
            (bool down, uint8 c, uint64 v, uint64 last) = _counterDown(e);
            if (down) {
                if (strict) revert LeaseEscrowCounterDecreased(e.leaseId, c, v, last);
                return LeaseEscrowCounterDecreased.selector;
            }
        }
        if (e.cumBusy > e.cumAlloc) {
            if (strict) revert LeaseEscrowBusyAboveAllocated(e.leaseId, e.cumBusy, e.cumAlloc);
            return LeaseEscrowBusyAboveAllocated.selector;
        }
        uint256 cap;
        // `_checkWindow` passed: windowEndMs > startMs; 16-bit GPUs × 48-bit ms × 32-bit mW × 14-bit margin fit
        unchecked {
            cap = e.terms.gpuCount() * (e.windowEndMs - e.terms.startMs());
        }
        if (e.cumAlloc > cap || e.cumSm > cap) {
            (uint8 c, uint64 v) = e.cumAlloc > cap ? (1, e.cumAlloc) : (3, e.cumSm);
            if (strict) revert LeaseEscrowTimeAboveCapacity(e.leaseId, c, v, cap);
            return LeaseEscrowTimeAboveCapacity.selector;
        }
        // mW × ms = µJ; / 1000 → mJ; times (1 + margin)
        unchecked {
            cap = (_nodeCache[e.terms.nodeId()].maxPowerMwPerGpu() * cap * _ENERGY_CAP_NUMERATOR)
                / _ENERGY_CAP_DENOMINATOR;
        }
        if (e.cumEnergy > cap) {
            if (strict) revert LeaseEscrowEnergyAboveCap(e.leaseId, e.cumEnergy, cap);
            return LeaseEscrowEnergyAboveCap.selector;
        }
        return 0;
    }

    /// @dev The first cumulative counter below its last settled value, as (down, counter, value, last) with
    /// counter 0 busy, 1 allocated, 2 energy, 3 SM-active.
    function _counterDown(Entry memory e) private pure returns (bool, uint8, uint64, uint64) {
        Checkpoint ck = e.ck;
        if (e.cumBusy < ck.cumBusyMs()) return (true, 0, e.cumBusy, uint64(ck.cumBusyMs()));
        if (e.cumAlloc < ck.cumAllocatedMs()) return (true, 1, e.cumAlloc, uint64(ck.cumAllocatedMs()));
        if (e.cumEnergy < ck.cumEnergyMj()) return (true, 2, e.cumEnergy, uint64(ck.cumEnergyMj()));
        if (e.cumSm < ck.cumSmActiveMs()) return (true, 3, e.cumSm, uint64(ck.cumSmActiveMs()));
        return (false, 0, 0, 0);
    }

    function _checkSigner(bytes32 digest, Entry memory e, bool strict) private view returns (bytes4) {
        (address signer, ECDSA.RecoverError err, bytes32 errArg) = ECDSA.tryRecover(digest, e.r, e.vs);
        if (err != ECDSA.RecoverError.NoError) {
            if (err == ECDSA.RecoverError.InvalidSignatureS) {
                // errArg is the offending s
                if (strict) revert LeaseEscrowMalleableSignature(e.leaseId, errArg);
                return LeaseEscrowMalleableSignature.selector;
            }
            if (strict) revert LeaseEscrowInvalidSignature(e.leaseId);
            return LeaseEscrowInvalidSignature.selector;
        }
        address attestor = _nodeCache[e.terms.nodeId()].attestor();
        if (signer != attestor) {
            if (strict) revert LeaseEscrowWrongSigner(e.leaseId, signer, attestor);
            return LeaseEscrowWrongSigner.selector;
        }
        return 0;
    }

    function _apply(Entry memory e, bytes32 h, uint256 rec) private {
        Terms terms = e.terms;
        Checkpoint newCk =
            CheckpointLibrary.pack(block.timestamp, e.cumSm, e.cumEnergy, e.cumAlloc, e.cumBusy, e.seq);
        uint256 newBill = terms.billableMs(newCk);
        uint256 charged;
        uint256 capacity;
        // `_checkCounters` passed: the billed counter did not go down; 16-bit GPUs × 32-bit seconds × 1000 fit
        unchecked {
            charged = terms.charged(newCk) - terms.charged(e.ck);
            capacity = terms.gpuCount() * terms.durationS() * 1000;
        }
        uint256 leaseId = e.leaseId;
        assembly ("memory-safe") {
            mstore(rec, shl(RECORD_LEASE_ID_SHIFT, leaseId))
            mstore(add(rec, RECORD_REPORT_HASH), h)
            mstore(add(rec, RECORD_CKPT), newCk)
            mstore(add(rec, RECORD_CHARGED), shl(RECORD_CHARGED_SHIFT, charged))
        }
        // All escrow charged: billable reached gpuCount × durationS (the bound the checks enforce).
        if (newBill >= capacity) {
            emit LeaseExhausted(leaseId, terms.charged(newCk));
            _exhaust(leaseId, terms, newCk, h);
        } else {
            _stateHash[leaseId] = _commitment(terms, newCk, h);
        }
    }

    /// @dev Ends a lease its last report exhausted; holds the reentrancy lock over the external calls (the
    /// settlement entry points do not take it: their fast path calls nothing outside).
    function _exhaust(uint256 leaseId, Terms terms, Checkpoint ck, bytes32 h) private nonReentrant {
        (uint256 total,, uint256 burned, uint256 released) = _finalize(leaseId, terms, LeaseStatus.Exhausted, ck, h);
        _trySettleFees(leaseId, ck);
        _endInteractions(leaseId, terms, total, burned, released, ck);
    }

    // --- internal: lease end and money ---------------------------------------------------------------

    /// @dev Ends an Open or Active lease, effects only (checks-effects-interactions): sets the final status,
    /// frees the offer and credits the uncharged escrow to the buyer. Every caller then emits its event, runs
    /// `_trySettleFees` and finally `_endInteractions` (rights and reputation), so no state is written after
    /// an external call.
    function _finalize(uint256 leaseId, Terms terms, LeaseStatus to, Checkpoint ck, bytes32 lastHash)
        private
        returns (uint256 charged, uint256 refund, uint256 burned, uint256 released)
    {
        uint256 gpus = terms.gpuCount();
        uint256 duration = terms.durationS();
        _setTerms(leaseId, terms.withStatus(to), ck, lastHash);
        delete _liveLease[_parties[leaseId].offerId];
        if (terms.status() == LeaseStatus.Active) {
            charged = terms.charged(ck);
            // used rights: GPU-seconds the lease ran (activation and now are whole block seconds)
            uint256 startS = terms.startS();
            uint256 endS = startS + duration;
            burned = gpus * ((block.timestamp < endS ? block.timestamp : endS) - startS);
        }
        refund = terms.price() * gpus * duration - charged;
        released = gpus * duration - burned;
        if (refund != 0) _credit(_info[leaseId].buyer, _accounts[leaseId].token, refund);
    }

    /// @dev Interactions of a lease `_finalize` ended (`terms` as before it): burns the used rights, returns
    /// the rest to the holder and, for a lease that was Active, records the provider's uptime and (only if
    /// it delivered billable time: no free reputation farming) a completed lease. Writes no escrow state.
    function _endInteractions(
        uint256 leaseId,
        Terms terms,
        uint256 charged,
        uint256 burned,
        uint256 released,
        Checkpoint ck
    ) private {
        LeaseParties memory pt = _parties[leaseId];
        if (burned != 0) _registry.burnLocked(pt.offerId, burned);
        if (released != 0) _registry.releaseRights(pt.holder, pt.offerId, released);
        if (terms.status() != LeaseStatus.Active) return;
        address providerAccount = _accounts[leaseId].provider;
        uint256 leaseMs = burned * 1000;
        if (leaseMs != 0) {
            uint256 attested = ck.cumAllocatedMs();
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

    /// @dev Copies a node's attestor and power cap from the registry; returns whether the node is active.
    function _syncNode(uint256 nodeId) private returns (bool active) {
        (address attestor, uint32 maxPower, bool isActive) = _registry.nodeAttestor(nodeId);
        NodeCache packed = NodeCacheLibrary.pack(attestor, maxPower);
        if (NodeCache.unwrap(_nodeCache[nodeId]) != NodeCache.unwrap(packed)) {
            _nodeCache[nodeId] = packed;
            emit NodeSynced(nodeId, attestor, maxPower);
        }
        return isActive;
    }
}
