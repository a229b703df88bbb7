// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IVoucherVault
/// @notice Compute vouchers (算力券): an issuer funds a programme (ETH or an ERC-20) and grants non-transferable
/// vouchers to named beneficiaries (face value, expiry, co-pay share); a beneficiary opens a lease on an
/// eligible offer THROUGH the vault, which pays the escrow with the voucher's share and the beneficiary's
/// co-pay and is the lease's payer (escrow buyer), so the escrow's settlement path is untouched: the provider
/// is paid the same, and only for attested usage. Whatever the escrow returns for the lease at its end
/// (unused escrow, unused fee, dispute refunds) is split back pro rata: the voucher's part to the voucher
/// (or to the issuer once the voucher expired), the co-pay part to the beneficiary (pull payments).
/// @dev Money rule, per token: token balance of the vault + escrow.withdrawable(vault) ≥ Σ programme pools +
/// Σ open voucher balances + Σ withdrawable; equal once every ended voucher lease is reconciled (a slash an
/// arbiter awards on a voucher lease credits the vault and stays as surplus: see docs/economics.md).
interface IVoucherVault {
    /// @notice A programme. Eligibility lists empty = any.
    /// @param issuer who funds and manages it
    /// @param token ETH (address(0)) or the ERC-20 its vouchers pay in (leases must be in this token)
    /// @param closed no more funding or grants; what was not granted went back to the issuer
    /// @param anyModel no GPU model list
    /// @param anyRegion no region list
    /// @param anyProvider no provider list
    /// @param pool funded, not yet granted
    /// @param granted face value of every voucher granted
    /// @param spent what voucher leases finally cost the vouchers (reconciled)
    /// @param returned what went back to the issuer (close, expiry, returns after expiry)
    struct Programme {
        address issuer;
        address token;
        bool closed;
        bool anyModel;
        bool anyRegion;
        bool anyProvider;
        uint256 pool;
        uint256 granted;
        uint256 spent;
        uint256 returned;
    }

    /// @notice A voucher: non-transferable credit of one beneficiary.
    /// @param programmeId its programme
    /// @param beneficiary who may redeem it
    /// @param expiry unix s; redemption needs block.timestamp < expiry
    /// @param copayBps share of each lease's cost the beneficiary pays (basis points)
    /// @param expired the unused balance went back to the issuer
    /// @param faceValue what it was granted with
    /// @param balance what it may still pay
    struct Voucher {
        uint64 programmeId;
        address beneficiary;
        uint40 expiry;
        uint16 copayBps;
        bool expired;
        uint128 faceValue;
        uint128 balance;
    }

    /// @notice A lease the vault opened with a voucher.
    /// @param voucherId the voucher (one per lease)
    /// @param reconciled the escrow's returns were split back
    /// @param voucherPaid what the voucher put into the escrow (escrow + fee share)
    /// @param copayPaid what the beneficiary put in
    struct VoucherLease {
        uint64 voucherId;
        bool reconciled;
        uint128 voucherPaid;
        uint128 copayPaid;
    }

    // --- errors -------------------------------------------------------------------------------------

    /// @notice No such programme.
    error VoucherVaultUnknownProgramme(uint256 programmeId);
    /// @notice No such voucher.
    error VoucherVaultUnknownVoucher(uint256 voucherId);
    /// @notice The lease was not opened through this vault.
    error VoucherVaultUnknownLease(uint256 leaseId);
    /// @notice Only the programme's issuer may do this.
    error VoucherVaultNotIssuer(uint256 programmeId, address caller);
    /// @notice Only the voucher's (or the lease's) beneficiary may do this.
    error VoucherVaultNotBeneficiary(uint256 voucherId, address caller);
    /// @notice The programme is closed.
    error VoucherVaultProgrammeClosed(uint256 programmeId);
    /// @notice The programme's unallocated pool is smaller than the grant.
    error VoucherVaultPoolTooSmall(uint256 programmeId, uint256 pool, uint256 wanted);
    /// @notice A zero amount, a zero address, basis points above 10000 or an expiry not in the future.
    error VoucherVaultBadArgument();
    /// @notice The voucher's expiry has passed (or, for expireVoucher, has not yet).
    error VoucherVaultExpired(uint256 voucherId, uint256 expiry);
    /// @notice The voucher has not expired yet.
    error VoucherVaultNotExpired(uint256 voucherId, uint256 expiry);
    /// @notice The voucher has nothing left to pay.
    error VoucherVaultExhausted(uint256 voucherId);
    /// @notice The offer is outside the programme's eligibility: 0 token, 1 GPU model, 2 region, 3 provider.
    error VoucherVaultIneligibleOffer(uint256 voucherId, uint256 offerId, uint8 rule);
    /// @notice `account` (provider, its payout, the node's attestor or the rights holder) is the beneficiary
    /// or on the programme's related-party list.
    error VoucherVaultRelatedParty(uint256 voucherId, address account);
    /// @notice The beneficiary's co-pay exceeds its maximum.
    error VoucherVaultCopayAboveMax(uint256 copay, uint256 maxCopay);
    /// @notice msg.value is not what is due (or is non-zero for an ERC-20).
    error VoucherVaultWrongValue(uint256 expected, uint256 received);
    /// @notice Fewer tokens arrived than were sent: fee-on-transfer tokens are refused.
    error VoucherVaultFeeOnTransferToken(address token, uint256 expected, uint256 received);
    /// @notice The escrow has not settled the lease's fees yet (not ended, or charges pending or frozen).
    error VoucherVaultLeaseNotFinal(uint256 leaseId);
    /// @notice The lease was already reconciled.
    error VoucherVaultAlreadyReconciled(uint256 leaseId);
    /// @notice The escrow opened a lease other than the one the vault paid for.
    error VoucherVaultEscrowMismatch(uint256 expected, uint256 got);
    /// @notice Nothing to withdraw.
    error VoucherVaultNothingToWithdraw(address account, address token);
    /// @notice The ETH payout failed.
    error VoucherVaultTransferFailed(address to, uint256 amount);
    /// @notice ETH may only come from the escrow (refunds) or with a payable call.
    error VoucherVaultUnexpectedEth(address from);

    // --- events -------------------------------------------------------------------------------------

    /// @notice A programme was created.
    /// @param programmeId the id
    /// @param issuer its issuer
    /// @param token its token (address(0) = ETH)
    /// @param gpuModels eligible GPU models (empty: any)
    /// @param regions eligible regions (empty: any)
    /// @param providers eligible provider accounts (empty: any)
    event ProgrammeCreated(
        uint256 indexed programmeId,
        address indexed issuer,
        address token,
        bytes32[] gpuModels,
        bytes8[] regions,
        address[] providers
    );
    /// @notice Money was added to a programme's pool.
    /// @param programmeId the programme
    /// @param amount added
    /// @param pool the pool after
    event ProgrammeFunded(uint256 indexed programmeId, uint256 amount, uint256 pool);
    /// @notice The issuer marked or unmarked an account as a related party (it then can neither redeem nor be paid).
    /// @param programmeId the programme
    /// @param account the account
    /// @param related whether it is related
    event RelatedPartySet(uint256 indexed programmeId, address indexed account, bool related);
    /// @notice A voucher was granted out of the pool.
    /// @param voucherId the id
    /// @param programmeId its programme
    /// @param beneficiary who may redeem it
    /// @param faceValue its value
    /// @param expiry unix s
    /// @param copayBps the beneficiary's share of each lease's cost
    event VoucherGranted(
        uint256 indexed voucherId,
        uint256 indexed programmeId,
        address indexed beneficiary,
        uint256 faceValue,
        uint64 expiry,
        uint16 copayBps
    );
    /// @notice A beneficiary opened a lease with a voucher (redemption).
    /// @param leaseId the escrow's lease
    /// @param voucherId the voucher
    /// @param offerId the offer
    /// @param voucherPaid paid by the voucher (escrow + fee share)
    /// @param copayPaid paid by the beneficiary
    /// @param balance the voucher's balance after
    event VoucherRedeemed(
        uint256 indexed leaseId, uint256 indexed voucherId, uint256 indexed offerId, uint256 voucherPaid, uint256 copayPaid, uint256 balance
    );
    /// @notice Close-out (核销) of a voucher lease: the escrow's returns, split back pro rata.
    /// @param leaseId the lease
    /// @param voucherId the voucher
    /// @param programmeId its programme
    /// @param voucherSpent what the lease finally cost the voucher (paid − returned)
    /// @param copaySpent what it finally cost the beneficiary
    /// @param voucherReturned back to the voucher (or to the issuer once the voucher expired)
    /// @param copayReturned back to the beneficiary (withdrawable)
    event RedemptionClosedOut(
        uint256 indexed leaseId,
        uint256 indexed voucherId,
        uint256 indexed programmeId,
        uint256 voucherSpent,
        uint256 copaySpent,
        uint256 voucherReturned,
        uint256 copayReturned
    );
    /// @notice An expired voucher's unused balance went back to the issuer (withdrawable).
    /// @param voucherId the voucher
    /// @param returned the balance returned
    event VoucherExpired(uint256 indexed voucherId, uint256 returned);
    /// @notice The issuer closed the programme: the ungranted pool went back to it (withdrawable).
    /// @param programmeId the programme
    /// @param returned the pool returned
    event ProgrammeClosed(uint256 indexed programmeId, uint256 returned);
    /// @notice Money an account may withdraw from the vault grew.
    /// @param account the payee
    /// @param token the token
    /// @param amount added
    event VaultCredited(address indexed account, address indexed token, uint256 amount);
    /// @notice The vault pulled what the escrow owed it (refunds of voucher leases) into its own balance.
    /// @param token the token
    /// @param amount pulled
    event RefundsPulled(address indexed token, uint256 amount);
    /// @notice An account pulled its money.
    /// @param account the payee
    /// @param token the token
    /// @param amount sent
    event VaultWithdrawn(address indexed account, address indexed token, uint256 amount);

    // --- issuer -------------------------------------------------------------------------------------

    /// @notice Create a programme (ISSUER_ROLE); the caller is its issuer.
    /// @param token ETH (address(0)) or an ERC-20
    /// @param gpuModels eligible GPU models as the registry stores them (empty: any)
    /// @param regions eligible regions (empty: any)
    /// @param providers eligible provider accounts (empty: any)
    /// @return programmeId the id (ids start at 1)
    function createProgramme(
        address token,
        bytes32[] calldata gpuModels,
        bytes8[] calldata regions,
        address[] calldata providers
    ) external returns (uint256 programmeId);
    /// @notice Add money to the pool (issuer; ETH in msg.value or pulled ERC-20).
    /// @param programmeId the programme
    /// @param amount the amount
    function fundProgramme(uint256 programmeId, uint256 amount) external payable;
    /// @notice Mark or unmark related parties (issuer).
    /// @param programmeId the programme
    /// @param accounts the accounts
    /// @param related whether they are related
    function setRelated(uint256 programmeId, address[] calldata accounts, bool related) external;
    /// @notice Grant a voucher out of the pool (issuer). The beneficiary may not be a related party.
    /// @param programmeId the programme
    /// @param beneficiary who may redeem it
    /// @param faceValue its value
    /// @param expiry unix s, in the future
    /// @param copayBps the beneficiary's share of each lease's cost, at most 10000 (10000: nothing subsidised)
    /// @return voucherId the id (ids start at 1)
    function grantVoucher(uint256 programmeId, address beneficiary, uint256 faceValue, uint64 expiry, uint16 copayBps)
        external
        returns (uint256 voucherId);
    /// @notice Close the programme (issuer): no more funding or grants; the pool goes back to the issuer.
    /// Granted vouchers stay redeemable until they expire.
    /// @param programmeId the programme
    function closeProgramme(uint256 programmeId) external;

    // --- beneficiary --------------------------------------------------------------------------------

    /// @notice Open a lease on `offerId` paid by voucher `voucherId` (its beneficiary). The lease costs what
    /// the escrow asks (price × gpuCount × durationS + fee); the voucher pays min(balance, cost × (10000 −
    /// copayBps) / 10000), the caller the rest (ETH in msg.value, exactly; or pulled ERC-20).
    /// @param voucherId the voucher
    /// @param offerId an eligible offer
    /// @param holder whose rights the lease locks (earns the charges; not related, not the beneficiary)
    /// @param durationS lease length
    /// @param startBy activation deadline (unix s)
    /// @param maxCopay most the caller pays
    /// @return leaseId the escrow's lease
    function openLease(uint256 voucherId, uint256 offerId, address holder, uint32 durationS, uint64 startBy, uint256 maxCopay)
        external
        payable
        returns (uint256 leaseId);
    /// @notice Close a voucher lease (its beneficiary; the escrow's closeLease as its buyer).
    /// @param leaseId the lease
    /// @param ckpt the lease's checkpoint word
    /// @param lastReportHash the lease's last settled report hash
    function closeLease(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external;
    /// @notice Dispute a voucher lease's pending charges (its beneficiary; the escrow's dispute as its buyer).
    /// @param leaseId the lease
    /// @param ckpt the lease's checkpoint word
    /// @param lastReportHash the lease's last settled report hash
    function dispute(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external;
    /// @notice Rate the provider of a voucher lease (its beneficiary; the escrow's rate as its buyer).
    /// @param leaseId the lease
    /// @param stars 1..5
    function rate(uint256 leaseId, uint8 stars) external;

    // --- anyone -------------------------------------------------------------------------------------

    /// @notice Split what the escrow returned for an ended voucher lease (its fees settled) back pro rata
    /// (anyone, once per lease), and pull the vault's escrow refunds.
    /// @param leaseId the lease
    /// @param ckpt the lease's checkpoint word
    /// @param lastReportHash the lease's last settled report hash
    function reconcile(uint256 leaseId, uint256 ckpt, bytes32 lastReportHash) external;
    /// @notice Return an expired voucher's unused balance to its issuer (anyone, after expiry).
    /// @param voucherId the voucher
    function expireVoucher(uint256 voucherId) external;
    /// @notice Pull what the caller may withdraw in `token`.
    /// @param token the token (address(0) = ETH)
    /// @return amount what was sent
    function withdraw(address token) external returns (uint256 amount);

    // --- views --------------------------------------------------------------------------------------

    /// @notice A programme.
    /// @param programmeId the programme
    /// @return the programme
    function programme(uint256 programmeId) external view returns (Programme memory);
    /// @notice A voucher.
    /// @param voucherId the voucher
    /// @return the voucher
    function voucher(uint256 voucherId) external view returns (Voucher memory);
    /// @notice The voucher record of a lease (voucherId 0: not a voucher lease).
    /// @param leaseId the lease
    /// @return the record
    function voucherLease(uint256 leaseId) external view returns (VoucherLease memory);
    /// @notice Whether `offerId` is eligible for the programme, and if not, the rule it fails (see the error).
    /// @param programmeId the programme
    /// @param offerId the offer
    /// @return ok eligible
    /// @return rule the failed rule when not
    function eligible(uint256 programmeId, uint256 offerId) external view returns (bool ok, uint8 rule);
    /// @notice Whether `account` is on the programme's related-party list.
    /// @param programmeId the programme
    /// @param account the account
    /// @return related or not
    function isRelated(uint256 programmeId, address account) external view returns (bool);
    /// @notice What `account` may withdraw in `token`.
    /// @param account the payee
    /// @param token the token
    /// @return the amount
    function withdrawable(address account, address token) external view returns (uint256);
    /// @notice Σ programme pools + Σ unexpired voucher balances + Σ withdrawable, in `token`: what the vault owes.
    /// @param token the token
    /// @return the amount
    function liabilities(address token) external view returns (uint256);
    /// @notice Number of programmes.
    /// @return the count
    function programmeCount() external view returns (uint256);
    /// @notice Number of vouchers.
    /// @return the count
    function voucherCount() external view returns (uint256);
    /// @notice The escrow the vault opens leases in.
    /// @return the escrow
    function escrow() external view returns (address);
    /// @notice The issuer role id.
    /// @return keccak256("ISSUER_ROLE")
    // slither-disable-next-line naming-convention (the getter of a constant keeps the constant's name)
    function ISSUER_ROLE() external view returns (bytes32);
}
