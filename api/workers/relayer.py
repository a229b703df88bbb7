"""The settlement relayer: turns accepted reports into on-chain checkpoints, in batches, exactly once.

A lease's reports carry cumulative counters, so settling its latest accepted report pays for every window
since the last checkpoint. A lease is due when its oldest unsettled report waited ``settle_every_s``, when
its unsettled value reaches ``settle_threshold_wei``, at close (:meth:`settle_lease_now`) or on
:meth:`flush`. Due leases are packed into one ``settleBatch`` paid by the relayer key, one entry per lease
(its latest accepted report). Each entry carries the lease's state (terms, checkpoint, last report hash)
that the escrow checks against its one-slot commitment: the states of a batch are read in one call
(``ledger.chain.state.LeaseStates``, verified against the chain) and the entries packed by
``ledger.protocol.settlement.encode_entry``. An entry skipped as ``LeaseEscrowStaleState`` (the lease moved between
that read and the block) goes back to the queue and is retried with the fresh state.

Durability: a batch transaction is signed first and stored (hash, nonce, raw bytes, the reports it
carries) before it is broadcast. After a crash, :meth:`recover` looks up each unresolved transaction's
receipt and otherwise re-broadcasts the very same bytes: the same nonce cannot be mined twice. A nonce gap
below it (a chain that lost blocks, a pool that lost transactions) is filled with replacement transactions
(empty self-transfers) instead of being waited on; receipts are awaited a few seconds, never the full
timeout, and what is still unknown is looked at again next tick. A transaction that failed or was dropped
puts its reports back in the queue. The contract refuses a seq at or below the last settled one
(``settleBatch`` skips it with ``CheckpointSkipped``), and each outcome is resolved against the lease's state
on chain, so a report is never settled twice and never lost. A skip for a reason that passes
(``LeaseEscrowWindowInFuture``: the chain's clock is behind the report's window) puts the report back in the
queue (retried after a pause) instead of rejecting it.

Reconciliation (:meth:`reconcile`, at start-up, after the chain restarted and every ``RECONCILE_S``): the
store never claims what the chain does not hold. For every lease with settled reports, the checkpoint on
chain (its lastSeq) is read; reports the store took for settled (or superseded) above it go back to the
queue and are sent again.

Several bridges on one database: each pass (:meth:`tick`, :meth:`settle_lease_now`, :meth:`recover`) holds
the database's ``relayer`` lock (a PostgreSQL advisory lock; ``api.store.locks``), so two relayers never
sign the same batch; the relayer key's nonce is chosen and broadcast under the ``nonce:<address>`` lock,
shared with every other sender of that key (``TxSender.nonce_guard``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from ledger.chain.errors import ChainError, ChainUnavailable as ChainDown
from ledger.chain.reverts import ContractRevert, error_name
from ledger.chain.sender import TxOutcome, TxSender
from ledger.chain.signing import sign_transaction
from ledger.chain.suite import LedgerChain
from ledger.protocol import MeteringReport, ProtocolError
from ledger.protocol.economics import charge_for
from ledger.protocol.settlement import LeaseState, encode_entry

from .. import faults
from ..errors import from_chain
from ..metrics import Metrics
from ..chain_reads import ChainViews
from ..store import Store, now_ms
from ..store.models import Report

log = logging.getLogger("api.relayer")

STALE_STATE = "LeaseEscrowStaleState"
# skips that pass with time: the report goes back to the queue, retried after TEMPORARY_PAUSE_S
TEMPORARY_SKIPS = frozenset({"LeaseEscrowWindowInFuture"})
TEMPORARY_PAUSE_S = 5.0
RECOVER_WAIT_S = 3.0  # how long recovery waits for a re-broadcast transaction's receipt
RECONCILE_S = 60.0  # how often the settled reports are checked against the chain


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
class RelayerSettings:
    settle_every_s: float
    settle_threshold_wei: int
    tick_s: float
    batch_max: int


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


def final_status(seq: int, struct_hash: str, st: LeaseState | None, reason: str) -> tuple[str, str | None]:
    """The final (status, reason) of a report a batch did not settle, from its lease's state on chain:
    settled (by an earlier transaction we had lost track of), superseded (a later checkpoint paid for its
    window), or rejected with ``reason``."""
    if st is not None and st.checkpoint.seq == seq and "0x" + bytes(st.last_hash).hex() == struct_hash:
        return "settled", None
    if st is not None and st.checkpoint.seq > seq:
        return "superseded", None
    if st is not None and st.checkpoint.seq == seq:
        reason = f"another report of seq {seq} was settled"
    return "rejected", reason


class Relayer:
    """Settles accepted reports. Collaborators: the store, the chain, the relayer's key, metrics; ``on_settled``
    runs after a mined batch (the bridge indexes it at once when it runs no indexer loop)."""

    def __init__(
        self,
        store: Store,
        ledger: LedgerChain,
        account: LocalAccount,
        metrics: Metrics,
        settings: RelayerSettings,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.views = ChainViews(ledger)
        self.account = account
        self.metrics = metrics
        self.settings = settings
        self.on_settled = on_settled
        self.lock = threading.RLock()
        self.crash_at: str | None = None  # "signed" | "sent": simulate a crash after that stage
        self._paused: dict[int, float] = {}  # lease id -> monotonic time before which it is not sent again
        self._last_reconcile = 0.0

    @contextmanager
    def _pass(self, wait: bool = True) -> Iterator[bool]:
        """Hold the database's relayer lock (one relayer pass at a time on a database) and this process's;
        yields False when ``wait`` is False and another relayer holds it."""
        locks = self.store.locks
        with (locks.hold("relayer") if wait else locks.try_hold("relayer")) as got:
            if got is False:
                yield False
                return
            with self.lock, TxSender.untracked():  # settlements belong to no request's Idempotency-Key
                yield True

    # --- loop -----------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.tick_s):
            try:
                self.tick()
            except RelayerCrash:
                return
            except Exception:
                log.exception("relayer tick failed")

    def tick(self, force: bool = False) -> int:
        """Resolve outstanding transactions, then settle due leases; returns checkpoints settled. A tick of
        the background loop is skipped while another bridge's relayer runs a pass."""
        with self._pass(wait=force) as mine:
            if not mine:
                return 0
            self._recover()
            if time.monotonic() - self._last_reconcile > RECONCILE_S:
                self._reconcile()
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
        with self._pass():
            self._recover()
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

    def chain_restarted(self) -> None:
        """The supervised chain node died and was started again: it may have lost recent blocks, so the next
        pass reconciles the settled reports with it (and recovery fills any nonce gap)."""
        self.metrics.chain_restarts.inc()
        self._last_reconcile = 0.0

    def pending_count(self) -> int:
        return self.store.reports.pending_leases()

    # --- selection ------------------------------------------------------------------------------------

    def _due_reports(self, force: bool, lease_id: int | None = None) -> list[Report]:
        st = self.settings
        now = now_ms()
        out: list[Report] = []
        for head in self.store.reports.queue_heads(lease_id):
            if len(out) >= st.batch_max:
                break
            if self._paused.get(head.lease_id, 0.0) > time.monotonic():
                continue
            if not force and now - head.oldest_ms < st.settle_every_s * 1000:
                settled_cum = self.store.reports.settled_cum_billable(head.lease_id)
                lease = self.store.index.lease(head.lease_id)
                price = int(json.loads(lease.data).get("pricePerGpuSecond", 0)) if lease else 0
                if charge_for(price, head.cum_billable, settled_cum) < st.settle_threshold_wei:
                    continue
            out.append(self.store.reports.by_seq(head.lease_id, head.seq))
        return out

    # --- one batch ------------------------------------------------------------------------------------

    def _settle(self, reports: list[Report]) -> BatchResult:
        """One ``settleBatch`` of ``reports`` (at most one per lease), stored signed before it is sent."""
        states = self.views.lease_states([r.lease_id for r in reports])  # one call for the batch
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
        call = self.ledger.calls.settle_entries(b"".join(entries))
        sender = self.ledger.sender
        with sender.guard(self.account.address), self.ledger.lock:
            try:
                block_limit = int(self.ledger.read.block("latest")["gasLimit"])
                limit = min(settle_batch_gas_limit(len(carried)), block_limit * 9 // 10)
                tx = sender.build(call, self.account.address, gas_limit=limit)
            except ContractRevert as e:  # the batch as a whole would revert: find the entry at fault
                api = from_chain(e)
                log.warning("settleBatch would fail (%s): settling one by one", api.message)
                if len(carried) == 1:
                    return early + self._finish(carried[0], states[carried[0].lease_id], api.message)
                total = early
                for r in carried:
                    total += self._settle([r])
                return total
            except ChainError as e:  # the chain does not answer, or the relayer cannot pay: nothing is decided
                raise from_chain(e) from e
            raw, tx_hash = sign_transaction(self.account, tx)
            tx_id = self.store.settlements.record_signed(tx_hash, self.account.address, int(tx["nonce"]), raw,
                                                         [r.id for r in carried])
            self._stage("signed")
            self._broadcast(tx_id, raw)
            self._stage("sent")
        outcome = self._wait(tx_hash)  # polls with the chain lock taken per poll only
        return early + self._resolve(tx_id, outcome)

    def _wait(self, tx_hash: str) -> TxOutcome:
        try:
            return self.ledger.sender.wait(tx_hash)
        except ChainError as e:
            raise from_chain(e) from e

    def _stage(self, name: str) -> None:
        faults.reach("relayer." + name)
        if self.crash_at == name:
            raise RelayerCrash(f"simulated crash after {name}")

    def _broadcast(self, tx_id: int, raw: bytes) -> None:
        try:
            self.ledger.sender.broadcast(raw)
        except ChainError as e:  # "already known" / "nonce too low": the receipt lookup decides
            log.info("broadcast of settlement tx %s: %s", tx_id, e)
        self.store.settlements.mark_sent(tx_id)

    # --- outcomes -------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Resolve every signed-or-sent transaction (by receipt, by re-broadcast with its nonce gap filled,
        or as dropped), then reconcile the settled reports with the chain."""
        with self._pass():
            self._recover()
            self._reconcile()

    def _recover(self) -> None:
        unresolved = sorted(self.store.settlements.unresolved(), key=lambda t: t.nonce)
        if not unresolved:
            return
        sender = self.ledger.sender
        ours = {t.nonce for t in unresolved}
        for tx in unresolved:
            receipt = sender.receipt(tx.tx_hash)
            if receipt is None:
                try:
                    with sender.guard(tx.sender):
                        mined_nonce = self.ledger.read.transaction_count(tx.sender, "latest")
                        if mined_nonce > tx.nonce:
                            receipt = sender.receipt(tx.tx_hash)
                            if receipt is None:  # the nonce went to another transaction: this one is dead
                                self._requeue(tx.id, "dropped", "nonce used by another transaction")
                                continue
                        else:  # never broadcast, dropped from the pool, or behind a gap: fill it, send again
                            pooled = self.ledger.read.transaction_count(tx.sender, "pending")
                            for gap in range(pooled, tx.nonce):
                                if gap not in ours:
                                    log.warning("relayer nonce %d is missing on chain: filling it", gap)
                                    self._fill(gap)
                            self._broadcast(tx.id, tx.raw)
                except ChainError as e:
                    raise from_chain(e) from e
                if receipt is None:
                    receipt = self._receipt_wait(tx.tx_hash)
            if receipt is not None:
                self._resolve(tx.id, sender.outcome(receipt))

    def _fill(self, nonce: int) -> None:
        """A replacement transaction at ``nonce`` (an empty self-transfer) so the ones above it can be mined."""
        try:
            sender = self.ledger.sender
            sender.broadcast(sender.sign_filler(self.account, nonce))
        except ChainError as e:  # taken meanwhile: the chain decides
            log.info("filling nonce %d: %s", nonce, e)

    def _receipt_wait(self, tx_hash: str) -> object:
        try:
            self.ledger.sender.wait(tx_hash, timeout_s=RECOVER_WAIT_S)
        except ChainDown:
            return None
        return self.ledger.sender.receipt(tx_hash)

    def _reconcile(self) -> int:
        """Put back in the queue what the store took for settled and the chain does not hold (a chain that
        lost blocks); how many reports."""
        self._last_reconcile = time.monotonic()
        heads = self.store.reports.settled_heads()
        reopened = 0
        ids = sorted(heads)
        for k in range(0, len(ids), 200):
            chunk = ids[k:k + 200]
            states = self.views.lease_states(chunk)
            for lease_id in chunk:
                st = states.get(lease_id)
                if st is None or st.checkpoint.seq >= heads[lease_id]:
                    continue
                n = self.store.reports.reopen_above(lease_id, int(st.checkpoint.seq))
                if n:
                    log.warning("lease %d: the chain holds checkpoint %d, the store had %d: %d report(s) queued again",
                                lease_id, st.checkpoint.seq, heads[lease_id], n)
                    reopened += n
        if reopened:
            self.metrics.reports_reopened.inc(reopened)
        return reopened

    def _resolve(self, tx_id: int, outcome: TxOutcome) -> BatchResult:
        if outcome.status != 1:
            n = self._requeue(tx_id, "failed", "transaction reverted")
            self.metrics.settlement_txs.labels("failed").inc()
            return BatchResult(outcome.tx_hash, 0, 0, requeued=n)
        # one CheckpointSettled per record of the transaction's CheckpointsSettled
        settled_now: dict[tuple[int, int], str] = {}
        skipped: dict[tuple[int, int], str] = {}
        for e in outcome.events:
            if e.name == "CheckpointSettled":
                settled_now[(int(e.args["leaseId"]), int(e.args["seq"]))] = "0x" + bytes(e.args["reportHash"]).hex()
            elif e.name == "CheckpointSkipped":
                skipped[(int(e.args["leaseId"]), int(e.args["seq"]))] = _reason(e.args.get("reason", b""))
        carried = self.store.reports.of_tx(tx_id)
        done_ids: list[int] = []
        stale_ids: list[int] = []
        others: list[Report] = []
        for r in carried:
            key = (r.lease_id, r.seq)
            if settled_now.get(key) == r.struct_hash:
                done_ids.append(r.id)
            elif skipped.get(key) == STALE_STATE:  # our view of the lease was behind: retry with a fresh one
                stale_ids.append(r.id)
            elif skipped.get(key) in TEMPORARY_SKIPS:  # refused for now, not for good: later
                stale_ids.append(r.id)
                self._paused[r.lease_id] = time.monotonic() + TEMPORARY_PAUSE_S
                log.info("lease %d seq %d skipped (%s): queued again", r.lease_id, r.seq, skipped[key])
            else:
                others.append(r)
        # what the batch did not settle: the lease's state on chain says what it is (one read)
        states = self.views.lease_states(sorted({r.lease_id for r in others})) if others else {}
        finals: dict[int, tuple[str, str | None]] = {}
        for r in others:
            if r.lease_id not in states:  # no readable state now: back to the queue
                stale_ids.append(r.id)
                continue
            status, reason = final_status(r.seq, r.struct_hash, states[r.lease_id],
                                          skipped.get((r.lease_id, r.seq), "not settled"))
            if status == "rejected":
                self.metrics.reports_rejected.labels("settlement").inc()
                log.warning("lease %d seq %d rejected at settlement: %s", r.lease_id, r.seq, reason)
            finals[r.id] = (status, reason)
        self.store.settlements.resolve(tx_id, outcome.block_number, settled=done_ids, requeued=stale_ids, finals=finals)
        if stale_ids:
            log.info("settlement tx %s: %d entries on a stale lease state, queued again", outcome.tx_hash, len(stale_ids))
        self.metrics.settlement_txs.labels("mined").inc()
        self.metrics.checkpoints_settled.inc(len(settled_now))
        if self.on_settled is not None:
            self.on_settled()
        return BatchResult(outcome.tx_hash, len(settled_now), len(skipped), done=len(done_ids) + len(finals),
                           requeued=len(stale_ids))

    def _finish(self, r: Report, st: LeaseState | None, reason: str) -> BatchResult:
        """Final status of a report that is not (or no longer) sent, from the lease's state ``st``."""
        status, why = final_status(r.seq, r.struct_hash, st, reason)
        if status == "rejected":
            self.metrics.reports_rejected.labels("settlement").inc()
            log.warning("lease %d seq %d rejected at settlement: %s", r.lease_id, r.seq, why)
        self.store.reports.set_final(r.id, status, why)
        return BatchResult(None, 0, 0, done=1)

    def _requeue(self, tx_id: int, status: str, error: str) -> int:
        return self.store.settlements.requeue(tx_id, status, error)


def _reason(selector: object) -> str:
    sel = bytes(selector) if isinstance(selector, (bytes, bytearray)) else b""
    return error_name(sel)
