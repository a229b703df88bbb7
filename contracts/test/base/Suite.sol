// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase, Vm} from "./TestBase.sol";
import {CapacityRegistry} from "../../src/CapacityRegistry.sol";
import {Reputation} from "../../src/Reputation.sol";
import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {LeaseEscrowExtension} from "../../src/LeaseEscrowExtension.sol";
import {ICapacityRegistry, NODE_FEATURE_GPM} from "../../src/interfaces/ICapacityRegistry.sol";
import {ILeaseEscrow, ILeaseEscrowTypes} from "../../src/interfaces/ILeaseEscrow.sol";
import {MockERC20} from "../../src/test/MockERC20.sol";

/// @notice Deploys the whole suite the way `ledger.chain.deploy.deploy_suite` does (registry, reputation,
/// extension, escrow, roles) plus one provider with two nodes (A with GPM, B without), five offers (ETH and a
/// MockERC20, reserved and metered; ETH SM-active on node A) and stakes in both tokens. Actors are plain addresses driven with `vm.prank`. Settlement
/// helpers build packed entries (ILeaseEscrow.sol's header) from EIP-712-signed reports and track every
/// lease's state (terms, ckpt, lastReportHash) from the settlement events, as ledger.settlement does.
abstract contract Suite is TestBase {
    uint256 internal constant ATTESTOR_PK = 0xA11CE5;
    uint256 internal constant ETH_PRICE = 1e9; // wei per GPU-second
    uint256 internal constant TOKEN_PRICE = 1_000; // token units per GPU-second
    uint32 internal constant MAX_POWER_MW = 700_000;
    uint32 internal constant CHALLENGE_S = 3600;
    uint16 internal constant FEE_BPS = 250;
    uint256 internal constant OFFER_SPAN_S = 30 days;
    uint256 internal constant ETH_STAKE = 10 ether;
    uint256 internal constant TOKEN_STAKE = 1e12;

    CapacityRegistry internal registry;
    Reputation internal reputation;
    ILeaseEscrow internal escrow;
    MockERC20 internal token;

    address internal admin = address(this);
    address internal provider = address(0xB0B);
    address internal reseller = address(0x5E11);
    address internal treasury = address(0x7EA5);
    address internal arbiter = address(0xA4B1);
    address internal stranger = address(0x57A4);
    address internal attestor;
    address[3] internal buyers = [address(0xB001), address(0xB002), address(0xB003)];

    uint256 internal nodeA;
    uint256 internal nodeB;
    /// @dev offers[0] ETH reserved (2 GPUs), [1] ETH metered (1 GPU), [2] token reserved (1 GPU),
    /// [3] token metered (1 GPU), [4] ETH SM-active (1 GPU, node A: GPM).
    uint256 internal constant N_OFFERS = 5;
    uint256[N_OFFERS] internal offers;
    uint256 internal t0;

    function _deploySuite() internal {
        vm.warp(1_800_000_000);
        t0 = block.timestamp;
        attestor = vm.addr(ATTESTOR_PK);
        registry = new CapacityRegistry(admin, 86_400);
        reputation = new Reputation(admin);
        LeaseEscrowExtension extension = new LeaseEscrowExtension(registry, reputation);
        LeaseEscrow e = LeaseEscrow(payable(_newEscrow(address(extension))));
        escrow = ILeaseEscrow(address(e));
        ext = LeaseEscrowExtension(address(e));
        registry.setEscrow(address(e));
        reputation.grantRole(reputation.ESCROW_ROLE(), address(e));
        e.grantRole(e.ARBITER_ROLE(), arbiter);
        e.grantRole(e.PAUSER_ROLE(), admin);
        token = new MockERC20("USD Coin", "USDC", 6);

        vm.prank(provider);
        registry.registerProvider(provider, "ipfs://provider");
        bytes32[] memory gpusA = new bytes32[](4);
        bytes32[] memory gpusB = new bytes32[](2);
        for (uint256 i; i < 4; ++i) {
            gpusA[i] = keccak256(abi.encodePacked("GPU-aaaa-", i));
        }
        for (uint256 i; i < 2; ++i) {
            gpusB[i] = keccak256(abi.encodePacked("GPU-bbbb-", i));
        }
        vm.startPrank(provider);
        nodeA = registry.registerNode(attestor, "NVIDIA H100", gpusA, 81_559, MAX_POWER_MW, "eu-west1", NODE_FEATURE_GPM);
        nodeB = registry.registerNode(attestor, "NVIDIA L4", gpusB, 23_034, MAX_POWER_MW, "us-east1", 0);
        uint64 from = uint64(t0);
        uint64 until = uint64(t0 + OFFER_SPAN_S);
        offers[0] = registry.publishOffer(nodeA, 0x3, ETH_PRICE, address(0), RESERVED, from, until, 0, bytes32(0));
        offers[1] = registry.publishOffer(nodeA, 0x4, ETH_PRICE, address(0), METERED, from, until, 0, bytes32(0));
        offers[2] = registry.publishOffer(nodeB, 0x1, TOKEN_PRICE, address(token), RESERVED, from, until, 0, bytes32(0));
        offers[3] = registry.publishOffer(nodeB, 0x2, TOKEN_PRICE, address(token), METERED, from, until, 0, bytes32(0));
        offers[4] = registry.publishOffer(nodeA, 0x8, ETH_PRICE, address(0), SM_ACTIVE, from, until, 0, bytes32(0));
        vm.stopPrank();

        // Stakes (slashed to buyers on provider fault) and some rights resold to a second holder.
        vm.deal(provider, ETH_STAKE);
        vm.prank(provider);
        registry.stake{value: ETH_STAKE}(address(0), ETH_STAKE);
        token.mint(provider, TOKEN_STAKE);
        vm.prank(provider);
        token.approve(address(registry), TOKEN_STAKE);
        vm.prank(provider);
        registry.stake(address(token), TOKEN_STAKE);
        for (uint256 i; i < N_OFFERS; ++i) {
            uint256 half = registry.balanceOf(provider, offers[i]) / 2;
            vm.prank(provider);
            registry.safeTransferFrom(provider, reseller, offers[i], half, "");
        }
    }

    /// @dev Deploys the escrow under test with the suite's configuration (a test may install a harness that
    /// extends LeaseEscrow instead).
    function _newEscrow(address extension_) internal virtual returns (address) {
        return address(new LeaseEscrow(admin, registry, reputation, treasury, CHALLENGE_S, FEE_BPS, extension_));
    }

    // --- helpers shared by fuzz tests and the invariant handler ------------------------------------

    uint8 internal constant RESERVED = uint8(ICapacityRegistry.BillingMode.Reserved);
    uint8 internal constant METERED = uint8(ICapacityRegistry.BillingMode.Metered);
    uint8 internal constant SM_ACTIVE = uint8(ICapacityRegistry.BillingMode.SmActive);

    /// @dev Whether offer `offerIdx` is paid in ETH (else in the MockERC20).
    function _isEth(uint256 offerIdx) internal pure returns (bool) {
        return offerIdx < 2 || offerIdx == 4;
    }

    function _price(uint256 offerIdx) internal pure returns (uint256) {
        return _isEth(offerIdx) ? ETH_PRICE : TOKEN_PRICE;
    }

    /// @dev Cumulative billable GPU-ms of a checkpoint word under billing mode `mode` (0 allocated, 1 busy,
    /// 2 SM-active), written out from ILeaseEscrow's header.
    function _billable(uint256 mode, uint256 ckpt) internal pure returns (uint256) {
        if (mode == 0) return (ckpt >> 80) & M48;
        if (mode == 1) return (ckpt >> 32) & M48;
        return (ckpt >> 176) & M48;
    }

    /// @dev The ckpt word a settled report must leave (ILeaseEscrow's header): seq | cumBusy << 32 |
    /// cumAlloc << 80 | cumEnergy << 128 | cumSmActive << 176 | settledAt << 224.
    function _ckptOf(ILeaseEscrowTypes.MeteringReport memory r, uint256 settledAt) internal pure returns (uint256) {
        return uint256(r.seq) | (uint256(r.cumBusyMs) << 32) | (uint256(r.cumAllocatedMs) << 80)
            | (uint256(r.cumEnergyMj) << 128) | (uint256(r.cumSmActiveMs) << 176) | (settledAt << 224);
    }

    // --- settlement state, as a client tracks it (ILeaseEscrow.sol's header) ----------------------------

    /// @dev What every settlement entry and every cold call must carry for a lease: `terms` from the
    /// leaseTerms view, `ckpt` and `lastHash` from the lease's last CheckpointsSettled record (before any:
    /// the initial checkpoint of the terms and a zero hash).
    struct LeaseState {
        uint256 leaseId;
        uint256 terms;
        uint256 ckpt;
        bytes32 lastHash;
    }

    /// @dev One 84-byte record of CheckpointsSettled (leaseId u32 | reportHash | ckpt | charged u128).
    struct Record {
        uint256 leaseId;
        bytes32 reportHash;
        uint256 ckpt;
        uint256 charged;
    }

    /// @dev One CheckpointSkipped event of settleBatch.
    struct Skip {
        uint256 leaseId;
        uint64 seq;
        bytes4 reason;
    }

    /// @dev What a settle / settleBatch call did: whether it returned, its return or revert data, the settled
    /// records in order (from CheckpointSettled events and CheckpointsSettled records), its skips, and how
    /// many events of each settlement kind it emitted.
    struct Outcome {
        bool ok;
        bytes ret;
        Record[] records;
        Skip[] skips;
        uint256 singleEvents;
        uint256 batchEvents;
    }

    bytes32 internal constant CHECKPOINTS_SETTLED = keccak256("CheckpointsSettled(bytes)");
    bytes32 internal constant CHECKPOINT_SETTLED = keccak256("CheckpointSettled(uint256,bytes32,uint256,uint256)");
    bytes32 internal constant CHECKPOINT_SKIPPED = keccak256("CheckpointSkipped(uint256,uint64,bytes4)");
    uint256 internal constant M32 = 0xffffffff;
    uint256 internal constant M48 = 0xffffffffffff;

    /// @dev The escrow address typed with the extension's ABI (admin, domainSeparator, typehashes).
    LeaseEscrowExtension internal ext;

    mapping(uint256 leaseId => uint256) private _trackedCkpt;
    mapping(uint256 leaseId => bytes32) private _trackedLast;
    mapping(uint256 leaseId => bool) private _trackedAny;

    error EntryFieldTooWide();
    error MalformedRecords(uint256 length);

    function _termsOf(uint256 leaseId) internal view returns (uint256) {
        uint256[] memory ids = new uint256[](1);
        ids[0] = leaseId;
        (uint256[] memory terms,) = escrow.leaseTerms(ids);
        return terms[0];
    }

    /// @dev The lease's checkpoint before its first settlement: 0 while Open, then every counter 0 and the
    /// challenge clock at activation.
    function _initialCkpt(uint256 terms) internal pure returns (uint256) {
        return ((terms >> 32) & M32) << 224;
    }

    /// @dev The lease's state as tracked from the CheckpointsSettled records this suite saw.
    function _state(uint256 leaseId) internal view returns (LeaseState memory s) {
        s.leaseId = leaseId;
        s.terms = _termsOf(leaseId);
        if (_trackedAny[leaseId]) {
            s.ckpt = _trackedCkpt[leaseId];
            s.lastHash = _trackedLast[leaseId];
        } else {
            s.ckpt = _initialCkpt(s.terms);
        }
    }

    function _commitment(LeaseState memory s) internal pure returns (bytes32) {
        return keccak256(abi.encode(s.terms, s.ckpt, s.lastHash));
    }

    /// @dev checkpoint(id) with the tracked state (reverts LeaseEscrowStaleState if the tracking is wrong).
    function _checkpoint(uint256 leaseId) internal view returns (ILeaseEscrowTypes.CheckpointView memory) {
        LeaseState memory s = _state(leaseId);
        return escrow.checkpoint(leaseId, s.ckpt, s.lastHash);
    }

    // --- reports, signatures, entries --------------------------------------------------------------------

    /// @dev EIP-712 hashStruct of the report's WindowDetail (abi.encode of static words = their concatenation).
    function _windowHash(ILeaseEscrowTypes.MeteringReport memory r) internal view returns (bytes32) {
        return keccak256(
            bytes.concat(
                abi.encode(ext.WINDOW_TYPEHASH(), r.windowStartMs, r.gpuSetHash, r.busyMs, r.smActiveMs),
                abi.encode(r.tensorActiveMs, r.energyMj, r.allocatedMs, r.maxMemUsedMiB, r.sampleCount),
                abi.encode(r.samplesRoot, r.flags, r.configHash)
            )
        );
    }

    /// @dev EIP-712 hashStruct of the (nested) MeteringReport: its link in the hash chain.
    function _structHash(ILeaseEscrowTypes.MeteringReport memory r) internal view returns (bytes32) {
        return keccak256(
            bytes.concat(
                abi.encode(ext.REPORT_TYPEHASH(), r.leaseId, r.seq, r.prevReportHash, r.windowEndMs),
                abi.encode(r.cumBusyMs, r.cumEnergyMj, r.cumAllocatedMs, r.cumSmActiveMs, _windowHash(r))
            )
        );
    }

    function _digest(ILeaseEscrowTypes.MeteringReport memory r) internal view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", ext.domainSeparator(), _structHash(r)));
    }

    /// @dev EIP-2098 compact signature: vs = s | (v - 27) << 255.
    function _signCompact(uint256 pk, bytes32 digest) internal pure returns (bytes32 r, bytes32 vs) {
        (uint8 v, bytes32 rr, bytes32 s) = vm.sign(pk, digest);
        r = rr;
        vs = bytes32(uint256(s) | (uint256(v - 27) << 255));
    }

    /// @dev The packed settlement entry (layout: ILeaseEscrow.sol's header). `withLast` appends the state's
    /// lastHash (flag bit 0); without it the contract takes lastHash = prevReportHash.
    function _encodeEntry(
        ILeaseEscrowTypes.MeteringReport memory r,
        bytes32 sigR,
        bytes32 sigVs,
        LeaseState memory s,
        bool withLast
    ) internal view returns (bytes memory entry) {
        if (
            r.leaseId > M32 || r.seq > M32 || r.windowEndMs > M48 || r.cumBusyMs > M48 || r.cumEnergyMj > M48
                || r.cumAllocatedMs > M48 || r.cumSmActiveMs > M48
        ) revert EntryFieldTooWide();
        bytes memory head = abi.encodePacked(
            uint32(r.leaseId),
            uint32(r.seq),
            uint48(r.windowEndMs),
            uint48(r.cumBusyMs),
            uint48(r.cumEnergyMj),
            uint48(r.cumAllocatedMs),
            uint48(r.cumSmActiveMs),
            uint8(withLast ? 1 : 0)
        );
        entry = abi.encodePacked(head, r.prevReportHash, _windowHash(r), sigR, sigVs, s.terms, s.ckpt);
        if (withLast) entry = abi.encodePacked(entry, s.lastHash);
    }

    /// @dev The entry of `r` signed with `pk` for a lease in state `s`; the lastHash word is appended when it
    /// differs from prevReportHash (as ledger.settlement.encode_entry does) or when `forceLast`.
    function _entry(uint256 pk, ILeaseEscrowTypes.MeteringReport memory r, LeaseState memory s, bool forceLast)
        internal
        view
        returns (bytes memory)
    {
        (bytes32 sigR, bytes32 sigVs) = _signCompact(pk, _digest(r));
        return _encodeEntry(r, sigR, sigVs, s, forceLast || r.prevReportHash != s.lastHash);
    }

    /// @dev Calls settle (or settleBatch) with `entries` as anyone would, records its events and, when it
    /// returned, takes the lease states from its CheckpointsSettled records.
    function _submit(bytes memory entries, bool batch) internal returns (Outcome memory o) {
        vm.recordLogs();
        (o.ok, o.ret) = address(escrow).call(
            batch ? abi.encodeCall(escrow.settleBatch, (entries)) : abi.encodeCall(escrow.settle, (entries))
        );
        Vm.Log[] memory logs = vm.getRecordedLogs();
        if (o.ok) _absorb(logs, o);
    }

    /// @dev Collects the settlement events of one call into `o` and takes each settled lease's new state
    /// (ckpt, lastReportHash) from its record.
    function _absorb(Vm.Log[] memory logs, Outcome memory o) private {
        uint256 nRec;
        uint256 nSkip;
        for (uint256 i; i < logs.length; ++i) {
            bytes32 topic = _topic(logs[i]);
            if (topic == CHECKPOINTS_SETTLED) {
                o.batchEvents++;
                nRec += abi.decode(logs[i].data, (bytes)).length / 84;
            } else if (topic == CHECKPOINT_SETTLED) {
                o.singleEvents++;
                nRec++;
            } else if (topic == CHECKPOINT_SKIPPED) {
                nSkip++;
            }
        }
        o.records = new Record[](nRec);
        o.skips = new Skip[](nSkip);
        nRec = 0;
        nSkip = 0;
        for (uint256 i; i < logs.length; ++i) {
            bytes32 topic = _topic(logs[i]);
            if (topic == CHECKPOINTS_SETTLED) {
                bytes memory recs = abi.decode(logs[i].data, (bytes));
                if (recs.length % 84 != 0) revert MalformedRecords(recs.length);
                for (uint256 off; off < recs.length; off += 84) {
                    o.records[nRec++] = _track(_record(recs, off));
                }
            } else if (topic == CHECKPOINT_SETTLED) {
                (bytes32 h, uint256 ck, uint256 charged) = abi.decode(logs[i].data, (bytes32, uint256, uint256));
                o.records[nRec++] =
                    _track(Record({leaseId: uint256(logs[i].topics[1]), reportHash: h, ckpt: ck, charged: charged}));
            } else if (topic == CHECKPOINT_SKIPPED) {
                (uint64 seq, bytes4 reason) = abi.decode(logs[i].data, (uint64, bytes4));
                o.skips[nSkip++] = Skip({leaseId: uint256(logs[i].topics[1]), seq: seq, reason: reason});
            }
        }
    }

    function _topic(Vm.Log memory log) private view returns (bytes32) {
        if (log.emitter != address(escrow) || log.topics.length == 0) return bytes32(0);
        return log.topics[0];
    }

    function _track(Record memory rec) private returns (Record memory) {
        _trackedCkpt[rec.leaseId] = rec.ckpt;
        _trackedLast[rec.leaseId] = rec.reportHash;
        _trackedAny[rec.leaseId] = true;
        return rec;
    }

    function _record(bytes memory recs, uint256 off) private pure returns (Record memory rec) {
        uint256 id;
        bytes32 h;
        uint256 ck;
        uint256 charged;
        assembly ("memory-safe") {
            let p := add(add(recs, 0x20), off)
            id := shr(224, mload(p))
            h := mload(add(p, 4))
            ck := mload(add(p, 36))
            charged := shr(128, mload(add(p, 68)))
        }
        rec = Record({leaseId: id, reportHash: h, ckpt: ck, charged: charged});
    }

    /// @dev Pays for and opens a lease as `buyer` (ETH value or minted + approved tokens).
    function _open(address buyer, uint256 offerIdx, address holder, uint32 durationS, uint64 startBy)
        internal
        returns (uint256 leaseId, uint256 total)
    {
        uint256 escrowed = _price(offerIdx) * registry.offer(offers[offerIdx]).gpuCount * durationS;
        total = escrowed + (escrowed * escrow.feeBpsFor(provider)) / 10_000;
        if (_isEth(offerIdx)) {
            vm.deal(buyer, buyer.balance + total);
            vm.prank(buyer);
            leaseId = escrow.openLease{value: total}(offers[offerIdx], holder, durationS, startBy, total);
        } else {
            token.mint(buyer, total);
            vm.prank(buyer);
            token.approve(address(escrow), total);
            vm.prank(buyer);
            leaseId = escrow.openLease(offers[offerIdx], holder, durationS, startBy, total);
        }
    }

    /// @dev Cumulative counters of a report: busy, allocated, energy, SM-active.
    struct Cum {
        uint64 busy;
        uint64 alloc;
        uint64 energy;
        uint64 sm;
    }

    /// @dev A report for `leaseId` (window (`fromMs`, `toMs`], cumulative counters `c`; the window's own figures
    /// are left to the caller: the escrow only sees their hash).
    function _report(uint256 leaseId, uint64 seq, bytes32 prev, uint64 fromMs, uint64 toMs, Cum memory c)
        internal
        view
        returns (ILeaseEscrowTypes.MeteringReport memory r)
    {
        r.leaseId = leaseId;
        r.seq = seq;
        r.prevReportHash = prev;
        r.windowStartMs = fromMs;
        r.windowEndMs = toMs;
        r.gpuSetHash = escrow.lease(leaseId).gpuSetHash;
        r.cumBusyMs = c.busy;
        r.cumAllocatedMs = c.alloc;
        r.cumEnergyMj = c.energy;
        r.cumSmActiveMs = c.sm;
        r.maxMemUsedMiB = 1024;
        r.sampleCount = 60;
        r.samplesRoot = keccak256("samples");
        r.configHash = keccak256("config");
    }

    /// @dev Energy bound the escrow enforces for `capMs` GPU-ms (power cap × time, +5% margin), in mJ.
    function _energyCap(uint256 capMs) internal pure returns (uint256) {
        return (uint256(MAX_POWER_MW) * capMs * 10_500) / 10_000_000;
    }

    function _selector(bytes memory revertData) internal pure returns (bytes4 sel) {
        if (revertData.length < 4) return bytes4(0);
        assembly ("memory-safe") {
            sel := mload(add(revertData, 0x20))
        }
    }
}
