"""Metering reports and their samples: intake (the per-lease hash chain, checked where each report is stored),
reads for attestors and auditors, and the settlement queue's statuses.

A report's status: ``accepted`` (waiting to be settled) → ``queued`` (carried by a signed settlement
transaction) → ``settled`` | ``superseded`` (a later checkpoint paid for its window) | ``rejected``
(``reason`` says why); a failed or stale settlement puts it back to ``accepted``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased

from ledger.protocol import Sample
from ledger.protocol.crypto import ZERO_HASH
from ledger.protocol.metering import EnergySplit

from .. import faults
from .archive import SampleArchive
from .db import Database, dialect_insert
from .locks import lock_key
from .models import ChainEvent, LeaseRow, Report, SampleSet, SettlementTx, now_ms
from .samples import CODEC_RAW, decode_samples

OPEN_STATUSES = ("accepted", "queued")


@dataclass(frozen=True)
class NewReport:
    """A checked report ready to be stored (hashes 0x-hex, samples packed by ``api.store.samples``)."""

    lease_id: int
    seq: int
    struct_hash: str
    prev_hash: str
    signer: str
    signature: str
    body: str  # the report's JSON (MeteringReport.to_json)
    samples_root: str
    packed_samples: bytes  # encoded by api.store.samples with ``samples_codec``
    sample_count: int
    window_end_ms: int
    cum_billable: int
    # what the hash chain must add up to: (windowStartMs, cumulative counters, the window's figures) in the
    # order of CHAIN_SUMS; None skips the arithmetic check (imports of old data)
    chain_figures: tuple[int, ...] | None = None
    samples_codec: int = CODEC_RAW
    # the window's energy as its samples give it, finished here with the previous report's counters (its
    # ``energy_carry``); None skips the check (no samples, imports of old data)
    energy: EnergySplit | None = None


CHAIN_SUMS: tuple[tuple[str, str], ...] = (
    ("cumBusyMs", "busyMs"),
    ("cumAllocatedMs", "allocatedMs"),
    ("cumSmActiveMs", "smActiveMs"),
    ("cumEnergyMj", "energyMj"),
)
"""Each cumulative counter of report n is report n − 1's plus report n's window figure."""
_ENERGY_AT = 3 + 2 * [win for _, win in CHAIN_SUMS].index("energyMj")  # energyMj's place in chain_figures


def chain_figures(report_json: dict[str, object]) -> tuple[int, ...]:
    """(windowStartMs, windowEndMs, then per CHAIN_SUMS the cumulative counter and the window figure)."""
    out = [int(str(report_json["windowStartMs"])), int(str(report_json["windowEndMs"]))]
    for cum, win in CHAIN_SUMS:
        out += [int(str(report_json[cum])), int(str(report_json[win]))]
    return tuple(out)


@dataclass(frozen=True)
class Stored:
    """What storing one report came to: ``outcome`` is "stored", "duplicate", or the refusal's code
    ("seq_conflict", "seq_gap", "chain_mismatch", "figures_mismatch") with ``message``."""

    outcome: str
    message: str = ""


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class QueueHead:
    """A lease with accepted reports: its latest seq, when its oldest was accepted, its highest cumulative
    billable GPU-ms."""

    lease_id: int
    seq: int
    oldest_ms: int
    cum_billable: int


class ReportRepo:
    """Reports and their samples; ``archive``: where retention moved the samples of old settled reports
    (reads fall back to it)."""

    def __init__(self, db: Database, archive: SampleArchive | None = None) -> None:
        self._db = db
        self.archive_files = archive

    def _samples(self, s: Session, r: Report) -> list[Sample] | None:
        """A report's samples from the live store, else from its archive segment; None when it has none."""
        ss = s.get(SampleSet, r.samples_root)
        if ss is not None:
            return decode_samples(ss.data, ss.codec)
        if r.archive is not None and self.archive_files is not None:
            return self.archive_files.samples(r.archive, int(r.seq))
        return None

    def _whole(self, s: Session, rows: Sequence[Report]) -> list[Report]:
        """Rows with their body and signature: an archived report's live row keeps neither (its segment
        does), except the lease's latest, which the next report's chain check reads."""
        out = []
        for r in rows:
            if r.archive is not None and not r.body and self.archive_files is not None:
                entry = self.archive_files.segment(r.archive)[int(r.seq)]
                s.expunge(r)
                r.body = json.dumps(entry["report"], separators=(",", ":"))
                r.signature = str(entry["signature"])
            out.append(r)
        return out

    # --- intake ------------------------------------------------------------------------------------------

    def store_batch(self, items: Sequence[NewReport]) -> list[Stored]:
        """Store reports in ONE transaction (group commit: one fsync for many), each in its own savepoint,
        in order: a report refused by the hash chain does not undo the others. Raises when the commit
        itself fails (then nothing of the batch is stored)."""
        out: list[Stored] = []
        with self._db.write_lock(), self._db.engine.begin() as conn:
            if not self._db.is_sqlite:
                # several bridges store reports at once: each lease's chain is extended by one of them at a
                # time, and the locks are taken in one order (lease id), so two batches never deadlock
                for lease_id in sorted({item.lease_id for item in items}):
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(f"intake:{lease_id}")})
            for item in items:
                try:
                    with conn.begin_nested():
                        out.append(_store_one(conn, item))
                except _Refused as e:
                    out.append(Stored(e.code, e.message))
            faults.reach("intake.commit")
        return out

    # --- reads -------------------------------------------------------------------------------------------

    def page(
        self, lease_id: int, from_seq: int, limit: int, *, samples: bool
    ) -> tuple[list[Report], dict[str, list[Sample]], int | None]:
        """Up to ``limit`` reports of a lease from ``from_seq`` in seq order, their samples by root (when
        ``samples``; archived ones read from their segment), and the seq the next page starts at (None: the
        last page)."""
        with self._db.session() as s:
            rows = self._whole(
                s,
                s.scalars(
                    select(Report)
                    .where(Report.lease_id == lease_id, Report.seq >= from_seq)
                    .order_by(Report.seq)
                    .limit(limit + 1)
                ).all(),
            )
            roots = {r.samples_root for r in rows[:limit]} if samples else set()
            sets = {
                ss.root: decode_samples(ss.data, ss.codec)
                for ss in s.scalars(select(SampleSet).where(SampleSet.root.in_(roots)))
            } if roots else {}  # fmt: skip
            for r in rows[:limit] if samples else ():
                if r.samples_root not in sets and r.archive is not None and self.archive_files is not None:
                    sets[r.samples_root] = self.archive_files.samples(r.archive, int(r.seq))
        return rows[:limit], sets, rows[limit].seq if len(rows) > limit else None

    def get(self, lease_id: int, seq: int) -> tuple[Report, list[Sample] | None] | None:
        """A report and its samples (None when it has none)."""
        with self._db.session() as s:
            r = s.scalars(select(Report).where(Report.lease_id == lease_id, Report.seq == seq)).first()
            if r is None:
                return None
            return r, self._samples(s, r)

    def latest_samples(self, lease_id: int) -> list[Sample] | None:
        """Samples of the lease's latest report that was not rejected."""
        with self._db.session() as s:
            r = s.scalars(
                select(Report)
                .where(Report.lease_id == lease_id, Report.status != "rejected")
                .order_by(Report.seq.desc())
                .limit(1)
            ).first()
            return self._samples(s, r) if r is not None else None

    def latest_body(self, lease_id: int) -> str | None:
        """The JSON of the lease's latest report that was not rejected."""
        with self._db.session() as s:
            body = s.scalar(
                select(Report.body)
                .where(Report.lease_id == lease_id, Report.status != "rejected")
                .order_by(Report.seq.desc())
                .limit(1)
            )
        return None if body is None else str(body)

    def latest_bodies(self, lease_ids: Sequence[int]) -> dict[int, str]:
        """The JSON of each lease's latest report that was not rejected (leases without one are left out)."""
        if not lease_ids:
            return {}
        with self._db.session() as s:
            top = (
                select(Report.lease_id, func.max(Report.seq).label("seq"))
                .where(Report.lease_id.in_(list(lease_ids)), Report.status != "rejected")
                .group_by(Report.lease_id)
                .subquery()
            )
            rows = s.execute(
                select(Report.lease_id, Report.body).join(top, (Report.lease_id == top.c.lease_id) & (Report.seq == top.c.seq))
            )
            return {int(lid): str(body) for lid, body in rows}

    def window_rows(self, lease_id: int) -> list[tuple[int, str, str, str | None, int, str]]:
        """(seq, struct hash, status, reason, cumulative billable GPU-ms, body) of every report of a lease, by seq:
        the columns the lease page reads, without loading whole rows."""
        with self._db.session() as s:
            rows = s.execute(
                select(Report.seq, Report.struct_hash, Report.status, Report.reason, Report.cum_billable, Report.body)
                .where(Report.lease_id == lease_id)
                .order_by(Report.seq)
            )
            return [(int(a), str(b), str(c), d, int(e), str(f)) for a, b, c, d, e, f in rows]

    def with_reason(self, lease_ids: Sequence[int], limit: int = 100) -> list[Report]:
        """Reports of these leases that carry a reason (rejected at settlement, say), newest first."""
        if not lease_ids:
            return []
        with self._db.session() as s:
            q = select(Report).where(Report.lease_id.in_(list(lease_ids)), Report.reason.is_not(None))
            return list(s.scalars(q.order_by(Report.accepted_ms.desc()).limit(limit)))

    def roots_by_hash(self, struct_hashes: Iterable[str]) -> dict[str, str]:
        """samplesRoot of stored reports by their struct hash."""
        hashes = set(struct_hashes)
        if not hashes:
            return {}
        with self._db.session() as s:
            rows = s.execute(select(Report.struct_hash, Report.samples_root).where(Report.struct_hash.in_(hashes)))
            return {str(h): str(r) for h, r in rows}

    def counts(self, lease_ids: Sequence[int]) -> dict[int, int]:
        if not lease_ids:
            return {}
        with self._db.session() as s:
            rows = s.execute(
                select(Report.lease_id, func.count()).where(Report.lease_id.in_(lease_ids)).group_by(Report.lease_id)
            )
            return {int(lid): int(n) for lid, n in rows}

    def archive(self, lease_id: int | None = None) -> Iterator[tuple[Report, list[Sample] | None, int | None]]:
        """Every stored report with its samples and its lease's node, lease by lease, in seq order (streamed:
        one session for the whole walk)."""
        with self._db.session() as s:
            nodes = {r.lease_id: r.node_id for r in s.scalars(select(LeaseRow))}
            q = select(Report).order_by(Report.lease_id, Report.seq)
            if lease_id is not None:
                q = q.where(Report.lease_id == lease_id)
            for r in s.scalars(q).yield_per(200):
                yield self._whole(s, [r])[0], self._samples(s, r), nodes.get(r.lease_id)

    # --- retention -----------------------------------------------------------------------------------------

    def archivable(self, settled_before_s: int, limit: int = 100) -> list[tuple[int, int]]:
        """(lease, seq) pairs: up to that seq the lease's reports are settled or superseded, and a checkpoint
        at or above it was settled on chain (an indexed ``CheckpointSettled``) at or before
        ``settled_before_s``, and their samples are still in the live store; at most ``limit`` leases. Leases
        with an open dispute are left out."""
        with self._db.session() as s:
            lease_ids = list(
                s.scalars(
                    select(Report.lease_id)
                    .where(Report.archive.is_(None), Report.status.in_(("settled", "superseded")))
                    .distinct()
                    .limit(limit * 4)
                )
            )
            out: list[tuple[int, int]] = []
            for lease_id in lease_ids:
                if len(out) >= limit:
                    break
                disputes = dict(
                    s.execute(
                        select(ChainEvent.name, func.count())
                        .where(ChainEvent.lease_id == lease_id, ChainEvent.name.in_(("DisputeOpened", "DisputeResolved")))
                        .group_by(ChainEvent.name)
                    ).all()
                )
                if disputes.get("DisputeOpened", 0) > disputes.get("DisputeResolved", 0):
                    continue
                settled = [
                    int(json.loads(a)["seq"])
                    for a in s.scalars(
                        select(ChainEvent.args).where(
                            ChainEvent.lease_id == lease_id,
                            ChainEvent.name == "CheckpointSettled",
                            ChainEvent.block_ts <= settled_before_s,
                        )
                    )
                ]
                if not settled:
                    continue
                # nothing open below it: an accepted or queued report must stay live until settled
                open_below = s.scalar(
                    select(func.min(Report.seq)).where(
                        Report.lease_id == lease_id, Report.status.in_(("accepted", "queued", "rejected"))
                    )
                )
                upto = max(settled) if open_below is None else min(max(settled), int(open_below) - 1)
                if upto >= 1:
                    out.append((lease_id, upto))
            return out

    def unarchived(
        self, lease_id: int, upto_seq: int, limit: int = 2000
    ) -> list[tuple[Report, list[Sample] | None, int | None]]:
        """The lease's first ``limit`` settled or superseded reports up to ``upto_seq`` whose samples are in the
        live store, in seq order, with their samples and the lease's node."""
        with self._db.session() as s:
            node_id = s.scalar(select(LeaseRow.node_id).where(LeaseRow.lease_id == lease_id))
            rows = s.scalars(
                select(Report)
                .where(
                    Report.lease_id == lease_id,
                    Report.seq <= upto_seq,
                    Report.archive.is_(None),
                    Report.status.in_(("settled", "superseded")),
                )
                .order_by(Report.seq)
                .limit(limit)
            ).all()
            return [(r, self._samples(s, r), node_id) for r in self._whole(s, rows)]

    def mark_archived(self, report_ids: Sequence[int], segment: str) -> int:
        """Point the reports at their segment, leave their body and signature to it (but for each lease's
        latest report), and drop the sample sets no live report still needs; how many sample sets were
        dropped."""
        ids = list(report_ids)
        with self._db.write() as s:
            roots = set(s.scalars(select(Report.samples_root).where(Report.id.in_(ids))))
            s.execute(
                update(Report).where(Report.id.in_(ids)).values(archive=segment).execution_options(synchronize_session=False)
            )
            leases = set(s.scalars(select(Report.lease_id).where(Report.id.in_(ids))))
            tops = select(Report.lease_id, func.max(Report.seq).label("top")).where(Report.lease_id.in_(leases))
            top = tops.group_by(Report.lease_id).subquery()
            heads = set(s.scalars(select(Report.id).join(top, (Report.lease_id == top.c.lease_id) & (Report.seq == top.c.top))))
            # rewritten, not updated in place: a row shrunk where it stands leaves its page as large as before
            # (SQLite never moves other rows into the gap), while deleted rows free whole pages of old rows,
            # which new reports then reuse; the compact copy goes at the end
            slim = [i for i in ids if i not in heads]
            cols = [c for c in Report.__table__.columns if c.name != "id"]
            rows = s.execute(select(*cols).where(Report.id.in_(slim)).order_by(Report.id)).mappings().all()
            s.execute(delete(Report).where(Report.id.in_(slim)).execution_options(synchronize_session=False))
            if rows:
                s.execute(insert(Report), [{**r, "body": "", "signature": ""} for r in rows])
            still = set(
                s.scalars(select(Report.samples_root).where(Report.samples_root.in_(roots), Report.archive.is_(None)))
            )
            gone = roots - still
            if gone:
                s.execute(delete(SampleSet).where(SampleSet.root.in_(gone)))
            return len(gone)

    # --- the settlement queue -------------------------------------------------------------------------------

    def queue_heads(self, lease_id: int | None = None) -> list[QueueHead]:
        """Leases with accepted reports, the longest waiting first."""
        with self._db.session() as s:
            q = (
                select(Report.lease_id, func.max(Report.seq), func.min(Report.accepted_ms), func.max(Report.cum_billable))
                .where(Report.status == "accepted")
                .group_by(Report.lease_id)
                .order_by(func.min(Report.accepted_ms))
            )
            if lease_id is not None:
                q = q.where(Report.lease_id == lease_id)
            return [QueueHead(int(a), int(b), int(c), int(d)) for a, b, c, d in s.execute(q).all()]

    def settled_cum_billable(self, lease_id: int) -> int:
        with self._db.session() as s:
            return int(
                s.scalar(
                    select(func.max(Report.cum_billable)).where(Report.lease_id == lease_id, Report.status == "settled")
                )
                or 0
            )

    def settled_heads(self) -> dict[int, int]:
        """Per lease still open or active (as indexed; or not indexed), the highest seq the store takes for paid
        (settled or superseded). Ended leases take no more checkpoints: they are left out, so the walk stays
        as small as the live leases."""
        with self._db.session() as s:
            rows = s.execute(
                select(Report.lease_id, func.max(Report.seq))
                .outerjoin(LeaseRow, LeaseRow.lease_id == Report.lease_id)
                .where(Report.status.in_(("settled", "superseded")),
                       (LeaseRow.status.is_(None)) | LeaseRow.status.in_(("Open", "Active")))
                .group_by(Report.lease_id)
            )  # fmt: skip
            return {int(lid): int(seq) for lid, seq in rows}

    def reopen_above(self, lease_id: int, chain_seq: int) -> int:
        """The chain's checkpoint of the lease is ``chain_seq``: its reports above it that the store took for
        settled or superseded go back to the queue; how many."""
        with self._db.write() as s:
            res = s.execute(
                update(Report)
                .where(Report.lease_id == lease_id, Report.seq > chain_seq,
                       Report.status.in_(("settled", "superseded")))
                .values(status="accepted", settle_tx_id=None, reason=None)
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            return int(getattr(res, "rowcount", 0) or 0)

    def by_seq(self, lease_id: int, seq: int) -> Report:
        with self._db.session() as s:
            return s.scalars(select(Report).where(Report.lease_id == lease_id, Report.seq == seq)).one()

    def of_tx(self, tx_id: int) -> list[Report]:
        with self._db.session() as s:
            return list(s.scalars(select(Report).where(Report.settle_tx_id == tx_id)))

    def pending_leases(self) -> int:
        """Leases with a report not yet settled."""
        with self._db.session() as s:
            return int(
                s.scalar(select(func.count(func.distinct(Report.lease_id))).where(Report.status.in_(OPEN_STATUSES)))
                or 0
            )

    def set_final(self, report_id: int, status: str, reason: str | None) -> None:
        """A report's final status (settled, superseded, rejected); a settled one supersedes the lease's
        unsettled reports below it."""
        with self._db.write() as s:
            row = s.get(Report, report_id)
            if row is None:
                return
            row.status, row.reason = status, reason
            s.flush()
            if status == "settled":
                supersede(s, [row.lease_id])


def supersede(s: Session, lease_ids: Sequence[int]) -> None:
    """Unsettled reports below a lease's latest settled one were paid for by it (cumulative counters)."""
    if not lease_ids:
        return
    settled = aliased(Report)
    head = (
        select(func.max(settled.seq))
        .where(settled.lease_id == Report.lease_id, settled.status == "settled")
        .scalar_subquery()
    )
    s.execute(
        update(Report)
        .where(Report.lease_id.in_(lease_ids), Report.status.in_(OPEN_STATUSES), Report.seq < head)
        .values(status="superseded")
        .execution_options(synchronize_session=False)
    )


def _store_one(conn: Connection, item: NewReport) -> Stored:
    existing = conn.execute(
        select(Report.struct_hash).where(Report.lease_id == item.lease_id, Report.seq == item.seq)
    ).first()
    if existing is not None:
        if existing[0] == item.struct_hash:
            return Stored("duplicate")
        raise _Refused("seq_conflict", f"seq {item.seq} of lease {item.lease_id} is stored with another hash")
    head = conn.execute(
        select(Report.seq, Report.struct_hash, Report.body, Report.energy_carry)
        .where(Report.lease_id == item.lease_id)
        .order_by(Report.seq.desc())
        .limit(1)
    ).first()
    last_seq, last_hash = (int(head[0]), str(head[1])) if head else (0, "0x" + ZERO_HASH.hex())
    if item.seq != last_seq + 1:
        raise _Refused("seq_gap", f"seq {item.seq} after {last_seq}: send the missing reports first")
    if item.prev_hash != last_hash:
        raise _Refused("chain_mismatch", f"prevReportHash is not the hash of report {last_seq}")
    if item.chain_figures is not None:
        _check_sums(item.chain_figures, chain_figures(json.loads(head[2])) if head else None, last_seq)
    carry = _check_energy(item, head[3] if head else "{}", last_seq)
    if item.sample_count and conn.execute(select(SampleSet.root).where(SampleSet.root == item.samples_root)).first() is None:
        conn.execute(dialect_insert(conn, SampleSet).values(root=item.samples_root, count=item.sample_count,
                                                             data=item.packed_samples, codec=item.samples_codec)
                     .on_conflict_do_nothing())
    conn.execute(
        insert(Report).values(
            lease_id=item.lease_id,
            seq=item.seq,
            struct_hash=item.struct_hash,
            signer=item.signer,
            signature=item.signature,
            body=item.body,
            samples_root=item.samples_root,
            window_end_ms=item.window_end_ms,
            cum_billable=item.cum_billable,
            status="accepted",
            accepted_ms=now_ms(),
            energy_carry=carry,
        )
    )
    return Stored("stored")


def _check_energy(item: NewReport, before: str | None, last_seq: int) -> str | None:
    """``energyMj`` is what the samples give from the previous report's energy counters (rule 8 of
    ``ledger.protocol.metering``), when both are known; the counters after this report (JSON), or None when
    unknown (a chain begun before revision 0006)."""
    if before is None:
        return None
    baseline = {int(g): int(c) for g, c in json.loads(before).items()}
    if item.energy is None:
        return before
    if item.chain_figures is not None:
        want, got = item.energy.energy_mj(baseline), item.chain_figures[_ENERGY_AT]
        if got != want:
            raise _Refused("figures_mismatch", f"energyMj is {got}; its samples give {want} from report {last_seq}'s "
                           "energy counters")  # fmt: skip
    return json.dumps({**baseline, **item.energy.last}, separators=(",", ":"), sort_keys=True)


def _check_sums(new: tuple[int, ...], prev: tuple[int, ...] | None, last_seq: int) -> None:
    """The report continues its chain: its window starts where report ``last_seq`` ended, and each cumulative
    counter is the previous one plus this window's figure (the first report's equal its window's)."""
    if prev is not None and new[0] != prev[1]:
        raise _Refused("figures_mismatch", f"windowStartMs {new[0]} is not report {last_seq}'s windowEndMs {prev[1]}")
    for k, (cum, win) in enumerate(CHAIN_SUMS):
        before = 0 if prev is None else prev[2 + 2 * k]
        got, window = new[2 + 2 * k], new[3 + 2 * k]
        if got != before + window:
            raise _Refused("figures_mismatch", f"{cum} is {got}; the previous total {before} plus {win} {window} is "
                           f"{before + window}")  # fmt: skip


class SettlementRepo:
    """The relayer's signed settlement transactions (stored before they are broadcast) and the reports each
    one carries."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record_signed(self, tx_hash: str, sender: str, nonce: int, raw: bytes, report_ids: Sequence[int]) -> int:
        """Store a signed transaction and mark its reports ``queued`` (one transaction); its id."""
        with self._db.write() as s:
            row = SettlementTx(tx_hash=tx_hash, sender=sender, nonce=nonce, raw=raw, status="signed",
                               created_ms=now_ms(), updated_ms=now_ms())
            s.add(row)
            s.flush()
            s.execute(update(Report).where(Report.id.in_(list(report_ids))).values(status="queued", settle_tx_id=row.id))
            return int(row.id)

    def mark_sent(self, tx_id: int) -> None:
        with self._db.write() as s:
            s.execute(update(SettlementTx).where(SettlementTx.id == tx_id).values(status="sent", updated_ms=now_ms()))

    def unresolved(self) -> list[SettlementTx]:
        """Transactions signed or sent whose outcome is not recorded yet."""
        with self._db.session() as s:
            return list(s.scalars(select(SettlementTx).where(SettlementTx.status.in_(("signed", "sent")))))

    def requeue(self, tx_id: int, status: str, error: str) -> int:
        """The transaction failed or was dropped: record why, put its queued reports back; how many."""
        with self._db.write() as s:
            s.execute(
                update(SettlementTx).where(SettlementTx.id == tx_id).values(status=status, error=error, updated_ms=now_ms())
            )
            res = s.execute(
                update(Report)
                .where(Report.settle_tx_id == tx_id, Report.status == "queued")
                .values(status="accepted", settle_tx_id=None)
            )
            return int(getattr(res, "rowcount", 0) or 0)

    def resolve(
        self,
        tx_id: int,
        block_number: int,
        *,
        settled: Sequence[int],
        requeued: Sequence[int],
        finals: dict[int, tuple[str, str | None]],
    ) -> None:
        """Record a mined transaction's outcome in one transaction: ``settled`` reports, reports back in the
        queue, other reports' final (status, reason); unsettled reports below a lease's newly settled one
        become ``superseded``."""
        with self._db.write() as s:
            touched: set[int] = set()
            if settled:
                s.execute(
                    update(Report)
                    .where(Report.id.in_(list(settled)))
                    .values(status="settled", reason=None)
                    .execution_options(synchronize_session=False)
                )
                touched.update(s.scalars(select(Report.lease_id).where(Report.id.in_(list(settled)))))
            if requeued:
                s.execute(
                    update(Report)
                    .where(Report.id.in_(list(requeued)))
                    .values(status="accepted", settle_tx_id=None, reason=None)
                    .execution_options(synchronize_session=False)
                )
            for report_id, (status, reason) in finals.items():
                row = s.get(Report, report_id)
                if row is None:
                    continue
                row.status, row.reason = status, reason
                if status == "settled":
                    touched.add(row.lease_id)
            s.flush()
            supersede(s, sorted(touched))
            s.execute(
                update(SettlementTx)
                .where(SettlementTx.id == tx_id)
                .values(status="mined", block_number=block_number, updated_ms=now_ms())
            )
