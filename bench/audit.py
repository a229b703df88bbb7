"""Auditor throughput on one core: how many metering reports can be verified per second, and how long one
lease's audit takes through a bridge and the chain.

  full verification      signature recovery + hash-chain link + Merkle root rebuilt from 8 GPUs × 10 samples
                         (a report at the attestor's default policy: a sample per GPU every 18 s, a report
                         every 180 s; --samples-per-gpu 60 gives protocol 1's report shape)
  signature and chain    signature recovery + hash-chain link (what a spot-check audit pays per report)
  full audit             auditor.core.verify_lease with every check (sanity, aggregates, physics, payments)
  bridge + chain audit   one lease of --bridge-reports reports (2 GPUs × 10 samples) audited end to end: the
                         lease, attestor history, checkpoints and money read from the chain, reports and
                         samples from a bridge over HTTP, compared, verified (wall-clock seconds)

Targets (issue 6): ≥ 500 full verifications/s, ≥ 5,000 signature-and-chain checks/s.

The chain is the source of what it holds, as in an audit: both leases are opened on an in-process memory
chain (eth-tester) with their node's attestor registered there, their checkpoints settled there, and the
terms, attestor key, EIP-712 domain, checkpoints and money the loops use are read back from it
(``auditor.sources.ChainLeaseReader``). The bridge is ``api.create_app`` on that chain, served by uvicorn on
127.0.0.1 (a free port) in this process; the auditor is handed the chain in process (the memory backend
publishes no RPC URL).

    python bench/audit.py [--reports N] [--rounds R] [--bridge-reports M] [--json]

The throughput loops run in one thread, so on one core at a time (--pin keeps it on the first CPU it may
use). Each rate is the best of --rounds, measured twice: per second of the process's CPU time (what one core
achieves when the process has it: the headline figure, stable on a shared machine) and per wall-clock
second (lower whenever other processes share the core). With --json it prints one JSON object: the keys
full_verifications_per_s, sig_chain_checks_per_s and full_audit_reports_per_s (CPU time), the same with
_per_wall_s, reports and samples_per_report, and bridge_chain_audit_s (with _load_s, _verify_s,
_reports, _samples_per_report; --bridge-reports 0 skips it). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the fake GPU lives in tests/audit

from auditor.core import AuditInput, SignedReport, attestor_at, verify_lease  # noqa: E402
from auditor.sources import ApiSource, ChainLeaseReader  # noqa: E402
from ledger.chain.backends import Chain, connect, free_port  # noqa: E402
from ledger.chain.deploy import deploy_suite  # noqa: E402
from ledger.chain.signing import address_of  # noqa: E402
from ledger.protocol import (  # noqa: E402
    ZERO_HASH,
    domain_separator,
    gpu_uuid_hash,
    recover_signer,
    report_struct_hash,
    samples_root,
    typed_data_digest,
)
from tests.audit.fakegpu import ATTESTOR_KEY, MAX_MW, FakeLease, make_lease  # noqa: E402
from tests.support.ledger_client import ETH, BillingMode, LedgerClient  # noqa: E402

GPUS = 8
SAMPLES_PER_GPU = 10  # the attestor's default policy: 180 s windows of 18 s samples
BRIDGE_GPUS = 2
BRIDGE_SAMPLES_PER_GPU = 10
PERIOD_MS = 1000  # the fake attestor's sampling period (tests.audit.fakegpu.make_lease's default)
PRICE = 10**9


def _pin_one_core(pin: bool) -> str:
    if not pin:
        return "one thread"
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
        return f"pinned to CPU {cpus[0]}"
    return "not pinned (no sched_setaffinity)"


def verify_sig_chain(reports: Sequence[SignedReport], dom: bytes, attestor: str, *, merkle: bool) -> int:
    """The per-report core of the audit, with the same ledger.protocol calls verify_lease makes."""
    prev = ZERO_HASH
    ok = 0
    for sr in reports:
        r = sr.report
        h = report_struct_hash(r)
        good = recover_signer(typed_data_digest(dom, h), sr.signature) == attestor and r.prevReportHash == prev
        if merkle:
            assert sr.samples is not None
            good = good and samples_root(sr.samples) == r.samplesRoot
        ok += good
        prev = h
    return ok


@dataclass(frozen=True)
class Rate:
    cpu: float  # reports per second of this process's CPU time: what one core does when it is ours
    wall: float  # reports per wall-clock second: lower while other processes share the core


def _rate(fn: Callable[[], int], n: int, rounds: int) -> Rate:
    best_cpu = best_wall = float("inf")
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        done = fn()
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
        if done != n:
            raise SystemExit(f"benchmark data did not verify ({done}/{n})")
    return Rate(n / max(best_cpu, 1e-9), n / max(best_wall, 1e-9))


# --- the chain: both leases opened, metered for and settled on it ---------------------------------------------


@dataclass
class OnChain:
    chain: Chain
    deployment: Any
    client: LedgerClient
    lease_ids: list[int]
    fakes: list[FakeLease]


def open_leases(chain: Chain, shapes: Sequence[tuple[int, int, int]]) -> OnChain:
    """Deploy the suite, register one node per shape ``(reports, GPUs, samples per GPU and window)`` with the
    fake attestor's key, open and activate one lease on each, and build its signed reports."""
    dep = deploy_suite(chain, chain.accounts[0])
    cl = LedgerClient(chain, dep, keys=chain.private_keys)
    provider, buyer = chain.accounts[1:3]
    cl.register_provider(provider, payout=provider, metadata_uri="ipfs://bench")
    t0 = chain.now()
    ids: list[int] = []
    fakes: list[FakeLease] = []
    for k, (n, gpus, per) in enumerate(shapes):
        uuids = tuple(gpu_uuid_hash(f"GPU-bench-{k}-{i:02d}") for i in range(gpus))
        node = cl.register_node(provider, address_of(ATTESTOR_KEY), "H200", uuids, 143_771, MAX_MW, "bench").id
        offer = cl.publish_offer(provider, node, (1 << gpus) - 1, PRICE, ETH, BillingMode.RESERVED, t0, t0 + 86_400).id
        duration = n * per * PERIOD_MS // 1000 + 60
        lease = cl.open_lease(buyer, offer, holder=provider, duration_s=duration, start_by=t0 + 600).id
        cl.activate_lease(provider, lease)
        info = cl.lease(lease)
        fakes.append(
            make_lease(
                n,
                gpus=tuple(range(gpus)),
                samples_per_window=per,
                settle_at=(),
                lease_id=lease,
                start_ms=info.start_ms,
                chain_id=chain.chain_id,
                escrow_address=dep.escrow,
                gpu_uuid_hashes=uuids,
                duration_s=duration,
            )
        )
        ids.append(lease)
    return OnChain(chain, dep, cl, ids, fakes)


def settle(on: OnChain, k: int, seqs: Sequence[int]) -> None:
    """Settle reports ``seqs`` of lease ``k`` on chain (the chain's clock moved past each window first)."""
    for seq in seqs:
        sr = on.fakes[k].reports[seq - 1]
        if on.chain.now() * 1000 < sr.report.windowEndMs:
            on.chain.time_travel(sr.report.windowEndMs // 1000 + 1)
        on.client.settle(on.chain.accounts[3], sr.report, sr.signature)


# --- the bridge + chain path ---------------------------------------------------------------------------


@contextmanager
def served_bridge(on: OnChain, data_dir: Path) -> Iterator[tuple[str, Any]]:
    """The bridge (``api.create_app`` on the chain) served by uvicorn on 127.0.0.1 in a thread of this process:
    its URL and its app."""
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    settings = Settings(
        chain_backend="memory", data_dir=data_dir, background=False, settle_every_s=3600.0, settle_threshold_wei=10**30
    )
    app = create_app(settings, chain=on.chain, deployment=on.deployment)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="bridge", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the bridge did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass(frozen=True)
class BridgeAudit:
    load_s: float  # chain reads + the bridge's reports over HTTP + the comparison
    verify_s: float  # verify_lease
    reports: int
    samples_per_report: int
    checkpoints: int
    ok: bool

    @property
    def total_s(self) -> float:
        return self.load_s + self.verify_s


def bridge_chain_audit(on: OnChain, k: int, data_dir: Path) -> BridgeAudit:
    """Submit lease ``k``'s reports to a bridge served on 127.0.0.1 (a checkpoint settled every quarter), then
    time its audit through the bridge and the chain."""
    import httpx

    fake = on.fakes[k]
    lease_id = on.lease_ids[k]
    node_id = on.client.lease(lease_id).node_id
    n = len(fake.reports)
    with served_bridge(on, data_dir) as (url, app), httpx.Client(base_url=url, timeout=60) as http:
        for i, sr in enumerate(fake.reports, start=1):
            assert sr.samples is not None
            body = {
                "nodeId": node_id,
                "report": sr.report.to_json(),
                "signature": "0x" + sr.signature.hex(),
                "samples": [s.to_list() for s in sr.samples],
            }
            resp = http.post("/v1/metering/reports", json=body)
            if resp.status_code != 201:
                raise SystemExit(f"the bridge refused report {i}: {resp.status_code} {resp.text[:200]}")
            if i % max(1, n // 4) == 0 or i == n:  # a checkpoint: the chain's clock past the window, then settle
                if on.chain.now() * 1000 < sr.report.windowEndMs:
                    on.chain.time_travel(sr.report.windowEndMs // 1000 + 1)
                if app.state.bridge.relayer.flush() != 1:
                    raise SystemExit(f"the bridge did not settle report {i}")
        with ApiSource(url, chain=on.client.ledger) as src:
            t0 = time.perf_counter()
            inp = src.load(lease_id)
            t1 = time.perf_counter()
            v = verify_lease(inp)
            t2 = time.perf_counter()
    if not v.ok:
        raise SystemExit(f"the bridge + chain audit failed: {[(r.check, r.report_seq) for r in v.failures][:5]}")
    per = len(fake.reports[n // 2].samples or ())  # (the first report also has the lease-start collect)
    return BridgeAudit(t1 - t0, t2 - t1, len(inp.reports), per, len(inp.settlements), v.ok)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--reports", type=int, default=100, help="reports in the throughput lease (default 100)")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds; the best is reported (default 7)")
    ap.add_argument(
        "--bridge-reports", type=int, default=1000, help="reports in the bridge + chain lease (default 1000; 0 skips)"
    )
    ap.add_argument("--samples-per-gpu", type=int, default=SAMPLES_PER_GPU,
                    help=f"samples per GPU in each throughput report (default {SAMPLES_PER_GPU})")  # fmt: skip
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--pin", action="store_true", help="pin the process to its first allowed CPU")
    args = ap.parse_args(argv)
    if args.reports < 2 or args.bridge_reports < 0:
        ap.error("--reports must be at least 2 and --bridge-reports at least 0")

    pinned = _pin_one_core(args.pin)
    n = args.reports
    per_gpu = args.samples_per_gpu
    shapes = [(n, GPUS, per_gpu)]
    if args.bridge_reports:
        shapes.append((args.bridge_reports, BRIDGE_GPUS, BRIDGE_SAMPLES_PER_GPU))
    chain = connect("memory")
    try:
        on = open_leases(chain, shapes)
        settle(on, 0, (n // 2, n))
        # what the chain holds, read back from it: terms, the attestor history, checkpoints, money
        rec = ChainLeaseReader(on.client.ledger, sample_period_ms=PERIOD_MS).record(on.lease_ids[0])
        terms = rec.terms
        reports = tuple(on.fakes[0].reports)
        dom = domain_separator(terms.chainId, terms.escrow)
        (attestor,) = attestor_at(terms, reports[-1].report.windowEndMs)
        inp = AuditInput(terms, reports, rec.settlements, rec.money, status=rec.status, now_ms=rec.nowMs)

        def audit() -> int:
            v = verify_lease(inp)
            return n if v.ok else 0

        full = _rate(lambda: verify_sig_chain(reports, dom, attestor, merkle=True), n, args.rounds)
        sig_chain = _rate(lambda: verify_sig_chain(reports, dom, attestor, merkle=False), n, args.rounds)
        audit_rate = _rate(audit, n, args.rounds)
        bridged = None
        if args.bridge_reports:
            with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
                bridged = bridge_chain_audit(on, 1, Path(tmp))
    finally:
        chain.close()

    if args.json:
        out: dict[str, Any] = {
            "full_verifications_per_s": round(full.cpu, 1),
            "sig_chain_checks_per_s": round(sig_chain.cpu, 1),
            "full_audit_reports_per_s": round(audit_rate.cpu, 1),
            "full_verifications_per_wall_s": round(full.wall, 1),
            "sig_chain_checks_per_wall_s": round(sig_chain.wall, 1),
            "full_audit_reports_per_wall_s": round(audit_rate.wall, 1),
            "reports": n,
            "samples_per_report": GPUS * per_gpu,
        }
        if bridged is not None:
            out |= {
                "bridge_chain_audit_s": round(bridged.total_s, 3),
                "bridge_chain_audit_load_s": round(bridged.load_s, 3),
                "bridge_chain_audit_verify_s": round(bridged.verify_s, 3),
                "bridge_chain_audit_reports": bridged.reports,
                "bridge_chain_audit_samples_per_report": bridged.samples_per_report,
            }
        print(json.dumps(out))
    else:
        what = f"{n} reports of {GPUS} GPUs × {per_gpu} samples, terms and checkpoints read from the chain"
        print(f"auditor benchmark: {what}, {pinned}, best of {args.rounds} rounds")
        print(f"  {'':<57}{'per CPU-s':>10} {'per wall-s':>11}")
        rows = (
            ("full verifications (signature + chain + Merkle rebuild)", full, "  (target ≥ 500)"),
            ("signature-and-chain checks", sig_chain, "  (target ≥ 5,000)"),
            ("full audit (verify_lease, every check)", audit_rate, ""),
        )
        for label, rate, target in rows:
            print(f"  {label + ':':<57}{rate.cpu:10,.0f} {rate.wall:11,.0f} reports/s{target}")
        if bridged is not None:
            print(
                f"  bridge + chain audit of one lease of {bridged.reports:,} reports ({BRIDGE_GPUS} GPUs × "
                f"{BRIDGE_SAMPLES_PER_GPU} samples, {bridged.checkpoints} checkpoints), 127.0.0.1, wall-clock: "
                f"{bridged.total_s:.2f} s (chain + bridge reads and comparison {bridged.load_s:.2f} s, "
                f"verification {bridged.verify_s:.2f} s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
