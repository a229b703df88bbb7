// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IReputation} from "./interfaces/IReputation.sol";

/// @title Reputation
/// @notice Beta-model reputation per account. Only the escrow (ESCROW_ROLE) records; anyone reads.
contract Reputation is IReputation, AccessControl {
    bytes32 public constant ESCROW_ROLE = keccak256("ESCROW_ROLE");

    uint64 private constant _FULL = 4; // one full observation in quarter points

    mapping(address account => Counts) private _counts;
    mapping(uint256 leaseId => bool) private _rated;

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @inheritdoc IReputation
    function recordOutcome(address account, Outcome outcome) external onlyRole(ESCROW_ROLE) {
        Counts storage c = _counts[account];
        if (outcome == Outcome.Completed) {
            c.completed += 1;
            c.positive += _FULL;
        } else if (outcome == Outcome.NoShow) {
            c.noShows += 1;
            c.negative += 2 * _FULL;
        } else if (outcome == Outcome.DisputeWon) {
            c.disputesWon += 1;
            c.positive += _FULL;
        } else {
            c.disputesLost += 1;
            c.negative += 2 * _FULL;
        }
        emit OutcomeRecorded(account, outcome, c.positive, c.negative);
    }

    /// @inheritdoc IReputation
    function recordUptime(address account, uint256 attestedMs, uint256 leaseMs) external onlyRole(ESCROW_ROLE) {
        if (leaseMs == 0 || attestedMs > leaseMs) revert ReputationBadUptime(attestedMs, leaseMs);
        Counts storage c = _counts[account];
        c.attestedMs += uint128(attestedMs);
        c.leaseMs += uint128(leaseMs);
        uint64 penalty = uint64((_FULL * (leaseMs - attestedMs)) / leaseMs);
        c.negative += penalty;
        emit UptimeRecorded(account, attestedMs, leaseMs, penalty);
    }

    /// @inheritdoc IReputation
    function recordRating(uint256 leaseId, address rater, address subject, uint8 stars)
        external
        onlyRole(ESCROW_ROLE)
    {
        if (stars < 1 || stars > 5) revert ReputationBadStars(stars);
        if (rater == subject) revert ReputationSelfRating(rater);
        if (_rated[leaseId]) revert ReputationAlreadyRated(leaseId);
        _rated[leaseId] = true;
        Counts storage c = _counts[subject];
        c.ratings += 1;
        c.ratingSum += stars;
        c.positive += stars - 1;
        c.negative += 5 - stars;
        emit Rated(leaseId, rater, subject, stars);
    }

    /// @inheritdoc IReputation
    function scoreOf(address account) public view returns (uint16) {
        Counts storage c = _counts[account];
        uint256 pos = c.positive;
        uint256 neg = c.negative;
        return uint16(((pos + _FULL) * 10_000) / (pos + neg + 2 * _FULL));
    }

    /// @inheritdoc IReputation
    function countsOf(address account) external view returns (Counts memory) {
        return _counts[account];
    }

    /// @inheritdoc IReputation
    function rated(uint256 leaseId) external view returns (bool) {
        return _rated[leaseId];
    }
}
