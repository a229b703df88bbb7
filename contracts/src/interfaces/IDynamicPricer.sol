// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC1155Receiver} from "@openzeppelin/contracts/token/ERC1155/IERC1155Receiver.sol";

/// @title IDynamicPricer
/// @notice Dynamic prices: an offer's price follows demand between a floor and a ceiling its provider sets.
/// The provider moves the offer's capacity rights (ERC-1155) here and sets a rule; the pricer is then a rights
/// holder like any reseller, and its registry ask is the rule's price:
///   price = floor + (ceiling - floor) * (locked + burned) / minted   (integer division, rounded down)
/// from CapacityRegistry.rightsOf(offerId): the share of the offer's GPU-seconds taken by leases (running or
/// used). Always within [floor, ceiling]. A lease opened from the pricer (holder = this contract) pays the ask
/// of that moment, fixed in its terms by the escrow. The holder's earnings the escrow releases to the pricer are
/// claimed per lease and owed to the rule's owner (pull payments). See docs/economics.md.
interface IDynamicPricer is IERC1155Receiver {
    /// @notice An offer's pricing rule. floor and ceiling per GPU-second, 0 < floor <= ceiling < 2**96.
    /// @param owner who set it: the offer's provider account or its payout address; paid the earnings
    /// @param floor lowest price per GPU-second
    /// @param ceiling highest price per GPU-second
    struct Rule {
        address owner;
        uint96 floor;
        uint96 ceiling;
    }

    /// @notice A rule was set (or replaced) for an offer.
    event RuleSet(uint256 indexed offerId, address indexed owner, uint256 floor, uint256 ceiling);
    /// @notice A rule ended; `rightsReturned` unlocked GPU-seconds went back to the owner.
    event RuleEnded(uint256 indexed offerId, address indexed owner, uint256 rightsReturned);
    /// @notice Rights of an offer were deposited by its rule's owner.
    event RightsDeposited(uint256 indexed offerId, address indexed owner, uint256 amount);
    /// @notice The pricer's ask for an offer was set by the rule: `taken` of `minted` GPU-seconds leased.
    event Repriced(uint256 indexed offerId, uint256 price, uint256 taken, uint256 minted);
    /// @notice Earnings the escrow released to the pricer for a lease were attributed to the rule's owner.
    event EarningsClaimed(uint256 indexed leaseId, uint256 indexed offerId, address indexed owner, address token, uint256 amount);
    /// @notice The pricer pulled its withdrawable balance from the escrow.
    event EscrowPulled(address indexed token, uint256 amount);
    /// @notice An owner withdrew what it is owed.
    event PricerWithdrawn(address indexed owner, address indexed token, uint256 amount);

    /// @notice floor > ceiling, floor 0, or a bound of 96 bits or more.
    error DynamicPricerBadRule(uint256 floor, uint256 ceiling);
    /// @notice The caller is neither the offer's provider nor its payout address (or not the rule's owner).
    error DynamicPricerNotOwner(uint256 offerId, address caller);
    /// @notice The offer has no rule.
    error DynamicPricerNoRule(uint256 offerId);
    /// @notice Only the registry's rights (single transfers, from the rule's owner) are accepted.
    error DynamicPricerBadDeposit(address from, uint256 id);
    /// @notice The lease is not one of the pricer's, or there is nothing new to claim.
    error DynamicPricerNothingToClaim(uint256 leaseId);
    /// @notice Nothing owed to the caller in that token.
    error DynamicPricerNothingToWithdraw(address owner, address token);
    /// @notice ETH came from someone other than the escrow.
    error DynamicPricerUnexpectedEth(address from);
    /// @notice A zero address was given.
    error DynamicPricerZeroAddress();

    /// @notice Set (or replace) the rule of an offer, then reprice. Caller: the offer's provider or its payout.
    function setRule(uint256 offerId, uint256 floor, uint256 ceiling) external;
    /// @notice End the rule: withdraw the ask and return the pricer's unlocked rights of the offer to the
    /// owner. Callable again (without a rule) to take back rights a lease released later. Owner only.
    function endRule(uint256 offerId) external;
    /// @notice Set the pricer's ask for the offer to the rule's current price. Anyone.
    function reprice(uint256 offerId) external returns (uint256 price);
    /// @notice Attribute the earnings the escrow released to the pricer for a lease to its rule's owner.
    /// Anyone; the lease's state words (ckpt, lastReportHash) as for the escrow's own calls.
    function claim(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external returns (uint256 amount);
    /// @notice Pay the caller what it is owed in `token` (pulling the pricer's escrow balance first if needed).
    function withdraw(address token) external returns (uint256 amount);

    /// @notice The rule of an offer (owner kept after the rule ends, floor and ceiling 0).
    function ruleOf(uint256 offerId) external view returns (Rule memory);
    /// @notice The price the rule gives now (what reprice would set), with the leased and minted GPU-seconds.
    function quote(uint256 offerId) external view returns (uint256 price, uint256 taken, uint256 minted);
    /// @notice The rule's formula: floor + (ceiling - floor) * taken / minted, rounded down, clamped to
    /// [floor, ceiling] (taken above minted counts as minted; minted 0 gives the floor).
    function priceFor(uint256 floor, uint256 ceiling, uint256 taken, uint256 minted) external pure returns (uint256);
    /// @notice What `owner` may withdraw in `token`.
    function owed(address owner, address token) external view returns (uint256);
    /// @notice Σ owed in `token` (the pricer's liabilities).
    function liabilities(address token) external view returns (uint256);
    /// @notice What of a lease's released earnings was already claimed.
    function claimed(uint256 leaseId) external view returns (uint256);
    /// @notice The escrow whose leases pay the pricer.
    function escrow() external view returns (address);
}
