// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev A lease's settlement checkpoint, packed in one word (never stored: committed in the lease's state
/// hash, carried in calldata and announced in the settlement records):
///   seq[31:0] | cumBusyMs[79:32] | cumAllocatedMs[127:80] | cumEnergyMj[175:128] | lastWindowEndMs[223:176]
///   | settledAt[255:224]
/// Before the first settlement: 0 while Open, then startMs << 176 | startS << 224 (`initial`).
/// Each field has one offset and one mask below; the library and the settlement assembly both use them.
type Checkpoint is uint256;

using CheckpointLibrary for Checkpoint global;

uint256 constant CKPT_SEQ_MASK = 0xffffffff; // offset 0
uint256 constant CKPT_BUSY_OFFSET = 32;
uint256 constant CKPT_ALLOC_OFFSET = 80;
uint256 constant CKPT_ENERGY_OFFSET = 128;
uint256 constant CKPT_WINDOW_END_OFFSET = 176;
/// @dev Mask of the four 48-bit fields (busy, allocated, energy, last window end).
uint256 constant CKPT_FIELD_MASK = 0xffffffffffff;
uint256 constant CKPT_SETTLED_AT_OFFSET = 224; // the top 32 bits: no mask

/// @title CheckpointLibrary
/// @notice Packs and unpacks `Checkpoint` (layout above).
library CheckpointLibrary {
    /// @dev The checkpoint of a report settled at `settledAt_` (unix s), fields from the most significant down.
    /// Every value must fit its field (the settlement entry's widths guarantee it).
    function pack(
        uint256 settledAt_,
        uint256 lastWindowEndMs_,
        uint256 cumEnergyMj_,
        uint256 cumAllocatedMs_,
        uint256 cumBusyMs_,
        uint256 seq_
    ) internal pure returns (Checkpoint) {
        return Checkpoint.wrap(
            (settledAt_ << CKPT_SETTLED_AT_OFFSET) | (lastWindowEndMs_ << CKPT_WINDOW_END_OFFSET)
                | (cumEnergyMj_ << CKPT_ENERGY_OFFSET) | (cumAllocatedMs_ << CKPT_ALLOC_OFFSET)
                | (cumBusyMs_ << CKPT_BUSY_OFFSET) | seq_
        );
    }

    /// @dev The checkpoint of a lease activated at `startS` (unix s), before any settlement.
    function initial(uint256 startS) internal pure returns (Checkpoint) {
        return Checkpoint.wrap(((startS * 1000) << CKPT_WINDOW_END_OFFSET) | (startS << CKPT_SETTLED_AT_OFFSET));
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

    /// @dev End of the last settled window (the lease start before any).
    function lastWindowEndMs(Checkpoint c) internal pure returns (uint256) {
        return (Checkpoint.unwrap(c) >> CKPT_WINDOW_END_OFFSET) & CKPT_FIELD_MASK;
    }

    /// @dev Unix s of the last settlement (activation before any): the challenge clock.
    function settledAt(Checkpoint c) internal pure returns (uint256) {
        return Checkpoint.unwrap(c) >> CKPT_SETTLED_AT_OFFSET;
    }
}
