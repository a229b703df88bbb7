"""auditor.core.verify_lease on protocol v2: the honest lease passes, and each lie is caught and named
precisely. Leases come from tests.audit.fakegpu: the attestor's NVML source over the simulated H200 driver,
windows as the daemon closes them; a lying attestor changes samples or report fields before signing."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from attestor.simdriver import Full, Idle, TinyKernels
from auditor.core import (
    CHECKS,
    AttestorPeriod,
    AuditInput,
    AuditPolicy,
    BillingMode,
    BridgeEvidence,
    Dispute,
    LeaseMoney,
    SampleProof,
    SignedReport,
    Verdict,
    billable_of,
    verify_lease,
)
from ledger.chain.signing import address_of
from ledger.protocol import (
    MerkleTree,
    ReportFlag,
    Sample,
    gpu_set_hash,
    gpu_uuid_hash,
    report_struct_hash,
    sample_leaf,
    samples_root,
)
from ledger.protocol.samples import SampleField
from tests.audit.fakegpu import (
    ATTESTOR_KEY,
    LEASE_START_MS,
    MAX_MW,
    OTHER_KEY,
    FakeLease,
    make_lease,
    relink,
    resign,
)

UNREAD = int(SampleField.ENERGY_UNREAD)


@pytest.fixture(scope="module")
def honest() -> FakeLease:
    return make_lease(closed=True, duration_s=90)  # closed by the buyer after 60 of 90 s


def _replace_report(fl: FakeLease, seq: int, sr: SignedReport) -> AuditInput:
    reports = list(fl.input.reports)
    reports[seq - 1] = sr
    return fl.with_reports(reports)


def _readings(samples: list[Sample], gpu: int) -> list[Sample]:
    return [s for s in samples if s.gpuIndex == gpu and not s.flags & UNREAD]


def test_verify_lease_honest_lease_passes_every_check(honest: FakeLease) -> None:
    v = verify_lease(honest.input)
    assert v.ok, v.failures
    assert v.failed() == set() and v.warned() == set()
    names = [r.check for r in v.results]
    # no bridge served this input (nothing to compare), no proofs were asked
    assert names == [c for c in CHECKS if c not in ("samples.spot_check", "bridge.proofs", "bridge.chain", "bridge.consistency")]
    assert v.reports == 6 and v.settlements == 3
    assert v.samples == sum(len(sr.samples or ()) for sr in honest.reports) == 2 * 61  # + the lease-start collect
    by = {r.check: r for r in v.results}
    assert by["signature"].detail == "6 reports verified"
    assert by["settlement.charge"].detail == "3 checkpoints verified"
    # energy is read at the lease's start and at each window's end: 6 pairs of readings per GPU
    assert by["physics.energy"].detail == "12 energy-reading pairs verified"


def test_honest_lease_has_the_v2_shape(honest: FakeLease) -> None:
    """What the fixture produces is what the attestor produces: contiguous windows ending at their newest
    sample, per GPU intervals that tile the driver's timeline, energy read only at window boundaries."""
    reports = [sr.report for sr in honest.reports]
    assert reports[0].windowStartMs == LEASE_START_MS  # the first intervals began before the lease
    assert all(b.windowStartMs == a.windowEndMs for a, b in zip(reports, reports[1:]))
    rows = [s for sr in honest.reports for s in sr.samples or ()]
    for g in (0, 1):
        mine = [s for s in rows if s.gpuIndex == g]
        assert all(a.tsMs == b.tsMs - b.intervalMs for a, b in zip(mine, mine[1:]))
        assert mine[0].tsMs - mine[0].intervalMs < LEASE_START_MS < mine[0].tsMs
        # the counter is read at the lease's first collect and at each window's last one, nowhere else
        boundary = {mine[0].tsMs} | {max(s.tsMs for s in sr.samples or () if s.gpuIndex == g) for sr in honest.reports}
        assert {s.tsMs for s in mine if not s.flags & UNREAD} == boundary and len(boundary) == 7
        assert all(s.energyMj == 0 for s in mine if s.flags & UNREAD)
    assert all(r.smActiveMs < r.busyMs <= r.allocatedMs for r in reports)


def test_verify_lease_reports_progress_per_report(honest: FakeLease) -> None:
    seen: list[tuple[int, int]] = []
    verify_lease(honest.input, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 6) for i in range(1, 7)]


# --- tampering with what was signed -----------------------------------------------------------------------


def test_verify_lease_changed_sample_fails_samples_root(honest: FakeLease) -> None:
    sr = honest.reports[2]
    samples = honest.samples(3)
    samples[5] = dataclasses.replace(samples[5], powerMw=samples[5].powerMw + 1)
    v = verify_lease(_replace_report(honest, 3, dataclasses.replace(sr, samples=tuple(samples))))
    assert v.failed() == {("samples.root", 3)}
    assert "rebuilt root" in v.failures[0].detail


def test_verify_lease_changed_report_field_fails_signature_and_next_link(honest: FakeLease) -> None:
    sr = honest.reports[1]
    forged = dataclasses.replace(sr, report=sr.report.replace(configHash=b"\x01" * 32))
    v = verify_lease(_replace_report(honest, 2, forged))
    # the field is signed (signature), report 3 links to the hash of the original (prev_hash), and the chain
    # paid for the original (checkpoint at seq 2 names another hash)
    assert v.failed() == {("signature", 2), ("chain.prev_hash", 3), ("settlement.report", 2)}
    sig = next(r for r in v.failures if r.check == "signature")
    assert "signed by 0x" in sig.detail and address_of(ATTESTOR_KEY) in sig.detail


def test_verify_lease_flipped_signature_byte_fails_signature_only(honest: FakeLease) -> None:
    sr = honest.reports[3]
    bad = bytearray(sr.signature)
    bad[10] ^= 0x01
    v = verify_lease(_replace_report(honest, 4, dataclasses.replace(sr, signature=bytes(bad))))
    assert v.failed() == {("signature", 4)}


def test_verify_lease_changed_cumulative_counter_is_named(honest: FakeLease) -> None:
    # by a third party: the signature breaks
    sr = honest.reports[2]
    r = sr.report.replace(cumSmActiveMs=sr.report.cumSmActiveMs + 1000)
    v = verify_lease(_replace_report(honest, 3, dataclasses.replace(sr, report=r)))
    assert v.failed() == {("signature", 3), ("cumulative", 3), ("chain.prev_hash", 4), ("cumulative", 4)}
    assert "cumSmActiveMs" in next(r.detail for r in v.failures if r.check == "cumulative" and r.report_seq == 3)


@pytest.mark.parametrize("counter", ["cumBusyMs", "cumSmActiveMs"])
def test_verify_lease_cumulative_lie_signed_by_attestor_fails_cumulative(counter: str) -> None:
    def inflate(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 4:
            f[counter] += 5_000
        return f

    fl = make_lease(report_hook=inflate, billing=BillingMode.SM_ACTIVE)
    v = verify_lease(fl.input)
    # report 4 claims more than its windows, and checkpoint 4 paid for it: the running sum names report 4,
    # and report 5 (an honest window on top of the honest counter) no longer follows report 4 either
    assert v.failed() == {("cumulative", 4), ("cumulative", 5)}
    assert counter in next(r.detail for r in v.failures if r.report_seq == 4)


def test_verify_lease_time_beyond_capacity_fails_window_capacity() -> None:
    def inflate(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 2:
            f["allocatedMs"] += 5_000
        if seq >= 2:
            f["cumAllocatedMs"] += 5_000
        return f

    v = verify_lease(make_lease(report_hook=inflate).input)
    # the windows' intervals tile the GPUs' time already: 5 s more cannot exist, in window 2 nor in any total
    # after it; and every checkpoint from report 2 on billed more GPU time than had passed (the fixture's chain
    # paid it: LeaseEscrow's own capacity bound would have refused it)
    assert v.failed() == (
        {("aggregates", 2)}
        | {("window.capacity", s) for s in range(2, 7)}
        | {("settlement.billable", s) for s in (2, 4, 6)}
    )
    detail = next(r.detail for r in v.failures if r.check == "window.capacity" and r.report_seq == 2)
    assert "GPU-ms its GPUs' intervals can span in this window" in detail and "cumAllocatedMs" in detail


def test_verify_lease_reordered_reports_fail_chain_order(honest: FakeLease) -> None:
    reports = list(honest.input.reports)
    reports[2], reports[3] = reports[3], reports[2]
    v = verify_lease(honest.with_reports(reports))
    assert v.failed() == {("chain.order", 3)}
    assert v.failures[0].detail == "report 3 is listed after report 4"


def test_verify_lease_dropped_report_between_checkpoints_fails_chain_seq(honest: FakeLease) -> None:
    reports = [sr for sr in honest.input.reports if sr.report.seq != 3]  # checkpoints at 2 and 4
    v = verify_lease(honest.with_reports(reports))
    # only the gap is named: what report 3 carried (energy baseline, sample ends) is unknown, so report 4's
    # energy is not re-derived, yet nothing is failed for want of it
    assert v.failed() == {("chain.seq", 4)}
    assert v.failures[0].detail == "report 3 missing before report 4"


def test_verify_lease_after_a_missing_report_compares_energy_only_where_the_baseline_is_known() -> None:
    """Report 3 is missing: report 4's energy cannot be re-derived. GPU 1's counter could not be read in
    window 4 either, so in window 5 only GPU 0 has a known baseline: the auditor does not compare a figure
    it cannot form (the attestor counted GPU 1 from its reading in window 3), and fails nothing for it."""

    def unreadable(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq != 4:
            return samples
        missing = int(SampleField.ENERGY)
        return [
            dataclasses.replace(s, energyMj=0, flags=s.flags | missing)
            if s.gpuIndex == 1 and not s.flags & UNREAD
            else s
            for s in samples
        ]

    fl = make_lease(sample_hook=unreadable)
    v = verify_lease(fl.with_reports([sr for sr in fl.reports if sr.report.seq != 3]))
    assert v.failed() == {("chain.seq", 4)}
    # with every report there, the same energy is re-derived exactly
    assert verify_lease(fl.input).ok


def test_verify_lease_report_paid_twice_fails_settlement_duplicate(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    again = dataclasses.replace(st[1], order=(st[1].order[0], 1))
    v = verify_lease(honest.with_settlements([st[0], st[1], again, st[2]]))
    # the lease is closed, so the extra payment also breaks conservation
    assert v.failed() == {("settlement.duplicate", 4), ("money.conservation", None)}
    assert "charged" in next(r.detail for r in v.failures if r.check == "settlement.duplicate")


# --- identity and signatures ------------------------------------------------------------------------------


def test_verify_lease_report_about_other_gpus_fails_report_gpu_set() -> None:
    """The escrow does not check the GPU set at settlement (it is inside the signed WindowDetail): a report
    the attestor signed about GPUs the lease does not hold would be paid. The auditor names it."""
    foreign = gpu_set_hash(gpu_uuid_hash(f"GPU-other-{g}") for g in range(2))

    def other_gpus(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 3:
            f["gpuSetHash"] = foreign
        return f

    v = verify_lease(make_lease(report_hook=other_gpus).input)
    assert v.failed() == {("report.gpu_set", 3)}
    assert "is not the lease's" in v.failures[0].detail and foreign.hex()[:16] in v.failures[0].detail


def test_verify_lease_signer_not_registered_fails_signature() -> None:
    fl = make_lease(key=OTHER_KEY)
    terms = dataclasses.replace(fl.input.terms, attestors=(AttestorPeriod(address_of(ATTESTOR_KEY)),))
    v = verify_lease(dataclasses.replace(fl.input, terms=terms))
    assert v.failed() == {("signature", s) for s in range(1, 7)}


def test_verify_lease_rotated_attestor_is_valid_only_in_its_period() -> None:
    fl = make_lease(key=OTHER_KEY)
    rotation = fl.reports[2].report.windowEndMs  # old key until report 3 ended, then OTHER_KEY
    terms = dataclasses.replace(
        fl.input.terms,
        attestors=(
            AttestorPeriod(address_of(ATTESTOR_KEY), 0, rotation),
            AttestorPeriod(address_of(OTHER_KEY), rotation, None),
        ),
    )
    v = verify_lease(dataclasses.replace(fl.input, terms=terms))
    assert v.failed() == {("signature", 1), ("signature", 2)}


def test_verify_lease_wrong_chain_id_fails_every_signature(honest: FakeLease) -> None:
    terms = dataclasses.replace(honest.input.terms, chainId=1)
    v = verify_lease(dataclasses.replace(honest.input, terms=terms))
    assert v.failed() == {("signature", s) for s in range(1, 7)}


def test_verify_lease_conflicting_reports_for_one_seq_fail_chain_seq(honest: FakeLease) -> None:
    sr = honest.reports[4]
    other_r = sr.report.replace(configHash=b"\x02" * 32)
    other = SignedReport(other_r, resign(other_r), sr.samples)
    reports = list(honest.input.reports)
    reports.insert(5, other)
    v = verify_lease(honest.with_reports(reports))
    assert ("chain.seq", 5) in v.failed()
    assert "two different reports" in next(r.detail for r in v.failures if r.check == "chain.seq")
    # both signed by the registered attestor: the attestor equivocated, not whoever served them
    assert {r.blame for r in v.failures if r.check == "chain.seq"} == {"attestor"}


def test_verify_lease_a_report_listed_twice_is_the_bridges(honest: FakeLease) -> None:
    reports = list(honest.input.reports)
    reports.insert(5, reports[4])
    v = verify_lease(honest.with_reports(reports))
    assert ("chain.seq", 5) in v.failed()
    assert {r.blame for r in v.failures if r.check == "chain.seq"} == {"bridge"}


# --- windows ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [-500, 300])
def test_verify_lease_windows_not_contiguous_fail_window_contiguity(shift: int) -> None:
    def move(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 3:
            f["windowStartMs"] += shift
        return f

    v = verify_lease(make_lease(report_hook=move).input)
    assert v.failed() == {("window.contiguity", 3)}
    why = "its time would count twice" if shift < 0 else "no report covers the time between"
    assert why in v.failures[0].detail


def test_verify_lease_window_outside_lease_fails_window_bounds() -> None:
    fl = make_lease()
    terms = dataclasses.replace(fl.input.terms, endMs=fl.reports[4].report.windowEndMs)
    v = verify_lease(dataclasses.replace(fl.input, terms=terms))
    assert ("window.bounds", 6) in v.failed()
    assert all(seq == 6 for _, seq in v.failed())


def test_verify_lease_window_end_not_the_newest_sample_fails_window_end() -> None:
    def later(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 6:
            f["windowEndMs"] += 500  # claims the window ran on after its last sample
        return f

    v = verify_lease(make_lease(report_hook=later, duration_s=90).input)
    assert v.failed() == {("window.end", 6)}
    assert "is not the newest sample's tsMs" in v.failures[0].detail


def test_first_window_of_an_attestor_started_late_passes_and_cannot_claim_the_lead_in() -> None:
    late = LEASE_START_MS + 5_000  # the attestor started reading the GPUs 5 s into the lease

    fl = make_lease(attestor_from_ms=late)
    first = fl.reports[0]
    assert first.report.windowStartMs > late - 1_000
    v = verify_lease(fl.input)
    assert v.ok, v.failures

    def claim(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 1:
            f["windowStartMs"] = LEASE_START_MS  # as if the window had covered the lease from its start
        return f

    v2 = verify_lease(make_lease(attestor_from_ms=late, report_hook=claim).input)
    # the first window starts where its samples start; starting it at the lease's start also exposes the
    # 5 s no sample covers, which the report did not flag
    assert v2.failed() == {("window.contiguity", 1), ("samples.gaps", 1)}
    assert "the first window starts at" in next(r.detail for r in v2.failures if r.check == "window.contiguity")


# --- samples ------------------------------------------------------------------------------------------------


def test_verify_lease_sentinel_value_fails_samples_sentinel() -> None:
    def sentinel(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq == 2:
            samples[3] = dataclasses.replace(samples[3], memUsedMiB=0xFFFFFFFF)
        return samples

    v = verify_lease(make_lease(sample_hook=sentinel).input)
    assert v.failed() == {("samples.sentinel", 2)}
    assert "memUsedMiB = 0xffffffff" in v.failures[0].detail


def test_verify_lease_unflagged_gap_fails_samples_gaps() -> None:
    def crash(seq: int, samples: list[Sample]) -> list[Sample]:
        # the attestor crashed in window 2: the open window's samples of 3 s were lost (never committed)
        return [s for i, s in enumerate(samples) if not 6 <= i < 12] if seq == 2 else samples

    def unflag(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 2:
            assert f["flags"] & ReportFlag.SAMPLE_GAP
            f["flags"] &= ~int(ReportFlag.SAMPLE_GAP)
        return f

    v = verify_lease(make_lease(sample_hook=crash, report_hook=unflag).input)
    assert v.failed() == {("samples.gaps", 2)}
    flagged = make_lease(sample_hook=crash)
    v2 = verify_lease(flagged.input)
    assert v2.ok, v2.failures
    r2 = flagged.reports[1].report
    assert r2.allocatedMs < 2 * (r2.windowEndMs - r2.windowStartMs) - 2 * 2_500  # the lost time is not billed


def test_verify_lease_energy_counter_drop_without_reset_flag_fails() -> None:
    def reload_driver(k: int, driver: Any) -> bool:
        if k == 25:  # in window 3: GPU 0's driver reloads and its energy counter restarts from 0
            driver.gpus[0].reset_energy(0)
        return True

    def unflag_samples(seq: int, samples: list[Sample]) -> list[Sample]:
        return [dataclasses.replace(s, flags=s.flags & ~int(ReportFlag.ENERGY_RESET)) for s in samples]

    def unflag(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        f["flags"] &= ~int(ReportFlag.ENERGY_RESET)
        return f

    v = verify_lease(make_lease(on_collect=reload_driver, sample_hook=unflag_samples, report_hook=unflag).input)
    assert v.failed() == {("samples.energy_monotonic", 3)}
    flagged = make_lease(on_collect=reload_driver)
    assert flagged.reports[2].report.flags & ReportFlag.ENERGY_RESET
    v2 = verify_lease(flagged.input)
    assert v2.ok, v2.failures


def test_verify_lease_sample_outside_window_or_lease_gpus_fails_sanity() -> None:
    def stray(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq == 2:
            samples[0] = dataclasses.replace(samples[0], tsMs=samples[0].tsMs - 5_000)  # in window 1's time
        if seq == 3:
            samples[1] = dataclasses.replace(samples[1], gpuIndex=7)  # not a GPU of the lease
        return samples

    # ledger.protocol.metering refuses such windows, so a liar cannot build figures from them: take honest
    # figures, swap the samples in and re-commit them, re-signing and re-linking the chain behind them
    fl = make_lease()
    reports = list(fl.input.reports)
    for seq in (2, 3):
        bad = tuple(stray(seq, fl.samples(seq)))
        r = reports[seq - 1].report.replace(samplesRoot=samples_root(bad))
        reports[seq - 1] = SignedReport(r, resign(r), bad)
    v = verify_lease(fl.with_reports(relink(reports)))
    failed = {f for f in v.failed() if not f[0].startswith("settlement")}  # the chain paid other hashes
    assert failed == {("samples.sanity", 2), ("samples.intervals", 2), ("samples.sanity", 3)}
    details = {r.report_seq: r.detail for r in v.failures if r.check == "samples.sanity"}
    assert "outside window" in details[2] and "not one of the lease's [0, 1]" in details[3]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda s: dataclasses.replace(s, busyMs=s.coveredMs + 1), "busy"),
        (lambda s: dataclasses.replace(s, smActiveMs=s.intervalMs + 1), "SM"),
        (lambda s: dataclasses.replace(s, flags=s.flags | SampleField.POWER), "marks POWER missing but gives powerMw"),
        (lambda s: dataclasses.replace(s, flags=s.flags | SampleField.MEM_UTIL), "MEM_UTIL, a protocol v1 field"),
        (lambda s: dataclasses.replace(s, flags=s.flags | ReportFlag.NO_GPM), "NO_GPM"),
        (lambda s: dataclasses.replace(s, flags=s.flags | (1 << 30)), "unknown flag bits 0x40000000"),
    ],
)
def test_verify_lease_sample_breaking_a_field_rule_fails_sanity(change: Any, words: str) -> None:
    fl = make_lease(n_reports=2, settle_at=())
    reports = list(fl.input.reports)
    samples = fl.samples(2)
    samples[4] = change(samples[4])
    r = reports[1].report.replace(samplesRoot=samples_root(samples))
    reports[1] = SignedReport(r, resign(r), tuple(samples))
    v = verify_lease(fl.with_reports(relink(reports)))
    assert ("samples.sanity", 2) in v.failed()
    assert {c for c, _ in v.failed()} <= {"samples.sanity", "window.capacity"}
    assert words in next(r.detail for r in v.failures if r.check == "samples.sanity")


def test_verify_lease_energy_unread_sample_hiding_a_reading_fails_sanity() -> None:
    def hide(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq == 2:  # a counter value behind the ENERGY_UNREAD flag: not a reading, and not zero either
            i = next(i for i, s in enumerate(samples) if s.flags & UNREAD)
            samples[i] = dataclasses.replace(samples[i], energyMj=123_456)
        return samples

    v = verify_lease(make_lease(sample_hook=hide).input)
    assert v.failed() == {("samples.sanity", 2)}
    assert "marks ENERGY_UNREAD missing but gives energyMj=123456" in v.failures[0].detail


def test_energy_is_counter_growth_between_window_boundary_readings(honest: FakeLease) -> None:
    """Only the window-boundary samples carry the counter; a window's energy is the growth since the last
    reading before it, which is what the driver's exact counter says (up to the read lag)."""
    assert honest.driver is not None
    rows = [s for sr in honest.reports for s in sr.samples or ()]
    for g in (0, 1):
        read = _readings(rows, g)
        truth = honest.driver.gpus[g].true_energy_mj(read[0].tsMs * 1000, read[-1].tsMs * 1000)
        assert abs((read[-1].energyMj - read[0].energyMj) - truth) <= MAX_MW * 250 // 1000  # read ≤ 250 ms later
    total = sum(_readings(rows, g)[-1].energyMj - _readings(rows, g)[0].energyMj for g in (0, 1))
    assert honest.reports[-1].report.cumEnergyMj == total


def test_verify_lease_overlap_with_an_earlier_window_fails_samples_intervals() -> None:
    """Intervals of a GPU never overlap over the whole lease: rule 1 carries each GPU's last sample end from
    window to window. A liar that stretches a window's first interval back into the previous window counts
    that time twice; the window alone cannot show it, the carried sample ends do."""

    def stretch(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq == 3:
            i = next(i for i, s in enumerate(samples) if s.gpuIndex == 0)
            s = samples[i]
            samples[i] = dataclasses.replace(
                s, intervalMs=s.intervalMs + 400, coveredMs=s.coveredMs + 400, busyMs=s.busyMs + 400
            )
        return samples

    fl = make_lease(sample_hook=stretch, carry_sample_ends=False)
    r2, r3 = fl.reports[1].report, fl.reports[2].report
    first = next(s for s in fl.samples(3) if s.gpuIndex == 0)
    assert first.tsMs - first.intervalMs > r3.windowStartMs - 1_000  # inside window 3's own bounds...
    assert first.tsMs - first.intervalMs < max(s.tsMs for s in fl.samples(2) if s.gpuIndex == 0) <= r2.windowEndMs
    v = verify_lease(fl.input)
    assert ("samples.intervals", 3) in v.failed()
    assert "before its last sample of an earlier window ended" in next(
        r.detail for r in v.failures if r.check == "samples.intervals"
    )
    # the 400 ms counted twice are also more time than the GPUs had (in window 3 and in every total after)
    assert {c for c, _ in v.failed()} == {"samples.intervals", "window.capacity", "settlement.billable"}
    assert ("window.capacity", 3) in v.failed()


def test_verify_lease_aggregate_lie_fails_aggregates() -> None:
    def more(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 5:
            f["smActiveMs"] += 700
        if seq >= 5:
            f["cumSmActiveMs"] += 700
        return f

    v = verify_lease(make_lease(report_hook=more).input)
    assert v.failed() == {("aggregates", 5)}
    assert "smActiveMs" in v.failures[0].detail


def test_verify_lease_missing_samples_fail_samples_root(honest: FakeLease) -> None:
    sr = honest.reports[0]
    v = verify_lease(_replace_report(honest, 1, dataclasses.replace(sr, samples=None)))
    assert v.failed() == {("samples.root", 1)}
    assert v.failures[0].detail == "raw samples not available"


# --- utilization coverage: holes and polls --------------------------------------------------------------------


def _holey(**kw: Any) -> FakeLease:
    # the driver's utilization buffer holds 5 samples (1 s) and the attestor reads it every 10 s: 9 s of each
    # interval are lost (UTIL_HOLE), flagged and not covered
    return make_lease(4, period_ms=10_000, samples_per_window=2, settle_at=(2, 4), gpu_kw={"util_capacity": 5}, **kw)


def test_util_hole_is_flagged_and_not_billed() -> None:
    fl = _holey(billing=BillingMode.METERED, workloads=[Full(), Full()])
    v = verify_lease(fl.input)
    assert v.ok, v.failures
    for sr in fl.reports:
        r = sr.report
        assert r.flags & ReportFlag.UTIL_HOLE
        assert all(s.flags & ReportFlag.UTIL_HOLE and s.coveredMs < s.intervalMs for s in sr.samples or ())
        assert r.busyMs == r.allocatedMs < 2 * (r.windowEndMs - r.windowStartMs) // 4  # a full GPU, most time lost
    last = fl.input.settlements[-1]
    assert last.billable(BillingMode.METERED) == fl.reports[-1].report.cumBusyMs  # what was covered, only


def _claim_the_hole(seq: int, samples: list[Sample]) -> list[Sample]:
    """A liar bills the lost time: covered = the whole interval, busy scaled up; same utilSamples."""
    return [
        dataclasses.replace(s, coveredMs=s.intervalMs, busyMs=s.busyMs * s.intervalMs // s.coveredMs)
        if s.coveredMs and not s.flags & SampleField.GPU_UTIL
        else s
        for s in samples
    ]


def test_util_hole_claimed_as_covered_fails_samples_coverage() -> None:
    fl = _holey(billing=BillingMode.METERED, workloads=[Full(), Full()], sample_hook=_claim_the_hole)
    v = verify_lease(fl.input)
    # five driver samples vouch for at most 7.5 s (1.5 of the longest driver period, 1 s), not 10 s
    assert v.failed() == {("samples.coverage", s) for s in range(1, 5)}
    assert "rests on 5 driver utilization samples, which vouch for at most 7500 ms" in v.failures[0].detail
    # an auditor who knows the GPUs are H200s (200 ms driver period) holds them to 300 ms a sample
    h200 = AuditPolicy(util_period_ms=200)
    assert verify_lease(_holey(workloads=[Full(), Full()]).input, policy=h200).ok
    assert verify_lease(fl.input, policy=h200).failed() == v.failed()


def test_polled_utilization_passes_and_each_poll_vouches_for_one_second() -> None:
    fl = make_lease(2, settle_at=(2,), gpu_kw={"samples_supported": False})
    assert all(s.flags & ReportFlag.UTIL_POLLED for sr in fl.reports for s in sr.samples or ())
    v = verify_lease(fl.input)
    assert v.ok, v.failures

    def double(seq: int, samples: list[Sample]) -> list[Sample]:
        return [dataclasses.replace(s, utilSamples=0) if s.coveredMs else s for s in samples]

    v2 = verify_lease(make_lease(2, settle_at=(2,), gpu_kw={"samples_supported": False}, sample_hook=double).input)
    assert v2.failed() == {("samples.coverage", 1), ("samples.coverage", 2)}
    assert "rests on 0 util.gpu polls" in v2.failures[0].detail


# --- SM activity and GPM ------------------------------------------------------------------------------------


def test_sm_active_billing_bills_sm_active_time() -> None:
    fl = make_lease(billing=BillingMode.SM_ACTIVE, top_ups=(5_000,), closed=True)
    v = verify_lease(fl.input)
    assert v.ok, v.failures
    st = fl.input.settlements
    reports = [sr.report for sr in fl.reports]
    assert [s.billable(BillingMode.SM_ACTIVE) for s in st] == [reports[i - 1].cumSmActiveMs for i in (2, 4, 6)]
    assert billable_of(BillingMode.SM_ACTIVE, reports[3]) == reports[3].cumSmActiveMs < reports[3].cumBusyMs
    # the same checkpoints judged as a metered lease: busy time would have been billed, so every charge is short
    metered = dataclasses.replace(fl.input.terms, billingMode=BillingMode.METERED)
    v2 = verify_lease(dataclasses.replace(fl.input, terms=metered))
    assert v2.failed() == {("settlement.charge", 2), ("settlement.charge", 4), ("settlement.charge", 6)}


def test_sm_active_lie_on_an_sm_active_lease_is_caught_by_checkpoint_and_warned_by_physics() -> None:
    """Tiny kernels keep util.gpu at 20 % while 0.4 % of the SMs work. A liar reporting 90 % SM activity on
    an SM-active lease signs consistent figures; SM activity far above busy time is the evidence."""

    def inflate(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq != 3:
            return samples
        return [dataclasses.replace(s, smActiveMs=s.intervalMs * 9 // 10) for s in samples]

    fl = make_lease(billing=BillingMode.SM_ACTIVE, workloads=[TinyKernels(), TinyKernels()], sample_hook=inflate)
    v = verify_lease(fl.input)
    assert v.ok  # consistent and within every bound: a warning, not a failure (GPM is not aligned with util)
    assert v.warned() == {("physics.sm_busy", 3)}
    warn = next(r for r in v.results if r.warning)
    assert warn.status == "WARN" and "SMs cannot work without a kernel running" in warn.detail
    honest = verify_lease(make_lease(billing=BillingMode.SM_ACTIVE, workloads=[TinyKernels(), TinyKernels()]).input)
    assert honest.ok and honest.warned() == set()


def test_gpu_without_gpm_passes_and_bills_no_sm_time() -> None:
    fl = make_lease(2, settle_at=(2,), billing=BillingMode.SM_ACTIVE, gpu_kw={"gpu1": {"gpm_supported": False}})
    rows = [s for sr in fl.reports for s in sr.samples or ()]
    assert all(s.flags & ReportFlag.NO_GPM and s.flags & SampleField.SM_ACTIVE for s in rows if s.gpuIndex == 1)
    assert all(r.report.flags & ReportFlag.NO_GPM for r in fl.reports)
    v = verify_lease(fl.input)
    assert v.ok, v.failures
    gpu0 = [s for s in rows if s.gpuIndex == 0]
    clipped = [  # GPU 0's SM time, its first interval clipped to the lease; none from GPU 1
        s.smActiveMs * min(s.intervalMs, s.tsMs - LEASE_START_MS) // s.intervalMs for s in gpu0
    ]
    assert fl.reports[-1].report.cumSmActiveMs == sum(clipped) > 0


def test_gpu_lost_mid_lease_passes() -> None:
    def lose(k: int, driver: Any) -> bool:
        if k == 35:
            driver.gpus[1].fall_off_bus()
        return True

    fl = make_lease(on_collect=lose)
    assert all(sr.report.flags & ReportFlag.GPU_LOST for sr in fl.reports[3:])
    v = verify_lease(fl.input)
    assert v.ok, v.failures


# --- physics ---------------------------------------------------------------------------------------------------


def test_verify_lease_energy_counter_faster_than_max_power_fails_physics_energy() -> None:
    def pump(seq: int, samples: list[Sample]) -> list[Sample]:
        # from window 4 on, idle GPU 1's counter readings are 10 kJ higher: 10.75 kJ in 10 s is 1.07 kW
        if seq < 4:
            return samples
        return [
            dataclasses.replace(s, energyMj=s.energyMj + 10_000_000) if s.gpuIndex == 1 and not s.flags & UNREAD else s
            for s in samples
        ]

    v = verify_lease(make_lease(sample_hook=pump, workloads=[Full(), Idle()]).input)
    assert v.failed() == {("physics.energy", 4)}
    assert "GPU 1: the energy counter rose" in v.failures[0].detail and "more than 700000 mW" in v.failures[0].detail


def test_verify_lease_power_above_declared_max_fails_power_cap() -> None:
    def hot(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq == 1:
            samples[0] = dataclasses.replace(samples[0], powerMw=900_000)
        return samples

    v = verify_lease(make_lease(sample_hook=hot).input)
    assert v.failed() == {("physics.power_cap", 1)}


def test_verify_lease_sm_active_at_idle_power_is_a_warning_not_a_failure() -> None:
    def busy(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq != 2:
            return samples
        return [dataclasses.replace(s, busyMs=s.coveredMs, smActiveMs=s.intervalMs * 95 // 100) for s in samples]

    v = verify_lease(make_lease(sample_hook=busy, workloads=[Idle(), Idle()]).input)
    assert v.ok
    assert v.warned() == {("physics.idle_busy", 2)}
    assert all(r.status == "WARN" for r in v.results if r.warning)
    assert "SM-active 9500 bps of the time at a mean 75000 mW" in next(r.detail for r in v.results if r.warning)


def test_verify_lease_missing_power_is_excluded_from_physics() -> None:
    def no_power(seq: int, samples: list[Sample]) -> list[Sample]:
        flag = int(ReportFlag.FIELD_NOT_SUPPORTED | SampleField.POWER)
        return [dataclasses.replace(s, powerMw=0, powerSamples=0, flags=s.flags | flag) for s in samples]

    fl = make_lease(sample_hook=no_power)
    v = verify_lease(fl.input)
    assert v.ok, v.failures
    assert {r.check: r.status for r in v.results}["physics.power_cap"] == "PASS"  # nothing above the cap


def test_verify_lease_energy_above_node_cap_fails_window_capacity() -> None:
    def hot(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 1:  # 2 GPUs × 700 W × ~10 s = 14 MJ (+5 %)... claimed: 16 MJ
            f["energyMj"] = f["cumEnergyMj"] = 16_000_000
        return f

    fl = make_lease(report_hook=hot, n_reports=1, settle_at=())
    v = verify_lease(fl.input)
    assert v.failed() == {("window.capacity", 1), ("aggregates", 1)}
    cap = 2 * MAX_MW * (fl.reports[0].report.windowEndMs - LEASE_START_MS) * 10_500 // 10_000_000
    assert 14_000_000 < cap < 16_000_000
    assert f"cumEnergyMj 16000000 > max power cap {cap} mJ" in next(
        r.detail for r in v.failures if r.check == "window.capacity"
    )


# --- settlements and money ------------------------------------------------------------------------------------


def test_verify_lease_overcharged_checkpoint_fails_settlement_charge(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    st[1] = dataclasses.replace(st[1], charged=st[1].charged + 1)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.charge", 4), ("money.conservation", None)}


def test_verify_lease_ckpt_billable_counter_not_the_reports_fails_checkpoint_and_billable(honest: FakeLease) -> None:
    # the chain's record of checkpoint 6 says 1 s more allocated GPU time than report 6 (what the chain billed
    # from, if an escrow or an event source lied): the ckpt is not the report's, and the checkpoint billed a
    # delta the reports do not support, more than the GPUs had
    st = list(honest.input.settlements)
    st[2] = dataclasses.replace(st[2], cumAllocatedMs=st[2].cumAllocatedMs + 1000)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.checkpoint", 6), ("settlement.billable", 6)}
    details = {r.check: r.detail for r in v.failures}
    assert "ckpt cumAllocatedMs" in details["settlement.checkpoint"]
    r4, r6 = honest.reports[3].report, honest.reports[5].report
    delta = r6.cumAllocatedMs - r4.cumAllocatedMs
    assert (
        f"the chain billed {delta + 1000} GPU-ms (ckpt {r6.cumAllocatedMs + 1000} − {r4.cumAllocatedMs}), "
        f"the reports {delta}" in details["settlement.billable"]
    )
    assert f"(at most {2 * (r6.windowEndMs - LEASE_START_MS)})" in details["settlement.billable"]


@pytest.mark.parametrize("billing", [BillingMode.RESERVED, BillingMode.SM_ACTIVE])
def test_verify_lease_ckpt_sm_active_not_the_reports_fails_settlement_checkpoint(billing: BillingMode) -> None:
    fl = make_lease(billing=billing)
    st = list(fl.input.settlements)
    st[1] = dataclasses.replace(st[1], cumSmActiveMs=st[1].cumSmActiveMs + 1)
    v = verify_lease(fl.with_settlements(st))
    # a counter the lease does not bill is still the report's; on an SM-active lease it is also what was billed
    billed = {("settlement.billable", 4), ("settlement.billable", 6)} if billing == BillingMode.SM_ACTIVE else set()
    assert v.failed() == {("settlement.checkpoint", 4)} | billed
    assert "ckpt cumSmActiveMs" in next(r.detail for r in v.failures if r.check == "settlement.checkpoint")


def test_verify_lease_ckpt_counter_not_billed_still_fails_settlement_checkpoint(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    st[1] = dataclasses.replace(st[1], cumEnergyMj=st[1].cumEnergyMj + 1)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.checkpoint", 4)}
    assert "ckpt cumEnergyMj" in v.failures[0].detail


def test_verify_lease_settled_before_window_ended_fails_settlement_checkpoint(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    st[0] = dataclasses.replace(st[0], settledAt=honest.reports[1].report.windowEndMs // 1000 - 1)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.checkpoint", 2)}
    assert "before the window ended" in v.failures[0].detail
    back = list(honest.input.settlements)
    back[2] = dataclasses.replace(back[2], settledAt=back[1].settledAt - 1)
    v2 = verify_lease(honest.with_settlements(back))
    assert ("settlement.checkpoint", 6) in v2.failed()


def test_verify_lease_chain_billing_more_time_than_elapsed_fails_settlement_billable(honest: FakeLease) -> None:
    # report and chain agree on report 2, but the chain's checkpoint 2 billed twice the GPU time of two GPUs
    # over the 20 s the lease had run: impossible whatever the reports say (window.capacity names the report
    # side)
    st = list(honest.input.settlements)
    r2 = honest.reports[1].report
    st[0] = dataclasses.replace(st[0], cumAllocatedMs=r2.cumAllocatedMs * 2)
    v = verify_lease(honest.with_settlements(st))
    assert ("settlement.billable", 2) in v.failed()
    detail = next(r.detail for r in v.failures if r.check == "settlement.billable" and r.report_seq == 2)
    elapsed = r2.windowEndMs - LEASE_START_MS
    want = f"{2 * r2.cumAllocatedMs} GPU-ms billed by {elapsed} ms into the lease on 2 GPUs (at most {2 * elapsed})"
    assert want in detail
    assert {c for c, _ in v.failed()} == {"settlement.checkpoint", "settlement.billable"}


def test_verify_lease_checkpoint_for_unpublished_report_fails_settlement_report(honest: FakeLease) -> None:
    reports = list(honest.input.reports[:5])  # report 6 was settled but is not in the archive
    v = verify_lease(honest.with_reports(reports))
    assert v.failed() == {("settlement.report", 6)}


def test_verify_lease_backwards_checkpoint_fails_settlement_order(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    late = dataclasses.replace(st[0], order=(99, 0))
    v = verify_lease(honest.with_settlements([st[1], st[2], late]))
    assert ("settlement.order", 2) in v.failed()


def test_verify_lease_escrow_cap_is_the_expected_charge() -> None:
    price = 1_000_000_000
    fl = make_lease(escrow=price * 2 * 25, closed=True)  # 25 s of 2 GPUs, 60 s are metered
    st = fl.input.settlements
    mode = BillingMode.RESERVED
    delta = st[-1].billable(mode) - st[-2].billable(mode)
    assert st[-1].charged < delta * price // 1000  # the cap bit
    v = verify_lease(fl.input)
    assert v.ok, v.failures
    over = list(st)
    over[-1] = dataclasses.replace(over[-1], charged=delta * price // 1000)
    v2 = verify_lease(fl.with_settlements(over))
    assert ("settlement.charge", 6) in v2.failed()
    assert "capped by" in next(r.detail for r in v2.failures if r.check == "settlement.charge")


def test_verify_lease_metered_billing_uses_busy_time() -> None:
    fl = make_lease(billing=BillingMode.METERED, top_ups=(5_000,), closed=True)
    v = verify_lease(fl.input)
    assert v.ok, v.failures
    st = fl.input.settlements
    assert st[0].billable(BillingMode.METERED) == fl.reports[1].report.cumBusyMs
    assert st[1].billable(BillingMode.METERED) - st[0].billable(BillingMode.METERED) == (
        fl.reports[3].report.cumBusyMs - fl.reports[1].report.cumBusyMs
    )
    reserved = dataclasses.replace(fl.input.terms, billingMode=BillingMode.RESERVED)
    v2 = verify_lease(dataclasses.replace(fl.input, terms=reserved))
    assert v2.failed() == {("settlement.charge", 2), ("settlement.charge", 4), ("settlement.charge", 6)}


def test_verify_lease_wrong_refund_fails_money_conservation(honest: FakeLease) -> None:
    assert honest.input.money is not None
    money = dataclasses.replace(honest.input.money, refund=honest.input.money.refund + 1)
    v = verify_lease(dataclasses.replace(honest.input, money=money))
    assert v.failed() == {("money.conservation", None)}
    assert "refunds" in v.failures[0].detail


def test_verify_lease_conservation_holds_for_every_billing_mode() -> None:
    for mode in BillingMode:
        fl = make_lease(billing=mode, closed=True, duration_s=90, top_ups=(7_000,))
        v = verify_lease(fl.input)
        assert v.ok, (mode, v.failures)
        m = fl.input.money
        assert m is not None
        charged = sum(s.charged for s in fl.input.settlements)
        assert m.escrow_in + m.fee_in == charged + (m.feeKept or 0) + m.refund + m.feeRefund


def test_verify_lease_open_lease_charged_beyond_escrow_fails_money(honest: FakeLease) -> None:
    money = LeaseMoney(escrow=10, fee=0)
    v = verify_lease(dataclasses.replace(honest.input, money=money, settlements=()))
    assert v.ok
    st = list(honest.input.settlements)
    v2 = verify_lease(dataclasses.replace(honest.input, money=money, settlements=tuple(st)))
    assert ("money.conservation", None) in v2.failed()


def test_verify_lease_closing_event_total_differs_fails_money(honest: FakeLease) -> None:
    assert honest.input.money is not None and honest.input.money.closedCharged is not None
    money = dataclasses.replace(honest.input.money, closedCharged=honest.input.money.closedCharged + 5)
    v = verify_lease(dataclasses.replace(honest.input, money=money))
    assert v.failed() == {("money.conservation", None)}
    assert "closing event says" in v.failures[0].detail


def test_verify_lease_fee_split_not_adding_up_fails_money(honest: FakeLease) -> None:
    assert honest.input.money is not None and honest.input.money.feeKept is not None
    money = dataclasses.replace(honest.input.money, feeKept=honest.input.money.feeKept + 1)
    v = verify_lease(dataclasses.replace(honest.input, money=money))
    assert v.failed() == {("money.conservation", None)}
    assert "fee in" in v.failures[0].detail


def test_report_struct_hash_matches_settlement_hash(honest: FakeLease) -> None:
    st = honest.input.settlements[0]
    assert st.reportHash == report_struct_hash(honest.reports[1].report)


# --- spot checks ------------------------------------------------------------------------------------------------


def _spot(sr: SignedReport, indices: list[int]) -> SignedReport:
    assert sr.samples is not None
    tree = MerkleTree.of_samples(sr.samples)
    proofs = tuple(SampleProof(i, sr.samples[i], tuple(tree.proof(sample_leaf(sr.samples[i])))) for i in indices)
    return SignedReport(sr.report, sr.signature, None, proofs)


def test_verify_lease_spot_check_with_valid_proofs_passes(honest: FakeLease) -> None:
    reports = [_spot(sr, [0, 7, 19]) for sr in honest.reports]
    v = verify_lease(honest.with_reports(reports), spot_check_k=3)
    assert v.ok, v.failures
    by = {r.check: r for r in v.results}
    assert by["samples.spot_check"].status == "PASS"
    assert by["aggregates"].status == "SKIP" and by["samples.intervals"].status == "SKIP"
    assert by["samples.coverage"].status == "PASS" and by["physics.power_cap"].status == "PASS"
    assert v.samples == 18


def test_verify_lease_spot_check_forged_sample_fails_spot_check(honest: FakeLease) -> None:
    reports = [_spot(sr, [0, 7, 19]) for sr in honest.reports]
    p = reports[1].proofs[1]
    forged = dataclasses.replace(p, sample=dataclasses.replace(p.sample, busyMs=p.sample.coveredMs))
    reports[1] = dataclasses.replace(reports[1], proofs=(reports[1].proofs[0], forged, reports[1].proofs[2]))
    v = verify_lease(honest.with_reports(reports), spot_check_k=3)
    assert v.failed() == {("samples.spot_check", 2)}
    assert "sample 7" in v.failures[0].detail


def test_verify_lease_spot_check_too_few_proofs_fails(honest: FakeLease) -> None:
    reports = [_spot(sr, [0, 0, 3]) for sr in honest.reports]
    v = verify_lease(honest.with_reports(reports), spot_check_k=3)
    assert v.failed() == {("samples.spot_check", s) for s in range(1, 7)}
    assert "2 distinct samples proven, 3 asked" in v.failures[0].detail


def test_verify_lease_spot_check_proves_a_hole_claimed_as_covered() -> None:
    fl = _holey(workloads=[Full(), Full()], sample_hook=_claim_the_hole)
    reports = [_spot(sr, [0, 1]) for sr in fl.reports]
    v = verify_lease(fl.with_reports(reports), spot_check_k=2)
    assert v.failed() == {("samples.coverage", s) for s in range(1, 5)}


# --- the chain's present, the lease's state, the bridge's evidence ------------------------------------------------


def test_verify_lease_window_after_the_chains_present_fails_window_future(honest: FakeLease) -> None:
    last_end = honest.reports[-1].report.windowEndMs
    ok = verify_lease(dataclasses.replace(honest.input, now_ms=last_end - 30_000))  # exactly the tolerance
    assert ok.ok and {r.check: r.status for r in ok.results}["window.future"] == "PASS"
    v = verify_lease(dataclasses.replace(honest.input, now_ms=last_end - 30_001))
    assert v.failed() == {("window.future", 6)}
    assert v.failures[0].blame == "attestor"
    strict = verify_lease(dataclasses.replace(honest.input, now_ms=last_end - 1), policy=AuditPolicy(future_tolerance_ms=0))
    assert strict.failed() == {("window.future", 6)}


def test_verdict_notes_an_exhausted_escrow_and_each_dispute(honest: FakeLease) -> None:
    m = honest.input.money
    assert m is not None
    charged = sum(st.charged for st in honest.input.settlements)
    money = dataclasses.replace(m, exhausted=True, closedCharged=charged)
    disputes = (
        Dispute(frozen=500, order=(20, 0, 0), resolved=True, buyerShare=125, providerShare=375, slashed=10,
                providerFault=True),
        Dispute(frozen=700, order=(30, 1, 0)),
    )  # fmt: skip
    inp = dataclasses.replace(honest.input, money=money, disputes=disputes, status="Exhausted")
    v = verify_lease(inp)
    assert v.ok and v.status == "verified"
    assert v.notes == (
        f"exhausted: the escrow ran out ({charged} charged of {m.escrow_in} escrowed)",
        "dispute (block 20) resolved: 500 frozen, buyer 125, provider 375, slashed 10, the provider at fault",
        "dispute open since block 30: 700 frozen until the arbiter resolves it",
    )
    row = {r.check: r for r in v.results}["lease.state"]
    assert row.status == "INFO" and row.blame == "chain" and row.detail == "Exhausted; " + "; ".join(v.notes)
    assert v.to_json()["notes"] == list(v.notes)


def test_verdict_of_a_lease_without_reports_is_nothing_to_audit(honest: FakeLease) -> None:
    v = verify_lease(dataclasses.replace(honest.input, reports=(), settlements=(), money=None, status="Active"))
    assert v.ok and v.notes == ("no report accepted: nothing metered to audit",)
    # a chain that paid for reports nobody serves is the bridge's finding
    paid = verify_lease(dataclasses.replace(honest.input, reports=(), status="Closed"))
    assert paid.failed() == {("settlement.report", s) for s in (2, 4, 6)}
    assert {r.blame for r in paid.failures} == {"bridge"}
    assert paid.notes == ("no report accepted: nothing metered to audit, but 3 checkpoint(s) were paid",)


def test_verdict_could_not_audit() -> None:
    v = Verdict.could_not_audit(7, "the bridge publishes no RPC URL")
    assert not v.ok and v.status == "could not audit" and v.results == ()
    assert v.to_json()["couldNotAudit"] == "the bridge publishes no RPC URL"


def test_verify_lease_bridge_evidence_becomes_bridge_checks(honest: FakeLease) -> None:
    ev = BridgeEvidence((), "GET /v1/chain is the chain's", ("money.refund: the bridge serves 1, the chain holds 0",), "")
    v = verify_lease(dataclasses.replace(honest.input, bridge=ev))
    assert v.failed() == {("bridge.consistency", None)}
    by = {r.check: r for r in v.results}
    assert by["bridge.chain"].detail == "GET /v1/chain is the chain's" and by["bridge.chain"].blame == "bridge"
    assert by["bridge.consistency"].detail.startswith("money.refund: the bridge serves 1, the chain holds 0")


def test_verify_lease_spot_check_served_leaf_or_root_not_the_signed_one_fails_bridge_proofs(honest: FakeLease) -> None:
    """The proofs verify against the signed samplesRoot whatever the bridge says its root is; a served root or
    leaf that is not what was signed is the bridge's finding."""
    reports = [_spot(sr, [0, 7, 19]) for sr in honest.reports]
    signed = [dataclasses.replace(sr, proofs=tuple(dataclasses.replace(p, root=sr.report.samplesRoot,
              leaf=sample_leaf(p.sample)) for p in sr.proofs)) for sr in reports]  # fmt: skip
    assert verify_lease(honest.with_reports(signed), spot_check_k=3).ok
    bad = list(signed)
    bad[1] = dataclasses.replace(bad[1], proofs=(dataclasses.replace(bad[1].proofs[0], root=b"\x01" * 32), *bad[1].proofs[1:]))
    bad[3] = dataclasses.replace(bad[3], proofs=(dataclasses.replace(bad[3].proofs[0], leaf=b"\x02" * 32), *bad[3].proofs[1:]))
    v = verify_lease(honest.with_reports(bad), spot_check_k=3)
    assert v.failed() == {("bridge.proofs", 2), ("bridge.proofs", 4)}
    assert {r.check: r.status for r in v.results}["samples.spot_check"] == "PASS"
