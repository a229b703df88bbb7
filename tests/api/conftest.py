"""Fixtures: one memory chain and deployment per module, a fresh bridge (store) per test on a snapshot.

The store: SQLite by default; a module that sets ``BOTH_STORES = True`` runs each test that takes the
``database_url`` fixture (directly or through ``bridge``) twice, on SQLite and on a fresh database of a private
PostgreSQL server (``tests/support/postgres.py``, started once per session on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.support.postgres import PgServer, start_server
from api.settings import Settings
from ledger.chain.backends import Chain, connect
from ledger.chain.deployment import Deployment
from ledger.chain.deploy import deploy_suite


@pytest.fixture(scope="module")
def memory_chain() -> Iterator[tuple[Chain, Deployment]]:
    chain = connect("memory")
    dep = deploy_suite(chain, chain.accounts[0])
    yield chain, dep
    chain.close()


STORES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames and getattr(metafunc.module, "BOTH_STORES", False):
        metafunc.parametrize("database_url", STORES, indirect=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_server()
    except FileNotFoundError as e:  # CI installs Debian's postgresql (make test): there this never skips
        pytest.skip(str(e))
    yield server
    server.stop()


@pytest.fixture()
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (SQLite in the test's data directory) or the URL of a fresh PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    server: PgServer = request.getfixturevalue("pg_server")
    return server.create_database()


def bridge_settings(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "chain_backend": "memory",
        "data_dir": data_dir,
        "background": False,
        "settle_every_s": 300.0,
        "settle_threshold_wei": 10**30,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture()
def bridge(memory_chain: tuple[Chain, Deployment], tmp_path: Path, database_url: str | None) -> Iterator[TestClient]:
    chain, dep = memory_chain
    snap = chain.snapshot()
    app = create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        chain.revert(snap)
