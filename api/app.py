"""``create_app()``: the bridge's FastAPI application factory.

The lifespan connects the chain backend (or takes the caller's ``chain`` and ``deployment``, e.g. the
demo's in-process memory chain), deploys or loads the contracts, opens and migrates the store, and runs
the indexer and the settlement relayer in background threads until shutdown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.protocol import safejson

from ledger.chain.backends import Chain
from ledger.chain.deployment import Deployment
from ledger.chain.errors import ChainError

from .container import Bridge
from .deps import _caller, _required_caller
from .error_codes import ERROR_CODES, markdown_table
from .errors import ApiError, from_chain
from .routers import ALL_ROUTERS, faucet, web
from .ratelimit import Limit, RateLimitMiddleware
from .routers.offers import OffersFastPath
from .services.web_audit import WebAuditor
from .settings import Settings

log = logging.getLogger("api")

Message = MutableMapping[str, Any]


def create_app(
    settings: Settings | None = None,
    *,
    chain: Chain | None = None,
    deployment: Deployment | None = None,
    auditor: WebAuditor | None = None,
) -> FastAPI:
    """Build the app. ``chain``/``deployment`` share an existing chain with the caller; the app then never
    closes that chain. ``auditor`` runs the web audit page's audits (``compute_ledger.web_audit``: the bridge
    does not import the auditor itself); without it the page says how to run the CLI."""
    settings = settings or Settings()
    settings.check_secret()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bridge = Bridge.start(settings, chain=chain, deployment=deployment)
        app.state.bridge = bridge
        try:
            yield
        finally:
            bridge.stop()

    app = FastAPI(
        title="Compute Ledger bridge",
        version="0.1.0",
        description=(
            "HTTP bridge to the Compute Ledger contracts: providers, offers, leases, metering, audit.\n\n"
            "Authenticate with `Authorization: Bearer <apiKey>` (a managed account: the bridge signs for it) or "
            "`X-Wallet-Address` (a wallet: write endpoints answer a transaction to sign). Integers that can exceed "
            "2^53 (amounts, uint256) are decimal strings. Errors are `{\"detail\": {\"code\", \"message\", \"field\"}}`:\n\n"
            + markdown_table()
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    _offline_docs(app)
    app.state.settings = settings
    app.state.web_auditor = auditor
    _install_error_handlers(app)
    for router in ALL_ROUTERS:
        app.include_router(router)
    if settings.chain_backend in ("memory", "anvil"):
        app.include_router(faucet.router)
    # the web market (docs/web.md): pages under /web, their assets from the package under /web/static
    app.mount("/web/static", StaticFiles(directory=web.STATIC_DIR), name="web-static")
    app.include_router(web.router)
    app.include_router(web.root_router)
    app.add_middleware(OffersFastPath)
    # the metering wire (api/METERING_API.md) answers every malformed body 400 invalid_report
    app.add_middleware(
        JsonDepthMiddleware, max_depth=safejson.MAX_DEPTH, refusals={"/v1/metering/": (400, "invalid_report")},
        forms=("/web/",),  # the web pages post HTML forms (api.routers.web), bounded by BodyLimitMiddleware
    )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_request_bytes, by_path={"/v1/metering/reports": settings.max_body_bytes}
    )
    app.add_middleware(
        RateLimitMiddleware,
        limits={
            "/v1/accounts": Limit(settings.rate_accounts_burst, settings.rate_accounts_per_s),
            "/v1/faucet": Limit(settings.rate_faucet_burst, settings.rate_faucet_per_s),
            "/v1/metering/reports": Limit(settings.rate_reports_burst, settings.rate_reports_per_s),
        },
    )
    app.add_middleware(MetricsMiddleware)
    _plain_optional_parameters(app)
    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` from assets shipped in the package (swagger-ui-bundle): it works without internet."""
    assets = Path(swagger_ui_bundle.swagger_ui_path)
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Compute Ledger bridge",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def _security(doc: dict[str, Any], app: FastAPI) -> None:
    """Security schemes, and per operation which callers it takes (from the route's caller dependency)."""
    doc.setdefault("components", {})["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "a managed account's API key (cl_...)"},
        "walletAddress": {"type": "apiKey", "in": "header", "name": "X-Wallet-Address",
                          "description": "a wallet: write endpoints answer a transaction to sign"},
    }  # fmt: skip
    routes: list[Any] = []
    for r in app.routes:  # included routers keep their routes on the router they were built on
        routes += getattr(getattr(r, "original_router", None), "routes", None) or [r]
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        calls = {d.call for d in _walk(route.dependant)}
        if _required_caller in calls:
            security: list[dict[str, list[str]]] = [{"apiKey": []}, {"walletAddress": []}]
        elif _caller in calls:
            security = [{}, {"apiKey": []}, {"walletAddress": []}]  # optional: anyone may call
        else:
            continue
        for method in route.methods or ():
            op = doc.get("paths", {}).get(route.path_format, {}).get(method.lower())
            if isinstance(op, dict):
                op["security"] = security
                op["parameters"] = [
                    p for p in op.get("parameters", []) if p.get("name") not in ("authorization", "x-wallet-address")
                ]


def _walk(dep: Any) -> list[Any]:
    out = []
    for d in dep.dependencies:
        out.append(d)
        out += _walk(d)
    return out


def _plain_optional_parameters(app: FastAPI) -> None:
    """Optional query/header parameters are documented as their type, not ``anyOf [type, null]``: on the
    wire an absent parameter is the only "null", and a literal ``null`` string is not a value we accept."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = original()
        for path in doc.get("paths", {}).values():
            for op in path.values():
                for param in op.get("parameters", []) if isinstance(op, dict) else []:
                    sch = param.get("schema", {})
                    variants = sch.get("anyOf")
                    if isinstance(variants, list):
                        rest = [v for v in variants if v.get("type") != "null"]
                        if len(rest) == 1 and len(rest) < len(variants):
                            merged = {k: v for k, v in sch.items() if k != "anyOf"}
                            merged.update(rest[0])
                            param["schema"] = merged
        _security(doc, app)
        doc["x-error-codes"] = [{"code": c, "status": st, "meaning": m} for c, st, m in ERROR_CODES]
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body())

    @app.exception_handler(ChainError)
    async def _chain_error(_: Request, exc: ChainError) -> JSONResponse:
        err = from_chain(exc)
        return JSONResponse(status_code=err.status, content=err.body())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":  # its location is a character offset, not a field
            pos = (first.get("loc") or ("body", None))[-1]
            return JSONResponse(
                status_code=422,
                content=ApiError(422, "invalid_json", f"the body is not valid JSON (at character {pos})").body(),
            )
        loc = [str(p) for p in first.get("loc", ())]
        field = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc) or None
        msg = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg", "invalid request"))
        details = {"errors": [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in errors[:20]]}
        return JSONResponse(
            status_code=422,
            content=ApiError(422, "validation_error", msg, field=field, details=details).body(),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(status_code=exc.status_code, content=ApiError(exc.status_code, code, str(exc.detail)).body())


class BodyLimitMiddleware:
    """Refuses request bodies above ``max_bytes`` (``by_path``: the limit of one path) with 413, by
    Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, by_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_bytes = max_bytes
        self.by_path = by_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = self.by_path.get(path, self.default_bytes)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _too_large(send, limit, path)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, limit, path)


class JsonDepthMiddleware:
    """Refuses, with 422 ``invalid_json`` (or the status and code a path's wire contract fixes), a request body
    that a recursive JSON parser must not see.

    Runs inside ``BodyLimitMiddleware`` (so the body is bounded) and before any route parses the body: a
    body nested thousands deep would overflow the C stack (see ``ledger.protocol.safejson``) and kill the process.
    The check is C-speed (a few ms per MB) and runs in a worker thread for large bodies, off the event
    loop. Every body is checked, whatever its content type. Then a body that is JSON is passed on as JSON
    whatever content type it was sent with (``curl -d`` sends a form type); any other body is refused with
    415 ``unsupported_media_type`` saying what to send."""

    OFF_LOOP_BYTES = 64 * 1024

    def __init__(
        self, app: ASGIApp, max_depth: int, refusals: dict[str, tuple[int, str]] | None = None,
        forms: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.app = app
        self.max_depth = max_depth
        self.refusals = refusals or {}  # path prefix -> (status, code) where a wire contract fixes them
        self.forms = forms  # path prefixes that take HTML form posts (the web pages), not JSON

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") in ("GET", "HEAD", "OPTIONS")
            or str(scope.get("path", "")).startswith(self.forms)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client gone: let the app see the disconnect
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if body:
            try:
                if len(body) > self.OFF_LOOP_BYTES:
                    await anyio.to_thread.run_sync(safejson.check, body, self.max_depth)
                else:
                    safejson.check(body, self.max_depth)
            except safejson.JsonRefused as e:
                path = str(scope.get("path", ""))
                status, code = next((v for k, v in self.refusals.items() if path.startswith(k)), (422, "invalid_json"))
                err = JSONResponse(status_code=status, content=ApiError(status, code, str(e)).body())
                await err(scope, receive, send)
                return
        if body and not _declares_json(scope):
            if body.lstrip()[:1] in (b"{", b"["):
                # curl -d sends a form content type: a body that is JSON is read as JSON, whatever it says
                scope = dict(scope)
                scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
                scope["headers"].append((b"content-type", b"application/json"))
            else:
                path = str(scope.get("path", ""))
                status, code = next(
                    (v for k, v in self.refusals.items() if path.startswith(k)), (415, "unsupported_media_type")
                )
                err = JSONResponse(
                    status_code=status,
                    content=ApiError(status, code, "the body must be JSON (send Content-Type: application/json)").body(),
                )
                await err(scope, receive, send)
                return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _declares_json(scope: Scope) -> bool:
    for k, v in scope.get("headers", []):
        if k == b"content-type":
            kind = bytes(v).split(b";")[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int, path: str) -> None:
    body = JSONResponse(
        status_code=413,
        content=ApiError(
            413, "body_too_large", f"the request body is above {limit:,} bytes, the most {path} takes"
        ).body(),
    )
    await send({"type": "http.response.start", "status": 413, "headers": body.raw_headers})
    await send({"type": "http.response.body", "body": body.body})


class MetricsMiddleware:
    """Counts requests and latency per route template (not per raw path: ids would explode the labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            app = scope.get("app")
            bridge = getattr(app.state, "bridge", None) if app is not None else None
            if bridge is not None:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                bridge.metrics.requests.labels(scope["method"], path, str(status)).inc()
                bridge.metrics.latency.labels(path).observe(time.perf_counter() - t0)

