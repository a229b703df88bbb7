"""For ``compute-ledger demo --gpu``: a built-in load on the GPUs, and an independent view of the driver.

:class:`MatmulLoad` runs bf16 8192² matmul bursts on every GPU on a 1 s on / 1 s off duty cycle (PyTorch;
None when it is not importable) and times its own synchronized bursts: the load's truth. :class:`DriverWatch`
reads each GPU's utilization sample buffer itself, independently of the attestor (through the same driver
module the node's source opened), so the demo can print each window's billed busy time next to the driver's
own figures and the load's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from attestor.nvml import NvmlSource

ON_S, OFF_S = 1.0, 1.0


class MatmulLoad:
    """Matmul bursts on every GPU, each in its own thread."""

    def __init__(self, torch: Any, count: int) -> None:
        self._torch = torch
        self._stop = threading.Event()
        self.bursts: dict[int, list[tuple[float, float]]] = {i: [] for i in range(count)}
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    @classmethod
    def start(cls, count: int) -> MatmulLoad | None:
        try:
            import torch
        except ImportError:
            return None
        if not torch.cuda.is_available() or torch.cuda.device_count() < count:
            return None
        load = cls(torch, count)
        for t in load._threads:
            t.start()
        return load

    def describe(self) -> str:
        return f"built-in bf16 matmul bursts, {ON_S:g} s on / {OFF_S:g} s off on each GPU (PyTorch)"

    def _run(self, i: int) -> None:
        torch = self._torch
        with torch.cuda.device(i):
            a = torch.randn(8192, 8192, device=f"cuda:{i}", dtype=torch.bfloat16)
            while not self._stop.is_set():
                t0 = time.time()
                while time.time() - t0 < ON_S:
                    a @ a
                    torch.cuda.synchronize(i)
                self.bursts[i].append((t0, time.time()))
                self._stop.wait(OFF_S)

    def busy_s(self, gpu: int, lo_ms: int, hi_ms: int) -> float:
        lo, hi = lo_ms / 1000, hi_ms / 1000
        return sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in self.bursts.get(gpu, []))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


class DriverWatch:
    """Reads every GPU's utilization sample buffer on its own (call :meth:`poll` at least every 10 s)."""

    def __init__(self, source: NvmlSource) -> None:
        self._n = source.nvml
        self._handles = [self._n.nvmlDeviceGetHandleByUUID(u) for u in source.uuids]
        self._seen = [time.time_ns() // 1000] * len(self._handles)
        self.samples: list[list[tuple[int, int]]] = [[] for _ in self._handles]  # (ts µs, percent)

    def poll(self) -> None:
        n = self._n
        for i, h in enumerate(self._handles):
            try:
                _, got = n.nvmlDeviceGetSamples(h, n.NVML_GPU_UTILIZATION_SAMPLES, self._seen[i])
            except n.NVMLError:
                continue
            for s in got:
                ts = int(s.timeStamp)
                if ts > self._seen[i]:
                    self.samples[i].append((ts, int(s.sampleValue.uiVal)))
                    self._seen[i] = ts

    def busy_s(self, gpu: int, lo_ms: int, hi_ms: int) -> float:
        """Σ percent × period of the driver's samples stamped in (lo, hi]."""
        rows = self.samples[gpu]
        total = 0.0
        for (t0, _), (t1, pct) in zip(rows, rows[1:]):
            if lo_ms * 1000 < t1 <= hi_ms * 1000:
                total += pct / 100 * (t1 - t0) / 1e6
        return total

    def table(self, reports: Sequence[dict[str, Any]], gpus: Sequence[int], load: MatmulLoad | None) -> str:
        """Each window: what the attestor signed next to the driver's own samples and the load's timing."""
        lines = [
            "      window                      attestor busy s  SM-active s   driver buffer busy s   load's own busy s",
        ]
        for r in reports:
            lo, hi = int(r["windowStartMs"]), int(r["windowEndMs"])
            driver = sum(self.busy_s(g, lo, hi) for g in gpus)
            own = "-" if load is None else f"{sum(load.busy_s(g, lo, hi) for g in gpus):.2f}"
            lines.append(
                f"      seq {int(r['seq']):>3} {lo}..{hi}  {int(r['busyMs']) / 1000:>10.2f}  "
                f"{int(r['smActiveMs']) / 1000:>11.2f}  {driver:>21.2f}  {own:>18}"
            )
        return "\n".join(lines)
