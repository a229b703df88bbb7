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


def test_tiers_are_shown_before_and_fixed_at_opening(bridge: TestClient) -> None:
    client = bridge
    prov = setup_provider(client, ["GPU-t-0"], PRICE)
    _, bkey = new_account(client, "buyer")
    oid = prov["offerId"]
    tiers = [{"minDurationS": 2 * HOUR, "pricePerGpuSecondWei": PRICE // 2}]
    ok(client.post(f"/v1/offers/{oid}/tiers", json={"tiers": tiers}, headers=auth(prov["key"])))
    assert ok(client.get(f"/v1/offers/{oid}/price", params={"durationS": HOUR}))["pricePerGpuSecond"] == str(PRICE)
    shown = ok(client.get(f"/v1/offers/{oid}/price", params={"durationS": 2 * HOUR}))
    assert shown["pricePerGpuSecond"] == str(PRICE // 2) and shown["escrowWei"] == str(PRICE // 2 * 2 * HOUR)
    opened = ok(client.post("/v1/leases", json={"offerId": oid, "durationS": 2 * HOUR},
                            headers={**auth(bkey), "Idempotency-Key": "t-1"}))
    assert opened["result"]["totalWei"] == shown["totalWei"]
    # only the offer's provider sets its tiers; tiers out of order are refused with the field named
    assert client.post(f"/v1/offers/{oid}/tiers", json={"tiers": []}, headers=auth(bkey)).status_code == 403
    bad = [{"minDurationS": 2 * HOUR, "pricePerGpuSecondWei": 1}, {"minDurationS": HOUR, "pricePerGpuSecondWei": 1}]
    r = client.post(f"/v1/offers/{oid}/tiers", json={"tiers": bad}, headers=auth(prov["key"]))
    assert r.status_code == 422 and r.json()["detail"]["field"] == "tiers", r.text


def test_a_dynamic_price_is_shown_before_and_fixed_at_opening(bridge: TestClient) -> None:
    client = bridge
    prov = setup_provider(client, ["GPU-d-0"], PRICE)
    _, bkey = new_account(client, "buyer")
    oid = prov["offerId"]
    floor, ceiling = PRICE, 4 * PRICE
    # a band upside down is refused, by the API and (past it) by the contract
    r = client.post(f"/v1/offers/{oid}/dynamic-price", json={"floorPerGpuSecondWei": 2, "ceilingPerGpuSecondWei": 1},
                    headers=auth(prov["key"]))
    assert r.status_code == 422 and "floorPerGpuSecondWei must not be above" in r.text, r.text
    band = {"floorPerGpuSecondWei": floor, "ceilingPerGpuSecondWei": ceiling}
    assert client.post(f"/v1/offers/{oid}/dynamic-price", json=band, headers=auth(bkey)).status_code == 403
    ok(client.post(f"/v1/offers/{oid}/dynamic-price", json=band, headers=auth(prov["key"])))
    ok(client.post(f"/v1/offers/{oid}/dynamic-price/rights", json={"gpuSeconds": 10 * HOUR}, headers=auth(prov["key"])))
    dyn = ok(client.get(f"/v1/offers/{oid}/dynamic-price"))
    assert dyn["active"] and dyn["owner"] == prov["address"] and dyn["rights"] == 10 * HOUR
    assert dyn["askPerGpuSecond"] == dyn["rulePricePerGpuSecond"] == str(floor) and dyn["leasedGpuSeconds"] == 0
    # shown before opening: without a holder, the price is the pricer's
    shown = ok(client.get(f"/v1/offers/{oid}/price", params={"durationS": HOUR}))
    assert shown["holder"] == dyn["pricer"] and shown["pricePerGpuSecond"] == str(floor) and shown["dynamic"]["active"]
    opened = ok(client.post("/v1/leases", json={"offerId": oid, "durationS": HOUR, "holder": dyn["pricer"]},
                            headers={**auth(bkey), "Idempotency-Key": "d-1"}))
    assert opened["result"]["totalWei"] == shown["totalWei"]
    lid = opened["result"]["leaseId"]
    # the lease took HOUR of the offer's GPU-seconds: anyone reprices (no key), the ask rises by that share
    ok(client.post(f"/v1/offers/{oid}/dynamic-price/reprice"))
    dyn = ok(client.get(f"/v1/offers/{oid}/dynamic-price"))
    expected = floor + (ceiling - floor) * HOUR // dyn["mintedGpuSeconds"]
    assert dyn["leasedGpuSeconds"] == HOUR and dyn["askPerGpuSecond"] == dyn["rulePricePerGpuSecond"] == str(expected)
    assert floor <= expected <= ceiling
    assert int(ok(client.get(f"/v1/leases/{lid}"))["pricePerGpuSecond"]) == floor  # fixed at opening
    # nothing released to the pricer yet for this lease: a claim is refused with the contract's reason
    r = client.post(f"/v1/offers/dynamic-price/claims/{lid}")
    assert r.status_code in (402, 409) and r.json()["detail"]["details"]["error"] == "DynamicPricerNothingToClaim", r.text
    ok(client.delete(f"/v1/offers/{oid}/dynamic-price", headers=auth(prov["key"])))
    dyn = ok(client.get(f"/v1/offers/{oid}/dynamic-price"))
    assert not dyn["active"] and dyn["askPerGpuSecond"] == "0" and dyn["rights"] == 0
