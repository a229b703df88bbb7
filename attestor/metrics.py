"""Prometheus metrics of the attestor, GPU gauges named like NVIDIA dcgm-exporter's.

Off by default; when enabled the endpoint binds 127.0.0.1 unless told otherwise. GPU gauges carry
dcgm-exporter's labels (``gpu``, ``UUID``, ``modelName``, ``Hostname``). A field the GPU does not support
is absent from the exposition (never exported as 0). Units follow dcgm-exporter: utilization in %,
power in W, energy in mJ, framebuffer in MiB.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from .source import GpuInterval

_GPU_LABELS = ("gpu", "UUID", "modelName", "Hostname")


class Metrics:
    """Gauges and counters in a registry handed in by the caller (tests pass a fresh one)."""

    def __init__(
        self, registry: CollectorRegistry, uuids: Sequence[str], model_names: Sequence[str], hostname: str | None = None
    ) -> None:
        self.registry = registry
        host = hostname or socket.gethostname()
        self._labels = [(str(i), u, m, host) for i, (u, m) in enumerate(zip(uuids, model_names, strict=True))]
        self.gpu_util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", _GPU_LABELS, registry=registry)
        self.power = Gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", _GPU_LABELS, registry=registry)
        self.energy = Gauge(
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "Total energy consumption since boot (in mJ).",
            _GPU_LABELS,
            registry=registry,
        )
        self.sm_active = Gauge(
            "DCGM_FI_PROF_SM_ACTIVE",
            "Ratio of time at least one warp was active on an SM, averaged over all SMs (GPM).",
            _GPU_LABELS,
            registry=registry,
        )
        self.fb_used = Gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", _GPU_LABELS, registry=registry)
        self.spool_depth = Gauge(
            "compute_ledger_attestor_spool_depth", "Reports committed but not yet acknowledged.", registry=registry
        )
        self.reports = Counter("compute_ledger_attestor_reports", "Reports built and committed.", registry=registry)
        self.acks = Counter("compute_ledger_attestor_acks", "Reports acknowledged by the bridge.", registry=registry)
        self.send_errors = Counter(
            "compute_ledger_attestor_send_errors", "Failed submissions (retried).", registry=registry
        )
        self.util_holes = Counter(
            "compute_ledger_attestor_util_holes",
            "Sampling intervals in which the driver's utilization buffer had lost samples (read too late).",
            registry=registry,
        )
        self.active_leases = Gauge("compute_ledger_attestor_active_leases", "Leases being metered.", registry=registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def observe(self, intervals: Sequence[GpuInterval]) -> None:
        """Gauges from the GPUs' latest intervals: utilization is the busy share of the covered time."""
        for r in intervals:
            labels = self._labels[r.index]
            util = None if not r.covered_ms or r.busy_ms is None else round(100 * r.busy_ms / r.covered_ms, 2)
            _set(self.gpu_util, labels, util)
            sm = None if r.sm_active_ms is None or r.interval_ms <= 0 else round(r.sm_active_ms / r.interval_ms, 4)
            _set(self.sm_active, labels, sm)
            _set(self.power, labels, None if r.power_mw is None else r.power_mw / 1000)
            if r.energy_read:
                _set(self.energy, labels, r.energy_mj)
            _set(self.fb_used, labels, r.mem_used_mib)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the HTTP endpoint in a daemon thread; returns the bound port (useful with port 0)."""
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _set(g: Gauge, labels: tuple[str, ...], value: float | int | None) -> None:
    if value is None:
        try:
            g.remove(*labels)
        except KeyError:
            pass
        return
    g.labels(*labels).set(value)
