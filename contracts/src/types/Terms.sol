// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrowTypes} from "../interfaces/ILeaseEscrow.sol";
import {Checkpoint, CKPT_FIELD_MASK} from "./Checkpoint.sol";

/// @dev A lease's terms, packed in one word (stored in `LeaseEscrowBase._terms`, committed in the lease's
/// state hash and carried in every settlement entry):
///   nodeId[31:0] | startS[63:32] | durationS[95:64] | gpuCount[111:96] | mode[115:112] | status[119:116]
///   | pricePerGpuSecond[215:120]                                     (startS = 0 while Open)
/// mode (the offer's ICapacityRegistry.BillingMode, 0..2): 0 reserved (bills allocated GPU time), 1 metered
/// (bills busy GPU time), 2 SM-active (bills SM-active GPU time: pay for the compute used).
/// Each field has one offset and one mask below; the library and the settlement assembly both use them.
type Terms is uint256;

using TermsLibrary for Terms global;

uint256 constant TERMS_NODE_MASK = 0xffffffff; // offset 0
uint256 constant TERMS_START_OFFSET = 32;
uint256 constant TERMS_START_MASK = 0xffffffff;
uint256 constant TERMS_DURATION_OFFSET = 64;
uint256 constant TERMS_DURATION_MASK = 0xffffffff;
uint256 constant TERMS_GPUS_OFFSET = 96;
uint256 constant TERMS_GPUS_MASK = 0xffff;
uint256 constant TERMS_MODE_OFFSET = 112;
uint256 constant TERMS_MODE_MASK = 0xf;
uint256 constant TERMS_STATUS_OFFSET = 116;
uint256 constant TERMS_STATUS_MASK = 0xf;
uint256 constant TERMS_PRICE_OFFSET = 120;
uint256 constant TERMS_PRICE_MASK = 0xffffffffffffffffffffffff;
/// @dev uint8(LeaseStatus.Active), for assembly (LeaseEscrowBase's constructor checks that they agree).
uint256 constant TERMS_STATUS_ACTIVE = 2;
/// @dev Where each billing mode's cumulative billable counter sits in the checkpoint word: byte `mode` of this
/// table (from the least significant) is the counter's offset, CKPT_ALLOC_OFFSET (80 = 0x50) for mode 0,
/// CKPT_BUSY_OFFSET (32 = 0x20) for mode 1, CKPT_SM_OFFSET (176 = 0xb0) for mode 2. `billOffset` and the
/// settlement assembly both read it (one lookup, no branch); LeaseEscrowBase's constructor checks it against
/// the offsets.
uint256 constant TERMS_BILL_OFFSETS = 0xb02050;

/// @title TermsLibrary
/// @notice Packs and unpacks `Terms` (layout above). Getters return the field's value, never more bits.
library TermsLibrary {
    /// @dev Terms of a lease just opened (status Open, not started), fields from the most significant down. Each
    /// argument must fit its field: the caller checks the price against TERMS_PRICE_MASK; the others come from
    /// the offer (uint32 duration, uint16 GPU count, a three-value billing mode, node ids below 2^32 as
    /// settlement entries assume).
    function open(uint256 price_, uint256 mode_, uint256 gpuCount_, uint256 durationS_, uint256 nodeId_)
        internal
        pure
        returns (Terms)
    {
        return Terms.wrap(
            nodeId_ | (durationS_ << TERMS_DURATION_OFFSET) | (gpuCount_ << TERMS_GPUS_OFFSET)
                | (mode_ << TERMS_MODE_OFFSET)
                | (uint256(uint8(ILeaseEscrowTypes.LeaseStatus.Open)) << TERMS_STATUS_OFFSET)
                | (price_ << TERMS_PRICE_OFFSET)
        );
    }

    function nodeId(Terms t) internal pure returns (uint256) {
        return Terms.unwrap(t) & TERMS_NODE_MASK;
    }

    /// @dev Activation time in unix seconds (0 while Open).
    function startS(Terms t) internal pure returns (uint256) {
        return (Terms.unwrap(t) >> TERMS_START_OFFSET) & TERMS_START_MASK;
    }

    /// @dev Activation time in unix ms (0 while Open).
    function startMs(Terms t) internal pure returns (uint256) {
        return ((Terms.unwrap(t) >> TERMS_START_OFFSET) & TERMS_START_MASK) * 1000;
    }

    function durationS(Terms t) internal pure returns (uint256) {
        return (Terms.unwrap(t) >> TERMS_DURATION_OFFSET) & TERMS_DURATION_MASK;
    }

    /// @dev End of the lease in unix ms: startMs + durationS × 1000 (durationS × 1000 while Open).
    function endMs(Terms t) internal pure returns (uint256) {
        uint256 u = Terms.unwrap(t);
        return ((u >> TERMS_START_OFFSET) & TERMS_START_MASK) * 1000
            + ((u >> TERMS_DURATION_OFFSET) & TERMS_DURATION_MASK) * 1000;
    }

    function gpuCount(Terms t) internal pure returns (uint256) {
        return (Terms.unwrap(t) >> TERMS_GPUS_OFFSET) & TERMS_GPUS_MASK;
    }

    /// @dev Billing mode: 0 reserved (bills allocated time), 1 metered (bills busy time), 2 SM-active (bills
    /// SM-active time).
    function mode(Terms t) internal pure returns (uint256) {
        return (Terms.unwrap(t) >> TERMS_MODE_OFFSET) & TERMS_MODE_MASK;
    }

    function status(Terms t) internal pure returns (ILeaseEscrowTypes.LeaseStatus) {
        return ILeaseEscrowTypes.LeaseStatus((Terms.unwrap(t) >> TERMS_STATUS_OFFSET) & TERMS_STATUS_MASK);
    }

    function price(Terms t) internal pure returns (uint256) {
        return (Terms.unwrap(t) >> TERMS_PRICE_OFFSET) & TERMS_PRICE_MASK;
    }

    /// @dev price × gpuCount × durationS: the escrow the lease holds (without the fee).
    function escrowed(Terms t) internal pure returns (uint256) {
        uint256 u = Terms.unwrap(t);
        return ((u >> TERMS_PRICE_OFFSET) & TERMS_PRICE_MASK) * ((u >> TERMS_GPUS_OFFSET) & TERMS_GPUS_MASK)
            * ((u >> TERMS_DURATION_OFFSET) & TERMS_DURATION_MASK);
    }

    function withStatus(Terms t, ILeaseEscrowTypes.LeaseStatus st) internal pure returns (Terms) {
        return Terms.wrap(
            (Terms.unwrap(t) & ~(TERMS_STATUS_MASK << TERMS_STATUS_OFFSET))
                | (uint256(uint8(st)) << TERMS_STATUS_OFFSET)
        );
    }

    /// @dev The terms of an Open lease activated at `startS_` (unix s): startS set, status Active.
    function activated(Terms t, uint256 startS_) internal pure returns (Terms) {
        return Terms.wrap(
            (Terms.unwrap(t) & ~(TERMS_STATUS_MASK << TERMS_STATUS_OFFSET)) | (startS_ << TERMS_START_OFFSET)
                | (TERMS_STATUS_ACTIVE << TERMS_STATUS_OFFSET)
        );
    }

    /// @dev The terms with durationS replaced (`durationS_` must fit TERMS_DURATION_MASK).
    function withDuration(Terms t, uint256 durationS_) internal pure returns (Terms) {
        return Terms.wrap(
            (Terms.unwrap(t) & ~(TERMS_DURATION_MASK << TERMS_DURATION_OFFSET)) | (durationS_ << TERMS_DURATION_OFFSET)
        );
    }

    /// @dev Offset in the checkpoint word of the counter the terms' billing mode bills (TERMS_BILL_OFFSETS).
    function billOffset(Terms t) internal pure returns (uint256) {
        return (TERMS_BILL_OFFSETS >> (((Terms.unwrap(t) >> TERMS_MODE_OFFSET) & TERMS_MODE_MASK) << 3)) & 0xff;
    }

    /// @dev Cumulative billable GPU-ms at checkpoint `c` under the terms' billing mode: allocated time (mode 0,
    /// reserved), busy time (mode 1, metered) or SM-active time (mode 2).
    function billableMs(Terms t, Checkpoint c) internal pure returns (uint256) {
        return (Checkpoint.unwrap(c) >> billOffset(t)) & CKPT_FIELD_MASK;
    }

    /// @dev Total charged to the escrow at checkpoint `c`: price × billable GPU-ms / 1000 (rounded down once, on
    /// the total, so each checkpoint charges the growth of this figure and no rounding is lost between them).
    function charged(Terms t, Checkpoint c) internal pure returns (uint256) {
        return (price(t) * billableMs(t, c)) / 1000;
    }
}
