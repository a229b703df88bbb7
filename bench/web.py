"""Web market benchmark: server time and bytes of the offer book with 10,000 offers and of a lease page with
1,000 reports.

    python bench/web.py [--offers 10000] [--reports 1000] [--requests 200] [--json]

The bridge runs in this process on the memory chain, served by uvicorn on 127.0.0.1; an ASGI wrapper around
the app records each request's server time (from the request reaching the app to the last byte of the
answer handed to the server) and the bytes of the body. Requests are sent one at a time (no concurrency: the
figure is the time one page takes, not throughput).

What is real and what is not:
- the lease: a real provider, node, offer and lease on the chain; 1,000 reports signed like the attestor
  signs them (60 samples per GPU per window, 2 GPUs), accepted through POST /v1/metering/reports and settled
  by the relayer every 100 reports (10 checkpoints on chain);
- the offer book: 10,000 offers written into the bridge's offer projection (the table the indexer fills from
  OfferPublished events, read by the pages) with 50 providers' reputation rows, not published on chain:
  publishing one offer on the in-process chain takes about 0.5 s here, 10,000 would take well over an hour.
  The pages read the projection either way; the chain is not read by the offer book.

Targets (issue 15): p99 ≤ 200 ms server time, first page ≤ 300 KB. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "api"))

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from bridge_helpers import SigningAttestor, auth, new_account, ok, submission  # noqa: E402
from eth_account import Account  # noqa: E402
from ledger.chain.backends import connect  # noqa: E402
from ledger.chain.deploy import deploy_suite  # noqa: E402
from ledger.protocol import gpu_set_hash, gpu_uuid_hash  # noqa: E402
from ledger.protocol.economics import ETH  # noqa: E402
from tests.support.serve import served  # noqa: E402

PRICE = 10**9
MODELS = ["NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S", "NVIDIA RTX 4090"]
REGIONS = ["eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east", "sa-east"]
OFFER_PAGES = {
    "book, first page (price ↑)": "/web/offers",
    "filter: model h100, region eu-west": "/web/offers?gpuModel=h100&region=eu-west",
    "filter: ≤ 0.005 ETH/GPU-h, ≥ 4 GPUs, ≥ 80 GiB": "/web/offers?maxPrice=0.005&minGpus=4&minVramGiB=80",
    "sort: reputation ↓, page 100": "/web/offers?sort=-reputation&page=100",
    "sort: attested uptime ↓": "/web/offers?sort=-uptime",
    "sort: price per PFLOP-hour ↑": "/web/offers?sort=perf",
    "htmx fragment (filter change)": "/web/offers?gpuModel=a100&sort=-price",
}
Message = MutableMapping[str, Any]


class Timed:
    """ASGI wrapper: server time and body bytes per request path (with its query)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.samples: dict[str, list[tuple[float, int]]] = defaultdict(list)

    def __getattr__(self, name: str) -> Any:  # uvicorn and tests reach app.state through the wrapper
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = _BodyBytes(send)
        t0 = time.perf_counter()
        await self.app(scope, receive, body.send)
        qs = scope.get("query_string", b"").decode()
        self.samples[scope["path"] + ("?" + qs if qs else "")].append((time.perf_counter() - t0, body.size))


class _BodyBytes:
    """Passes an answer on, counting its body bytes."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.size = 0

    async def send(self, message: Message) -> None:
        self.size += len(message.get("body", b"")) if message["type"] == "http.response.body" else 0
        await self._send(message)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fill_offer_book(bridge: Any, n: int, rng: random.Random) -> None:
    """``n`` offers in the offer projection, spread over models, regions, prices, sizes and 50 providers."""
    providers = [Account.create().address for _ in range(50)]
    for p in providers:
        counts = {"completed": rng.randint(0, 500), "no_shows": rng.randint(0, 5), "disputes_won": rng.randint(0, 3),
                  "disputes_lost": rng.randint(0, 3), "ratings": rng.randint(0, 200), "rating_sum": 0,
                  "attested_ms": 0, "lease_ms": 0, "positive": 0, "negative": 0}  # fmt: skip
        bridge.store.index.put_provider(p, {"registered": True, "payout": p, "metadataURI": "", "counts": counts},
                                        rng.randint(2000, 10_000))  # fmt: skip
    now = bridge.chain.now()
    for i in range(n):
        count = rng.choice([1, 1, 2, 4, 8])
        price = rng.randint(PRICE // 2, PRICE * 4)
        view = {
            "offerId": 100_000 + i, "nodeId": 100_000 + i // 4, "provider": providers[i % 50],
            "gpuModel": MODELS[i % len(MODELS)], "gpuCount": count, "vramMiB": rng.choice([24_564, 49_140, 81_559, 143_771]),
            "region": REGIONS[i % len(REGIONS)], "token": ETH, "billingMode": rng.choice([0, 1, 2]), "liveLeaseId": 0,
            "validFrom": now, "validUntil": now + rng.randint(86_400, 30 * 86_400), "nodeActive": True,
            "gpuIndices": list(range(count)), "pricePerGpuSecond": price, "pricePerGpuHour": price * 3600,
            "minBuyerScoreBps": 0, "gpuSetHash": "0x" + "00" * 32,
        }  # fmt: skip
        bridge.store.index.put_offer(view, price * 3600)
    bridge.indexer.generation += 1  # the pages' caches key on it, as after an indexing pass


def lease_with_reports(c: httpx.Client, bridge: Any, n_reports: int) -> int:
    """A real lease on a 2-GPU offer, ``n_reports`` signed reports accepted, settled every 100."""
    chain = bridge.chain
    addr, key = new_account(c, "provider")
    ok(c.post("/v1/providers", json={"metadataURI": "https://example.invalid/bench"}, headers=auth(key)))
    attestor = Account.create()
    uuids = ["GPU-bench-web-0", "GPU-bench-web-1"]
    node = ok(c.post("/v1/nodes", json={"attestor": attestor.address, "gpuModel": MODELS[0], "gpuUuids": uuids,
                                        "vramMiB": 81_559, "maxPowerMwPerGpu": 700_000, "region": "eu-west",
                                        "gpm": True}, headers=auth(key)))["result"]["nodeId"]  # fmt: skip
    now = chain.now()
    offer = ok(c.post("/v1/offers", json={"nodeId": node, "gpuIndices": [0, 1], "pricePerGpuSecondWei": PRICE,
                                          "validFrom": now, "validUntil": now + 30 * 86_400}, headers=auth(key)))  # fmt: skip
    _, bkey = new_account(c, "buyer", fund_wei=10**21)
    duration = n_reports * 60 + 3600
    lease_id = int(ok(c.post("/v1/leases", json={"offerId": offer["result"]["offerId"], "durationS": duration},
                             headers=auth(bkey)))["result"]["leaseId"])  # fmt: skip
    ok(c.post(f"/v1/leases/{lease_id}/activate", headers=auth(key)))
    doc = ok(c.get(f"/v1/leases/{lease_id}"))
    att = SigningAttestor(key=bytes(attestor.key), chain_id=bridge.ledger.chain_id, escrow=bridge.deployment.escrow,
                          lease_id=lease_id, gpu_indices=[0, 1], gpu_set_hash=gpu_set_hash([gpu_uuid_hash(u) for u in uuids]),
                          lease_start_ms=doc["startMs"])  # fmt: skip
    t0 = time.perf_counter()
    for i in range(n_reports):
        if i % 100 == 0:
            chain.time_travel(chain.now() + 100 * 60 + 60)
        rep, sig, samples = att.next_report()
        ok(c.post("/v1/metering/reports", json=submission(node, rep, sig, samples)), 201)
        if (i + 1) % 100 == 0:
            bridge.relayer.flush()
            log(f"  {i + 1} reports accepted and settled ({time.perf_counter() - t0:.0f} s)")
    return lease_id


def measure(c: httpx.Client, timed: Timed, path: str, n: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    for _ in range(3):  # warm-up: templates compiled, caches filled as a live bridge has them
        r = c.get(path, headers=headers)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    timed.samples.clear()
    for _ in range(n):
        c.get(path, headers=headers)
    [(key, samples)] = [(k, v) for k, v in timed.samples.items()]
    times = [t * 1000 for t, _ in samples]
    return {"path": key, "n": len(times), "p50_ms": round(pct(times, 50), 1), "p99_ms": round(pct(times, 99), 1),
            "bytes": samples[-1][1]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--offers", type=int, default=10_000)
    ap.add_argument("--reports", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200, help="requests per page measured")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rng = random.Random(15)
    chain = connect("memory")
    dep = deploy_suite(chain, chain.accounts[0])
    settings = Settings(chain_backend="memory", data_dir=Path(tempfile.mkdtemp(prefix="bench-web-")), background=False,
                        settle_every_s=1e9, settle_threshold_wei=10**30)  # fmt: skip
    timed = Timed(create_app(settings, chain=chain, deployment=dep))
    results: dict[str, Any] = {"offers": args.offers, "reports": args.reports, "pages": {}}
    try:
        with served(timed, start_timeout_s=60) as url, httpx.Client(base_url=url, timeout=60) as c:
            bridge = timed.app.state.bridge
            log(f"lease with {args.reports} reports (real: signed, accepted, settled every 100)...")
            lease_id = lease_with_reports(c, bridge, args.reports)
            log(f"offer book: {args.offers} offers in the projection...")
            fill_offer_book(bridge, args.offers, rng)
            for label, path in OFFER_PAGES.items():
                hx = {"HX-Request": "true", "HX-Target": "book"} if label.startswith("htmx") else None
                results["pages"][label] = measure(c, timed, path, args.requests, hx)
            results["pages"][f"lease page, {args.reports} reports"] = measure(c, timed, f"/web/leases/{lease_id}", args.requests // 2)
            results["pages"]["lease page, htmx refresh"] = measure(
                c, timed, f"/web/leases/{lease_id}", args.requests // 2, {"HX-Request": "true"}
            )
            results["pages"]["offer page"] = measure(c, timed, "/web/offers/100000", args.requests)
    finally:
        chain.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"web market: {args.offers:,} offers in the book, a lease with {args.reports:,} reports; "
          f"server time over {args.requests} sequential requests per page (lease pages: {args.requests // 2})")  # fmt: skip
    print(f"{'page':48} {'p50 ms':>8} {'p99 ms':>8} {'KB':>8}")
    for label, r in results["pages"].items():
        print(f"{label:48} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['bytes'] / 1024:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
