"""Growth: what the bridge's store costs per GPU-month, and how intake, the indexer and the offer list hold up
as it grows (issue 13's targets).

1. ``storage``: one month of one lease at the attestor's default policy (a sample per GPU every 18 s, a
   report every 180 s: 14,400 reports), samples of a busy node (utilization, power, memory all varying), stored
   through the report writer's path (``ReportRepo.store_batch``, the real encoding) into SQLite; the lease
   settled every 300 s (the relayer's default cadence: CheckpointSettled events in the index), then retention
   at the default challenge period (3,600 s) run at the month's end. Prints the bytes the live store uses
   (SQLite pages in use, tables and indexes) per GPU-month, for an 8-GPU and a 1-GPU lease, before and after
   retention, the archive's bytes, and the old encoding's figure (54-byte records) for comparison.
   Target: ≤ 20 MB per GPU-month in the live store.
2. ``intake``: reports accepted per second over HTTP (a served bridge over anvil, 60 samples per report,
   ``--clients`` concurrent clients) on a store that already holds ``--stored`` reports. The stored reports are
   built by bulk insert straight into the database (rows of the real shape and size: the same encoded
   samples blob and report body for all, with unique hashes), which takes minutes for 1M instead of hours
   through the API. Target: ≥ 300 reports/s with 1M stored.
3. ``indexer``: a fresh indexer's start-up over a chain with many events (leases opened and settled in
   ``settleBatch`` transactions on anvil): events stored per second. Target: ≥ 2,000/s.
4. ``offers``: ``GET /v1/offers`` p99 with 16 clients while blocks keep coming (a settlement a second).

    python bench/scale.py [storage|intake|indexer|offers ...] [--stored N] [--json]

Figures, not assertions; ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "api"))

from api.store import NewReport, Store  # noqa: E402
from api.store.models import ChainEvent  # noqa: E402
from api.store.samples import RECORD_BYTES, CODEC_ZLIB_COLUMNS, encode_samples  # noqa: E402
from api.workers.retention import Retention, RetentionSettings  # noqa: E402
from bridge_helpers import busy_node_samples  # noqa: E402
from ledger.protocol import ZERO_HASH, MeteringReport, report_struct_hash, samples_root  # noqa: E402
from ledger.protocol.metering import energy_split  # noqa: E402

MONTH_S = 30 * 86_400
WINDOW_MS = 180_000
SETTLE_EVERY_S = 300
CHALLENGE_PERIOD_S = 3_600
MB = 1_000_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def used_bytes(db: Path) -> int:
    """Bytes of the SQLite file in use (pages minus the free list): what the store holds."""
    with sqlite3.connect(db) as c:
        page = c.execute("PRAGMA page_size").fetchone()[0]
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page)


def month_of_reports(lease_id: int, gpus: int, t0_ms: int, rng: random.Random) -> list[tuple[NewReport, int]]:
    """A month of one lease's reports as the intake stores them, with each report's raw sample bytes."""
    out: list[tuple[NewReport, int]] = []
    prev = ZERO_HASH
    cum = 0
    for seq in range(1, MONTH_S * 1000 // WINDOW_MS + 1):
        start = t0_ms + (seq - 1) * WINDOW_MS
        samples = busy_node_samples(rng, start, gpus=gpus)
        busy = sum(s.busyMs for s in samples)
        cum += busy
        report = MeteringReport(
            leaseId=lease_id, seq=seq, prevReportHash=prev, windowEndMs=max(s.tsMs for s in samples), cumBusyMs=cum,
            cumEnergyMj=cum * 400, cumAllocatedMs=seq * WINDOW_MS * gpus, cumSmActiveMs=cum * 8 // 10,
            windowStartMs=start, gpuSetHash=bytes(rng.getrandbits(8) for _ in range(32)), busyMs=busy,
            smActiveMs=busy * 8 // 10, tensorActiveMs=busy // 4, energyMj=busy * 400, allocatedMs=WINDOW_MS * gpus,
            maxMemUsedMiB=max(s.memUsedMiB for s in samples), sampleCount=len(samples),
            samplesRoot=samples_root(samples), flags=0x2, configHash=bytes(rng.getrandbits(8) for _ in range(32)),
        )  # fmt: skip
        h = report_struct_hash(report)
        out.append((
            NewReport(
                lease_id=lease_id, seq=seq, struct_hash="0x" + h.hex(), prev_hash="0x" + prev.hex(),
                signer="0x" + "ab" * 20, signature="0x" + rng.randbytes(65).hex(),
                body=json.dumps(report.to_json(), separators=(",", ":")), samples_root="0x" + report.samplesRoot.hex(),
                packed_samples=encode_samples(samples), samples_codec=CODEC_ZLIB_COLUMNS, sample_count=len(samples),
                window_end_ms=report.windowEndMs, cum_billable=cum,
                energy=energy_split(samples, 0),  # its counters are stored for the next report, as at intake
            ),
            len(samples) * RECORD_BYTES,
        ))  # fmt: skip
        prev = h
    return out


def storage(gpus: int, tmp: Path) -> dict[str, float]:
    """One lease-month of ``gpus`` GPUs: live-store bytes per GPU-month before and after retention."""
    db = tmp / f"storage-{gpus}.sqlite3"
    store = Store(f"sqlite:///{db.as_posix()}", archive_dir=tmp / f"archive-{gpus}")
    store.migrate()
    empty = used_bytes(db)
    lease_id, t0_ms = 1, 1_764_000_000_000
    t = time.perf_counter()
    month = month_of_reports(lease_id, gpus, t0_ms, random.Random(gpus))
    log(f"  {gpus} GPU(s): {len(month):,} reports built in {time.perf_counter() - t:.0f} s")
    for i in range(0, len(month), 256):
        res = store.reports.store_batch([r for r, _ in month[i : i + 256]])
        assert all(x.outcome == "stored" for x in res), res[0]
    raw_samples = sum(n for _, n in month)
    # settled every SETTLE_EVERY_S: the latest report at each tick, the ones between superseded
    settled_seqs = sorted({min(len(month), (k * SETTLE_EVERY_S * 1000) // WINDOW_MS) for k in range(1, MONTH_S // SETTLE_EVERY_S + 1)})
    with store.db.write() as s:
        for n, seq in enumerate(settled_seqs):
            ts = (t0_ms + seq * WINDOW_MS) // 1000 + 5
            s.add(ChainEvent(block_number=n + 1, block_hash="0x%064x" % (n + 1), block_ts=ts, tx_hash="0x%064x" % n,
                             log_index=0, record_index=0, contract="escrow", name="CheckpointSettled",
                             args=json.dumps({"leaseId": lease_id, "seq": seq}), lease_id=lease_id))  # fmt: skip
    with sqlite3.connect(db) as c:
        marks = ",".join(str(x) for x in settled_seqs)
        c.execute(f"UPDATE reports SET status='superseded' WHERE lease_id={lease_id}")
        c.execute(f"UPDATE reports SET status='settled' WHERE lease_id={lease_id} AND seq IN ({marks})")
    before = used_bytes(db) - empty
    month_end_s = (t0_ms + MONTH_S * 1000) // 1000
    retention = Retention(store, lambda: month_end_s, lambda: CHALLENGE_PERIOD_S, RetentionSettings())
    t = time.perf_counter()
    moved = retention.run_once()
    log(f"  {gpus} GPU(s): retention moved {moved:,} reports' samples in {time.perf_counter() - t:.0f} s")
    after = used_bytes(db) - empty
    archive = sum(f.stat().st_size for f in (tmp / f"archive-{gpus}").rglob("*.gz"))
    rows_only = after
    store.close()
    return {
        "reports": len(month),
        "samples_per_report": month[0][0].sample_count,
        "live_mb_per_gpu_month_before_retention": before / gpus / MB,
        "live_mb_per_gpu_month": rows_only / gpus / MB,
        "archive_mb_per_gpu_month": archive / gpus / MB,
        "raw_54_byte_samples_mb_per_gpu_month": raw_samples / gpus / MB,
        "reports_archived": moved,
    }


def indexer(leases: int, rounds: int, tmp: Path) -> dict[str, float]:
    """A fresh indexer over an anvil chain holding ``leases`` leases settled in ``rounds`` settleBatch
    transactions (one checkpoint per lease each): events stored per second of its start-up."""
    sys.path.insert(0, str(REPO / "bench"))
    from audit import open_leases  # bench/audit.py: leases with the fake attestor's signed reports

    from api.metrics import Metrics
    from api.workers.indexer import Indexer, IndexerSettings
    from ledger.chain.backends import connect
    from ledger.chain.suite import LedgerChain

    chain = connect("anvil", data_dir=tmp / "anvil")
    try:
        t = time.perf_counter()
        on = open_leases(chain, [(rounds, 1, 10)] * leases)
        relayer = chain.accounts[3]
        for r in range(rounds):
            last_end = max(f.reports[r].report.windowEndMs for f in on.fakes)
            if chain.now() * 1000 < last_end:
                chain.time_travel(last_end // 1000 + 1)
            batch = [f.reports[r] for f in on.fakes]
            on.client.settle_batch(relayer, [sr.report for sr in batch], [sr.signature for sr in batch])
        log(f"  indexer: {leases} leases settled in {rounds} batches on anvil in {time.perf_counter() - t:.0f} s")
        store = Store(f"sqlite:///{(tmp / 'indexer.sqlite3').as_posix()}")
        store.migrate()
        ix = Indexer(store, LedgerChain(chain, on.deployment), Metrics(), IndexerSettings(0, 2000, 1.0))
        t = time.perf_counter()
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            prof = cProfile.Profile()
            events = prof.runcall(ix.sync_once)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
        else:
            events = ix.sync_once()
        elapsed = time.perf_counter() - t
        store.close()
        return {"events": events, "seconds": elapsed, "events_per_s": events / elapsed}
    finally:
        chain.close()


def served(stored: int, clients: int, duration: float) -> dict[str, Any]:
    """bench/api.py's served bridge over anvil, on a store prefilled with ``stored`` reports, ``clients``
    clients, a block mined every second during the offer-list phase: its figures (one JSON object)."""
    cmd = [sys.executable, str(REPO / "bench" / "api.py"), "--prefill", str(stored), "--clients", str(clients),
           "--block-every", "1", "--duration", str(duration), "--leases", "64", "--reports", "24", "--rounds", "1",
           "--json"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.PIPE, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("parts", nargs="*", default=["storage", "intake", "indexer", "offers"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--stored", type=int, default=1_000_000, help="intake: reports already stored (default 1M)")
    ap.add_argument("--clients", type=int, default=16, help="intake and offers: HTTP clients (default 16)")
    ap.add_argument("--duration", type=float, default=8.0, help="intake and offers: seconds per phase")
    ap.add_argument("--leases", type=int, default=50, help="indexer: leases on the chain (default 50)")
    ap.add_argument("--rounds", type=int, default=60, help="indexer: settleBatch rounds (default 60)")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as d:
        tmp = Path(d)
        if "storage" in args.parts:
            log("storage: a month of one lease, default policy (8 GPUs and 1 GPU), retention at the month's end")
            for gpus in (8, 1):
                fig = storage(gpus, tmp)
                result[f"storage_{gpus}gpu"] = fig
                if not args.json:
                    print(f"storage, {gpus}-GPU lease, {fig['reports']:,} reports of {fig['samples_per_report']} samples "
                          f"a month: live store {fig['live_mb_per_gpu_month']:.2f} MB per GPU-month (target <= 20) after "
                          f"retention, {fig['live_mb_per_gpu_month_before_retention']:.2f} MB before; archive "
                          f"{fig['archive_mb_per_gpu_month']:.2f} MB; the samples as 54-byte records alone "
                          f"{fig['raw_54_byte_samples_mb_per_gpu_month']:.2f} MB")  # fmt: skip
        if "intake" in args.parts or "offers" in args.parts:
            log(f"intake and offers: bench/api.py on a store of {args.stored:,} reports, {args.clients} clients")
            fig = served(args.stored, args.clients, args.duration)
            result["served"] = fig
            if not args.json:
                print(f"intake with {fig['stored_reports'] or 0:,} reports stored (bulk-inserted in {fig['prefill_s']} s): "
                      f"{fig['reports_accepted_per_s']:,.0f} reports/s accepted over HTTP, 60 samples each "
                      f"(target >= 300 at 1M)")
                print(f"offers list, {args.clients} clients, a new block every second: {fig['offers_rps']:,.0f} req/s, "
                      f"p50 {fig['offers_p50_ms']:.1f} ms, p99 {fig['offers_p99_ms']:.1f} ms")  # fmt: skip
        if "indexer" in args.parts:
            log("indexer: a fresh start-up over a chain of settled leases (anvil)")
            fig = indexer(args.leases, args.rounds, tmp)
            result["indexer"] = fig
            if not args.json:
                print(f"indexer, fresh start-up over {args.leases} leases x {args.rounds} checkpoints: {fig['events']:,} "
                      f"events in {fig['seconds']:.1f} s = {fig['events_per_s']:,.0f} events/s (target >= 2,000)")  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
