"""``compute-ledger audit``: verify a lease (or every lease) from public data.

  compute-ledger audit lease ID [source] [--json] [--report FILE.html] [--spot-check K]
  compute-ledger audit all      [source] [--json] [--report FILE.html] [--spot-check K]

Sources:
  --api URL                                        the bridge's HTTP API (default http://127.0.0.1:8000)
  --rpc URL --deployment FILE --archive FILE       the chain directly plus a samples archive (JSON lines),
                                                   trusting no bridge

Exit status: 0 every check of every lease holds (warnings allowed); 1 a check failed; 2 usage error;
3 the audit could not run (source unreachable or malformed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import IO, Sequence

from .core import BILLING_BASIS, AuditError, AuditInput, LeaseUsage, Verdict, describe_flags, lease_usage, verify_lease
from .report_html import render_html
from .sources import DEFAULT_SAMPLE_PERIOD_MS, ApiSource, ArchiveSource, AuditSource, ChainLeaseReader, ChainSource

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
DEFAULT_API = "http://127.0.0.1:8000"


class ProgressBar:
    """A one-line progress bar on a terminal; on anything else only a final line per lease."""

    def __init__(self, stream: IO[str], *, enabled: bool = True) -> None:
        self._out = stream
        self._tty = enabled and stream.isatty()
        self._enabled = enabled
        self._label = ""
        self._last = 0.0

    def start(self, label: str) -> None:
        self._label = label
        if self._tty:
            self._out.write(f"\r{label}: loading…\033[K")
            self._out.flush()

    def update(self, done: int, total: int) -> None:
        if not self._tty:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.05:  # redraw at most 20 times a second
            return
        self._last = now
        width = 30
        fill = width * done // max(1, total)
        self._out.write(f"\r{self._label}: [{'#' * fill}{'.' * (width - fill)}] {done}/{total} reports\033[K")
        self._out.flush()

    def finish(self, verdict: Verdict) -> None:
        if not self._enabled:
            return
        word = "verified" if verdict.ok else f"FAILED ({len(verdict.failures)} failed checks)"
        line = f"{self._label}: {verdict.reports} reports, {verdict.settlements} checkpoints — {word}"
        self._out.write(("\r" + line + "\033[K\n") if self._tty else line + "\n")
        self._out.flush()


MAX_WINDOW_ROWS = 20  # per lease in the text output (--json lists every window)


def _gpu_s(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _pct(bps: int | None) -> str:
    return "-" if bps is None else f"{bps // 100}.{bps % 100:02d} %"


def format_usage(usage: LeaseUsage) -> str:
    """What the reports metered, per window and in total: allocated, busy and SM-active GPU-seconds side by
    side with the SM-active share of busy time; the billing basis; the flags in words."""
    rows = [("window", "allocated GPU-s", "busy GPU-s", "SM-active GPU-s", "SM-active share of busy", "flags")]
    shown = usage.windows[:MAX_WINDOW_ROWS]
    for w in shown:
        flags = ",".join(name for name, _ in describe_flags(w.flags))
        rows.append(
            (str(w.seq), _gpu_s(w.allocatedMs), _gpu_s(w.busyMs), _gpu_s(w.smActiveMs), _pct(w.sm_share_of_busy_bps),
             flags)
        )  # fmt: skip
    if len(usage.windows) > len(shown):
        rows.append((f"… {len(usage.windows) - len(shown)} more", "", "", "", "", "(--json lists every window)"))
    rows.append(
        ("total", _gpu_s(usage.allocatedMs), _gpu_s(usage.busyMs), _gpu_s(usage.smActiveMs),
         _pct(usage.sm_share_of_busy_bps), "")
    )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["usage (what the reports metered; the checks above say whether it holds):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(
        f"billing basis: {BILLING_BASIS[usage.billingMode]}: {_gpu_s(usage.billableMs)} GPU-s billable by the reports"
    )
    if any((w.sm_share_of_busy_bps or 0) > 10_000 for w in usage.windows):
        lines.append(
            "note: SM-active time above busy time where utilization samples were lost (busy time counts only "
            "the covered part) or GPM and the driver's utilization periods do not line up"
        )
    for name, words in describe_flags(usage.flags):
        lines.append(f"flag {name}: {words}")
    return "\n".join(lines)


def format_table(verdict: Verdict, usage: LeaseUsage | None = None) -> str:
    """The verdict as a plain-text table: check, result, detail (failures name their report); with ``usage``,
    what the reports metered below it (:func:`format_usage`)."""
    rows = [("check", "result", "detail")]
    for r in verdict.results:
        detail = r.detail if r.report_seq is None else f"report {r.report_seq}: {r.detail}"
        rows.append((r.check, r.status, detail))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    lines.insert(1, f"{'-' * w0}  {'-' * w1}  {'-' * 6}")
    verdict_word = "VERIFIED" if verdict.ok else "FAILED"
    head = f"lease {verdict.leaseId}: {verdict_word}"
    out = head + "\n" + "\n".join(lines)
    if usage is not None and usage.windows:
        out += "\n" + format_usage(usage)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compute-ledger audit",
        description="Verify metering proofs and payments of a lease from public data.",
        epilog="exit status: 0 all checks hold, 1 a check failed, 2 usage error, 3 audit could not run",
    )
    p.add_argument("target", choices=["lease", "all"], help="one lease, or every lease the source knows")
    p.add_argument("lease_id", nargs="?", type=int, help="the lease id (with 'lease')")
    src = p.add_argument_group("source (default: --api %s)" % DEFAULT_API)
    src.add_argument("--api", metavar="URL", help="the bridge's base URL")
    src.add_argument("--rpc", metavar="URL", help="an EVM JSON-RPC URL (with --deployment and --archive)")
    src.add_argument("--deployment", type=Path, metavar="FILE", help="deployment record (JSON) of the contracts")
    src.add_argument("--archive", type=Path, metavar="FILE", help="samples archive exported by a bridge (JSON lines)")
    src.add_argument(
        "--period-ms",
        type=int,
        default=DEFAULT_SAMPLE_PERIOD_MS,
        help=f"attestor sampling period for --rpc audits (default {DEFAULT_SAMPLE_PERIOD_MS}, the attestor's default)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--report", type=Path, metavar="FILE.html", help="also write a self-contained HTML report")
    p.add_argument("--spot-check", type=int, metavar="K", help="fetch K proven samples per report, not all")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    return p


def _chain_source(args: argparse.Namespace) -> AuditSource:
    return ChainSource(
        ChainLeaseReader.connect(args.rpc, args.deployment, sample_period_ms=args.period_ms),
        ArchiveSource(args.archive),
    )


def open_source(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AuditSource:
    """The source the arguments ask for; argument errors go through ``parser`` (exit 2)."""
    if args.rpc or args.deployment or args.archive:
        if args.api:
            parser.error("give either --api or --rpc/--deployment/--archive, not both")
        missing = [n for n in ("rpc", "deployment", "archive") if not getattr(args, n)]
        if missing:
            parser.error("the chain source needs " + ", ".join("--" + m for m in missing))
        return _chain_source(args)
    return ApiSource(args.api or DEFAULT_API)


def run(
    source: AuditSource,
    lease_ids: Sequence[int],
    *,
    spot_check_k: int | None = None,
    progress: ProgressBar | None = None,
) -> list[tuple[AuditInput, Verdict]]:
    """Load and verify each lease; raises :class:`AuditError` when a source fails."""
    out = []
    for lease_id in lease_ids:
        if progress is not None:
            progress.start(f"lease {lease_id}")
        inp = source.load(lease_id, spot_check_k)
        verdict = verify_lease(inp, spot_check_k, progress=progress.update if progress is not None else None)
        if progress is not None:
            progress.finish(verdict)
        out.append((inp, verdict))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.target == "lease" and args.lease_id is None:
        parser.error("'lease' needs a lease ID")
    if args.target == "all" and args.lease_id is not None:
        parser.error("'all' takes no lease ID")
    if args.spot_check is not None and args.spot_check < 1:
        parser.error("--spot-check K needs K ≥ 1")
    try:
        source = open_source(args, parser)
    except AuditError as e:
        print(f"compute-ledger audit: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    progress = ProgressBar(sys.stderr, enabled=not args.quiet)
    try:
        ids = [args.lease_id] if args.target == "lease" else source.lease_ids()
        audits = run(source, ids, spot_check_k=args.spot_check, progress=progress)
    except AuditError as e:
        print(f"compute-ledger audit: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()

    ok = all(v.ok for _, v in audits)
    if args.json:
        leases = [{**v.to_json(), "usage": lease_usage(i).to_json()} for i, v in audits]
        print(json.dumps({"ok": ok, "leases": leases}, indent=2))
    else:
        for i, v in audits:
            print(format_table(v, lease_usage(i)))
            print()
        failed = [v.leaseId for _, v in audits if not v.ok]
        if not audits:
            print("no leases to audit")
        elif failed:
            print(f"{len(failed)} of {len(audits)} lease(s) FAILED: {', '.join(map(str, failed))}")
        else:
            print(f"all {len(audits)} lease(s) verified")
    if args.report is not None:
        try:
            args.report.write_text(render_html(audits), encoding="utf-8")
        except OSError as e:
            print(f"compute-ledger audit: cannot write {args.report}: {e}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        if not args.quiet:
            print(f"wrote {args.report}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
