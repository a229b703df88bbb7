// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC5267} from "@openzeppelin/contracts/interfaces/IERC5267.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

/// @title ILeaseEscrowTypes
/// @notice Types, errors and events of the escrow. Leases of offered GPU capacity: escrow, settlement of signed metering checkpoints, disputes,
/// pull payments.
/// @dev Lease life: Open (escrowed, rights locked) → Active (started by the provider side) → Closed
/// (buyer, or anyone after the end) | Exhausted (escrow fully charged) ; Open → Expired (not started by
/// `startBy`: full refund, NoShow for the provider) or Closed (buyer cancels before start).
///
/// Metering protocol v2 (ledger/protocol: EIP-712 domain ComputeLedger version 2).
///
/// Settlement state: each lease keeps ONE storage slot on the settlement hot path, `stateHash(leaseId)` =
/// keccak256(abi.encode(terms, ckpt, lastReportHash)) (a commitment, never zero). Settlement and every call
/// that needs the checkpoint take `ckpt` and `lastReportHash` (and settlement also `terms`) as calldata and
/// the contract checks them against the commitment (`LeaseEscrowStaleState` otherwise). Both words are
/// public: `terms` is `leaseTerms(leaseId)`, and `ckpt` / `lastReportHash` are in the last
/// `CheckpointsSettled` record of the lease (before any: ckpt = startS << 224 once Active, every counter 0;
/// 0 while Open; lastReportHash = 0). ledger/protocol/settlement.py rebuilds them from events. The layouts below
/// have one definition each in the contracts, a user-defined value type with its library: types/Terms.sol,
/// types/Checkpoint.sol, types/SettlementEntry.sol (entry and record).
///  - terms = nodeId[31:0] | startS[63:32] | durationS[95:64] | gpuCount[111:96] | mode[115:112]
///          | status[119:116] | pricePerGpuSecond[215:120]            (startS = 0 while Open)
///          mode: 0 reserved (bills cumAllocatedMs), 1 metered (cumBusyMs), 2 SM-active (cumSmActiveMs)
///  - ckpt  = seq[31:0] | cumBusyMs[79:32] | cumAllocatedMs[127:80] | cumEnergyMj[175:128]
///          | cumSmActiveMs[223:176] | settledAt[255:224]
///
/// Settlement entry (`settle(bytes)`, `settleBatch(bytes)` = entries back to back), big-endian bytes:
///   [0,4) leaseId  [4,8) seq  [8,14) windowEndMs  [14,20) cumBusyMs  [20,26) cumEnergyMj
///   [26,32) cumAllocatedMs  [32,38) cumSmActiveMs  [38] flags (bit 0: lastReportHash follows at 231;
///   without it lastReportHash = prevReportHash)  [39,71) prevReportHash  [71,103) windowHash
///   [103,135) r  [135,167) vs (EIP-2098: s | (v − 27) << 255)  [167,199) terms  [199,231) ckpt
///   [231,263) lastReportHash (only with flag bit 0).
/// `windowHash` is the EIP-712 hashStruct of the report's `WindowDetail`; the contract rebuilds the
/// `MeteringReport` struct hash from the entry, so the attestor signs the protocol's EIP-712 struct, never
/// this packing (ledger/protocol/settlement.py holds the one definition). Field widths bound what can be settled:
/// leaseId and seq below 2^32, times and cumulative counters below 2^48.
///
/// `settle` takes exactly one entry and emits `CheckpointSettled`; `settleBatch` announces what it settled
/// with one `CheckpointsSettled(records)` per transaction, 84 bytes per settled entry: leaseId uint32 | reportHash bytes32 | new ckpt uint256 | charged uint128 (what this
/// checkpoint moved from escrow to pending).
interface ILeaseEscrowTypes {
    /// @notice Lease states. None = no such lease.
    enum LeaseStatus {
        None,
        Open,
        Active,
        Closed,
        Expired,
        Exhausted
    }

    /// @notice The protocol's metering report, flat, fields in ledger.protocol.REPORT_FIELDS order (used by the
    /// digest views; the signed EIP-712 type nests the window's fields, see LeaseEscrowBase.REPORT_TYPEHASH):
    /// MeteringReport's own fields, then WindowDetail's.
    struct MeteringReport {
        uint256 leaseId;
        uint64 seq;
        bytes32 prevReportHash;
        uint64 windowEndMs;
        uint64 cumBusyMs;
        uint64 cumEnergyMj;
        uint64 cumAllocatedMs;
        uint64 cumSmActiveMs;
        uint64 windowStartMs;
        bytes32 gpuSetHash;
        uint64 busyMs;
        uint64 smActiveMs;
        uint64 tensorActiveMs;
        uint64 energyMj;
        uint64 allocatedMs;
        uint32 maxMemUsedMiB;
        uint32 sampleCount;
        bytes32 samplesRoot;
        uint32 flags;
        bytes32 configHash;
    }

    /// @notice Everything about a lease.
    /// @param offerId offer (ERC-1155 id of the rights it locked)
    /// @param nodeId node of the offer
    /// @param buyer who opened it and receives refunds
    /// @param holder whose rights it locked and who earns the charges
    /// @param provider provider account of the offer (reputation subject)
    /// @param token payment token (address(0) = ETH)
    /// @param status state
    /// @param billingMode 0 reserved (allocated time), 1 metered (busy time), 2 SM-active (SM-active time)
    /// @param gpuCount GPUs
    /// @param pricePerGpuSecond price
    /// @param feeBps platform fee rate fixed at opening
    /// @param durationS lease length in seconds (grows with top-ups)
    /// @param startBy unix s deadline for activation
    /// @param startMs activation time (unix ms, 0 while Open)
    /// @param endMs startMs + durationS × 1000 (0 while Open)
    /// @param gpuSetHash the GPUs reports must be about
    /// @param escrowed price × gpuCount × durationS
    /// @param feeHeld fee escrowed on top
    /// @param feesSettled whether the fee was split between treasury and buyer
    struct LeaseView {
        uint256 offerId;
        uint256 nodeId;
        address buyer;
        address holder;
        address provider;
        address token;
        LeaseStatus status;
        uint8 billingMode;
        uint16 gpuCount;
        uint256 pricePerGpuSecond;
        uint16 feeBps;
        uint32 durationS;
        uint64 startBy;
        uint64 startMs;
        uint64 endMs;
        bytes32 gpuSetHash;
        uint256 escrowed;
        uint256 feeHeld;
        bool feesSettled;
    }

    /// @notice Settlement state of a lease.
    /// @param lastSeq seq of the last settled report (0: none)
    /// @param lastReportHash struct hash of the last settled report (zero: none)
    /// @param cumBusyMs last settled cumulative busy GPU-ms
    /// @param cumEnergyMj last settled cumulative energy
    /// @param cumAllocatedMs last settled cumulative allocated GPU-ms
    /// @param cumSmActiveMs last settled cumulative SM-active GPU-ms
    /// @param lastSettledAt unix s of the last settlement (the challenge clock; activation before any)
    /// @param charged total charged to escrow = price × cum billable / 1000
    /// @param paid released to the holder (after challenge or by the arbiter)
    /// @param pending charged, not released, not refunded
    /// @param frozen part of pending under dispute
    /// @param refunded charges returned to the buyer by dispute resolution
    /// @param remaining escrow not yet charged
    struct CheckpointView {
        uint64 lastSeq;
        bytes32 lastReportHash;
        uint64 cumBusyMs;
        uint64 cumEnergyMj;
        uint64 cumAllocatedMs;
        uint64 cumSmActiveMs;
        uint64 lastSettledAt;
        uint256 charged;
        uint256 paid;
        uint256 pending;
        uint256 frozen;
        uint256 refunded;
        uint256 remaining;
    }

    /// @notice Fee and dispute configuration (admin).
    /// @param baseFeeBps platform fee on a lease's escrow, basis points
    /// @param discountedFeeBps fee for providers that qualify for the discount
    /// @param discountMinScoreBps reputation score a provider needs for the discount
    /// @param discountMinCompleted completed leases a provider needs for the discount
    /// @param slashBps share of a disputed amount slashed from the provider's stake on provider fault
    /// @param challengePeriod seconds after a lease's last settlement during which its buyer may dispute
    struct FeeConfig {
        uint16 baseFeeBps;
        uint16 discountedFeeBps;
        uint16 discountMinScoreBps;
        uint32 discountMinCompleted;
        uint16 slashBps;
        uint32 challengePeriod;
    }

    // --- errors: leases ----------------------------------------------------------------------------

    /// @notice No such lease.
    error LeaseEscrowUnknownLease(uint256 leaseId);
    /// @notice The lease is not in a state that allows this.
    error LeaseEscrowBadStatus(uint256 leaseId, LeaseStatus status);
    /// @notice Another lease on this offer is Open or Active (one offer = one set of GPUs).
    error LeaseEscrowOfferBusy(uint256 offerId, uint256 liveLeaseId);
    /// @notice The offer's node is deactivated.
    error LeaseEscrowNodeInactive(uint256 nodeId);
    /// @notice Duration is zero or too long.
    error LeaseEscrowBadDuration(uint256 durationS);
    /// @notice startBy is in the past, before the offer starts, or the lease would end after the offer.
    error LeaseEscrowBadStartBy(uint256 startBy, uint256 validFrom, uint256 validUntil);
    /// @notice The buyer's reputation is below the offer's minimum.
    error LeaseEscrowBuyerScoreTooLow(address buyer, uint256 score, uint256 minimum);
    /// @notice The total (escrow + fee) exceeds the buyer's maximum.
    error LeaseEscrowTotalAboveMax(uint256 total, uint256 maxTotal);
    /// @notice msg.value is not the amount due (or is non-zero for an ERC-20 lease).
    error LeaseEscrowWrongValue(uint256 expected, uint256 received);
    /// @notice Fewer tokens arrived than were sent: fee-on-transfer tokens are rejected.
    error LeaseEscrowFeeOnTransferToken(address token, uint256 expected, uint256 received);
    /// @notice An amount does not fit the escrow's accounting (128 bits).
    error LeaseEscrowAmountTooLarge(uint256 amount);
    /// @notice Only the lease's buyer may do this.
    error LeaseEscrowNotBuyer(uint256 leaseId, address caller);
    /// @notice Only the provider, its payout address or the node's attestor may activate.
    error LeaseEscrowNotProviderSide(uint256 leaseId, address caller);
    /// @notice The offer's validity has not begun.
    error LeaseEscrowOfferNotStarted(uint256 leaseId, uint256 validFrom);
    /// @notice The activation deadline passed.
    error LeaseEscrowStartByPassed(uint256 leaseId, uint256 startBy);
    /// @notice The lease cannot expire before its activation deadline.
    error LeaseEscrowStartByNotPassed(uint256 leaseId, uint256 startBy);
    /// @notice Only the buyer may close before the end.
    error LeaseEscrowNotEnded(uint256 leaseId, uint256 endMs);
    /// @notice A top-up must buy whole seconds: a multiple of price × gpuCount.
    error LeaseEscrowTopUpNotWholeSeconds(uint256 amount, uint256 unit);
    /// @notice The extended lease would end after the offer's validity.
    error LeaseEscrowBeyondOffer(uint256 leaseId, uint256 endS, uint256 validUntil);

    // --- errors: settlement ------------------------------------------------------------------------

    /// @notice The settlement entries are not a whole number of well-formed entries (at byte `offset`).
    error LeaseEscrowMalformedEntries(uint256 offset);
    /// @notice The terms / checkpoint / last report hash given do not match the lease's state commitment.
    error LeaseEscrowStaleState(uint256 leaseId, bytes32 stateHash);
    /// @notice The signature does not recover (bad v, r, s or length).
    error LeaseEscrowInvalidSignature(uint256 leaseId);
    /// @notice The signature's s is in the upper half of the curve order (malleable).
    error LeaseEscrowMalleableSignature(uint256 leaseId, bytes32 s);
    /// @notice The report was not signed by the node's attestor.
    error LeaseEscrowWrongSigner(uint256 leaseId, address signer, address attestor);
    /// @notice seq is not above the last settled seq (replay or older report).
    error LeaseEscrowStaleReport(uint256 leaseId, uint64 seq, uint64 lastSeq);
    /// @notice The consecutive report's prevReportHash is not the last settled report's hash.
    error LeaseEscrowBrokenChain(uint256 leaseId, uint64 seq, bytes32 prevReportHash, bytes32 expected);
    /// @notice The window does not end inside the lease: windowEndMs must be after its start and at most its end.
    error LeaseEscrowWindowOutsideLease(uint256 leaseId, uint64 windowEndMs, uint64 leaseStartMs, uint64 leaseEndMs);
    /// @notice The window ends in the future.
    error LeaseEscrowWindowInFuture(uint256 leaseId, uint64 windowEndMs, uint256 nowMs);
    /// @notice A cumulative counter (0 busy, 1 allocated, 2 energy, 3 SM-active) went down.
    error LeaseEscrowCounterDecreased(uint256 leaseId, uint8 counter, uint64 value, uint64 last);
    /// @notice Cumulative busy GPU time exceeds cumulative allocated GPU time.
    error LeaseEscrowBusyAboveAllocated(uint256 leaseId, uint64 cumBusyMs, uint64 cumAllocatedMs);
    /// @notice Cumulative allocated (1) or SM-active (3) GPU time exceeds gpuCount × (windowEnd − lease start).
    error LeaseEscrowTimeAboveCapacity(uint256 leaseId, uint8 counter, uint64 value, uint256 cap);
    /// @notice Cumulative energy exceeds the node's power cap × gpuCount × (windowEnd − lease start) (+ margin).
    error LeaseEscrowEnergyAboveCap(uint256 leaseId, uint64 value, uint256 cap);

    // --- errors: money -----------------------------------------------------------------------------

    /// @notice No charge is within its challenge period (or nothing is pending).
    error LeaseEscrowChallengePeriodOver(uint256 leaseId, uint256 endedAt);
    /// @notice Nothing pending to dispute.
    error LeaseEscrowNothingToDispute(uint256 leaseId);
    /// @notice A dispute is already open on this lease.
    error LeaseEscrowAlreadyDisputed(uint256 leaseId);
    /// @notice No open dispute on this lease.
    error LeaseEscrowNoDispute(uint256 leaseId);
    /// @notice Basis points above 10000.
    error LeaseEscrowBadBps(uint256 bps);
    /// @notice Earnings are still inside their challenge period.
    error LeaseEscrowInChallengePeriod(uint256 leaseId, uint256 endsAt);
    /// @notice Earnings are frozen by an open dispute.
    error LeaseEscrowDisputeOpen(uint256 leaseId);
    /// @notice Nothing to release.
    error LeaseEscrowNothingToRelease(uint256 leaseId);
    /// @notice Nothing to withdraw.
    error LeaseEscrowNothingToWithdraw(address account, address token);
    /// @notice The payout transfer failed (the receiver reverted).
    error LeaseEscrowTransferFailed(address to, address token, uint256 amount);
    /// @notice Only a Closed or Exhausted lease that ran may be rated.
    error LeaseEscrowNotRateable(uint256 leaseId, LeaseStatus status);
    /// @notice ETH may only be sent with openLease/topUp or by the registry (slashing).
    error LeaseEscrowUnexpectedEth(address sender);
    /// @notice A configuration value is out of range or an address is zero.
    error LeaseEscrowBadConfig();

    // --- events ------------------------------------------------------------------------------------

    /// @notice A lease was opened and paid for.
    /// @param leaseId lease
    /// @param offerId offer
    /// @param buyer buyer
    /// @param holder holder whose rights were locked
    /// @param durationS seconds
    /// @param startBy activation deadline (unix s)
    /// @param escrowed price × gpuCount × durationS
    /// @param fee platform fee escrowed on top
    /// @param feeBps fee rate
    event LeaseOpened(
        uint256 indexed leaseId,
        uint256 indexed offerId,
        address indexed buyer,
        address holder,
        uint32 durationS,
        uint64 startBy,
        uint256 escrowed,
        uint256 fee,
        uint16 feeBps
    );
    /// @notice The provider side started the lease.
    /// @param leaseId lease
    /// @param startMs unix ms
    /// @param endMs unix ms
    event LeaseActivated(uint256 indexed leaseId, uint64 startMs, uint64 endMs);
    /// @notice Checkpoints settled by one settleBatch call: 84-byte records, one per settled entry,
    /// leaseId uint32 | reportHash bytes32 | new ckpt uint256 | charged uint128 (layout in the header).
    event CheckpointsSettled(bytes records);
    /// @notice `settle` settled one checkpoint (the same content as one CheckpointsSettled record).
    /// @param leaseId lease
    /// @param reportHash struct hash of the settled report (the lease's new lastReportHash)
    /// @param ckpt the lease's new checkpoint word (layout in the header)
    /// @param charged moved from escrow to pending by this checkpoint
    event CheckpointSettled(uint256 indexed leaseId, bytes32 reportHash, uint256 ckpt, uint256 charged);
    /// @notice settleBatch skipped a report.
    /// @param leaseId lease (as packed in the report)
    /// @param seq seq (as packed)
    /// @param reason selector of the custom error `settle` would have reverted with
    event CheckpointSkipped(uint256 indexed leaseId, uint64 seq, bytes4 reason);
    /// @notice The escrow is fully charged: the lease ended.
    /// @param leaseId lease
    /// @param charged total charged
    event LeaseExhausted(uint256 indexed leaseId, uint256 charged);
    /// @notice The lease was closed.
    /// @param leaseId lease
    /// @param closedBy caller
    /// @param charged total charged
    /// @param refund escrow credited back to the buyer (fee share follows in FeesSettled)
    /// @param rightsBurned GPU-seconds used
    /// @param rightsReleased GPU-seconds returned to the holder
    event LeaseClosed(
        uint256 indexed leaseId, address closedBy, uint256 charged, uint256 refund, uint256 rightsBurned, uint256 rightsReleased
    );
    /// @notice An Open lease passed its deadline without starting: full refund.
    /// @param leaseId lease
    /// @param refund escrow credited back (fee follows in FeesSettled)
    event LeaseExpired(uint256 indexed leaseId, uint256 refund);
    /// @notice The buyer extended the lease.
    /// @param leaseId lease
    /// @param amount escrow added
    /// @param fee fee added
    /// @param durationS new duration
    event ToppedUp(uint256 indexed leaseId, uint256 amount, uint256 fee, uint32 durationS);
    /// @notice The buyer disputed the pending charges.
    /// @param leaseId lease
    /// @param buyer buyer
    /// @param amount frozen amount
    event DisputeOpened(uint256 indexed leaseId, address indexed buyer, uint256 amount);
    /// @notice The arbiter resolved a dispute.
    /// @param leaseId lease
    /// @param buyerShare refunded to the buyer
    /// @param providerShare released to the holder
    /// @param slashed stake moved to the buyer
    /// @param providerFault whether the provider was at fault
    event DisputeResolved(
        uint256 indexed leaseId, uint256 buyerShare, uint256 providerShare, uint256 slashed, bool providerFault
    );
    /// @notice Charges past their challenge period became withdrawable by the holder.
    /// @param leaseId lease
    /// @param holder holder credited
    /// @param amount amount
    event EarningsReleased(uint256 indexed leaseId, address indexed holder, uint256 amount);
    /// @notice The fee of a finished lease was split: treasury gets the fee on what the holder earned.
    /// @param leaseId lease
    /// @param treasuryFee to the treasury
    /// @param buyerRefund back to the buyer
    event FeesSettled(uint256 indexed leaseId, uint256 treasuryFee, uint256 buyerRefund);
    /// @notice A pull payment was made.
    /// @param account payee
    /// @param token token
    /// @param amount amount
    event Withdrawn(address indexed account, address indexed token, uint256 amount);
    /// @notice The escrow's copy of a node's attestor and power cap was refreshed.
    /// @param nodeId node
    /// @param attestor attestor
    /// @param maxPowerMwPerGpu power cap
    event NodeSynced(uint256 indexed nodeId, address attestor, uint32 maxPowerMwPerGpu);
    /// @notice Fee configuration changed.
    event FeeConfigSet(uint16 baseFeeBps, uint16 discountedFeeBps, uint16 discountMinScoreBps, uint32 discountMinCompleted);
    /// @notice Challenge period changed.
    event ChallengePeriodSet(uint32 seconds_);
    /// @notice Treasury changed.
    event TreasurySet(address treasury);
    /// @notice Slash rate (of the disputed amount, on provider fault) changed.
    event SlashBpsSet(uint16 slashBps);

}

/// @title ILeaseEscrowBase
/// @notice What both halves of the escrow implement (LeaseEscrowBase): role ids, EIP-712 type hashes, the energy
/// margin and the fee rate.
interface ILeaseEscrowBase is ILeaseEscrowTypes {
    /// @notice Role that resolves disputes.
    // slither-disable-next-line naming-convention (the getter of a constant keeps the constant's name)
    function ARBITER_ROLE() external view returns (bytes32);
    /// @notice Role that pauses and unpauses (see `ILeaseEscrowExtension.pause`).
    // slither-disable-next-line naming-convention (the getter of a constant keeps the constant's name)
    function PAUSER_ROLE() external view returns (bytes32);
    /// @notice EIP-712 type hash of `MeteringReport` (ledger.protocol.REPORT_TYPE_STRING, which references
    /// `WindowDetail`).
    // slither-disable-next-line naming-convention (the getter of a constant keeps the constant's name)
    function REPORT_TYPEHASH() external view returns (bytes32);
    /// @notice EIP-712 type hash of `WindowDetail` (ledger.protocol.WINDOW_TYPE_STRING).
    // slither-disable-next-line naming-convention (the getter of a constant keeps the constant's name)
    function WINDOW_TYPEHASH() external view returns (bytes32);
    /// @notice Energy a report may claim above power cap × GPUs × elapsed time, in basis points (counter
    /// granularity, boost clocks).
    // slither-disable-next-line naming-convention (the getter of a constant keeps the constant's name)
    function ENERGY_MARGIN_BPS() external view returns (uint256);
    /// @notice Fee rate a lease on `providerAccount`'s offer pays now: the discounted rate if the provider's
    /// reputation qualifies (see `FeeConfig`), else the base rate.
    /// @param providerAccount provider account of the offer
    /// @return fee rate in basis points
    function feeBpsFor(address providerAccount) external view returns (uint16);
}

/// @title ILeaseEscrowCore
/// @notice What LeaseEscrow implements itself: opening, activation, settlement, top-up, close, expiry and pull
/// payments (the hot and the money-moving paths).
interface ILeaseEscrowCore is ILeaseEscrowBase {
    /// @notice Open a lease on `offerId`, locking gpuCount × durationS rights of `holder` and escrowing
    /// price × gpuCount × durationS plus the fee (ETH in msg.value, or pulled ERC-20). Paused: reverts.
    /// @param offerId the offer (no other lease on it may be Open or Active)
    /// @param holder whose capacity rights the lease locks; it earns the charges
    /// @param durationS lease length in seconds
    /// @param startBy unix s deadline for activation (the lease must fit the offer's validity)
    /// @param maxTotal most the caller pays (escrow + fee)
    /// @return leaseId the new lease id (ids start at 1)
    function openLease(uint256 offerId, address holder, uint32 durationS, uint64 startBy, uint256 maxTotal)
        external
        payable
        returns (uint256 leaseId);
    /// @notice Start an Open lease (provider, its payout address or the node's attestor), between the offer's
    /// start and `startBy`. Paused: reverts.
    /// @param leaseId the lease
    function activateLease(uint256 leaseId) external;
    /// @notice Settle one entry (exactly one; layout in ILeaseEscrowTypes' header); reverts with the failing
    /// check's custom error. Not paused.
    /// @param entry the packed settlement entry
    function settle(bytes calldata entry) external;
    /// @notice Settle entries back to back; a failing one is skipped with CheckpointSkipped. Not paused.
    /// @param entries the packed settlement entries
    /// @return settled how many were settled
    function settleBatch(bytes calldata entries) external returns (uint256 settled);
    /// @notice Extend the lease by amount / (price × gpuCount) seconds (buyer; Open or Active). Paused: reverts.
    /// @param leaseId the lease
    /// @param amount escrow added (a multiple of price × gpuCount); the fee on it is paid on top
    /// @param ckpt the lease's checkpoint word (state commitment)
    /// @param lastReportHash the lease's last settled report hash (state commitment)
    function topUp(uint256 leaseId, uint256 amount, uint256 ckpt, bytes32 lastReportHash) external payable;
    /// @notice Close: buyer any time, anyone after the end. Refunds what was not charged; reports not settled by
    /// then are not paid.
    /// @param leaseId the lease
    /// @param ckpt the lease's checkpoint word (state commitment)
    /// @param lastReportHash the lease's last settled report hash (state commitment)
    function closeLease(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external;
    /// @notice Expire an Open lease past startBy (anyone): full refund, NoShow for the provider.
    /// @param leaseId the lease
    function expireLease(uint256 leaseId) external;
    /// @notice Pull everything the caller may withdraw in `token` (open while paused).
    /// @param token the token (address(0) = ETH)
    /// @return amount what was sent
    function withdraw(address token) external returns (uint256 amount);
    /// @notice Refresh the escrow's copy of a node's attestor and power cap (the registry calls it on rotation).
    /// @param nodeId the node
    function syncNode(uint256 nodeId) external;
    /// @notice What `account` may withdraw in `token`.
    /// @param account the payee
    /// @param token the token (address(0) = ETH)
    /// @return the withdrawable amount
    function withdrawable(address account, address token) external view returns (uint256);
    /// @notice The Open or Active lease on an offer (0: none).
    /// @param offerId the offer
    /// @return the lease id
    function liveLeaseOf(uint256 offerId) external view returns (uint256);
    /// @notice Number of leases ever opened (the last lease id).
    /// @return the count
    function leaseCount() external view returns (uint256);
    /// @notice The LeaseEscrowExtension the escrow's fallback delegates to.
    /// @return the extension's address
    function extension() external view returns (address);
}

/// @title ILeaseEscrowExtension
/// @notice What LeaseEscrowExtension implements, reached through the escrow's fallback (DELEGATECALL on the
/// escrow's storage): disputes, release of earnings, rating, admin and views.
interface ILeaseEscrowExtension is ILeaseEscrowBase {
    /// @notice Set the fee rate, and the discounted rate for providers scoring at least `discountMinScoreBps`
    /// with at least `discountMinCompleted` completed leases. Admin only.
    /// @param baseFeeBps fee rate, at most 10000
    /// @param discountedFeeBps discounted rate, at most `baseFeeBps`
    /// @param discountMinScoreBps score needed for the discount, at most 10000
    /// @param discountMinCompleted completed leases needed for the discount
    function setFeeConfig(uint16 baseFeeBps, uint16 discountedFeeBps, uint16 discountMinScoreBps, uint32 discountMinCompleted)
        external;
    /// @notice Set the challenge period. Admin only.
    /// @param seconds_ seconds after a lease's last settlement during which its buyer may dispute
    function setChallengePeriod(uint32 seconds_) external;
    /// @notice Set the share of a disputed amount slashed from the provider's stake on provider fault. Admin only.
    /// @param slashBps basis points, at most 10000
    function setSlashBps(uint16 slashBps) external;
    /// @notice Set the fee recipient. Admin only.
    /// @param treasury_ the new treasury (not zero)
    function setTreasury(address treasury_) external;
    /// @notice Pause (PAUSER_ROLE). Stops openLease, topUp, activateLease and releaseEarnings. Settlement is NOT
    /// paused: it only books escrow as pending, nothing pending can leave while paused, and while paused a buyer
    /// may dispute pending charges whatever the challenge period. Withdrawals, closing, expiry, disputes and
    /// their resolution stay open.
    function pause() external;
    /// @notice Lift the pause (PAUSER_ROLE).
    function unpause() external;
    /// @notice Buyer freezes everything pending, within the challenge period of the last settlement (any time
    /// while paused).
    /// @param leaseId the lease
    /// @param ckpt the lease's checkpoint word (state commitment)
    /// @param lastReportHash the lease's last settled report hash (state commitment)
    function dispute(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external;
    /// @notice Arbiter splits the frozen amount; on provider fault slashes stake to the buyer. Reputation follows
    /// the ruling: buyerShareBps > 5000 is a buyer win (provider DisputeLost), otherwise (an even split
    /// included) a provider win.
    /// @param leaseId the lease
    /// @param buyerShareBps share of the frozen amount refunded to the buyer, at most 10000
    /// @param providerFault whether to slash the provider's stake (slashBps of the frozen amount)
    /// @param ckpt the lease's checkpoint word (state commitment)
    /// @param lastReportHash the lease's last settled report hash (state commitment)
    function resolveDispute(uint256 leaseId, uint16 buyerShareBps, bool providerFault, uint256 ckpt, bytes32 lastReportHash)
        external;
    /// @notice Move pending charges to the holder once the challenge period of the last settlement passed.
    /// Paused: reverts.
    /// @param leaseId the lease
    /// @param ckpt the lease's checkpoint word (state commitment)
    /// @param lastReportHash the lease's last settled report hash (state commitment)
    function releaseEarnings(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external;
    /// @notice Buyer rates the provider 1..5 once per Closed or Exhausted lease that ran.
    /// @param leaseId the lease
    /// @param stars 1..5
    function rate(uint256 leaseId, uint8 stars) external;
    /// @notice Everything about a lease.
    /// @param leaseId the lease (reverts LeaseEscrowUnknownLease if none)
    /// @return v the lease
    function lease(uint256 leaseId) external view returns (LeaseView memory v);
    /// @notice Settlement and money state of a lease, from its state words.
    /// @param leaseId the lease
    /// @param ckpt the lease's checkpoint word (state commitment)
    /// @param lastReportHash the lease's last settled report hash (state commitment)
    /// @return v the checkpoint and the money it accounts for
    function checkpoint(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash)
        external
        view
        returns (CheckpointView memory v);
    /// @notice The lease's state commitment keccak256(abi.encode(terms, ckpt, lastReportHash)).
    /// @param leaseId the lease
    /// @return the commitment (0: no lease)
    function stateHash(uint256 leaseId) external view returns (bytes32);
    /// @notice The packed terms word (layout in the header) and state commitment of many leases.
    /// @param leaseIds the leases
    /// @return terms their terms words (0: no lease)
    /// @return stateHashes their commitments (0: no lease)
    function leaseTerms(uint256[] calldata leaseIds)
        external
        view
        returns (uint256[] memory terms, bytes32[] memory stateHashes);
    /// @notice The fee and dispute configuration.
    /// @return the configuration
    function feeConfig() external view returns (FeeConfig memory);
    /// @notice The challenge period in seconds.
    /// @return the period
    function challengePeriod() external view returns (uint32);
    /// @notice The fee recipient.
    /// @return the treasury
    function treasury() external view returns (address);
    /// @notice The CapacityRegistry the escrow uses.
    /// @return the registry
    function registry() external view returns (address);
    /// @notice The Reputation contract the escrow records outcomes in.
    /// @return the reputation contract
    function reputation() external view returns (address);
    /// @notice The escrow's copy of a node's attestor and power cap (what settlement checks against).
    /// @param nodeId the node
    /// @return attestor the node's attestor
    /// @return maxPowerMwPerGpu the node's power cap per GPU, mW
    function nodeCache(uint256 nodeId) external view returns (address attestor, uint32 maxPowerMwPerGpu);
    /// @notice EIP-712 domain separator (name ComputeLedger, version 2, this chain, the escrow's address).
    /// @return the separator
    function domainSeparator() external view returns (bytes32);
    /// @notice EIP-712 struct hash of a report (also its link in the hash chain).
    /// @param r the report, flat
    /// @return the struct hash
    function hashReport(MeteringReport calldata r) external pure returns (bytes32);
    /// @notice EIP-712 digest of a report, as the attestor signs it.
    /// @param r the report, flat
    /// @return the digest
    function reportDigest(MeteringReport calldata r) external view returns (bytes32);
    /// @notice EIP-712 digest of the report in a settlement entry (the path settle uses).
    /// @param entry one packed settlement entry
    /// @return the digest
    function entryDigest(bytes calldata entry) external view returns (bytes32);
}

/// @dev ERC-165 id of the escrow's own interface: the XOR of every function ILeaseEscrowBase, ILeaseEscrowCore
/// and ILeaseEscrowExtension declare. (`type(ILeaseEscrow).interfaceId` counts only the functions ILeaseEscrow
/// declares itself, which are OpenZeppelin's.) LeaseEscrow claims it, IAccessControl and IERC165.
bytes4 constant LEASE_ESCROW_INTERFACE_ID =
    type(ILeaseEscrowBase).interfaceId ^ type(ILeaseEscrowCore).interfaceId ^ type(ILeaseEscrowExtension).interfaceId;

/// @title ILeaseEscrow
/// @notice The whole escrow as callers see it at one address: LeaseEscrow (ILeaseEscrowCore) with
/// LeaseEscrowExtension (ILeaseEscrowExtension) behind its fallback, their shared ILeaseEscrowBase, and what
/// LeaseEscrow inherits from OpenZeppelin: AccessControl (IAccessControl), EIP712 (IERC5267), ERC165 and, declared
/// here because those contracts have no interface, Pausable, ReentrancyGuardTransient, SafeERC20 and ShortStrings
/// members. No contract implements it (the two halves each implement theirs); the build writes its ABI as the
/// escrow's one ABI (ledger/artifacts/ILeaseEscrow.json), which tests/contracts check is exactly the union of
/// both contracts' ABIs but for what no caller calls by name: LeaseEscrow's constructor, its `receive` (ETH only
/// from the registry, slashed stake; anything else reverts LeaseEscrowUnexpectedEth) and its `fallback` (which
/// delegates every ILeaseEscrowExtension function to the extension). Declaring those here would make the type
/// payable-only for no caller's benefit.
interface ILeaseEscrow is ILeaseEscrowCore, ILeaseEscrowExtension, IAccessControl, IERC5267, IERC165 {
    /// @notice The contract was paused (Pausable).
    /// @param account the pauser
    // slither-disable-next-line unindexed-event-address (OpenZeppelin's event, as Pausable emits it)
    event Paused(address account);
    /// @notice The contract was unpaused (Pausable).
    /// @param account the pauser
    // slither-disable-next-line unindexed-event-address (OpenZeppelin's event, as Pausable emits it)
    event Unpaused(address account);

    /// @notice The call needs the contract not paused (Pausable).
    error EnforcedPause();
    /// @notice The call needs the contract paused (Pausable).
    error ExpectedPause();
    /// @notice A nonReentrant function was entered again (ReentrancyGuardTransient).
    error ReentrancyGuardReentrantCall();
    /// @notice An ERC-20 transfer failed or returned false (SafeERC20).
    /// @param token the token
    error SafeERC20FailedOperation(address token);
    /// @notice EIP712's name or version does not fit a short string (ShortStrings; never with this escrow's).
    error InvalidShortString();
    /// @notice A string is too long for a short string (ShortStrings; never with this escrow's).
    /// @param str the string
    error StringTooLong(string str);

    /// @notice Whether the escrow is paused (Pausable; see `ILeaseEscrowExtension.pause`).
    /// @return paused or not
    function paused() external view returns (bool);
    /// @notice The admin role id (AccessControl): 0x00.
    /// @return the role id
    // slither-disable-next-line naming-convention (the getter of a constant keeps the constant's name)
    function DEFAULT_ADMIN_ROLE() external view returns (bytes32);
}
