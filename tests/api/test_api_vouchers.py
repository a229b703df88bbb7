"""Compute vouchers through the HTTP API on the memory chain: an issuer account funds a programme and grants a
voucher; the beneficiary leases with it (co-pay only from its wallet); metering settles; close, release,
close-out; the redemption report as JSON and CSV matches the chain; refusals come with their reasons."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from bridge_helpers import auth, new_account, ok, submission
from test_api_flow import HOUR, PRICE, attestor_for, services, setup_provider

FACE = 10**16


def test_voucher_programme_through_the_api(bridge: TestClient) -> None:
    client = bridge
    svc = services(client)
    chain = svc.chain
    prov = setup_provider(client, ["GPU-v-0", "GPU-v-1"], PRICE, region="eu-west1", model="NVIDIA H100")
    other = setup_provider(client, ["GPU-v-9"], PRICE, region="us-east1", model="NVIDIA L4")
    issuer, ikey = new_account(client, "issuer")
    buyer, bkey = new_account(client, "buyer")

    created = ok(client.post("/v1/programmes", json={"gpuModels": ["NVIDIA H100"], "regions": ["eu-west1"]},
                             headers=auth(ikey)))
    pid = int(created["result"]["programmeId"])
    ok(client.post(f"/v1/programmes/{pid}/fund", json={"amountWei": 2 * FACE},
                   headers={**auth(ikey), "Idempotency-Key": "fund-1"}))
    # a retried funding request funds once
    ok(client.post(f"/v1/programmes/{pid}/fund", json={"amountWei": 2 * FACE},
                   headers={**auth(ikey), "Idempotency-Key": "fund-1"}))
    granted = ok(client.post(f"/v1/programmes/{pid}/vouchers", json={
        "beneficiary": buyer, "faceValueWei": FACE, "expiry": chain.now() + 7 * 86_400, "copayBps": 2_000,
    }, headers=auth(ikey)))
    vid = int(granted["result"]["voucherId"])
    assert ok(client.get(f"/v1/programmes/{pid}"))["poolWei"] == str(FACE)
    # a buyer is not an issuer; the vault's ISSUER_ROLE decides
    r = client.post("/v1/programmes", json={}, headers=auth(bkey))
    assert r.status_code == 403, r.text

    # an ineligible offer is refused with its rule; someone else's voucher is not theirs
    r = client.post(f"/v1/vouchers/{vid}/leases", json={"offerId": other["offerId"], "durationS": HOUR},
                    headers={**auth(bkey), "Idempotency-Key": "bad-1"})
    assert r.status_code == 422 and r.json()["detail"]["details"]["error"] == "VoucherVaultIneligibleOffer", r.text
    _, b2key = new_account(client, "buyer")
    r = client.post(f"/v1/vouchers/{vid}/leases", json={"offerId": prov["offerId"], "durationS": HOUR},
                    headers={**auth(b2key), "Idempotency-Key": "bad-2"})
    assert r.status_code == 403, r.text

    opened = ok(client.post(f"/v1/vouchers/{vid}/leases", json={"offerId": prov["offerId"], "durationS": HOUR},
                            headers={**auth(bkey), "Idempotency-Key": "vl-1"}))
    lid = int(opened["result"]["leaseId"])
    total, copay = int(opened["result"]["totalWei"]), int(opened["result"]["copayWei"])
    assert copay == total - total * 8_000 // 10_000
    lease = ok(client.get(f"/v1/leases/{lid}"))
    assert lease["buyer"] == svc.deployment.voucher_vault
    assert int(ok(client.get(f"/v1/vouchers/{vid}"))["balanceWei"]) == FACE - (total - copay)

    ok(client.post(f"/v1/leases/{lid}/activate", headers=auth(prov["key"])))
    att = attestor_for(client, prov, lid)
    chain.time_travel(chain.now() + 10 * 60)
    for _ in range(2):
        rep, sig, samples = att.next_report()
        ok(client.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
    assert svc.relayer.flush() == 1
    r = client.post(f"/v1/leases/{lid}/reconcile")
    assert r.status_code == 409, r.text  # not ended yet
    ok(client.post(f"/v1/leases/{lid}/voucher-close", headers=auth(bkey)))
    chain.time_travel(chain.now() + svc.deployment.challenge_period_s + 1)
    ok(client.post(f"/v1/leases/{lid}/release-earnings", headers=auth(prov["key"])))
    done = ok(client.post(f"/v1/leases/{lid}/reconcile"))
    closed_out = [e for e in done["events"] if e["name"] == "RedemptionClosedOut"][0]["args"]
    charged = PRICE * att.cum["alloc"] // 1000
    assert int(closed_out["voucherSpent"]) + int(closed_out["copaySpent"]) == charged + charged * 250 // 10_000

    report = ok(client.get(f"/v1/programmes/{pid}/redemptions"))
    (row,) = report["leases"]
    assert row["leaseId"] == lid and row["status"] == "closed-out" and row["charged"] == str(charged)
    assert row["voucherSpent"] == closed_out["voucherSpent"] and len(row["evidence"]["reportHashes"]) == 1
    assert report["voucherSpent"] == ok(client.get(f"/v1/programmes/{pid}"))["spentWei"]
    r = client.get(f"/v1/programmes/{pid}/redemptions", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["leaseId"] == str(lid) and rows[0]["voucherSpent"] == closed_out["voucherSpent"]
    assert client.get("/v1/programmes/99/redemptions").status_code == 404

    refund = int(closed_out["copayReturned"])
    w = ok(client.post("/v1/vouchers/withdraw", json={}, headers=auth(bkey)))
    assert [int(e["args"]["amount"]) for e in w["events"] if e["name"] == "VaultWithdrawn"] == [refund]
    r = client.post("/v1/vouchers/withdraw", json={}, headers=auth(bkey))
    assert r.status_code == 409, r.text
    ok(client.post(f"/v1/programmes/{pid}/close", headers=auth(ikey)))
    r = client.post(f"/v1/programmes/{pid}/fund", json={"amountWei": 1}, headers={**auth(ikey), "Idempotency-Key": "f2"})
    assert r.status_code == 409 and "closed" in r.json()["detail"]["message"], r.text
    assert issuer != buyer
