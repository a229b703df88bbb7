"""Browser tests of the web market: a bridge on the memory chain served by uvicorn on 127.0.0.1, driven by
Playwright in Debian's headless Chromium (/usr/bin/chromium; no browser is downloaded)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from api.app import create_app  # noqa: E402
from ledger.chain.backends import Chain, connect  # noqa: E402
from ledger.chain.deploy import deploy_suite  # noqa: E402
from tests.support.serve import served  # noqa: E402
from compute_ledger.web_audit import web_auditor  # noqa: E402

CHROMIUM = os.environ.get("LEDGER_CHROMIUM", "/usr/bin/chromium")

if not Path(CHROMIUM).exists():
    pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; `make test` does)",
                allow_module_level=True)  # fmt: skip

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

from api.settings import Settings  # noqa: E402


def web_settings(data_dir: Path) -> Settings:
    """The memory chain; settlement driven by the tests (``relayer.flush()``), as in tests/api."""
    return Settings(chain_backend="memory", data_dir=data_dir, background=False, settle_every_s=300.0,
                    settle_threshold_wei=10**30)  # fmt: skip


class ApiClient(httpx.Client):
    """An HTTP client of the served bridge that also reaches its in-process services (as TestClient does), so
    that tests/api's helpers work against the live server."""

    app: Any


@dataclass
class Live:
    url: str
    client: ApiClient
    chain: Chain

    @property
    def bridge(self) -> Any:
        return self.client.app.state.bridge


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    chain = connect("memory")
    dep = deploy_suite(chain, chain.accounts[0])
    app = create_app(web_settings(tmp_path_factory.mktemp("web")), chain=chain, deployment=dep, auditor=web_auditor)
    try:
        with served(app, start_timeout_s=60) as url, ApiClient(base_url=url, timeout=60) as client:
            client.app = app
            yield Live(url, client, chain)
    finally:
        chain.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.console_errors = errors  # type: ignore[attr-defined]  (a test may take out the ones it expects)
    try:
        yield pg
    finally:
        ctx.close()
    assert not errors, f"the page logged errors: {errors}"
