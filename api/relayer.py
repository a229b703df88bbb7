"""The settlement relayer: turns accepted reports into on-chain checkpoints, in batches, exactly once.

A lease's reports carry cumulative counters, so settling its latest accepted report pays for every window
since the last checkpoint. A lease is due when its oldest unsettled report waited ``settle_every_s``, when
its unsettled value reaches ``settle_threshold_wei``, at close (:meth:`settle_lease_now`) or on
:meth:`flush`. Due leases are packed into one ``settleBatch`` paid by the relayer key, one entry per lease
(its latest accepted report). Each entry carries the lease's state (terms, checkpoint, last report hash)
that the escrow checks against its one-slot commitment: the states of a batch are read in one call
(``LedgerClient.lease_states``, verified against the chain) and the entries packed by
``ledger.settlement.encode_entry``. An entry skipped as ``LeaseEscrowStaleState`` (the lease moved between
that read and the block) goes back to the queue and is retried with the fresh state.

Durability: a batch transaction is signed first and stored (hash, nonce, raw bytes, the reports it
carries) before it is broadcast. After a crash, :meth:`recover` looks up each unresolved transaction's
receipt and otherwise re-broadcasts the very same bytes: the same nonce cannot be mined twice. A
transaction that failed or was dropped puts its reports back in the queue. The contract refuses a seq at or
below the last settled one (``settleBatch`` skips it with ``CheckpointSkipped``), and each outcome is
resolved against the lease's state on chain, so a report is never settled twice and never lost.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import aliased

from ledger.errors import error_name
from ledger.protocol import MeteringReport, ProtocolError
from ledger.settlement import LeaseState, encode_entry

from . import chainview
from .errors import ApiError
from .gateway import TxOutcome
from .keys import sign_transaction
from .store import LeaseRow, Report, SettlementTx, now_ms

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("api.relayer")

UNRESOLVED = ("signed", "sent")
STALE_STATE = "LeaseEscrowStaleState"


# Upper bound of settleBatch gas: a checkpoint costs ~15k in a batch (bench/gas.py), but a report that
# exhausts a lease takes the full path and ends the lease (~190k); the limit covers the worst case of every
# report ending its lease, so the simulation and the transaction never run out of gas; it is capped at 90%
# of the block gas limit (a batch that would need more fails its simulation and is settled one by one).
# Unused gas is not charged.
SETTLE_BATCH_BASE_GAS = 100_000
SETTLE_BATCH_GAS_PER_REPORT = 250_000


def settle_batch_gas_limit(n_reports: int) -> int:
    return SETTLE_BATCH_BASE_GAS + SETTLE_BATCH_GAS_PER_REPORT * n_reports


class RelayerCrash(RuntimeError):
    """Raised at a stage named by ``Relayer.crash_at``: tests use it to stop the relayer mid-queue."""


STALE_RETRIES = 3  # rounds a flush retries entries skipped as LeaseEscrowStaleState without other progress


@dataclass(frozen=True)
class BatchResult:
    tx_hash: str | None
    settled: int  # checkpoints settled by this batch's transaction
    skipped: int  # entries the contract skipped
    done: int = 0  # reports of the batch that reached a final status (settled, superseded, rejected)
    requeued: int = 0  # reports back in the queue (stale state, or no state readable now)

    def __add__(self, other: "BatchResult") -> "BatchResult":
        return BatchResult(
            other.tx_hash or self.tx_hash,
            self.settled + other.settled,
            self.skipped + other.skipped,
            self.done + other.done,
            self.requeued + other.requeued,
        )


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
            stale_rounds = 0
            while True:
                due = self._due_reports(force=force)
                if not due:
                    break
                res = self._settle(due)
                settled += res.settled
                if not force:
                    break
                if res.done == 0:  # nothing moved: stop, unless stale entries wait for a retry
                    stale_rounds += 1
                    if res.requeued == 0 or stale_rounds > STALE_RETRIES:
                        break
                else:
                    stale_rounds = 0
            return settled

    def flush(self) -> int:
        """Settle every lease's latest accepted report now (tests, the demo's accelerated clock)."""
        return self.tick(force=True)

    def settle_lease_now(self, lease_id: int) -> int:
        """Settle this lease's latest accepted report now (before a close); a stale entry is retried."""
        with self.lock:
            self.recover()
            settled = 0
            for _ in range(1 + STALE_RETRIES):
                due = self._due_reports(force=True, lease_id=lease_id)
                if not due:
                    break
                res = self._settle(due)
                settled += res.settled
                if res.requeued == 0:
                    break
            return settled

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
        """One ``settleBatch`` of ``reports`` (at most one per lease), stored signed before it is sent."""
        gw = self.svc.gateway
        states = chainview.lease_states(gw, [r.lease_id for r in reports])  # one call for the batch
        entries: list[bytes] = []
        carried: list[Report] = []
        early = BatchResult(None, 0, 0)
        for r in reports:
            if r.lease_id not in states:  # the events do not explain the lease's commitment now: later
                early += BatchResult(None, 0, 0, requeued=1)
                continue
            st = states[r.lease_id]
            if st is None or st.checkpoint.seq >= r.seq:  # nothing to send: the chain already decides
                early += self._finish(r, st, "unknown lease" if st is None else "not settled")
                continue
            try:
                rep = MeteringReport.from_json(json.loads(r.body))
                entries.append(encode_entry(rep, bytes.fromhex(r.signature[2:]), st))
            except (ProtocolError, ValueError) as e:  # e.g. a counter beyond the entry's 48-bit field
                early += self._finish(r, st, f"cannot be settled: {e}")
                continue
            carried.append(r)
        if not carried:
            return early
        fn = self.svc.client.escrow.functions.settleBatch(b"".join(entries))
        with gw.lock:
            try:
                block_limit = int(gw.w3.eth.get_block("latest")["gasLimit"])
                limit = min(settle_batch_gas_limit(len(carried)), block_limit * 9 // 10)
                tx = gw.build(fn, self.account.address, gas_limit=limit)
            except ApiError as e:
                log.warning("settleBatch would fail (%s): settling one by one", e.message)
                if len(carried) == 1:
                    return early + self._finish(carried[0], states[carried[0].lease_id], e.message)
                total = early
                for r in carried:
                    total += self._settle([r])
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
                    .where(Report.id.in_([r.id for r in carried]))
                    .values(status="queued", settle_tx_id=row.id)
                )
                tx_id = row.id
            self._stage("signed")
            self._broadcast(tx_id, raw)
            self._stage("sent")
        outcome = gw.wait(tx_hash)  # polls with the gateway lock taken per poll only
        return early + self._resolve(tx_id, outcome)

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
            n = self._requeue(tx_id, "failed", "transaction reverted")
            self.svc.metrics.settlement_txs.labels("failed").inc()
            return BatchResult(outcome.tx_hash, 0, 0, requeued=n)
        # one synthetic CheckpointSettled per record of the transaction's CheckpointsSettled
        settled_now: dict[tuple[int, int], str] = {}
        skipped: dict[tuple[int, int], str] = {}
        for e in outcome.events:
            if e.name == "CheckpointSettled":
                settled_now[(int(e.args["leaseId"]), int(e.args["seq"]))] = "0x" + bytes(e.args["reportHash"]).hex()
            elif e.name == "CheckpointSkipped":
                reason = e.args.get("reason", b"")
                skipped[(int(e.args["leaseId"]), int(e.args["seq"]))] = self._reason(reason)
        with self.svc.store.session() as s:
            carried = list(s.scalars(select(Report).where(Report.settle_tx_id == tx_id)))
        done_ids: list[int] = []
        stale_ids: list[int] = []
        others: list[Report] = []
        for r in carried:
            key = (r.lease_id, r.seq)
            if settled_now.get(key) == r.struct_hash:
                done_ids.append(r.id)
            elif skipped.get(key) == STALE_STATE:  # our view of the lease was behind: retry with a fresh one
                stale_ids.append(r.id)
            else:
                others.append(r)
        # what the batch did not settle: the lease's state on chain says what it is (one read)
        states = chainview.lease_states(self.svc.gateway, sorted({r.lease_id for r in others})) if others else {}
        touched: set[int] = set()
        final = len(done_ids)
        with self.svc.store.write() as s:
            if done_ids:  # one statement for the batch, then the reports each one paid for
                s.execute(
                    update(Report)
                    .where(Report.id.in_(done_ids))
                    .values(status="settled", reason=None)
                    .execution_options(synchronize_session=False)
                )
                touched.update(r.lease_id for r in carried if r.id in set(done_ids))
            if stale_ids:
                s.execute(
                    update(Report)
                    .where(Report.id.in_(stale_ids))
                    .values(status="accepted", settle_tx_id=None, reason=None)
                    .execution_options(synchronize_session=False)
                )
            for r in others:
                row = s.get(Report, r.id)
                if row is None:
                    continue
                if r.lease_id not in states:  # no readable state now: back to the queue
                    row.status, row.settle_tx_id = "accepted", None
                    stale_ids.append(r.id)
                    continue
                final += 1
                if self._by_state(row, states[r.lease_id], skipped.get((r.lease_id, r.seq), "not settled")):
                    touched.add(r.lease_id)
            s.flush()
            self._supersede(s, sorted(touched))
            s.execute(
                update(SettlementTx)
                .where(SettlementTx.id == tx_id)
                .values(status="mined", block_number=outcome.block_number, updated_ms=now_ms())
            )
        if stale_ids:
            log.info("settlement tx %s: %d entries on a stale lease state, queued again", outcome.tx_hash, len(stale_ids))
        self.svc.metrics.settlement_txs.labels("mined").inc()
        self.svc.metrics.checkpoints_settled.inc(len(settled_now))
        if not self.svc.settings.background:  # no indexer loop: index the settlement now
            self.svc.after_write()
        return BatchResult(outcome.tx_hash, len(settled_now), len(skipped), done=final, requeued=len(stale_ids))

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

    def _by_state(self, r: Report, st: LeaseState | None, reason: str) -> bool:
        """Give a report the batch did not settle its final status from the lease's state on chain;
        True when it turns out settled (by an earlier transaction we had lost track of)."""
        if st is not None and st.checkpoint.seq == r.seq and "0x" + bytes(st.last_hash).hex() == r.struct_hash:
            r.status, r.reason = "settled", None
            return True
        if st is not None and st.checkpoint.seq > r.seq:
            r.status = "superseded"  # a later checkpoint paid for its window
            return False
        if st is not None and st.checkpoint.seq == r.seq:
            reason = f"another report of seq {r.seq} was settled"
        r.status = "rejected"
        r.reason = reason
        self.svc.metrics.reports_rejected.labels("settlement").inc()
        return False

    def _finish(self, r: Report, st: LeaseState | None, reason: str) -> BatchResult:
        """Final status of a report that is not (or no longer) sent, from the lease's state ``st``."""
        with self.svc.store.write() as s:
            row = s.get(Report, r.id)
            if row is None:
                return BatchResult(None, 0, 0)
            if self._by_state(row, st, reason):
                s.flush()
                self._supersede(s, [row.lease_id])
        return BatchResult(None, 0, 0, done=1)

    def _requeue(self, tx_id: int, status: str, error: str) -> int:
        with self.svc.store.write() as s:
            s.execute(
                update(SettlementTx).where(SettlementTx.id == tx_id).values(status=status, error=error, updated_ms=now_ms())
            )
            res = s.execute(
                update(Report)
                .where(Report.settle_tx_id == tx_id, Report.status == "queued")
                .values(status="accepted", settle_tx_id=None)
            )
            return int(res.rowcount or 0)

    def _reason(self, selector: Any) -> str:
        sel = bytes(selector) if isinstance(selector, (bytes, bytearray)) else b""
        return error_name(sel)

