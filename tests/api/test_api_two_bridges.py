"""Two bridge processes (``serve --backend rpc``) on one PostgreSQL database and one anvil chain, with the same
secret and relayer key (issue 13, findings 2 and 6): keyed top-ups from 8 threads spread over both bridges,
retried on the other bridge, twins sent to both at once; the same metering reports sent to both bridges at
once; both relayers running. Exactly one top-up on chain per key, no 5xx, no report refused or lost, no
checkpoint settled twice and no batch entry sent twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from bridge_helpers import SigningAttestor, submission
from ledger.chain.backends import ANVIL_BIN, Chain, connect
from ledger.chain.deploy import deploy_suite
from ledger.chain.deployment import Deployment
from ledger.chain.suite import LedgerChain
from ledger.protocol import gpu_set_hash, gpu_uuid_hash
from tests.support.bridge_proc import BridgeProc, ok, start_bridge
from tests.support.postgres import PgServer

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.slow,
    pytest.mark.skipif(not ANVIL_BIN.exists(), reason="anvil binary not installed (npm ci in contracts/)"),
]
SECRET = "two-bridges-secret-0123456789"
PRICE = 10**9  # wei per GPU-second
TOPUP = PRICE * 60  # one minute of one GPU
N_LEASES, N_KEYS, N_THREADS = 8, 200, 8
N_METERED, N_REPORTS = 4, 20  # leases metered, reports per lease, each report sent to both bridges at once


@dataclass
class World:
    chain: Chain
    ledger: LedgerChain
    dep: Deployment
    a: BridgeProc
    b: BridgeProc
    db_url: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> Iterator[World]:
    chain = connect("anvil")
    bridges: list[BridgeProc] = []
    try:
        dep = deploy_suite(chain, chain.accounts[0])
        d = tmp_path_factory.mktemp("two-bridges")
        dep.save(d / "deployment.json")
        db_url = pg_server.create_database()
        env = {
            "LEDGER_API_SERVER_SECRET": SECRET,
            "LEDGER_API_RELAYER_PRIVATE_KEY": "0x" + chain.private_keys[chain.accounts[-1]].hex(),
            "LEDGER_API_SETTLE_EVERY_S": "1",
            "LEDGER_API_RELAYER_TICK_S": "0.5",
        }
        args = ["--backend", "rpc", "--rpc-url", str(chain.rpc_url), "--database-url", db_url,
                "--deployment", str(d / "deployment.json")]  # fmt: skip
        for name in ("a", "b"):
            bridges.append(start_bridge(args, env, d / f"{name}.log"))
        yield World(chain, LedgerChain(chain, dep), dep, bridges[0], bridges[1], db_url)
    finally:
        for br in bridges:
            br.stop()
        chain.close()


def _fund(w: World, address: str, wei: int) -> None:
    w.ledger.sender.send_eth(w.chain.accounts[1], address, wei)


def _account(w: World, base: str, role: str) -> tuple[str, dict[str, str]]:
    body = ok(httpx.post(f"{base}/v1/accounts", json={"roles": [role]}, timeout=30), 201)
    _fund(w, body["address"], 10**21)
    return body["address"], {"Authorization": f"Bearer {body['apiKey']}"}


def _provider_lease(w: World, base: str, buyer: dict[str, str], i: int) -> tuple[int, int, SigningAttestor]:
    """A provider with one node of one GPU and an offer; the buyer's lease on it, activated."""
    _, pkey = _account(w, base, "provider")
    ok(httpx.post(f"{base}/v1/providers", json={"metadataURI": f"https://example.invalid/{i}"}, headers=pkey, timeout=30))
    attestor = Account.create()
    uuid = f"GPU-two-{i}"
    node = ok(httpx.post(f"{base}/v1/nodes", json={
        "attestor": attestor.address, "gpuModel": "NVIDIA H100", "gpuUuids": [uuid], "vramMiB": 81_559,
        "maxPowerMwPerGpu": 700_000, "region": "eu-west", "gpm": True}, headers=pkey, timeout=30))  # fmt: skip
    node_id = int(node["result"]["nodeId"])
    now = w.chain.now()
    offer = ok(httpx.post(f"{base}/v1/offers", json={
        "nodeId": node_id, "gpuIndices": [0], "pricePerGpuSecondWei": PRICE, "validFrom": now,
        "validUntil": now + 2 * 86_400, "billingMode": "reserved"}, headers=pkey, timeout=30))  # fmt: skip
    lease = ok(httpx.post(f"{base}/v1/leases", json={"offerId": offer["result"]["offerId"], "durationS": 3600},
                          headers=buyer, timeout=30))  # fmt: skip
    lease_id = int(lease["result"]["leaseId"])
    ok(httpx.post(f"{base}/v1/leases/{lease_id}/activate", headers=pkey, timeout=30))
    doc = ok(httpx.get(f"{base}/v1/leases/{lease_id}", timeout=30))
    att = SigningAttestor(key=bytes(attestor.key), chain_id=w.ledger.chain_id, escrow=w.dep.escrow, lease_id=lease_id,
                          gpu_indices=doc["gpuIndices"], gpu_set_hash=gpu_set_hash([gpu_uuid_hash(uuid)]),
                          lease_start_ms=doc["startMs"])  # fmt: skip
    return lease_id, node_id, att


def test_two_bridges_one_database_charge_once_and_settle_once(world: World) -> None:
    w = world
    bases = (w.a.base, w.b.base)
    _, buyer = _account(w, w.a.base, "buyer")
    leases = [_provider_lease(w, bases[i % 2], buyer, i) for i in range(N_LEASES)]
    start_block = w.chain.block_number()

    # --- 200 keyed top-ups, 8 threads, both bridges; a 5xx or a lost connection is retried once on the other
    answers: dict[str, list[tuple[int, str, Any]]] = {}
    guard = threading.Lock()

    def post(base: str, key: str, lease_id: int) -> tuple[int, Any]:
        try:
            r = httpx.post(f"{base}/v1/leases/{lease_id}/top-up", json={"amountWei": str(TOPUP)},
                           headers={**buyer, "Idempotency-Key": key}, timeout=120)  # fmt: skip
            return r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        except httpx.HTTPError as e:
            return 599, str(e)

    def one(k: int) -> None:
        key, lease_id = f"topup-{k}", leases[k % N_LEASES][0]
        first, other = bases[k % 2], bases[(k + 1) % 2]
        got: list[tuple[int, str, Any]] = []
        if k % 10 == 0:  # a twin on the other bridge at the same moment
            with ThreadPoolExecutor(2) as ex:
                futs = [ex.submit(post, first, key, lease_id), ex.submit(post, other, key, lease_id)]
                got += [(f.result()[0], "twin", f.result()[1]) for f in futs]
        else:
            status, body = post(first, key, lease_id)
            got.append((status, "first", body))
            if status >= 500:
                status, body = post(other, key, lease_id)
                got.append((status, "retry", body))
        with guard:
            answers[key] = got

    with ThreadPoolExecutor(N_THREADS) as ex:
        list(ex.map(one, range(N_KEYS)))

    five = [(k, a) for k, got in answers.items() for a in got if a[0] >= 500]
    assert five == [], f"{len(five)} answers 5xx: {five[:3]}"
    for key, got in answers.items():
        assert all(s == 200 for s, _, _ in got), (key, got)
        assert len({body["txHash"] for _, _, body in got}) == 1, (key, got)  # the twin answers the same transaction
    topped = [e for e in w.ledger.events.read("ToppedUp", from_block=start_block)]
    per_lease = Counter(int(e.args["leaseId"]) for e in topped)
    assert len(topped) == N_KEYS, f"{len(topped)} top-ups on chain for {N_KEYS} keys"
    assert per_lease == Counter({lid: N_KEYS // N_LEASES for lid, _, _ in leases})
    assert {e.tx_hash for e in topped} == {got[0][2]["txHash"] for got in answers.values()}
    assert sum(int(e.args["amount"]) for e in topped) == N_KEYS * TOPUP  # no double charge

    # --- metering: each report sent to both bridges at once; both relayers run
    w.chain.increase_time(N_REPORTS * 60 + 120)
    pairs: list[tuple[int, int]] = []
    for lease_id, node_id, att in leases[:N_METERED]:
        for _ in range(N_REPORTS):
            rep, sig, samples = att.next_report(window_ms=60_000)
            sub = submission(node_id, rep, sig, samples)
            with ThreadPoolExecutor(2) as ex:
                rs = list(ex.map(lambda base: httpx.post(f"{base}/v1/metering/reports", json=sub, timeout=60), bases))
            pairs.append(tuple(r.status_code for r in rs))  # type: ignore[arg-type]
    assert all(p == (201, 201) or sorted(p) == [200, 201] or p == (200, 200) for p in pairs), Counter(pairs)
    deadline = time.monotonic() + 90
    want = {lid: N_REPORTS for lid, _, _ in leases[:N_METERED]}
    while time.monotonic() < deadline:
        have = {lid: ok(httpx.get(f"{w.b.base}/v1/leases/{lid}", timeout=30))["checkpoint"]["lastSeq"] for lid in want}
        if have == want:
            break
        time.sleep(0.5)
    assert have == want
    settled = Counter((int(e.args["leaseId"]), int(e.args["seq"])) for e in w.ledger.events.read("CheckpointSettled"))
    assert max(settled.values()) == 1  # nothing settled twice
    assert w.ledger.events.read("CheckpointSkipped") == []  # no entry signed by both relayers
    for lid in want:  # every acknowledged report is stored once, in order
        body = ok(httpx.get(f"{w.a.base}/v1/leases/{lid}/reports", params={"limit": 100, "samples": "false"}, timeout=30))
        assert [int(r["report"]["seq"]) for r in body["reports"]] == list(range(1, N_REPORTS + 1))
        assert [r["status"] for r in body["reports"]] == ["superseded"] * (N_REPORTS - 1) + ["settled"] or \
            body["reports"][-1]["status"] == "settled"
    assert w.a.alive() and w.b.alive()
