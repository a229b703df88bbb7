"""The bridge's errors as Python exceptions: one class per HTTP status, each carrying the API's ``code``,
``status``, ``message``, ``field`` and ``details``.

The bridge answers ``{"detail": {"code", "message", "field", "details"}}``; its table of codes is
``api/error_codes.py`` in the repository, copied in :data:`ERROR_CODES` (a test keeps the two equal).
Catch :class:`ApiError` for any refusal, or a subclass for one status (``except InsufficientFunds``), and
read ``e.code`` for the exact reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# code -> HTTP status: the bridge's table (api/error_codes.py), in its order
ERROR_CODES: dict[str, int] = {
    "invalid_report": 400,
    "unauthorized": 401,
    "insufficient_funds": 402,
    "forbidden": 403,
    "missing_role": 403,
    "wrong_signer": 403,
    "csrf": 403,
    "not_found": 404,
    "unknown_account": 404,
    "unknown_lease": 404,
    "unknown_node": 404,
    "unknown_offer": 404,
    "unknown_provider": 404,
    "unknown_report": 404,
    "unknown_sample": 404,
    "conflict": 409,
    "offer_expired": 409,
    "approval_required": 409,
    "idempotency_key_reused": 409,
    "idempotency_in_progress": 409,
    "idempotency_abandoned": 409,
    "idempotency_tx_unconfirmed": 409,
    "faucet_disabled": 409,
    "seq_conflict": 409,
    "seq_gap": 409,
    "chain_mismatch": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "invalid_json": 422,
    "unknown_token": 422,
    "not_a_token": 422,
    "node_lacks_gpm": 422,
    "rejected_by_contract": 422,
    "tx_rejected": 422,
    "invalid_transaction": 422,
    "wrong_chain": 422,
    "foreign_destination": 422,
    "unsettleable_report": 422,
    "samples_mismatch": 422,
    "figures_mismatch": 422,
    "window_in_future": 422,
    "rate_limited": 429,
    "no_key": 500,
    "key_unreadable": 500,
    "store_unavailable": 503,
    "chain_unavailable": 503,
    "intake_unavailable": 503,
    "auditor_unavailable": 503,
}


class LedgerClientError(Exception):
    """Base of everything this client raises."""


class ApiError(LedgerClientError):
    """The bridge refused the request: ``status`` (HTTP), ``code`` (machine-readable, see :data:`ERROR_CODES`),
    ``message`` (for people), ``field`` (the request field at fault, if any), ``details`` (e.g. the contract's
    error name and arguments in ``details["error"]`` / ``details["args"]``)."""

    status: int = 0

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: Mapping[str, Any] | None = None,
        method: str = "",
        path: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details: dict[str, Any] = dict(details or {})
        self.method = method
        self.path = path
        self.retry_after_s = retry_after_s

    @property
    def contract_error(self) -> str | None:
        """The contract's custom error name when the contract refused (``LeaseEscrowOfferBusy``), else None."""
        name = self.details.get("error")
        return name if isinstance(name, str) else None


class BadRequest(ApiError):
    """400: a metering body the protocol refuses (``invalid_report``)."""


class Unauthorized(ApiError):
    """401: no API key or wallet address, or an unknown key."""


class InsufficientFunds(ApiError):
    """402: the sender cannot pay value + gas, or the escrow or rights needed (dev chains: ``faucet``)."""


class Forbidden(ApiError):
    """403: not yours (another party's lease, node or offer), or the account lacks the role."""


class NotFound(ApiError):
    """404: no such account, lease, node, offer, report or sample."""


class Conflict(ApiError):
    """409: the state does not allow it (a closed lease, an expired offer, a busy Idempotency-Key, ...)."""


class ApprovalRequired(Conflict):
    """409 ``approval_required``: a wallet must first approve the ERC-20 pull. ``unsigned_tx`` is the
    approve, to sign and submit; then the same request (same Idempotency-Key) goes through. A client made
    with a wallet key does this itself."""

    @property
    def unsigned_tx(self) -> dict[str, Any]:
        tx = self.details.get("unsignedTx")
        return dict(tx) if isinstance(tx, Mapping) else {}


class IdempotencyConflict(Conflict):
    """409 ``idempotency_*``: the Idempotency-Key was used for another request, is still running, was cut off
    by a restart, or its transaction's outcome is not known yet (see ``code``)."""


class PayloadTooLarge(ApiError):
    """413: the request body is too large."""


class UnsupportedMediaType(ApiError):
    """415: the body is not JSON."""


class ValidationError(ApiError):
    """422: invalid input (``field`` names it), or the contract or the node refused the call."""


class RateLimited(ApiError):
    """429: too many requests (``retry_after_s`` says how long to wait). Retried by the client first."""


class ServerError(ApiError):
    """5xx: the bridge or the chain failed. Retried by the client first when that is safe."""


class TransportError(LedgerClientError):
    """The bridge could not be reached (connection refused, timed out, reset) after the client's retries."""


class OutcomeUnknown(TransportError):
    """The request was sent but its answer was lost, and the call carries no Idempotency-Key, so it was not
    sent again (it might have been applied). Read the state (the lease, the node) before trying again."""


class WaitTimeout(LedgerClientError):
    """A ``wait_for_*`` helper gave up: the condition did not hold within its timeout."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    402: InsufficientFunds,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    429: RateLimited,
}


def error_class(status: int, code: str) -> type[ApiError]:
    """The exception class for an error answer."""
    if code == "approval_required":
        return ApprovalRequired
    if code.startswith("idempotency_"):
        return IdempotencyConflict
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


def error_from_answer(
    status: int, body: Any, *, method: str = "", path: str = "", retry_after_s: float | None = None
) -> ApiError:
    """The exception for an error answer of the bridge (any body: a proxy's HTML page becomes ``http_<status>``)."""
    detail = body.get("detail") if isinstance(body, Mapping) else None
    if isinstance(detail, Mapping) and isinstance(detail.get("code"), str):
        code, message = str(detail["code"]), str(detail.get("message", ""))
        field = detail.get("field")
        details = detail.get("details")
    else:
        code, field, details = f"http_{status}", None, None
        message = str(detail) if detail is not None else (str(body)[:300] if body else f"HTTP {status}")
    cls = error_class(status, code)
    return cls(
        status, code, message,
        field=field if isinstance(field, str) else None,
        details=details if isinstance(details, Mapping) else None,
        method=method, path=path, retry_after_s=retry_after_s,
    )  # fmt: skip
