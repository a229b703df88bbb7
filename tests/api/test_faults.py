"""The fault suite (issue 13): a bridge process on the anvil backend is killed (SIGKILL, as ``kill -9``) at chosen
points, with or without its chain, and started again on the same data directory. Injection points are armed
through ``LEDGER_API_FAULT_FILE`` (``api/faults.py``).

After each: 0 acknowledged reports lost (every report answered 201 is served, in order), 0 double charges
(a keyed top-up retried after the crash answers the one transaction on chain), every attested checkpoint
settled on chain (lastSeq reaches the last report, each (lease, seq) settled at most once), the chain node
died with its bridge and exactly one runs after the restart, and the independent auditor passes the closed
lease (money.conservation among its checks)."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from auditor.cli import main as audit_main
from bridge_helpers import SigningAttestor, submission
from ledger.chain.backends import ANVIL_BIN, PID_FILE, STATE_FILE, Chain, connect, pid_alive
from ledger.chain.deployment import Deployment
from ledger.chain.suite import LedgerChain
from ledger.protocol import gpu_set_hash, gpu_uuid_hash
from tests.support.bridge_proc import BridgeProc, ok, start_bridge

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.slow,
    pytest.mark.skipif(not ANVIL_BIN.exists(), reason="anvil binary not installed (npm ci in contracts/)"),
]
SECRET = "fault-suite-secret-0123456789"
PRICE = 10**9
N_REPORTS = 6
WINDOW_MS = 1000  # one-second windows: the chain's own clock (anvil follows real time) covers them


@dataclass
class Lease:
    lease_id: int
    node_id: int
    att: SigningAttestor
    buyer: dict[str, str]


def _start(d: Path) -> BridgeProc:
    env = {
        "LEDGER_API_SERVER_SECRET": SECRET,
        "LEDGER_API_FAULT_FILE": str(d / "fault"),
        "LEDGER_API_FAULT_CHAIN_PID_FILE": str(d / PID_FILE),
        "LEDGER_API_SETTLE_EVERY_S": "1",
        "LEDGER_API_RELAYER_TICK_S": "0.3",
        "LEDGER_API_INDEXER_POLL_S": "0.3",
    }
    return start_bridge(["--backend", "anvil", "--data-dir", str(d)], env, d / "bridge.log")


def _anvils_of(d: Path) -> list[int]:
    """Live anvil processes whose state file is this data directory's."""
    out = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        if "anvil" in cmd and str(d / STATE_FILE) in cmd and state != "Z":
            out.append(int(pid))
    return out


def _account(base: str, role: str) -> tuple[str, dict[str, str]]:
    body = ok(httpx.post(f"{base}/v1/accounts", json={"roles": [role]}, timeout=30), 201)
    ok(httpx.post(f"{base}/v1/faucet", json={"address": body["address"], "amountWei": 10**20}, timeout=30))
    return body["address"], {"Authorization": f"Bearer {body['apiKey']}"}


def _setup(base: str) -> Lease:
    _, pkey = _account(base, "provider")
    ok(httpx.post(f"{base}/v1/providers", json={"metadataURI": "https://example.invalid/f"}, headers=pkey, timeout=30))
    attestor = Account.create()
    node = ok(httpx.post(f"{base}/v1/nodes", json={
        "attestor": attestor.address, "gpuModel": "NVIDIA H100", "gpuUuids": ["GPU-fault-0"], "vramMiB": 81_559,
        "maxPowerMwPerGpu": 700_000, "region": "eu-west", "gpm": True}, headers=pkey, timeout=30))  # fmt: skip
    now = ok(httpx.get(f"{base}/v1/chain", timeout=30))["chainTime"]
    offer = ok(httpx.post(f"{base}/v1/offers", json={
        "nodeId": node["result"]["nodeId"], "gpuIndices": [0], "pricePerGpuSecondWei": PRICE, "validFrom": now,
        "validUntil": now + 86_400, "billingMode": "reserved"}, headers=pkey, timeout=30))  # fmt: skip
    _, buyer = _account(base, "buyer")
    lease = ok(httpx.post(f"{base}/v1/leases", json={"offerId": offer["result"]["offerId"], "durationS": 3600},
                          headers={**buyer, "Idempotency-Key": "open"}, timeout=30))  # fmt: skip
    lease_id = int(lease["result"]["leaseId"])
    ok(httpx.post(f"{base}/v1/leases/{lease_id}/activate", headers=pkey, timeout=30))
    doc = ok(httpx.get(f"{base}/v1/leases/{lease_id}", timeout=30))
    dom = ok(httpx.get(f"{base}/v1/metering/domain", timeout=30))
    att = SigningAttestor(key=bytes(attestor.key), chain_id=int(dom["chainId"]), escrow=dom["verifyingContract"],
                          lease_id=lease_id, gpu_indices=doc["gpuIndices"],
                          gpu_set_hash=gpu_set_hash([gpu_uuid_hash("GPU-fault-0")]), lease_start_ms=doc["startMs"])  # fmt: skip
    return Lease(lease_id, int(node["result"]["nodeId"]), att, buyer)


def _post_report(base: str, lease: Lease, body: dict[str, Any]) -> int:
    try:
        return httpx.post(f"{base}/v1/metering/reports", json=body, timeout=60).status_code
    except httpx.HTTPError:
        return 599  # the process died under the request: not acknowledged


def _next(lease: Lease) -> dict[str, Any]:
    rep, sig, samples = lease.att.next_report(window_ms=WINDOW_MS)
    return submission(lease.node_id, rep, sig, samples)


def _wait_for_chain_time(base: str, end_ms: int) -> None:
    deadline = time.monotonic() + 30
    while ok(httpx.get(f"{base}/v1/chain", timeout=30))["chainTime"] * 1000 + 25_000 < end_ms:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _last_seq(base: str, lease_id: int) -> int:
    return int(ok(httpx.get(f"{base}/v1/leases/{lease_id}", timeout=30))["checkpoint"]["lastSeq"])


def _ledger(d: Path, base: str) -> tuple[Chain, LedgerChain]:
    chain = connect("rpc", rpc_url=ok(httpx.get(f"{base}/v1/chain", timeout=30))["rpcUrl"])
    return chain, LedgerChain(chain, Deployment.load(d / "deployment.json"))


def _killed(bridge: BridgeProc, d: Path) -> None:
    """The armed point was reached: the process died by SIGKILL, and its chain node with it."""
    assert bridge.wait_exit(60) == -9, bridge.tail()
    deadline = time.monotonic() + 10
    while _anvils_of(d) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _anvils_of(d) == [], "the anvil child outlived its bridge"
    (d / "fault").unlink()


FAULTS = ["relayer.signed", "relayer.sent", "chain+relayer.sent", "index.store", "intake.commit"]


@pytest.mark.parametrize("fault", FAULTS)
def test_kill_at_a_point_loses_nothing_and_pays_once(tmp_path: Path, fault: str) -> None:
    d = tmp_path / "data"
    bridge = _start(d)
    try:
        lease = _setup(bridge.base)
        if fault.startswith("chain+"):
            time.sleep(5.5)  # anvil saves its state every 5 s: the lease is in the file the chain restarts from
        acked: list[int] = []
        topup_key = {**lease.buyer, "Idempotency-Key": "topup-1"}
        (d / "fault").write_text(fault)
        started = time.monotonic()
        if fault == "intake.commit":
            body = _next(lease)
            assert _post_report(bridge.base, lease, body) == 599
            _killed(bridge, d)
            bridge = _start(d)
            assert _post_report(bridge.base, lease, body) == 201  # not acknowledged before: sent again
            acked.append(1)
        elif fault == "index.store":
            try:
                first: Any = httpx.post(f"{bridge.base}/v1/leases/{lease.lease_id}/top-up",
                                        json={"amountWei": str(PRICE * 60)}, headers=topup_key, timeout=60)  # fmt: skip
            except httpx.HTTPError:
                first = None
            _killed(bridge, d)
            bridge = _start(d)
        else:  # the relayer reaches the point on its next pass
            for seq in range(1, 3):
                body = _next(lease)
                _wait_for_chain_time(bridge.base, lease.att.last_end_ms)
                status = _post_report(bridge.base, lease, body)
                if status == 201:
                    acked.append(seq)
                else:  # the relayer died meanwhile: this one was not acknowledged; the restarted bridge takes it
                    assert status == 599
                    _killed(bridge, d)
                    bridge = _start(d)
                    assert _post_report(bridge.base, lease, body) == 201
                    acked.append(seq)
            if bridge.alive() and (d / "fault").exists():
                _killed(bridge, d)
                bridge = _start(d)
        assert len(_anvils_of(d)) == 1
        # the rest of the lease's reports, through the restarted bridge
        while len(acked) < N_REPORTS:
            body = _next(lease)
            _wait_for_chain_time(bridge.base, lease.att.last_end_ms)
            assert _post_report(bridge.base, lease, body) == 201
            acked.append(len(acked) + 1)
        deadline = time.monotonic() + 45
        while _last_seq(bridge.base, lease.lease_id) < N_REPORTS:
            assert time.monotonic() < deadline, f"not settled: lastSeq {_last_seq(bridge.base, lease.lease_id)}"
            time.sleep(0.3)
        recovered_s = time.monotonic() - started
        assert recovered_s < 50  # never the 60 s receipt timeout of a stuck re-broadcast
        chain, ledger = _ledger(d, bridge.base)
        try:
            settled = Counter(int(e.args["seq"]) for e in ledger.events.read("CheckpointSettled")
                              if int(e.args["leaseId"]) == lease.lease_id)  # fmt: skip
            assert settled and max(settled.values()) == 1, settled
            if fault == "index.store":  # the keyed top-up: one on chain; its retry answers that one
                retry = ok(httpx.post(f"{bridge.base}/v1/leases/{lease.lease_id}/top-up",
                                      json={"amountWei": str(PRICE * 60)}, headers=topup_key, timeout=60))  # fmt: skip
                topped = ledger.events.read("ToppedUp")
                assert [e.tx_hash for e in topped] == [retry["txHash"]]
                if first is not None and first.status_code == 200:
                    assert first.json()["txHash"] == retry["txHash"]
        finally:
            chain.close()
        reports = ok(httpx.get(f"{bridge.base}/v1/leases/{lease.lease_id}/reports", params={"samples": "false"},
                               timeout=30))["reports"]  # fmt: skip
        assert [int(r["report"]["seq"]) for r in reports] == acked == list(range(1, N_REPORTS + 1))
        ok(httpx.post(f"{bridge.base}/v1/leases/{lease.lease_id}/close", headers={**lease.buyer, "Idempotency-Key": "close"},
                      timeout=60))  # fmt: skip
        assert audit_main(["lease", str(lease.lease_id), "--api", bridge.base, "--quiet"]) == 0
    finally:
        bridge.stop()
    assert _anvils_of(d) == [] and not pid_alive(bridge.proc.pid)


def test_chain_killed_under_a_running_bridge_is_restarted_and_reconciled(tmp_path: Path) -> None:
    """Finding 3: the anvil child is SIGKILLed right after settlements (its state file is up to 5 s old): the
    bridge starts it again, the relayer reconciles with the chain it finds, and the lease is paid in full."""
    d = tmp_path / "data"
    bridge = _start(d)
    try:
        lease = _setup(bridge.base)
        time.sleep(5.5)  # the lease is in the state file the chain restarts from
        for _ in range(3):
            body = _next(lease)
            _wait_for_chain_time(bridge.base, lease.att.last_end_ms)
            assert _post_report(bridge.base, lease, body) == 201
        deadline = time.monotonic() + 30
        while _last_seq(bridge.base, lease.lease_id) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        old = int((d / PID_FILE).read_text())
        os.kill(old, 9)  # settled a moment ago: most likely not in the state file yet
        deadline = time.monotonic() + 30
        while not (d / PID_FILE).exists() or int((d / PID_FILE).read_text()) == old or \
                httpx.get(f"{bridge.base}/v1/health", timeout=10).status_code != 200:  # fmt: skip
            assert time.monotonic() < deadline, "the chain did not come back"
            time.sleep(0.2)
        assert _anvils_of(d) == [int((d / PID_FILE).read_text())]
        metrics = httpx.get(f"{bridge.base}/metrics", timeout=10).text
        assert "ledger_api_chain_restarts_total 1.0" in metrics
        for _ in range(3, N_REPORTS):
            body = _next(lease)
            _wait_for_chain_time(bridge.base, lease.att.last_end_ms)
            assert _post_report(bridge.base, lease, body) == 201
        deadline = time.monotonic() + 45
        while _last_seq(bridge.base, lease.lease_id) < N_REPORTS:
            assert time.monotonic() < deadline, f"not settled: lastSeq {_last_seq(bridge.base, lease.lease_id)}"
            time.sleep(0.3)
        chain, ledger = _ledger(d, bridge.base)
        try:
            settled = Counter(int(e.args["seq"]) for e in ledger.events.read("CheckpointSettled")
                              if int(e.args["leaseId"]) == lease.lease_id)  # fmt: skip
            assert max(settled.values()) == 1, settled
        finally:
            chain.close()
        ok(httpx.post(f"{bridge.base}/v1/leases/{lease.lease_id}/close", headers={**lease.buyer, "Idempotency-Key": "close"},
                      timeout=60))  # fmt: skip
        assert audit_main(["lease", str(lease.lease_id), "--api", bridge.base, "--quiet"]) == 0
        assert bridge.alive()
    finally:
        bridge.stop()
    assert _anvils_of(d) == []
