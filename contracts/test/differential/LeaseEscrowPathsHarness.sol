// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {ICapacityRegistry} from "../../src/interfaces/ICapacityRegistry.sol";
import {IReputation} from "../../src/interfaces/IReputation.sol";
import {
    ENTRY_WORD1,
    ENTRY_FLAGS_SHIFT,
    ENTRY_FLAGS_MASK,
    ENTRY_FLAG_WITH_LAST,
    ENTRY_SIZE,
    RECORD_SIZE
} from "../../src/types/SettlementEntry.sol";

/// @notice Test harness: the real LeaseEscrow with each of its two settlement paths callable alone, on one
/// entry, so a test can run both on the same state and compare (SettlePathsDifferential.t.sol). `settle` runs
/// `_fastSettle` and falls back to `_settleOne` when it declines; here neither falls back to the other.
/// @dev Larger than EIP-170 allows: the test installs it with `vm.etch` instead of deploying it.
contract LeaseEscrowPathsHarness is LeaseEscrow {
    constructor(
        address admin,
        ICapacityRegistry registry_,
        IReputation reputation_,
        address treasury_,
        uint32 challengePeriodSeconds,
        uint16 baseFeeBps,
        address extension_
    ) LeaseEscrow(admin, registry_, reputation_, treasury_, challengePeriodSeconds, baseFeeBps, extension_) {}

    /// @notice `_fastSettle` alone on one well-formed entry, starting from node memo `memo`.
    /// @return memoOut the memo it returns (its settled flag set when it settled the entry)
    /// @return record the 84-byte record it wrote (meaningful only when it settled)
    function fastPath(bytes calldata entry, uint256 memo) external returns (uint256 memoOut, bytes memory record) {
        uint256 p;
        assembly ("memory-safe") {
            p := entry.offset
        }
        _requireOneEntry(p, entry.length);
        record = _recordBuffer();
        uint256 rec;
        assembly ("memory-safe") {
            rec := add(record, 0x20)
        }
        memoOut = _fastSettle(p, rec, _domainSeparatorV4(), memo);
    }

    /// @notice `_settleOne` alone (non-strict, as `settleBatch` runs it) on one well-formed entry.
    /// @return settled whether it settled the entry (a rejected entry emits CheckpointSkipped)
    /// @return record the 84-byte record it wrote (meaningful only when it settled)
    function checkedPath(bytes calldata entry) external returns (bool settled, bytes memory record) {
        uint256 p;
        assembly ("memory-safe") {
            p := entry.offset
        }
        _requireOneEntry(p, entry.length);
        record = _recordBuffer();
        uint256 rec;
        assembly ("memory-safe") {
            rec := add(record, 0x20)
        }
        settled = _settleOne(p, rec, _domainSeparatorV4(), false);
    }

    /// @dev The entry-size rule `settle` applies before either path runs.
    function _requireOneEntry(uint256 p, uint256 length) private pure {
        uint256 flags;
        assembly ("memory-safe") {
            flags := and(shr(ENTRY_FLAGS_SHIFT, calldataload(add(p, ENTRY_WORD1))), ENTRY_FLAGS_MASK)
        }
        if (flags > ENTRY_FLAG_WITH_LAST || length != ENTRY_SIZE + flags * 32) revert LeaseEscrowMalformedEntries(0);
    }

    /// @dev A zeroed RECORD_SIZE-byte buffer with room behind it for the paths' last unaligned 32-byte write.
    function _recordBuffer() private pure returns (bytes memory record) {
        record = new bytes(RECORD_SIZE + 32);
        assembly ("memory-safe") {
            mstore(record, RECORD_SIZE)
        }
    }
}
