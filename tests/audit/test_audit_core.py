"""auditor.core.verify_lease: the honest lease passes, and each tamper is caught and named precisely."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from auditor.core import (
    CHECKS,
    AttestorPeriod,
    AuditInput,
    BillingMode,
    LeaseMoney,
    SampleProof,
    SignedReport,
    verify_lease,
)
from ledger.protocol.metering import SampleField
from ledger.protocol import MerkleTree, gpu_set_hash, gpu_uuid_hash, ReportFlag, Sample, report_struct_hash, sample_leaf, samples_root
from ledger.chain.signing import address_of
from tests.audit.fakegpu import ATTESTOR_KEY, LEASE_START_MS, OTHER_KEY, FakeLease, make_lease, resign


@pytest.fixture(scope="module")
def honest() -> FakeLease:
    return make_lease(closed=True, duration_s=90)  # closed by the buyer after 60 of 90 s


def _replace_report(fl: FakeLease, seq: int, sr: SignedReport) -> AuditInput:
    reports = list(fl.input.reports)
    reports[seq - 1] = sr
    return fl.with_reports(reports)


def test_verify_lease_honest_lease_passes_every_check(honest: FakeLease) -> None:
    v = verify_lease(honest.input)
    assert v.ok, v.failures
    assert v.failed() == set()
    names = [r.check for r in v.results]
    assert names == [c for c in CHECKS if c != "samples.spot_check"]
    assert v.reports == 6 and v.settlements == 3 and v.samples == 6 * 20
    by = {r.check: r for r in v.results}
    assert by["signature"].detail == "6 reports verified"
    assert by["settlement.charge"].detail == "3 checkpoints verified"


def test_verify_lease_reports_progress_per_report(honest: FakeLease) -> None:
    seen: list[tuple[int, int]] = []
    verify_lease(honest.input, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 6) for i in range(1, 7)]


# --- the tamper list of the issue ------------------------------------------------------------------------


def test_verify_lease_changed_sample_fails_samples_root(honest: FakeLease) -> None:
    sr = honest.reports[2]
    assert sr.samples is not None
    samples = list(sr.samples)
    samples[5] = dataclasses.replace(samples[5], powerMw=samples[5].powerMw + 1)
    v = verify_lease(_replace_report(honest, 3, dataclasses.replace(sr, samples=tuple(samples))))
    assert v.failed() == {("samples.root", 3)}
    assert "rebuilt root" in v.failures[0].detail


def test_verify_lease_changed_report_field_fails_signature_and_next_link(honest: FakeLease) -> None:
    sr = honest.reports[1]
    forged = dataclasses.replace(sr, report=sr.report.replace(configHash=b"\x01" * 32))
    v = verify_lease(_replace_report(honest, 2, forged))
    # the field is signed (signature), and report 3 links to the hash of the original (prev_hash), and the
    # chain paid for the original (checkpoint at seq 2 names another hash)
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
    r = sr.report.replace(cumBusyMs=sr.report.cumBusyMs + 1000)
    v = verify_lease(_replace_report(honest, 3, dataclasses.replace(sr, report=r)))
    assert v.failed() == {("signature", 3), ("cumulative", 3), ("chain.prev_hash", 4), ("cumulative", 4)}


def test_verify_lease_cumulative_lie_signed_by_attestor_fails_cumulative() -> None:
    def inflate(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 4:
            f["cumBusyMs"] += 5_000
        return f

    fl = make_lease(report_hook=inflate, billing=BillingMode.METERED)
    v = verify_lease(fl.input)
    # report 4 claims more than its windows and checkpoint 4 paid for it: the running sum names report 4,
    # and report 5 (an honest window on top of the honest counter) no longer follows report 4 either
    assert v.failed() == {("cumulative", 4), ("cumulative", 5)}
    detail = next(r.detail for r in v.failures if r.report_seq == 4)
    assert "cumBusyMs" in detail


def test_verify_lease_cumulative_beyond_capacity_fails_window_capacity() -> None:
    def inflate(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 2:
            f["allocatedMs"] += 5_000
            f["cumAllocatedMs"] += 5_000
        if seq > 2:
            f["cumAllocatedMs"] += 5_000
        return f

    v = verify_lease(make_lease(report_hook=inflate).input)
    # two GPUs × 10 s windows are fully allocated already: the extra time cannot exist; and the checkpoint at
    # report 2 billed 45 s of GPU time 20 s into the lease (the fixture's chain paid it: LeaseEscrow's own
    # capacity bound would have refused it)
    assert {c for c, _ in v.failed()} == {"window.capacity", "aggregates", "settlement.billable"}
    assert ("aggregates", 2) in v.failed() and ("window.capacity", 2) in v.failed()
    assert {(c, s) for c, s in v.failed() if c == "settlement.billable"} == {("settlement.billable", 2)}


def test_verify_lease_reordered_reports_fail_chain_order(honest: FakeLease) -> None:
    reports = list(honest.input.reports)
    reports[2], reports[3] = reports[3], reports[2]
    v = verify_lease(honest.with_reports(reports))
    assert v.failed() == {("chain.order", 3)}
    assert v.failures[0].detail == "report 3 is listed after report 4"


def test_verify_lease_dropped_report_between_checkpoints_fails_chain_seq(honest: FakeLease) -> None:
    reports = [sr for sr in honest.input.reports if sr.report.seq != 3]  # checkpoints at 2 and 4
    v = verify_lease(honest.with_reports(reports))
    assert v.failed() == {("chain.seq", 4)}
    assert v.failures[0].detail == "report 3 missing before report 4"


def test_verify_lease_report_paid_twice_fails_settlement_duplicate(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    again = dataclasses.replace(st[1], order=(st[1].order[0], 1))
    v = verify_lease(honest.with_settlements([st[0], st[1], again, st[2]]))
    # the lease is closed, so the extra payment also breaks conservation
    assert v.failed() == {("settlement.duplicate", 4), ("money.conservation", None)}
    assert "charged" in next(r.detail for r in v.failures if r.check == "settlement.duplicate")


# --- more adversarial cases ---------------------------------------------------------------------------


def test_verify_lease_report_about_other_gpus_fails_report_gpu_set() -> None:
    """The escrow no longer checks the GPU set at settlement (it is inside the signed WindowDetail): a
    report the attestor signed about GPUs the lease does not hold would be paid. The auditor names it."""
    foreign = gpu_set_hash(gpu_uuid_hash(f"GPU-other-{g}") for g in range(2))

    def other_gpus(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 3:
            f["gpuSetHash"] = foreign
        return f

    fl = make_lease(report_hook=other_gpus)
    v = verify_lease(fl.input)
    # signed by the attestor and hash-linked: only the GPU-set check can see it
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


def test_verify_lease_overlapping_windows_fail_window_overlap() -> None:
    def shift(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 3:
            f["windowStartMs"] -= 500
        return f

    v = verify_lease(make_lease(report_hook=shift).input)
    assert v.failed() == {("window.overlap", 3)}


def test_verify_lease_window_outside_lease_fails_window_bounds() -> None:
    fl = make_lease()
    terms = dataclasses.replace(fl.input.terms, endMs=fl.reports[4].report.windowEndMs)
    v = verify_lease(dataclasses.replace(fl.input, terms=terms))
    assert ("window.bounds", 6) in v.failed()
    assert all(seq == 6 for _, seq in v.failed())


def test_verify_lease_sentinel_value_fails_samples_sentinel() -> None:
    def sentinel(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq == 2:
            samples[3] = dataclasses.replace(samples[3], memUsedMiB=0xFFFFFFFF)
        return samples

    v = verify_lease(make_lease(sample_hook=sentinel).input)
    assert v.failed() == {("samples.sentinel", 2)}
    assert "memUsedMiB = 0xffffffff" in v.failures[0].detail


def test_verify_lease_unflagged_gap_fails_samples_gaps() -> None:
    def gap(seq: int, samples: list[Sample]) -> list[Sample]:
        return [s for i, s in enumerate(samples) if not (seq == 2 and 6 <= i < 12)] if seq == 2 else samples

    def unflag(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 2:
            assert f["flags"] & ReportFlag.SAMPLE_GAP
            f["flags"] &= ~ReportFlag.SAMPLE_GAP
        return f

    v = verify_lease(make_lease(sample_hook=gap, report_hook=unflag).input)
    assert v.failed() == {("samples.gaps", 2)}
    flagged = verify_lease(make_lease(sample_hook=gap).input)
    assert flagged.ok, flagged.failures


def test_verify_lease_energy_counter_drop_without_reset_flag_fails() -> None:
    def reset(seq: int, samples: list[Sample]) -> list[Sample]:
        # GPU 0's counter restarts 900 kJ lower in the middle of window 3 and counts on from there
        reset_at = LEASE_START_MS + 25_000
        return [
            dataclasses.replace(s, energyMj=s.energyMj - 900_000_000) if s.gpuIndex == 0 and s.tsMs > reset_at else s
            for s in samples
        ]

    def unflag(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 3:
            f["flags"] &= ~ReportFlag.ENERGY_RESET
        return f

    v = verify_lease(make_lease(sample_hook=reset, report_hook=unflag).input)
    assert v.failed() == {("samples.energy_monotonic", 3)}
    flagged = verify_lease(make_lease(sample_hook=reset).input)
    assert flagged.ok, flagged.failures


def test_verify_lease_aggregate_lie_fails_aggregates() -> None:
    def more_busy(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 5:
            f["busyMs"] += 700
            f["cumBusyMs"] += 700
        if seq == 6:
            f["cumBusyMs"] += 700
        return f

    v = verify_lease(make_lease(report_hook=more_busy).input)
    assert v.failed() == {("aggregates", 5)}
    assert "busyMs" in v.failures[0].detail


def test_verify_lease_energy_counter_faster_than_power_fails_physics_energy() -> None:
    def pump(seq: int, samples: list[Sample]) -> list[Sample]:
        # GPU 1's counter runs at twice the rate its power readings explain (counter inflated by the attestor)
        base = {s.gpuIndex: s.energyMj for s in samples[:2]}
        return [
            dataclasses.replace(s, energyMj=base[1] + 2 * (s.energyMj - base[1])) if seq == 4 and s.gpuIndex == 1 else s
            for s in samples
        ]

    v = verify_lease(make_lease(sample_hook=pump).input)
    assert ("physics.energy", 4) in v.failed()
    assert {c for c, _ in v.failed()} <= {"physics.energy", "aggregates", "cumulative"}
    assert "GPU 1" in next(r.detail for r in v.failures if r.check == "physics.energy")


def test_verify_lease_power_above_declared_max_fails_power_cap() -> None:
    def hot(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq == 1:
            samples[0] = dataclasses.replace(samples[0], powerMw=900_000)
        return samples

    v = verify_lease(make_lease(sample_hook=hot).input)
    assert ("physics.power_cap", 1) in v.failed()
    assert {c for c, _ in v.failed()} <= {"physics.power_cap", "physics.energy"}


def test_verify_lease_busy_at_idle_power_is_a_warning_not_a_failure() -> None:
    def idle(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq != 2:
            return samples
        return [dataclasses.replace(s, gpuUtilBps=9_500, powerMw=30_000) for s in samples]

    v = verify_lease(make_lease(sample_hook=idle).input)
    warn = [r for r in v.results if r.warning]
    assert {(r.check, r.report_seq) for r in warn} == {("physics.idle_busy", 2)}
    assert all(r.status == "WARN" for r in warn)
    assert ("physics.energy", 2) in v.failed()  # the counter still rose at working power: physics says so


def test_verify_lease_not_supported_field_is_excluded_from_physics() -> None:
    def no_power(seq: int, samples: list[Sample]) -> list[Sample]:
        flag = int(ReportFlag.FIELD_NOT_SUPPORTED | SampleField.POWER)
        return [dataclasses.replace(s, powerMw=0, flags=s.flags | flag) for s in samples]

    v = verify_lease(make_lease(sample_hook=no_power).input)
    assert v.ok, v.failures
    by = {r.check: r for r in v.results}
    assert "physics.energy" not in by  # no GPU-window had valid power: nothing to compare


def test_verify_lease_missing_samples_fail_samples_root(honest: FakeLease) -> None:
    sr = honest.reports[0]
    v = verify_lease(_replace_report(honest, 1, dataclasses.replace(sr, samples=None)))
    assert v.failed() == {("samples.root", 1)}
    assert v.failures[0].detail == "raw samples not available"


# --- settlements and money ------------------------------------------------------------------------------


def test_verify_lease_overcharged_checkpoint_fails_settlement_charge(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    st[1] = dataclasses.replace(st[1], charged=st[1].charged + 1)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.charge", 4), ("money.conservation", None)}


def test_verify_lease_ckpt_billable_counter_not_the_reports_fails_checkpoint_and_billable(honest: FakeLease) -> None:
    # the chain's record of checkpoint 6 says 1 s more allocated GPU time than report 6 (what the chain
    # billed from, if an escrow or an event source lied): the ckpt is not the report's, and the checkpoint
    # billed a delta the reports do not support
    st = list(honest.input.settlements)
    st[2] = dataclasses.replace(st[2], cumAllocatedMs=st[2].cumAllocatedMs + 1000)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.checkpoint", 6), ("settlement.billable", 6)}
    details = {r.check: r.detail for r in v.failures}
    assert "ckpt cumAllocatedMs" in details["settlement.checkpoint"]
    assert "the chain billed 41000 GPU-ms (ckpt 121000 − 80000), the reports 40000" in details["settlement.billable"]
    assert "(at most 40000)" in details["settlement.billable"]  # 2 GPUs were fully allocated for 20 s


def test_verify_lease_ckpt_counter_not_billed_still_fails_settlement_checkpoint(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    st[1] = dataclasses.replace(st[1], cumEnergyMj=st[1].cumEnergyMj + 1)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.checkpoint", 4)}
    assert "ckpt cumEnergyMj" in v.failures[0].detail


def test_verify_lease_ckpt_window_end_not_the_reports_fails_settlement_checkpoint(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    st[2] = dataclasses.replace(st[2], windowEndMs=st[2].windowEndMs + 1000)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.checkpoint", 6)}
    assert "ckpt windowEndMs" in v.failures[0].detail


def test_verify_lease_settled_before_window_ended_fails_settlement_checkpoint(honest: FakeLease) -> None:
    st = list(honest.input.settlements)
    st[0] = dataclasses.replace(st[0], settledAt=st[0].windowEndMs // 1000 - 1)
    v = verify_lease(honest.with_settlements(st))
    assert v.failed() == {("settlement.checkpoint", 2)}
    assert "before the window ended" in v.failures[0].detail
    back = list(honest.input.settlements)
    back[2] = dataclasses.replace(back[2], settledAt=back[1].settledAt - 1, windowEndMs=back[2].windowEndMs)
    v2 = verify_lease(honest.with_settlements(back))
    assert ("settlement.checkpoint", 6) in v2.failed()


def test_verify_lease_chain_billing_more_time_than_elapsed_fails_settlement_billable(honest: FakeLease) -> None:
    # report and chain agree on report 2, but the chain's checkpoint 2 billed for 40 s on 2 GPUs when
    # only 20 s had passed: impossible whatever the reports say (window.capacity names the report side)
    st = list(honest.input.settlements)
    r2 = honest.reports[1].report
    st[0] = dataclasses.replace(st[0], cumAllocatedMs=r2.cumAllocatedMs * 2)
    v = verify_lease(honest.with_settlements(st))
    assert ("settlement.billable", 2) in v.failed()
    detail = next(r.detail for r in v.failures if r.check == "settlement.billable" and r.report_seq == 2)
    assert "80000 GPU-ms billed for 20000 ms since the previous checkpoint on 2 GPUs (at most 40000)" in detail
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
    # the same checkpoints judged as a reserved lease: allocated time would have been billed, so every
    # charge is short (the chain's records and the reports agree on the counters: only the charge differs)
    reserved = dataclasses.replace(fl.input.terms, billingMode=BillingMode.RESERVED)
    v2 = verify_lease(dataclasses.replace(fl.input, terms=reserved))
    assert v2.failed() == {("settlement.charge", 2), ("settlement.charge", 4), ("settlement.charge", 6)}


def test_verify_lease_wrong_refund_fails_money_conservation(honest: FakeLease) -> None:
    assert honest.input.money is not None
    money = dataclasses.replace(honest.input.money, refund=honest.input.money.refund + 1)
    v = verify_lease(dataclasses.replace(honest.input, money=money))
    assert v.failed() == {("money.conservation", None)}
    assert "refunds" in v.failures[0].detail


def test_verify_lease_open_lease_charged_beyond_escrow_fails_money(honest: FakeLease) -> None:
    money = LeaseMoney(escrow=10, fee=0)
    v = verify_lease(dataclasses.replace(honest.input, money=money, settlements=()))
    assert v.ok
    st = list(honest.input.settlements)
    v2 = verify_lease(dataclasses.replace(honest.input, money=money, settlements=tuple(st)))
    assert ("money.conservation", None) in v2.failed()


# --- spot checks ----------------------------------------------------------------------------------------


def _spot(sr: SignedReport, indices: list[int]) -> SignedReport:
    assert sr.samples is not None
    tree = MerkleTree.of_samples(sr.samples)
    proofs = tuple(
        SampleProof(i, sr.samples[i], tuple(tree.proof(sample_leaf(sr.samples[i])))) for i in indices
    )
    return SignedReport(sr.report, sr.signature, None, proofs)


def test_verify_lease_spot_check_with_valid_proofs_passes(honest: FakeLease) -> None:
    reports = [_spot(sr, [0, 7, 19]) for sr in honest.reports]
    v = verify_lease(honest.with_reports(reports), spot_check_k=3)
    assert v.ok, v.failures
    by = {r.check: r for r in v.results}
    assert by["samples.spot_check"].status == "PASS"
    assert by["aggregates"].status == "SKIP"
    assert v.samples == 18


def test_verify_lease_spot_check_forged_sample_fails_spot_check(honest: FakeLease) -> None:
    reports = [_spot(sr, [0, 7, 19]) for sr in honest.reports]
    p = reports[1].proofs[1]
    forged = dataclasses.replace(p, sample=dataclasses.replace(p.sample, gpuUtilBps=10_000))
    reports[1] = dataclasses.replace(reports[1], proofs=(reports[1].proofs[0], forged, reports[1].proofs[2]))
    v = verify_lease(honest.with_reports(reports), spot_check_k=3)
    assert v.failed() == {("samples.spot_check", 2)}
    assert "sample 7" in v.failures[0].detail


def test_verify_lease_spot_check_too_few_proofs_fails(honest: FakeLease) -> None:
    reports = [_spot(sr, [0, 0, 3]) for sr in honest.reports]
    v = verify_lease(honest.with_reports(reports), spot_check_k=3)
    assert v.failed() == {("samples.spot_check", s) for s in range(1, 7)}
    assert "2 distinct samples proven, 3 asked" in v.failures[0].detail


def test_report_struct_hash_matches_settlement_hash(honest: FakeLease) -> None:
    st = honest.input.settlements[0]
    assert st.reportHash == report_struct_hash(honest.reports[1].report)


def test_verify_lease_flagged_long_gaps_pass_physics() -> None:
    def gaps(seq: int, samples: list[Sample]) -> list[Sample]:
        # GPU 1 answers only every third period (ten-second windows): flagged gaps, not a lie
        return [s for s in samples if s.gpuIndex == 0 or (s.tsMs // 1000) % 3 == 0]

    fl = make_lease(sample_hook=gaps)
    assert all(sr.report.flags & ReportFlag.SAMPLE_GAP for sr in fl.reports)
    v = verify_lease(fl.input)
    assert v.ok, v.failures
    by = {r.check: r for r in v.results}
    assert by["physics.busy"].status == "PASS" and by["physics.energy"].status == "PASS"


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


def test_verify_lease_energy_above_node_cap_fails_window_capacity() -> None:
    def hot(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 1:  # 2 GPUs × 400 W × 10 s = 8 MJ... claimed: 9 MJ
            f["energyMj"] = f["cumEnergyMj"] = 9_000_000
        return f

    v = verify_lease(make_lease(report_hook=hot, n_reports=1, settle_at=()).input)
    assert v.failed() == {("window.capacity", 1), ("aggregates", 1)}
    assert "cumEnergyMj 9000000 > max power cap 8400000 mJ" in next(
        r.detail for r in v.failures if r.check == "window.capacity"
    )


def test_verify_lease_sample_outside_window_or_lease_gpus_fails_sanity() -> None:
    def stray(seq: int, samples: list[Sample]) -> list[Sample]:
        if seq == 2:
            samples[0] = dataclasses.replace(samples[0], tsMs=samples[0].tsMs - 5_000)  # in window 1's time
        if seq == 3:
            samples[1] = dataclasses.replace(samples[1], gpuIndex=7)  # not a GPU of the lease
        return samples

    # the fixture aggregates with ledger.protocol.metering, which refuses such windows: build honest figures first,
    # then swap the samples in and re-commit them as a lying attestor would
    fl = make_lease()
    reports = list(fl.input.reports)
    for seq in (2, 3):
        sr = reports[seq - 1]
        assert sr.samples is not None
        bad = tuple(stray(seq, list(sr.samples)))
        r = sr.report.replace(samplesRoot=samples_root(bad))
        reports[seq - 1] = SignedReport(r, resign(r), bad)
    # the re-signed reports change their hashes: re-link the chain behind them, as the attestor would
    prev = report_struct_hash(reports[1].report)
    r3 = reports[2].report.replace(prevReportHash=prev)
    reports[2] = SignedReport(r3, resign(r3), reports[2].samples)
    prev = report_struct_hash(r3)
    for i in range(3, 6):
        ri = reports[i].report.replace(prevReportHash=prev)
        reports[i] = SignedReport(ri, resign(ri), reports[i].samples)
        prev = report_struct_hash(ri)
    v = verify_lease(fl.with_reports(reports))
    failed = {f for f in v.failed() if not f[0].startswith("settlement")}  # the chain paid other hashes
    assert failed == {("samples.sanity", 2), ("samples.sanity", 3)}
    details = {r.report_seq: r.detail for r in v.failures if r.check == "samples.sanity"}
    assert "outside window" in details[2] and "not one of the lease's [0, 1]" in details[3]
