"""The price index the bridge serves is the one recomputed from the chain's events alone (the same fold over
``ledger.chain`` events read from the node), for history, latest, band and CSV; offers are flagged against the
reference band (the index's, or the operator's when set), not refused."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

from fastapi.testclient import TestClient

from ledger.protocol import gpu_uuid_hash
from ledger.protocol.price_index import IndexEvent, band, latest, price_index
from tests.contracts.conftest import Meter
from tests.support.ledger_client import ETH, BillingMode, LedgerClient

from bridge_helpers import ok
from test_api_flow import services

PRICE = 10**9


def test_served_index_equals_the_chain_recomputed(bridge: TestClient) -> None:
    svc = services(bridge)
    chain, dep = svc.chain, svc.deployment
    cl = LedgerClient(chain, dep)
    a = chain.accounts
    provider, attestor, buyers, relayer = a[1], a[2], a[3:6], a[6]
    cl.register_provider(provider, provider, "ipfs://p")
    node = cl.register_node(provider, attestor, "NVIDIA H100", [gpu_uuid_hash(f"GPU-pi-{i}") for i in range(3)],
                            81_559, 700_000, "eu-west1").id
    t0 = chain.now()
    prices = (PRICE, PRICE * 11 // 10, PRICE * 30)  # the last one is an outlier (30×)
    leases, meters = [], []
    signer = SimpleNamespace(chain=chain, dep=dep)
    for i, (price, buyer) in enumerate(zip(prices, buyers)):
        oid = cl.publish_offer(provider, node, 1 << i, price, ETH, BillingMode.RESERVED, t0, t0 + 86_400).id
        lid = cl.open_lease(buyer, oid, provider, 7200, t0 + 600).id
        cl.activate_lease(provider, lid)
        info = cl.lease(lid)
        leases.append(lid)
        meters.append(Meter(world=signer, lease=info, key=chain.private_keys[attestor], end_ms=info.start_ms))  # type: ignore[arg-type]
    for _ in range(2):
        chain.time_travel(max(m.end_ms for m in meters) // 1000 + 1_801)
        for m in meters:
            r, s = m.next(1_800_000)
            cl.settle(relayer, r, s)
    svc.indexer.sync_once()

    cells = price_index([IndexEvent(e.name, e.args, e.order) for e in svc.ledger.events.read()])
    served = ok(bridge.get("/v1/price-index"))
    assert served["cells"] == [c.to_json() for c in cells]
    (cell,) = served["cells"]
    assert cell["outliersExcluded"] == 1 and cell["leases"] == 2
    assert int(cell["pricePerGpuHour"]) == (prices[0] + prices[1]) * 3600 // 2
    assert ok(bridge.get("/v1/price-index/latest"))["cells"] == [c.to_json() for c in latest(cells)]
    b = ok(bridge.get("/v1/price-index/band", params={"gpuModel": "NVIDIA H100"}))
    assert b == band(cells, "NVIDIA H100")
    assert ok(bridge.get("/v1/price-index", params={"gpuModel": "NVIDIA L4"}))["cells"] == []
    r = bridge.get("/v1/price-index", params={"format": "csv"})
    assert list(csv.DictReader(io.StringIO(r.text)))[0]["pricePerGpuHour"] == cell["pricePerGpuHour"]
    assert bridge.get("/v1/price-index/band", params={"gpuModel": "NVIDIA L4"}).status_code == 404
    assert bridge.get("/v1/price-index", params={"since": "yesterday"}).status_code == 422

    # the offer book flags prices against the band (p10..p90 of what was paid: PRICE..1.1 PRICE per second)
    offer_ids = [cl.lease(lid).offer_id for lid in leases]
    flags = {o: ok(bridge.get(f"/v1/offers/{o}"))["priceBand"] for o in offer_ids}
    assert [flags[o]["status"] for o in offer_ids] == ["within", "within", "above"]
    assert flags[offer_ids[0]]["source"] == "index" and flags[offer_ids[0]]["low"] == str(PRICE * 3600)


def test_operator_band_takes_precedence(memory_chain, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from api.app import create_app
    from conftest import bridge_settings

    chain, dep = memory_chain
    snap = chain.snapshot()
    try:
        cl = LedgerClient(chain, dep)
        provider, attestor = chain.accounts[1], chain.accounts[2]
        cl.register_provider(provider, provider, "ipfs://p")
        node = cl.register_node(provider, attestor, "NVIDIA L4", [gpu_uuid_hash("GPU-op-0")], 23_034, 72_000, "us-east1").id
        t0 = chain.now()
        cheap = cl.publish_offer(provider, node, 1, PRICE // 10, ETH, BillingMode.RESERVED, t0, t0 + 86_400).id
        band = {"NVIDIA L4": (PRICE * 3600 // 2, PRICE * 3600)}
        with TestClient(create_app(bridge_settings(tmp_path, price_bands=band), chain=chain, deployment=dep)) as client:
            flag = ok(client.get(f"/v1/offers/{cheap}"))["priceBand"]
            assert flag == {"source": "operator", "low": str(PRICE * 3600 // 2), "high": str(PRICE * 3600), "status": "below"}
            lease = ok(client.get("/v1/offers", params={"gpuModel": "L4"}))["offers"][0]
            assert lease["offerId"] == cheap and lease["available"]  # below the band: flagged, not forbidden
    finally:
        chain.revert(snap)
