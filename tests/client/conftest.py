"""The client against a real bridge: the in-process app on the memory chain (tests/api's fixtures), reached
through httpx transports (the app's TestClient for the sync client, ASGI for the async one)."""

from __future__ import annotations

from tests.api.conftest import bridge, bridge_settings, database_url, memory_chain, pg_server

__all__ = ["bridge", "bridge_settings", "database_url", "memory_chain", "pg_server"]
