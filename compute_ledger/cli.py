"""``compute-ledger``: the one console command, with subcommands.

  compile [--check]            build contract artifacts / prove the committed ones are fresh
  chain --backend anvil        run a local chain node in the foreground
  demo                         the whole story end to end on the embedded chain
  serve                        the HTTP bridge (FastAPI)
  attest ...                   the metering daemon for a GPU node
  audit ...                    verify metering proofs and payments independently
  vouchers report ...          a compute-voucher programme's redemption report, from the chain alone
  price-index ...              the verified price index, recomputed from the chain alone
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from ledger.protocol.errors import LedgerError

log = logging.getLogger("compute_ledger")

# Subcommands implemented in other packages: name -> (module, help). Each module has main(argv) -> int.
DELEGATED: dict[str, tuple[str, str]] = {
    "demo": ("compute_ledger.demo", "run the whole story end to end on the embedded chain"),
    "serve": ("compute_ledger.serve", "run the HTTP bridge (and its web market)"),
    "attest": ("attestor.cli", "run the metering daemon of a GPU node"),
    "audit": ("auditor.cli", "verify metering proofs and payments"),
    "vouchers": ("compute_ledger.vouchers_cli", "compute-voucher reports from the chain alone"),
    "price-index": ("compute_ledger.price_index_cli", "the verified price index from the chain alone"),
}


def _cmd_compile(args: argparse.Namespace) -> int:
    from ledger.chain.compiler import check_artifacts, compile_contracts

    if args.check:
        stale = check_artifacts()
        for s in stale:
            print(f"stale artifact: {s.contract}: {s.reason}", file=sys.stderr)
        if stale:
            print("run `compute-ledger compile` and commit ledger/chain/artifacts/", file=sys.stderr)
            return 1
        print("artifacts are fresh", file=sys.stderr)
        return 0
    t0 = time.monotonic()
    print("compiling contracts/src ...", file=sys.stderr)
    names = compile_contracts()
    print(f"wrote {len(names)} artifacts in {time.monotonic() - t0:.1f}s: {', '.join(names)}", file=sys.stderr)
    return 0


def _cmd_chain(args: argparse.Namespace) -> int:
    from ledger.chain.backends import connect

    chain = connect(args.backend, rpc_url=args.rpc_url, data_dir=args.data_dir, anvil_port=args.port)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    where = chain.rpc_url or "in process"
    print(f"{chain.backend} chain {chain.chain_id} at {where}; Ctrl-C to stop", file=sys.stderr)
    for addr in chain.accounts[:3]:
        print(f"  dev account {addr}", file=sys.stderr)
    try:
        while not stop:
            time.sleep(0.2)
    finally:
        chain.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compute-ledger", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("compile", help="compile contracts into ledger/chain/artifacts")
    c.add_argument("--check", action="store_true", help="fail (exit 1) naming any stale artifact")
    c.set_defaults(func=_cmd_compile)

    ch = sub.add_parser("chain", help="run a local chain node in the foreground")
    ch.add_argument("--backend", choices=["anvil", "rpc", "memory"], default="anvil")
    ch.add_argument("--rpc-url", default=None)
    ch.add_argument("--data-dir", type=Path, default=Path(".data/chain"))
    ch.add_argument("--port", type=int, default=8545)
    ch.set_defaults(func=_cmd_chain)

    for name, (_, help_text) in DELEGATED.items():
        d = sub.add_parser(name, help=help_text, add_help=False)
        d.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Delegated subcommands parse their own arguments (including --help).
    if argv and argv[0] in DELEGATED:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up talks at INFO on import
        module_name = DELEGATED[argv[0]][0]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                print(f"compute-ledger: '{argv[0]}' is not available in this build", file=sys.stderr)
                return 2
            raise
        entry: Callable[[list[str]], int] = module.main
        try:
            return int(entry(argv[1:]) or 0)
        except LedgerError as e:
            print(f"compute-ledger {argv[0]}: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except LedgerError as e:
        print(f"compute-ledger {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
