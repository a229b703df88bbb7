"""Attestor benchmark: CPU per GPU sample, time per report, resident memory of the running daemon.

    python bench/attestor.py [--json] [--ticks 2000] [--reports 30] [--daemon-seconds 6]

Targets (issue 4): <= 0.2 ms CPU per GPU sample; <= 20 ms to build, Merkle-commit and sign one report of
8 GPUs x 60 samples; <= 120 MiB resident memory for the running daemon. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attestor.keys import Signer, create_keystore  # noqa: E402
from attestor.meter import LeaseSpec, LeaseState, ReportBuilder, SamplingPolicy  # noqa: E402
from attestor.nvml import NvmlSource  # noqa: E402
from attestor.sampler import Sampler  # noqa: E402
from attestor.source import SimulatedSource  # noqa: E402
from ledger.protocol import MeteringReport, report_struct_hash  # noqa: E402

T0 = 1_764_120_000_000
ESCROW = "0x5FbDB2315678afecb367f032d315f642f64180aa"


def _fake_nvml_module() -> Any:
    path = REPO / "tests" / "attestor" / "fake_pynvml.py"
    spec = importlib.util.spec_from_file_location("fake_pynvml", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fake_pynvml"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def cpu_per_gpu_sample(sampler: Sampler, ticks: int) -> float:
    """CPU ms per GPU sample over ``ticks`` reads of every GPU."""
    sampler.tick(T0)
    t = time.process_time()
    for k in range(1, ticks + 1):
        sampler.tick(T0 + k * 1_000)
    return float((time.process_time() - t) * 1000 / (ticks * sampler.gpu_count))


def ms_per_report(reports: int) -> float:
    src = SimulatedSource.from_spec("8xH100", seed=1, profile="bursty")
    sampler = Sampler(src)
    builder = ReportBuilder(
        Signer(b"\x05" * 32),
        31337,
        ESCROW,
        SamplingPolicy(1_000, 60_000),
        driver_version="simulated",
        nvml_version="simulated",
        simulated=True,
    )
    lease = LeaseSpec.build(1, range(8), T0 - 10_000, T0 + 10**9, src.uuids)
    windows = []
    for w in range(reports):
        start = T0 + w * 60_000
        windows.append((start, [s for k in range(1, 61) for s in sampler.tick(start + k * 1_000)]))
    state = LeaseState(1)
    t = time.perf_counter()
    for start, samples in windows:
        built = builder.build(lease, state, samples, start, start + 60_000)
        state = built.state
    return (time.perf_counter() - t) * 1000 / reports


class _Bridge:
    """A minimal bridge that acknowledges every report (for the daemon's memory figure)."""

    def __init__(self, leases: list[dict[str, Any]]) -> None:
        self.acked = 0
        bridge = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                return None

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.endswith("/active-leases"):
                    self._json(200, {"leases": leases})
                else:
                    self._json(200, {"chainId": 31337, "verifyingContract": ESCROW})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                h = "0x" + report_struct_hash(MeteringReport.from_json(body["report"])).hex()
                bridge.acked += 1
                self._json(201, {"accepted": True, "reportHash": h})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def daemon_rss_mib(seconds: float) -> tuple[float, int]:
    """Peak resident memory (VmHWM, MiB) of `attest run --simulate 8xH100` sampling every 100 ms with 1 s
    windows against a local bridge, and how many reports that bridge acknowledged meanwhile."""
    now = time.time_ns() // 1_000_000
    bridge = _Bridge(
        [
            {
                "leaseId": 1,
                "gpuIndices": list(range(8)),
                "startMs": now - 1_000,
                "endMs": now + 3_600_000,
                "state": "Active",
            }
        ]
    )
    with tempfile.TemporaryDirectory() as d:
        create_keystore(Path(d) / "ks.json", "pw", kdf="pbkdf2", iterations=2)
        env = dict(os.environ, COMPUTE_LEDGER_ATTESTOR_PASSWORD="pw", PYTHONPATH=str(REPO))
        cmd = [
            sys.executable,
            "-m",
            "attestor.cli",
            "run",
            "--node-id",
            "1",
            "--api",
            bridge.url,
            "--simulate",
            "8xH100",
            "--seed",
            "1",
            "--data-dir",
            d,
            "--keystore",
            str(Path(d) / "ks.json"),
            "--sample-period-ms",
            "100",
            "--window-ms",
            "1000",
            "--metrics-port",
            "0",
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(seconds)
            status = Path(f"/proc/{proc.pid}/status").read_text()
        finally:
            proc.terminate()
            proc.wait(10)
            bridge.close()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return kib / 1024, bridge.acked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ticks", type=int, default=2_000, help="reads of all 8 GPUs per source")
    p.add_argument("--reports", type=int, default=30)
    p.add_argument("--daemon-seconds", type=float, default=6.0)
    args = p.parse_args(argv)

    sim = cpu_per_gpu_sample(Sampler(SimulatedSource.from_spec("8xH100", seed=1, profile="bursty")), args.ticks)
    fake = _fake_nvml_module()
    uuids = [f"GPU-{i:08d}-0000-0000-0000-000000000000" for i in range(8)]
    nvml = cpu_per_gpu_sample(
        Sampler(NvmlSource(uuids, nvml=fake.FakeNvml([fake.FakeGpu(u) for u in uuids]))), args.ticks
    )
    per_report = ms_per_report(args.reports)
    rss, acked = daemon_rss_mib(args.daemon_seconds)
    figures = {
        "cpu_ms_per_gpu_sample": round(max(sim, nvml), 4),
        "cpu_ms_per_gpu_sample_simulated": round(sim, 4),
        "cpu_ms_per_gpu_sample_nvml_fake": round(nvml, 4),
        "ms_per_report": round(per_report, 2),
        "rss_mib": round(rss, 1),
        "daemon_reports_acknowledged": acked,
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"CPU per GPU sample, simulated source:      {sim:.4f} ms   (target <= 0.2 ms)")
    print(f"CPU per GPU sample, NVML path (fake pynvml): {nvml:.4f} ms   (target <= 0.2 ms)")
    print(f"build + Merkle-commit + sign, 8 GPUs x 60 samples: {per_report:.2f} ms per report   (target <= 20 ms)")
    print(
        f"daemon peak RSS (8xH100 simulated, bridge, metrics on): {rss:.1f} MiB   (target <= 120 MiB);"
        f" {acked} reports acknowledged meanwhile"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
