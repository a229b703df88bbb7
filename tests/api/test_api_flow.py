"""End to end through the HTTP API on the memory chain: provider, buyer, attestor, relayer, auditor."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from fastapi.testclient import TestClient

from ledger.protocol import gpu_set_hash, gpu_uuid_hash

from bridge_helpers import SigningAttestor, auth, new_account, ok, submission

PRICE = 10**9  # wei per GPU-second
HOUR = 3600

BOTH_STORES = True  # each test that takes the bridge runs on SQLite and on PostgreSQL (conftest)


def services(client: TestClient) -> Any:
    return client.app.state.bridge  # type: ignore[attr-defined]


def setup_provider(
    client: TestClient,
    uuids: list[str],
    price: int,
    region: str = "eu-west",
    model: str = "NVIDIA H100",
    token: str | None = None,
    billing_mode: str = "reserved",
    gpm: bool = True,
) -> dict[str, Any]:
    """A provider with one node and one offer on all its GPUs (priced in ``token``, default ETH); returns
    ids, keys and the attestor key."""
    chain = services(client).chain
    addr, key = new_account(client, "provider")
    ok(client.post("/v1/providers", json={"metadataURI": "https://example.invalid/p"}, headers=auth(key)))
    attestor = Account.create()
    node = ok(
        client.post(
            "/v1/nodes",
            json={
                "attestor": attestor.address,
                "gpuModel": model,
                "gpuUuids": uuids,
                "vramMiB": 81_559,
                "maxPowerMwPerGpu": 700_000,
                "region": region,
                "gpm": gpm,
            },
            headers=auth(key),
        )
    )
    node_id = node["result"]["nodeId"]
    now = chain.now()
    offer = ok(
        client.post(
            "/v1/offers",
            json={
                "nodeId": node_id,
                "gpuIndices": list(range(len(uuids))),
                "pricePerGpuSecondWei": price,
                "validFrom": now,
                "validUntil": now + 2 * 86_400,
                "billingMode": billing_mode,
                **({"token": token} if token is not None else {}),
            },
            headers=auth(key),
        )
    )
    return {
        "address": addr,
        "key": key,
        "attestor": attestor,
        "nodeId": node_id,
        "offerId": offer["result"]["offerId"],
        "gpuSetHash": gpu_set_hash([gpu_uuid_hash(u) for u in uuids]),
    }


def open_and_activate(client: TestClient, buyer_key: str, prov: dict[str, Any], idem: str) -> int:
    lease = ok(
        client.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": HOUR}, headers={**auth(buyer_key), "Idempotency-Key": idem})
    )
    lease_id = int(lease["result"]["leaseId"])
    ok(client.post(f"/v1/leases/{lease_id}/activate", headers=auth(prov["key"])))
    return lease_id


def attestor_for(client: TestClient, prov: dict[str, Any], lease_id: int) -> SigningAttestor:
    svc = services(client)
    lease = ok(client.get(f"/v1/leases/{lease_id}"))
    return SigningAttestor(
        key=bytes(prov["attestor"].key),
        chain_id=svc.ledger.chain_id,
        escrow=svc.deployment.escrow,
        lease_id=lease_id,
        gpu_indices=lease["gpuIndices"],
        gpu_set_hash=prov["gpuSetHash"],
        lease_start_ms=lease["startMs"],
    )


def test_api_full_flow_settles_in_batches_and_pays_out(bridge: TestClient) -> None:
    run_full_flow(bridge)


def run_full_flow(client: TestClient) -> None:
    """Provider registers a node and an offer, buyer compares and leases, reports are settled in batches,
    buyer closes, refund and earnings are withdrawn, the rating is recorded, auditors read it all."""
    svc = services(client)
    chain = svc.chain
    cheap = setup_provider(client, ["GPU-aaaa-1", "GPU-aaaa-2"], PRICE, region="eu-west")
    dear = setup_provider(client, ["GPU-bbbb-1"], 3 * PRICE, region="us-east", model="NVIDIA A100")

    # the buyer compares offers: cheapest first, filters narrow it down
    buyer, bkey = new_account(client, "buyer")
    offers = ok(client.get("/v1/offers", params={"sort": "price"}))
    assert [o["offerId"] for o in offers["offers"]] == [cheap["offerId"], dear["offerId"]]
    assert offers["offers"][0]["pricePerGpuHour"] == str(PRICE * 3600)
    assert [o["offerId"] for o in ok(client.get("/v1/offers", params={"sort": "-price"}))["offers"]] == [dear["offerId"], cheap["offerId"]]
    only_us = ok(client.get("/v1/offers", params={"region": "us-east"}))
    assert [o["offerId"] for o in only_us["offers"]] == [dear["offerId"]]
    assert ok(client.get("/v1/offers", params={"minGpuCount": 2}))["total"] == 1

    wallet_before = int(ok(client.get(f"/v1/balances/{buyer}"))["walletBalanceWei"])
    lease_a = open_and_activate(client, bkey, cheap, "open-a")
    lease_b = open_and_activate(client, bkey, dear, "open-b")
    doc = ok(client.get(f"/v1/leases/{lease_a}"))
    assert doc["state"] == "Active" and doc["buyer"] == buyer and doc["gpuIndices"] == [0, 1]
    escrow_a = int(doc["money"]["escrow"])
    assert escrow_a == PRICE * 2 * HOUR
    # leased offers are no longer available
    assert ok(client.get("/v1/offers"))["total"] == 0

    # the attestor sees its lease, reports arrive
    active = ok(client.get(f"/v1/nodes/{cheap['nodeId']}/active-leases"))
    assert [x["leaseId"] for x in active["leases"]] == [lease_a]
    assert active["leases"][0]["gpuSetHash"] == "0x" + cheap["gpuSetHash"].hex()
    att_a, att_b = attestor_for(client, cheap, lease_a), attestor_for(client, dear, lease_b)
    chain.time_travel(chain.now() + 10 * 60)
    rep_roots: dict[tuple[int, int], bytes] = {}
    for _ in range(3):
        for att, prov in ((att_a, cheap), (att_b, dear)):
            rep, sig, samples = att.next_report()
            rep_roots[(att.lease_id, rep.seq)] = rep.samplesRoot
            body = ok(client.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
            assert body == {"accepted": True, "reportHash": "0x" + att.prev.hex(), "duplicate": False}

    # not due yet (cadence 300 s, threshold high): nothing settles; flush settles both leases in ONE batch
    assert svc.relayer.tick() == 0
    assert svc.relayer.flush() == 2
    settled = [e for e in svc.ledger.events.read("CheckpointSettled")]
    assert sorted((int(e.args["leaseId"]), int(e.args["seq"])) for e in settled) == [(lease_a, 3), (lease_b, 3)]
    assert len({e.tx_hash for e in settled}) == 1
    cp = ok(client.get(f"/v1/leases/{lease_a}"))["checkpoint"]
    assert cp["lastSeq"] == 3 and int(cp["charged"]) == PRICE * att_a.cum["alloc"] // 1000
    alloc_at_3, root_3 = att_a.cum["alloc"], "0x" + rep_roots[(lease_a, 3)].hex()
    reports = ok(client.get(f"/v1/leases/{lease_a}/reports"))["reports"]
    assert [r["status"] for r in reports] == ["superseded", "superseded", "settled"]

    # two more windows, then the buyer closes: the latest report is settled before the close
    for _ in range(2):
        rep, sig, samples = att_a.next_report()
        rep_roots[(lease_a, rep.seq)] = rep.samplesRoot
        ok(client.post("/v1/metering/reports", json=submission(cheap["nodeId"], rep, sig, samples)), 201)
    closed = ok(client.post(f"/v1/leases/{lease_a}/close", headers={**auth(bkey), "Idempotency-Key": "close-a"}))
    closed_ev = [e for e in closed["events"] if e["name"] == "LeaseClosed"][0]
    charged = PRICE * att_a.cum["alloc"] // 1000
    assert int(closed_ev["args"]["charged"]) == charged
    assert int(closed_ev["args"]["refund"]) == escrow_a - charged
    doc = ok(client.get(f"/v1/leases/{lease_a}"))
    assert doc["state"] == "Closed" and doc["money"]["closed"] is True
    assert [s["seq"] for s in doc["settlements"]] == [3, 5]
    # derived per checkpoint: billable GPU-ms (reserved: allocated time) and the settled report's samples root
    assert [s["billableDelta"] for s in doc["settlements"]] == [alloc_at_3, att_a.cum["alloc"] - alloc_at_3]
    assert [s["samplesRoot"] for s in doc["settlements"]] == [root_3, "0x" + rep_roots[(lease_a, 5)].hex()]
    assert sum(int(s["charged"]) for s in doc["settlements"]) == charged

    # challenge period over: earnings released and withdrawn, the buyer's refund too
    chain.time_travel(chain.now() + svc.deployment.challenge_period_s + 1)
    ok(client.post(f"/v1/leases/{lease_a}/release-earnings", headers=auth(cheap["key"])))
    earned = int(ok(client.get(f"/v1/balances/{cheap['address']}"))["withdrawableWei"])
    assert earned == charged
    w = ok(client.post("/v1/withdraw", json={}, headers={**auth(cheap["key"]), "Idempotency-Key": "wd-1"}))
    assert [int(e["args"]["amount"]) for e in w["events"] if e["name"] == "Withdrawn"] == [charged]
    assert ok(client.get(f"/v1/balances/{cheap['address']}"))["withdrawableWei"] == "0"
    refund = int(ok(client.get(f"/v1/balances/{buyer}"))["withdrawableWei"])
    assert refund >= escrow_a - charged
    ok(client.post("/v1/withdraw", json={}, headers=auth(bkey)))
    assert int(ok(client.get(f"/v1/balances/{buyer}"))["walletBalanceWei"]) < wallet_before  # paid usage + fees + gas

    # rating recorded on-chain, reflected by the reputation endpoint
    rated = ok(client.post(f"/v1/leases/{lease_a}/rate", json={"stars": 5}, headers=auth(bkey)))
    assert [int(e["args"]["stars"]) for e in rated["events"] if e["name"] == "Rated"] == [5]
    rep = ok(client.get(f"/v1/reputation/{cheap['address']}"))
    assert rep["counts"]["ratings"] == 1 and rep["counts"]["completed"] == 1

    # auditors: listing, reports with samples, a proof that verifies against the report's root
    listing = ok(client.get("/v1/audit/leases"))
    assert {x["leaseId"]: x["reports"] for x in listing["leases"]} == {lease_a: 5, lease_b: 3}
    proof = ok(client.get(f"/v1/leases/{lease_a}/reports/2/samples/7/proof"))
    from ledger.protocol import Sample, sample_leaf, verify_proof

    leaf = sample_leaf(Sample.from_values(proof["sample"]))
    assert "0x" + leaf.hex() == proof["leaf"]
    assert verify_proof(bytes.fromhex(proof["root"][2:]), leaf, [bytes.fromhex(p[2:]) for p in proof["proof"]])
    # spot checks of one report in one request: every proof verifies, and the single-proof answer agrees
    many = ok(client.get(f"/v1/leases/{lease_a}/reports/2/samples/proofs", params={"indices": "7,0,3"}))["proofs"]
    assert [p["index"] for p in many] == [7, 0, 3] and many[0] == proof
    for p in many:
        leaf = sample_leaf(Sample.from_values(p["sample"]))
        assert verify_proof(bytes.fromhex(p["root"][2:]), leaf, [bytes.fromhex(x[2:]) for x in p["proof"]])
    archive = client.get("/v1/audit/archive", params={"leaseId": lease_a})
    assert archive.status_code == 200 and len(archive.text.strip().splitlines()) == 5
