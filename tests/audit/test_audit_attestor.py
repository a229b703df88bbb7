"""The auditor against the real attestor: reports built by attestor.meter from the simulated GPU source (the
one the demo runs) pass every check, including through faults the attestor flags (a missed tick, a driver
reload resetting the energy counter, a GPU falling off the bus); and a lie in them is still caught."""

from __future__ import annotations

import dataclasses

import pytest

from attestor.keys import Signer  # noqa: E402
from attestor.meter import LeaseSpec, LeaseState, ReportBuilder, SamplingPolicy  # noqa: E402
from attestor.sampler import Sampler, samples_for  # noqa: E402
from attestor.source import GPU_MODELS, SimulatedSource  # noqa: E402
from auditor.core import (  # noqa: E402
    AttestorPeriod,
    AuditInput,
    BillingMode,
    LeaseTerms,
    SignedReport,
    verify_lease,
)
from ledger.protocol import ReportFlag  # noqa: E402
from ledger.chain.signing import address_of
from tests.audit.fakegpu import ATTESTOR_KEY, CHAIN_ID, ESCROW, LEASE_START_MS  # noqa: E402

PERIOD_MS = 1000
WINDOW_MS = 10_000
GPUS = (1, 2)


def _metered_lease(
    profile: str, faults: bool = False, windows: int = 6, seed: int = 3, window_ms: int = WINDOW_MS
) -> AuditInput:
    model = GPU_MODELS["H100"]
    src = SimulatedSource(4, model, seed=seed, profile=profile)
    sampler = Sampler(src)
    builder = ReportBuilder(
        Signer(ATTESTOR_KEY),
        CHAIN_ID,
        ESCROW,
        SamplingPolicy(PERIOD_MS, window_ms),
        driver_version=src.driver_version,
        nvml_version=src.nvml_version,
        simulated=True,
    )
    end_ms = LEASE_START_MS + windows * window_ms
    lease = LeaseSpec.build(7, GPUS, LEASE_START_MS, end_ms, src.uuids)
    state = LeaseState(7)
    sampler.tick(LEASE_START_MS)  # the daemon was already sampling when the lease started
    reports = []
    for w in range(windows):
        start = LEASE_START_MS + w * window_ms
        window = []
        gap = False
        for ts in range(start + PERIOD_MS, start + window_ms + 1, PERIOD_MS):
            if faults and w == 1 and ts == start + 4 * PERIOD_MS:
                gap = True  # the daemon missed this tick (and the next reading says so)
                continue
            if faults and w == 2 and ts == start + 5 * PERIOD_MS:
                src.reset_energy_counter(1)
            if faults and w == 4 and ts == start + 7 * PERIOD_MS:
                src.lose_gpu(2)
            window += samples_for(sampler.tick(ts, gap=gap), frozenset(lease.gpu_indices))
            gap = False
        built = builder.build(lease, state, window, start, start + window_ms)
        state = built.state
        reports.append(SignedReport(built.report, built.signature, built.samples))
    terms = LeaseTerms(
        leaseId=7,
        chainId=CHAIN_ID,
        escrow=ESCROW,
        attestors=(AttestorPeriod(address_of(ATTESTOR_KEY)),),
        gpuSetHash=lease.gpu_set_hash,
        gpuCount=len(GPUS),
        startMs=LEASE_START_MS,
        endMs=end_ms,
        pricePerGpuSecond=10**9,
        billingMode=BillingMode.METERED,
        maxPowerMwPerGpu=model.limit_mw,
        samplePeriodMs=PERIOD_MS,
        gpuIndices=GPUS,
    )
    return AuditInput(terms, tuple(reports))


@pytest.mark.parametrize("profile", ["steady", "bursty", "idle"])
def test_attestor_reports_pass_every_check(profile: str) -> None:
    v = verify_lease(_metered_lease(profile))
    assert v.ok, v.failures
    assert not [r for r in v.results if r.warning]
    by = {r.check: r for r in v.results}
    assert by["physics.energy"].detail == "12 GPU-windows verified"
    assert by["aggregates"].detail == "6 reports verified"


def test_attestor_reports_with_flagged_faults_pass() -> None:
    inp = _metered_lease("steady", faults=True)
    flags = [sr.report.flags for sr in inp.reports]
    assert flags[1] & ReportFlag.SAMPLE_GAP
    assert flags[2] & ReportFlag.ENERGY_RESET
    assert all(f & ReportFlag.GPU_LOST for f in flags[4:])
    v = verify_lease(inp)
    assert v.ok, v.failures


def test_attestor_report_claiming_more_busy_time_is_caught() -> None:
    inp = _metered_lease("bursty")
    sr = inp.reports[3]
    lie = sr.report.replace(busyMs=sr.report.busyMs + 2_000, cumBusyMs=sr.report.cumBusyMs + 2_000)
    reports = list(inp.reports)
    reports[3] = SignedReport(lie, sr.signature, sr.samples)
    v = verify_lease(dataclasses.replace(inp, reports=tuple(reports)))
    assert v.failed() == {("signature", 4), ("aggregates", 4), ("chain.prev_hash", 5), ("cumulative", 5)}
