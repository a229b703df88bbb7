// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC1155Receiver} from "@openzeppelin/contracts/token/ERC1155/IERC1155Receiver.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

/// @title Actor
/// @notice A contract account that tests drive: it forwards calls (as buyer, holder or provider) and accepts
/// ERC-1155 rights. Tests only.
abstract contract Actor is IERC1155Receiver {
    error ActorCallFailed(bytes data);

    function execute(address target, bytes calldata data, uint256 value) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) revert ActorCallFailed(ret);
        return ret;
    }

    function onERC1155Received(address, address, uint256, uint256, bytes calldata) external pure returns (bytes4) {
        return IERC1155Receiver.onERC1155Received.selector;
    }

    function onERC1155BatchReceived(address, address, uint256[] calldata, uint256[] calldata, bytes calldata)
        external
        pure
        returns (bytes4)
    {
        return IERC1155Receiver.onERC1155BatchReceived.selector;
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == type(IERC1155Receiver).interfaceId || interfaceId == type(IERC165).interfaceId;
    }
}

/// @title RevertingReceiver
/// @notice Refuses every ETH transfer. Tests only.
contract RevertingReceiver is Actor {
    receive() external payable {
        revert("no ETH");
    }
}

/// @title ReentrantReceiver
/// @notice On receiving ETH, calls back into a target once (e.g. withdraw again) and records the result.
/// Tests only.
contract ReentrantReceiver is Actor {
    address public target;
    bytes public payload;
    bool public armed;
    uint256 public attempts;
    bool public lastReentrySucceeded;
    bytes public lastReentryData;

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
        armed = true;
    }

    receive() external payable {
        if (armed) {
            armed = false;
            attempts += 1;
            (bool ok, bytes memory data) = target.call(payload);
            lastReentrySucceeded = ok;
            lastReentryData = data;
        }
    }
}
