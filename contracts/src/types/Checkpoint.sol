// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev A lease's settlement checkpoint, packed in one word (never stored: committed in the lease's state
/// hash, carried in calldata and announced in the settlement records):
///   seq[31:0] | cumBusyMs[79:32] | cumAllocatedMs[127:80] | cumEnergyMj[175:128] | cumSmActiveMs[223:176]
///   | settledAt[255:224]
/// Before the first settlement: 0 while Open, then startS << 224 once Active (`initial`: every counter 0, the
/// challenge clock at activation). Protocol v2 keeps no window end: windows are not checked against each
/// other on chain, the cumulative counters are bounded instead (LeaseEscrow's NatSpec says why that is enough).
/// Each field has one offset and one mask below; the library and the settlement assembly both use them.
type Checkpoint is uint256;

using CheckpointLibrary for Checkpoint global;

uint256 constant CKPT_SEQ_MASK = 0xffffffff; // offset 0
uint256 constant CKPT_BUSY_OFFSET = 32;
uint256 constant CKPT_ALLOC_OFFSET = 80;
uint256 constant CKPT_ENERGY_OFFSET = 128;
uint256 constant CKPT_SM_OFFSET = 176;
/// @dev Mask of the four 48-bit counters (busy, allocated, energy, SM-active).
uint256 constant CKPT_FIELD_MASK = 0xffffffffffff;
uint256 constant CKPT_SETTLED_AT_OFFSET = 224; // the top 32 bits: no mask

/// @dev "No counter went down" for all four counters at once (the settlement fast path; the checked path
/// compares them one by one and names the counter). The counters are adjacent 48-bit lanes, so they are split
/// into two words of two lanes each with a free lane between them: lanes A = busy and energy, lanes B =
/// allocated and SM-active. For each word, (new & LANES | GUARDS) − (old & LANES) computes every lane's
/// new + 2^48 − old, which never borrows across lanes (old < 2^48), and whose bit 48 (the lane's GUARD bit, in
/// the free lane above it) is set exactly when new ≥ old. LeaseEscrowBase's constructor checks these literals
/// against the offsets above.
uint256 constant CKPT_LANES_A = 0x00000000000000000000ffffffffffff000000000000ffffffffffff00000000; // busy | energy
uint256 constant CKPT_GUARDS_A = 0x0000000000000000000100000000000000000000000100000000000000000000; // bits 176, 80
uint256 constant CKPT_LANES_B = 0x00000000ffffffffffff000000000000ffffffffffff00000000000000000000; // alloc | SM
uint256 constant CKPT_GUARDS_B = 0x0000000100000000000000000000000100000000000000000000000000000000; // bits 224, 128

/// @title CheckpointLibrary
/// @notice Packs and unpacks `Checkpoint` (layout above).
library CheckpointLibrary {
    /// @dev The checkpoint of a report settled at `settledAt_` (unix s), fields from the most significant down.
    /// Every value must fit its field (the settlement entry's widths guarantee it).
    function pack(
        uint256 settledAt_,
        uint256 cumSmActiveMs_,
        uint256 cumEnergyMj_,
        uint256 cumAllocatedMs_,
        uint256 cumBusyMs_,
        uint256 seq_
    ) internal pure returns (Checkpoint) {
        return Checkpoint.wrap(
            (settledAt_ << CKPT_SETTLED_AT_OFFSET) | (cumSmActiveMs_ << CKPT_SM_OFFSET)
                | (cumEnergyMj_ << CKPT_ENERGY_OFFSET) | (cumAllocatedMs_ << CKPT_ALLOC_OFFSET)
                | (cumBusyMs_ << CKPT_BUSY_OFFSET) | seq_
        );
    }

    /// @dev The checkpoint of a lease activated at `startS` (unix s), before any settlement: every counter 0,
    /// the challenge clock at activation.
    function initial(uint256 startS) internal pure returns (Checkpoint) {
        return Checkpoint.wrap(startS << CKPT_SETTLED_AT_OFFSET);
    }

    /// @dev seq of the last settled report (0: none).
    function seq(Checkpoint c) internal pure returns (uint256) {
        return Checkpoint.unwrap(c) & CKPT_SEQ_MASK;
    }

    function cumBusyMs(Checkpoint c) internal pure returns (uint256) {
        return (Checkpoint.unwrap(c) >> CKPT_BUSY_OFFSET) & CKPT_FIELD_MASK;
    }

    function cumAllocatedMs(Checkpoint c) internal pure returns (uint256) {
        return (Checkpoint.unwrap(c) >> CKPT_ALLOC_OFFSET) & CKPT_FIELD_MASK;
    }

    function cumEnergyMj(Checkpoint c) internal pure returns (uint256) {
        return (Checkpoint.unwrap(c) >> CKPT_ENERGY_OFFSET) & CKPT_FIELD_MASK;
    }

    /// @dev Cumulative SM-active GPU-ms (GPM's SM activity × time, summed over the lease's GPUs).
    function cumSmActiveMs(Checkpoint c) internal pure returns (uint256) {
        return (Checkpoint.unwrap(c) >> CKPT_SM_OFFSET) & CKPT_FIELD_MASK;
    }

    /// @dev Unix s of the last settlement (activation before any): the challenge clock.
    function settledAt(Checkpoint c) internal pure returns (uint256) {
        return Checkpoint.unwrap(c) >> CKPT_SETTLED_AT_OFFSET;
    }
}
