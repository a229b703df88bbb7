// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IReputation
/// @notice Per-account reputation from outcomes the escrow records and from buyers' ratings.
/// @dev Weights are kept in quarter points (4 = one full observation):
///  - Completed lease: +4 positive; NoShow (lease expired, provider never started): +8 negative;
///  - DisputeWon: +4 positive; DisputeLost: +8 negative;
///  - rating of s stars (1..5): +(s − 1) positive and +(5 − s) negative (5 stars = one full positive);
///  - uptime: a lease whose attested GPU time covers only part of its lease time adds
///    4 × (leaseMs − attestedMs) / leaseMs negative (rounded down).
/// Score = Beta(1,1) expected value in basis points: (positive + 4) × 10000 / (positive + negative + 8).
/// A fresh account scores 5000.
interface IReputation {
    /// @notice Outcomes the escrow records.
    enum Outcome {
        Completed,
        NoShow,
        DisputeWon,
        DisputeLost
    }

    /// @notice Everything the score is computed from.
    /// @param completed completed leases (as provider)
    /// @param noShows leases that expired because the provider never started them
    /// @param disputesWon disputes won
    /// @param disputesLost disputes lost
    /// @param ratings number of ratings received
    /// @param ratingSum sum of stars received
    /// @param attestedMs Σ attested GPU time over recorded leases (GPU-ms)
    /// @param leaseMs Σ leased GPU time over recorded leases (GPU-ms)
    /// @param positive positive weight, quarter points
    /// @param negative negative weight, quarter points
    struct Counts {
        uint32 completed;
        uint32 noShows;
        uint32 disputesWon;
        uint32 disputesLost;
        uint32 ratings;
        uint32 ratingSum;
        uint128 attestedMs;
        uint128 leaseMs;
        uint64 positive;
        uint64 negative;
    }

    /// @notice Stars outside 1..5.
    error ReputationBadStars(uint8 stars);
    /// @notice An account cannot rate itself.
    error ReputationSelfRating(address account);
    /// @notice The lease was already rated.
    error ReputationAlreadyRated(uint256 leaseId);
    /// @notice Uptime with attested time above lease time or zero lease time.
    error ReputationBadUptime(uint256 attestedMs, uint256 leaseMs);

    /// @notice An outcome was recorded.
    /// @param account subject
    /// @param outcome what happened
    /// @param positive positive weight after
    /// @param negative negative weight after
    event OutcomeRecorded(address indexed account, Outcome outcome, uint64 positive, uint64 negative);
    /// @notice Attested uptime was recorded.
    /// @param account provider
    /// @param attestedMs attested GPU time (GPU-ms)
    /// @param leaseMs leased GPU time (GPU-ms)
    /// @param penalty negative weight added (quarter points)
    event UptimeRecorded(address indexed account, uint256 attestedMs, uint256 leaseMs, uint64 penalty);
    /// @notice A buyer rated a provider for a lease.
    /// @param leaseId lease
    /// @param rater buyer
    /// @param subject provider
    /// @param stars 1..5
    event Rated(uint256 indexed leaseId, address indexed rater, address indexed subject, uint8 stars);

    /// @notice Record an outcome. Only ESCROW_ROLE.
    function recordOutcome(address account, Outcome outcome) external;
    /// @notice Record attested vs leased GPU time of a finished lease. Only ESCROW_ROLE.
    function recordUptime(address account, uint256 attestedMs, uint256 leaseMs) external;
    /// @notice Record a rating. Only ESCROW_ROLE (the escrow checks the lease and its buyer).
    function recordRating(uint256 leaseId, address rater, address subject, uint8 stars) external;
    /// @notice Beta-model score in basis points (0..10000).
    function scoreOf(address account) external view returns (uint16);
    /// @notice Counts behind the score.
    function countsOf(address account) external view returns (Counts memory);
    /// @notice Whether a lease has been rated.
    function rated(uint256 leaseId) external view returns (bool);
}
