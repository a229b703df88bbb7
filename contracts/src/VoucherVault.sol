// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ICapacityRegistry} from "./interfaces/ICapacityRegistry.sol";
import {ILeaseEscrow, ILeaseEscrowTypes} from "./interfaces/ILeaseEscrow.sol";
import {IVoucherVault} from "./interfaces/IVoucherVault.sol";

/// @title VoucherVault
/// @notice Compute vouchers (算力券) on top of the escrow, in a contract of their own so the escrow's settlement
/// path (and its gas) is untouched: the vault is the escrow buyer of every voucher lease. See IVoucherVault.
/// @dev Why the vault is the payer: refunds (unused escrow and fee, dispute refunds) then come back to the vault,
/// which alone knows which part was subsidised; the provider and the settlement rules see an ordinary lease.
/// Consequences (docs/economics.md): the escrow checks an offer's minBuyerScoreBps against the VAULT's
/// reputation; a voucher lease cannot be topped up; a slash an arbiter awards on a voucher lease credits the
/// vault and is not split (assets then exceed liabilities).
///
/// Money: `_owed[token]` = Σ pools + Σ balances of unexpired vouchers + Σ withdrawable, kept on every change;
/// assets = token balance + escrow.withdrawable(vault). Pull payments only; every state change emits an event.
contract VoucherVault is IVoucherVault, AccessControl, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @inheritdoc IVoucherVault
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");

    ILeaseEscrow private immutable _escrow;
    ICapacityRegistry private immutable _registry;

    mapping(uint256 programmeId => Programme) private _programmes;
    mapping(uint256 programmeId => mapping(bytes32 gpuModel => bool)) private _models;
    mapping(uint256 programmeId => mapping(bytes8 region => bool)) private _regions;
    mapping(uint256 programmeId => mapping(address provider => bool)) private _providers;
    mapping(uint256 programmeId => mapping(address account => bool)) private _related;
    mapping(uint256 voucherId => Voucher) private _vouchers;
    mapping(uint256 leaseId => VoucherLease) private _leases;
    mapping(address account => mapping(address token => uint256)) private _withdrawable;
    mapping(address token => uint256) private _owed;
    uint256 private _programmeCount;
    uint256 private _voucherCount;

    constructor(address admin, ILeaseEscrow escrow_) {
        if (admin == address(0) || address(escrow_) == address(0)) revert VoucherVaultBadArgument();
        _escrow = escrow_;
        _registry = ICapacityRegistry(escrow_.registry());
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @dev ETH arrives with the payable calls, or from the escrow when the vault withdraws its refunds.
    receive() external payable {
        if (msg.sender != address(_escrow)) revert VoucherVaultUnexpectedEth(msg.sender);
    }

    // --- issuer -------------------------------------------------------------------------------------

    /// @inheritdoc IVoucherVault
    function createProgramme(
        address token,
        bytes32[] calldata gpuModels,
        bytes8[] calldata regions,
        address[] calldata providers
    ) external onlyRole(ISSUER_ROLE) returns (uint256 programmeId) {
        programmeId = ++_programmeCount;
        Programme storage p = _programmes[programmeId];
        p.issuer = msg.sender;
        p.token = token;
        p.anyModel = gpuModels.length == 0;
        p.anyRegion = regions.length == 0;
        p.anyProvider = providers.length == 0;
        for (uint256 i = 0; i < gpuModels.length; ++i) {
            _models[programmeId][gpuModels[i]] = true;
        }
        for (uint256 i = 0; i < regions.length; ++i) {
            _regions[programmeId][regions[i]] = true;
        }
        for (uint256 i = 0; i < providers.length; ++i) {
            _providers[programmeId][providers[i]] = true;
        }
        emit ProgrammeCreated(programmeId, msg.sender, token, gpuModels, regions, providers);
    }

    /// @inheritdoc IVoucherVault
    function fundProgramme(uint256 programmeId, uint256 amount) external payable nonReentrant {
        Programme storage p = _issuerOpen(programmeId);
        if (amount == 0) revert VoucherVaultBadArgument();
        p.pool += amount;
        address token = p.token;
        _owed[token] += amount;
        emit ProgrammeFunded(programmeId, amount, p.pool);
        _pullIn(token, amount, msg.value);
    }

    /// @inheritdoc IVoucherVault
    function setRelated(uint256 programmeId, address[] calldata accounts, bool related) external {
        _issuer(programmeId);
        for (uint256 i = 0; i < accounts.length; ++i) {
            _related[programmeId][accounts[i]] = related;
            emit RelatedPartySet(programmeId, accounts[i], related);
        }
    }

    /// @inheritdoc IVoucherVault
    function grantVoucher(uint256 programmeId, address beneficiary, uint256 faceValue, uint64 expiry, uint16 copayBps)
        external
        returns (uint256 voucherId)
    {
        Programme storage p = _issuerOpen(programmeId);
        if (
            beneficiary == address(0) || faceValue == 0 || faceValue > type(uint128).max || copayBps > 10_000
                || expiry <= block.timestamp || expiry > type(uint40).max
        ) revert VoucherVaultBadArgument();
        if (_related[programmeId][beneficiary]) revert VoucherVaultRelatedParty(0, beneficiary);
        uint256 pool = p.pool;
        if (pool < faceValue) revert VoucherVaultPoolTooSmall(programmeId, pool, faceValue);
        p.pool = pool - faceValue;
        p.granted += faceValue;
        voucherId = ++_voucherCount;
        _vouchers[voucherId] = Voucher({
            programmeId: uint64(programmeId),
            beneficiary: beneficiary,
            expiry: uint40(expiry),
            copayBps: copayBps,
            expired: false,
            faceValue: uint128(faceValue),
            balance: uint128(faceValue)
        });
        emit VoucherGranted(voucherId, programmeId, beneficiary, faceValue, expiry, copayBps);
    }

    /// @inheritdoc IVoucherVault
    function closeProgramme(uint256 programmeId) external {
        Programme storage p = _issuerOpen(programmeId);
        uint256 pool = p.pool;
        p.closed = true;
        p.pool = 0;
        p.returned += pool;
        if (pool != 0) _credit(p.issuer, p.token, pool);
        emit ProgrammeClosed(programmeId, pool);
    }

    // --- beneficiary --------------------------------------------------------------------------------

    /// @inheritdoc IVoucherVault
    function openLease(uint256 voucherId, uint256 offerId, address holder, uint32 durationS, uint64 startBy, uint256 maxCopay)
        external
        payable
        nonReentrant
        returns (uint256 leaseId)
    {
        Voucher storage v = _beneficiaryVoucher(voucherId);
        if (v.expired || block.timestamp >= v.expiry) revert VoucherVaultExpired(voucherId, v.expiry);
        uint256 balance = v.balance;
        if (balance == 0) revert VoucherVaultExhausted(voucherId);
        ICapacityRegistry.Offer memory o = _checkedOffer(voucherId, v.programmeId, offerId, holder, durationS);
        (uint256 cost, uint256 fromVoucher) = _split(v, o, durationS, balance);
        if (fromVoucher == 0) revert VoucherVaultExhausted(voucherId);
        if (cost - fromVoucher > maxCopay) revert VoucherVaultCopayAboveMax(cost - fromVoucher, maxCopay);

        // effects first: the lease id the escrow will assign is the next one (checked after the call)
        leaseId = _escrow.leaseCount() + 1;
        v.balance = uint128(balance - fromVoucher);
        _owed[o.token] -= fromVoucher;
        _leases[leaseId] = VoucherLease({
            voucherId: uint64(voucherId),
            reconciled: false,
            voucherPaid: uint128(fromVoucher),
            copayPaid: uint128(cost - fromVoucher)
        });
        emit VoucherRedeemed(leaseId, voucherId, offerId, fromVoucher, cost - fromVoucher, balance - fromVoucher);

        _pullIn(o.token, cost - fromVoucher, msg.value);
        uint256 opened = _openInEscrow(o.token, cost, offerId, holder, durationS, startBy);
        if (opened != leaseId) revert VoucherVaultEscrowMismatch(leaseId, opened);
    }

    /// @inheritdoc IVoucherVault
    function closeLease(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external nonReentrant {
        _beneficiaryLease(leaseId);
        _escrow.closeLease(leaseId, ckpt, lastReportHash);
    }

    /// @inheritdoc IVoucherVault
    function dispute(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external nonReentrant {
        _beneficiaryLease(leaseId);
        _escrow.dispute(leaseId, ckpt, lastReportHash);
    }

    /// @inheritdoc IVoucherVault
    function rate(uint256 leaseId, uint8 stars) external nonReentrant {
        _beneficiaryLease(leaseId);
        _escrow.rate(leaseId, stars);
    }

    // --- anyone -------------------------------------------------------------------------------------

    /// @inheritdoc IVoucherVault
    function reconcile(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external nonReentrant {
        VoucherLease storage vl = _leases[leaseId];
        uint256 voucherId = vl.voucherId;
        if (voucherId == 0) revert VoucherVaultUnknownLease(leaseId);
        if (vl.reconciled) revert VoucherVaultAlreadyReconciled(leaseId);
        ILeaseEscrowTypes.LeaseView memory l = _escrow.lease(leaseId);
        if (!l.feesSettled) revert VoucherVaultLeaseNotFinal(leaseId);
        // everything the escrow will ever return to its buyer for this lease: escrow and fee held, less what the
        // holder was paid and the fee on it (LeaseEscrowBase._trySettleFees)
        uint256 paid = _escrow.checkpoint(leaseId, ckpt, lastReportHash).paid;
        uint256 back = l.escrowed + l.feeHeld - paid - (paid * l.feeBps) / 10_000;
        vl.reconciled = true;
        address token = l.token;
        _owed[token] += back;
        _closeOut(leaseId, vl, back, token);
        if (_escrow.withdrawable(address(this), token) != 0) emit RefundsPulled(token, _escrow.withdraw(token));
    }

    /// @inheritdoc IVoucherVault
    function expireVoucher(uint256 voucherId) external {
        Voucher storage v = _vouchers[voucherId];
        if (v.beneficiary == address(0)) revert VoucherVaultUnknownVoucher(voucherId);
        if (v.expired || block.timestamp < v.expiry) revert VoucherVaultNotExpired(voucherId, v.expiry);
        uint256 balance = v.balance;
        v.expired = true;
        v.balance = 0;
        Programme storage p = _programmes[v.programmeId];
        p.returned += balance;
        if (balance != 0) _credit(p.issuer, p.token, balance);
        emit VoucherExpired(voucherId, balance);
    }

    /// @inheritdoc IVoucherVault
    function withdraw(address token) external nonReentrant returns (uint256 amount) {
        amount = _withdrawable[msg.sender][token];
        if (amount == 0) revert VoucherVaultNothingToWithdraw(msg.sender, token);
        _withdrawable[msg.sender][token] = 0;
        _owed[token] -= amount;
        emit VaultWithdrawn(msg.sender, token, amount);
        if (token == address(0)) {
            (bool ok,) = msg.sender.call{value: amount}("");
            if (!ok) revert VoucherVaultTransferFailed(msg.sender, amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }

    // --- views --------------------------------------------------------------------------------------

    /// @inheritdoc IVoucherVault
    function programme(uint256 programmeId) external view returns (Programme memory) {
        return _known(programmeId);
    }

    /// @inheritdoc IVoucherVault
    function voucher(uint256 voucherId) external view returns (Voucher memory v) {
        v = _vouchers[voucherId];
        if (v.beneficiary == address(0)) revert VoucherVaultUnknownVoucher(voucherId);
    }

    /// @inheritdoc IVoucherVault
    function voucherLease(uint256 leaseId) external view returns (VoucherLease memory) {
        return _leases[leaseId];
    }

    /// @inheritdoc IVoucherVault
    function eligible(uint256 programmeId, uint256 offerId) external view returns (bool ok, uint8 rule) {
        _known(programmeId);
        return _eligible(programmeId, _registry.offer(offerId));
    }

    /// @inheritdoc IVoucherVault
    function isRelated(uint256 programmeId, address account) external view returns (bool) {
        return _related[programmeId][account];
    }

    /// @inheritdoc IVoucherVault
    function withdrawable(address account, address token) external view returns (uint256) {
        return _withdrawable[account][token];
    }

    /// @inheritdoc IVoucherVault
    function liabilities(address token) external view returns (uint256) {
        return _owed[token];
    }

    /// @inheritdoc IVoucherVault
    function programmeCount() external view returns (uint256) {
        return _programmeCount;
    }

    /// @inheritdoc IVoucherVault
    function voucherCount() external view returns (uint256) {
        return _voucherCount;
    }

    /// @inheritdoc IVoucherVault
    function escrow() external view returns (address) {
        return address(_escrow);
    }

    // --- internal -----------------------------------------------------------------------------------

    function _known(uint256 programmeId) private view returns (Programme storage p) {
        p = _programmes[programmeId];
        if (p.issuer == address(0)) revert VoucherVaultUnknownProgramme(programmeId);
    }

    function _issuer(uint256 programmeId) private view returns (Programme storage p) {
        p = _known(programmeId);
        if (msg.sender != p.issuer) revert VoucherVaultNotIssuer(programmeId, msg.sender);
    }

    function _issuerOpen(uint256 programmeId) private view returns (Programme storage p) {
        p = _issuer(programmeId);
        if (p.closed) revert VoucherVaultProgrammeClosed(programmeId);
    }

    function _beneficiaryVoucher(uint256 voucherId) private view returns (Voucher storage v) {
        v = _vouchers[voucherId];
        if (v.beneficiary == address(0)) revert VoucherVaultUnknownVoucher(voucherId);
        if (msg.sender != v.beneficiary) revert VoucherVaultNotBeneficiary(voucherId, msg.sender);
    }

    function _beneficiaryLease(uint256 leaseId) private view {
        uint256 voucherId = _leases[leaseId].voucherId;
        if (voucherId == 0) revert VoucherVaultUnknownLease(leaseId);
        if (msg.sender != _vouchers[voucherId].beneficiary) revert VoucherVaultNotBeneficiary(voucherId, msg.sender);
    }

    /// @dev Eligibility of an offer: token, then GPU model, region, provider (empty lists allow any).
    function _eligible(uint256 programmeId, ICapacityRegistry.Offer memory o) private view returns (bool, uint8) {
        Programme storage p = _programmes[programmeId];
        if (o.token != p.token) return (false, 0);
        ICapacityRegistry.Node memory nd = _registry.node(o.nodeId);
        if (!p.anyModel && !_models[programmeId][nd.gpuModel]) return (false, 1);
        if (!p.anyRegion && !_regions[programmeId][nd.region]) return (false, 2);
        if (!p.anyProvider && !_providers[programmeId][o.provider]) return (false, 3);
        return (true, 0);
    }

    /// @dev Nobody who is paid by the lease or runs its node may be the beneficiary or a related party: the
    /// provider account, its payout address, the node's attestor and the rights holder.
    function _checkUnrelated(uint256 voucherId, uint256 programmeId, ICapacityRegistry.Offer memory o, address holder)
        private
        view
    {
        address beneficiary = msg.sender;
        address[4] memory parties =
            [o.provider, _registry.provider(o.provider).payout, _registry.node(o.nodeId).attestor, holder];
        for (uint256 i = 0; i < 4; ++i) {
            address a = parties[i];
            if (a == beneficiary || _related[programmeId][a]) revert VoucherVaultRelatedParty(voucherId, a);
        }
        if (_related[programmeId][beneficiary]) revert VoucherVaultRelatedParty(voucherId, beneficiary);
    }

    /// @dev The offer, once it is eligible for the programme and nobody it pays is related.
    function _checkedOffer(uint256 voucherId, uint256 programmeId, uint256 offerId, address holder, uint256 durationS)
        private
        view
        returns (ICapacityRegistry.Offer memory o)
    {
        o = _registry.offerFor(offerId, holder, durationS); // priced as the escrow will price it (ask, tier)
        (bool ok, uint8 rule) = _eligible(programmeId, o);
        if (!ok) revert VoucherVaultIneligibleOffer(voucherId, offerId, rule);
        _checkUnrelated(voucherId, programmeId, o, holder);
    }

    /// @dev Splits what the escrow returned for a lease (`back`, already counted as owed) pro rata to what the
    /// voucher and the beneficiary paid: the voucher's part to the voucher (to the issuer once it expired), the
    /// beneficiary's to its withdrawable.
    function _closeOut(uint256 leaseId, VoucherLease storage vl, uint256 back, address token) private {
        uint256 voucherPaid = vl.voucherPaid;
        uint256 copayPaid = vl.copayPaid;
        uint256 voucherBack = (back * voucherPaid) / (voucherPaid + copayPaid);
        uint256 copayBack = back - voucherBack;
        uint256 voucherId = vl.voucherId;
        Voucher storage v = _vouchers[voucherId];
        uint256 programmeId = v.programmeId;
        Programme storage p = _programmes[programmeId];
        p.spent += voucherPaid - voucherBack;
        if (voucherBack != 0) {
            if (v.expired) {
                p.returned += voucherBack;
                _credit(p.issuer, token, voucherBack);
            } else {
                v.balance += uint128(voucherBack);
            }
        }
        if (copayBack != 0) _credit(v.beneficiary, token, copayBack);
        emit RedemptionClosedOut(
            leaseId, voucherId, programmeId, voucherPaid - voucherBack, copayPaid - copayBack, voucherBack, copayBack
        );
    }

    /// @dev A lease's cost as the escrow will ask it (price × gpuCount × durationS + the fee at the provider's
    /// rate) and the voucher's part: cost × (10000 − copayBps) / 10000, at most its balance.
    function _split(Voucher storage v, ICapacityRegistry.Offer memory o, uint256 durationS, uint256 balance)
        private
        view
        returns (uint256 cost, uint256 fromVoucher)
    {
        uint256 escrowed = uint256(o.pricePerGpuSecond) * o.gpuCount * durationS;
        cost = escrowed + (escrowed * _escrow.feeBpsFor(o.provider)) / 10_000;
        fromVoucher = (cost * (10_000 - v.copayBps)) / 10_000;
        if (fromVoucher > balance) fromVoucher = balance;
    }

    /// @dev Opens the lease in the escrow with the vault as buyer, paying exactly `cost`.
    function _openInEscrow(address token, uint256 cost, uint256 offerId, address holder, uint32 durationS, uint64 startBy)
        private
        returns (uint256)
    {
        if (token == address(0)) return _escrow.openLease{value: cost}(offerId, holder, durationS, startBy, cost);
        IERC20(token).forceApprove(address(_escrow), cost);
        return _escrow.openLease(offerId, holder, durationS, startBy, cost);
    }

    function _credit(address account, address token, uint256 amount) private {
        _withdrawable[account][token] += amount;
        emit VaultCredited(account, token, amount);
    }

    /// @dev Takes `amount` of `token` from the caller (`value`: the payable entry point's msg.value).
    function _pullIn(address token, uint256 amount, uint256 value) private {
        if (token == address(0)) {
            if (value != amount) revert VoucherVaultWrongValue(amount, value);
            return;
        }
        if (value != 0) revert VoucherVaultWrongValue(0, value);
        if (amount == 0) return;
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert VoucherVaultFeeOnTransferToken(token, amount, received);
    }
}
