// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";
import {IERC1155Receiver} from "@openzeppelin/contracts/token/ERC1155/IERC1155Receiver.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ICapacityRegistry} from "./interfaces/ICapacityRegistry.sol";
import {ILeaseEscrow, ILeaseEscrowTypes} from "./interfaces/ILeaseEscrow.sol";
import {IDynamicPricer} from "./interfaces/IDynamicPricer.sol";

/// @title DynamicPricer
/// @notice Dynamic prices in a contract of their own, on the resale path: the registry and the escrow (both at
/// EIP-170's limit) do not change. The pricer holds an offer's rights and keeps its registry ask equal to the
/// offer's rule; see IDynamicPricer.
/// @dev Every ask this contract sets is priceFor(rule), so it lies in [floor, ceiling] of the rule in force:
/// setRule reprices (or withdraws a stale ask when the pricer holds no rights), endRule withdraws the ask.
/// Money: assets (token balance + escrow.withdrawable(this)) = Σ owed + earnings released, not yet claimed.
contract DynamicPricer is IDynamicPricer, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    ILeaseEscrow private immutable _escrow;
    ICapacityRegistry private immutable _registry;
    IERC1155 private immutable _rights; // the registry's ERC-1155 face

    mapping(uint256 offerId => Rule) private _rules;
    mapping(uint256 leaseId => uint256) private _claimed;
    mapping(address owner => mapping(address token => uint256)) private _owed;
    mapping(address token => uint256) private _liabilities;

    constructor(ILeaseEscrow escrow_) {
        if (address(escrow_) == address(0)) revert DynamicPricerZeroAddress();
        _escrow = escrow_;
        _registry = ICapacityRegistry(escrow_.registry());
        _rights = IERC1155(escrow_.registry());
    }

    /// @dev ETH arrives only from the escrow, when the pricer withdraws the earnings it was credited.
    receive() external payable {
        if (msg.sender != address(_escrow)) revert DynamicPricerUnexpectedEth(msg.sender);
    }

    // --- rules --------------------------------------------------------------------------------------

    /// @inheritdoc IDynamicPricer
    function setRule(uint256 offerId, uint256 floor, uint256 ceiling) external nonReentrant {
        if (floor == 0 || floor > ceiling || ceiling >= 2 ** 96) revert DynamicPricerBadRule(floor, ceiling);
        address owner = _rules[offerId].owner;
        if (owner == address(0)) {
            _requireProviderSide(offerId);
        } else if (owner != msg.sender) {
            revert DynamicPricerNotOwner(offerId, msg.sender);
        }
        _rules[offerId] = Rule({owner: msg.sender, floor: uint96(floor), ceiling: uint96(ceiling)});
        emit RuleSet(offerId, msg.sender, floor, ceiling);
        if (_rights.balanceOf(address(this), offerId) != 0) {
            _reprice(offerId);
        } else if (_registry.askOf(offerId, address(this)) != 0) {
            _registry.listRights(offerId, 0); // a previous rule's ask: never left standing outside this band
        }
    }

    /// @inheritdoc IDynamicPricer
    function endRule(uint256 offerId) external nonReentrant {
        Rule storage r = _rules[offerId];
        if (r.owner != msg.sender) revert DynamicPricerNotOwner(offerId, msg.sender);
        r.floor = 0;
        r.ceiling = 0;
        uint256 held = _rights.balanceOf(address(this), offerId);
        emit RuleEnded(offerId, msg.sender, held);
        if (_registry.askOf(offerId, address(this)) != 0) _registry.listRights(offerId, 0);
        if (held != 0) _rights.safeTransferFrom(address(this), msg.sender, offerId, held, "");
    }

    /// @inheritdoc IDynamicPricer
    function reprice(uint256 offerId) external nonReentrant returns (uint256 price) {
        if (_rules[offerId].floor == 0) revert DynamicPricerNoRule(offerId);
        return _reprice(offerId);
    }

    /// @notice Accepts an offer's rights from its rule's owner (rule set first), then reprices.
    function onERC1155Received(address, address from, uint256 id, uint256 value, bytes calldata)
        external
        returns (bytes4)
    {
        Rule storage r = _rules[id];
        if (msg.sender != address(_registry) || r.floor == 0 || from != r.owner) {
            revert DynamicPricerBadDeposit(from, id);
        }
        emit RightsDeposited(id, from, value);
        _reprice(id);
        return IERC1155Receiver.onERC1155Received.selector;
    }

    /// @notice Batch deposits are refused (one offer, one rule at a time).
    function onERC1155BatchReceived(address, address from, uint256[] calldata ids, uint256[] calldata, bytes calldata)
        external
        pure
        returns (bytes4)
    {
        revert DynamicPricerBadDeposit(from, ids.length == 0 ? 0 : ids[0]);
    }

    // --- money --------------------------------------------------------------------------------------

    /// @inheritdoc IDynamicPricer
    function claim(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external nonReentrant returns (uint256 amount) {
        ILeaseEscrowTypes.LeaseView memory v = _escrow.lease(leaseId);
        address owner = _rules[v.offerId].owner;
        // the lease's money, from its verified state words: `paid` is what the escrow released to the holder
        uint256 paid = _escrow.checkpoint(leaseId, ckpt, lastReportHash).paid;
        if (v.holder != address(this) || owner == address(0) || paid <= _claimed[leaseId]) {
            revert DynamicPricerNothingToClaim(leaseId);
        }
        amount = paid - _claimed[leaseId];
        _claimed[leaseId] = paid;
        _owed[owner][v.token] += amount;
        _liabilities[v.token] += amount;
        emit EarningsClaimed(leaseId, v.offerId, owner, v.token, amount);
    }

    /// @inheritdoc IDynamicPricer
    function withdraw(address token) external nonReentrant returns (uint256 amount) {
        mapping(address => uint256) storage mine = _owed[msg.sender];
        amount = mine[token];
        if (amount == 0) revert DynamicPricerNothingToWithdraw(msg.sender, token);
        delete mine[token];
        _liabilities[token] -= amount;
        emit PricerWithdrawn(msg.sender, token, amount);
        // the earnings may still sit in the escrow (credited to this contract as holder): pull them all first
        if (_escrow.withdrawable(address(this), token) != 0) emit EscrowPulled(token, _escrow.withdraw(token));
        if (token == address(0)) Address.sendValue(payable(msg.sender), amount);
        else IERC20(token).safeTransfer(msg.sender, amount);
    }

    // --- views --------------------------------------------------------------------------------------

    /// @inheritdoc IDynamicPricer
    function ruleOf(uint256 offerId) external view returns (Rule memory) {
        return _rules[offerId];
    }

    /// @inheritdoc IDynamicPricer
    function quote(uint256 offerId) public view returns (uint256 price, uint256 taken, uint256 minted) {
        Rule memory r = _rules[offerId];
        if (r.floor == 0) revert DynamicPricerNoRule(offerId);
        uint256 locked;
        uint256 burned;
        (minted, locked, burned) = _registry.rightsOf(offerId);
        taken = locked + burned;
        price = priceFor(r.floor, r.ceiling, taken, minted);
    }

    /// @inheritdoc IDynamicPricer
    function priceFor(uint256 floor, uint256 ceiling, uint256 taken, uint256 minted) public pure returns (uint256) {
        if (minted == 0 || ceiling <= floor) return floor;
        if (taken > minted) taken = minted;
        uint256 p = floor + ((ceiling - floor) * taken) / minted; // rounded down; (c - f) < 2**96, taken <= minted
        return p > ceiling ? ceiling : p;
    }

    /// @inheritdoc IDynamicPricer
    function owed(address owner, address token) external view returns (uint256) {
        return _owed[owner][token];
    }

    /// @inheritdoc IDynamicPricer
    function liabilities(address token) external view returns (uint256) {
        return _liabilities[token];
    }

    /// @inheritdoc IDynamicPricer
    function claimed(uint256 leaseId) external view returns (uint256) {
        return _claimed[leaseId];
    }

    /// @inheritdoc IDynamicPricer
    function escrow() external view returns (address) {
        return address(_escrow);
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == type(IERC1155Receiver).interfaceId || interfaceId == type(IERC165).interfaceId;
    }

    // --- internal -----------------------------------------------------------------------------------

    function _reprice(uint256 offerId) private returns (uint256 price) {
        uint256 taken;
        uint256 minted;
        (price, taken, minted) = quote(offerId);
        emit Repriced(offerId, price, taken, minted);
        if (_rights.balanceOf(address(this), offerId) != 0) _registry.listRights(offerId, price);
    }

    function _requireProviderSide(uint256 offerId) private view {
        address p = _registry.offer(offerId).provider; // reverts CapacityRegistryUnknownOffer
        if (msg.sender != p && msg.sender != _registry.provider(p).payout) revert DynamicPricerNotOwner(offerId, msg.sender);
    }
}
