// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev The escrow's copy of a node's attestor and power cap, packed in one word (`LeaseEscrowBase._nodeCache`):
///   attestor[159:0] | maxPowerMwPerGpu[191:160]
/// The settlement assembly reads it with the same constants.
type NodeCache is uint256;

using NodeCacheLibrary for NodeCache global;

uint256 constant NODE_CACHE_ATTESTOR_MASK = 0x00ffffffffffffffffffffffffffffffffffffffff; // offset 0 (160 bits)
uint256 constant NODE_CACHE_POWER_OFFSET = 160;
uint256 constant NODE_CACHE_POWER_MASK = 0xffffffff;

/// @title NodeCacheLibrary
/// @notice Packs and unpacks `NodeCache` (layout above).
library NodeCacheLibrary {
    function pack(address attestor_, uint32 maxPowerMwPerGpu_) internal pure returns (NodeCache) {
        return NodeCache.wrap(uint256(uint160(attestor_)) | (uint256(maxPowerMwPerGpu_) << NODE_CACHE_POWER_OFFSET));
    }

    function attestor(NodeCache c) internal pure returns (address) {
        return address(uint160(NodeCache.unwrap(c)));
    }

    /// @dev Power cap per GPU in mW.
    function maxPowerMwPerGpu(NodeCache c) internal pure returns (uint256) {
        return (NodeCache.unwrap(c) >> NODE_CACHE_POWER_OFFSET) & NODE_CACHE_POWER_MASK;
    }
}
