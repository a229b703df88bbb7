"""``compute-ledger serve``: the bridge (``api.cli``) with the web market's audit page wired to the auditor."""

from __future__ import annotations

from collections.abc import Sequence

from api.cli import main as serve_main

from .web_audit import web_auditor


def main(argv: Sequence[str] | None = None) -> int:
    return serve_main(argv, auditor=web_auditor)


if __name__ == "__main__":
    raise SystemExit(main())
