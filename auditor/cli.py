"""``compute-ledger audit``: verify a lease (or every lease) from public data.

  compute-ledger audit lease ID [source] [--json] [--report FILE.html] [--spot-check K]
  compute-ledger audit all      [source] [--json] [--report FILE.html] [--spot-check K]

The chain is the auditor's root of trust: lease terms, the node's attestor history, checkpoints, money,
disputes and the chain's present are always read from the chain; a bridge (or an archive it exported)
supplies only reports, samples and proofs, each checked against what the chain committed.

Sources:
  --api URL [--rpc URL] [--deployment FILE]        reports, samples and proofs from the bridge's HTTP API
                                                   (default http://127.0.0.1:8000); the chain found through
                                                   its GET /v1/chain (chain id, RPC URL, deployment record,
                                                   verified on the chain), or through --rpc (your own node:
                                                   trust not even the URL the bridge publishes) and
                                                   --deployment (your own record of the contracts)
  --rpc URL --deployment FILE --archive FILE       the chain plus a samples archive (JSON lines): no bridge

Verdicts: each lease is VERIFIED (no check failed), FAILED (the failed checks, each naming the party to
blame: attestor, bridge or escrow), or COULD NOT AUDIT (and why: the bridge publishes no RPC URL and none
was given, the chain or bridge did not answer, an answer was malformed). `audit all` always finishes and
lists every lease the chain holds.

Exit status: 0 every lease verified (warnings allowed); 1 a check failed in at least one lease (other leases
may be unaudited: they are listed); 2 usage error; 3 no check failed but a lease, or the whole audit, could
not be audited (the reason is printed).
"""

from __future__ import annotations

import argparse
import logging
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
        if verdict.unaudited is not None:
            line = f"{self._label}: could not audit: {verdict.unaudited}"
            self._out.write(("\r" + line + "\033[K\n") if self._tty else line + "\n")
            self._out.flush()
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


def verdict_line(verdict: Verdict) -> str:
    """``lease 7: VERIFIED``, ``lease 7: FAILED``, ``lease 7: COULD NOT AUDIT: why``; the verdict's notes (an
    open dispute, an exhausted escrow, nothing to audit) in brackets."""
    if verdict.unaudited is not None:
        return f"lease {verdict.leaseId}: COULD NOT AUDIT: {verdict.unaudited}"
    head = f"lease {verdict.leaseId}: {'VERIFIED' if verdict.ok else 'FAILED'}"
    return head + (f" ({'; '.join(verdict.notes)})" if verdict.notes else "")


def format_table(verdict: Verdict, usage: LeaseUsage | None = None) -> str:
    """The verdict as a plain-text table: check, result, party (whom the check is about: the one to blame
    when it fails), detail (failures name their report); with ``usage``, what the reports metered below it
    (:func:`format_usage`)."""
    if verdict.unaudited is not None:
        return verdict_line(verdict)
    rows = [("check", "result", "party", "detail")]
    for r in verdict.results:
        detail = r.detail if r.report_seq is None else f"report {r.report_seq}: {r.detail}"
        rows.append((r.check, r.status, r.blame, detail))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c:<{w2}}  {d}" for a, b, c, d in rows]
    lines.insert(1, f"{'-' * w0}  {'-' * w1}  {'-' * w2}  {'-' * 6}")
    out = verdict_line(verdict) + "\n" + "\n".join(lines)
    if usage is not None and usage.windows:
        out += "\n" + format_usage(usage)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compute-ledger audit",
        description="Verify metering proofs and payments of a lease from public data, the chain as the root of trust.",
        epilog="exit status: 0 every lease verified, 1 a check failed, 2 usage error, 3 a lease (or the audit) "
        "could not be audited",
    )
    p.add_argument("target", choices=["lease", "all"], help="one lease, or every lease the source knows")
    p.add_argument("lease_id", nargs="?", type=int, help="the lease id (with 'lease')")
    src = p.add_argument_group("source (default: --api %s)" % DEFAULT_API)
    src.add_argument("--api", metavar="URL", help="the bridge's base URL (reports, samples, proofs)")
    src.add_argument(
        "--rpc",
        metavar="URL",
        help="an EVM JSON-RPC URL of the chain: with --api, instead of the one the bridge publishes; "
        "with --deployment and --archive, no bridge at all",
    )
    src.add_argument(
        "--deployment",
        type=Path,
        metavar="FILE",
        help="deployment record (JSON) of the contracts: with --api, instead of the bridge's",
    )
    src.add_argument("--archive", type=Path, metavar="FILE", help="samples archive exported by a bridge (JSON lines)")
    src.add_argument(
        "--period-ms",
        type=int,
        default=None,
        help="the attestor's sampling period (sets the gap tolerance): default the bridge's figure, or "
        f"{DEFAULT_SAMPLE_PERIOD_MS} (the attestor's default) for --archive audits",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--report", type=Path, metavar="FILE.html", help="also write a self-contained HTML report")
    p.add_argument("--spot-check", type=int, metavar="K", help="fetch K proven samples per report, not all")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    return p


def _chain_source(args: argparse.Namespace) -> AuditSource:
    return ChainSource(
        ChainLeaseReader.connect(args.rpc, args.deployment, sample_period_ms=args.period_ms or DEFAULT_SAMPLE_PERIOD_MS),
        ArchiveSource(args.archive),
    )


def _api_source(args: argparse.Namespace) -> AuditSource:
    dep = None
    if args.deployment is not None:
        from ledger.chain.deployment import Deployment
        from ledger.protocol.errors import LedgerError

        try:
            dep = Deployment.load(args.deployment)
        except LedgerError as e:
            raise AuditError(str(e)) from e
    return ApiSource(args.api or DEFAULT_API, rpc_url=args.rpc, deployment=dep, sample_period_ms=args.period_ms)


def open_source(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AuditSource:
    """The source the arguments ask for; argument errors go through ``parser`` (exit 2)."""
    if args.archive:
        if args.api:
            parser.error("give either --api (a bridge) or --archive (a samples archive), not both")
        missing = [n for n in ("rpc", "deployment") if not getattr(args, n)]
        if missing:
            parser.error("an --archive audit reads the chain: it needs " + ", ".join("--" + m for m in missing))
        return _chain_source(args)
    if args.rpc and not args.api:
        parser.error("--rpc reads the chain; give --api URL (the bridge) or --archive FILE for the reports")
    return _api_source(args)


AuditResult = tuple[AuditInput | None, Verdict]
"""A lease's input (None when it could not be loaded) and its verdict."""


def run(
    source: AuditSource,
    lease_ids: Sequence[int],
    *,
    spot_check_k: int | None = None,
    progress: ProgressBar | None = None,
) -> list[AuditResult]:
    """Load and verify each lease. A lease that cannot be loaded (the source failed, its answer was malformed)
    gets a "could not audit" verdict saying why; the others are audited all the same."""
    out: list[AuditResult] = []
    for lease_id in lease_ids:
        if progress is not None:
            progress.start(f"lease {lease_id}")
        inp: AuditInput | None
        try:
            inp = source.load(lease_id, spot_check_k)
        except AuditError as e:
            inp, verdict = None, Verdict.could_not_audit(lease_id, str(e))
        else:
            verdict = verify_lease(inp, spot_check_k, progress=progress.update if progress is not None else None)
        if progress is not None:
            progress.finish(verdict)
        out.append((inp, verdict))
    return out


def _could_not_audit(args: argparse.Namespace, why: str) -> int:
    """The whole audit could not run: say why where the verdicts would have been (exit 3)."""
    if args.json:
        print(json.dumps({"ok": False, "status": "could not audit", "couldNotAudit": why, "leases": []}, indent=2))
    else:
        print(f"could not audit: {why}")
    print(f"compute-ledger audit: could not audit: {why}", file=sys.stderr)
    return EXIT_UNAVAILABLE


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
        return _could_not_audit(args, str(e))
    progress = ProgressBar(sys.stderr, enabled=not args.quiet)
    if args.quiet:  # the HTTP client logs every request at INFO
        for name in ("httpx", "httpcore", "auditor"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        ids = [args.lease_id] if args.target == "lease" else source.lease_ids()
        audits = run(source, ids, spot_check_k=args.spot_check, progress=progress)
    except AuditError as e:  # the chain could not be found or read at all: no lease can be audited
        return _could_not_audit(args, str(e))
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()

    ok = all(v.ok for _, v in audits)
    failed = [v.leaseId for _, v in audits if v.status == "failed"]
    unaudited = [v.leaseId for _, v in audits if v.unaudited is not None]
    if args.json:
        leases = [{**v.to_json(), "usage": lease_usage(i).to_json() if i is not None else None} for i, v in audits]
        print(json.dumps({"ok": ok, "leases": leases}, indent=2))
    else:
        for i, v in audits:
            print(format_table(v, lease_usage(i) if i is not None else None))
            print()
        if not audits:
            print("no leases to audit")
        if failed:
            print(f"{len(failed)} of {len(audits)} lease(s) FAILED: {', '.join(map(str, failed))}")
        if unaudited:
            print(f"{len(unaudited)} of {len(audits)} lease(s) could not be audited: {', '.join(map(str, unaudited))}")
        if audits and ok:
            print(f"all {len(audits)} lease(s) verified")
    if args.report is not None:
        try:
            args.report.write_text(render_html(audits), encoding="utf-8")
        except OSError as e:
            print(f"compute-ledger audit: cannot write {args.report}: {e}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        if not args.quiet:
            print(f"wrote {args.report}", file=sys.stderr)
    if failed:
        return EXIT_FAILED
    return EXIT_UNAVAILABLE if unaudited else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
