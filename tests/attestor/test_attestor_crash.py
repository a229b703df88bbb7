"""Crash safety: the daemon is SIGKILLed mid-window and mid-submission, restarted, and loses nothing.

A fake bridge (HTTP on 127.0.0.1, started and stopped by the test) serves the node's active leases and the
EIP-712 domain, verifies and stores reports, answers an exact duplicate with 200 and a conflicting report
for a stored seq with 409. The daemon runs in a subprocess over the simulated driver (real time, the driver's
200 ms samples), with 250 ms sampling periods and 500 ms windows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from attestor.keys import create_keystore
from attestor.spool import Spool
from ledger.protocol.metering import aggregate_window
from ledger.protocol import (
    ZERO_HASH,
    MeteringReport,
    ReportFlag,
    Sample,
    recover_signer,
    report_digest,
    report_struct_hash,
    samples_root,
)

REPO = Path(__file__).resolve().parents[2]
ESCROW = "0x5FbDB2315678afecb367f032d315f642f64180aa"
CHAIN_ID = 31337
PERIOD_MS = 250
WINDOW_MS = 500


class FakeBridge:
    def __init__(self, leases: list[dict[str, Any]]) -> None:
        self.leases = leases
        self.lock = threading.Lock()
        self.stored: dict[tuple[int, int], dict[str, Any]] = {}
        self.posts: dict[tuple[int, int], int] = {}
        self.duplicates = 0
        self.conflicts: list[tuple[int, int]] = []
        self.hold_armed = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client was killed while we held the answer

            def do_GET(self) -> None:
                if self.path == "/v1/nodes/1/active-leases":
                    self._send(200, {"leases": bridge.leases})
                elif self.path == "/v1/metering/domain":
                    self._send(200, {"chainId": CHAIN_ID, "verifyingContract": ESCROW})
                else:
                    self._send(404, {"detail": {"code": "unknown_node", "message": self.path}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, answer = bridge.accept(body)
                if status < 300 and bridge.hold_armed.is_set():
                    bridge.hold_armed.clear()
                    bridge.held.set()
                    bridge.release.wait(10)  # the test kills the attestor before it hears the answer
                self._send(status, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def accept(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        report = MeteringReport.from_json(body["report"])
        h = "0x" + report_struct_hash(report).hex()
        key = (report.leaseId, report.seq)
        with self.lock:
            self.posts[key] = self.posts.get(key, 0) + 1
            if key in self.stored:
                same = self.stored[key]["hash"] == h and self.stored[key]["signature"] == body["signature"]
                if same:
                    self.duplicates += 1
                    return 200, {"accepted": True, "reportHash": h, "duplicate": True}
                self.conflicts.append(key)
                return 409, {"detail": {"code": "seq_conflict", "message": "different report for this seq"}}
            last = max((s for (lease, s) in self.stored if lease == report.leaseId), default=0)
            if report.seq != last + 1:
                return 409, {"detail": {"code": "seq_gap", "message": f"expected seq {last + 1}"}}
            self.stored[key] = {"hash": h, "signature": body["signature"], "report": report, "samples": body["samples"]}
            return 201, {"accepted": True, "reportHash": h, "duplicate": False}

    def count(self) -> int:
        with self.lock:
            return len(self.stored)

    def __enter__(self) -> FakeBridge:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def bridge() -> Iterator[FakeBridge]:
    now = time.time_ns() // 1_000_000
    leases = [
        {"leaseId": 7, "gpuIndices": [0, 1], "startMs": now - 1_000, "endMs": now + 3_600_000, "state": "Active"},
        {"leaseId": 8, "gpuIndices": [2], "startMs": now - 1_000, "endMs": now + 3_600_000, "state": "Active"},
    ]
    with FakeBridge(leases) as b:
        yield b


def _wait(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_attestor_survives_sigkill_with_exactly_once_delivery_and_unbroken_chain(
    bridge: FakeBridge, tmp_path: Path
) -> None:
    address = create_keystore(tmp_path / "ks.json", "pw", kdf="pbkdf2", iterations=2)
    env = dict(os.environ, COMPUTE_LEDGER_ATTESTOR_PASSWORD="pw", PYTHONPATH=str(REPO))
    cmd = [
        sys.executable, "-m", "attestor.cli", "run", "--node-id", "1", "--api", bridge.url,
        "--simulate", "4xH100", "--seed", "1", "--profile", "bursty",
        "--data-dir", str(tmp_path / "data"), "--keystore", str(tmp_path / "ks.json"),
        "--sample-period-ms", str(PERIOD_MS), "--window-ms", str(WINDOW_MS), "--lease-refresh-ms", "200",
        "--backoff-base-ms", "50", "--backoff-max-ms", "400",
    ]  # fmt: skip
    log = open(tmp_path / "attestor.log", "ab")
    rng = random.Random(4)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=log)

    kills = {"mid-window": 0, "mid-submission": 0}
    try:
        for round_ in range(5):
            proc = start()
            before = bridge.count()
            if round_ % 2 == 1:  # mid-submission: the bridge stored the report, the attestor never hears back
                bridge.release.clear()
                bridge.held.clear()
                bridge.hold_armed.set()
                _wait(bridge.held.is_set, 15, "a held submission")
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
                bridge.release.set()
                kills["mid-submission"] += 1
            else:  # mid-window: at an arbitrary moment once new reports flow
                _wait(lambda n=before + 2: bridge.count() >= n, 15, "new reports")
                time.sleep(rng.uniform(0.01, WINDOW_MS / 1000))
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
                kills["mid-window"] += 1
        proc = start()
        before = bridge.count()
        _wait(lambda: bridge.count() >= before + 2, 15, "reports after the last restart")
        proc.send_signal(signal.SIGTERM)  # graceful: closes the open window and flushes the spool
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()

    assert kills == {"mid-window": 3, "mid-submission": 2}
    assert bridge.conflicts == []
    assert bridge.duplicates >= 2  # each held report was re-sent after the restart and acknowledged as such

    # Every window the attestor closed (it is in the spool) reached the bridge exactly once, identical.
    spool = Spool(tmp_path / "data" / "spool.sqlite")
    try:
        assert spool.depth() == 0
        for lease_id, gpus in ((7, [0, 1]), (8, [2])):
            spooled = list(spool.reports(lease_id))
            assert len(spooled) >= 5
            seqs = [r.seq for r, *_ in spooled]
            assert seqs == list(range(1, len(seqs) + 1))
            for r, sig, _samples, acked in spooled:
                got = bridge.stored[(lease_id, r.seq)]
                assert acked and got["report"] == r and got["signature"] == "0x" + sig.hex()
            assert max(s for (lease, s) in bridge.stored if lease == lease_id) == len(seqs)
            _verify_chain(bridge, lease_id, len(seqs), gpus, address)
    finally:
        spool.close()


def _verify_chain(bridge: FakeBridge, lease_id: int, n: int, gpus: list[int], address: str) -> None:
    """What an auditor checks: links, windows, running sums, commitments, signer, re-derived figures."""
    prev_hash, prev_end = ZERO_HASH, None
    cum = [0, 0, 0, 0]
    baseline: dict[int, int] = {}
    ends: dict[int, int] = {}
    gaps = 0
    lease = next(x for x in bridge.leases if x["leaseId"] == lease_id)
    for seq in range(1, n + 1):
        got = bridge.stored[(lease_id, seq)]
        r: MeteringReport = got["report"]
        samples = [Sample.from_values(v) for v in got["samples"]]
        assert r.prevReportHash == prev_hash
        if prev_end is not None:
            assert r.windowStartMs == prev_end
        assert r.windowEndMs == max(s.tsMs for s in samples) > r.windowStartMs
        assert recover_signer(report_digest(r, CHAIN_ID, ESCROW), bytes.fromhex(got["signature"][2:])) == address
        assert r.samplesRoot == samples_root(samples) and r.sampleCount == len(samples)
        f = aggregate_window(
            samples,
            r.windowStartMs,
            r.windowEndMs,
            PERIOD_MS,
            lease_start_ms=lease["startMs"],
            lease_end_ms=lease["endMs"],
            energy_baseline=baseline,
            sample_ends=ends,
            gpu_indices=gpus,
        )
        assert (r.busyMs, r.allocatedMs, r.smActiveMs, r.energyMj, r.maxMemUsedMiB) == (
            f.busyMs,
            f.allocatedMs,
            f.smActiveMs,
            f.energyMj,
            f.maxMemUsedMiB,
        )
        assert r.flags & f.flags == f.flags and r.flags & ReportFlag.SIMULATED
        cum = [cum[0] + r.busyMs, cum[1] + r.energyMj, cum[2] + r.allocatedMs, cum[3] + r.smActiveMs]
        assert [r.cumBusyMs, r.cumEnergyMj, r.cumAllocatedMs, r.cumSmActiveMs] == cum
        gaps += bool(r.flags & ReportFlag.SAMPLE_GAP)
        baseline, ends = dict(f.energy_baseline), dict(f.sample_ends)
        prev_hash, prev_end = report_struct_hash(r), r.windowEndMs
    assert gaps >= 1  # the restarts left holes, flagged and not allocated
