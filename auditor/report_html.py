"""A self-contained HTML audit report: the verdict table, what the lease used per window (busy and SM-active
time side by side) and, per GPU, busy share, SM-active share and power over time.

One file, no external assets (inline CSS and SVG, no script), so it can be mailed, archived or published
next to the data it judges. Long leases are downsampled per plot (bucket means) to keep the file small;
reports with a failed check are shaded red on the time axis. The flags the reports carry are explained in
words (``auditor.core.FLAG_WORDS``).
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Iterable, Sequence

from ledger.protocol import ReportFlag, Sample
from ledger.protocol.samples import SampleField

from .core import BILLING_BASIS, AuditInput, CheckResult, LeaseUsage, Verdict, describe_flags, lease_usage

MAX_POINTS = 600  # per series
_W, _H = 760, 190
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 46, 54, 12, 26
_UTIL_INVALID = int(ReportFlag.GPU_LOST | SampleField.GPU_UTIL)
_SM_INVALID = int(ReportFlag.GPU_LOST | SampleField.SM_ACTIVE)
_POWER_INVALID = int(ReportFlag.GPU_LOST | SampleField.POWER)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2330;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde}
h3{font-size:14px;margin:14px 0 4px;color:#445}
.meta{color:#556;font-size:13px} table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #dde;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f8} td.s{font-weight:600;white-space:nowrap;width:52px}
.PASS{color:#17803d} .FAIL{color:#c62828} .WARN{color:#b26a00} .SKIP{color:#667}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.ok{background:#17803d} .bad{background:#c62828}
svg{background:#fbfbfd;border:1px solid #e4e6ee;margin-bottom:6px}
.legend{font-size:12px;color:#445} .u{color:#2f6fdb} .p{color:#e07b00} .m{color:#7b3fb8}
td.n{text-align:right;font-variant-numeric:tabular-nums} tr.total td{font-weight:600;background:#f7f7fb}
"""


def _fmt_ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _downsample(points: Sequence[tuple[int, int]], limit: int = MAX_POINTS) -> list[tuple[int, int]]:
    """Bucket means in time order (integers), at most ``limit`` points."""
    if len(points) <= limit:
        return list(points)
    out = []
    step = len(points) / limit
    for b in range(limit):
        chunk = points[int(b * step) : int((b + 1) * step)] or [points[min(len(points) - 1, int(b * step))]]
        out.append((sum(t for t, _ in chunk) // len(chunk), sum(v for _, v in chunk) // len(chunk)))
    return out


def _polyline(points: Sequence[tuple[int, int]], t0: int, t1: int, vmax: int, cls: str, color: str) -> str:
    if not points:
        return ""
    span = max(1, t1 - t0)
    plot_w = _W - _PAD_L - _PAD_R
    plot_h = _H - _PAD_T - _PAD_B
    coords = " ".join(
        f"{_PAD_L + (t - t0) * plot_w / span:.1f},{_PAD_T + plot_h - min(v, vmax) * plot_h / max(1, vmax):.1f}"
        for t, v in points
    )
    return f'<polyline class="{cls}" fill="none" stroke="{color}" stroke-width="1.3" points="{coords}"/>'


def gpu_plot(
    gpu: int,
    samples: Sequence[Sample],
    t0: int,
    t1: int,
    max_power_mw: int,
    bad_windows: Iterable[tuple[int, int]] = (),
) -> str:
    """An inline SVG of one GPU over [t0, t1] ms: its busy share (busy / covered time, %) and SM-active share
    (SM-active / interval time, %) on the left axis, its mean power (W) on the right."""
    rows = sorted(samples, key=lambda s: s.tsMs)
    util = _downsample(
        [(s.tsMs, s.busyMs * 10_000 // s.coveredMs) for s in rows if not s.flags & _UTIL_INVALID and s.coveredMs]
    )
    sm = _downsample(
        [(s.tsMs, s.smActiveMs * 10_000 // s.intervalMs) for s in rows if not s.flags & _SM_INVALID and s.intervalMs]
    )
    power = _downsample([(s.tsMs, s.powerMw) for s in rows if not s.flags & _POWER_INVALID])
    p_max = max([max_power_mw] + [v for _, v in power])
    plot_w = _W - _PAD_L - _PAD_R
    plot_h = _H - _PAD_T - _PAD_B
    span = max(1, t1 - t0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="GPU {gpu} busy share, SM-active share and power">'
    ]
    for a, b in bad_windows:
        x0 = _PAD_L + max(0, a - t0) * plot_w / span
        x1 = _PAD_L + min(span, b - t0) * plot_w / span
        parts.append(
            f'<rect x="{x0:.1f}" y="{_PAD_T}" width="{max(1.0, x1 - x0):.1f}" height="{plot_h}" fill="#fbe3e3"/>'
        )
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = _PAD_T + plot_h - frac * plot_h
        parts.append(f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e8ef"/>')
        parts.append(
            f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#2f6fdb">'
            f"{int(frac * 100)}%</text>"
        )
        parts.append(
            f'<text x="{_W - _PAD_R + 6}" y="{y + 4:.1f}" font-size="10" fill="#e07b00">'
            f"{int(frac * p_max / 1000)} W</text>"
        )
    parts.append(_polyline(util, t0, t1, 10_000, "util", "#2f6fdb"))
    parts.append(_polyline(sm, t0, t1, 10_000, "sm", "#7b3fb8"))
    parts.append(_polyline(power, t0, t1, p_max, "power", "#e07b00"))
    for frac, anchor in ((0.0, "start"), (1.0, "end")):
        x = _PAD_L + frac * plot_w
        label = html.escape(_fmt_ts(t0 + int(frac * span))[11:19])
        parts.append(f'<text x="{x:.1f}" y="{_H - 8}" font-size="10" text-anchor="{anchor}" fill="#556">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(results: Sequence[CheckResult]) -> str:
    rows = ["<table><tr><th>check</th><th>result</th><th>party</th><th>report</th><th>detail</th></tr>"]
    for r in results:
        seq = "" if r.report_seq is None else str(r.report_seq)
        rows.append(
            f'<tr><td>{html.escape(r.check)}</td><td class="s {r.status}">{r.status}</td>'
            f"<td>{html.escape(r.blame)}</td><td>{seq}</td><td>{html.escape(r.detail)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _pct(bps: int | None) -> str:
    return "–" if bps is None else f"{bps // 100}.{bps % 100:02d} %"


def _gpu_s(ms: int) -> str:
    """GPU-ms as GPU-seconds with three decimals (integers only)."""
    return f"{ms // 1000}.{ms % 1000:03d}"


def _usage_table(usage: LeaseUsage) -> str:
    """Per window and in total: allocated, busy and SM-active time side by side, the SM-active share of busy
    time, tensor time, energy and flags."""
    rows = [
        "<h3>What the reports metered (GPU-seconds)</h3><table><tr><th>report</th><th>window (UTC)</th>"
        "<th>allocated</th><th>busy</th><th>SM-active</th><th>SM-active share of busy time</th>"
        "<th>tensor-active</th><th>energy (J)</th><th>flags</th></tr>"
    ]
    for w in usage.windows:
        flags = ", ".join(name for name, _ in describe_flags(w.flags))
        rows.append(
            f"<tr><td>{w.seq}</td><td>{html.escape(_fmt_ts(w.windowStartMs)[11:19])} → "
            f"{html.escape(_fmt_ts(w.windowEndMs)[11:19])}</td>"
            f'<td class="n">{_gpu_s(w.allocatedMs)}</td><td class="n">{_gpu_s(w.busyMs)}</td>'
            f'<td class="n">{_gpu_s(w.smActiveMs)}</td><td class="n">{_pct(w.sm_share_of_busy_bps)}</td>'
            f'<td class="n">{_gpu_s(w.tensorActiveMs)}</td><td class="n">{w.energyMj // 1000}</td>'
            f"<td>{html.escape(flags)}</td></tr>"
        )
    rows.append(
        f'<tr class="total"><td colspan="2">total</td><td class="n">{_gpu_s(usage.allocatedMs)}</td>'
        f'<td class="n">{_gpu_s(usage.busyMs)}</td><td class="n">{_gpu_s(usage.smActiveMs)}</td>'
        f'<td class="n">{_pct(usage.sm_share_of_busy_bps)}</td><td class="n">{_gpu_s(usage.tensorActiveMs)}</td>'
        f'<td class="n">{usage.energyMj // 1000}</td><td></td></tr></table>'
    )
    rows.append(
        f'<p class="meta">billing basis: {html.escape(BILLING_BASIS[usage.billingMode])} — '
        f"{_gpu_s(usage.billableMs)} GPU-s billable by the reports. SM-active time is GPM's SM activity × time: "
        "SMs work only while a kernel runs, so it sits at or below busy time; a low share means kernels that "
        "keep the GPU busy while using few of its SMs. Above 100 %: utilization samples were lost (UTIL_HOLE: "
        "busy time counts only the covered part, SM activity the whole interval) or GPM and the driver's "
        "utilization periods do not line up over a short window.</p>"
    )
    explained = describe_flags(usage.flags)
    if explained:
        rows.append("<h3>Flags in these reports</h3><table><tr><th>flag</th><th>meaning</th></tr>")
        rows += [f"<tr><td>{html.escape(n)}</td><td>{html.escape(words)}</td></tr>" for n, words in explained]
        rows.append("</table>")
    return "".join(rows)


def _lease_section(inp: AuditInput | None, verdict: Verdict) -> str:
    if inp is None or verdict.unaudited is not None:
        why = verdict.unaudited or "no input"
        return (
            f'<h2>Lease {verdict.leaseId} <span class="badge bad">COULD NOT AUDIT</span></h2>'
            f'<p class="meta">{html.escape(why)}</p>'
        )
    t = inp.terms
    badge = '<span class="badge ok">VERIFIED</span>' if verdict.ok else '<span class="badge bad">FAILED</span>'
    notes = "".join(f"<br><b>{html.escape(n)}</b>" for n in verdict.notes)
    out = [
        f"<h2>Lease {t.leaseId} {badge}</h2>",
        f'<p class="meta">chain {t.chainId} · escrow {html.escape(t.escrow)} · {t.gpuCount} GPU(s) · '
        f"{html.escape(t.billingMode.label)} ({html.escape(BILLING_BASIS[t.billingMode])}) at "
        f"{t.pricePerGpuSecond} per GPU-second · "
        f"{html.escape(_fmt_ts(t.startMs))} → {html.escape(_fmt_ts(t.endMs))}<br>"
        f"{verdict.reports} reports, {verdict.samples} samples "
        f"{f'proven (spot check of {verdict.spot_check_k} per report)' if verdict.spot_check_k else 'rebuilt'}, "
        f"{verdict.settlements} checkpoints settled on-chain{notes}</p>",
        _table(verdict.results),
    ]
    if inp.reports:
        out.append(_usage_table(lease_usage(inp)))
    if inp.settlements:
        rows = [
            "<h3>Checkpoints paid on-chain</h3><table><tr><th>seq</th><th>block</th>"
            "<th>billable GPU-ms</th><th>busy GPU-ms</th><th>SM-active GPU-ms</th><th>charged</th>"
            "<th>transaction</th></tr>"
        ]
        last = (0, 0, 0)  # the delta of a checkpoint: its ckpt's cumulative figures − the previous one's
        for st in sorted(inp.settlements, key=lambda x: x.order):
            now = (st.billable(t.billingMode), st.cumBusyMs, st.cumSmActiveMs)
            rows.append(
                f"<tr><td>{st.seq}</td><td>{st.order[0]}</td><td>{now[0] - last[0]}</td><td>{now[1] - last[1]}</td>"
                f"<td>{now[2] - last[2]}</td><td>{st.charged}</td><td>{html.escape(st.txHash or '')}</td></tr>"
            )
            last = now
        m = inp.money
        if m is not None:
            rows.append(
                f'<tr><td colspan="5">total charged (escrowed {m.escrow + sum(u.amount for u in m.topUps)}'
                f"{', refunded ' + str(m.refund) if m.closed else ''})</td>"
                f"<td>{sum(x.charged for x in inp.settlements)}</td><td></td></tr>"
            )
        rows.append("</table>")
        out.append("".join(rows))
    per_gpu: dict[int, list[Sample]] = {}
    for sr in inp.reports:
        for s in sr.samples or tuple(p.sample for p in sr.proofs):
            per_gpu.setdefault(s.gpuIndex, []).append(s)
    if per_gpu:
        failed = {r.report_seq for r in verdict.failures if r.report_seq is not None}
        bad = [(sr.report.windowStartMs, sr.report.windowEndMs) for sr in inp.reports if sr.report.seq in failed]
        t0 = min(sr.report.windowStartMs for sr in inp.reports)
        t1 = max(sr.report.windowEndMs for sr in inp.reports)
        out.append(
            '<p class="legend"><span class="u">━ busy share (%)</span> · '
            '<span class="m">━ SM-active share (%)</span> · <span class="p">━ power (W)</span>'
            + (" · reports with a failed check shaded red" if bad else "")
            + "</p>"
        )
        for gpu in sorted(per_gpu):
            out.append(f"<h3>GPU {gpu}</h3>")
            out.append(gpu_plot(gpu, per_gpu[gpu], t0, t1, t.maxPowerMwPerGpu, bad))
    return "".join(out)


def render_html(audits: Sequence[tuple[AuditInput | None, Verdict]], *, title: str = "Compute Ledger audit") -> str:
    """The whole report as one HTML string (a lease that could not be audited: its reason)."""
    ok = all(v.ok for _, v in audits)
    failed = sum(1 for _, v in audits if not v.ok)
    now = datetime.now(tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">generated {now} · {len(audits)} lease(s) · '
        + ('<span class="badge ok">ALL VERIFIED</span>' if ok else f'<span class="badge bad">{failed} FAILED</span>')
        + "</p>"
    )
    return head + "".join(_lease_section(i, v) for i, v in audits) + "</body></html>\n"
