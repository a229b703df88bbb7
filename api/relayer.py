"""The settlement relayer: turns accepted reports into on-chain checkpoints, in batches, exactly once.

A lease's reports carry cumulative counters, so settling its latest accepted report pays for every window
since the last checkpoint. A lease is due when its oldest unsettled report waited ``settle_every_s``, when
its unsettled value reaches ``settle_threshold_wei``, at close (:meth:`settle_lease_now`) or on
:meth:`flush`. Due leases are packed into one ``settleBatch`` paid by the relayer key.

Durability: a batch transaction is signed first and stored (hash, nonce, raw bytes, the reports it
carries) before it is broadcast. After a crash, :meth:`recover` looks up each unresolved transaction's
receipt and otherwise re-broadcasts the very same bytes: the same nonce cannot be mined twice. A
transaction that failed or was dropped puts its reports back in the queue. The contract refuses a seq at or
below the last settled one (``settleBatch`` skips it with ``CheckpointSkipped``), and each outcome is
resolved against the chain's checkpoint, so a report is never settled twice and never lost.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import aliased

from ledger.client import pack_report, split_signature
from ledger.errors import error_name
from ledger.protocol import MeteringReport

from . import chainview
from .errors import ApiError
from .gateway import TxOutcome
from .keys import sign_transaction
from .store import LeaseRow, Report, SettlementTx, now_ms

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("api.relayer")

UNRESOLVED = ("signed", "sent")


# Upper bound of settleBatch gas: bench/gas.py measures ~25k per checkpoint (~51k for the first checkpoint of
# a lease in a transaction, ~190k when a report exhausts a lease and ends it); the limit covers the worst case
# of every report ending its lease, so the simulation and the transaction never run out of gas; it is capped
# at 90% of the block gas limit (a batch that would need more fails its simulation and is settled one by one).
SETTLE_BATCH_BASE_GAS = 100_000
SETTLE_BATCH_GAS_PER_REPORT = 250_000


def settle_batch_gas_limit(n_reports: int) -> int:
    return SETTLE_BATCH_BASE_GAS + SETTLE_BATCH_GAS_PER_REPORT * n_reports


class RelayerCrash(RuntimeError):
    """Raised at a stage named by ``Relayer.crash_at``: tests use it to stop the relayer mid-queue."""


@dataclass(frozen=True)
class BatchResult:
    tx_hash: str | None
    settled: int
    skipped: int


class Relayer:
    def __init__(self, svc: "Services") -> None:
        self.svc = svc
        self.account = svc.relayer_account
        self.lock = threading.RLock()
        self.crash_at: str | None = None  # "signed" | "sent": simulate a crash after that stage

    # --- loop -----------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.svc.settings.relayer_tick_s):
            try:
                self.tick()
            except RelayerCrash:
                return
            except Exception:
                log.exception("relayer tick failed")

    def tick(self, force: bool = False) -> int:
        """Resolve outstanding transactions, then settle due leases; returns checkpoints settled."""
        with self.lock:
            self.recover()
            settled = 0
            while True:
                due = self._due_reports(force=force)
                if not due:
                    break
                res = self._settle(due)
                settled += res.settled
                if not force or res.tx_hash is None:
                    break
            return settled

    def flush(self) -> int:
        """Settle every lease's latest accepted report now (tests, the demo's accelerated clock)."""
        return self.tick(force=True)

    def settle_lease_now(self, lease_id: int) -> int:
        """Settle this lease's latest accepted report now (before a close)."""
        with self.lock:
            self.recover()
            due = self._due_reports(force=True, lease_id=lease_id)
            return self._settle(due).settled if due else 0

    def pending_count(self) -> int:
        with self.svc.store.session() as s:
            return int(
                s.scalar(select(func.count(func.distinct(Report.lease_id))).where(Report.status.in_(("accepted", "queued"))))
                or 0
            )

    # --- selection ------------------------------------------------------------------------------------

    def _due_reports(self, force: bool, lease_id: int | None = None) -> list[Report]:
        st = self.svc.settings
        now = now_ms()
        with self.svc.store.session() as s:
            q = (
                select(
                    Report.lease_id,
                    func.max(Report.seq),
                    func.min(Report.accepted_ms),
                    func.max(Report.cum_billable),
                )
                .where(Report.status == "accepted")
                .group_by(Report.lease_id)
                .order_by(func.min(Report.accepted_ms))
            )
            if lease_id is not None:
                q = q.where(Report.lease_id == lease_id)
            rows = s.execute(q).all()
            out: list[Report] = []
            for lid, seq, oldest, cum in rows:
                if len(out) >= st.relayer_batch_max:
                    break
                if not force and now - oldest < st.settle_every_s * 1000:
                    settled_cum = s.scalar(
                        select(func.max(Report.cum_billable)).where(Report.lease_id == lid, Report.status == "settled")
                    ) or 0
                    lease = s.get(LeaseRow, lid)
                    price = int(json.loads(lease.data).get("pricePerGpuSecond", 0)) if lease else 0
                    if price * (cum - settled_cum) // 1000 < st.settle_threshold_wei:
                        continue
                rep = s.scalars(select(Report).where(Report.lease_id == lid, Report.seq == seq)).one()
                out.append(rep)
            return out

    # --- one batch ------------------------------------------------------------------------------------

    def _settle(self, reports: list[Report]) -> BatchResult:
        gw = self.svc.gateway
        client = self.svc.client
        packed = []
        sigs = []
        for r in reports:
            rep = MeteringReport.from_json(json.loads(r.body))
            packed.append(pack_report(rep))
            sigs.append(split_signature(bytes.fromhex(r.signature[2:])))
        fn = client.escrow.functions.settleBatch(packed, sigs)
        with gw.lock:
            try:
                block_limit = int(gw.w3.eth.get_block("latest")["gasLimit"])
                limit = min(settle_batch_gas_limit(len(reports)), block_limit * 9 // 10)
                tx = gw.build(fn, self.account.address, gas_limit=limit)
            except ApiError as e:
                log.warning("settleBatch would fail (%s): settling one by one", e.message)
                if len(reports) == 1:
                    self._reject(reports[0], e.message)
                    return BatchResult(None, 0, 1)
                total = BatchResult(None, 0, 0)
                for r in reports:
                    res = self._settle([r])
                    total = BatchResult(res.tx_hash or total.tx_hash, total.settled + res.settled, total.skipped + res.skipped)
                return total
            raw, tx_hash = sign_transaction(self.account, tx)
            with self.svc.store.write() as s:
                row = SettlementTx(
                    tx_hash=tx_hash,
                    sender=self.account.address,
                    nonce=int(tx["nonce"]),
                    raw=raw,
                    status="signed",
                    created_ms=now_ms(),
                    updated_ms=now_ms(),
                )
                s.add(row)
                s.flush()
                s.execute(
                    update(Report)
                    .where(Report.id.in_([r.id for r in reports]))
                    .values(status="queued", settle_tx_id=row.id)
                )
                tx_id = row.id
            self._stage("signed")
            self._broadcast(tx_id, raw)
            self._stage("sent")
            outcome = gw.wait(tx_hash)
        return self._resolve(tx_id, outcome)

    def _stage(self, name: str) -> None:
        if self.crash_at == name:
            raise RelayerCrash(f"simulated crash after {name}")

    def _broadcast(self, tx_id: int, raw: bytes) -> None:
        try:
            self.svc.gateway.w3.eth.send_raw_transaction(raw)
        except Exception as e:  # "already known" / "nonce too low": the receipt lookup decides
            log.info("broadcast of settlement tx %s: %s", tx_id, e)
        with self.svc.store.write() as s:
            s.execute(update(SettlementTx).where(SettlementTx.id == tx_id).values(status="sent", updated_ms=now_ms()))

    # --- outcomes -------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Resolve every signed-or-sent transaction: by receipt, by re-broadcast, or as dropped."""
        with self.lock:
            with self.svc.store.session() as s:
                pending = list(s.scalars(select(SettlementTx).where(SettlementTx.status.in_(UNRESOLVED))))
            for tx in pending:
                receipt = self._receipt(tx.tx_hash)
                if receipt is None:
                    with self.svc.gateway.lock:
                        mined_nonce = int(self.svc.gateway.w3.eth.get_transaction_count(tx.sender, "latest"))
                    if mined_nonce > tx.nonce:
                        receipt = self._receipt(tx.tx_hash)
                        if receipt is None:  # the nonce went to another transaction: this one is dead
                            self._requeue(tx.id, "dropped", "nonce used by another transaction")
                            continue
                    else:  # never broadcast, or dropped from the pool: the very same bytes again
                        self._broadcast(tx.id, tx.raw)
                        receipt = self._receipt_wait(tx.tx_hash)
                if receipt is not None:
                    self._resolve(tx.id, self.svc.gateway.outcome(receipt))

    def _receipt(self, tx_hash: str) -> Any:
        with self.svc.gateway.lock:
            try:
                return self.svc.gateway.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except Exception:
                return None

    def _receipt_wait(self, tx_hash: str) -> Any:
        try:
            return self.svc.gateway.wait(tx_hash) and self._receipt(tx_hash)
        except ApiError:
            return None

    def _resolve(self, tx_id: int, outcome: TxOutcome) -> BatchResult:
        if outcome.status != 1:
            self._requeue(tx_id, "failed", "transaction reverted")
            self.svc.metrics.settlement_txs.labels("failed").inc()
            return BatchResult(outcome.tx_hash, 0, 0)
        settled_now: set[tuple[int, int]] = set()
        skipped: dict[tuple[int, int], str] = {}
        for e in outcome.events:
            if e.name == "CheckpointSettled":
                settled_now.add((int(e.args["leaseId"]), int(e.args["seq"])))
            elif e.name == "CheckpointSkipped":
                reason = e.args.get("reason", b"")
                skipped[(int(e.args["leaseId"]), int(e.args["seq"]))] = self._reason(reason)
        touched: set[int] = set()
        with self.svc.store.write() as s:
            carried = list(s.scalars(select(Report).where(Report.settle_tx_id == tx_id)))
            done_ids = []
            for r in carried:
                key = (r.lease_id, r.seq)
                touched.add(r.lease_id)
                if key in settled_now:
                    done_ids.append(r.id)
                else:
                    self._resolve_by_chain(s, r, skipped.get(key, "not settled"))
            if done_ids:  # one statement for the batch, then the reports each one paid for
                s.execute(
                    update(Report)
                    .where(Report.id.in_(done_ids))
                    .values(status="settled", reason=None)
                    .execution_options(synchronize_session=False)
                )
                s.flush()
                self._supersede(s, sorted(touched))
            s.execute(
                update(SettlementTx)
                .where(SettlementTx.id == tx_id)
                .values(status="mined", block_number=outcome.block_number, updated_ms=now_ms())
            )
        self.svc.metrics.settlement_txs.labels("mined").inc()
        self.svc.metrics.checkpoints_settled.inc(len(settled_now))
        if not self.svc.settings.background:  # no indexer loop: index the settlement now
            self.svc.after_write()
        return BatchResult(outcome.tx_hash, len(settled_now), len(skipped))

    def _mark_settled(self, s: Any, r: Report) -> None:
        r.status = "settled"
        r.reason = None
        self._supersede(s, [r.lease_id])

    @staticmethod
    def _supersede(s: Any, lease_ids: list[int]) -> None:
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
            .where(Report.lease_id.in_(lease_ids), Report.status.in_(("accepted", "queued")), Report.seq < head)
            .values(status="superseded")
            .execution_options(synchronize_session=False)
        )

    def _resolve_by_chain(self, s: Any, r: Report, reason: str) -> None:
        """A carried report that the batch did not settle: the chain's checkpoint says what it is."""
        cp = chainview.lease(self.svc.gateway, r.lease_id)["checkpoint"]
        if int(cp["lastSeq"]) == r.seq and str(cp["lastReportHash"]) == r.struct_hash:
            self._mark_settled(s, r)  # settled by an earlier transaction we had lost track of
        elif int(cp["lastSeq"]) > r.seq:
            r.status = "superseded"
        else:
            r.status = "rejected"
            r.reason = reason
            self.svc.metrics.reports_rejected.labels("settlement").inc()

    def _reject(self, r: Report, reason: str) -> None:
        with self.svc.store.write() as s:
            row = s.get(Report, r.id)
            if row is not None:
                self._resolve_by_chain(s, row, reason)

    def _requeue(self, tx_id: int, status: str, error: str) -> None:
        with self.svc.store.write() as s:
            s.execute(
                update(SettlementTx).where(SettlementTx.id == tx_id).values(status=status, error=error, updated_ms=now_ms())
            )
            s.execute(
                update(Report)
                .where(Report.settle_tx_id == tx_id, Report.status == "queued")
                .values(status="accepted", settle_tx_id=None)
            )

    def _reason(self, selector: Any) -> str:
        sel = bytes(selector) if isinstance(selector, (bytes, bytearray)) else b""
        return error_name(sel)

