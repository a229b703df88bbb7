// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev Node feature bits (`Node.features`, `registerNode`): bit 0, GPM: the node's GPUs measure SM activity
/// (NVIDIA GPM, Hopper and later), which an offer billing SM-active time (BillingMode.SmActive) needs. No other
/// bit is defined; registerNode refuses them.
uint8 constant NODE_FEATURE_GPM = 1;
uint8 constant NODE_FEATURES_KNOWN = NODE_FEATURE_GPM;

/// @title ICapacityRegistry
/// @notice Providers, their GPU nodes, their stakes, and offers that mint ERC-1155 capacity rights.
/// @dev Token convention: `address(0)` is ETH, anything else an ERC-20. Capacity rights: token id = offer id,
/// one unit = one GPU-second of the offer's GPUs inside its validity window. Invariant per offer:
/// minted = held by accounts + locked by leases + burned.
interface ICapacityRegistry {
    /// @notice Billing mode of an offer.
    enum BillingMode {
        Reserved, // allocated GPU time is billed
        Metered, // attested busy GPU time is billed
        SmActive // attested SM-active GPU time is billed (GPM: pay for the compute used); needs NODE_FEATURE_GPM
    }

    /// @notice A registered provider.
    /// @param payout address that receives capacity rights (and therefore, by default, lease earnings)
    /// @param registered true once registered
    /// @param lockedRights GPU-seconds of this provider's offers currently locked by leases
    struct Provider {
        address payout;
        bool registered;
        uint256 lockedRights;
    }

    /// @notice A GPU node.
    /// @param provider the provider account that registered the node
    /// @param attestor the key that signs the node's metering reports
    /// @param gpuModel model name, right-padded bytes32 (e.g. "NVIDIA H100 80GB HBM3")
    /// @param gpuCount number of GPUs registered
    /// @param vramMiB framebuffer per GPU (MiB)
    /// @param maxPowerMwPerGpu power cap per GPU (milliwatts), bounds attested energy
    /// @param region region code, e.g. "eu-west1" as bytes8
    /// @param active false after deactivation
    /// @param features feature bits (NODE_FEATURE_GPM), fixed at registration
    struct Node {
        address provider;
        address attestor;
        bytes32 gpuModel;
        uint16 gpuCount;
        uint32 vramMiB;
        uint32 maxPowerMwPerGpu;
        bytes8 region;
        bool active;
        uint8 features;
    }

    /// @notice An offer: what a lease on it buys.
    /// @param provider provider account
    /// @param nodeId node whose GPUs are offered
    /// @param gpuMask bitmask of the node's GPUs (bit i = GPU i of the node's registered list)
    /// @param gpuCount number of bits set in gpuMask
    /// @param pricePerGpuSecond price in the token's smallest unit per GPU-second
    /// @param token payment token, address(0) for ETH
    /// @param billingMode Reserved, Metered or SmActive
    /// @param validFrom unix seconds, first second a lease may run
    /// @param validUntil unix seconds, a lease must end by then
    /// @param minBuyerScoreBps minimum Reputation score of a buyer, basis points
    /// @param gpuSetHash keccak256 of the sorted keccak(GPU UUID) of the offered GPUs
    /// @param termsHash hash of the off-chain terms document
    struct Offer {
        address provider;
        uint64 nodeId;
        uint256 gpuMask;
        uint16 gpuCount;
        uint128 pricePerGpuSecond;
        address token;
        BillingMode billingMode;
        uint40 validFrom;
        uint40 validUntil;
        uint16 minBuyerScoreBps;
        bytes32 gpuSetHash;
        bytes32 termsHash;
    }

    /// @notice Stake of a provider in one token.
    /// @param bonded slashable stake
    /// @param unbonding stake waiting for its delay (still slashable)
    /// @param unbondingEnds unix seconds when `unbonding` may be withdrawn
    struct Stake {
        uint256 bonded;
        uint256 unbonding;
        uint64 unbondingEnds;
    }

    // --- errors -------------------------------------------------------------------------------------

    /// @notice The caller is already a registered provider.
    error CapacityRegistryAlreadyRegistered(address provider);
    /// @notice The account is not a registered provider.
    error CapacityRegistryNotProvider(address account);
    /// @notice An address argument must not be zero.
    error CapacityRegistryZeroAddress();
    /// @notice The node does not exist.
    error CapacityRegistryUnknownNode(uint256 nodeId);
    /// @notice The caller is not the provider of the node.
    error CapacityRegistryNotNodeOwner(uint256 nodeId, address caller);
    /// @notice The node is deactivated.
    error CapacityRegistryNodeInactive(uint256 nodeId);
    /// @notice A node needs between 1 and 256 GPUs.
    error CapacityRegistryBadGpuCount(uint256 gpuCount);
    /// @notice This GPU (keccak of its UUID) is registered on a node that is active or still has leased rights.
    error CapacityRegistryGpuAlreadyRegistered(bytes32 gpuUuidHash, uint256 nodeId);
    /// @notice A node field is out of range (zero VRAM or power).
    error CapacityRegistryBadNodeSpec();
    /// @notice registerNode was given feature bits this registry does not define (only NODE_FEATURE_GPM is).
    error CapacityRegistryUnknownFeatures(uint8 features);
    /// @notice The offer's billing mode needs a feature the node was not registered with (SmActive: GPM).
    error CapacityRegistryNodeLacksFeature(uint256 nodeId, uint8 feature);
    /// @notice The billing mode is not one of BillingMode's (0 reserved, 1 metered, 2 SM-active).
    error CapacityRegistryBadBillingMode(uint256 billingMode);
    /// @notice The GPU mask is empty or names GPUs the node does not have.
    error CapacityRegistryBadGpuMask(uint256 gpuMask, uint256 gpuCount);
    /// @notice Price must be positive and fit 96 bits.
    error CapacityRegistryBadPrice(uint256 price);
    /// @notice A used tier needs a positive price, and the high tier a longer minimum duration than the low one.
    error CapacityRegistryBadTiers(uint256 tiers);
    /// @notice Validity window is empty, already over, or too long.
    error CapacityRegistryBadWindow(uint256 validFrom, uint256 validUntil);
    /// @notice Minimum buyer score above 10000 bps.
    error CapacityRegistryBadMinScore(uint256 minBuyerScoreBps);
    /// @notice A GPU of the mask is already offered until `bookedUntil`; offers on one GPU may not overlap.
    error CapacityRegistryGpuAlreadyOffered(uint256 gpuIndex, uint256 bookedUntil);
    /// @notice The offer does not exist.
    error CapacityRegistryUnknownOffer(uint256 offerId);
    /// @notice The holder has fewer unlocked rights than requested.
    error CapacityRegistryInsufficientRights(address holder, uint256 offerId, uint256 needed, uint256 available);
    /// @notice More locked rights were to be released or burned than are locked.
    error CapacityRegistryInsufficientLocked(uint256 offerId, uint256 needed, uint256 locked);
    /// @notice msg.value does not match the ETH amount (or is non-zero for an ERC-20).
    error CapacityRegistryWrongValue(uint256 expected, uint256 received);
    /// @notice Fewer tokens arrived than were sent: fee-on-transfer tokens are not supported.
    error CapacityRegistryFeeOnTransferToken(address token, uint256 expected, uint256 received);
    /// @notice Amount must be positive.
    error CapacityRegistryZeroAmount();
    /// @notice Not enough bonded stake to start unbonding `amount`.
    error CapacityRegistryInsufficientStake(address provider, address token, uint256 needed, uint256 available);
    /// @notice The unbonding delay has not passed yet.
    error CapacityRegistryStillUnbonding(address provider, address token, uint256 unbondingEnds);
    /// @notice Stake cannot be withdrawn while the provider has rights locked by leases.
    error CapacityRegistryOpenLeases(address provider, uint256 lockedRights);
    /// @notice Nothing is unbonding for this provider and token.
    error CapacityRegistryNothingToWithdraw(address provider, address token);
    /// @notice An ETH transfer failed.
    error CapacityRegistryTransferFailed(address to, uint256 amount);

    // --- events -------------------------------------------------------------------------------------

    /// @notice A provider registered.
    /// @param provider provider account
    /// @param payout payout address
    /// @param metadataURI off-chain metadata
    event ProviderRegistered(address indexed provider, address payout, string metadataURI);
    /// @notice A provider changed its payout address or metadata.
    /// @param provider provider account
    /// @param payout new payout address
    /// @param metadataURI new metadata
    event ProviderUpdated(address indexed provider, address payout, string metadataURI);
    /// @notice Stake was added.
    /// @param provider provider account
    /// @param token token (address(0) for ETH)
    /// @param amount amount added
    /// @param bonded bonded stake after
    event Staked(address indexed provider, address indexed token, uint256 amount, uint256 bonded);
    /// @notice Unbonding started.
    /// @param provider provider account
    /// @param token token
    /// @param amount amount moved from bonded to unbonding
    /// @param unbondingEnds when it may be withdrawn
    event UnstakeRequested(address indexed provider, address indexed token, uint256 amount, uint64 unbondingEnds);
    /// @notice Unbonded stake was paid out.
    /// @param provider provider account
    /// @param token token
    /// @param amount amount paid
    event StakeWithdrawn(address indexed provider, address indexed token, uint256 amount);
    /// @notice Stake was slashed.
    /// @param provider provider account
    /// @param token token
    /// @param amount amount taken
    /// @param to recipient: the caller of `slash` (the escrow, which credits the buyer)
    event Slashed(address indexed provider, address indexed token, uint256 amount, address to);
    /// @notice A node registered.
    /// @param nodeId new node id
    /// @param provider provider account
    /// @param attestor attestor key
    /// @param gpuModel model
    /// @param gpuUuidHashes keccak(GPU UUID) of each GPU, index = GPU index
    /// @param vramMiB VRAM per GPU
    /// @param maxPowerMwPerGpu power cap per GPU
    /// @param region region code
    /// @param features feature bits (NODE_FEATURE_GPM)
    event NodeRegistered(
        uint256 indexed nodeId,
        address indexed provider,
        address attestor,
        bytes32 gpuModel,
        bytes32[] gpuUuidHashes,
        uint32 vramMiB,
        uint32 maxPowerMwPerGpu,
        bytes8 region,
        uint8 features
    );
    /// @notice A node's attestor key was rotated.
    /// @param nodeId node
    /// @param oldAttestor previous key
    /// @param newAttestor new key
    event AttestorRotated(uint256 indexed nodeId, address oldAttestor, address newAttestor);
    /// @notice A node was deactivated: no new offers or leases on it; its GPUs may be registered on another
    /// node once no lease holds rights on this one.
    /// @param nodeId node
    event NodeDeactivated(uint256 indexed nodeId);
    /// @notice An offer was published and its rights minted.
    /// @param offerId offer id = ERC-1155 token id
    /// @param provider provider account
    /// @param nodeId node
    /// @param offer the full offer
    /// @param rightsMinted GPU-seconds minted to the provider's payout address
    event OfferPublished(uint256 indexed offerId, address indexed provider, uint256 indexed nodeId, Offer offer, uint256 rightsMinted);
    /// @notice Rights were locked by a lease.
    /// @param holder holder the rights were taken from
    /// @param offerId offer
    /// @param amount GPU-seconds
    event RightsLocked(address indexed holder, uint256 indexed offerId, uint256 amount);
    /// @notice Locked rights were returned to a holder.
    /// @param holder holder
    /// @param offerId offer
    /// @param amount GPU-seconds
    event RightsReleased(address indexed holder, uint256 indexed offerId, uint256 amount);
    /// @notice Locked rights were burned (used).
    /// @param offerId offer
    /// @param amount GPU-seconds
    event RightsBurned(uint256 indexed offerId, uint256 amount);
    /// @notice A holder set (or, with price 0, withdrew) its ask for leases that lock its rights of an offer.
    /// @param holder the rights holder
    /// @param offerId offer
    /// @param pricePerGpuSecond the ask (0: none, leases pay the offer's price)
    event RightsListed(address indexed holder, uint256 indexed offerId, uint256 pricePerGpuSecond);
    /// @notice The offer's provider set its price tiers by committed duration (0: none).
    /// @param offerId offer
    /// @param tiers two tiers of 128 bits, each minDurationS << 96 | pricePerGpuSecond (see setTiers)
    event TiersSet(uint256 indexed offerId, uint256 tiers);
    /// @notice The escrow that may lock rights and slash stakes was set.
    /// @param escrow escrow contract
    event EscrowSet(address escrow);
    /// @notice The unbonding delay changed.
    /// @param delaySeconds new delay
    event UnbondingDelaySet(uint64 delaySeconds);

    // --- providers and stake ------------------------------------------------------------------------

    /// @notice Register the caller as a provider.
    /// @param payout receives minted capacity rights (non-zero)
    /// @param metadataURI off-chain description
    function registerProvider(address payout, string calldata metadataURI) external;

    /// @notice Change payout address and metadata (rights already minted stay where they are).
    function updateProvider(address payout, string calldata metadataURI) external;

    /// @notice Add stake (send ETH with token = address(0); otherwise the registry pulls the ERC-20).
    function stake(address token, uint256 amount) external payable;

    /// @notice Move `amount` of bonded stake to unbonding; the delay restarts for the whole unbonding amount.
    function requestUnstake(address token, uint256 amount) external;

    /// @notice Withdraw the unbonding stake after the delay, only while no lease holds the provider's rights.
    function withdrawStake(address token) external;

    /// @notice Take up to `amount` from a provider's stake (bonded first, then unbonding) and pay it to the
    /// caller (the escrow, which credits the buyer). Only ESCROW_ROLE.
    /// @return taken the amount actually taken (capped by the stake)
    function slash(address provider, address token, uint256 amount) external returns (uint256 taken);

    // --- nodes --------------------------------------------------------------------------------------

    /// @notice Register a GPU node of the caller (a registered provider).
    /// @param features feature bits of the node's GPUs (NODE_FEATURE_GPM: they measure SM activity); any other
    /// bit reverts CapacityRegistryUnknownFeatures. Fixed for the node's life.
    /// @return nodeId the new node's id (ids start at 1)
    function registerNode(
        address attestor,
        bytes32 gpuModel,
        bytes32[] calldata gpuUuidHashes,
        uint32 vramMiB,
        uint32 maxPowerMwPerGpu,
        bytes8 region,
        uint8 features
    ) external returns (uint256 nodeId);

    /// @notice Replace a node's attestor key; the escrow's copy is updated in the same transaction.
    function rotateAttestor(uint256 nodeId, address newAttestor) external;

    /// @notice Deactivate a node: no new offers or leases; running leases continue.
    function deactivateNode(uint256 nodeId) external;

    // --- offers and rights --------------------------------------------------------------------------

    /// @notice Publish an offer and mint gpuCount × (validUntil − validFrom) rights to the payout address.
    /// @param billingMode a BillingMode (0 reserved, 1 metered, 2 SM-active), as uint8 so that anything else
    /// reverts with CapacityRegistryBadBillingMode; SmActive needs a node with NODE_FEATURE_GPM
    /// (CapacityRegistryNodeLacksFeature otherwise)
    /// @return offerId the new offer id (ids start at 1)
    function publishOffer(
        uint256 nodeId,
        uint256 gpuMask,
        uint256 pricePerGpuSecond,
        address token,
        uint8 billingMode,
        uint64 validFrom,
        uint64 validUntil,
        uint16 minBuyerScoreBps,
        bytes32 termsHash
    ) external returns (uint256 offerId);

    /// @notice Lock `amount` rights of `holder` for a lease. Only ESCROW_ROLE.
    function lockRights(address holder, uint256 offerId, uint256 amount) external;

    /// @notice Return `amount` locked rights to `holder`. Only ESCROW_ROLE.
    function releaseRights(address holder, uint256 offerId, uint256 amount) external;

    /// @notice Burn `amount` locked rights (capacity used). Only ESCROW_ROLE.
    function burnLocked(uint256 offerId, uint256 amount) external;

    /// @notice Resale: the caller (a holder of the offer's rights) sets the price per GPU-second a lease that
    /// locks its rights pays it (positive, below 2^96; it must hold some of the rights), or withdraws its ask with 0. The lease's price is fixed at
    /// opening; rights locked by a lease cannot be leased again (lockRights moves them out of the holder's balance).
    /// @param offerId offer
    /// @param pricePerGpuSecond the ask, or 0
    function listRights(uint256 offerId, uint256 pricePerGpuSecond) external;

    /// @notice A holder's ask for an offer's rights (0: none).
    /// @param offerId offer
    /// @param holder the rights holder
    /// @return the price per GPU-second
    function askOf(uint256 offerId, address holder) external view returns (uint256);

    /// @notice Tiered prices: the offer's provider sets the price per GPU-second of leases committing to at least
    /// a duration, in two tiers of 128 bits: tiers = high << 128 | low, each minDurationS << 96 | price (0:
    /// unused; the high tier's minimum duration above the low one's; 0 clears both). A lease's price is fixed
    /// at opening; tiers set later change only later leases.
    /// @param offerId offer
    /// @param tiers the two tiers
    function setTiers(uint256 offerId, uint256 tiers) external;

    /// @notice The offer as a lease of `durationS` locking `holder`'s rights sees it: its price is the holder's
    /// resale ask when it set one, else the price of the offer's last tier whose minimum duration `durationS`
    /// reaches, else the offer's price. `openLease` escrows it and fixes it in the lease's terms; anyone reads
    /// it before opening.
    /// @param offerId offer
    /// @param holder the rights holder
    /// @param durationS the lease's committed duration
    /// @return the offer, priced for that lease
    function offerFor(uint256 offerId, address holder, uint256 durationS) external view returns (Offer memory);

    // --- views --------------------------------------------------------------------------------------

    function provider(address account) external view returns (Provider memory);
    function metadataURI(address account) external view returns (string memory);
    function node(uint256 nodeId) external view returns (Node memory);
    function nodeGpus(uint256 nodeId) external view returns (bytes32[] memory);
    /// @notice Attestor and power cap of a node (what the escrow caches).
    function nodeAttestor(uint256 nodeId) external view returns (address attestor, uint32 maxPowerMwPerGpu, bool active);
    function offer(uint256 offerId) external view returns (Offer memory);
    function stakeOf(address provider, address token) external view returns (Stake memory);
    /// @notice Rights accounting of an offer: minted = held + locked + burned.
    function rightsOf(uint256 offerId) external view returns (uint256 minted, uint256 locked, uint256 burned);
    function nodeCount() external view returns (uint256);
    function offerCount() external view returns (uint256);
    function escrow() external view returns (address);
    function unbondingDelay() external view returns (uint64);
}
