"""Browser sessions of the web market: a managed account logs in with its API key once; the browser then holds
only an opaque session id (an HttpOnly, SameSite=Strict cookie set by ``api.routers.web``), never the key.

Sessions live in the bridge's memory (a restart logs everyone out) and expire after ``ttl_s`` idle. Forms are
protected against cross-site requests by a signed double-submit token: the browser holds a random nonce in
an HttpOnly cookie and each form carries HMAC(server secret, nonce), which a foreign site can neither read nor
forge."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

SESSION_TTL_S = 8 * 3600
MAX_SESSIONS = 10_000


@dataclass
class _Session:
    api_key: str
    address: str
    seen: float


class WebSessions:
    def __init__(self, secret: str, ttl_s: int = SESSION_TTL_S) -> None:
        self._secret = hashlib.sha256(b"web-csrf:" + secret.encode()).digest()
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._by_id: dict[str, _Session] = {}  # keyed by sha256(session id): the ids themselves are not kept

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def open(self, api_key: str, address: str) -> str:
        """A new session for a verified API key; returns its id (for the cookie)."""
        sid = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                self._expire(now)
            if len(self._by_id) >= MAX_SESSIONS:  # still full: drop the least recently seen
                oldest = min(self._by_id, key=lambda k: self._by_id[k].seen)
                del self._by_id[oldest]
            self._by_id[self._key(sid)] = _Session(api_key, address, now)
        return sid

    def api_key(self, session_id: str | None) -> str | None:
        """The API key behind a live session id (None: no session, unknown or expired)."""
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            s = self._by_id.get(self._key(session_id))
            if s is None or now - s.seen > self._ttl:
                self._by_id.pop(self._key(session_id), None)
                return None
            s.seen = now
            return s.api_key

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._by_id.pop(self._key(session_id), None)

    def _expire(self, now: float) -> None:
        for k in [k for k, s in self._by_id.items() if now - s.seen > self._ttl]:
            del self._by_id[k]

    # --- CSRF: signed double submit ---------------------------------------------------------------------

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)
