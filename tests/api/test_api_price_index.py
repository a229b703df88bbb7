"""The price index the bridge serves is the one recomputed from the chain's events alone (the same fold over
``ledger.chain`` events read from the node), for history, latest, band and CSV."""

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
