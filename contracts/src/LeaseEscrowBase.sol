// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ILeaseEscrowBase} from "./interfaces/ILeaseEscrow.sol";
import {ICapacityRegistry} from "./interfaces/ICapacityRegistry.sol";
import {IReputation} from "./interfaces/IReputation.sol";
import {Terms, TERMS_STATUS_ACTIVE, TERMS_BILL_OFFSETS} from "./types/Terms.sol";
import {
    Checkpoint,
    CKPT_BUSY_OFFSET,
    CKPT_ALLOC_OFFSET,
    CKPT_ENERGY_OFFSET,
    CKPT_SM_OFFSET,
    CKPT_FIELD_MASK,
    CKPT_LANES_A,
    CKPT_GUARDS_A,
    CKPT_LANES_B,
    CKPT_GUARDS_B
} from "./types/Checkpoint.sol";
import {NodeCache} from "./types/NodeCache.sol";
import {
    RECORD_LEASE_ID_SHIFT,
    ENTRY_SEQ_SHIFT,
    ENTRY_SEQ_MASK,
    ENTRY_LEASE_ID_SHIFT,
    ENTRY_WINDOW_END_SHIFT,
    ENTRY_CUM_BUSY_SHIFT,
    ENTRY_CUM_ENERGY_SHIFT,
    ENTRY_FIELD_MASK,
    ENTRY_WORD1,
    ENTRY_CUM_SM_SHIFT,
    ENTRY_PREV_HASH,
    ENTRY_WINDOW_HASH
} from "./types/SettlementEntry.sol";

/// @title LeaseEscrowBase
/// @notice Storage layout and shared internals of LeaseEscrow and LeaseEscrowExtension (which runs by
/// DELEGATECALL from LeaseEscrow's fallback, so both must share this exact layout), and the part of the escrow's
/// interface both implement (ILeaseEscrowBase).
abstract contract LeaseEscrowBase is ILeaseEscrowBase, AccessControl, Pausable, ReentrancyGuardTransient, EIP712 {
    /// @inheritdoc ILeaseEscrowBase
    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");
    /// @inheritdoc ILeaseEscrowBase
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    /// @inheritdoc ILeaseEscrowBase
    /// @dev keccak256 of ledger.protocol.REPORT_TYPE_STRING (EIP-712 encodeType: the referenced
    /// WindowDetail type appended). The settlement path only sees hashStruct(WindowDetail), `windowHash`.
    bytes32 public constant REPORT_TYPEHASH = keccak256(
        "MeteringReport(uint256 leaseId,uint64 seq,bytes32 prevReportHash,uint64 windowEndMs,uint64 cumBusyMs,uint64 cumEnergyMj,uint64 cumAllocatedMs,uint64 cumSmActiveMs,WindowDetail window)WindowDetail(uint64 windowStartMs,bytes32 gpuSetHash,uint64 busyMs,uint64 smActiveMs,uint64 tensorActiveMs,uint64 energyMj,uint64 allocatedMs,uint32 maxMemUsedMiB,uint32 sampleCount,bytes32 samplesRoot,uint32 flags,bytes32 configHash)"
    );
    /// @dev REPORT_TYPEHASH as a literal, for assembly (the constructor refuses to deploy if they differ).
    uint256 internal constant _REPORT_TYPEHASH_LITERAL = 0x9c0747ccc0b0bda439de25a39d2505698adf8e0810f328e0c0c79418175f1821;
    /// @inheritdoc ILeaseEscrowBase
    /// @dev keccak256 of ledger.protocol.WINDOW_TYPE_STRING.
    bytes32 public constant WINDOW_TYPEHASH = keccak256(
        "WindowDetail(uint64 windowStartMs,bytes32 gpuSetHash,uint64 busyMs,uint64 smActiveMs,uint64 tensorActiveMs,uint64 energyMj,uint64 allocatedMs,uint32 maxMemUsedMiB,uint32 sampleCount,bytes32 samplesRoot,uint32 flags,bytes32 configHash)"
    );

    /// @inheritdoc ILeaseEscrowBase
    uint256 public constant ENERGY_MARGIN_BPS = 500;
    /// @dev Energy cap of a report in mJ: maxPowerMwPerGpu × GPU-ms × _ENERGY_CAP_NUMERATOR / _ENERGY_CAP_DENOMINATOR
    /// (mW × ms = µJ, / 1000 → mJ; × (1 + ENERGY_MARGIN_BPS / 10_000)). Both settlement paths use these two
    /// constants; they are literals for the assembly, and the constructor refuses to deploy unless they are
    /// derived from ENERGY_MARGIN_BPS: numerator = 10_000 + ENERGY_MARGIN_BPS, denominator = 10_000 × 1000.
    uint256 internal constant _ENERGY_CAP_NUMERATOR = 10_500;
    uint256 internal constant _ENERGY_CAP_DENOMINATOR = 10_000_000;

    // Packed words (one library each, types/): Terms (_terms[id]), Checkpoint (ckpt), NodeCache (_nodeCache[id]).
    // _stateHash[id] = keccak256(abi.encode(terms, ckpt, lastReportHash)): the only per-lease slot settlement
    // reads and writes. Written at openLease and on every change of terms or checkpoint; never zero again.

    struct LeaseInfo {
        address buyer;
        uint40 startBy;
        bool feesSettled;
        uint16 feeBps;
    }

    struct LeaseParties {
        address holder;
        uint64 offerId;
    }

    struct LeaseAccounts {
        address provider;
        address token;
    }

    struct LeaseMoney {
        uint128 released;
        uint128 frozen;
    }

    ICapacityRegistry internal immutable _registry;
    IReputation internal immutable _reputation;

    // NOTE: add state only here, never in LeaseEscrow or LeaseEscrowExtension (the two must keep this one
    // layout; tests/contracts/test_storage_layout.py compares them).
    // Written by LeaseEscrow; LeaseEscrowExtension runs on the same storage by DELEGATECALL (slither sees the
    // extension alone, which never writes them).
    // slither-disable-start uninitialized-state
    mapping(uint256 leaseId => Terms) internal _terms;
    mapping(uint256 leaseId => bytes32) internal _stateHash;
    mapping(uint256 leaseId => bytes32) internal _gpuSet;
    mapping(uint256 leaseId => LeaseInfo) internal _info;
    mapping(uint256 leaseId => LeaseParties) internal _parties;
    mapping(uint256 leaseId => LeaseAccounts) internal _accounts;
    mapping(uint256 leaseId => LeaseMoney) internal _money;
    mapping(uint256 leaseId => uint256) internal _refunded;
    mapping(uint256 nodeId => NodeCache) internal _nodeCache;
    // slither-disable-end uninitialized-state
    mapping(uint256 offerId => uint256 leaseId) internal _liveLease;
    mapping(address account => mapping(address token => uint256)) internal _withdrawable;
    uint256 internal _leaseCount;
    FeeConfig internal _fees;
    address internal _treasury;

    /// @dev EIP-712 domain: name ComputeLedger, version 2 (ledger.protocol.DOMAIN_VERSION: metering protocol v2).
    constructor(ICapacityRegistry registry_, IReputation reputation_) EIP712("ComputeLedger", "2") {
        // the settlement fast path hashes with the literal: it must be the type's hash
        if (bytes32(_REPORT_TYPEHASH_LITERAL) != REPORT_TYPEHASH) revert LeaseEscrowBadConfig();
        // and compares the status field with this literal
        if (TERMS_STATUS_ACTIVE != uint8(LeaseStatus.Active)) revert LeaseEscrowBadConfig();
        // and copies an entry's leaseId bits into its record as they are
        if (ENTRY_LEASE_ID_SHIFT != RECORD_LEASE_ID_SHIFT) revert LeaseEscrowBadConfig();
        // and bounds energy with these literals
        if (_ENERGY_CAP_NUMERATOR != 10_000 + ENERGY_MARGIN_BPS || _ENERGY_CAP_DENOMINATOR != 10_000 * 1000) {
            revert LeaseEscrowBadConfig();
        }
        // and finds the billed counter of each mode with this table (Terms.billOffset reads it too)
        if (TERMS_BILL_OFFSETS != CKPT_ALLOC_OFFSET | (CKPT_BUSY_OFFSET << 8) | (CKPT_SM_OFFSET << 16)) {
            revert LeaseEscrowBadConfig();
        }
        // and checks that no counter went down with these lanes and guard bits (types/Checkpoint.sol)
        if (
            CKPT_LANES_A != (CKPT_FIELD_MASK << CKPT_BUSY_OFFSET) | (CKPT_FIELD_MASK << CKPT_ENERGY_OFFSET)
                || CKPT_GUARDS_A != (1 << (CKPT_BUSY_OFFSET + 48)) | (1 << (CKPT_ENERGY_OFFSET + 48))
                || CKPT_LANES_B != (CKPT_FIELD_MASK << CKPT_ALLOC_OFFSET) | (CKPT_FIELD_MASK << CKPT_SM_OFFSET)
                || CKPT_GUARDS_B != (1 << (CKPT_ALLOC_OFFSET + 48)) | (1 << (CKPT_SM_OFFSET + 48))
        ) revert LeaseEscrowBadConfig();
        _registry = registry_;
        _reputation = reputation_;
    }

    /// @dev EIP-712 hashStruct of the MeteringReport a settlement entry at calldata offset `e` stands for.
    function _entryStructHash(uint256 e) internal pure returns (bytes32 h) {
        bytes32 typeHash = REPORT_TYPEHASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            let w0 := calldataload(e) // EntryHead
            mstore(m, typeHash)
            mstore(add(m, 0x20), shr(ENTRY_LEASE_ID_SHIFT, w0))
            mstore(add(m, 0x40), and(shr(ENTRY_SEQ_SHIFT, w0), ENTRY_SEQ_MASK))
            mstore(add(m, 0x60), calldataload(add(e, ENTRY_PREV_HASH)))
            mstore(add(m, 0x80), and(shr(ENTRY_WINDOW_END_SHIFT, w0), ENTRY_FIELD_MASK))
            mstore(add(m, 0xa0), and(shr(ENTRY_CUM_BUSY_SHIFT, w0), ENTRY_FIELD_MASK))
            mstore(add(m, 0xc0), and(shr(ENTRY_CUM_ENERGY_SHIFT, w0), ENTRY_FIELD_MASK))
            mstore(add(m, 0xe0), and(w0, ENTRY_FIELD_MASK)) // cumAllocatedMs
            mstore(add(m, 0x100), shr(ENTRY_CUM_SM_SHIFT, calldataload(add(e, ENTRY_WORD1))))
            mstore(add(m, 0x120), calldataload(add(e, ENTRY_WINDOW_HASH)))
            h := keccak256(m, 0x140)
        }
    }

    /// @dev keccak256(abi.encode(terms, ck, lastHash)).
    function _commitment(Terms terms, Checkpoint ck, bytes32 lastHash) internal pure returns (bytes32 c) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, terms)
            mstore(add(m, 0x20), ck)
            mstore(add(m, 0x40), lastHash)
            c := keccak256(m, 0x60)
        }
    }

    /// @dev Reverts unless (terms in storage, ck, lastHash) is the lease's committed state; returns terms.
    function _verifiedTerms(uint256 leaseId, Checkpoint ck, bytes32 lastHash) internal view returns (Terms terms) {
        terms = _terms[leaseId];
        if (terms.status() == LeaseStatus.None) revert LeaseEscrowUnknownLease(leaseId);
        bytes32 committed = _stateHash[leaseId];
        if (_commitment(terms, ck, lastHash) != committed) revert LeaseEscrowStaleState(leaseId, committed);
    }

    /// @dev Writes terms and the commitment together (every terms change goes through here).
    function _setTerms(uint256 leaseId, Terms terms, Checkpoint ck, bytes32 lastHash) internal {
        _terms[leaseId] = terms;
        _stateHash[leaseId] = _commitment(terms, ck, lastHash);
    }

    /// @dev Once a finished lease has nothing pending or frozen: treasury gets the fee on what the holder
    /// earned, the buyer the rest of the fee it escrowed.
    function _trySettleFees(uint256 leaseId, Checkpoint ck) internal {
        Terms terms = _terms[leaseId];
        LeaseStatus st = terms.status();
        if (st != LeaseStatus.Closed && st != LeaseStatus.Expired && st != LeaseStatus.Exhausted) return;
        LeaseInfo storage info = _info[leaseId];
        if (info.feesSettled) return;
        LeaseMoney memory m = _money[leaseId];
        if (m.frozen != 0 || terms.charged(ck) != _refunded[leaseId] + m.released) return;
        info.feesSettled = true;
        uint256 feeBps = info.feeBps;
        uint256 escrowed = terms.escrowed();
        uint256 held = (escrowed * feeBps) / 10_000;
        uint256 toTreasury = (uint256(m.released) * feeBps) / 10_000;
        address token = _accounts[leaseId].token;
        if (toTreasury != 0) _credit(_treasury, token, toTreasury);
        if (held != toTreasury) _credit(info.buyer, token, held - toTreasury);
        emit FeesSettled(leaseId, toTreasury, held - toTreasury);
    }

    function _credit(address account, address token, uint256 amount) internal {
        _withdrawable[account][token] += amount;
    }

    function _requireStatus(uint256 leaseId, LeaseStatus want) internal view returns (Terms terms) {
        terms = _terms[leaseId];
        LeaseStatus st = terms.status();
        if (st != want) {
            if (st == LeaseStatus.None) revert LeaseEscrowUnknownLease(leaseId);
            revert LeaseEscrowBadStatus(leaseId, st);
        }
    }

    /// @inheritdoc ILeaseEscrowBase
    function feeBpsFor(address providerAccount) public view returns (uint16) {
        FeeConfig memory f = _fees;
        if (f.discountedFeeBps == f.baseFeeBps) return f.baseFeeBps;
        if (
            _reputation.scoreOf(providerAccount) >= f.discountMinScoreBps
                && _reputation.countsOf(providerAccount).completed >= f.discountMinCompleted
        ) return f.discountedFeeBps;
        return f.baseFeeBps;
    }
}
