// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ILeaseEscrowTypes} from "./interfaces/ILeaseEscrow.sol";
import {ICapacityRegistry} from "./interfaces/ICapacityRegistry.sol";
import {IReputation} from "./interfaces/IReputation.sol";

/// @title LeaseEscrowBase
/// @notice Storage layout and shared internals of LeaseEscrow and LeaseEscrowExtension (which runs by
/// DELEGATECALL from LeaseEscrow's fallback, so both must share this exact layout).
abstract contract LeaseEscrowBase is ILeaseEscrowTypes, AccessControl, Pausable, ReentrancyGuardTransient, EIP712 {
    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    /// @dev keccak256 of ledger.protocol.REPORT_TYPE_STRING:
    /// "MeteringReport(uint256 leaseId,uint64 seq,bytes32 prevReportHash,uint64 windowStartMs,uint64 windowEndMs,
    /// bytes32 gpuSetHash,uint64 busyMs,uint64 energyMj,uint64 allocatedMs,uint64 cumBusyMs,uint64 cumEnergyMj,
    /// uint64 cumAllocatedMs,uint32 maxMemUsedMiB,uint32 sampleCount,bytes32 samplesRoot,uint32 flags,
    /// bytes32 configHash)"
    bytes32 public constant REPORT_TYPEHASH = keccak256(
        "MeteringReport(uint256 leaseId,uint64 seq,bytes32 prevReportHash,uint64 windowStartMs,uint64 windowEndMs,bytes32 gpuSetHash,uint64 busyMs,uint64 energyMj,uint64 allocatedMs,uint64 cumBusyMs,uint64 cumEnergyMj,uint64 cumAllocatedMs,uint32 maxMemUsedMiB,uint32 sampleCount,bytes32 samplesRoot,uint32 flags,bytes32 configHash)"
    );

    /// @notice Energy may exceed power cap × GPUs × elapsed by this margin (counter granularity, boost).
    uint256 public constant ENERGY_MARGIN_BPS = 500;

    uint256 internal constant _M16 = 0xffff;
    uint256 internal constant _M32 = 0xffffffff;
    uint256 internal constant _M48 = 0xffffffffffff;
    uint256 internal constant _M64 = 0xffffffffffffffff;
    uint256 internal constant _M96 = 0xffffffffffffffffffffffff;
    // No report hash settled yet (a struct hash equal to 1 is infeasible); keeps the slot non-zero.
    bytes32 internal constant _NO_REPORT = bytes32(uint256(1));

    // _ls[id].terms: nodeId[31:0] startS[63:32] durationS[95:64] gpuCount[111:96] mode[115:112] status[119:116]
    //         price[215:120] gpuSetFp[255:216]   (startS = activation unix s, 0 while Open)
    //   gpuSetFp = top 40 bits of keccak256(gpuSetHash): settlement checks a report's gpuSetHash against it
    //   without reading the full hash (_gpuSet, kept for views). Only the node's attestor can sign a report,
    //   so the check guards against an attestor metering the wrong GPUs (a random mismatch passes with
    //   probability 2^-40); forging a different bytes32 with the same fingerprint costs a 2^40 search and
    //   gains nothing (the auditor compares the full hash, `lease(id).gpuSetHash`, off-chain).
    // _ls[id].ckpt:  seq[31:0] cumBusy[79:32] cumAlloc[127:80] cumEnergy[175:128] lastWindowEndMs[223:176]
    //         settledAt[255:224]
    // _nodeCache: attestor[159:0] maxPowerMwPerGpu[191:160]
    /// @dev The settlement hot path of a lease, in consecutive slots (one mapping lookup for all three).
    struct LeaseSlots {
        uint256 terms;
        uint256 ckpt;
        bytes32 lastHash;
    }

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

    struct FeeConfig {
        uint16 baseFeeBps;
        uint16 discountedFeeBps;
        uint16 discountMinScoreBps;
        uint32 discountMinCompleted;
        uint16 slashBps;
        uint32 challengePeriod;
    }

    ICapacityRegistry internal immutable _registry;
    IReputation internal immutable _reputation;

    // NOTE: add state only here, never in LeaseEscrow or LeaseEscrowExtension (the two must keep this one
    // layout; tests/contracts/test_storage_layout.py compares them).
    // Written by LeaseEscrow; LeaseEscrowExtension runs on the same storage by DELEGATECALL (slither sees the
    // extension alone, which never writes them).
    // slither-disable-start uninitialized-state
    mapping(uint256 leaseId => LeaseSlots) internal _ls;
    mapping(uint256 leaseId => bytes32) internal _gpuSet;
    mapping(uint256 leaseId => LeaseInfo) internal _info;
    mapping(uint256 leaseId => LeaseParties) internal _parties;
    mapping(uint256 leaseId => LeaseAccounts) internal _accounts;
    mapping(uint256 leaseId => LeaseMoney) internal _money;
    mapping(uint256 leaseId => uint256) internal _refunded;
    mapping(uint256 nodeId => uint256) internal _nodeCache;
    // slither-disable-end uninitialized-state
    mapping(uint256 offerId => uint256 leaseId) internal _liveLease;
    mapping(address account => mapping(address token => uint256)) internal _withdrawable;
    uint256 internal _leaseCount;
    FeeConfig internal _fees;
    address internal _treasury;

    constructor(ICapacityRegistry registry_, IReputation reputation_) EIP712("ComputeLedger", "1") {
        _registry = registry_;
        _reputation = reputation_;
    }

    /// @dev EIP-712 hashStruct of the MeteringReport a packed report stands for (field order of the type).
    function _packedStructHash(PackedReport calldata p) internal pure returns (bytes32 h) {
        bytes32 typeHash = REPORT_TYPEHASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            let w0 := calldataload(p)
            let w1 := calldataload(add(p, 0x20))
            let w2 := calldataload(add(p, 0x40))
            let m64 := 0xffffffffffffffff
            let m32 := 0xffffffff
            mstore(m, typeHash)
            mstore(add(m, 0x20), shr(192, w0)) // leaseId
            mstore(add(m, 0x40), and(shr(128, w0), m64)) // seq
            mstore(add(m, 0x60), calldataload(add(p, 0x60))) // prevReportHash
            mstore(add(m, 0x80), and(shr(64, w0), m64)) // windowStartMs
            mstore(add(m, 0xa0), and(w0, m64)) // windowEndMs
            mstore(add(m, 0xc0), calldataload(add(p, 0x80))) // gpuSetHash
            mstore(add(m, 0xe0), shr(192, w1)) // busyMs
            mstore(add(m, 0x100), and(shr(128, w1), m64)) // energyMj
            mstore(add(m, 0x120), and(shr(64, w1), m64)) // allocatedMs
            mstore(add(m, 0x140), and(w1, m64)) // cumBusyMs
            mstore(add(m, 0x160), shr(192, w2)) // cumEnergyMj
            mstore(add(m, 0x180), and(shr(128, w2), m64)) // cumAllocatedMs
            mstore(add(m, 0x1a0), and(shr(96, w2), m32)) // maxMemUsedMiB
            mstore(add(m, 0x1c0), and(shr(64, w2), m32)) // sampleCount
            mstore(add(m, 0x1e0), calldataload(add(p, 0xa0))) // samplesRoot
            mstore(add(m, 0x200), and(shr(32, w2), m32)) // flags
            mstore(add(m, 0x220), calldataload(add(p, 0xc0))) // configHash
            h := keccak256(m, 0x240)
        }
    }

    /// @dev Once a finished lease has nothing pending or frozen: treasury gets the fee on what the holder
    /// earned, the buyer the rest of the fee it escrowed.
    function _trySettleFees(uint256 leaseId) internal {
        uint256 terms = _ls[leaseId].terms;
        LeaseStatus st = _status(terms);
        if (st != LeaseStatus.Closed && st != LeaseStatus.Expired && st != LeaseStatus.Exhausted) return;
        LeaseInfo storage info = _info[leaseId];
        if (info.feesSettled) return;
        LeaseMoney memory m = _money[leaseId];
        if (m.frozen != 0 || _charged(terms, _ls[leaseId].ckpt) != _refunded[leaseId] + m.released) return;
        info.feesSettled = true;
        uint256 feeBps = info.feeBps;
        uint256 escrowed = _tPrice(terms) * _tGpus(terms) * _tDuration(terms);
        uint256 held = (escrowed * feeBps) / 10_000;
        uint256 toTreasury = (uint256(m.released) * feeBps) / 10_000;
        address token = _accounts[leaseId].token;
        if (toTreasury != 0) _credit(_treasury, token, toTreasury);
        if (held != toTreasury) _credit(info.buyer, token, held - toTreasury);
        emit FeesSettled(leaseId, toTreasury, held - toTreasury);
    }

    function _charged(uint256 terms, uint256 ck) internal pure returns (uint256) {
        uint256 bill = _tMode(terms) == 0 ? (ck >> 80) & _M48 : (ck >> 32) & _M48;
        return (_tPrice(terms) * bill) / 1000;
    }

    function _credit(address account, address token, uint256 amount) internal {
        _withdrawable[account][token] += amount;
    }

    function _requireStatus(uint256 leaseId, LeaseStatus want) internal view returns (uint256 terms) {
        terms = _ls[leaseId].terms;
        LeaseStatus st = _status(terms);
        if (st != want) {
            if (st == LeaseStatus.None) revert LeaseEscrowUnknownLease(leaseId);
            revert LeaseEscrowBadStatus(leaseId, st);
        }
    }

    function _status(uint256 terms) internal pure returns (LeaseStatus) {
        return LeaseStatus((terms >> 116) & 0xf);
    }

    function _withStatus(uint256 terms, LeaseStatus st) internal pure returns (uint256) {
        return (terms & ~(uint256(0xf) << 116)) | (uint256(uint8(st)) << 116);
    }

    function _tNode(uint256 terms) internal pure returns (uint256) {
        return terms & _M32;
    }

    /// @dev Activation time in unix ms (0 while Open).
    function _tStartMs(uint256 terms) internal pure returns (uint256) {
        return ((terms >> 32) & _M32) * 1000;
    }

    function _tDuration(uint256 terms) internal pure returns (uint256) {
        return (terms >> 64) & _M32;
    }

    function _tGpus(uint256 terms) internal pure returns (uint256) {
        return (terms >> 96) & _M16;
    }

    /// @dev Billing mode: 0 reserved (bills allocated time), 1 metered (bills busy time).
    function _tMode(uint256 terms) internal pure returns (uint256) {
        return (terms >> 112) & 0xf;
    }

    function _tPrice(uint256 terms) internal pure returns (uint256) {
        return (terms >> 120) & _M96;
    }

    /// @dev Top 40 bits of keccak256(gpuSetHash), aligned as stored in the terms ([255:216]).
    function _gpuSetFp(bytes32 gpuSetHash) internal pure returns (uint256 fp) {
        assembly ("memory-safe") {
            mstore(0, gpuSetHash)
            fp := shl(216, shr(216, keccak256(0, 0x20)))
        }
    }

    /// @notice See ILeaseEscrow.
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
