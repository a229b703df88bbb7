"""The durable spool: SQLite in WAL mode, ``synchronous=FULL``.

A report, its samples and the lease state after it (seq, last hash, cumulative counters, energy baseline)
are committed in one transaction before the report is sent. So a process killed at any moment restarts
from the last committed report: it never rebuilds a window it already reported under another seq, and it
re-sends every unacknowledged report byte for byte (the bridge answers an exact duplicate with 200).

One connection per thread: open one :class:`Spool` per thread on the same file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.protocol import MeteringReport, Sample

from .errors import SpoolError
from .meter import BuiltReport, LeaseState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lease_state (
    lease_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    last_end_ms INTEGER,
    cum_busy_ms INTEGER NOT NULL,
    cum_energy_mj INTEGER NOT NULL,
    cum_allocated_ms INTEGER NOT NULL,
    energy_baseline TEXT NOT NULL,
    cum_sm_active_ms INTEGER NOT NULL DEFAULT 0,
    sample_ends TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS reports (
    lease_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    report_hash TEXT NOT NULL,
    report_json TEXT NOT NULL,
    signature TEXT NOT NULL,
    samples_json TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    acked_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (lease_id, seq)
);
CREATE INDEX IF NOT EXISTS reports_unacked ON reports (acked_ms, lease_id, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Protocol of the reports a spool holds (the EIP-712 domain version): a spool of another protocol is refused.
SPOOL_PROTOCOL = "2"


@dataclass(frozen=True, slots=True)
class SpooledReport:
    """A committed report as it is (re-)sent."""

    lease_id: int
    seq: int
    report_hash: str
    report: dict[str, Any]
    signature: str
    samples: list[list[int]]
    attempts: int


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    lease_id: int
    last_seq: int
    last_acked_seq: int
    unacked: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    depth: int
    leases: tuple[LeaseStatus, ...]
    last_error: str | None


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


class Spool:
    """Durable store of reports and lease chains. Lease ids are stored as text (uint256 exceeds SQLite ints)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'protocol'").fetchone()
            if row is None:
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(lease_state)")}
                held = self._db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
                if held or "cum_sm_active_ms" not in columns:
                    row = ("1",)  # written before the protocol was recorded: version 1
                else:
                    self._db.execute("INSERT INTO meta (key, value) VALUES ('protocol', ?)", (SPOOL_PROTOCOL,))
                    row = (SPOOL_PROTOCOL,)
        except sqlite3.Error as e:
            raise SpoolError(f"cannot open spool {path}: {e}") from e
        if row[0] != SPOOL_PROTOCOL:
            self._db.close()
            raise SpoolError(
                f"spool {path} holds protocol-{row[0]} reports; this attestor writes protocol {SPOOL_PROTOCOL}: "
                "send them with the old attestor, or start from a new data directory"
            )
        self.path = path

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def claim(self, node_id: int) -> int:
        """Bind the spool to a node on first use; returns the node it belongs to."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('node_id', ?)", (str(node_id),))
                return node_id
            return int(row[0])

    # -- lease chains --------------------------------------------------------------------------------

    def lease_state(self, lease_id: int) -> LeaseState:
        row = self._db.execute(
            "SELECT seq, last_hash, last_end_ms, cum_busy_ms, cum_energy_mj, cum_allocated_ms, energy_baseline,"
            " cum_sm_active_ms, sample_ends FROM lease_state WHERE lease_id = ?",
            (str(lease_id),),
        ).fetchone()
        if row is None:
            return LeaseState(lease_id=lease_id)
        return LeaseState(
            lease_id=lease_id,
            seq=row[0],
            last_hash=bytes.fromhex(row[1][2:]),
            last_end_ms=row[2],
            cum_busy_ms=row[3],
            cum_energy_mj=row[4],
            cum_allocated_ms=row[5],
            energy_baseline={int(k): int(v) for k, v in json.loads(row[6]).items()},
            cum_sm_active_ms=row[7],
            sample_ends={int(k): int(v) for k, v in json.loads(row[8]).items()},
        )

    def commit_report(self, built: BuiltReport, now_ms: int) -> None:
        """Store the report, its samples and the new lease state atomically; raises SpoolError on a seq gap."""
        r = built.report
        st = built.state
        with self._tx() as db:
            row = db.execute("SELECT seq FROM lease_state WHERE lease_id = ?", (str(r.leaseId),)).fetchone()
            last = 0 if row is None else row[0]
            if r.seq != last + 1:
                raise SpoolError(f"lease {r.leaseId}: report seq {r.seq} does not follow stored seq {last}")
            db.execute(
                "INSERT INTO reports (lease_id, seq, report_hash, report_json, signature, samples_json, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    str(r.leaseId),
                    r.seq,
                    _hex(built.report_hash),
                    json.dumps(r.to_json(), separators=(",", ":")),
                    _hex(built.signature),
                    json.dumps([s.to_list() for s in built.samples], separators=(",", ":")),
                    now_ms,
                ),
            )
            db.execute(
                "INSERT OR REPLACE INTO lease_state (lease_id, seq, last_hash, last_end_ms, cum_busy_ms,"
                " cum_energy_mj, cum_allocated_ms, energy_baseline, cum_sm_active_ms, sample_ends)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(r.leaseId),
                    st.seq,
                    _hex(st.last_hash),
                    st.last_end_ms,
                    st.cum_busy_ms,
                    st.cum_energy_mj,
                    st.cum_allocated_ms,
                    json.dumps({str(k): v for k, v in sorted(st.energy_baseline.items())}),
                    st.cum_sm_active_ms,
                    json.dumps({str(k): v for k, v in sorted(st.sample_ends.items())}),
                ),
            )

    # -- sending -------------------------------------------------------------------------------------

    def due(self, now_ms: int, limit: int = 32) -> list[SpooledReport]:
        """Per lease, its oldest unacknowledged report if its retry time has come (strict seq order)."""
        rows = self._db.execute(
            "SELECT r.lease_id, r.seq, r.report_hash, r.report_json, r.signature, r.samples_json, r.attempts"
            " FROM reports r JOIN (SELECT lease_id, MIN(seq) AS seq FROM reports WHERE acked_ms IS NULL"
            " GROUP BY lease_id) h ON r.lease_id = h.lease_id AND r.seq = h.seq"
            " WHERE r.next_attempt_ms <= ? ORDER BY r.created_ms, r.seq LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        return [SpooledReport(int(a), b, c, json.loads(d), e, json.loads(f), g) for a, b, c, d, e, f, g in rows]

    def mark_acked(self, lease_id: int, seq: int, now_ms: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE reports SET acked_ms = ?, last_error = NULL"
                " WHERE lease_id = ? AND seq = ? AND acked_ms IS NULL",
                (now_ms, str(lease_id), seq),
            )

    def mark_failed(self, lease_id: int, seq: int, error: str, next_attempt_ms: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE reports SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ?"
                " WHERE lease_id = ? AND seq = ?",
                (next_attempt_ms, error[:500], str(lease_id), seq),
            )
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_error', ?)", (error[:500],))

    def retry_all_now(self) -> None:
        """On start: every unacknowledged report is due at once (backoff restarts)."""
        with self._tx() as db:
            db.execute("UPDATE reports SET next_attempt_ms = 0 WHERE acked_ms IS NULL")

    def prune_acked(self, keep_per_lease: int = 1000) -> int:
        """Delete acknowledged reports beyond the newest ``keep_per_lease`` of each lease; returns how many."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM reports WHERE acked_ms IS NOT NULL AND seq <= "
                "(SELECT MAX(seq) FROM reports r2 WHERE r2.lease_id = reports.lease_id) - ?",
                (keep_per_lease,),
            )
            return cur.rowcount

    # -- inspection ----------------------------------------------------------------------------------

    def depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM reports WHERE acked_ms IS NULL").fetchone()[0])

    def status(self) -> SpoolStatus:
        rows = self._db.execute(
            "SELECT s.lease_id, s.seq,"
            " (SELECT MAX(seq) FROM reports r WHERE r.lease_id = s.lease_id AND r.acked_ms IS NOT NULL),"
            " (SELECT COUNT(*) FROM reports r WHERE r.lease_id = s.lease_id AND r.acked_ms IS NULL),"
            " (SELECT last_error FROM reports r WHERE r.lease_id = s.lease_id AND r.acked_ms IS NULL"
            "  ORDER BY seq LIMIT 1)"
            " FROM lease_state s ORDER BY CAST(s.lease_id AS INTEGER)"
        ).fetchall()
        leases = tuple(LeaseStatus(int(a), b, c or 0, d, e) for a, b, c, d, e in rows)
        err = self._db.execute("SELECT value FROM meta WHERE key = 'last_error'").fetchone()
        return SpoolStatus(
            depth=sum(x.unacked for x in leases), leases=leases, last_error=None if err is None else err[0]
        )

    def reports(self, lease_id: int) -> Iterator[tuple[MeteringReport, bytes, list[Sample], bool]]:
        """Every stored report of a lease in seq order: (report, signature, samples, acknowledged)."""
        for rj, sig, sj, acked in self._db.execute(
            "SELECT report_json, signature, samples_json, acked_ms IS NOT NULL FROM reports WHERE lease_id = ?"
            " ORDER BY seq",
            (str(lease_id),),
        ):
            yield (
                MeteringReport.from_json(json.loads(rj)),
                bytes.fromhex(sig[2:]),
                [Sample.from_values(v) for v in json.loads(sj)],
                bool(acked),
            )


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error), surfacing sqlite errors as SpoolError."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise SpoolError(f"spool busy: {e}") from e
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._db.execute("ROLLBACK")
                raise SpoolError(f"spool commit failed: {e}") from e
        else:
            self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise SpoolError(f"spool write failed: {exc}") from exc
