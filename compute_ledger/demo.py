"""``compute-ledger demo``: the whole story end to end, on the embedded chain, through the real HTTP API.

1. a chain (memory by default, ``--backend anvil`` for a real node) and the contract suite;
2. the bridge (FastAPI + uvicorn) in this process, on a free 127.0.0.1 port, which every party reaches over
   HTTP through the Python client (``compute_ledger_client``), as users do;
3. a provider, through the API, registers a simulated 8×H100 node (the attestor's own NVML code over the
   simulated driver, an H200-like model) and publishes three offers: reserved on GPUs 0-3 (pay for the
   time), metered on GPUs 4-5 (pay for busy time), SM-active on GPUs 6-7 (pay for the compute used);
4. three buyers without wallets create accounts, compare offers and open one lease each with escrow;
5. the node's attestor meters the leases window by window on an accelerated clock (the chain's clock is
   moved forward with it), signs every report and submits it to the bridge;
6. the relayer settles the latest reports as checkpoints, in batches;
7. the buyer closes the lease (unused escrow refunded), the provider's earnings are released after the
   challenge period and withdrawn, the buyer withdraws the refund and rates the provider;
8. an auditor verifies every report and payment against the chain (reports, samples and proofs from the
   bridge's public data) and writes an HTML report.

Exits 0 only when every step and the audit succeed.

``--gpu`` tells the same story in real time on this machine's NVIDIA GPUs: the node is registered by the GPUs'
real UUIDs, one buyer leases all of them (billed on SM-active time where every GPU has GPM, else on busy
time), a built-in load runs when PyTorch is importable (else whatever runs on the GPUs is metered), windows
are 20 s, and the story ends with the audit and a table of each window's busy time next to the driver's own
figures. Without an NVIDIA driver it exits 2 with one line.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from compute_ledger.web_audit import web_auditor
from attestor.bridge import BridgeClient, BridgeLeases
from attestor.clock import Clock, SystemClock
from attestor.daemon import Attestor
from attestor.errors import NoDriverError
from attestor.keys import Signer
from attestor.meter import ReportBuilder, SamplingPolicy
from attestor.nvml import NvmlSource
from attestor.simdriver import ManualClock, simulated_source
from attestor.spool import Spool
from auditor.cli import format_table
from auditor.cli import run as audit_run
from auditor.core import AuditError
from auditor.report_html import render_html
from auditor.sources import ApiSource
from compute_ledger_client import ApiError, ComputeLedger, LedgerClientError, format_eth
from ledger.chain.backends import connect, free_port
from ledger.chain.deploy import deploy_suite
from ledger.chain.signing import new_account
from ledger.chain.suite import LedgerChain
from ledger.protocol.errors import LedgerError

log = logging.getLogger("compute_ledger.demo")

STEPS = 9
GPU_SPEC = "8xH100"
PRICE_RESERVED = 2_000_000_000_000  # wei per GPU-second: 0.0072 ETH per GPU-hour
PRICE_METERED = 2_500_000_000_000  # 0.009 ETH per GPU-hour, billed on attested busy time only
PRICE_SM_ACTIVE = 3_000_000_000_000  # 0.0108 ETH per SM-active GPU-hour: pay for the compute used
LEASE_S = 3600
SIM_POLICY = SamplingPolicy(sample_period_ms=15_000, window_ms=60_000)
GPU_POLICY = SamplingPolicy(sample_period_ms=5_000, window_ms=20_000)
# (billing mode, GPU indices, price, buyer) of the simulated story
SIM_OFFERS = (
    ("reserved", [0, 1, 2, 3], PRICE_RESERVED, "B"),
    ("metered", [4, 5], PRICE_METERED, "A"),
    ("sm_active", [6, 7], PRICE_SM_ACTIVE, "C"),
)


class DemoError(LedgerError):
    """A step of the demo failed; the message says which and why."""


@dataclass
class Summary:
    escrowed: int = 0
    fee: int = 0
    fee_refunded: int = 0
    paid: int = 0
    refunded: int = 0
    reports: int = 0
    checkpoints: int = 0
    batches: int = 0
    gas_used: int = 0
    gas_deploy: int = 0
    verdict: str = "not run"
    report_path: str = ""


@dataclass
class DemoNode:
    """The GPU node of the story: its NVML source (simulated driver or the real one) and the clock it runs on."""

    source: NvmlSource
    clock: Clock
    real: bool
    policy: SamplingPolicy

    @classmethod
    def simulated(cls, start_ms: int) -> DemoNode:
        clock = ManualClock(start_ms * 1000)
        return cls(simulated_source(GPU_SPEC, seed=1, profile="bursty", clock_us=clock), clock, False, SIM_POLICY)

    @classmethod
    def gpus(cls) -> DemoNode:
        """This machine's GPUs (raises NoDriverError without a driver)."""
        return cls(NvmlSource(None), SystemClock(), True, GPU_POLICY)


def _step(n: int, text: str) -> None:
    print(f"[{n}/{STEPS}] {text}", file=sys.stderr, flush=True)


def _eth(wei: int) -> str:
    return format_eth(wei, 6)


class _Server:
    """uvicorn serving the app in a background thread of this process."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name="bridge", daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DemoError("the bridge did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def run_demo(backend: str, windows: int, out_dir: Path, node: DemoNode | None = None) -> Summary:
    """The story on ``node`` (default: a simulated 8×H100 node on an accelerated clock)."""
    summary = Summary()
    out_dir.mkdir(parents=True, exist_ok=True)
    chain = connect(backend, data_dir=out_dir / "chain" if backend == "anvil" else None)
    try:
        admin = chain.accounts[0]
        start_block = chain.block_number()
        deployment = deploy_suite(chain, admin, keys=chain.private_keys)
        read = LedgerChain(chain, deployment).read
        deployed_block = read.block_number()
        _step(1, f"{backend} chain {chain.chain_id}: contracts deployed (escrow {deployment.escrow})")
        node = node or DemoNode.simulated(chain.now() * 1000)

        settings = Settings(
            chain_backend=backend,  # type: ignore[arg-type]
            data_dir=out_dir / "bridge",
            relayer_private_key=SecretStr("0x" + chain.private_keys[chain.accounts[1]].hex()),
            settle_every_s=3600.0,  # the demo asks for each batch itself (flush), as "at close" would
            settle_threshold_wei=10**30,
            server_secret=SecretStr("demo-only-secret-" + chain.accounts[2]),
        )
        app = create_app(settings, chain=chain, deployment=deployment, auditor=web_auditor)
        port = free_port()
        with _Server(app, port):
            base = f"http://127.0.0.1:{port}"
            http = ComputeLedger(base)  # anyone: accounts, the faucet, public reads
            services = app.state.bridge
            _step(2, f"bridge listening on {base} (FastAPI, in this process; parties use the Python client)")

            # --- provider ---------------------------------------------------------------------------
            prov = http.create_account(["provider"])
            pcl = http.with_api_key(prov.api_key)
            pcl.faucet(prov.address, 10**19)
            pcl.register_provider("https://provider.example/gpu-farm")
            source = node.source
            caps = source.capabilities()
            attestor_key = new_account()
            node_id = pcl.register_node(
                attestor_key.address, source.model_names[0], caps[0].vram_mib or 1,
                caps[0].power_limit_mw or 1_000_000, "eu-west", gpu_uuids=list(source.uuids),
                gpm=all(c.gpm for c in caps),
            ).node_id  # fmt: skip
            now = chain.now()
            plan: tuple[tuple[str, list[int], int, str], ...]
            if node.real:
                mode = "sm_active" if all(c.gpm for c in caps) else "metered"
                plan = ((mode, list(range(len(caps))), PRICE_SM_ACTIVE if mode == "sm_active" else PRICE_METERED, "A"),)
            else:
                plan = SIM_OFFERS
            offers: dict[str, int] = {}
            for mode, gpus, price, _ in plan:
                published = pcl.publish_offer(node_id, gpus, price, now, now + 7 * 86_400, billing_mode=mode)  # type: ignore[arg-type]
                offers[mode] = published.offer_id
            what = f"{len(caps)}x {source.model_names[0]}, real GPUs" if node.real else f"{GPU_SPEC}, simulated"
            _step(3, f"provider {prov.address} registered node {node_id} ({what}) and offers {offers}")

            # --- buyers ---------------------------------------------------------------------------
            listing = http.offers(sort="price").offers
            print("      buyers compare offers (GET /v1/offers?sort=price):", file=sys.stderr)
            for o in listing:
                print(
                    f"        offer {o.offer_id}: {o.gpu_count}x {o.gpu_model} {o.billing_mode:<9} "
                    f"{_eth(o.price_per_gpu_hour)} per GPU-hour, region {o.region}",
                    file=sys.stderr,
                )
            # A pays only for busy time, B takes the cheaper reserved rate, C pays for the SMs' work only.
            leases: list[dict[str, Any]] = []
            for mode, gpus, _, name in plan:
                acct = http.create_account(["buyer"])
                bcl = http.with_api_key(acct.api_key)
                bcl.faucet(acct.address, 10**19)
                b: dict[str, Any] = {"address": acct.address, "client": bcl, "name": name}
                # the client sends an Idempotency-Key and reuses it on every retry: the lease is escrowed once
                lease_id = bcl.open_lease(offers[mode], LEASE_S, idempotency_key=f"demo-open-{name}").lease_id
                pcl.activate_lease(lease_id)
                lease = bcl.lease(lease_id)
                summary.escrowed += lease.money.escrow
                summary.fee += lease.money.fee
                leases.append({"id": lease_id, "buyer": b, "mode": mode, "doc": lease, "gpus": gpus})
                print(
                    f"      buyer {name} {acct.address} opened lease {lease_id} ({mode}): escrow "
                    f"{_eth(lease.money.escrow)} + fee {_eth(lease.money.fee)} for {LEASE_S} s x {len(gpus)} GPUs",
                    file=sys.stderr,
                )
            _step(4, f"{len(leases)} buyer(s) without wallets opened leases {[x['id'] for x in leases]} with escrow via the API")

            # --- attestor ---------------------------------------------------------------------------
            builder = ReportBuilder(
                Signer(bytes(attestor_key.key)),
                chain.chain_id,
                deployment.escrow,
                node.policy,
                driver_version=source.driver_version,
                nvml_version=source.nvml_version,
                simulated=source.simulated,
                util_buffer=not source.needs_polling(),
                gpm=all(c.gpm for c in caps),
            )
            spool_dir = out_dir / "attestor"
            spool_dir.mkdir(parents=True, exist_ok=True)
            att = Attestor(
                node_id=node_id,
                source=source,
                builder=builder,
                spool=Spool(spool_dir / "spool.sqlite"),
                leases=BridgeLeases(BridgeClient(base), node_id),
                sink_factory=lambda: BridgeClient(base),
                clock=node.clock,
            )
            if node.real:
                table = _meter_real(att, node, leases, windows, chain, services, http, summary)
            else:
                table = None
                _meter_simulated(att, node, leases, windows, chain, services, http, summary)
            if att.sender.depth():
                raise DemoError(f"{att.sender.depth()} report(s) were not acknowledged by the bridge")
            att.close()
            _step(5, f"attestor signed and submitted {summary.reports} reports; bridge acknowledged all")
            _step(6, f"relayer settled {summary.checkpoints} checkpoint(s) in {summary.batches} settleBatch transaction(s)")

            # --- close, release, withdraw, rate ----------------------------------------------------
            for x in leases:
                b = x["buyer"]
                closed = b["client"].close_lease(x["id"], idempotency_key=f"demo-close-{b['name']}")
                (ev,) = closed.events_named("LeaseClosed")
                x["charged"], x["refund"] = ev.int_arg("charged"), ev.int_arg("refund")
                summary.paid += x["charged"]
                summary.refunded += x["refund"]
                doc_usage = http.lease(x["id"]).usage
                usage = doc_usage.model_dump(by_alias=True) if doc_usage is not None else {}
                print(
                    f"      buyer {b['name']} closed lease {x['id']} ({x['mode']}): charged {_eth(x['charged'])}, "
                    f"unused escrow refunded {_eth(x['refund'])}; {_usage_line(usage)}",
                    file=sys.stderr,
                )
            chain.time_travel(chain.now() + int(deployment.challenge_period_s) + 1)
            for x in leases:
                pcl.release_earnings(x["id"])
            earned = pcl.balance(prov.address).withdrawable_wei
            pcl.withdraw(idempotency_key="demo-wd-p")
            for x in leases:
                b = x["buyer"]
                refund = http.balance(b["address"]).withdrawable_wei
                b["client"].withdraw(idempotency_key=f"demo-wd-{b['name']}")
                b["client"].rate(x["id"], 4 if x["mode"] == "reserved" else 5)
                summary.fee_refunded += http.lease(x["id"]).money.fee_refund
                print(f"      buyer {b['name']} withdrew {_eth(refund)} (escrow and fee refunds) and rated the provider", file=sys.stderr)
            rep = http.reputation(prov.address)
            _step(
                7,
                f"challenge period passed: provider withdrew {_eth(earned)}; "
                f"provider score {rep.score_bps} bps from {rep.counts}",
            )

            # --- audit ------------------------------------------------------------------------------
            ids = [x["id"] for x in leases]
            summary.report_path = str(out_dir / "audit.html")
            try:
                with ApiSource(base, chain=chain, deployment=deployment) as src:  # the chain: the root of trust
                    audits = audit_run(src, ids)
            except AuditError as e:  # the bridge's data could not be read: no verdict, not a pass
                raise DemoError(f"the auditor could not read the bridge's public data: {e}") from e
            for _, verdict in audits:
                print(format_table(verdict), file=sys.stderr)
            Path(summary.report_path).write_text(render_html(audits))
            all_ok = all(v.ok for _, v in audits)
            summary.verdict = "PASS" if all_ok else "FAIL"
            _step(8, f"auditor verified leases {ids} from the bridge's public data: {summary.verdict}")
            if table is not None:
                print(table, file=sys.stderr)
            http.close()

        end_block = read.block_number()
        gas = {b: int(read.block(b)["gasUsed"]) for b in range(start_block + 1, end_block + 1)}
        summary.gas_used = sum(gas.values())
        summary.gas_deploy = sum(g for b, g in gas.items() if b <= deployed_block)
        return summary
    finally:
        chain.close()


def _usage_line(usage: dict[str, Any]) -> str:
    """"busy 1.2 GPU-h, SM-active 0.9 GPU-h (75 % of busy)" from a lease document's usage section."""
    if not usage:
        return "no usage reported"
    busy = int(usage.get("busyMs", 0))
    sm = usage.get("smActiveMs")
    line = f"allocated {int(usage.get('allocatedMs', 0)) / 3.6e6:.3f} GPU-h, busy {busy / 3.6e6:.3f} GPU-h"
    if sm is not None:
        share = usage.get("smActiveShareOfBusyPct")
        line += f", SM-active {int(sm) / 3.6e6:.3f} GPU-h" + (f" ({share} % of busy)" if share is not None else "")
    return line


def _settle_now(services: Any, http: ComputeLedger, leases: list[dict[str, Any]], summary: Summary, label: str) -> None:
    n = services.relayer.flush()
    if n:
        summary.batches += 1
    summary.checkpoints += n
    cps = [http.lease(x["id"]).checkpoint for x in leases]
    print(
        f"      {label}: relayer settled {n} checkpoint(s) in one settleBatch; charged so far "
        + ", ".join(f"lease {x['id']} {_eth(c.charged)}" for x, c in zip(leases, cps)),
        file=sys.stderr,
    )


def _meter_simulated(
    att: Attestor, node: DemoNode, leases: list[dict[str, Any]], windows: int, chain: Any, services: Any,
    http: ComputeLedger, summary: Summary,
) -> None:  # fmt: skip
    """The attestor's own loop steps, on the demo's accelerated clock: a collect every sampling period (the
    simulated driver answers for the time that passed), a report per lease every window."""
    clock = node.clock
    assert isinstance(clock, ManualClock)
    policy = node.policy
    clock.set_us(max(clock(), max(x["doc"].start_ms for x in leases) * 1000 + 1_000))
    att.watcher.poll_once()
    att.refresh_leases()
    att.collect()  # the leases just started: their first samples begin here
    per_window = policy.window_ms // policy.sample_period_ms
    print(
        f"      the node's attestor meters on an accelerated clock: {windows} windows of "
        f"{policy.window_ms // 1000} s ({policy.sample_period_ms // 1000} s samples from the driver's 200 ms "
        "buffer) in a few seconds; chain time moved along",
        file=sys.stderr,
    )
    for w in range(1, windows + 1):
        for k in range(per_window):
            clock.advance_ms(policy.sample_period_ms)
            att.collect(read_energy=True if k == per_window - 1 else None)
        att.close_windows()
        chain.time_travel(clock.wall_ms() // 1000 + 1)
        summary.reports += att.sender.send_due()
        if w % 5 == 0 or w == windows:
            _settle_now(services, http, leases, summary, f"window {w}")


def _meter_real(
    att: Attestor, node: DemoNode, leases: list[dict[str, Any]], windows: int, chain: Any, services: Any,
    http: ComputeLedger, summary: Summary,
) -> str:  # fmt: skip
    """The attestor's daemon loop in real time on this machine's GPUs, with a built-in load where PyTorch is
    importable; returns the table of each window's busy time next to the driver's own figures."""
    from .gpu_load import DriverWatch, MatmulLoad

    lease = leases[0]
    policy = node.policy
    load = MatmulLoad.start(len(node.source.uuids))
    watch = DriverWatch(node.source)
    print(
        f"      attestor meters {len(node.source.uuids)} GPU(s) in real time: {windows} windows of "
        f"{policy.window_ms // 1000} s; load: {load.describe() if load else 'none built in (PyTorch not importable): whatever runs on the GPUs'}",
        file=sys.stderr,
    )
    stop = threading.Event()
    t = threading.Thread(target=att.run, args=(stop,), name="attestor", daemon=True)
    t.start()
    deadline = time.monotonic() + windows * policy.window_ms / 1000 + 60
    try:
        while time.monotonic() < deadline:
            watch.poll()
            if len(http.reports(lease["id"], limit=1000, samples=False).reports) >= windows:
                break
            time.sleep(1.0)
        else:
            raise DemoError(f"the attestor did not deliver {windows} reports in time")
    finally:
        stop.set()
        t.join(30)
        if load is not None:
            load.stop()
    summary.reports = len(http.reports(lease["id"], limit=1000, samples=False).reports)
    _settle_now(services, http, leases, summary, "after metering")
    entries = http.reports(lease["id"], limit=1000, samples=False).reports
    return watch.table([e.report for e in entries], lease["gpus"], load)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compute-ledger demo", description="Run the whole story end to end.")
    p.add_argument("--backend", choices=["memory", "anvil"], default="memory", help="chain to run on (default: memory)")
    p.add_argument(
        "--windows", type=int, default=None,
        help="metering windows to run (default 12 of 60 s simulated; with --gpu 3 of 20 s in real time)",
    )  # fmt: skip
    p.add_argument("--gpu", action="store_true", help="run in real time on this machine's NVIDIA GPUs")
    p.add_argument("--out", type=Path, default=Path(".data/demo"), help="where to write state and the audit report")
    args = p.parse_args(list(argv or []))
    if args.windows is None:
        args.windows = 3 if args.gpu else 12
    if not 1 <= args.windows <= 60:
        p.error("--windows must be between 1 and 60 (the lease is one hour)")
    node = None
    if args.gpu:
        try:
            node = DemoNode.gpus()
        except NoDriverError:
            print("compute-ledger demo --gpu: no NVIDIA driver found (run it without --gpu for the simulated node)",
                  file=sys.stderr)  # fmt: skip
            return 2
    for name in ("api", "attestor", "httpx", "alembic", "uvicorn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.out.exists():
        shutil.rmtree(args.out)  # the demo always starts from a fresh chain
    t0 = time.monotonic()
    try:
        s = run_demo(args.backend, args.windows, args.out, node)
    except DemoError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    except LedgerClientError as e:  # the bridge refused a step, or could not be reached
        where = f"{e.method} {e.path}: " if isinstance(e, ApiError) else ""
        print(f"demo failed: {where}{e}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.source.close()
    elapsed = time.monotonic() - t0
    _step(9, f"done in {elapsed:.1f} s")
    print("")
    print("Summary")
    print(f"  escrowed      {_eth(s.escrowed)}")
    print(f"  platform fee  {_eth(s.fee - s.fee_refunded)}  ({_eth(s.fee)} escrowed, unused part refunded)")
    print(
        f"  paid          {_eth(s.paid)}  (attested GPU time only: allocated for reserved, busy for metered, "
        "SM-active for sm_active)"
    )
    print(f"  refunded      {_eth(s.refunded)}")
    print(f"  reports       {s.reports} signed, hash-chained, Merkle-committed")
    print(f"  settlements   {s.checkpoints} checkpoints in {s.batches} settleBatch transaction(s)")
    print(f"  gas used      {s.gas_used - s.gas_deploy:,} by the story's transactions (+{s.gas_deploy:,} to deploy)")
    print(f"  audit verdict {s.verdict}")
    print(f"  audit report  {s.report_path}")
    return 0 if s.verdict == "PASS" else 1
