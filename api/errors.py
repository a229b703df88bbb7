"""Errors of the bridge: one base exception, one JSON shape, contract reverts mapped to statuses.

Every error response is ``{"detail": {"code": ..., "message": ..., "field": ..., "details": ...}}`` (the
shape of FastAPI's ``HTTPException(detail={...})``, which the attestor's client reads).
Errors of the chain layer (``ledger.chain.errors``; contract reverts arrive decoded as
``ContractRevert(name, args)``) become statuses here, in :func:`from_chain`, and nowhere else.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from ledger.chain.errors import (
    ChainError,
    ChainUnavailable as ChainDown,
    InsufficientFunds,
    NoKey,
    StateUnavailable,
    TxRejected,
    UnknownLease,
)
from ledger.chain.reverts import ContractRevert
from ledger.protocol.economics import LeaseStatus


class ApiError(Exception):
    """Base of the bridge's errors: an HTTP status, a machine-readable code and a human message.
    ``replayable``: a 4xx is stored under an Idempotency-Key and answered again to a retry, unless False
    (a refusal the caller can lift, e.g. a missing ERC-20 approval)."""

    replayable = True

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        if self.details:
            err["details"] = self.details
        return {"detail": err}


class NotFound(ApiError, LookupError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__(404, f"unknown_{what}", f"{what} {ident} does not exist", details={"what": what, "id": str(ident)})


class Forbidden(ApiError, PermissionError):
    def __init__(self, message: str, code: str = "forbidden") -> None:
        super().__init__(403, code, message)


class Unauthorized(ApiError):
    def __init__(self, message: str = "missing or invalid API key") -> None:
        super().__init__(401, "unauthorized", message)


class Conflict(ApiError):
    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(409, code, message, details=details)


class Invalid(ApiError, ValueError):
    def __init__(self, message: str, field: str | None = None, code: str = "validation_error") -> None:
        super().__init__(422, code, message, field=field)


class ChainUnavailable(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(503, "chain_unavailable", message)


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable error code")
    message: str = Field(description="what went wrong, for humans")
    field: str | None = Field(default=None, description="the request field at fault (validation errors)")
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    detail: ErrorDetail


# name fragments of contract custom errors -> HTTP status (the first match wins, checked in order)
_REVERT_STATUS: tuple[tuple[re.Pattern[str], int, str], ...] = tuple(
    (re.compile(p), s, c)
    for p, s, c in (
        (r"Unauthorized|NotBuyer|NotProvider|NotOwner|NotNodeOwner|NotLeaseBuyer|NotLeaseProvider|NotProviderSide|BuyerScoreTooLow|NotEnded|AccessControl|NotHolder|NotAttestor|NotArbiter|NotPayout|Forbidden|OnlyBuyer|OnlyProvider|CallerNot|WrongCaller|NotAuthori[sz]ed|SelfRating|BuyerIsProvider|NotBeneficiary|NotIssuer|RelatedParty", 403, "forbidden"),
        (r"Unknown|NotFound|Nonexistent|DoesNotExist|NoSuch", 404, "not_found"),
        (r"InsufficientBalance|InsufficientFunds|InsufficientEscrow|InsufficientPayment|InsufficientRights|Insufficient", 402, "insufficient_funds"),
        (r"Closed|NotActive|NotOpen|Inactive|Already|Expired|Exhausted|Paused|EnforcedPause|Disputed|DisputeOpen|NoDispute|Status|State|Unbonding|OpenLeases|Nothing|NoDispute|NotRateable|Busy|Stale|AlreadyOffered|TooEarly|TooLate|Period|Reentrancy|NotFinal|NotExpired", 409, "conflict"),
    )
)


def revert_status(name: str) -> tuple[int, str]:
    """HTTP status and code for a contract custom error's name (422 for a rejected argument)."""
    if name != "Unknown":  # "Unknown" is a revert without error data (ledger.chain.reverts), not "not found"
        for pattern, status, code in _REVERT_STATUS:
            if pattern.search(name):
                return status, code
    return 422, "rejected_by_contract"


def wide_json(value: Any) -> Any:
    """Values to JSON with every integer as a decimal string (event and contract arguments: uint256 on chain, so
    one encoding whatever the value); booleans stay booleans, bytes become 0x-hex."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): wide_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wide_json(v) for v in value]
    return value


def jsonable(value: Any) -> Any:
    """Values to JSON: bytes as 0x-hex, ints above 2**53 as decimal strings (JavaScript loses digits)."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**53) < value < 2**53 else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


# What the contract's refusals mean, in words (arguments by name); the rest say "the contract refused: <name>".
_EXPLAIN: dict[str, str] = {
    "LeaseEscrowNotEnded": "only the buyer may close lease {leaseId} before it ends (at {endMs} unix ms)",
    "LeaseEscrowBadStatus": "lease {leaseId} is {status}: this cannot be done in that state",
    "LeaseEscrowNotRateable": "lease {leaseId} is {status}: it can be rated once Closed or Exhausted",
    "LeaseEscrowNotBuyer": "{caller} is not lease {leaseId}'s buyer",
    "LeaseEscrowNotProviderSide": "{caller} is not lease {leaseId}'s provider, payout address or attestor",
    "LeaseEscrowInChallengePeriod": "lease {leaseId}'s charges can be released from {endsAt} (unix s), after the "
    "challenge period",
    "LeaseEscrowNothingToRelease": "lease {leaseId} has no charges waiting for release",
    "LeaseEscrowDisputeOpen": "lease {leaseId} has an open dispute: its charges are frozen until an arbiter rules "
    "(GET /v1/disputes)",
    "LeaseEscrowNoDispute": "lease {leaseId} has no open dispute",
    "LeaseEscrowAlreadyDisputed": "lease {leaseId} is already disputed",
    "LeaseEscrowNothingToDispute": "lease {leaseId} has no charges within their challenge period to dispute",
    "LeaseEscrowChallengePeriodOver": "lease {leaseId}'s challenge period ended at {endedAt} (unix s)",
    "LeaseEscrowStartByPassed": "lease {leaseId} had to start by {startBy} (unix s)",
    "LeaseEscrowStartByNotPassed": "lease {leaseId} can only expire after its start deadline {startBy} (unix s)",
    "LeaseEscrowOfferBusy": "offer {offerId} is taken by lease {liveLeaseId}",
    "LeaseEscrowNodeInactive": "node {nodeId} is deactivated",
    "LeaseEscrowNothingToWithdraw": "{account} has nothing to withdraw in {token}",
    "LeaseEscrowTotalAboveMax": "the lease costs {total} in total, above maxTotalWei {maxTotal}",
    "LeaseEscrowTopUpNotWholeSeconds": "amountWei must be a multiple of price × gpuCount ({unit})",
    "LeaseEscrowBeyondOffer": "lease {leaseId} would end at {endS} (unix s), after its offer's validUntil {validUntil}",
    "VoucherVaultNotBeneficiary": "{caller} is not voucher {voucherId}'s beneficiary",
    "VoucherVaultNotIssuer": "{caller} is not programme {programmeId}'s issuer",
    "VoucherVaultRelatedParty": "{account} is the beneficiary or a related party of voucher {voucherId}'s programme: "
    "it may neither redeem nor be paid by a voucher lease",
    "VoucherVaultExpired": "voucher {voucherId} expired at {expiry} (unix s)",
    "VoucherVaultNotExpired": "voucher {voucherId} expires at {expiry} (unix s), or was already expired",
    "VoucherVaultExhausted": "voucher {voucherId} has nothing left to pay (or its co-pay share is 100 %)",
    "VoucherVaultIneligibleOffer": "offer {offerId} is not eligible for voucher {voucherId}'s programme (rule {rule}: "
    "0 token, 1 GPU model, 2 region, 3 provider)",
    "VoucherVaultCopayAboveMax": "the co-pay is {copay}, above maxCopayWei {maxCopay}",
    "VoucherVaultPoolTooSmall": "programme {programmeId}'s unallocated pool is {pool}, less than {wanted}",
    "VoucherVaultProgrammeClosed": "programme {programmeId} is closed",
    "VoucherVaultLeaseNotFinal": "lease {leaseId} has not ended with its fees settled yet: reconcile after it closed "
    "and its earnings were released",
    "VoucherVaultAlreadyReconciled": "lease {leaseId} was already reconciled",
    "VoucherVaultNothingToWithdraw": "{account} has nothing to withdraw from the voucher vault in {token}",
    "LeaseEscrowBuyerScoreTooLow": "the offer asks a buyer score of at least {minimum} bps; {buyer} has {score}",
}


def _named(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Contract arguments for people: lease statuses as names (``Closed``, not 3)."""
    out = dict(kwargs)
    for k in ("status", "st"):
        if k in out and isinstance(out[k], int):
            try:
                out[k] = LeaseStatus(out[k]).label
            except ValueError:
                pass
    return out


def revert_error(rev: ContractRevert) -> ApiError:
    """The API error for a contract's refusal: status by the error's name, a sentence saying what it means,
    the name and args (statuses as names) in details."""
    status, code = revert_status(rev.name)
    args = _named(dict(rev.kwargs))
    template = _EXPLAIN.get(rev.name)
    try:
        message = template.format(**args) if template else f"the contract refused: {rev.name}"
    except (KeyError, IndexError):
        message = f"the contract refused: {rev.name}"
    return ApiError(status, code, message, details={"error": rev.name, "args": jsonable(args)})


def from_chain(e: ChainError) -> ApiError:
    """The one mapping of chain-layer errors to API errors."""
    if isinstance(e, ContractRevert):
        return revert_error(e)
    if isinstance(e, InsufficientFunds):
        return ApiError(402, "insufficient_funds", "the sender cannot pay for this transaction (value + gas): fund the "
                        "account (dev chains: POST /v1/faucet)")
    if isinstance(e, TxRejected):
        return ApiError(422, "tx_rejected", f"the node refused the transaction: {e}")
    if isinstance(e, UnknownLease):
        return NotFound("lease", str(e).rsplit(" ", 1)[-1])
    if isinstance(e, StateUnavailable):
        return ChainUnavailable(f"the lease's settlement state cannot be rebuilt from the escrow's events now: {e}")
    if isinstance(e, NoKey):
        return ApiError(500, "no_key", str(e))
    if isinstance(e, ChainDown):
        return ChainUnavailable(str(e))
    return ChainUnavailable(f"chain error: {e}")


# Statuses every route may answer; declared on every route so the OpenAPI document is true.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or invalid API key"},
    402: {"model": ErrorResponse, "description": "not enough funds (value, gas, escrow or capacity rights)"},
    403: {"model": ErrorResponse, "description": "the caller may not do this"},
    404: {"model": ErrorResponse, "description": "unknown id"},
    409: {"model": ErrorResponse, "description": "the state does not allow it (closed lease, key reuse, ...)"},
    413: {"model": ErrorResponse, "description": "request body too large"},
    422: {"model": ErrorResponse, "description": "invalid request: the field is named"},
    429: {
        "model": ErrorResponse,
        "description": "rate_limited: too many requests from this client; the Retry-After header says when to retry",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
    },
    503: {"model": ErrorResponse, "description": "the chain is unreachable"},
}
MONEY_RESPONSES: dict[int | str, dict[str, Any]] = dict(COMMON_RESPONSES)
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: COMMON_RESPONSES[404],
    413: COMMON_RESPONSES[413],
    422: COMMON_RESPONSES[422],
    503: COMMON_RESPONSES[503],
}
