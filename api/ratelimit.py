"""Per-client token buckets for the requests anyone may send without a key and that cost the bridge work:
account creation, the faucet and report intake. A client is its IP address (the TCP peer: behind a proxy,
the proxy must limit instead). A request over the limit is answered 429 ``rate_limited`` with Retry-After,
before its body is read."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError


@dataclass(frozen=True)
class Limit:
    """``burst`` requests at once, then ``per_s`` a second."""

    burst: float
    per_s: float


class TokenBuckets:
    """One bucket per key, refilled at ``limit.per_s`` up to ``limit.burst``; the least recently used keys
    are forgotten past ``max_keys`` (a forgotten client starts with a full bucket)."""

    def __init__(self, limit: Limit, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go; otherwise the seconds until a token is there."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.limit.burst, now))
            tokens = min(self.limit.burst, tokens + (now - at) * self.limit.per_s)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.limit.per_s
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait


class RateLimitMiddleware:
    """Limits POSTs to the exact paths in ``limits`` per client."""

    def __init__(self, app: ASGIApp, limits: dict[str, Limit]) -> None:
        self.app = app
        self.buckets = {path: TokenBuckets(limit) for path, limit in limits.items() if limit.per_s > 0}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        buckets = self.buckets.get(str(scope.get("path", ""))) if scope["type"] == "http" else None
        if buckets is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = buckets.take(str(client[0]) if client else "unknown")
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        limit = buckets.limit
        err = ApiError(
            429,
            "rate_limited",
            f"too many requests to {scope.get('path')} from this client (at most {limit.burst:g} at once, then "
            f"{limit.per_s:g} a second): retry after {retry_after} s",
        )
        resp = JSONResponse(status_code=429, content=err.body(), headers={"Retry-After": str(retry_after)})
        await resp(scope, receive, send)
