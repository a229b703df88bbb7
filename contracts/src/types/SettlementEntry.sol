// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev Layout of a settlement entry in calldata (`settle(bytes)`, `settleBatch(bytes)`: entries back to back;
/// documented in ILeaseEscrowTypes' header) and of the 84-byte settlement record the escrow announces.
/// The entry's first word is the `EntryHead` below; the other fields sit at the byte offsets `ENTRY_*`. Every
/// reader of an entry (the settlement fast path's assembly, `_decode`, `_entryStructHash`, `entryDigest`)
/// uses these constants, so each offset has one definition.
///
/// Entry head, the calldata word at byte 0:
///   leaseId[255:224] | seq[223:192] | windowEndMs[191:144] | cumBusyMs[143:96] | cumEnergyMj[95:48]
///   | cumAllocatedMs[47:0]
type EntryHead is uint256;

using EntryHeadLibrary for EntryHead global;

uint256 constant ENTRY_LEASE_ID_SHIFT = 224; // the top 32 bits: no mask
uint256 constant ENTRY_SEQ_SHIFT = 192;
uint256 constant ENTRY_SEQ_MASK = 0xffffffff;
uint256 constant ENTRY_WINDOW_END_SHIFT = 144;
uint256 constant ENTRY_CUM_BUSY_SHIFT = 96;
uint256 constant ENTRY_CUM_ENERGY_SHIFT = 48;
/// @dev Mask of the head's 48-bit fields (window end, busy, energy, and cumAllocatedMs at shift 0) and of
/// cumSmActiveMs.
uint256 constant ENTRY_FIELD_MASK = 0xffffffffffff;

/// @dev The calldata word at byte 32: cumSmActiveMs[255:208] | flags[207:200] | (prevReportHash's first bytes).
uint256 constant ENTRY_WORD1 = 32;
uint256 constant ENTRY_CUM_SM_SHIFT = 208; // the top 48 bits of that word: no mask
uint256 constant ENTRY_FLAGS_SHIFT = 200;
uint256 constant ENTRY_FLAGS_MASK = 0xff;
/// @dev Flag bit 0: the lease's lastReportHash follows at ENTRY_LAST_HASH (else it is prevReportHash). The only
/// flag: any other flags value is malformed, and the flags value is the number of words appended.
uint256 constant ENTRY_FLAG_WITH_LAST = 1;

/// @dev Byte offsets of the 32-byte fields.
uint256 constant ENTRY_PREV_HASH = 39;
uint256 constant ENTRY_WINDOW_HASH = 71;
uint256 constant ENTRY_SIG_R = 103;
uint256 constant ENTRY_SIG_VS = 135;
uint256 constant ENTRY_TERMS = 167;
uint256 constant ENTRY_CKPT = 199;
uint256 constant ENTRY_LAST_HASH = 231;
/// @dev Size of an entry without the lastReportHash (= ENTRY_LAST_HASH); each flag adds 32 bytes.
uint256 constant ENTRY_SIZE = 231;

/// @dev A settlement record (`CheckpointsSettled` data, one per settled entry; `CheckpointSettled` carries the
/// same fields), packed big-endian in memory:
///   [0,4) leaseId uint32  [4,36) reportHash  [36,68) ckpt  [68,84) charged uint128
uint256 constant RECORD_SIZE = 84;
uint256 constant RECORD_LEASE_ID_SHIFT = 224; // leaseId in the record's first word's top 32 bits
uint256 constant RECORD_REPORT_HASH = 4;
uint256 constant RECORD_CKPT = 36;
uint256 constant RECORD_CHARGED = 68;
uint256 constant RECORD_CHARGED_SHIFT = 128; // charged in the top 128 bits of the word at RECORD_CHARGED

/// @title EntryHeadLibrary
/// @notice Unpacks `EntryHead` (layout above).
library EntryHeadLibrary {
    function leaseId(EntryHead h) internal pure returns (uint256) {
        return EntryHead.unwrap(h) >> ENTRY_LEASE_ID_SHIFT;
    }

    function seq(EntryHead h) internal pure returns (uint256) {
        return (EntryHead.unwrap(h) >> ENTRY_SEQ_SHIFT) & ENTRY_SEQ_MASK;
    }

    function windowEndMs(EntryHead h) internal pure returns (uint256) {
        return (EntryHead.unwrap(h) >> ENTRY_WINDOW_END_SHIFT) & ENTRY_FIELD_MASK;
    }

    function cumBusyMs(EntryHead h) internal pure returns (uint256) {
        return (EntryHead.unwrap(h) >> ENTRY_CUM_BUSY_SHIFT) & ENTRY_FIELD_MASK;
    }

    function cumEnergyMj(EntryHead h) internal pure returns (uint256) {
        return (EntryHead.unwrap(h) >> ENTRY_CUM_ENERGY_SHIFT) & ENTRY_FIELD_MASK;
    }

    function cumAllocatedMs(EntryHead h) internal pure returns (uint256) {
        return EntryHead.unwrap(h) & ENTRY_FIELD_MASK;
    }
}
