"""GET /v1/chain: what an auditor needs to find the chain on its own and check the bridge against it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from ledger.chain.contracts import escrow_abi
from ledger.protocol import DOMAIN_NAME, DOMAIN_VERSION


def test_chain_document_names_the_chain_the_deployment_and_the_domain(bridge: TestClient) -> None:
    info: dict[str, Any] = bridge.get("/v1/chain").json()
    dep = info["deployment"]
    assert info["chainId"] == dep["chainId"] == info["domain"]["chainId"]
    assert info["domain"] == {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": dep["chainId"],
        "verifyingContract": dep["addresses"]["LeaseEscrow"],
    }
    assert info["rpcUrl"] is None and "memory backend" in info["rpcNote"]  # the chain lives in the bridge
    health = bridge.get("/v1/health").json()
    assert (health["escrow"], health["registry"]) == (dep["addresses"]["LeaseEscrow"], dep["addresses"]["CapacityRegistry"])
    assert set(info["abis"]) == {"CapacityRegistry", "Reputation", "LeaseEscrow", "LeaseEscrowExtension", "VoucherVault",
                                "DynamicPricer"}
    assert set(dep["addresses"]) == set(info["abis"])
    abi = bridge.get(info["abis"]["LeaseEscrow"]).json()
    assert abi == list(escrow_abi())  # the whole escrow interface at its one address, views included
    assert {"settle", "leaseTerms", "stateHash"} <= {x.get("name") for x in abi}
    missing = bridge.get("/v1/chain/abi/Nope")
    assert missing.status_code == 404 and missing.json()["detail"]["code"] == "not_found"
