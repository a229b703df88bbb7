"""Resale of capacity rights through the API: a holder lists its rights at its own price; a lease of them
(POST /v1/leases with that holder) escrows and fixes that price; the ask and the rights are readable."""

from __future__ import annotations

from fastapi.testclient import TestClient

from bridge_helpers import auth, new_account, ok
from test_api_flow import HOUR, PRICE, setup_provider


def test_a_listed_ask_prices_the_lease(bridge: TestClient) -> None:
    client = bridge
    prov = setup_provider(client, ["GPU-r-0"], PRICE)
    _, bkey = new_account(client, "buyer")
    oid = prov["offerId"]
    ask = 2 * PRICE
    ok(client.post(f"/v1/offers/{oid}/listing", json={"pricePerGpuSecondWei": ask}, headers=auth(prov["key"])))
    got = ok(client.get(f"/v1/offers/{oid}/asks/{prov['address']}"))
    assert (got["askPerGpuSecond"], got["leasePricePerGpuSecond"]) == (str(ask), str(ask)) and got["rights"] > HOUR
    opened = ok(client.post("/v1/leases", json={"offerId": oid, "durationS": HOUR},
                            headers={**auth(bkey), "Idempotency-Key": "r-1"}))
    assert opened["result"]["escrowWei"] == str(ask * HOUR)
    lease = ok(client.get(f"/v1/leases/{opened['result']['leaseId']}"))
    assert int(lease["pricePerGpuSecond"]) == ask
    # a buyer holds no rights of the offer: its ask is refused with the contract's reason
    r = client.post(f"/v1/offers/{oid}/listing", json={"pricePerGpuSecondWei": 1}, headers=auth(bkey))
    assert r.status_code == 402 and r.json()["detail"]["details"]["error"] == "CapacityRegistryInsufficientRights", r.text
    assert client.post(f"/v1/offers/{oid}/listing", json={"pricePerGpuSecondWei": 2**96}, headers=auth(bkey)).status_code == 422
