"""Fixtures: one memory chain and deployment per module, a fresh bridge (store) per test on a snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
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
def bridge(memory_chain: tuple[Chain, Deployment], tmp_path: Path) -> Iterator[TestClient]:
    chain, dep = memory_chain
    snap = chain.snapshot()
    app = create_app(bridge_settings(tmp_path), chain=chain, deployment=dep)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        chain.revert(snap)
