"""A Python client of the Compute Ledger bridge, for buyers, providers, arbiters and auditors.

    from compute_ledger_client import ComputeLedger, format_eth

    cl = ComputeLedger("http://127.0.0.1:8000", api_key="cl_...")
    offer = cl.offers(gpu_model="h100").offers[0]
    lease = cl.lease(cl.open_lease(offer.offer_id, duration_s=3600).lease_id)
    print(format_eth(lease.money.escrow))

Sync (:class:`ComputeLedger`) and asyncio (:class:`AsyncComputeLedger`); API keys or a wallet key that signs
locally; an Idempotency-Key per money-moving call, reused on every retry; retries with backoff where they
cannot do anything twice; typed results with money as ``int`` wei; the bridge's errors as typed exceptions.
"""

from ._core import RetryPolicy
from .client import AsyncComputeLedger, ComputeLedger
from .errors import (
    ERROR_CODES,
    ApiError,
    ApprovalRequired,
    BadRequest,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerClientError,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
    WaitTimeout,
)
from .models import Action, Lease, Offer
from .money import WEI_PER_ETH, eth, format_eth, parse_eth

__version__ = "0.1.0"

__all__ = [
    "ERROR_CODES", "WEI_PER_ETH", "Action", "ApiError", "ApprovalRequired", "AsyncComputeLedger", "BadRequest",
    "ComputeLedger", "Conflict", "Forbidden", "IdempotencyConflict", "InsufficientFunds", "Lease",
    "LedgerClientError", "NotFound", "Offer", "OutcomeUnknown", "PayloadTooLarge", "RateLimited", "RetryPolicy",
    "ServerError", "TransportError", "Unauthorized", "UnsupportedMediaType", "ValidationError", "WaitTimeout", "eth",
    "format_eth", "parse_eth",
]
