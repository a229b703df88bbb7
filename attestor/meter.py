"""Samples of one lease's window -> a signed, hash-chained :class:`~ledger.protocol.MeteringReport`.

The window figures come from :func:`ledger.protocol.metering.aggregate_window` (the rule auditors re-derive), the
samples' commitment from :func:`ledger.protocol.samples_root`, the chain link from
:func:`ledger.protocol.report_struct_hash` and the signature from :mod:`attestor.keys`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ledger.protocol.metering import aggregate_window
from ledger.protocol import (
    DOMAIN_VERSION,
    ZERO_HASH,
    MeteringReport,
    Sample,
    config_hash,
    domain_separator,
    gpu_set_hash,
    gpu_uuid_hash,
    report_struct_hash,
    samples_root,
    typed_data_digest,
)

from . import __version__
from .errors import ConfigError
from .keys import Signer


PROTOCOL_VERSION = int(DOMAIN_VERSION)  # the EIP-712 domain version reports are signed under


DEFAULT_SAMPLE_PERIOD_MS = 18_000
DEFAULT_WINDOW_MS = 180_000


@dataclass(frozen=True, slots=True)
class SamplingPolicy:
    """How the attestor samples; part of every report's configHash.

    ``sample_period_ms``: how often each GPU's interval is closed into a sample; the driver's sample buffers
    are read then (and more often if they turn out to lose samples in between). The default, 18 s, reads the
    utilization buffer before it wraps: it holds about 100 samples of 200 ms (what ``nvidia-smi -q -d
    UTILIZATION`` lists), about 20 s, and each read costs ~2.4 ms of CPU on an H200. ``window_ms``: how
    often a lease's report is closed; the energy counter is read at these boundaries only (each read costs
    ~4 ms of CPU; a window's energy stays an exact counter delta). With the defaults the attestor spends
    under 0.2 ms of CPU per GPU-second at the H200's measured call costs (bench/attestor.py)."""

    sample_period_ms: int = DEFAULT_SAMPLE_PERIOD_MS
    window_ms: int = DEFAULT_WINDOW_MS
    gap_tolerance_ms: int | None = None  # default: half a period
    min_drain_ms: int = 1_000  # the fastest the buffers are read when they lose samples

    def __post_init__(self) -> None:
        if self.sample_period_ms < 1 or self.window_ms < self.sample_period_ms:
            raise ConfigError("need 1 <= sample period <= window")
        if self.window_ms % self.sample_period_ms:
            raise ConfigError(f"the window ({self.window_ms} ms) must be a multiple of the sample period "
                              f"({self.sample_period_ms} ms)")

    @property
    def tolerance_ms(self) -> int:
        return self.sample_period_ms // 2 if self.gap_tolerance_ms is None else self.gap_tolerance_ms

    def as_dict(self, simulated: bool, util_buffer: bool = True, gpm: bool = True) -> dict[str, int]:
        return {
            "protocol": PROTOCOL_VERSION,
            "samplePeriodMs": self.sample_period_ms,
            "windowMs": self.window_ms,
            "gapToleranceMs": self.tolerance_ms,
            "energyRead": 1,  # 1: at window boundaries
            "utilSource": 1 if util_buffer else 0,  # 1: the driver's utilization sample buffer; 0: polled util.gpu
            "gpm": int(gpm),
            "simulated": int(simulated),
        }


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    """A lease to meter on this node: its GPUs (node indices), its span (unix ms) and gpuSetHash."""

    lease_id: int
    gpu_indices: tuple[int, ...]
    start_ms: int
    end_ms: int
    gpu_set_hash: bytes

    @classmethod
    def build(
        cls, lease_id: int, gpu_indices: Sequence[int], start_ms: int, end_ms: int, uuids: Sequence[str]
    ) -> LeaseSpec:
        idx = tuple(sorted(set(int(i) for i in gpu_indices)))
        if not idx:
            raise ConfigError(f"lease {lease_id} has no GPUs")
        bad = [i for i in idx if not 0 <= i < len(uuids)]
        if bad:
            raise ConfigError(f"lease {lease_id} names GPU indices {bad} but the node has {len(uuids)} GPUs")
        if end_ms <= start_ms:
            raise ConfigError(f"lease {lease_id} ends before it starts")
        return cls(lease_id, idx, start_ms, end_ms, gpu_set_hash(gpu_uuid_hash(uuids[i]) for i in idx))


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What the chain of a lease needs to continue: persisted in the spool with every report."""

    lease_id: int
    seq: int = 0
    last_hash: bytes = ZERO_HASH
    last_end_ms: int | None = None
    cum_busy_ms: int = 0
    cum_energy_mj: int = 0
    cum_allocated_ms: int = 0
    energy_baseline: Mapping[int, int] = field(default_factory=dict)
    cum_sm_active_ms: int = 0
    sample_ends: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BuiltReport:
    report: MeteringReport
    report_hash: bytes
    signature: bytes
    samples: tuple[Sample, ...]
    state: LeaseState  # the lease state after this report


class ReportBuilder:
    """Builds and signs reports for one node (one key, one EIP-712 domain, one configuration)."""

    def __init__(
        self,
        signer: Signer,
        chain_id: int,
        escrow: str,
        policy: SamplingPolicy,
        *,
        driver_version: str,
        nvml_version: str,
        simulated: bool,
        util_buffer: bool = True,
        gpm: bool = True,
    ) -> None:
        self._signer = signer
        try:  # the EIP-712 domain is fixed for a node: computed (and the escrow address checked) once
            self._domain = domain_separator(chain_id, escrow)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"escrow {escrow!r} is not an address") from e
        self.policy = policy
        self.config_hash = config_hash(
            __version__, driver_version, nvml_version, policy.as_dict(simulated, util_buffer, gpm)
        )

    def build(
        self,
        lease: LeaseSpec,
        state: LeaseState,
        samples: Sequence[Sample],
        window_start_ms: int,
        window_end_ms: int,
        extra_flags: int = 0,
    ) -> BuiltReport:
        """The next report of ``lease`` (seq = state.seq + 1) over ``(window_start_ms, window_end_ms]``."""
        p = self.policy
        fig = aggregate_window(
            samples,
            window_start_ms,
            window_end_ms,
            p.sample_period_ms,
            gap_tolerance_ms=p.tolerance_ms,
            lease_start_ms=lease.start_ms,
            lease_end_ms=lease.end_ms,
            energy_baseline=state.energy_baseline,
            sample_ends=state.sample_ends,
            gpu_indices=lease.gpu_indices,
        )
        report = MeteringReport(
            leaseId=lease.lease_id,
            seq=state.seq + 1,
            prevReportHash=state.last_hash,
            windowEndMs=window_end_ms,
            cumBusyMs=state.cum_busy_ms + fig.busyMs,
            cumEnergyMj=state.cum_energy_mj + fig.energyMj,
            cumAllocatedMs=state.cum_allocated_ms + fig.allocatedMs,
            cumSmActiveMs=state.cum_sm_active_ms + fig.smActiveMs,
            windowStartMs=window_start_ms,
            gpuSetHash=lease.gpu_set_hash,
            busyMs=fig.busyMs,
            smActiveMs=fig.smActiveMs,
            tensorActiveMs=fig.tensorActiveMs,
            energyMj=fig.energyMj,
            allocatedMs=fig.allocatedMs,
            maxMemUsedMiB=fig.maxMemUsedMiB,
            sampleCount=fig.sampleCount,
            samplesRoot=samples_root(samples),
            flags=fig.flags | extra_flags,
            configHash=self.config_hash,
        )
        h = report_struct_hash(report)
        sig = self._signer.sign(typed_data_digest(self._domain, h))
        new_state = LeaseState(
            lease_id=lease.lease_id,
            seq=report.seq,
            last_hash=h,
            last_end_ms=window_end_ms,
            cum_busy_ms=report.cumBusyMs,
            cum_energy_mj=report.cumEnergyMj,
            cum_allocated_ms=report.cumAllocatedMs,
            energy_baseline=dict(fig.energy_baseline),
            cum_sm_active_ms=report.cumSmActiveMs,
            sample_ends=dict(fig.sample_ends),
        )
        return BuiltReport(report, h, sig, tuple(samples), new_state)
