"""A deterministic fake GPU node and a consistent, signed lease built from it (audit fixtures and bench).

Utilization follows a fixed pseudo-random walk per GPU, power follows utilization between idle and max,
the energy counter integrates power exactly (trapezoid, in mJ), samples are taken every period on every
GPU, reports are built with ``ledger.protocol.metering.aggregate_window`` and signed with ``ledger.protocol``, and
the chain's checkpoints are computed by the escrow's rule. Hooks let a test play a lying attestor: they
change samples or report fields *before* signing, so the signature and hash chain stay valid and only the
semantic check can catch the lie.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from auditor.core import (
    AttestorPeriod,
    AuditInput,
    BillingMode,
    LeaseMoney,
    LeaseTerms,
    Settlement,
    SignedReport,
    TopUp,
    billable_of,
    charge_for,
)
from ledger.protocol.metering import aggregate_window
from ledger.protocol import ZERO_HASH, MeteringReport, ReportFlag, Sample, config_hash, gpu_set_hash, gpu_uuid_hash, report_digest, report_struct_hash, samples_root
from ledger.chain.signing import address_of, sign_digest

ATTESTOR_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
OTHER_KEY = bytes.fromhex("8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f")
CHAIN_ID = 31337
ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LEASE_START_MS = 1_764_000_000_000
IDLE_MW = 60_000
MAX_MW = 400_000
CONFIG = config_hash("0.1.0", "sim", "sim", {"periodMs": 1000, "windowMs": 10_000})

SampleHook = Callable[[int, list[Sample]], list[Sample]]
ReportHook = Callable[[int, dict[str, Any]], dict[str, Any]]


@dataclass
class FakeLease:
    """The lease as the auditor would fetch it, plus what the fixture knows (keys, raw parts)."""

    input: AuditInput
    key: bytes
    reports: list[SignedReport] = field(default_factory=list)

    def with_reports(self, reports: list[SignedReport]) -> AuditInput:
        return AuditInput(self.input.terms, tuple(reports), self.input.settlements, self.input.money)

    def with_settlements(self, settlements: list[Settlement]) -> AuditInput:
        return AuditInput(self.input.terms, self.input.reports, tuple(settlements), self.input.money)


def fake_samples(
    rng: random.Random, gpus: tuple[int, ...], start_ms: int, end_ms: int, period_ms: int, state: dict[int, list[int]]
) -> list[Sample]:
    """One window of samples, every period on every GPU; ``state[gpu] = [util, power, energy]`` carries on."""
    out: list[Sample] = []
    ts = start_ms + period_ms
    while ts <= end_ms:
        for g in gpus:
            util, _, energy = state[g]
            util = max(0, min(10_000, util + rng.randrange(-1_500, 1_501)))
            new_power = IDLE_MW + (MAX_MW - IDLE_MW) * util // 10_000
            energy += new_power * period_ms // 1000  # mW·ms → mJ: a reading is the average since the last one
            state[g] = [util, new_power, energy]
            out.append(
                Sample(
                    gpuIndex=g,
                    tsMs=ts,
                    gpuUtilBps=util,
                    memUtilBps=util // 2,
                    powerMw=new_power,
                    energyMj=energy,
                    memUsedMiB=20_000 + util,
                    flags=int(ReportFlag.SIMULATED),
                )
            )
        ts += period_ms
    return out


def make_lease(
    n_reports: int = 6,
    *,
    gpus: tuple[int, ...] = (0, 1),
    period_ms: int = 1000,
    samples_per_window: int = 10,
    settle_at: tuple[int, ...] = (2, 4, 6),
    billing: BillingMode = BillingMode.RESERVED,
    price: int = 1_000_000_000,  # wei per GPU-second
    duration_s: int | None = None,
    escrow: int | None = None,
    fee_bps: int = 100,
    closed: bool = False,
    top_ups: tuple[int, ...] = (),
    key: bytes = ATTESTOR_KEY,
    seed: int = 7,
    lease_id: int = 42,
    start_ms: int = LEASE_START_MS,
    chain_id: int = CHAIN_ID,
    escrow_address: str = ESCROW,
    gpu_uuid_hashes: tuple[bytes, ...] | None = None,
    max_mw: int = MAX_MW,
    sample_hook: SampleHook | None = None,
    report_hook: ReportHook | None = None,
) -> FakeLease:
    """A consistent lease: ``n_reports`` signed windows, checkpoints at ``settle_at``, money events.

    ``gpu_uuid_hashes`` are the node's registered GPUs (``gpus`` index into them); by default fake UUIDs.
    """
    rng = random.Random(seed)
    window_ms = period_ms * samples_per_window
    duration_s = duration_s if duration_s is not None else n_reports * window_ms // 1000
    end_ms = start_ms + duration_s * 1000
    if gpu_uuid_hashes is None:
        set_hash = gpu_set_hash(gpu_uuid_hash(f"GPU-fake-{g:04d}") for g in gpus)
    else:
        set_hash = gpu_set_hash(gpu_uuid_hashes[g] for g in gpus)
    state = {g: [5_000 + 500 * g, IDLE_MW, 1_000_000_000 * (g + 1)] for g in gpus}
    terms = LeaseTerms(
        leaseId=lease_id,
        chainId=chain_id,
        escrow=escrow_address,
        attestors=(AttestorPeriod(address_of(key)),),
        gpuSetHash=set_hash,
        gpuCount=len(gpus),
        startMs=start_ms,
        endMs=end_ms,
        pricePerGpuSecond=price,
        billingMode=billing,
        maxPowerMwPerGpu=max_mw,
        samplePeriodMs=period_ms,
        gpuIndices=gpus,
    )
    reports: list[SignedReport] = []
    prev_hash = ZERO_HASH
    baseline: dict[int, int] = {}
    cum = [0, 0, 0]
    for seq in range(1, n_reports + 1):
        start = start_ms + (seq - 1) * window_ms
        end = start + window_ms
        samples = fake_samples(rng, gpus, start, end, period_ms, state)
        if sample_hook is not None:
            samples = sample_hook(seq, samples)
        fig = aggregate_window(
            samples,
            start,
            end,
            period_ms,
            lease_start_ms=start_ms,
            lease_end_ms=end_ms,
            energy_baseline=baseline,
            gpu_indices=gpus,
        )
        baseline = dict(fig.energy_baseline)
        cum = [cum[0] + fig.busyMs, cum[1] + fig.energyMj, cum[2] + fig.allocatedMs]
        fields_: dict[str, Any] = dict(
            leaseId=lease_id,
            seq=seq,
            prevReportHash=prev_hash,
            windowStartMs=start,
            windowEndMs=end,
            gpuSetHash=set_hash,
            busyMs=fig.busyMs,
            energyMj=fig.energyMj,
            allocatedMs=fig.allocatedMs,
            cumBusyMs=cum[0],
            cumEnergyMj=cum[1],
            cumAllocatedMs=cum[2],
            maxMemUsedMiB=fig.maxMemUsedMiB,
            sampleCount=len(samples),
            samplesRoot=samples_root(samples),
            flags=fig.flags,
            configHash=CONFIG,
        )
        if report_hook is not None:
            fields_ = report_hook(seq, fields_)
        report = MeteringReport(**fields_)
        prev_hash = report_struct_hash(report)
        sig = sign_digest(report_digest(report, chain_id, escrow_address), key)
        reports.append(SignedReport(report, sig, tuple(samples)))

    escrow_amount = escrow if escrow is not None else price * len(gpus) * duration_s
    fee = escrow_amount * fee_bps // 10_000
    tops = tuple(TopUp(a, a * fee_bps // 10_000, (1, i)) for i, a in enumerate(top_ups))  # before any checkpoint
    escrowed = escrow_amount + sum(top_ups)
    settlements: list[Settlement] = []
    charged_total = 0
    last_billable = 0
    for block, seq in enumerate(settle_at, start=10):
        r = reports[seq - 1].report
        billable = billable_of(billing, r)
        charged = min(charge_for(price, billable, last_billable), escrowed - charged_total)
        settlements.append(  # the record the escrow writes: the report's counters in the new ckpt word
            Settlement(
                seq=seq,
                reportHash=report_struct_hash(r),
                charged=charged,
                cumBusyMs=r.cumBusyMs,
                cumAllocatedMs=r.cumAllocatedMs,
                cumEnergyMj=r.cumEnergyMj,
                windowEndMs=r.windowEndMs,
                settledAt=r.windowEndMs // 1000 + 2,  # a block a little after the window ended
                order=(block, 0, 0),
            )
        )
        charged_total += charged
        last_billable = billable
    refund = escrowed - charged_total if closed else 0
    fee_in = fee + sum(t.fee for t in tops)
    fee_kept = charged_total * fee_bps // 10_000 if closed else None  # treasury keeps the fee on what was earned
    money = LeaseMoney(
        escrow=escrow_amount,
        fee=fee,
        topUps=tops,
        closed=closed,
        refund=refund,
        closedCharged=charged_total if closed else None,
        feeKept=fee_kept,
        feeRefund=fee_in - fee_kept if fee_kept is not None else 0,
    )
    inp = AuditInput(terms, tuple(reports), tuple(settlements), money)
    return FakeLease(inp, key, reports)


def resign(report: MeteringReport, key: bytes = ATTESTOR_KEY) -> bytes:
    return sign_digest(report_digest(report, CHAIN_ID, ESCROW), key)
