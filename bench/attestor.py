"""Attestor benchmark: CPU per GPU per second of metering, time per report, resident memory of the daemon.

    python bench/attestor.py [--json] [--gpus 8] [--seconds 3600] [--reports 30] [--daemon-seconds 6]

Targets (issue 11): <= 0.2 ms CPU per GPU-second metered; <= 20 ms to build, Merkle-commit and sign one
report; <= 120 MiB resident memory for the running daemon. Prints figures; asserts nothing.

How the CPU figure is obtained, honestly: the attestor's own metering loop (``attestor.daemon.Attestor``: the
collects, the buffer drains, the windows built, signed and committed to its spool) runs at its default
sampling policy over the simulated driver (``attestor.simdriver``), on a manual clock, for ``--seconds`` of
metered time. Every driver call spends, as real CPU, what it costs on an H200 (measured: 4.04 ms for the
energy counter, 2.4 ms for a utilization-buffer read, 0.31 ms for the power buffer, ~0.005 ms for the rest).
What the simulator itself computes to answer (the model's arithmetic, which a real driver does in the kernel
and which the measured costs already stand for) is timed around every call and taken out. So the figure is:
the attestor's Python CPU, measured, plus the driver's CPU at the H200's measured call costs.

With a real NVIDIA driver present (``real_driver: true``) the bench also times the real calls the attestor
makes on each GPU (50 of each) and prices the default policy with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attestor.bridge import LeaseInfo, StaticLeases, SubmitOutcome  # noqa: E402
from attestor.daemon import Attestor  # noqa: E402
from attestor.keys import Signer, create_keystore  # noqa: E402
from attestor.meter import LeaseSpec, LeaseState, ReportBuilder, SamplingPolicy  # noqa: E402
from attestor.nvml import NvmlSource  # noqa: E402
from attestor.sampler import Sampler  # noqa: E402
from attestor.simdriver import (  # noqa: E402
    MEASURED_COSTS_MS,
    DutyCycle,
    ManualClock,
    SimulatedNvml,
    h200,
    simulated_source,
)
from attestor.spool import Spool, SpooledReport  # noqa: E402
from ledger.protocol import MeteringReport, report_struct_hash  # noqa: E402

ESCROW = "0x5FbDB2315678afecb367f032d315f642f64180aa"


class _TimedDriver:
    """Wraps the simulated driver: every ``nvml*`` call is timed (thread CPU); what it spent beyond the
    configured driver cost is the simulator's own arithmetic, which the bench takes out."""

    def __init__(self, inner: SimulatedNvml) -> None:
        self._inner = inner
        self.sim_cpu_s = 0.0
        self.driver_cpu_ms = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not name.startswith("nvml") or not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            before = dict(self._inner.calls)
            t = time.thread_time()
            try:
                return attr(*args, **kw)
            finally:
                spent = time.thread_time() - t
                cost = 0.0
                for key, n in self._inner.calls.items():
                    if n != before.get(key, 0) and key not in ("nvmlDeviceGetSamples",):
                        cost += self._inner.cpu_cost_ms(key) * (n - before.get(key, 0))
                self.driver_cpu_ms += cost
                self.sim_cpu_s += max(0.0, spent - cost / 1000)

        return call


class _Sink:
    def submit(self, node_id: int, item: SpooledReport) -> SubmitOutcome:
        return SubmitOutcome(True, 201)


def metering_cpu(gpus: int, seconds: int) -> dict[str, Any]:
    """CPU per GPU-second of the daemon's metering loop at the default policy (see the module docstring)."""
    clock = ManualClock()
    loads = [DutyCycle(on_ms=500 + 100 * i, off_ms=500) for i in range(gpus)]
    inner = SimulatedNvml([h200(f"GPU-{i:08d}-0000-4000-8000-000000000000", w) for i, w in enumerate(loads)],
                          clock_us=clock, costs=MEASURED_COSTS_MS)  # fmt: skip
    driver = _TimedDriver(inner)
    source = NvmlSource([g.uuid for g in inner.gpus], nvml=driver, clock_us=clock)
    policy = SamplingPolicy()
    builder = ReportBuilder(
        Signer(b"\x05" * 32), 31337, ESCROW, policy, driver_version="bench", nvml_version="bench", simulated=True
    )
    start = clock.wall_ms()
    lease = LeaseInfo(1, tuple(range(gpus)), start - 1_000, start + seconds * 1000)
    with tempfile.TemporaryDirectory() as d:
        att = Attestor(
            node_id=1, source=source, builder=builder, spool=Spool(Path(d) / "s.sqlite"),
            leases=StaticLeases([lease]), sink_factory=_Sink, clock=clock,
        )  # fmt: skip
        stop = threading.Event()
        wait = clock.wait

        def stepping(event: threading.Event, s: float) -> bool:
            wait(event, s)
            if clock.wall_ms() >= lease.end_ms + 1_000:
                event.set()
            return event.is_set()

        clock.wait = stepping  # type: ignore[method-assign]
        inner.calls.clear()
        driver.sim_cpu_s = driver.driver_cpu_ms = 0.0
        t = time.process_time()
        att.run(stop)
        total_s = time.process_time() - t
        reports = att.spool.status().leases[0].last_seq
        att.close()
        att.spool.close()
    attestor_ms = (total_s - driver.sim_cpu_s) * 1000
    per = gpus * seconds
    calls = {k: v for k, v in inner.calls.items() if "/" in k or k == "nvmlDeviceGetTotalEnergyConsumption"}
    return {
        "cpu_ms_per_gpu_sample": round(attestor_ms / per, 4),
        "driver_cpu_ms_per_gpu_second": round(driver.driver_cpu_ms / per, 4),
        "python_cpu_ms_per_gpu_second": round((attestor_ms - driver.driver_cpu_ms) / per, 4),
        "reports": reports,
        "calls_per_gpu_hour": {k: round(v * 3600 / per, 1) for k, v in sorted(calls.items())},
        "policy": {"samplePeriodMs": policy.sample_period_ms, "windowMs": policy.window_ms},
    }


def ms_per_report(reports: int, gpus: int = 8) -> float:
    """Build (aggregate), Merkle-commit and sign one default-policy window of ``gpus`` GPUs."""
    clock = ManualClock()
    src = simulated_source(f"{gpus}xH100", seed=1, profile="bursty", clock_us=clock)
    sampler = Sampler(src)
    policy = SamplingPolicy()
    builder = ReportBuilder(
        Signer(b"\x05" * 32), 31337, ESCROW, policy, driver_version="sim", nvml_version="sim", simulated=True
    )
    lease = LeaseSpec.build(1, range(gpus), clock.wall_ms() - 10_000, clock.wall_ms() + 10**9, src.uuids)
    windows = []
    start = clock.wall_ms()
    for _ in range(reports):
        rows = []
        for k in range(policy.window_ms // policy.sample_period_ms):
            clock.advance_ms(policy.sample_period_ms)
            rows += sampler.collect(read_energy=k == policy.window_ms // policy.sample_period_ms - 1)
        rows.sort(key=lambda s: (s.tsMs, s.gpuIndex))
        end = max(s.tsMs for s in rows)
        windows.append((start, end, rows))
        start = end
    state = LeaseState(1)
    t = time.perf_counter()
    for ws, we, rows in windows:
        built = builder.build(lease, state, rows, ws, we)
        state = built.state
    return (time.perf_counter() - t) * 1000 / reports


def real_driver_costs() -> dict[str, Any] | None:
    """With a real NVIDIA driver: CPU ms per call the attestor makes (50 each, per GPU), and the default
    policy priced with them. None without a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        calls: dict[str, Callable[[Any], Any]] = {
            "energy": pynvml.nvmlDeviceGetTotalEnergyConsumption,
            "util_buffer": lambda h: pynvml.nvmlDeviceGetSamples(h, pynvml.NVML_GPU_UTILIZATION_SAMPLES, 0),
            "power_buffer": lambda h: pynvml.nvmlDeviceGetSamples(h, pynvml.NVML_TOTAL_POWER_SAMPLES, 0),
            "memory": pynvml.nvmlDeviceGetMemoryInfo,
        }
        costs = {}
        for name, fn in calls.items():
            t = time.process_time()
            n = 0
            for h in handles:
                for _ in range(50):
                    try:
                        fn(h)
                    except pynvml.NVMLError:
                        pass
                    n += 1
            costs[name] = (time.process_time() - t) * 1000 / n
        p = SamplingPolicy()
        per_s = (
            (costs["util_buffer"] + costs["power_buffer"] + 6 * costs["memory"]) * 1000 / p.sample_period_ms
            + costs["energy"] * 1000 / p.window_ms
        )
        return {"call_cpu_ms": {k: round(v, 4) for k, v in costs.items()}, "driver_cpu_ms_per_gpu_second": round(per_s, 4)}
    finally:
        pynvml.nvmlShutdown()


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
                    self._json(200, {"chainId": 31337, "verifyingContract": ESCROW, "chainClock": "real"})

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
    """Peak resident memory (VmHWM, MiB) of `attest run --simulate 8xH100` sampling every 500 ms with 1 s
    windows against a local bridge, and how many reports that bridge acknowledged meanwhile."""
    now = time.time_ns() // 1_000_000
    lease = {"leaseId": 1, "gpuIndices": list(range(8)), "startMs": now - 1_000, "endMs": now + 3_600_000}
    bridge = _Bridge([dict(lease, state="Active")])
    with tempfile.TemporaryDirectory() as d:
        create_keystore(Path(d) / "ks.json", "pw", kdf="pbkdf2", iterations=2)
        env = dict(os.environ, COMPUTE_LEDGER_ATTESTOR_PASSWORD="pw", PYTHONPATH=str(REPO))
        cmd = [
            sys.executable, "-m", "attestor.cli", "run", "--node-id", "1", "--api", bridge.url,
            "--simulate", "8xH100", "--seed", "1", "--data-dir", d, "--keystore", str(Path(d) / "ks.json"),
            "--sample-period-ms", "500", "--window-ms", "1000", "--metrics-port", "0",
        ]  # fmt: skip
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
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--seconds", type=int, default=3_600, help="metered (simulated) seconds: one lease that long")
    p.add_argument("--reports", type=int, default=30)
    p.add_argument("--daemon-seconds", type=float, default=6.0)
    args = p.parse_args(argv)

    cpu = metering_cpu(args.gpus, args.seconds)
    per_report = ms_per_report(args.reports)
    rss, acked = daemon_rss_mib(args.daemon_seconds)
    real = real_driver_costs()
    figures: dict[str, Any] = {
        "cpu_ms_per_gpu_sample": cpu["cpu_ms_per_gpu_sample"],  # per GPU-second metered (the key kept its name)
        "driver_cpu_ms_per_gpu_second": cpu["driver_cpu_ms_per_gpu_second"],
        "python_cpu_ms_per_gpu_second": cpu["python_cpu_ms_per_gpu_second"],
        "calls_per_gpu_hour": cpu["calls_per_gpu_hour"],
        "policy": cpu["policy"],
        "ms_per_report": round(per_report, 2),
        "rss_mib": round(rss, 1),
        "daemon_reports_acknowledged": acked,
        "real_driver": real is not None,
    }
    if real is not None:
        figures["real"] = real
    if args.json:
        print(json.dumps(figures))
        return 0
    pol = cpu["policy"]
    print(f"metering {args.gpus} GPUs for {args.seconds} s at the default policy "
          f"(a sample every {pol['samplePeriodMs'] / 1000:g} s, a report every {pol['windowMs'] / 1000:g} s):")
    print(f"  CPU per GPU-second: {cpu['cpu_ms_per_gpu_sample']:.4f} ms   (target <= 0.2 ms)"
          f"  = driver {cpu['driver_cpu_ms_per_gpu_second']:.4f} ms at the H200's measured call costs"
          f" + attestor Python {cpu['python_cpu_ms_per_gpu_second']:.4f} ms (measured)")
    print(f"  driver calls per GPU-hour: {cpu['calls_per_gpu_hour']}")
    print(f"build + Merkle-commit + sign one default window of 8 GPUs: {per_report:.2f} ms per report   "
          "(target <= 20 ms)")
    print(f"daemon peak RSS (8xH100 simulated, bridge, metrics on): {rss:.1f} MiB   (target <= 120 MiB);"
          f" {acked} reports acknowledged meanwhile")
    if real is None:
        print("real driver: none on this machine (the CPU figure above prices the driver at the H200's costs)")
    else:
        print(f"real driver: call CPU ms {real['call_cpu_ms']}; the default policy costs "
              f"{real['driver_cpu_ms_per_gpu_second']:.4f} ms of driver CPU per GPU-second here")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
