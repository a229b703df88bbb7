// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ICapacityRegistry, NODE_FEATURE_GPM, NODE_FEATURES_KNOWN} from "./interfaces/ICapacityRegistry.sol";
import {ILeaseEscrow} from "./interfaces/ILeaseEscrow.sol";

/// @title CapacityRegistry
/// @notice Providers, GPU nodes, stakes and offers. Publishing an offer mints ERC-1155 capacity rights
/// (id = offer id, amount = GPU-seconds); the escrow locks, releases and burns them for leases.
/// @dev Limits: fee-on-transfer stake tokens are rejected (balance checked before/after). Offers on one GPU
/// never overlap in time, so rights of different offers never describe the same GPU-second. Locked rights
/// are held by this contract; releasing them back skips the ERC-1155 receiver hook on purpose, so a holder
/// contract can never block a lease from closing.
contract CapacityRegistry is ICapacityRegistry, ERC1155, AccessControl, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant ESCROW_ROLE = keccak256("ESCROW_ROLE");

    uint256 private constant _MAX_WINDOW_S = 366 days * 5;

    mapping(address account => Provider) private _providers;
    mapping(address account => string) private _metadata;
    mapping(uint256 nodeId => Node) private _nodes;
    mapping(uint256 nodeId => bytes32[]) private _nodeGpus;
    mapping(bytes32 gpuUuidHash => uint256 nodeId) private _gpuNode;
    mapping(uint256 nodeId => mapping(uint256 gpuIndex => uint64 bookedUntil)) private _gpuBookedUntil;
    mapping(uint256 offerId => Offer) private _offers;
    mapping(uint256 offerId => uint256) private _minted;
    mapping(uint256 offerId => uint256) private _burned;
    mapping(uint256 nodeId => uint256) private _nodeLocked;
    mapping(address providerAccount => mapping(address token => Stake)) private _stakes;
    uint256 private _nodeCount;
    uint256 private _offerCount;
    address private _escrow;
    uint64 private _unbondingDelay;
    mapping(uint256 offerId => mapping(address holder => uint256 price)) private _asks;
    mapping(uint256 offerId => uint256 tiers) private _tiers;

    constructor(address admin, uint64 unbondingDelaySeconds) ERC1155("") {
        if (admin == address(0)) revert CapacityRegistryZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _unbondingDelay = unbondingDelaySeconds;
        emit UnbondingDelaySet(unbondingDelaySeconds);
    }

    // --- admin --------------------------------------------------------------------------------------

    /// @notice Set the escrow (granted ESCROW_ROLE; receives attestor rotations). Admin only.
    function setEscrow(address escrow_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (escrow_ == address(0)) revert CapacityRegistryZeroAddress();
        if (_escrow != address(0)) _revokeRole(ESCROW_ROLE, _escrow);
        _escrow = escrow_;
        _grantRole(ESCROW_ROLE, escrow_);
        emit EscrowSet(escrow_);
    }

    /// @notice Change the unbonding delay (applies to future requests). Admin only.
    function setUnbondingDelay(uint64 delaySeconds) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unbondingDelay = delaySeconds;
        emit UnbondingDelaySet(delaySeconds);
    }

    // --- providers and stake ------------------------------------------------------------------------

    /// @inheritdoc ICapacityRegistry
    function registerProvider(address payout, string calldata metadataURI_) external {
        if (_providers[msg.sender].registered) revert CapacityRegistryAlreadyRegistered(msg.sender);
        if (payout == address(0)) revert CapacityRegistryZeroAddress();
        _providers[msg.sender] = Provider({payout: payout, registered: true, lockedRights: 0});
        _metadata[msg.sender] = metadataURI_;
        emit ProviderRegistered(msg.sender, payout, metadataURI_);
    }

    /// @inheritdoc ICapacityRegistry
    function updateProvider(address payout, string calldata metadataURI_) external {
        Provider storage p = _requireProvider(msg.sender);
        if (payout == address(0)) revert CapacityRegistryZeroAddress();
        p.payout = payout;
        _metadata[msg.sender] = metadataURI_;
        emit ProviderUpdated(msg.sender, payout, metadataURI_);
    }

    /// @inheritdoc ICapacityRegistry
    function stake(address token, uint256 amount) external payable nonReentrant {
        _requireProvider(msg.sender);
        if (amount == 0) revert CapacityRegistryZeroAmount();
        if (token == address(0)) {
            if (msg.value != amount) revert CapacityRegistryWrongValue(amount, msg.value);
        } else {
            if (msg.value != 0) revert CapacityRegistryWrongValue(0, msg.value);
            uint256 before = IERC20(token).balanceOf(address(this));
            IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
            uint256 received = IERC20(token).balanceOf(address(this)) - before;
            if (received != amount) revert CapacityRegistryFeeOnTransferToken(token, amount, received);
        }
        Stake storage s = _stakes[msg.sender][token];
        s.bonded += amount;
        emit Staked(msg.sender, token, amount, s.bonded);
    }

    /// @inheritdoc ICapacityRegistry
    function requestUnstake(address token, uint256 amount) external {
        if (amount == 0) revert CapacityRegistryZeroAmount();
        Stake storage s = _stakes[msg.sender][token];
        if (s.bonded < amount) revert CapacityRegistryInsufficientStake(msg.sender, token, amount, s.bonded);
        s.bonded -= amount;
        s.unbonding += amount;
        uint64 ends = uint64(block.timestamp) + _unbondingDelay;
        s.unbondingEnds = ends;
        emit UnstakeRequested(msg.sender, token, amount, ends);
    }

    /// @inheritdoc ICapacityRegistry
    function withdrawStake(address token) external nonReentrant {
        Stake storage s = _stakes[msg.sender][token];
        uint256 amount = s.unbonding;
        if (amount == 0) revert CapacityRegistryNothingToWithdraw(msg.sender, token);
        if (block.timestamp < s.unbondingEnds) {
            revert CapacityRegistryStillUnbonding(msg.sender, token, s.unbondingEnds);
        }
        uint256 locked = _providers[msg.sender].lockedRights;
        if (locked != 0) revert CapacityRegistryOpenLeases(msg.sender, locked);
        s.unbonding = 0;
        _payCaller(token, amount);
        emit StakeWithdrawn(msg.sender, token, amount);
    }

    /// @inheritdoc ICapacityRegistry
    function slash(address providerAccount, address token, uint256 amount)
        external
        onlyRole(ESCROW_ROLE)
        nonReentrant
        returns (uint256 taken)
    {
        Stake storage s = _stakes[providerAccount][token];
        uint256 fromBonded = amount < s.bonded ? amount : s.bonded;
        s.bonded -= fromBonded;
        uint256 rest = amount - fromBonded;
        uint256 fromUnbonding = rest < s.unbonding ? rest : s.unbonding;
        s.unbonding -= fromUnbonding;
        taken = fromBonded + fromUnbonding;
        if (taken != 0) _payCaller(token, taken);
        emit Slashed(providerAccount, token, taken, msg.sender);
    }

    // --- nodes --------------------------------------------------------------------------------------

    /// @inheritdoc ICapacityRegistry
    function registerNode(
        address attestor,
        bytes32 gpuModel,
        bytes32[] calldata gpuUuidHashes,
        uint32 vramMiB,
        uint32 maxPowerMwPerGpu,
        bytes8 region,
        uint8 features
    ) external returns (uint256 nodeId) {
        _requireProvider(msg.sender);
        if (attestor == address(0)) revert CapacityRegistryZeroAddress();
        uint256 n = gpuUuidHashes.length;
        if (n == 0 || n > 256) revert CapacityRegistryBadGpuCount(n);
        if (vramMiB == 0 || maxPowerMwPerGpu == 0) revert CapacityRegistryBadNodeSpec();
        if (features & ~NODE_FEATURES_KNOWN != 0) revert CapacityRegistryUnknownFeatures(features);
        nodeId = ++_nodeCount;
        for (uint256 i; i < n; ++i) {
            bytes32 h = gpuUuidHashes[i];
            uint256 other = _gpuNode[h];
            // A GPU moves to a new node only once its old node is deactivated and no lease holds it there.
            if (other != 0 && (_nodes[other].active || _nodeLocked[other] != 0)) {
                revert CapacityRegistryGpuAlreadyRegistered(h, other);
            }
            _gpuNode[h] = nodeId;
        }
        _nodeGpus[nodeId] = gpuUuidHashes;
        _nodes[nodeId] = Node({
            provider: msg.sender,
            attestor: attestor,
            gpuModel: gpuModel,
            gpuCount: uint16(n),
            vramMiB: vramMiB,
            maxPowerMwPerGpu: maxPowerMwPerGpu,
            region: region,
            active: true,
            features: features
        });
        emit NodeRegistered(
            nodeId, msg.sender, attestor, gpuModel, gpuUuidHashes, vramMiB, maxPowerMwPerGpu, region, features
        );
    }

    /// @inheritdoc ICapacityRegistry
    function rotateAttestor(uint256 nodeId, address newAttestor) external {
        Node storage nd = _ownedNode(nodeId);
        if (newAttestor == address(0)) revert CapacityRegistryZeroAddress();
        address old = nd.attestor;
        nd.attestor = newAttestor;
        emit AttestorRotated(nodeId, old, newAttestor);
        // The old key stops being accepted for running leases in this same transaction.
        if (_escrow != address(0)) ILeaseEscrow(_escrow).syncNode(nodeId);
    }

    /// @inheritdoc ICapacityRegistry
    function deactivateNode(uint256 nodeId) external {
        Node storage nd = _ownedNode(nodeId);
        if (!nd.active) revert CapacityRegistryNodeInactive(nodeId);
        nd.active = false;
        emit NodeDeactivated(nodeId);
    }

    // --- offers and rights --------------------------------------------------------------------------

    /// @inheritdoc ICapacityRegistry
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
    ) external returns (uint256 offerId) {
        if (pricePerGpuSecond == 0 || pricePerGpuSecond > type(uint96).max) {
            revert CapacityRegistryBadPrice(pricePerGpuSecond);
        }
        if (billingMode > uint8(type(BillingMode).max)) revert CapacityRegistryBadBillingMode(billingMode);
        if (validUntil <= validFrom || validUntil <= block.timestamp || validUntil - validFrom > _MAX_WINDOW_S) {
            revert CapacityRegistryBadWindow(validFrom, validUntil);
        }
        if (minBuyerScoreBps > 10_000) revert CapacityRegistryBadMinScore(minBuyerScoreBps);
        // gpuCount and gpuSetHash are derived from the node's GPUs in _publish
        Offer memory o = Offer({
            provider: msg.sender,
            nodeId: uint64(nodeId),
            gpuMask: gpuMask,
            gpuCount: 0,
            pricePerGpuSecond: uint128(pricePerGpuSecond),
            token: token,
            billingMode: BillingMode(billingMode),
            validFrom: uint40(validFrom),
            validUntil: uint40(validUntil),
            minBuyerScoreBps: minBuyerScoreBps,
            gpuSetHash: bytes32(0),
            termsHash: termsHash
        });
        return _publish(o);
    }

    /// @inheritdoc ICapacityRegistry
    function lockRights(address holder, uint256 offerId, uint256 amount) external onlyRole(ESCROW_ROLE) {
        // Rights locked by leases sit on this contract's balance; they are never available to another lease.
        uint256 held = holder == address(this) ? 0 : balanceOf(holder, offerId);
        if (held < amount) revert CapacityRegistryInsufficientRights(holder, offerId, amount, held);
        _move(holder, address(this), offerId, amount);
        Offer storage o = _offers[offerId];
        _providers[o.provider].lockedRights += amount;
        _nodeLocked[o.nodeId] += amount;
        emit RightsLocked(holder, offerId, amount);
    }

    /// @inheritdoc ICapacityRegistry
    function releaseRights(address holder, uint256 offerId, uint256 amount) external onlyRole(ESCROW_ROLE) {
        _unlock(offerId, amount);
        _move(address(this), holder, offerId, amount);
        emit RightsReleased(holder, offerId, amount);
    }

    /// @inheritdoc ICapacityRegistry
    function burnLocked(uint256 offerId, uint256 amount) external onlyRole(ESCROW_ROLE) {
        _unlock(offerId, amount);
        _move(address(this), address(0), offerId, amount);
        _burned[offerId] += amount;
        emit RightsBurned(offerId, amount);
    }

    /// @inheritdoc ICapacityRegistry
    function listRights(uint256 offerId, uint256 pricePerGpuSecond) external {
        if (_offers[offerId].provider == address(0)) revert CapacityRegistryUnknownOffer(offerId);
        if (pricePerGpuSecond >= 2 ** 96) revert CapacityRegistryBadPrice(pricePerGpuSecond);
        // an ask needs rights to sell (withdrawing one does not)
        if (pricePerGpuSecond != 0 && balanceOf(msg.sender, offerId) == 0) {
            revert CapacityRegistryInsufficientRights(msg.sender, offerId, 1, 0);
        }
        _asks[offerId][msg.sender] = pricePerGpuSecond;
        emit RightsListed(msg.sender, offerId, pricePerGpuSecond);
    }

    /// @inheritdoc ICapacityRegistry
    function setTiers(uint256 offerId, uint256 tiers) external {
        if (_offers[offerId].provider != msg.sender) revert CapacityRegistryNotProvider(msg.sender);
        // two tiers of 128 bits (minDurationS << 96 | price), the longer one high; an unused tier is 0
        uint256 lo = tiers & type(uint128).max;
        uint256 hi = tiers >> 128;
        if ((lo != 0 && lo & type(uint96).max == 0) || (hi != 0 && (hi & type(uint96).max == 0 || hi >> 96 <= lo >> 96))) {
            revert CapacityRegistryBadTiers(tiers);
        }
        _tiers[offerId] = tiers;
        emit TiersSet(offerId, tiers);
    }

    // --- views --------------------------------------------------------------------------------------

    /// @inheritdoc ICapacityRegistry
    function askOf(uint256 offerId, address holder) external view returns (uint256) {
        return _asks[offerId][holder];
    }

    /// @inheritdoc ICapacityRegistry
    function offerFor(uint256 offerId, address holder, uint256 durationS) external view returns (Offer memory o) {
        o = _offers[offerId];
        if (o.provider == address(0)) revert CapacityRegistryUnknownOffer(offerId);
        uint256 ask = _asks[offerId][holder];
        uint256 tiers = _tiers[offerId];
        if (ask != 0) {
            o.pricePerGpuSecond = uint128(ask);
        } else if (tiers >> 128 != 0 && durationS >= tiers >> 224) {
            o.pricePerGpuSecond = uint128((tiers >> 128) & type(uint96).max);
        } else if (uint128(tiers) != 0 && durationS >= uint128(tiers) >> 96) {
            o.pricePerGpuSecond = uint128(tiers & type(uint96).max);
        }
    }

    /// @inheritdoc ICapacityRegistry
    function provider(address account) external view returns (Provider memory) {
        return _providers[account];
    }

    /// @inheritdoc ICapacityRegistry
    function metadataURI(address account) external view returns (string memory) {
        return _metadata[account];
    }

    /// @inheritdoc ICapacityRegistry
    function node(uint256 nodeId) external view returns (Node memory) {
        if (_nodes[nodeId].provider == address(0)) revert CapacityRegistryUnknownNode(nodeId);
        return _nodes[nodeId];
    }

    /// @inheritdoc ICapacityRegistry
    function nodeGpus(uint256 nodeId) external view returns (bytes32[] memory) {
        return _nodeGpus[nodeId];
    }

    /// @inheritdoc ICapacityRegistry
    function nodeAttestor(uint256 nodeId) external view returns (address, uint32, bool) {
        Node storage nd = _nodes[nodeId];
        if (nd.provider == address(0)) revert CapacityRegistryUnknownNode(nodeId);
        return (nd.attestor, nd.maxPowerMwPerGpu, nd.active);
    }

    /// @inheritdoc ICapacityRegistry
    function offer(uint256 offerId) external view returns (Offer memory) {
        if (_offers[offerId].provider == address(0)) revert CapacityRegistryUnknownOffer(offerId);
        return _offers[offerId];
    }

    /// @inheritdoc ICapacityRegistry
    function stakeOf(address providerAccount, address token) external view returns (Stake memory) {
        return _stakes[providerAccount][token];
    }

    /// @inheritdoc ICapacityRegistry
    function rightsOf(uint256 offerId) external view returns (uint256 minted, uint256 locked, uint256 burned) {
        return (_minted[offerId], balanceOf(address(this), offerId), _burned[offerId]);
    }

    /// @inheritdoc ICapacityRegistry
    function nodeCount() external view returns (uint256) {
        return _nodeCount;
    }

    /// @inheritdoc ICapacityRegistry
    function offerCount() external view returns (uint256) {
        return _offerCount;
    }

    /// @inheritdoc ICapacityRegistry
    function escrow() external view returns (address) {
        return _escrow;
    }

    /// @inheritdoc ICapacityRegistry
    function unbondingDelay() external view returns (uint64) {
        return _unbondingDelay;
    }

    function supportsInterface(bytes4 interfaceId) public view override(ERC1155, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }

    // --- internal -----------------------------------------------------------------------------------

    function _requireProvider(address account) private view returns (Provider storage p) {
        p = _providers[account];
        if (!p.registered) revert CapacityRegistryNotProvider(account);
    }

    function _ownedNode(uint256 nodeId) private view returns (Node storage nd) {
        nd = _nodes[nodeId];
        if (nd.provider == address(0)) revert CapacityRegistryUnknownNode(nodeId);
        if (nd.provider != msg.sender) revert CapacityRegistryNotNodeOwner(nodeId, msg.sender);
    }

    function _publish(Offer memory o) private returns (uint256 offerId) {
        Node storage nd = _ownedNode(o.nodeId);
        if (!nd.active) revert CapacityRegistryNodeInactive(o.nodeId);
        // billing SM-active time needs GPUs that measure it (features are fixed at registration, so the check
        // holds for every lease of the offer)
        if (o.billingMode == BillingMode.SmActive && nd.features & NODE_FEATURE_GPM == 0) {
            revert CapacityRegistryNodeLacksFeature(o.nodeId, NODE_FEATURE_GPM);
        }
        uint256 nGpus = nd.gpuCount;
        if (o.gpuMask == 0 || (nGpus < 256 && o.gpuMask >> nGpus != 0)) {
            revert CapacityRegistryBadGpuMask(o.gpuMask, nGpus);
        }
        bytes32[] memory picked = _pickGpus(o.nodeId, o.gpuMask, o.validFrom, o.validUntil);
        o.gpuCount = uint16(picked.length);
        o.gpuSetHash = _setHash(picked);
        offerId = ++_offerCount;
        _offers[offerId] = o;
        uint256 rights = uint256(o.gpuCount) * (o.validUntil - o.validFrom);
        _minted[offerId] = rights;
        emit OfferPublished(offerId, msg.sender, o.nodeId, o, rights);
        _mint(_providers[msg.sender].payout, offerId, rights, "");
    }

    /// @dev The masked GPUs' UUID hashes; books each GPU until validUntil (offers on a GPU never overlap).
    function _pickGpus(uint256 nodeId, uint256 gpuMask, uint64 validFrom, uint64 validUntil)
        private
        returns (bytes32[] memory picked)
    {
        bytes32[] storage gpus = _nodeGpus[nodeId];
        uint256 n = gpus.length;
        picked = new bytes32[](n);
        uint256 count;
        for (uint256 i; i < n; ++i) {
            if ((gpuMask >> i) & 1 == 0) continue;
            uint64 booked = _gpuBookedUntil[nodeId][i];
            if (validFrom < booked) revert CapacityRegistryGpuAlreadyOffered(i, booked);
            _gpuBookedUntil[nodeId][i] = validUntil;
            picked[count++] = gpus[i];
        }
        assembly ("memory-safe") {
            mstore(picked, count)
        }
    }

    /// @dev keccak256(abi.encodePacked(sorted hashes)), as ledger.protocol.gpu_set_hash.
    function _setHash(bytes32[] memory hs) private pure returns (bytes32) {
        uint256 n = hs.length;
        for (uint256 i = 1; i < n; ++i) {
            bytes32 key = hs[i];
            uint256 j = i;
            while (j > 0 && hs[j - 1] > key) {
                hs[j] = hs[j - 1];
                --j;
            }
            hs[j] = key;
        }
        return keccak256(abi.encodePacked(hs));
    }

    function _unlock(uint256 offerId, uint256 amount) private {
        uint256 locked = balanceOf(address(this), offerId);
        if (locked < amount) revert CapacityRegistryInsufficientLocked(offerId, amount, locked);
        Offer storage o = _offers[offerId];
        _providers[o.provider].lockedRights -= amount;
        _nodeLocked[o.nodeId] -= amount;
    }

    /// @dev Plain ERC-1155 balance move (TransferSingle is emitted) without the receiver hook.
    function _move(address from, address to, uint256 id, uint256 amount) private {
        uint256[] memory ids = new uint256[](1);
        uint256[] memory values = new uint256[](1);
        ids[0] = id;
        values[0] = amount;
        _update(from, to, ids, values);
    }

    /// @dev Pays `amount` of `token` to msg.sender, the only destination: the provider withdrawing its own
    /// unbonded stake (withdrawStake) or the ESCROW_ROLE escrow taking a slashed stake (slash).
    function _payCaller(address token, uint256 amount) private {
        if (token == address(0)) {
            // not arbitrary: msg.sender is withdrawStake's provider (own stake) or slash's ESCROW_ROLE caller
            // slither-disable-next-line arbitrary-send-eth
            (bool ok,) = msg.sender.call{value: amount}("");
            if (!ok) revert CapacityRegistryTransferFailed(msg.sender, amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }
}
