"""Audit sources (bridge API, archive, chain reader) and the ``compute-ledger audit`` command."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from auditor.core import AuditInput, LeaseMoney, LeaseTerms, Settlement, verify_lease
from auditor.cli import ProgressBar, format_table, main
from auditor.sources import (
    ApiSource,
    ArchiveSource,
    AuditSourceError,
    ChainSource,
    settlement_from_json,
    settlement_to_json,
    write_archive,
)
from ledger.chain.backends import free_port
from tests.audit.fakebridge import create_fake_bridge
from tests.audit.fakegpu import make_lease


@pytest.fixture(scope="module")
def leases() -> dict[int, AuditInput]:
    good = make_lease(closed=True, duration_s=90).input
    bad_base = make_lease(4, settle_at=(2, 4), seed=11).input
    bad_terms = dataclasses.replace(bad_base.terms, leaseId=43)
    # lease 43: the archive lacks report 3 between checkpoints 2 and 4 (and its reports say leaseId 42)
    bad = AuditInput(bad_terms, tuple(sr for sr in bad_base.reports if sr.report.seq != 3), bad_base.settlements, None)
    return {42: good, 43: bad}


@pytest.fixture(scope="module")
def served(leases: dict[int, AuditInput]) -> Iterator[tuple[str, Counter[str]]]:
    """The fake bridge over real HTTP on 127.0.0.1, with its request counter."""
    app, hits = create_fake_bridge(leases)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake bridge did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", hits
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def bridge(served: tuple[str, Counter[str]]) -> Iterator[tuple[httpx.Client, Counter[str]]]:
    url, hits = served
    hits.clear()
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client, hits


@pytest.fixture()
def bridge_url(served: tuple[str, Counter[str]]) -> str:
    return served[0]


# --- API source ----------------------------------------------------------------------------------------


def test_api_source_loads_exactly_what_the_chain_and_attestor_produced(
    bridge: Any, leases: dict[int, AuditInput]
) -> None:
    client, hits = bridge
    inp = ApiSource(client=client).load(42)
    assert inp == leases[42]
    assert hits["lease"] == 1 and hits["reports"] == 1 and hits["proof"] == 0
    assert verify_lease(inp).ok


def test_api_source_paginates_reports(bridge: Any, leases: dict[int, AuditInput]) -> None:
    client, hits = bridge
    inp = ApiSource(client=client, page_size=4).load(42)
    assert [sr.report.seq for sr in inp.reports] == [1, 2, 3, 4, 5, 6]
    assert hits["reports"] == 2


def test_api_source_spot_check_fetches_k_proofs_per_report(bridge: Any) -> None:
    client, hits = bridge
    inp = ApiSource(client=client, rng=random.Random(3)).load(42, spot_check_k=4)
    assert all(sr.samples is None and len(sr.proofs) == 4 for sr in inp.reports)
    assert hits["proofs"] == 6 and hits["proof"] == 0  # one request per report, not one per proof
    v = verify_lease(inp, spot_check_k=4)
    assert v.ok, v.failures
    assert v.samples == 24


def test_api_source_lists_every_lease(bridge: Any) -> None:
    client, _ = bridge
    assert ApiSource(client=client, page_size=1).lease_ids() == [42, 43]


def test_api_source_unknown_lease_raises_source_error(bridge: Any) -> None:
    client, _ = bridge
    with pytest.raises(AuditSourceError, match="HTTP 404"):
        ApiSource(client=client).load(7)


def test_settlement_json_from_the_ckpt_word_or_its_fields(leases: dict[int, AuditInput]) -> None:
    st = leases[42].settlements[1]
    full = settlement_to_json(st)
    assert settlement_from_json(full) == st
    fields = ("seq", "cumBusyMs", "cumAllocatedMs", "cumEnergyMj", "windowEndMs", "settledAt")
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


class _Reader:
    def __init__(self, inp: AuditInput) -> None:
        self.inp = inp

    def lease_ids(self) -> list[int]:
        return [self.inp.terms.leaseId]

    def lease(self, lease_id: int) -> tuple[LeaseTerms, tuple[Settlement, ...], LeaseMoney | None]:
        assert lease_id == self.inp.terms.leaseId
        return self.inp.terms, self.inp.settlements, self.inp.money


def test_chain_source_joins_chain_terms_with_archived_reports(tmp_path: Path, leases: dict[int, AuditInput]) -> None:
    path = tmp_path / "archive.jsonl"
    write_archive(path, leases[42].reports)
    src = ChainSource(_Reader(leases[42]), ArchiveSource(path))
    assert src.lease_ids() == [42]
    inp = src.load(42)
    assert inp == leases[42]
    assert verify_lease(inp).ok


# --- the command -------------------------------------------------------------------------------------------


def test_audit_cli_lease_verified_exits_zero(bridge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["lease", "42", "--api", bridge_url])
    out = capsys.readouterr()
    assert rc == 0
    assert out.out.startswith("lease 42: VERIFIED\ncheck")
    assert "signature" in out.out and "6 reports verified" in out.out
    assert "lease 42: 6 reports, 3 checkpoints — verified" in out.err  # the progress line


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
    assert text.count('class="util"') == 4 and text.count('class="power"') == 4
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
    assert "compute-ledger audit: GET /v1/leases/1" in capsys.readouterr().err


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
        ["lease", "1", "--api", "http://x", "--rpc", "http://y"],
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
