"""The machinery shared by the sync and the async client: every call is a *program*, a generator that yields
steps (an HTTP request, a pause) and receives their results; the two clients only differ in how they run a
step (``httpx.Client`` and ``time.sleep``, or ``httpx.AsyncClient`` and ``asyncio.sleep``). So every route,
the wallet's sign-and-submit, and the waiting helpers are written once, and behave the same in both.

The retry rule (:class:`RetryPolicy`) is here too:

- a request that never reached the bridge (connection refused, connect timeout) is sent again;
- 429 is sent again after ``Retry-After`` (the bridge refused it before doing anything);
- a lost answer (read timeout, connection reset), a 5xx, or a 409 saying the same Idempotency-Key is still
  running or its transaction is not confirmed yet, is sent again **only** when sending it twice cannot do
  it twice: reads, and writes that carry an Idempotency-Key (the bridge answers a retry with the first
  answer). A write without a key is never sent twice after it may have arrived: :class:`OutcomeUnknown`.
"""

from __future__ import annotations

import datetime
import random
import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from .errors import ApiError, OutcomeUnknown, TransportError, error_from_answer

T = TypeVar("T")

# connection-level failures after which the request certainly did not reach the bridge
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_CODES_WITH_KEY = ("idempotency_in_progress", "idempotency_tx_unconfirmed")


def new_idempotency_key(prefix: str) -> str:
    """A fresh key for one logical call (reused by every retry of that call)."""
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Request:
    """One HTTP request of a program. ``idempotency_key``: sent as the header (writes that move money);
    ``repeatable``: sending it twice cannot do anything twice (reads, keyed writes, a wallet's unsigned
    builds)."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    repeatable: bool = False
    raw: bool = False  # the answer's text, not JSON (the ndjson archive)

    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}

    def query(self) -> dict[str, Any] | None:
        if self.params is None:
            return None
        return {k: _query_value(v) for k, v in self.params.items() if v is not None}


def _query_value(v: Any) -> Any:
    return ("true" if v else "false") if isinstance(v, bool) else v


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Request | Sleep


@dataclass(frozen=True)
class Reply:
    """A 2xx answer: its status, parsed JSON (or text when ``Request.raw``) and headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed", "").lower() == "true"


Program = Generator[Step, Any, T]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. Delays grow as ``backoff_s * 2**attempt`` up to ``max_backoff_s``,
    with jitter; a 429's ``Retry-After`` is honoured up to ``max_retry_after_s``."""

    max_retries: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int) -> float:
        d = min(self.max_backoff_s, self.backoff_s * float(2**attempt))
        return d / 2 + random.uniform(0, d / 2)

    def outcome(
        self, req: Request, attempt: int, resp: httpx.Response | None, exc: httpx.TransportError | None
    ) -> Reply | float:
        """The reply, or how long to wait before sending ``req`` again; raises when it is not sent again."""
        left = attempt < self.max_retries
        if exc is not None or resp is None:
            if left and (isinstance(exc, _NOT_SENT) or req.repeatable):
                return self.delay(attempt)
            if isinstance(exc, _NOT_SENT) or req.repeatable:
                raise TransportError(f"{req.method} {req.path}: the bridge could not be reached ({exc!r})") from exc
            raise OutcomeUnknown(
                f"{req.method} {req.path}: the request was sent but its answer was lost ({exc!r}); it carries no "
                "Idempotency-Key, so it was not sent again: check its effect before repeating it"
            ) from exc
        if resp.status_code < 400:
            return Reply(resp.status_code, resp.text if req.raw else _json(resp), resp.headers)
        retry_after = _retry_after(resp.headers.get("retry-after"))
        err = error_from_answer(
            resp.status_code, _json(resp), method=req.method, path=req.path, retry_after_s=retry_after
        )
        if left and _transient(req, err):
            if err.status == 429 and retry_after is not None:
                return min(retry_after, self.max_retry_after_s)
            return self.delay(attempt)
        raise err


def _transient(req: Request, err: ApiError) -> bool:
    if err.status == 429:
        return True  # refused before anything was done
    if err.code in ("no_key", "key_unreadable"):
        return False  # the bridge's configuration, not a passing failure
    if err.status >= 500:
        return req.repeatable
    return req.idempotency_key is not None and err.code in _RETRY_CODES_WITH_KEY


def _json(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError):
        return None
