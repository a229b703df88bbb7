"""``compute-ledger attest ...``: the metering daemon of a GPU node.

  keygen   write a new encrypted keystore for the node's attestor key (prints its address)
  run      sample the GPUs, close windows, sign reports, spool them and send them to the bridge
  status   spool depth, last acknowledged seq per lease, last error
  gpus     the node's GPUs in registered order, with the keccak(UUID) hashes to register on-chain

The keystore password comes from ``--password-file`` or an environment variable (default
``$COMPUTE_LEDGER_ATTESTOR_PASSWORD``), never from a flag. Exit codes: 0 ok, 1 error, 2 usage or no NVIDIA
driver (``--simulate`` runs without one).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry

from ledger.protocol import gpu_uuid_hash

from .bridge import BridgeClient, BridgeLeases, LeaseProvider, ReportSink, StaticLeases, SubmitOutcome
from .clock import Clock, ScaledClock, SystemClock
from .config import FileConfig, load_config
from .daemon import Attestor, Backoff
from .errors import AttestorError, ConfigError, NoDriverError
from .keys import create_keystore, load_signer, read_password
from .meter import DEFAULT_SAMPLE_PERIOD_MS, DEFAULT_WINDOW_MS, ReportBuilder, SamplingPolicy
from .metrics import Metrics
from .nvml import NvmlSource
from .simdriver import PROFILES, simulated_source
from .source import GpuSource
from .spool import Spool, SpooledReport

log = logging.getLogger("attestor")

DEFAULT_DATA_DIR = Path(".data/attestor")


def _password_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--password-file", type=Path, default=None, help="file whose first line is the keystore password")
    p.add_argument(
        "--password-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the password (default COMPUTE_LEDGER_ATTESTOR_PASSWORD)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compute-ledger attest", description="the metering daemon of a GPU node")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    k = sub.add_parser("keygen", help="write a new encrypted keystore and print its address")
    k.add_argument("--data-dir", type=Path, default=None, help=f"the node's data directory (default {DEFAULT_DATA_DIR})")
    k.add_argument("--keystore", type=Path, default=None, help="keystore path (default <data-dir>/keystore.json)")
    _password_args(k)
    k.add_argument("--kdf", choices=["scrypt", "pbkdf2"], default="scrypt")
    k.add_argument("--kdf-iterations", type=int, default=None, help="pbkdf2 iterations (tests use few)")
    k.add_argument("--force", action="store_true", help="overwrite an existing keystore")

    r = sub.add_parser("run", help="meter the node's active leases")
    r.add_argument("--config", type=Path, default=None, help="TOML or JSON config file (flags override it)")
    r.add_argument("--node-id", type=int, default=None)
    r.add_argument("--api", default=None, help="bridge URL, e.g. http://127.0.0.1:8000")
    r.add_argument("--simulate", default=None, metavar="SPEC", help="simulated GPUs, e.g. 8xH100")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="steady",
        help="the simulated GPUs' load: " + "; ".join(f"{k}: {v}" for k, v in PROFILES.items()),
    )
    r.add_argument("--data-dir", type=Path, default=None, help=f"spool and keystore (default {DEFAULT_DATA_DIR})")
    r.add_argument("--keystore", type=Path, default=None)
    _password_args(r)
    r.add_argument("--chain-id", type=int, default=None)
    r.add_argument("--escrow", default=None, help="LeaseEscrow address (asked from the bridge if absent)")
    r.add_argument(
        "--sample-period-ms",
        type=int,
        default=None,
        help=f"how often each GPU's interval is closed into a sample (default {DEFAULT_SAMPLE_PERIOD_MS})",
    )
    r.add_argument(
        "--window-ms",
        type=int,
        default=None,
        help=f"how often a report is closed, a multiple of the period (default {DEFAULT_WINDOW_MS})",
    )
    r.add_argument("--lease-refresh-ms", type=int, default=None)
    r.add_argument("--backoff-base-ms", type=int, default=500)
    r.add_argument("--backoff-max-ms", type=int, default=60_000)
    r.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics (off by default)")
    r.add_argument("--metrics-addr", default="127.0.0.1")
    r.add_argument(
        "--clock-speed", type=int, default=1, help="run time N times faster (with --simulate only: demos)"
    )
    r.add_argument("--once", action="store_true", help="meter one window, send, exit (1 if unsent)")
    r.add_argument("--once-timeout", type=float, default=10.0, help="seconds to try sending with --once")

    s = sub.add_parser("status", help="spool depth, last acknowledged seq per lease, last error")
    s.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    s.add_argument("--json", action="store_true")

    g = sub.add_parser("gpus", help="list the node's GPUs and their UUID hashes")
    g.add_argument("--simulate", default=None, metavar="SPEC")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--config", type=Path, default=None)
    g.add_argument("--json", action="store_true", help="one JSON list: index, uuid, uuidHash, model, vramMiB, ...")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    else:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise at INFO
    try:
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "run":
            return _run(args, parser)
        if args.command == "status":
            return _status(args)
        return _gpus(args)
    except NoDriverError as e:
        print(str(e), file=sys.stderr)
        return 2
    except AttestorError as e:
        print(f"compute-ledger attest {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _keygen(args: argparse.Namespace) -> int:
    password = read_password(args.password_file, args.password_env)
    keystore = args.keystore or (args.data_dir or DEFAULT_DATA_DIR) / "keystore.json"
    address = create_keystore(keystore, password, kdf=args.kdf, iterations=args.kdf_iterations, overwrite=args.force)
    print(address)
    log.info("wrote keystore %s for attestor %s", keystore, address)
    return 0


def _status(args: argparse.Namespace) -> int:
    path = Path(args.data_dir) / "spool.sqlite"
    if not path.exists():
        print(f"no spool at {path}", file=sys.stderr)
        return 1
    spool = Spool(path)
    try:
        st = spool.status()
    finally:
        spool.close()
    if args.json:
        print(
            json.dumps(
                {
                    "spoolDepth": st.depth,
                    "lastError": st.last_error,
                    "leases": [
                        {
                            "leaseId": x.lease_id,
                            "lastSeq": x.last_seq,
                            "lastAckedSeq": x.last_acked_seq,
                            "unacked": x.unacked,
                            "lastError": x.last_error,
                        }
                        for x in st.leases
                    ],
                }
            )
        )
        return 0
    print(f"spool depth: {st.depth}")
    for x in st.leases:
        err = f"  last error: {x.last_error}" if x.last_error else ""
        print(
            f"lease {x.lease_id}: last seq {x.last_seq}, last acknowledged seq {x.last_acked_seq},"
            f" unacknowledged {x.unacked}{err}"
        )
    print(f"last error: {st.last_error or '-'}")
    return 0


def _open_source(
    simulate: str | None, seed: int, profile: str, gpus: Sequence[str] | None, clock: Clock | None = None
) -> GpuSource:
    """NVML over the simulated driver for ``--simulate``, else over the real one (raises NoDriverError
    without a driver)."""
    if simulate:
        sim = simulated_source(simulate, seed=seed, profile=profile, clock_us=None if clock is None else clock.wall_us)
        if gpus is not None and list(gpus) != list(sim.uuids):
            log.warning("--simulate ignores the configured GPU UUIDs (simulated UUIDs come from the seed)")
        return sim
    src = NvmlSource(gpus)
    if gpus is None:
        log.warning("no GPU list configured: using NVML's enumeration order; it must match the registered order")
    return src


def _lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Hold an exclusive lock on ``data_dir/attestor.lock`` for the process's life (released even on SIGKILL)."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    f = open(data_dir / "attestor.lock", "ab")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise ConfigError(f"another attestor is running on {data_dir}") from None
    return f


def _gpus(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config else None
    src = _open_source(args.simulate, args.seed, "idle", None if cfg is None else cfg.gpus)
    try:
        caps = src.capabilities()
        if args.json:
            print(json.dumps([
                {
                    "index": i, "uuid": c.uuid, "uuidHash": "0x" + gpu_uuid_hash(c.uuid).hex(), "model": c.name,
                    "vramMiB": c.vram_mib, "powerLimitMw": c.power_limit_mw, "utilBuffer": c.util_buffer,
                    "utilBufferSpanMs": c.util_buffer_span_ms, "gpm": c.gpm, "simulated": src.simulated,
                }
                for i, c in enumerate(caps)
            ]))  # fmt: skip
            return 0
        sim = " (simulated)" if src.simulated else ""
        print(f"driver {src.driver_version}, NVML {src.nvml_version}{sim}")
        print("#\tUUID\tkeccak256(UUID)\tmodel\tVRAM\tpower limit\tbusy time from\tSM activity (GPM)")
        for i, c in enumerate(caps):
            vram = "-" if c.vram_mib is None else f"{c.vram_mib / 1024:.0f} GiB"
            power = "-" if c.power_limit_mw is None else f"{c.power_limit_mw / 1000:.0f} W"
            if c.util_buffer:
                span = "" if c.util_buffer_span_ms is None else f", holds {c.util_buffer_span_ms / 1000:.1f} s"
                busy = f"driver sample buffer{span}"
            else:
                busy = "polled util.gpu (no sample buffer: aliases with periodic loads)"
            gpm = "yes" if c.gpm else "no (SM-active billing unavailable)"
            print(f"{i}\t{c.uuid}\t0x{gpu_uuid_hash(c.uuid).hex()}\t{c.name}\t{vram}\t{power}\t{busy}\t{gpm}")
    finally:
        src.close()
    return 0


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    cfg = load_config(args.config) if args.config else FileConfig()
    node_id = args.node_id if args.node_id is not None else cfg.node_id
    if node_id is None:
        parser.error("--node-id is required (or node_id in --config)")
    api = args.api or cfg.api
    if not api and not cfg.leases:
        parser.error("nothing to meter: give --api (the bridge) or static leases in --config")
    data_dir = args.data_dir or cfg.data_dir or DEFAULT_DATA_DIR
    keystore = args.keystore or cfg.keystore or data_dir / "keystore.json"
    policy = SamplingPolicy(
        sample_period_ms=_first_set(args.sample_period_ms, cfg.sample_period_ms, DEFAULT_SAMPLE_PERIOD_MS),
        window_ms=_first_set(args.window_ms, cfg.window_ms, DEFAULT_WINDOW_MS),
    )
    if args.clock_speed < 1:
        parser.error("--clock-speed must be at least 1")
    if args.clock_speed != 1 and not args.simulate:
        parser.error("--clock-speed needs --simulate: a real driver stamps its samples with the real clock")
    clock: Clock = SystemClock() if args.clock_speed == 1 else ScaledClock(args.clock_speed)
    # The GPU source first: a machine without a driver says so before anything else is asked for.
    source = _open_source(args.simulate, args.seed, args.profile, cfg.gpus, clock)
    try:
        signer = load_signer(keystore, read_password(args.password_file, args.password_env))
        log.info("attestor %s for node %d", signer.address, node_id)

        chain_id = args.chain_id if args.chain_id is not None else cfg.chain_id
        escrow = args.escrow or cfg.escrow
        if api and (chain_id is None or escrow is None or args.clock_speed != 1):
            probe = BridgeClient(api)
            try:
                bridge_chain, bridge_escrow, chain_clock = probe.domain_info()
            finally:
                probe.close()
            chain_id = bridge_chain if chain_id is None else chain_id
            escrow = escrow or bridge_escrow
            if args.clock_speed != 1 and chain_clock != "follows":
                print(
                    "--clock-speed needs a chain whose clock can follow the attestor's (the bridge's memory "
                    "backend); this bridge's chain keeps real time and would refuse reports from the future",
                    file=sys.stderr,
                )
                return 2
        if chain_id is None or escrow is None:
            raise ConfigError("the EIP-712 domain is unknown: give --chain-id and --escrow")

        metrics: Metrics | None = None
        if args.metrics_port is not None:
            metrics = Metrics(CollectorRegistry(), source.uuids, source.model_names)
            port = metrics.serve(args.metrics_port, args.metrics_addr)
            log.info("metrics on http://%s:%d/metrics", args.metrics_addr, port)

        leases: LeaseProvider
        if api:
            leases = BridgeLeases(BridgeClient(api), node_id)
        else:
            leases = StaticLeases(cfg.leases)

        class _NoBridge:
            def submit(self, node_id: int, item: SpooledReport) -> SubmitOutcome:
                return SubmitOutcome(False, 0, error="no bridge configured (--api); report kept in the spool")

        def sink_factory() -> ReportSink:
            return BridgeClient(api) if api else _NoBridge()

        builder = ReportBuilder(
            signer,
            chain_id,
            escrow,
            policy,
            driver_version=source.driver_version,
            nvml_version=source.nvml_version,
            simulated=source.simulated,
            util_buffer=not source.needs_polling(),
            gpm=all(c.gpm for c in source.capabilities()),
        )
        lock = _lock_data_dir(Path(data_dir))  # one daemon per spool: two would fork the hash chain
        spool = Spool(Path(data_dir) / "spool.sqlite")
        attestor = Attestor(
            node_id=node_id,
            source=source,
            builder=builder,
            spool=spool,
            leases=leases,
            sink_factory=sink_factory,
            clock=clock,
            metrics=metrics,
            backoff=Backoff(args.backoff_base_ms, args.backoff_max_ms),
            lease_refresh_ms=args.lease_refresh_ms,
        )
        stop = threading.Event()

        def _stop(*_: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            return attestor.run(stop, once=args.once, once_timeout_s=args.once_timeout)
        finally:
            attestor.close()
            spool.close()
            lock.close()
            if metrics:
                metrics.stop()
    finally:
        source.close()


def _first_set(*values: int | None) -> int:
    """The first value given (0 counts as given, so SamplingPolicy can refuse it)."""
    return next(v for v in values if v is not None)


if __name__ == "__main__":
    raise SystemExit(main())
