"""Audit sources (bridge API, archive, chain reader) and the ``compute-ledger audit`` command."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from auditor.core import AuditInput, BillingMode, LeaseMoney, LeaseTerms, Settlement, lease_usage, verify_lease
from auditor.cli import ProgressBar, format_table, format_usage, main
from auditor.report_html import render_html
from auditor.sources import (
    ApiSource,
    ArchiveSource,
    AuditSourceError,
    ChainSource,
    report_from_json,
    report_to_json,
    settlement_from_json,
    settlement_to_json,
    terms_from_json,
    write_archive,
)
from ledger.chain.backends import free_port
from attestor.simdriver import Full, TinyKernels
from tests.audit.fakebridge import FixtureChain, chain_json, create_fake_bridge, lease_json
from tests.audit.fakegpu import make_lease
from tests.support.serve import served as served_app


def leases_42() -> AuditInput:
    return make_lease(closed=True, duration_s=90).input


@pytest.fixture(scope="module")
def leases() -> dict[int, AuditInput]:
    good = leases_42()
    bad_base = make_lease(4, settle_at=(2, 4), seed=11).input
    bad_terms = dataclasses.replace(bad_base.terms, leaseId=43)
    # lease 43: the archive lacks report 3 between checkpoints 2 and 4 (and its reports say leaseId 42)
    bad = AuditInput(bad_terms, tuple(sr for sr in bad_base.reports if sr.report.seq != 3), bad_base.settlements, None)
    return {42: good, 43: bad}


@pytest.fixture(scope="module")
def served(leases: dict[int, AuditInput]) -> Iterator[tuple[str, Counter[str]]]:
    """The fake bridge over real HTTP on 127.0.0.1, with its request counter."""
    app, hits = create_fake_bridge(leases)
    with served_app(app, start_timeout_s=10) as url:
        yield url, hits


@pytest.fixture()
def bridge(served: tuple[str, Counter[str]]) -> Iterator[tuple[httpx.Client, Counter[str]]]:
    url, hits = served
    hits.clear()
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client, hits


@pytest.fixture()
def chain(leases: dict[int, AuditInput]) -> FixtureChain:
    return FixtureChain(leases)


@pytest.fixture()
def bridge_url(served: tuple[str, Counter[str]], chain: FixtureChain, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fake bridge's URL, for the command: its chain (which publishes no RPC URL, like the memory backend)
    is handed to the command's API source in process."""
    import auditor.cli

    monkeypatch.setattr(auditor.cli, "ApiSource", functools.partial(ApiSource, chain=chain))
    return served[0]


def _same(a: AuditInput, b: AuditInput) -> bool:
    """The same lease: terms, reports, checkpoints and money (the chain's state and the comparison with the
    bridge come on top)."""
    return (a.terms, a.reports, a.settlements, a.money) == (b.terms, b.reports, b.settlements, b.money)


# --- API source ----------------------------------------------------------------------------------------


def test_api_source_loads_exactly_what_the_chain_and_attestor_produced(
    bridge: Any, leases: dict[int, AuditInput]
) -> None:
    client, hits = bridge
    inp = ApiSource(client=client, chain=FixtureChain(leases)).load(42)
    assert _same(inp, leases[42])
    assert hits["chain"] == 1 and hits["lease"] == 1 and hits["reports"] == 1 and hits["proof"] == 0
    v = verify_lease(inp)
    assert v.ok, v.failures
    by = {r.check: r for r in v.results}
    assert by["bridge.chain"].status == by["bridge.consistency"].status == "PASS"


def test_api_source_paginates_reports(bridge: Any, leases: dict[int, AuditInput]) -> None:
    client, hits = bridge
    inp = ApiSource(client=client, page_size=4, chain=FixtureChain(leases)).load(42)
    assert [sr.report.seq for sr in inp.reports] == [1, 2, 3, 4, 5, 6]
    assert hits["reports"] == 2


def test_api_source_spot_check_fetches_k_proofs_per_report(bridge: Any, chain: FixtureChain) -> None:
    client, hits = bridge
    inp = ApiSource(client=client, rng=random.Random(3), chain=chain).load(42, spot_check_k=4)
    assert all(sr.samples is None and len(sr.proofs) == 4 for sr in inp.reports)
    assert hits["proofs"] == 6 and hits["proof"] == 0  # one request per report, not one per proof
    v = verify_lease(inp, spot_check_k=4)
    assert v.ok, v.failures
    assert v.samples == 24


def test_api_source_lists_every_lease(bridge: Any, chain: FixtureChain) -> None:
    client, _ = bridge
    src = ApiSource(client=client, page_size=1, chain=chain)
    assert src.lease_ids() == [42, 43] == src.listed_lease_ids()  # the chain's leases; the bridge lists them too


def test_api_source_unknown_lease_raises_source_error(bridge: Any, chain: FixtureChain) -> None:
    client, _ = bridge
    with pytest.raises(AuditSourceError, match="lease 7 does not exist on chain 31337"):
        ApiSource(client=client, chain=chain).load(7)


def test_settlement_json_from_the_ckpt_word_or_its_fields(leases: dict[int, AuditInput]) -> None:
    st = leases[42].settlements[1]
    full = settlement_to_json(st)
    assert settlement_from_json(full) == st
    fields = ("seq", "cumBusyMs", "cumAllocatedMs", "cumEnergyMj", "cumSmActiveMs", "settledAt")
    word_only = {k: v for k, v in full.items() if k not in fields}
    assert settlement_from_json(word_only) == st
    fields_only = {k: v for k, v in full.items() if k != "ckpt"}
    assert settlement_from_json(fields_only) == st
    # the word is what the chain recorded: fields that disagree with it are not a format the auditor guesses at
    with pytest.raises(AuditSourceError, match="cumAllocatedMs .* disagrees with its ckpt word"):
        settlement_from_json({**full, "cumAllocatedMs": st.cumAllocatedMs + 1})
    # a bridge still serving the old settlement (billableDelta / samplesRoot, no checkpoint) is refused
    old = {"seq": st.seq, "reportHash": full["reportHash"], "billableDelta": 1, "charged": 1, "samplesRoot": None}
    with pytest.raises(AuditSourceError, match="needs its ckpt word"):
        settlement_from_json(old)
    # a protocol v1 record (window end in the word, no SM-active counter) cannot be read as a v2 checkpoint
    v1 = {k: v for k, v in fields_only.items() if k != "cumSmActiveMs"} | {"windowEndMs": 1}
    with pytest.raises(AuditSourceError, match=r"needs its ckpt word \(or cumSmActiveMs\)"):
        settlement_from_json(v1)
    # the v2 word carries cumSmActiveMs in bits 176..223
    assert (int(full["ckpt"]) >> 176) & ((1 << 48) - 1) == st.cumSmActiveMs > 0


@pytest.mark.parametrize(
    ("value", "mode"),
    [("reserved", BillingMode.RESERVED), ("METERED", BillingMode.METERED), ("sm_active", BillingMode.SM_ACTIVE),
     ("SM-active", BillingMode.SM_ACTIVE), (2, BillingMode.SM_ACTIVE), ("1", BillingMode.METERED)],
)  # fmt: skip
def test_lease_terms_read_every_billing_mode(leases: dict[int, AuditInput], value: Any, mode: BillingMode) -> None:
    doc = lease_json(leases[42]) | {"billingMode": value}
    assert terms_from_json(doc).billingMode == mode


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"billingMode": "pay-what-you-want"}, "unknown billingMode 'pay_what_you_want'"),
        ({"billingMode": 7}, "unknown billingMode 7"),
        ({"gpuIndices": ["a"]}, "lease JSON is malformed"),
        ({"startMs": "soon"}, "startMs must be an integer"),
    ],
)
def test_lease_terms_malformed_are_a_source_error(
    leases: dict[int, AuditInput], change: dict[str, Any], message: str
) -> None:
    with pytest.raises(AuditSourceError, match=message):
        terms_from_json(lease_json(leases[42]) | change)


def test_report_entry_with_v1_samples_is_a_source_error(leases: dict[int, AuditInput]) -> None:
    entry = report_to_json(leases[42].reports[0])
    assert len(entry["samples"][0]) == 13
    entry["samples"][0] = entry["samples"][0][:8]  # a protocol v1 sample
    with pytest.raises(AuditSourceError, match="a sample has 13 fields, got 8"):
        report_from_json(entry)
    entry["samples"][0] = "0x00"
    with pytest.raises(AuditSourceError, match="a sample must be a list of 13 integers"):
        report_from_json(entry)


# --- archive and chain source ---------------------------------------------------------------------------


def test_archive_round_trips_reports_and_samples(tmp_path: Path, leases: dict[int, AuditInput]) -> None:
    path = tmp_path / "archive.jsonl"
    n = write_archive(path, list(leases[42].reports) + list(leases[43].reports))
    assert n == 6 + 3
    arch = ArchiveSource(path)
    assert arch.lease_ids() == [42]  # lease 43's reports say leaseId 42: the archive groups by the report
    assert arch.reports(42) == list(leases[42].reports) + list(leases[43].reports)


def test_archive_malformed_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    path.write_text('{"report": {"leaseId": 1}}\n', encoding="utf-8")
    with pytest.raises(AuditSourceError, match="archive.jsonl:1: malformed report"):
        ArchiveSource(path)


def test_chain_source_joins_chain_terms_with_archived_reports(tmp_path: Path, leases: dict[int, AuditInput]) -> None:
    path = tmp_path / "archive.jsonl"
    write_archive(path, leases[42].reports)
    src = ChainSource(FixtureChain({42: leases[42]}), ArchiveSource(path))
    assert src.lease_ids() == [42]
    inp = src.load(42)
    assert _same(inp, leases[42]) and inp.status == "Closed" and inp.now_ms is not None
    assert verify_lease(inp).ok


# --- the command -------------------------------------------------------------------------------------------


def test_audit_cli_lease_verified_exits_zero(bridge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["lease", "42", "--api", bridge_url])
    out = capsys.readouterr()
    assert rc == 0
    assert out.out.startswith("lease 42: VERIFIED\ncheck")
    assert "signature" in out.out and "6 reports verified" in out.out
    assert "lease 42: 6 reports, 3 checkpoints — verified" in out.err  # the progress line
    # what was metered: busy and SM-active time side by side, per window and in total
    assert "window  allocated GPU-s  busy GPU-s  SM-active GPU-s  SM-active share of busy  flags" in out.out
    usage = lease_usage(leases_42())
    total = next(line for line in out.out.splitlines() if line.strip().startswith("total"))
    assert total.split()[1:] == [
        f"{usage.allocatedMs // 1000}.{usage.allocatedMs % 1000:03d}",
        f"{usage.busyMs // 1000}.{usage.busyMs % 1000:03d}",
        f"{usage.smActiveMs // 1000}.{usage.smActiveMs % 1000:03d}",
        f"{usage.sm_share_of_busy_bps // 100}.{usage.sm_share_of_busy_bps % 100:02d}",  # type: ignore[operator]
        "%",
    ]
    assert "billing basis: allocated GPU time (reserved" in out.out
    assert "flag SIMULATED: readings come from a simulated GPU driver" in out.out


def test_audit_cli_all_names_the_failed_lease_and_exits_one(
    bridge_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["all", "--api", bridge_url, "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "lease 42: VERIFIED" in out and "lease 43: FAILED" in out
    assert "chain.seq" in out and "report 4: report 3 missing before report 4" in out
    assert out.rstrip().endswith("1 of 2 lease(s) FAILED: 43")


def test_audit_cli_json_is_one_object(bridge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["all", "--api", bridge_url, "--json", "--quiet"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert data["ok"] is False
    assert [lease["leaseId"] for lease in data["leases"]] == [42, 43]
    failed = [(r["check"], r["reportSeq"]) for r in data["leases"][1]["results"] if not r["ok"]]
    assert ("chain.seq", 4) in failed and ("report.lease", 1) in failed
    usage = data["leases"][0]["usage"]
    assert usage["billingMode"] == "reserved" and len(usage["windows"]) == 6
    assert usage["busyMs"] == sum(w["busyMs"] for w in usage["windows"]) > usage["smActiveMs"] > 0
    assert usage["smShareOfBusyBps"] == usage["smActiveMs"] * 10_000 // usage["busyMs"]
    assert usage["billableMs"] == usage["allocatedMs"]
    simulated = {"flag": "SIMULATED", "meaning": "readings come from a simulated GPU driver, not hardware"}
    assert usage["flags"] == [simulated]


def test_audit_cli_spot_check_verifies_proofs(bridge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["lease", "42", "--api", bridge_url, "--spot-check", "3", "--json", "--quiet"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    results = {r["check"]: r for r in data["leases"][0]["results"]}
    assert results["samples.spot_check"]["status"] == "PASS"
    assert results["aggregates"]["status"] == "SKIP"
    assert data["leases"][0]["samples"] == 18


def test_audit_cli_html_report_is_self_contained(bridge_url: str, tmp_path: Path) -> None:
    out = tmp_path / "audit.html"
    rc = main(["all", "--api", bridge_url, "--report", str(out), "--quiet"])
    text = out.read_text(encoding="utf-8")
    assert rc == 1
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<svg") == 2 + 2  # lease 42: GPUs 0 and 1; lease 43: GPUs 0 and 1
    assert text.count('class="util"') == 4 and text.count('class="power"') == 4 and text.count('class="sm"') == 4
    assert text.count("SM-active share of busy time") == 2  # the usage table of each lease
    assert text.count('<tr class="total">') == 2
    assert "1 FAILED" in text and "chain.seq" in text
    assert text.count("Checkpoints paid on-chain") == 2
    assert text.count('fill="#fbe3e3"') == 2 * 3  # lease 43: its 3 reports fail report.lease, shaded per GPU
    assert "<tr><td>4</td><td>11</td>" in text  # lease 43's checkpoint at seq 4, block 11
    for external in ("<script", "<link", "src=", "url(", "@import"):
        assert external not in text
    assert text.count("http") == text.count('xmlns="http://www.w3.org/2000/svg"')


def test_audit_cli_unreachable_api_exits_three(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["lease", "1", "--api", f"http://127.0.0.1:{free_port()}", "--quiet"])
    assert rc == 3
    assert capsys.readouterr().out.startswith("lease 1: COULD NOT AUDIT: GET /v1/chain: ")


def test_audit_cli_unreadable_chain_source_exits_three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "archive.jsonl"
    archive.write_text("", encoding="utf-8")
    argv = ["all", "--rpc", f"http://127.0.0.1:{free_port()}", "--deployment", str(tmp_path / "missing.json")]
    rc = main(argv + ["--archive", str(archive), "--quiet"])
    assert rc == 3
    assert "cannot read deployment record missing.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["lease"],
        ["all", "3"],
        ["lease", "1", "--api", "http://x", "--archive", "a.jsonl"],
        ["lease", "1", "--rpc", "http://y"],
        ["lease", "1", "--spot-check", "0"],
    ],
)
def test_audit_cli_usage_errors_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_format_table_names_report_of_each_failure(leases: dict[int, AuditInput]) -> None:
    table = format_table(verify_lease(leases[43]))
    lines = table.splitlines()
    assert lines[0] == "lease 43: FAILED"
    assert any(line.startswith("chain.seq") and "FAIL" in line and "report 4:" in line for line in lines)
    assert io.StringIO(table).read().count("\n") == len(lines) - 1


def test_compute_ledger_console_command_delegates_audit(bridge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from compute_ledger.cli import main as console_main

    rc = console_main(["audit", "lease", "43", "--api", bridge_url, "--quiet"])
    assert rc == 1
    assert "lease 43: FAILED" in capsys.readouterr().out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_ends_with_the_verdict(leases: dict[int, AuditInput]) -> None:
    out = _Tty()
    bar = ProgressBar(out)
    bar.start("lease 42")
    v = verify_lease(leases[42], progress=bar.update)
    bar.finish(v)
    text = out.getvalue()
    assert "lease 42: [" in text and "] 6/6 reports" in text
    assert text.endswith("\rlease 42: 6 reports, 3 checkpoints — verified\x1b[K\n")
    plain = io.StringIO()
    quiet = ProgressBar(plain)
    quiet.start("lease 42")
    quiet.update(1, 6)
    quiet.finish(v)
    assert plain.getvalue() == "lease 42: 6 reports, 3 checkpoints — verified\n"


def test_usage_names_flags_in_words_and_sm_active_billing() -> None:
    """UTIL_HOLE, UTIL_POLLED and NO_GPM are explained in words, in the command's output and the HTML report;
    an SM-active lease names its billing basis."""
    holey = make_lease(2, period_ms=10_000, samples_per_window=2, settle_at=(), gpu_kw={"util_capacity": 5},
                       billing=BillingMode.SM_ACTIVE, workloads=[Full(), TinyKernels()])  # fmt: skip
    polled = make_lease(2, settle_at=(), gpu_kw={"samples_supported": False, "gpm_supported": False}, lease_id=43)
    audits = [(fl.input, verify_lease(fl.input)) for fl in (holey, polled)]
    assert all(v.ok for _, v in audits)
    text = format_usage(lease_usage(holey.input))
    assert "billing basis: SM-active GPU time" in text
    assert "flag UTIL_HOLE: the driver's utilization buffer lost samples" in text and "not billed" in text
    assert "note: SM-active time above busy time where utilization samples were lost" in text  # a full GPU, holes
    assert "note:" not in format_usage(lease_usage(make_lease(2, settle_at=()).input))
    text2 = format_usage(lease_usage(polled.input))
    assert "flag UTIL_POLLED: no utilization buffer on this GPU" in text2
    assert "flag NO_GPM: the GPU has no GPM (pre-Hopper)" in text2
    # without GPM figures there is no SM-active time, so no share of busy time either
    assert next(line for line in text2.splitlines() if line.strip().startswith("total")).split()[3] == "0.000"
    page = render_html(audits)
    for name in ("UTIL_HOLE", "UTIL_POLLED", "NO_GPM"):
        assert f"<tr><td>{name}</td><td>" in page
    assert "sm_active (SM-active GPU time" in page
    assert page.count('class="sm"') == 2  # the GPM-less node has no SM line to draw


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/chain", [1, 2], "GET /v1/chain: a list, not the documented object"),
        ("/v1/audit/leases", {"leases": [7]}, "the bridge's lease list is not in the documented format"),
        ("/v1/leases/42/reports", {"reports": [{"report": []}]}, "malformed report"),
        ("/v1/leases/42/reports/1/samples/proofs", {"proofs": [{"index": "x"}]}, "index must be an integer"),
    ],
)
def test_api_source_answer_of_the_wrong_shape_is_a_source_error(
    leases: dict[int, AuditInput], path: str, body: Any, message: str
) -> None:
    """A bridge answering JSON of another shape gets a named error, never a stack trace."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == path:
            return httpx.Response(200, json=body)
        if request.url.path == "/v1/chain":
            return httpx.Response(200, json=chain_json(31337, leases[42].terms.escrow))
        if request.url.path == "/v1/leases/42":
            return httpx.Response(200, json=lease_json(leases[42]))
        if request.url.path == "/v1/leases/42/reports":
            return httpx.Response(200, json={"reports": [report_to_json(leases[42].reports[0])], "nextFromSeq": None})
        return httpx.Response(404, json={"detail": {"code": "not_found"}})

    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://bridge") as client:
        src = ApiSource(client=client, chain=FixtureChain(leases))
        with pytest.raises(AuditSourceError, match=message):
            src.listed_lease_ids() if path == "/v1/audit/leases" else src.load(42, spot_check_k=2)


@pytest.mark.parametrize(
    ("served", "difference"),
    [
        (lambda good: [1, 2], "the lease document is not a JSON object but list"),
        (lambda good: {"leaseId": 42}, "chainId: the bridge serves nothing, the chain holds 31337"),
        (lambda good: good | {"attestors": "nobody"},
         "attestor history (NodeRegistered / AttestorRotated): the bridge serves 'nobody'"),
        (lambda good: good | {"money": good["money"] | {"escrow": "x"}},
         "money.escrow: the bridge serves 'x', the chain holds 180000000000"),
    ],
)  # fmt: skip
def test_api_source_lease_document_of_the_wrong_shape_fails_bridge_consistency(
    leases: dict[int, AuditInput], served: Any, difference: str
) -> None:
    """The lease document is the bridge's copy of the chain's data: the audit reads the chain, so a malformed
    copy does not stop it; it is a finding, the bridge's."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chain":
            return httpx.Response(200, json=chain_json(31337, leases[42].terms.escrow))
        if request.url.path == "/v1/leases/42":
            return httpx.Response(200, json=served(lease_json(leases[42])))
        return httpx.Response(200, json={"reports": [report_to_json(sr) for sr in leases[42].reports], "nextFromSeq": None})

    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://bridge") as client:
        v = verify_lease(ApiSource(client=client, chain=FixtureChain(leases)).load(42))
    assert v.failed() == {("bridge.consistency", None)}
    (bad,) = v.failures
    assert bad.blame == "bridge" and difference in bad.detail


def test_html_report_of_malformed_samples_still_renders() -> None:
    """The report is written for failing leases too: a sample with an empty interval fails the audit and is
    drawn without dividing by it."""
    fl = make_lease(1, settle_at=())
    samples = list(fl.reports[0].samples or ())
    samples[0] = dataclasses.replace(samples[0], intervalMs=0, coveredMs=0, busyMs=0, smActiveMs=0, tensorActiveMs=0)
    inp = fl.with_reports([dataclasses.replace(fl.reports[0], samples=tuple(samples))])
    v = verify_lease(inp)
    assert ("samples.root", 1) in v.failed()
    page = render_html([(inp, v)])
    assert page.count("<svg") == 2 and "FAILED" in page


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (lambda d: d | {"settlements": d["settlements"][:-1]}, "settlement 3: the bridge serves nothing, the chain holds 'seq 6 charged"),
        (lambda d: d | {"settlements": d["settlements"] + d["settlements"][-1:]}, "settlement 4: the bridge serves 'seq 6 charged"),
        (lambda d: d | {"settlements": [d["settlements"][1], d["settlements"][0], d["settlements"][2]]}, "settlement 1 seq: the bridge serves 4, the chain holds 2"),
        (lambda d: d | {"money": d["money"] | {"topUps": [{"amount": 1, "fee": 0, "block": 1, "logIndex": 0}]}}, "money.topUps (amount, fee, block, logIndex): the bridge serves [(1, 0, 1, 0)], the chain holds []"),
        (lambda d: d | {"money": d["money"] | {"closed": False}}, "money.closed: the bridge serves False, the chain holds True"),
        (lambda d: d | {"disputes": [{"frozen": "5", "block": 3, "resolved": False}]}, "disputes (frozen, block, resolved, buyer, provider, slashed, providerFault): the bridge serves [(5, 3, False, 0, 0, 0, None)], the chain holds []"),
        (lambda d: d | {"state": "Active"}, "state: the bridge serves 'Active', the chain holds 'Closed'"),
        (lambda d: d | {"gpuIndices": [0, 2]}, "gpuIndices: the bridge serves [0, 2], the chain holds [0, 1]"),
        (lambda d: d | {"billingMode": "metered"}, "billingMode: the bridge serves 'metered', the chain holds 'reserved'"),
        (lambda d: d | {"escrow": "0x" + "22" * 20}, "escrow: the bridge serves '0x2222"),
    ],
)  # fmt: skip
def test_lease_document_differences_name_the_field_and_both_values(
    leases: dict[int, AuditInput], change: Any, difference: str
) -> None:
    from auditor.consistency import lease_document_differences

    rec = FixtureChain(leases).record(42)
    assert lease_document_differences(lease_json(leases[42]), rec) == []
    got = lease_document_differences(change(lease_json(leases[42])), rec)
    assert got and got[0].startswith(difference), got


def test_audit_cli_quiet_prints_no_http_lines(
    bridge_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    main(["all", "--api", bridge_url, "--quiet"])
    err = capsys.readouterr().err
    assert "HTTP Request" not in err and not [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
