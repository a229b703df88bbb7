// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./TestBase.sol";
import {CapacityRegistry} from "../../src/CapacityRegistry.sol";
import {Reputation} from "../../src/Reputation.sol";
import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {LeaseEscrowExtension} from "../../src/LeaseEscrowExtension.sol";
import {ICapacityRegistry} from "../../src/interfaces/ICapacityRegistry.sol";
import {ILeaseEscrow, ILeaseEscrowTypes} from "../../src/interfaces/ILeaseEscrow.sol";
import {MockERC20} from "../../src/test/MockERC20.sol";

/// @notice Deploys the whole suite the way `ledger.deploy.deploy_suite` does (registry, reputation,
/// extension, escrow, roles) plus one provider with two nodes, four offers (ETH and a MockERC20, reserved
/// and metered) and stakes in both tokens. Actors are plain addresses driven with `vm.prank`.
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
    /// [3] token metered (1 GPU).
    uint256[4] internal offers;
    uint256 internal t0;

    function _deploySuite() internal {
        vm.warp(1_800_000_000);
        t0 = block.timestamp;
        attestor = vm.addr(ATTESTOR_PK);
        registry = new CapacityRegistry(admin, 86_400);
        reputation = new Reputation(admin);
        LeaseEscrowExtension ext = new LeaseEscrowExtension(registry, reputation);
        LeaseEscrow e = new LeaseEscrow(admin, registry, reputation, treasury, CHALLENGE_S, FEE_BPS, address(ext));
        escrow = ILeaseEscrow(address(e));
        registry.setEscrow(address(e));
        reputation.grantRole(reputation.ESCROW_ROLE(), address(e));
        e.grantRole(e.ARBITER_ROLE(), arbiter);
        e.grantRole(e.PAUSER_ROLE(), admin);
        token = new MockERC20("USD Coin", "USDC", 6);

        vm.prank(provider);
        registry.registerProvider(provider, "ipfs://provider");
        bytes32[] memory gpusA = new bytes32[](3);
        bytes32[] memory gpusB = new bytes32[](2);
        for (uint256 i; i < 3; ++i) {
            gpusA[i] = keccak256(abi.encodePacked("GPU-aaaa-", i));
        }
        for (uint256 i; i < 2; ++i) {
            gpusB[i] = keccak256(abi.encodePacked("GPU-bbbb-", i));
        }
        vm.startPrank(provider);
        nodeA = registry.registerNode(attestor, "NVIDIA H100", gpusA, 81_559, MAX_POWER_MW, "eu-west1");
        nodeB = registry.registerNode(attestor, "NVIDIA L4", gpusB, 23_034, MAX_POWER_MW, "us-east1");
        uint64 from = uint64(t0);
        uint64 until = uint64(t0 + OFFER_SPAN_S);
        offers[0] = registry.publishOffer(
            nodeA, 0x3, ETH_PRICE, address(0), ICapacityRegistry.BillingMode.Reserved, from, until, 0, bytes32(0)
        );
        offers[1] = registry.publishOffer(
            nodeA, 0x4, ETH_PRICE, address(0), ICapacityRegistry.BillingMode.Metered, from, until, 0, bytes32(0)
        );
        offers[2] = registry.publishOffer(
            nodeB, 0x1, TOKEN_PRICE, address(token), ICapacityRegistry.BillingMode.Reserved, from, until, 0, bytes32(0)
        );
        offers[3] = registry.publishOffer(
            nodeB, 0x2, TOKEN_PRICE, address(token), ICapacityRegistry.BillingMode.Metered, from, until, 0, bytes32(0)
        );
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
        for (uint256 i; i < 4; ++i) {
            uint256 half = registry.balanceOf(provider, offers[i]) / 2;
            vm.prank(provider);
            registry.safeTransferFrom(provider, reseller, offers[i], half, "");
        }
    }

    // --- helpers shared by fuzz tests and the invariant handler ------------------------------------

    function _price(uint256 offerIdx) internal pure returns (uint256) {
        return offerIdx < 2 ? ETH_PRICE : TOKEN_PRICE;
    }

    function _pack(ILeaseEscrowTypes.MeteringReport memory r)
        internal
        pure
        returns (ILeaseEscrowTypes.PackedReport memory p)
    {
        p.w0 = (r.leaseId << 192) | (uint256(r.seq) << 128) | (uint256(r.windowStartMs) << 64) | r.windowEndMs;
        p.w1 = (uint256(r.busyMs) << 192) | (uint256(r.energyMj) << 128) | (uint256(r.allocatedMs) << 64) | r.cumBusyMs;
        p.w2 = (uint256(r.cumEnergyMj) << 192) | (uint256(r.cumAllocatedMs) << 128) | (uint256(r.maxMemUsedMiB) << 96)
            | (uint256(r.sampleCount) << 64) | (uint256(r.flags) << 32);
        p.prevReportHash = r.prevReportHash;
        p.gpuSetHash = r.gpuSetHash;
        p.samplesRoot = r.samplesRoot;
        p.configHash = r.configHash;
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (ILeaseEscrowTypes.Signature memory s) {
        (uint8 v, bytes32 r, bytes32 ss) = vm.sign(pk, digest);
        s = ILeaseEscrowTypes.Signature({r: r, s: ss, v: v});
    }

    /// @dev Pays for and opens a lease as `buyer` (ETH value or minted + approved tokens).
    function _open(address buyer, uint256 offerIdx, address holder, uint32 durationS, uint64 startBy)
        internal
        returns (uint256 leaseId, uint256 total)
    {
        uint256 escrowed = _price(offerIdx) * registry.offer(offers[offerIdx]).gpuCount * durationS;
        total = escrowed + (escrowed * escrow.feeBpsFor(provider)) / 10_000;
        if (offerIdx < 2) {
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

    /// @dev A report for `leaseId` following the given settled state (seq + 1, chained, window from `fromMs`).
    function _report(
        uint256 leaseId,
        uint64 seq,
        bytes32 prev,
        uint64 fromMs,
        uint64 toMs,
        uint64 cumBusy,
        uint64 cumAlloc,
        uint64 cumEnergy
    ) internal view returns (ILeaseEscrowTypes.MeteringReport memory r) {
        r.leaseId = leaseId;
        r.seq = seq;
        r.prevReportHash = prev;
        r.windowStartMs = fromMs;
        r.windowEndMs = toMs;
        r.gpuSetHash = escrow.lease(leaseId).gpuSetHash;
        r.cumBusyMs = cumBusy;
        r.cumAllocatedMs = cumAlloc;
        r.cumEnergyMj = cumEnergy;
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
