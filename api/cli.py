"""``compute-ledger serve``: run the bridge with uvicorn (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from .services.web_audit import WebAuditor
from .settings import Settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compute-ledger serve", description="run the HTTP bridge")
    p.add_argument("--backend", choices=("memory", "anvil", "rpc"), help="chain backend (default: memory)")
    p.add_argument("--rpc-url", help="JSON-RPC URL for the rpc backend")
    p.add_argument("--public-rpc-url", help="the RPC URL GET /v1/chain publishes for auditors")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data directory)")
    p.add_argument("--data-dir", type=Path, help="state directory (database, deployment record, anvil state)")
    p.add_argument("--deployment", type=Path, help="deployment record JSON (default <data-dir>/deployment.json)")
    p.add_argument("--relayer-keystore", type=Path, help="keystore JSON of the relayer key")
    p.add_argument("--confirmations", type=int, help="blocks to wait before indexing an event")
    p.add_argument("--settle-every", type=float, help="seconds between settlements of a lease")
    p.add_argument(
        "--challenge-period", type=int,
        help="dev chains: the challenge period (s) of the suite the bridge deploys (default 3600)",
    )  # fmt: skip
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def main(argv: Sequence[str] | None = None, *, auditor: "WebAuditor | None" = None) -> int:
    """Settings come from LEDGER_API_* environment variables, overridden by the flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")

    overrides: dict[str, object] = {}
    for flag, key in (
        ("backend", "chain_backend"),
        ("rpc_url", "rpc_url"),
        ("public_rpc_url", "public_rpc_url"),
        ("database_url", "database_url"),
        ("data_dir", "data_dir"),
        ("deployment", "deployment_file"),
        ("relayer_keystore", "relayer_keystore"),
        ("confirmations", "confirmations"),
        ("settle_every", "settle_every_s"),
        ("challenge_period", "dev_challenge_period_s"),
        ("host", "host"),
        ("port", "port"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        settings.check_secret()
    except (ValidationError, ValueError) as e:
        parser.error(str(e).splitlines()[0] if isinstance(e, ValueError) and not isinstance(e, ValidationError) else str(e))
    import uvicorn

    from .app import create_app

    app = create_app(settings, auditor=auditor)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False)
    return 0




if __name__ == "__main__":
    raise SystemExit(main())
