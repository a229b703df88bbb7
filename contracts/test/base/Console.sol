// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The two console.log signatures these tests use (forge prints them with -vv); forge-std's
/// console library cannot be installed offline.
library console {
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function log(string memory label, uint256 value) internal view {
        _send(abi.encodeWithSignature("log(string,uint256)", label, value));
    }

    function log(string memory message) internal view {
        _send(abi.encodeWithSignature("log(string)", message));
    }

    function _send(bytes memory payload) private view {
        address target = CONSOLE;
        assembly ("memory-safe") {
            pop(staticcall(gas(), target, add(payload, 0x20), mload(payload), 0, 0))
        }
    }
}
