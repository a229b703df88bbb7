"""The same flow against an anvil node started by the test, and a reorg (evm_snapshot / evm_revert)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from conftest import bridge_settings
from ledger.chain.backends import ANVIL_BIN, Chain, connect
from ledger.chain.deployment import Deployment
from ledger.chain.deploy import deploy_suite
from test_api_flow import run_full_flow
from test_api_relayer import run_reorg

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.skipif(not ANVIL_BIN.exists(), reason="anvil binary not installed (npm ci in contracts/)"),
]
SECRET = "anvil-test-secret-0123456789"


@pytest.fixture(scope="module")
def anvil_chain() -> Iterator[tuple[Chain, Deployment]]:
    chain = connect("anvil")
    try:
        yield chain, deploy_suite(chain, chain.accounts[0])
    finally:
        chain.close()


def test_api_full_flow_on_anvil(anvil_chain: tuple[Chain, Deployment], tmp_path: Path) -> None:
    chain, dep = anvil_chain
    snap = chain.snapshot()
    try:
        settings = bridge_settings(tmp_path, chain_backend="anvil", server_secret=SECRET)
        with TestClient(create_app(settings, chain=chain, deployment=dep)) as client:
            run_full_flow(client)
    finally:
        chain.revert(snap)


def test_api_erc20_flow_on_anvil(anvil_chain: tuple[Chain, Deployment], tmp_path: Path) -> None:
    from test_api_erc20 import run_erc20_flow

    chain, dep = anvil_chain
    snap = chain.snapshot()
    try:
        settings = bridge_settings(tmp_path, chain_backend="anvil", server_secret=SECRET)
        with TestClient(create_app(settings, chain=chain, deployment=dep)) as client:
            run_erc20_flow(client)
    finally:
        chain.revert(snap)


def test_indexer_rewinds_reorg_on_anvil(anvil_chain: tuple[Chain, Deployment], tmp_path: Path) -> None:
    run_reorg(*anvil_chain, tmp_path, chain_backend="anvil", server_secret=SECRET)


def test_server_refuses_default_secret_outside_memory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="default server secret"):
        create_app(bridge_settings(tmp_path, chain_backend="anvil"))


def test_contract_revert_is_mapped_on_anvil(anvil_chain: tuple[Chain, Deployment], tmp_path: Path) -> None:
    from bridge_helpers import auth
    from test_api_flow import PRICE, setup_provider

    chain, dep = anvil_chain
    snap = chain.snapshot()
    try:
        settings = bridge_settings(tmp_path, chain_backend="anvil", server_secret=SECRET)
        with TestClient(create_app(settings, chain=chain, deployment=dep)) as client:
            owner = setup_provider(client, ["GPU-anvil-own"], PRICE)
            other = setup_provider(client, ["GPU-anvil-oth"], PRICE)
            r = client.post(f"/v1/nodes/{owner['nodeId']}/deactivate", headers={"X-Wallet-Address": other["address"]})
            assert r.status_code == 403
            assert r.json()["detail"]["details"]["error"] == "CapacityRegistryNotNodeOwner"
            r = client.post(f"/v1/nodes/{owner['nodeId']}/deactivate", headers=auth(other["key"]))
            assert r.status_code == 403
    finally:
        chain.revert(snap)
