"""Test helpers: an attestor that signs real reports from synthetic samples, and HTTP shortcuts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from fastapi.testclient import TestClient

from ledger.protocol.metering import aggregate_window
from ledger.protocol.samples import SampleField
from ledger.protocol import ZERO_HASH, MeteringReport, ReportFlag, Sample, config_hash, report_digest, report_struct_hash, samples_root
from ledger.chain.signing import sign_digest

PERIOD_MS = 1000
CONFIG = config_hash("test", "550.0", "12.0", {"period_ms": PERIOD_MS})


@dataclass
class SigningAttestor:
    """Signs a lease's reports in seq order with cumulative counters, like the daemon does."""

    key: bytes
    chain_id: int
    escrow: str
    lease_id: int
    gpu_indices: list[int]
    gpu_set_hash: bytes
    lease_start_ms: int
    seq: int = 0
    prev: bytes = ZERO_HASH
    cum: dict[str, int] = field(default_factory=lambda: {"busy": 0, "alloc": 0, "energy": 0, "sm": 0})
    last_end_ms: int = 0
    energy_counter: int = 1_000_000
    baseline: dict[int, int] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)

    def restart(self, key: bytes) -> None:
        """Start the lease's chain again from seq 1 (another attestor key, say)."""
        self.key, self.seq, self.prev, self.last_end_ms = key, 0, ZERO_HASH, 0
        self.cum = {"busy": 0, "alloc": 0, "energy": 0, "sm": 0}
        self.baseline, self.ends = {}, {}

    @property
    def address(self) -> str:
        return str(Account.from_key(self.key).address)

    def next_report(
        self, window_ms: int = 60_000, util_bps: int = 8000, power_mw: int = 300_000
    ) -> tuple[MeteringReport, bytes, list[Sample]]:
        """The next window: per GPU, contiguous PERIOD_MS intervals from the previous window's end, busy
        ``util_bps`` of the time, SM-active 90 % of that, the energy counter read at the window's end (and at
        the lease's first sample)."""
        start = max(self.last_end_ms, self.lease_start_ms)
        end = start + window_ms
        samples: list[Sample] = []
        for ts in range(start + PERIOD_MS, end + 1, PERIOD_MS):
            self.energy_counter += power_mw * PERIOD_MS // 1000
            read = ts == end or (self.seq == 0 and ts == start + PERIOD_MS)
            busy = util_bps * PERIOD_MS // 10_000
            flags = int(ReportFlag.SIMULATED) | (0 if read else int(SampleField.ENERGY_UNREAD))
            for g in self.gpu_indices:
                samples.append(
                    Sample(g, ts, PERIOD_MS, PERIOD_MS, busy, PERIOD_MS // 200, busy * 9 // 10, busy // 2, power_mw,
                           100, self.energy_counter if read else 0, 1024, flags)
                )  # fmt: skip
        fig = aggregate_window(samples, start, end, PERIOD_MS, lease_start_ms=self.lease_start_ms,
                               energy_baseline=self.baseline, sample_ends=self.ends, gpu_indices=self.gpu_indices)
        self.baseline, self.ends = dict(fig.energy_baseline), dict(fig.sample_ends)
        self.cum["busy"] += fig.busyMs
        self.cum["alloc"] += fig.allocatedMs
        self.cum["energy"] += fig.energyMj
        self.cum["sm"] += fig.smActiveMs
        self.seq += 1
        report = MeteringReport(
            leaseId=self.lease_id,
            seq=self.seq,
            prevReportHash=self.prev,
            windowEndMs=end,
            cumBusyMs=self.cum["busy"],
            cumEnergyMj=self.cum["energy"],
            cumAllocatedMs=self.cum["alloc"],
            cumSmActiveMs=self.cum["sm"],
            windowStartMs=start,
            gpuSetHash=self.gpu_set_hash,
            busyMs=fig.busyMs,
            smActiveMs=fig.smActiveMs,
            tensorActiveMs=fig.tensorActiveMs,
            energyMj=fig.energyMj,
            allocatedMs=fig.allocatedMs,
            maxMemUsedMiB=fig.maxMemUsedMiB,
            sampleCount=len(samples),
            samplesRoot=samples_root(samples),
            flags=fig.flags,
            configHash=CONFIG,
        )
        sig = sign_digest(report_digest(report, self.chain_id, self.escrow), self.key)
        self.prev = report_struct_hash(report)
        self.last_end_ms = end
        return report, sig, samples


def submission(node_id: int, report: MeteringReport, sig: bytes, samples: list[Sample]) -> dict[str, Any]:
    return {
        "nodeId": node_id,
        "report": report.to_json(),
        "signature": "0x" + sig.hex(),
        "samples": [s.to_list() for s in samples],
    }


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    return resp.json()


def new_account(client: TestClient, *roles: str, fund_wei: int = 10**20) -> tuple[str, str]:
    body = ok(client.post("/v1/accounts", json={"roles": list(roles)}), 201)
    if fund_wei:
        ok(client.post("/v1/faucet", json={"address": body["address"], "amountWei": fund_wei}))
    return body["address"], body["apiKey"]


def checkpoint(svc: Any, lease_id: int) -> Any:
    """The escrow's checkpoint view of a lease (``ledger.chain.views.CheckpointInfo``), read by the bridge's
    chain collaborators."""
    return svc.ledger.read.checkpoint(lease_id, svc.ledger.states.state(lease_id))


def busy_node_samples(rng: random.Random, t0_ms: int, gpus: int = 8, per_gpu: int = 10, period_ms: int = 18_000) -> list[Sample]:
    """One window of a busy node's samples at the attestor's default policy (a sample per GPU every 18 s, the
    energy counter read at the window's end), with utilization, power and memory varying as on a real GPU:
    no two samples alike, so compression is not flattered."""
    out = []
    for k in range(per_gpu):
        ts = t0_ms + (k + 1) * period_ms
        read = k == per_gpu - 1
        for g in range(gpus):
            iv = period_ms + rng.randint(-40, 40)
            polls = max(1, iv // 200)
            busy = min(iv, sum(rng.choice((0, 37, 84, 100, 100)) for _ in range(polls)) * iv // (100 * polls))
            sm = busy * rng.randint(60, 97) // 100
            out.append(Sample(g, ts + rng.randint(0, 30), iv, iv, busy, polls, sm, sm // 3, rng.randint(250_000, 690_000),
                              polls * 10, 10**9 + ts if read else 0, 40_000 + rng.randint(0, 2000),
                              0 if read else int(SampleField.ENERGY_UNREAD)))  # fmt: skip
    return out
