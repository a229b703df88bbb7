"""The web market, served by the bridge itself: server-rendered pages (Jinja2) under ``/web``, static assets
(the vendored htmx, the stylesheet, the wallet script) under ``/web/static``. See docs/web.md for the stack.

Who acts: a managed account logged in with its API key (an HttpOnly, SameSite=Strict session cookie; the
bridge signs for it), or a browser wallet (EIP-1193: the page's script asks the JSON API for the unsigned
transaction and the wallet signs and sends it; no cookie is involved). Every form carries a CSRF token."""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path as FsPath
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from eth_utils import to_checksum_address
from starlette.concurrency import run_in_threadpool

from ..deps import (
    AccountsDep, AuditBookDep, AuditDep, ChainHandleDep, LeasesDep, MarketDep, OffersDep, WebAuditorDep, WebSessionsDep,
)  # fmt: skip
from ..errors import ApiError
from ..schemas import ADDRESS_PATTERN
from ..services.caller import Caller
from ..services.market import BOOK_SORTS, PAGE_SIZE, BookQuery
from ..services.idempotency import Answer
from ..services.offers import OfferFilters
from .leases import LeaseIn, TopUpIn

WEB_DIR = FsPath(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
router = APIRouter(prefix="/web", include_in_schema=False)
root_router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "cl_session"
CSRF_COOKIE = "cl_csrf"
BILLING = {"reserved": 0, "metered": 1, "sm_active": 2}
IdPath = Annotated[int, Path(ge=0, lt=2**63)]


# --- template helpers ----------------------------------------------------------------------------------


def _when(ts: int | None) -> str:
    if not ts:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _duration(s: int | None) -> str:
    if s is None:
        return "—"
    d, rest = divmod(int(s), 86_400)
    h, rest = divmod(rest, 3600)
    m = rest // 60
    return (f"{d} d " if d else "") + (f"{h} h " if h or d else "") + f"{m} min"


def _short(addr: str) -> str:
    return addr[:6] + "…" + addr[-4:] if len(addr) > 12 else addr


def svg_series(values: list[float], width: int = 600, height: int = 120) -> dict[str, Any]:
    """A line chart's polyline points for ``values`` (equally spaced), scaled to the box; with the maximum."""
    top = max(values) if values else 0.0
    n = len(values)
    if n == 0 or top <= 0:
        return {"points": "", "max": top, "n": n}
    step = width / max(1, n - 1)
    pts = " ".join(f"{i * step:.1f},{height - (v / top) * (height - 4) - 2:.1f}" for i, v in enumerate(values))
    return {"points": pts, "max": top, "n": n}


templates.env.globals.update(when=_when, duration=_duration, short=_short, svg_series=svg_series)


# --- who is acting ---------------------------------------------------------------------------------------


def _caller(request: Request, accounts: Any, sessions: Any) -> tuple[Caller | None, dict[str, Any] | None]:
    """The managed account behind the session cookie, and its account record for the header."""
    key = sessions.api_key(request.cookies.get(SESSION_COOKIE))
    if key is None:
        return None, None
    try:
        caller = accounts.caller(f"Bearer {key}", None)
    except ApiError:  # revoked since login
        sessions.close(request.cookies.get(SESSION_COOKIE))
        return None, None
    # the header needs who and which roles; the balance (a chain read) only on the account page
    return caller, {"address": caller.address, "roles": sorted(caller.roles)}


def _render(
    request: Request, sessions: Any, name: str, ctx: dict[str, Any], *, status: int = 200,
    account: dict[str, Any] | None = None,
) -> HTMLResponse:  # fmt: skip
    nonce = request.cookies.get(CSRF_COOKIE)
    fresh = nonce is None
    if nonce is None:
        nonce = sessions.new_nonce()
    ctx = {"request": request, "account": account, "csrf": sessions.csrf_token(nonce), **ctx}
    resp = templates.TemplateResponse(request, name, ctx, status_code=status)
    if fresh:
        resp.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict", path="/web",
                        secure=request.url.scheme == "https")  # fmt: skip
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _error(request: Request, sessions: Any, status: int, message: str, account: dict[str, Any] | None = None) -> HTMLResponse:
    return _render(request, sessions, "error.html", {"status": status, "message": message}, status=status, account=account)


async def _form(request: Request, sessions: Any) -> dict[str, str]:
    """The urlencoded form of a POST, after the CSRF check (raises ApiError 403 when it fails)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise ApiError(403, "csrf", "the form was sent from another site")
    body = (await request.body()).decode("utf-8", errors="replace")
    form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
    if not sessions.csrf_ok(request.cookies.get(CSRF_COOKIE), form.get("csrf")):
        raise ApiError(403, "csrf", "the form's security token is missing or stale: reload the page and send it again")
    return form


def _decimal(text: str, what: str, most: int = 10**9) -> Decimal:
    """A number a person typed (``1.5``), at most ``most``; 422 with the field's name otherwise."""
    try:
        v = Decimal(text.strip())
    except InvalidOperation:
        raise ApiError(422, "validation_error", f"{what}: {text[:40]!r} is not a number") from None
    if not v.is_finite() or v < 0 or v.adjusted() > 40 or v > most:  # bounded before int(): no huge expansion
        raise ApiError(422, "validation_error", f"{what} must be a number from 0 to {most:,}")
    return v


# --- pages ---------------------------------------------------------------------------------------------


@root_router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/web/offers", status_code=307)


@root_router.get("/favicon.ico")
def favicon() -> RedirectResponse:
    return RedirectResponse("/web/static/favicon.svg", status_code=307)


@router.get("")
@router.get("/")
def web_home() -> RedirectResponse:
    return RedirectResponse("/web/offers", status_code=307)


def _book_query(params: dict[str, str], market: Any) -> tuple[BookQuery, str, int, list[str]]:
    """The book's filters from the query string; unreadable values are dropped and said (never a 422 page)."""
    problems: list[str] = []

    def num(name: str, label: str, scale: Decimal = Decimal(1), most: int = 2**62) -> int | None:
        raw = params.get(name, "").strip()
        if not raw:
            return None
        try:
            v = Decimal(raw[:80])
            # bounded before any arithmetic: 1e999999999 is neither multiplied nor expanded
            if not v.is_finite() or v < 0 or v.adjusted() > 80 or v * scale > most:
                raise InvalidOperation
            return int(v * scale)
        except InvalidOperation:
            problems.append(f"{label}: {raw[:40]!r} is not a number from 0 to {most // int(scale):,} (ignored)")
            return None

    billing = params.get("billing") or None
    if billing is not None and billing not in BILLING:
        problems.append(f"billing basis {billing!r} is unknown (ignored)")
        billing = None
    min_uptime = num("minUptime", "minimum uptime")
    sort = params.get("sort") or "price"
    if sort.lstrip("-") not in BOOK_SORTS:
        problems.append(f"sort {sort!r} is unknown: sorted by price")
        sort = "price"
    page = num("page", "page", most=1_000_000) or 1
    token = params.get("token") or None
    if token is not None and not re.fullmatch(ADDRESS_PATTERN, token):
        problems.append("token is not an address (ignored)")
        token = None
    hours = num("minHours", "available for at least (hours)")
    q = OfferFilters(
        gpu_model=(params.get("gpuModel") or "").strip()[:64] or None,
        region=(params.get("region") or "").strip()[:16] or None,
        min_vram_mib=None if (g := num("minVramGiB", "minimum VRAM")) is None else g * 1024,
        min_gpu_count=num("minGpus", "minimum GPUs"),
        # in the chosen token's units (ETH's 18 decimals when none is chosen)
        max_price_per_gpu_hour=num("maxPrice", "maximum price", Decimal(10) ** (market.unit(token).decimals if token else 18),
                                   most=2**255),
        token=token,
        billing_mode=None if billing is None else BILLING[billing],
        min_provider_score_bps=None if (s := num("minScore", "minimum score", Decimal(100))) is None else min(s, 10_000),
        available_at=market.now_head() if params.get("all") != "1" else None,
        min_valid_until=None if hours is None else market.now_head() + hours * 3600,
    )
    return BookQuery(q, None if min_uptime is None else float(min_uptime), params.get("audited") == "1"), sort, page, problems


@router.get("/offers", response_class=HTMLResponse)
async def offer_book(request: Request, market: MarketDep, accounts: AccountsDep, sessions: WebSessionsDep) -> HTMLResponse:
    params = dict(request.query_params)
    q, sort, page, problems = _book_query(params, market)
    total, rows = await run_in_threadpool(market.book, q, sort, page)
    models, regions = await run_in_threadpool(market.facets)
    tokens = await run_in_threadpool(market.token_choices)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    kept = {k: v for k, v in params.items() if v and k != "page"}

    def link(**change: Any) -> str:
        return "/web/offers?" + urlencode({**kept, **{k: v for k, v in change.items() if v is not None}})

    _, account = await run_in_threadpool(_caller, request, accounts, sessions)
    ctx = {"rows": rows, "total": total, "page": page, "pages": pages, "params": params, "sort": sort,
           "problems": problems, "models": models, "regions": regions, "tokens": tokens, "link": link,
           "sorts": BOOK_SORTS}  # fmt: skip
    partial = request.headers.get("hx-request") == "true" and request.headers.get("hx-target") == "book"
    return _render(request, sessions, "offers_table.html" if partial else "offers.html", ctx, account=account)


@router.get("/offers/{offerId}", response_class=HTMLResponse)
def offer_page(
    request: Request, offerId: IdPath, offers: OffersDep, market: MarketDep,
    accounts: AccountsDep, sessions: WebSessionsDep,
) -> HTMLResponse:  # fmt: skip
    def build(caller: Caller | None) -> tuple[str, dict[str, Any]]:
        offer = offers.get(offerId)
        unit = market.unit(offer["token"])
        return "offer.html", {
            "offer": offer, "unit": unit, "band": market.band(offer["gpuModel"], offer["region"], offer["token"]),
            "priceText": unit.show(int(offer["pricePerGpuHour"])), "node": market.node_view(offer["nodeId"]),
            "uptime": market.node_stats(offer["nodeId"]).uptime_pct, "provider": market.provider_summary(offer["provider"]),
            "caller": caller, "idem": secrets.token_urlsafe(16),
            "track": market.offer_track_record(offer["nodeId"], offer["provider"]),
        }  # fmt: skip

    return _page(request, accounts, sessions, build)


def _page(
    request: Request, accounts: Any, sessions: Any, build: Callable[[Caller | None], tuple[str, dict[str, Any]]]
) -> HTMLResponse:
    """Render what ``build`` (given the caller) answers: (template, context); a refusal as an error page."""
    caller, account = _caller(request, accounts, sessions)
    try:
        name, ctx = build(caller)
    except ApiError as e:
        return _error(request, sessions, e.status, e.message, account)
    return _render(request, sessions, name, ctx, account=account)


@router.post("/leases")
async def open_lease(request: Request, leases: LeasesDep, accounts: AccountsDep, sessions: WebSessionsDep) -> Response:
    caller, account = await run_in_threadpool(_caller, request, accounts, sessions)
    try:
        form = await _form(request, sessions)
        if caller is None:
            raise ApiError(401, "unauthorized", "log in with your API key to open a lease (or use a wallet)")
        offer_id = int(form.get("offerId", "-1")[:20])
        if not 0 <= offer_id < 2**63:
            raise ApiError(404, "not_found", "no such offer")
        hours = _decimal(form.get("hours", ""), "hours", most=24 * 365 * 10)
        duration_s = int(hours * 3600)
        if duration_s <= 0:
            raise ApiError(422, "validation_error", "the lease needs at least one second")
        idem = (form.get("idem") or "")[:100] or None
        body = LeaseIn(offerId=offer_id, durationS=duration_s)
        answer = await run_in_threadpool(
            leases.open, caller, offer_id, duration_s, None, None, None, f"web-{idem}" if idem else None, body
        )
        lease_id = int(_answered(answer)["result"]["leaseId"])
    except ApiError as e:
        return _error(request, sessions, e.status, e.message, account)
    except ValueError:
        return _error(request, sessions, 422, "offerId and hours must be numbers", account)
    return RedirectResponse(f"/web/leases/{lease_id}", status_code=303)


def _answered(answer: Answer) -> dict[str, Any]:
    """The JSON of a money-moving answer; a replayed refusal raises it again."""
    data: dict[str, Any] = json.loads(answer.body)
    if answer.status >= 400:
        d = data.get("detail") or {}
        raise ApiError(answer.status, str(d.get("code", "error")), str(d.get("message", "refused")))
    return data


@router.get("/leases/{leaseId}", response_class=HTMLResponse)
def lease_page(
    request: Request, leaseId: IdPath, market: MarketDep, accounts: AccountsDep, book: AuditBookDep,
    sessions: WebSessionsDep,
) -> HTMLResponse:  # fmt: skip
    def build(caller: Caller | None) -> tuple[str, dict[str, Any]]:
        page = market.lease_page(leaseId)
        mine = caller is not None and caller.address == page["doc"]["buyer"]
        partial = request.headers.get("hx-request") == "true"  # htmx polls the live figures only
        audit = book.get(leaseId)
        failed = {r["reportSeq"] for r in audit.verdict["results"] if r["status"] == "FAIL"} if audit else set()
        ctx = {"p": page, "mine": mine, "idem": secrets.token_urlsafe(16), "audit": audit, "auditFailed": failed}
        return "lease_live.html" if partial else "lease.html", ctx

    return _page(request, accounts, sessions, build)


@router.post("/leases/{leaseId}/{action}")
async def lease_action(
    request: Request, leaseId: IdPath, action: str, leases: LeasesDep,
    accounts: AccountsDep, sessions: WebSessionsDep,
) -> Response:  # fmt: skip
    caller, account = await run_in_threadpool(_caller, request, accounts, sessions)
    try:
        form = await _form(request, sessions)
        if caller is None:
            raise ApiError(401, "unauthorized", "log in with your API key first (or use a wallet)")
        idem = (form.get("idem") or "")[:100]
        key = f"web-{action}-{idem}" if idem else None
        if action == "close":
            _answered(await run_in_threadpool(leases.close, caller, leaseId, key))
        elif action == "top-up":
            lease = await run_in_threadpool(leases.require, leaseId)
            hours = _decimal(form.get("hours", ""), "hours", most=24 * 365 * 10)
            amount = int(lease["pricePerGpuSecond"]) * int(lease["gpuCount"]) * int(hours * 3600)
            if amount <= 0:
                raise ApiError(422, "validation_error", "top up at least one second")
            _answered(await run_in_threadpool(leases.top_up, caller, leaseId, amount, key, TopUpIn(amountWei=amount)))
        elif action == "dispute":
            await run_in_threadpool(leases.dispute, caller, leaseId)
        elif action == "rate":
            stars = int(form.get("stars", "0")[:3])
            if not 1 <= stars <= 5:
                raise ApiError(422, "validation_error", "stars: 1 to 5")
            await run_in_threadpool(leases.rate, caller, leaseId, stars)
        else:
            raise ApiError(404, "not_found", f"no action {action!r}")
    except ApiError as e:
        return _error(request, sessions, e.status, e.message, account)
    except ValueError:
        return _error(request, sessions, 422, "stars must be a number", account)
    return RedirectResponse(f"/web/leases/{leaseId}", status_code=303)


@router.get("/providers/{address}", response_class=HTMLResponse)
def provider_page(
    request: Request, address: str, market: MarketDep, accounts: AccountsDep, sessions: WebSessionsDep
) -> HTMLResponse:
    _, account = _caller(request, accounts, sessions)
    if not re.fullmatch(ADDRESS_PATTERN, address):
        return _error(request, sessions, 422, f"{address!r} is not an address", account)
    page = market.provider_page(to_checksum_address(address))
    return _render(request, sessions, "provider.html", {"p": page}, account=account)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, leases: LeasesDep, accounts: AccountsDep, sessions: WebSessionsDep) -> HTMLResponse:
    caller, account = _caller(request, accounts, sessions)
    mine: list[dict[str, Any]] = []
    if caller is not None:
        account = accounts.me(caller)
        _, mine = leases.list(buyer=caller.address, limit=200)
    return _render(request, sessions, "account.html", {"leases": mine}, account=account)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, accounts: AccountsDep, sessions: WebSessionsDep) -> HTMLResponse:
    _, account = _caller(request, accounts, sessions)
    return _render(request, sessions, "login.html", {"error": None}, account=account)


@router.post("/login")
async def login(request: Request, accounts: AccountsDep, sessions: WebSessionsDep) -> Response:
    try:
        form = await _form(request, sessions)
        key = form.get("apiKey", "").strip()
        caller = await run_in_threadpool(accounts.caller, f"Bearer {key}", None)
        assert caller is not None
    except ApiError as e:
        status = 403 if e.code == "csrf" else 401
        return _render(request, sessions, "login.html", {"error": e.message}, status=status)
    sid = sessions.open(key, caller.address)
    resp = RedirectResponse("/web/account", status_code=303)
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/web",
                    secure=request.url.scheme == "https", max_age=8 * 3600)  # fmt: skip
    return resp


@router.post("/logout")
async def logout(request: Request, sessions: WebSessionsDep) -> Response:
    try:
        await _form(request, sessions)
    except ApiError as e:
        return _error(request, sessions, e.status, e.message)
    sessions.close(request.cookies.get(SESSION_COOKIE))
    resp = RedirectResponse("/web/offers", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/web")
    return resp


# --- auditor ---------------------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request, audit: AuditDep, book: AuditBookDep, auditor: WebAuditorDep, accounts: AccountsDep,
    sessions: WebSessionsDep, lease: int | None = None,
) -> HTMLResponse:  # fmt: skip
    _, account = _caller(request, accounts, sessions)
    listing, _ = audit.leases(None, 200)
    ctx = {"leases": listing, "outcome": book.get(lease) if lease is not None else None, "lease": lease,
           "enabled": auditor is not None}  # fmt: skip
    return _render(request, sessions, "audit.html", ctx, account=account)


@router.post("/audit")
async def run_audit(
    request: Request, book: AuditBookDep, auditor: WebAuditorDep, chain: ChainHandleDep, market: MarketDep,
    leases: LeasesDep, sessions: WebSessionsDep,
) -> Response:  # fmt: skip
    try:
        form = await _form(request, sessions)
        if auditor is None:
            raise ApiError(503, "auditor_unavailable", "this bridge was started without the auditor: run "
                           "`compute-ledger audit lease N --api URL` instead")  # fmt: skip
        try:
            lease_id = int(form.get("leaseId", "")[:20])
        except ValueError:
            raise ApiError(422, "validation_error", "the lease id must be a number") from None
        lease = await run_in_threadpool(leases.require, lease_id)
        k = form.get("spotCheck", "").strip()
        spot = min(int(k), 1000) if k[:6].isdigit() and len(k) <= 6 and int(k) > 0 else None
        base = str(request.base_url).rstrip("/")
        outcome = await run_in_threadpool(auditor, base, chain, lease_id, spot)
    except ApiError as e:
        return _error(request, sessions, e.status, e.message)
    book.put(outcome)
    market.record_audit(lease["provider"], lease_id, outcome.status)
    return RedirectResponse(f"/web/audit?lease={lease_id}", status_code=303)


@router.get("/audit/{leaseId}/verdict.json")
def audit_verdict(leaseId: IdPath, book: AuditBookDep) -> Response:
    outcome = book.get(leaseId)
    if outcome is None:
        raise ApiError(404, "not_found", f"lease {leaseId} was not audited from this page yet")
    return Response(json.dumps(outcome.verdict, indent=2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="audit-lease-{leaseId}.json"'})  # fmt: skip


@router.get("/audit/{leaseId}/report.html")
def audit_report(leaseId: IdPath, book: AuditBookDep) -> Response:
    outcome = book.get(leaseId)
    if outcome is None:
        raise ApiError(404, "not_found", f"lease {leaseId} was not audited from this page yet")
    return Response(outcome.html, media_type="text/html",
                    headers={"Content-Disposition": f'attachment; filename="audit-lease-{leaseId}.html"'})  # fmt: skip
