"""Bridge benchmark: offer-list throughput, metering reports accepted, checkpoints settled on anvil.

    python bench/api.py [--duration 8] [--clients 32] [--leases 64] [--prefill N] [--block-every S] [--json]

Starts an anvil node and the bridge (``compute-ledger serve`` on 127.0.0.1, rpc backend against that
anvil) in a subprocess, sets up a provider with one offer per GPU and a buyer with ``--leases`` active
leases over HTTP, then measures with ``--clients`` concurrent HTTP clients, each phase bounded in time:

1. ``GET /v1/offers`` (price comparison, a few filter/sort variants): requests/s, p50 and p99 latency;
2. ``POST /v1/metering/reports`` with 60 raw samples each (signature recovered, Merkle root recomputed,
   report and samples committed to SQLite with synchronous=FULL before the answer): reports accepted/s;
3. the server is stopped and the relayer runs in this process on the same store: rounds of one new report
   per lease, each round settled by ``flush()`` in ``settleBatch`` transactions on anvil: checkpoints/s.

``--prefill N`` first bulk-inserts N settled reports of other leases into the store (intake on a big store);
``--block-every S`` mines a block every S seconds during phase 1 (a live chain's blocks). The per-client rate
limits are turned off: all the load comes from one address. Prints the figures (or one JSON object with
``--json``). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "api"))

from api.container import Bridge  # noqa: E402
from api.settings import Settings  # noqa: E402
from bridge_helpers import SigningAttestor, submission  # noqa: E402
from eth_account import Account  # noqa: E402
from ledger.chain.backends import connect, free_port  # noqa: E402
from ledger.chain.deploy import deploy_suite  # noqa: E402
from ledger.protocol import gpu_set_hash, gpu_uuid_hash  # noqa: E402

PRICE = 10**9
OFFER_QUERIES = [
    {"sort": "price", "limit": "20"},
    {"sort": "-vram", "limit": "20"},
    {"sort": "reputation", "region": "eu-west"},
    {"gpuModel": "NVIDIA H100", "sort": "price", "limit": "10"},
    {"maxPricePerGpuHourWei": str(PRICE * 3600 * 2), "sort": "price"},
    {"minVramMiB": "40000", "sort": "-price", "offset": "10", "limit": "20"},
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    if resp.status_code != status:
        raise RuntimeError(f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text[:300]}")
    return resp.json()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to tell whether a phase was CPU-bound."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def offers_load(base: str, clients: int, duration: float) -> tuple[float, float, float, int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=conn) as session:

        async def worker(i: int) -> None:
            nonlocal errors
            n = i
            while time.monotonic() < deadline:
                q = OFFER_QUERIES[n % len(OFFER_QUERIES)]
                n += 1
                t0 = time.perf_counter()
                async with session.get("/v1/offers", params=q) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        t0 = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.monotonic() - t0
    return len(latencies) / elapsed, pct(latencies, 0.5) * 1000, pct(latencies, 0.99) * 1000, errors


async def reports_load(base: str, clients: int, queues: list[list[bytes]], duration: float) -> tuple[float, int, int]:
    import aiohttp

    accepted = 0
    errors = 0
    deadline = time.monotonic() + duration
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=conn) as session:

        async def worker(queue: list[bytes]) -> None:
            nonlocal accepted, errors
            for body in queue:  # one lease's reports strictly in seq order, as the attestor sends them
                if time.monotonic() >= deadline:
                    return
                async with session.post(
                    "/v1/metering/reports", data=body, headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()
                    if r.status == 201:
                        accepted += 1
                    else:
                        errors += 1
                        return

        t0 = time.monotonic()
        await asyncio.gather(*(worker(q) for q in queues))
        elapsed = time.monotonic() - t0
    return accepted / elapsed, accepted, errors


def prefill(db: Path, n: int) -> float:
    """Bulk-insert ``n`` settled reports of other leases, with their samples, into the bridge's SQLite store
    (migrated first): rows of the real shape and size (a 60-sample report's body, signature, compressed
    samples), unique hashes; minutes for 1M where the API would take hours. Seconds taken."""
    import random
    import sqlite3

    from api.store import Store
    from api.store.samples import CODEC_ZLIB_COLUMNS, encode_samples
    from bridge_helpers import busy_node_samples

    t0 = time.perf_counter()
    store = Store(f"sqlite:///{db.as_posix()}")
    store.migrate()
    store.close()
    rng = random.Random(13)
    blob = encode_samples(busy_node_samples(rng, 1_764_000_000_000, gpus=1, per_gpu=60, period_ms=1000))
    att = SigningAttestor(key=b"\x01" * 32, chain_id=1, escrow="0x" + "00" * 20, lease_id=1, gpu_indices=[0],
                          gpu_set_hash=b"\x02" * 32, lease_start_ms=1_764_000_000_000)
    body = json.dumps(att.next_report()[0].to_json(), separators=(",", ":"))
    sig = "0x" + rng.randbytes(65).hex()
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA synchronous=OFF")
        for lo in range(0, n, 50_000):
            ids = range(lo, min(n, lo + 50_000))
            c.executemany("INSERT INTO sample_sets (root, count, data, codec) VALUES (?, 60, ?, ?)",
                          [("0x%064x" % (2**255 + i), blob, CODEC_ZLIB_COLUMNS) for i in ids])
            c.executemany(
                "INSERT INTO reports (lease_id, seq, struct_hash, signer, signature, body, samples_root, "
                "window_end_ms, cum_billable, status, accepted_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'settled', ?)",
                [(10**12 + i // 100, i % 100 + 1, "0x%064x" % (2**254 + i), "0x" + "ab" * 20, sig, body,
                  "0x%064x" % (2**255 + i), 1_764_000_000_000 + i, i, 1_764_000_000_000) for i in ids],
            )
            c.commit()
            log(f"  prefill: {min(n, lo + 50_000):,} reports stored")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=8.0, help="seconds per load phase")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--leases", type=int, default=64, help="active leases (one GPU each)")
    p.add_argument("--reports", type=int, default=24, help="reports per lease submitted over HTTP")
    p.add_argument("--rounds", type=int, default=8, help="settlement rounds (one checkpoint per lease each)")
    p.add_argument("--prefill", type=int, default=0, help="reports already in the store (bulk-inserted first)")
    p.add_argument("--block-every", type=float, default=0.0,
                   help="mine a block every so many seconds during the offer-list phase (0: none)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.leases > 255 or args.reports + args.rounds + 2 > 110:
        p.error("at most 255 leases and reports + rounds ≤ 108 (the leases run 2 hours)")

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    chain = connect("anvil")
    server: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {}
    try:
        w3 = chain.w3
        dep = deploy_suite(chain, chain.accounts[0])
        dep.save(tmp / "deployment.json")
        if args.prefill:
            log(f"prefill: {args.prefill:,} reports bulk-inserted into the store")
            result.update(prefill_s=round(prefill(tmp / "bridge.sqlite3", args.prefill), 1), stored_reports=args.prefill)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "LEDGER_API_SERVER_SECRET": secrets.token_hex(16),
            "LEDGER_API_RELAYER_PRIVATE_KEY": "0x" + chain.private_keys[chain.accounts[-1]].hex(),
            "LEDGER_API_SETTLE_EVERY_S": "1000000000",
            "LEDGER_API_SETTLE_THRESHOLD_WEI": str(10**40),
            "LEDGER_API_INDEXER_POLL_S": "0.2",
            # many attestors and buyers behind one address here: the per-client limits would measure themselves
            "LEDGER_API_RATE_REPORTS_PER_S": "0",
            "LEDGER_API_RATE_ACCOUNTS_PER_S": "0",
        }
        server_cmd = [
            sys.executable, "-m", "api.cli", "--backend", "rpc", "--rpc-url", str(chain.rpc_url),
            "--deployment", str(tmp / "deployment.json"), "--data-dir", str(tmp), "--port", str(port),
            "--log-level", "warning",
        ]
        server = subprocess.Popen(server_cmd, cwd=REPO, env=env)
        http = httpx.Client(base_url=base, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                if http.get("/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the bridge did not start")
            time.sleep(0.2)

        # --- setup over HTTP -------------------------------------------------------------------------
        log(f"setup: provider, node with {args.leases + 32} GPUs, offers, {args.leases} leases")
        funder = chain.accounts[1]

        def account(*roles: str) -> tuple[str, dict[str, str]]:
            body = ok(http.post("/v1/accounts", json={"roles": list(roles)}), 201)
            w3.eth.send_transaction({"from": funder, "to": body["address"], "value": 10**21})  # type: ignore[typeddict-item]
            return body["address"], {"Authorization": f"Bearer {body['apiKey']}"}

        _, pkey = account("provider")
        ok(http.post("/v1/providers", json={"metadataURI": "bench"}, headers=pkey))
        n_gpus = args.leases + 32
        uuids = [f"GPU-bench-{i:04d}" for i in range(n_gpus)]
        attestor = Account.create()
        node = ok(http.post("/v1/nodes", json={"attestor": attestor.address, "gpuModel": "NVIDIA H100",
                                               "gpuUuids": uuids, "vramMiB": 81_559, "maxPowerMwPerGpu": 700_000,
                                               "region": "eu-west"}, headers=pkey))
        node_id = node["result"]["nodeId"]
        now = int(w3.eth.get_block("latest")["timestamp"])
        offer_ids = []
        for i in range(n_gpus):
            o = ok(http.post("/v1/offers", json={"nodeId": node_id, "gpuIndices": [i],
                                                 "pricePerGpuSecondWei": PRICE + i * 10**6, "validFrom": now,
                                                 "validUntil": now + 86_400}, headers=pkey))
            offer_ids.append(o["result"]["offerId"])
        _, bkey = account("buyer")
        attestors = []
        for i in range(args.leases):
            lease = ok(http.post("/v1/leases", json={"offerId": offer_ids[i], "durationS": 7200}, headers=bkey))
            lease_id = int(lease["result"]["leaseId"])
            ok(http.post(f"/v1/leases/{lease_id}/activate", headers=pkey))
            doc = ok(http.get(f"/v1/leases/{lease_id}"))
            attestors.append(SigningAttestor(
                key=bytes(attestor.key), chain_id=chain.chain_id, escrow=dep.escrow, lease_id=lease_id,
                gpu_indices=[i], gpu_set_hash=gpu_set_hash([gpu_uuid_hash(uuids[i])]), lease_start_ms=doc["startMs"]))
        chain.increase_time((args.reports + args.rounds + 2) * 60)
        total = ok(http.get("/v1/offers", params={"limit": 1}))["total"]
        log(f"setup done: {total} offers listed, {args.leases} active leases")

        # --- 1. offer list -----------------------------------------------------------------------------
        cpu0 = cpu_seconds(server.pid)
        stop_blocks = threading.Event()

        def blocks() -> None:  # new blocks keep coming, as on a live chain
            while not stop_blocks.wait(args.block_every):
                chain.mine()

        miner = threading.Thread(target=blocks, daemon=True)
        if args.block_every > 0:
            miner.start()
        rps, p50, p99, errs = asyncio.run(offers_load(base, args.clients, args.duration))
        stop_blocks.set()
        if miner.is_alive():
            miner.join()
        log(f"server CPU during offers: {cpu_seconds(server.pid) - cpu0:.1f} s over {args.duration:.0f} s")
        result.update(offers_rps=round(rps, 1), offers_p50_ms=round(p50, 2), offers_p99_ms=round(p99, 2))
        log(f"offers: {rps:.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {errs} errors")

        # --- 2. metering reports -------------------------------------------------------------------------
        log(f"signing {args.leases * args.reports} reports (60 samples each)")
        queues: list[list[bytes]] = [[] for _ in range(args.clients)]
        per_lease: list[list[bytes]] = []
        for att in attestors:
            bodies = [json.dumps(submission(node_id, *att.next_report())).encode() for _ in range(args.reports)]
            per_lease.append(bodies)
        for i, bodies in enumerate(per_lease):  # lease-ordered queues, each owned by one client
            queues[i % args.clients].extend(bodies)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        rate, accepted, errs = asyncio.run(reports_load(base, args.clients, queues, args.duration * 2))
        log(f"server CPU during reports: {cpu_seconds(server.pid) - cpu0:.1f} s over {time.monotonic() - t0:.1f} s")
        result.update(reports_accepted_per_s=round(rate, 1))
        log(f"reports: {rate:.0f} accepted/s ({accepted} accepted, {errs} refused)")

        # --- 3. settlement on anvil (in process, on the same store) ---------------------------------------
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        server = None
        settings = Settings(chain_backend="rpc", rpc_url=chain.rpc_url, data_dir=tmp, deployment_file=tmp / "deployment.json",
                            server_secret=env["LEDGER_API_SERVER_SECRET"], relayer_private_key=env["LEDGER_API_RELAYER_PRIVATE_KEY"],
                            background=True, relayer_tick_s=3600.0, relayer_batch_max=100)
        svc = Bridge.start(settings)
        try:
            settled = 0
            spent = 0.0
            t0 = time.perf_counter()
            settled += svc.relayer.flush()
            spent += time.perf_counter() - t0
            for _ in range(args.rounds):
                for att in attestors:
                    rep = att.next_report()
                    svc.metering.accept(json.loads(json.dumps(submission(node_id, *rep))))
                t0 = time.perf_counter()
                settled += svc.relayer.flush()
                spent += time.perf_counter() - t0
            cps = settled / spent if spent else 0.0
            result.update(checkpoints_settled_per_s=round(cps, 1))
            log(f"settlement: {settled} checkpoints in {spent:.2f} s = {cps:.0f}/s (batches of ≤ {settings.relayer_batch_max})")
        finally:
            svc.stop()
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        chain.close()
    if args.json:
        print(json.dumps({k: result.get(k) for k in ("offers_rps", "offers_p50_ms", "offers_p99_ms", "reports_accepted_per_s",
                                                     "checkpoints_settled_per_s", "stored_reports", "prefill_s")}))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
