// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ICapacityRegistry} from "./interfaces/ICapacityRegistry.sol";
import {IReputation} from "./interfaces/IReputation.sol";
import {LeaseEscrowBase} from "./LeaseEscrowBase.sol";
import {ILeaseEscrowExtension} from "./interfaces/ILeaseEscrow.sol";
import {Terms} from "./types/Terms.sol";
import {Checkpoint} from "./types/Checkpoint.sol";
import {NodeCache} from "./types/NodeCache.sol";
import {
    ENTRY_WORD1, ENTRY_FLAGS_SHIFT, ENTRY_FLAGS_MASK, ENTRY_FLAG_WITH_LAST, ENTRY_SIZE
} from "./types/SettlementEntry.sol";

/// @title LeaseEscrowExtension
/// @notice The colder half of LeaseEscrow: disputes, release of earnings, rating, admin and views. It is
/// only ever executed by DELEGATECALL from LeaseEscrow (its fallback), on LeaseEscrow's storage; calling it
/// directly acts on its own empty storage and is useless. The split keeps each contract under the
/// EIP-170 code size limit.
/// @dev Deploy with the same registry and reputation as the LeaseEscrow that points to it.
contract LeaseEscrowExtension is LeaseEscrowBase, ILeaseEscrowExtension {
    constructor(ICapacityRegistry registry_, IReputation reputation_) LeaseEscrowBase(registry_, reputation_) {}

    // --- admin --------------------------------------------------------------------------------------

    /// @inheritdoc ILeaseEscrowExtension
    function setFeeConfig(uint16 baseFeeBps, uint16 discountedFeeBps, uint16 discountMinScoreBps, uint32 discountMinCompleted)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        if (baseFeeBps > 10_000 || discountedFeeBps > baseFeeBps || discountMinScoreBps > 10_000) {
            revert LeaseEscrowBadConfig();
        }
        FeeConfig storage f = _fees;
        f.baseFeeBps = baseFeeBps;
        f.discountedFeeBps = discountedFeeBps;
        f.discountMinScoreBps = discountMinScoreBps;
        f.discountMinCompleted = discountMinCompleted;
        emit FeeConfigSet(baseFeeBps, discountedFeeBps, discountMinScoreBps, discountMinCompleted);
    }

    /// @inheritdoc ILeaseEscrowExtension
    function setChallengePeriod(uint32 seconds_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _fees.challengePeriod = seconds_;
        emit ChallengePeriodSet(seconds_);
    }

    /// @inheritdoc ILeaseEscrowExtension
    function setSlashBps(uint16 slashBps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (slashBps > 10_000) revert LeaseEscrowBadConfig();
        _fees.slashBps = slashBps;
        emit SlashBpsSet(slashBps);
    }

    /// @inheritdoc ILeaseEscrowExtension
    function setTreasury(address treasury_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (treasury_ == address(0)) revert LeaseEscrowBadConfig();
        _treasury = treasury_;
        emit TreasurySet(treasury_);
    }

    /// @inheritdoc ILeaseEscrowExtension
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @inheritdoc ILeaseEscrowExtension
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // --- disputes and payouts -----------------------------------------------------------------------

    /// @inheritdoc ILeaseEscrowExtension
    function dispute(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external nonReentrant {
        Terms terms = _verifiedTerms(leaseId, Checkpoint.wrap(ckpt), lastReportHash);
        if (msg.sender != _info[leaseId].buyer) revert LeaseEscrowNotBuyer(leaseId, msg.sender);
        LeaseMoney storage m = _money[leaseId];
        if (m.frozen != 0) revert LeaseEscrowAlreadyDisputed(leaseId);
        uint256 pending = terms.charged(Checkpoint.wrap(ckpt)) - _refunded[leaseId] - m.released;
        if (pending == 0) revert LeaseEscrowNothingToDispute(leaseId);
        uint256 endsAt = Checkpoint.wrap(ckpt).settledAt() + _fees.challengePeriod;
        // while paused (settlement goes on) a buyer may dispute whatever the period
        if (block.timestamp >= endsAt && !paused()) revert LeaseEscrowChallengePeriodOver(leaseId, endsAt);
        m.frozen = uint128(pending);
        emit DisputeOpened(leaseId, msg.sender, pending);
    }

    /// @inheritdoc ILeaseEscrowExtension
    function resolveDispute(
        uint256 leaseId,
        uint16 buyerShareBps,
        bool providerFault,
        uint256 ckpt,
        bytes32 lastReportHash
    ) external nonReentrant onlyRole(ARBITER_ROLE) {
        if (buyerShareBps > 10_000) revert LeaseEscrowBadBps(buyerShareBps);
        _verifiedTerms(leaseId, Checkpoint.wrap(ckpt), lastReportHash);
        LeaseMoney storage m = _money[leaseId];
        uint256 frozen = m.frozen;
        if (frozen == 0) revert LeaseEscrowNoDispute(leaseId);
        uint256 buyerShare = (frozen * buyerShareBps) / 10_000;
        uint256 providerShare = frozen - buyerShare;
        m.frozen = 0;
        m.released += uint128(providerShare);
        _refunded[leaseId] += buyerShare;
        address buyer = _info[leaseId].buyer;
        LeaseAccounts memory acc = _accounts[leaseId];
        _credit(buyer, acc.token, buyerShare);
        if (providerShare != 0) _credit(_parties[leaseId].holder, acc.token, providerShare);

        uint256 slashed = 0;
        if (providerFault) {
            uint256 want = (frozen * _fees.slashBps) / 10_000;
            if (want != 0) {
                // the registry pays the slashed stake to its caller, this escrow (we run by DELEGATECALL)
                slashed = _registry.slash(acc.provider, acc.token, want);
                _credit(buyer, acc.token, slashed);
            }
        }
        emit DisputeResolved(leaseId, buyerShare, providerShare, slashed, providerFault);
        // Outcome follows the ruling, not the rounded amount: more than half to the buyer is a buyer win;
        // an even split counts for the provider.
        bool buyerWon = buyerShareBps > 5_000;
        _reputation.recordOutcome(acc.provider, buyerWon ? IReputation.Outcome.DisputeLost : IReputation.Outcome.DisputeWon);
        _reputation.recordOutcome(buyer, buyerWon ? IReputation.Outcome.DisputeWon : IReputation.Outcome.DisputeLost);
        _trySettleFees(leaseId, Checkpoint.wrap(ckpt));
    }

    /// @inheritdoc ILeaseEscrowExtension
    function releaseEarnings(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external nonReentrant whenNotPaused {
        Terms terms = _verifiedTerms(leaseId, Checkpoint.wrap(ckpt), lastReportHash);
        LeaseMoney storage m = _money[leaseId];
        if (m.frozen != 0) revert LeaseEscrowDisputeOpen(leaseId);
        uint256 pending = terms.charged(Checkpoint.wrap(ckpt)) - _refunded[leaseId] - m.released;
        if (pending == 0) revert LeaseEscrowNothingToRelease(leaseId);
        uint256 endsAt = Checkpoint.wrap(ckpt).settledAt() + _fees.challengePeriod;
        if (block.timestamp < endsAt) revert LeaseEscrowInChallengePeriod(leaseId, endsAt);
        m.released += uint128(pending);
        address holder = _parties[leaseId].holder;
        _credit(holder, _accounts[leaseId].token, pending);
        emit EarningsReleased(leaseId, holder, pending);
        _trySettleFees(leaseId, Checkpoint.wrap(ckpt));
    }

    /// @inheritdoc ILeaseEscrowExtension
    function rate(uint256 leaseId, uint8 stars) external nonReentrant {
        Terms terms = _terms[leaseId];
        LeaseStatus st = terms.status();
        if (st == LeaseStatus.None) revert LeaseEscrowUnknownLease(leaseId);
        if (msg.sender != _info[leaseId].buyer) revert LeaseEscrowNotBuyer(leaseId, msg.sender);
        if ((st != LeaseStatus.Closed && st != LeaseStatus.Exhausted) || terms.startS() == 0) {
            revert LeaseEscrowNotRateable(leaseId, st);
        }
        _reputation.recordRating(leaseId, msg.sender, _accounts[leaseId].provider, stars);
    }

    // --- views --------------------------------------------------------------------------------------

    /// @inheritdoc ILeaseEscrowExtension
    function lease(uint256 leaseId) external view returns (LeaseView memory v) {
        Terms terms = _terms[leaseId];
        if (terms.status() == LeaseStatus.None) revert LeaseEscrowUnknownLease(leaseId);
        LeaseInfo memory info = _info[leaseId];
        LeaseParties memory pt = _parties[leaseId];
        LeaseAccounts memory acc = _accounts[leaseId];
        v.offerId = pt.offerId;
        v.nodeId = terms.nodeId();
        v.buyer = info.buyer;
        v.holder = pt.holder;
        v.provider = acc.provider;
        v.token = acc.token;
        v.status = terms.status();
        v.billingMode = uint8(terms.mode());
        v.gpuCount = uint16(terms.gpuCount());
        v.pricePerGpuSecond = terms.price();
        v.feeBps = info.feeBps;
        v.durationS = uint32(terms.durationS());
        v.startBy = info.startBy;
        v.startMs = uint64(terms.startMs());
        v.endMs = v.startMs == 0 ? 0 : v.startMs + uint64(v.durationS) * 1000;
        v.gpuSetHash = _gpuSet[leaseId];
        v.escrowed = v.pricePerGpuSecond * v.gpuCount * v.durationS;
        v.feeHeld = (v.escrowed * v.feeBps) / 10_000;
        v.feesSettled = info.feesSettled;
    }

    /// @inheritdoc ILeaseEscrowExtension
    function checkpoint(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash)
        external
        view
        returns (CheckpointView memory v)
    {
        Checkpoint ck = Checkpoint.wrap(ckpt);
        Terms terms = _verifiedTerms(leaseId, ck, lastReportHash);
        LeaseMoney memory m = _money[leaseId];
        v.lastSeq = uint64(ck.seq());
        v.lastReportHash = lastReportHash;
        v.cumBusyMs = uint64(ck.cumBusyMs());
        v.cumAllocatedMs = uint64(ck.cumAllocatedMs());
        v.cumEnergyMj = uint64(ck.cumEnergyMj());
        v.cumSmActiveMs = uint64(ck.cumSmActiveMs());
        v.lastSettledAt = uint64(ck.settledAt());
        v.charged = terms.charged(ck);
        v.paid = m.released;
        v.refunded = _refunded[leaseId];
        v.frozen = m.frozen;
        v.pending = v.charged - v.refunded - v.paid;
        v.remaining = terms.escrowed() - v.charged;
    }

    /// @inheritdoc ILeaseEscrowExtension
    function stateHash(uint256 leaseId) external view returns (bytes32) {
        return _stateHash[leaseId];
    }

    /// @inheritdoc ILeaseEscrowExtension
    function leaseTerms(uint256[] calldata leaseIds)
        external
        view
        returns (uint256[] memory terms, bytes32[] memory stateHashes)
    {
        uint256 n = leaseIds.length;
        terms = new uint256[](n);
        stateHashes = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            terms[i] = Terms.unwrap(_terms[leaseIds[i]]);
            stateHashes[i] = _stateHash[leaseIds[i]];
        }
    }

    /// @inheritdoc ILeaseEscrowExtension
    function feeConfig() external view returns (FeeConfig memory) {
        return _fees;
    }

    /// @inheritdoc ILeaseEscrowExtension
    function challengePeriod() external view returns (uint32) {
        return _fees.challengePeriod;
    }

    /// @inheritdoc ILeaseEscrowExtension
    function treasury() external view returns (address) {
        return _treasury;
    }

    /// @inheritdoc ILeaseEscrowExtension
    function registry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc ILeaseEscrowExtension
    function reputation() external view returns (address) {
        return address(_reputation);
    }

    /// @inheritdoc ILeaseEscrowExtension
    function nodeCache(uint256 nodeId) external view returns (address attestor, uint32 maxPowerMwPerGpu) {
        NodeCache c = _nodeCache[nodeId];
        return (c.attestor(), uint32(c.maxPowerMwPerGpu()));
    }

    /// @inheritdoc ILeaseEscrowExtension
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc ILeaseEscrowExtension
    function hashReport(MeteringReport calldata r) public pure returns (bytes32) {
        // every member is a static word, so abi.encode is their concatenation (two halves: the stack)
        bytes32 windowHash = keccak256(
            bytes.concat(
                abi.encode(WINDOW_TYPEHASH, r.windowStartMs, r.gpuSetHash, r.busyMs, r.smActiveMs, r.tensorActiveMs),
                abi.encode(
                    r.energyMj, r.allocatedMs, r.maxMemUsedMiB, r.sampleCount, r.samplesRoot, r.flags, r.configHash
                )
            )
        );
        return keccak256(
            bytes.concat(
                abi.encode(REPORT_TYPEHASH, r.leaseId, r.seq, r.prevReportHash, r.windowEndMs),
                abi.encode(r.cumBusyMs, r.cumEnergyMj, r.cumAllocatedMs, r.cumSmActiveMs, windowHash)
            )
        );
    }

    /// @inheritdoc ILeaseEscrowExtension
    function reportDigest(MeteringReport calldata r) external view returns (bytes32) {
        return _hashTypedDataV4(hashReport(r));
    }

    /// @inheritdoc ILeaseEscrowExtension
    function entryDigest(bytes calldata entry) external view returns (bytes32) {
        uint256 p;
        uint256 flags;
        assembly ("memory-safe") {
            p := entry.offset
            flags := and(shr(ENTRY_FLAGS_SHIFT, calldataload(add(p, ENTRY_WORD1))), ENTRY_FLAGS_MASK)
        }
        // the same rule as settle: flag bit 0 alone says whether the last report hash follows
        if (flags > ENTRY_FLAG_WITH_LAST || entry.length != ENTRY_SIZE + flags * 32) {
            revert LeaseEscrowMalformedEntries(0);
        }
        return _hashTypedDataV4(_entryStructHash(p));
    }
}
