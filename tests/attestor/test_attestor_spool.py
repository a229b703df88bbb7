"""Spool, sender and bridge client: committed before sent, strict seq order, backoff, idempotent acks."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from attestor.bridge import BridgeClient, LeaseInfo, SubmitOutcome
from attestor.daemon import Backoff, Sender
from attestor.errors import BridgeError, SpoolError
from attestor.keys import Signer
from attestor.meter import BuiltReport, LeaseSpec, LeaseState, ReportBuilder, SamplingPolicy
from attestor.spool import Spool, SpooledReport
from ledger.protocol import ZERO_HASH, MeteringReport, report_struct_hash
from tests.support.simulated import simulated_reports

from tests.support.simulated import T0  # noqa: E402
ESCROW = "0x5FbDB2315678afecb367f032d315f642f64180aa"


class ManualClock:
    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def wall_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000

    def wait(self, event: Any, seconds: float) -> bool:
        self.ms += int(seconds * 1000)
        return bool(event.is_set())


def _reports(n: int, lease_id: int = 7) -> list[BuiltReport]:
    return simulated_reports(n, lease_id=lease_id, start_ms=T0 - 1_000)[1]


def test_spool_commit_persists_report_and_chain_state(tmp_path: Path) -> None:
    built = _reports(2)
    spool = Spool(tmp_path / "s.sqlite")
    spool.commit_report(built[0], T0)
    spool.commit_report(built[1], T0)
    spool.close()
    spool = Spool(tmp_path / "s.sqlite")  # as after a restart
    st = spool.lease_state(7)
    assert st == built[1].state
    assert st.seq == 2 and st.last_hash == report_struct_hash(built[1].report)
    rows = list(spool.reports(7))
    assert [r.seq for r, *_ in rows] == [1, 2]
    assert rows[0][0] == built[0].report and rows[0][1] == built[0].signature
    assert rows[1][0].prevReportHash == report_struct_hash(rows[0][0])
    assert tuple(rows[0][2]) == built[0].samples
    mode = sqlite3.connect(tmp_path / "s.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_spool_rejects_out_of_sequence_report_atomically(tmp_path: Path) -> None:
    built = _reports(2)
    spool = Spool(tmp_path / "s.sqlite")
    with pytest.raises(SpoolError, match="does not follow"):
        spool.commit_report(built[1], T0)
    assert spool.depth() == 0 and spool.lease_state(7) == LeaseState(7)
    spool.commit_report(built[0], T0)
    with pytest.raises(SpoolError):
        spool.commit_report(built[0], T0)  # the same seq twice
    assert spool.depth() == 1 and spool.lease_state(7).seq == 1


class Sink:
    def __init__(self, answers: list[SubmitOutcome] | None = None) -> None:
        self.answers = answers or []
        self.sent: list[tuple[int, int]] = []

    def submit(self, node_id: int, item: SpooledReport) -> SubmitOutcome:
        self.sent.append((item.lease_id, item.seq))
        if self.answers:
            return self.answers.pop(0)
        return SubmitOutcome(True, 201)


def test_sender_sends_in_seq_order_and_backs_off_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    for b in _reports(3):
        spool.commit_report(b, T0)
    sink = Sink([SubmitOutcome(False, 503, error="HTTP 503"), SubmitOutcome(False, 0, error="bridge unreachable")])
    clock = ManualClock()
    sender = Sender(1, path, lambda: sink, clock, Backoff(base_ms=1_000, max_ms=60_000))
    assert sender.send_due() == 0
    assert sink.sent == [(7, 1)]  # seq 2 waits behind seq 1
    assert sender.send_due() == 0 and sink.sent == [(7, 1)]  # not yet due
    clock.ms += 1_300
    assert sender.send_due() == 0 and sink.sent == [(7, 1), (7, 1)]
    clock.ms += 1_500  # the second retry waits 1 s · 2^1 ± 20 %: at least 1.6 s
    assert sender.send_due() == 0 and len(sink.sent) == 2
    clock.ms += 1_000  # ... and at most 2.4 s
    assert sender.send_due() == 1
    assert sink.sent[2:] == [(7, 1)]
    assert sender.send_due() == 1 and sender.send_due() == 1
    assert sink.sent[3:] == [(7, 2), (7, 3)]
    st = spool.status()
    assert st.depth == 0 and st.leases[0].last_acked_seq == 3 and st.leases[0].last_error is None
    assert st.last_error == "bridge unreachable"


def test_backoff_doubles_up_to_cap() -> None:
    b = Backoff(base_ms=500, max_ms=8_000)
    rng = random.Random(0)
    d = [b.delay_ms(a, rng) for a in range(8)]
    assert 400 <= d[0] <= 600 and 800 <= d[1] <= 1_200 and 1_600 <= d[2] <= 2_400
    assert all(6_400 <= x <= 9_600 for x in d[4:])


def _client(handler: Any) -> BridgeClient:
    return BridgeClient("http://bridge.test", transport=httpx.MockTransport(handler))


def _item(b: BuiltReport) -> SpooledReport:
    return SpooledReport(
        b.report.leaseId,
        b.report.seq,
        "0x" + b.report_hash.hex(),
        b.report.to_json(),
        "0x" + b.signature.hex(),
        [s.to_list() for s in b.samples],
        0,
    )


def test_bridge_client_posts_wire_format_and_checks_ack_hash() -> None:
    b = _reports(1)[0]
    seen: list[dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content)
        seen.append(body)
        assert req.url.path == "/v1/metering/reports" and req.method == "POST"
        h = "0x" + report_struct_hash(MeteringReport.from_json(body["report"])).hex()
        return httpx.Response(201, json={"accepted": True, "reportHash": h, "duplicate": False})

    out = _client(handler).submit(3, _item(b))
    assert out == SubmitOutcome(True, 201, duplicate=False)
    assert seen[0]["nodeId"] == 3 and seen[0]["signature"] == "0x" + b.signature.hex()
    assert MeteringReport.from_json(seen[0]["report"]) == b.report
    assert seen[0]["samples"] == [s.to_list() for s in b.samples] and len(seen[0]["samples"][0]) == 13

    wrong = _client(lambda r: httpx.Response(200, json={"accepted": True, "reportHash": "0x" + "00" * 32})).submit(
        3, _item(b)
    )
    assert not wrong.accepted and wrong.code == "hash_mismatch"


def test_bridge_client_reports_error_codes_and_network_failures() -> None:
    b = _reports(1)[0]
    conflict = _client(
        lambda r: httpx.Response(409, json={"detail": {"code": "seq_conflict", "message": "different report"}})
    ).submit(3, _item(b))
    assert (conflict.accepted, conflict.status, conflict.code) == (False, 409, "seq_conflict")

    def boom(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    down = _client(boom).submit(3, _item(b))
    assert not down.accepted and down.status == 0 and "unreachable" in (down.error or "")


def test_bridge_client_active_leases_and_domain() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v1/nodes/3/active-leases":
            return httpx.Response(
                200,
                json={
                    "leases": [
                        {
                            "leaseId": 9,
                            "gpuIndices": [1, 0],
                            "startMs": 5,
                            "endMs": 10,
                            "state": "Active",
                            "gpuSetHash": "0x" + "ab" * 32,
                        }
                    ]
                },
            )
        if req.url.path == "/v1/metering/domain":
            return httpx.Response(200, json={"chainId": 31337, "verifyingContract": ESCROW})
        return httpx.Response(404, json={"detail": {"code": "unknown_node", "message": "no"}})

    c = _client(handler)
    assert c.active_leases(3) == [LeaseInfo(9, (1, 0), 5, 10, "Active", bytes.fromhex("ab" * 32))]
    assert c.domain() == (31337, ESCROW)
    with pytest.raises(BridgeError, match="unknown_node"):
        c.active_leases(4)
    bad = _client(lambda r: httpx.Response(200, json={"leases": [{"leaseId": 1}]}))
    with pytest.raises(BridgeError, match="malformed"):
        bad.active_leases(3)


def test_zero_hash_is_the_first_link() -> None:
    b = _reports(2)
    assert b[0].report.prevReportHash == ZERO_HASH and b[0].report.seq == 1
    assert b[1].report.prevReportHash == b[0].report_hash
    assert b[1].report.cumBusyMs == b[0].report.busyMs + b[1].report.busyMs
    assert b[1].report.cumEnergyMj == b[0].report.energyMj + b[1].report.energyMj
    assert b[1].report.cumAllocatedMs == b[0].report.allocatedMs + b[1].report.allocatedMs == 2 * 2 * 10_000


def test_spool_of_protocol_1_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """A data directory from the protocol-1 attestor: its reports can never settle under protocol 2, and its
    lease state lacks the new counters; the attestor refuses it rather than mixing two protocols."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE lease_state (lease_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, last_hash TEXT NOT NULL,"
        " last_end_ms INTEGER, cum_busy_ms INTEGER NOT NULL, cum_energy_mj INTEGER NOT NULL,"
        " cum_allocated_ms INTEGER NOT NULL, energy_baseline TEXT NOT NULL);"
        "INSERT INTO lease_state VALUES ('7', 3, '0x00', 5, 1, 1, 1, '{}');"
    )
    db.commit()
    db.close()
    with pytest.raises(SpoolError, match="protocol-1 reports; this attestor writes protocol 2"):
        Spool(path)
    fresh = Spool(tmp_path / "new.sqlite")  # a new data directory is fine, and stays protocol 2 on reopen
    fresh.close()
    Spool(tmp_path / "new.sqlite").close()
