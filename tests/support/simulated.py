"""Signed report chains from a simulated node, built by the attestor's own code (tests of the spool, the bridge,
the chain and the JavaScript references use them).

The simulated driver (:mod:`attestor.simdriver`) runs on a manual clock; every ``period_ms`` the GPUs' intervals
are collected through :class:`attestor.nvml.NvmlSource` and :class:`attestor.sampler.Sampler`, the energy
counter is read at window boundaries, and each window (ending at its newest sample, starting where the
previous one ended) is built and signed by :class:`attestor.meter.ReportBuilder`, exactly as the daemon does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attestor.keys import Signer
from attestor.meter import BuiltReport, LeaseSpec, LeaseState, ReportBuilder, SamplingPolicy
from attestor.nvml import NvmlSource
from attestor.sampler import Sampler
from attestor.simdriver import T0_US, ManualClock, simulated_source
from ledger.protocol import Sample

T0 = T0_US // 1000
ESCROW = "0x5FbDB2315678afecb367f032d315f642f64180aa"
CHAIN_ID = 31337


@dataclass
class SimulatedLease:
    """A lease on a simulated node and the reports built for it so far."""

    source: NvmlSource
    sampler: Sampler
    clock: ManualClock
    builder: ReportBuilder
    spec: LeaseSpec
    period_ms: int
    window_ms: int
    state: LeaseState
    reports: list[BuiltReport]
    _window_start: int | None = None

    @property
    def uuids(self) -> list[str]:
        return list(self.source.uuids)

    def window(self, extra_flags: int = 0) -> BuiltReport:
        """Meter one more window of the lease and build its signed report."""
        sampler = self.sampler
        rows: list[Sample] = []
        for k in range(self.window_ms // self.period_ms):
            self.clock.advance_ms(self.period_ms)
            last = k == self.window_ms // self.period_ms - 1
            rows += [
                x
                for x in sampler.collect(read_energy=last or not self.reports and k == 0)
                if x.gpuIndex in self.spec.gpu_indices and x.tsMs > self.spec.start_ms
            ]
        rows.sort(key=lambda x: (x.tsMs, x.gpuIndex))
        start = self._window_start
        if start is None:
            start = max(self.spec.start_ms, min(x.tsMs - x.intervalMs for x in rows))
        end = max(x.tsMs for x in rows)
        built = self.builder.build(self.spec, self.state, rows, start, end, extra_flags)
        self._window_start = end
        self.state = built.state
        self.reports.append(built)
        return built


def simulated_lease(
    *,
    spec: str = "2xH100",
    seed: int = 1,
    profile: str = "bursty",
    lease_id: int = 7,
    gpu_indices: Sequence[int] = (0, 1),
    period_ms: int = 2_000,
    window_ms: int = 10_000,
    signer: Signer | None = None,
    chain_id: int = CHAIN_ID,
    escrow: str = ESCROW,
    start_ms: int | None = None,
    end_ms: int | None = None,
    clock: ManualClock | None = None,
) -> SimulatedLease:
    """A simulated node metering one lease (starting now on the manual clock unless ``start_ms`` says)."""
    clock = clock or ManualClock()
    source = simulated_source(spec, seed=seed, profile=profile, clock_us=clock)
    builder = ReportBuilder(
        signer or Signer(b"\x01" * 32),
        chain_id,
        escrow,
        SamplingPolicy(period_ms, window_ms),
        driver_version=source.driver_version,
        nvml_version=source.nvml_version,
        simulated=True,
    )
    start = clock.wall_ms() if start_ms is None else start_ms
    end = start + 10**7 if end_ms is None else end_ms
    lease = LeaseSpec.build(lease_id, gpu_indices, start, end, source.uuids)
    return SimulatedLease(source, Sampler(source), clock, builder, lease, period_ms, window_ms, LeaseState(lease_id), [])


def simulated_reports(n: int, **kw: object) -> tuple[list[str], list[BuiltReport]]:
    """``n`` consecutive signed windows of one simulated lease: (the node's GPU UUIDs, the reports)."""
    lease = simulated_lease(**kw)  # type: ignore[arg-type]
    for _ in range(n):
        lease.window()
    return lease.uuids, lease.reports
