"""Screenshots of the web market's pages for the README (``make screenshots``), taken from a live bridge.

    python tools/web_screenshots.py [--out docs/img]

Starts the bridge on the memory chain (127.0.0.1), makes a market to show (providers in three regions, a
lease with settled reports, a refused report, an audit), and drives Debian's headless Chromium
(/usr/bin/chromium, Playwright) through the pages: offer book, offer, lease, provider, audit, login.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "api"))

import httpx  # noqa: E402
from eth_account import Account  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from bridge_helpers import new_account, ok, submission  # noqa: E402
from compute_ledger.web_audit import web_auditor  # noqa: E402
from ledger.chain.backends import connect  # noqa: E402
from ledger.chain.deploy import deploy_suite  # noqa: E402
from test_api_flow import PRICE, attestor_for, open_and_activate, setup_provider  # noqa: E402
from tests.support.serve import served  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


class _Client(httpx.Client):
    app: object


def make_market(c: _Client, chain: object) -> dict[str, int | str]:
    """Offers in three regions, a lease with settled and unsettled reports, a refused report, an audit."""
    h100 = setup_provider(c, ["GPU-shot-1", "GPU-shot-2", "GPU-shot-3", "GPU-shot-4"], PRICE,  # type: ignore[arg-type]
                          region="eu-west", model="NVIDIA H100 80GB HBM3", billing_mode="metered")  # fmt: skip
    for i, (region, model, price) in enumerate([("us-east", "NVIDIA A100-SXM4-80GB", 2 * PRICE // 3),
                                                ("ap-south", "NVIDIA L40S", PRICE // 2),
                                                ("eu-west", "NVIDIA H100 80GB HBM3", 5 * PRICE // 4)]):  # fmt: skip
        setup_provider(c, [f"GPU-shot-x{i}-{g}" for g in range(2)], price, region=region, model=model)  # type: ignore[arg-type]
    _, bkey = new_account(c, "buyer")  # type: ignore[arg-type]
    lease_id = open_and_activate(c, bkey, h100, "shots")  # type: ignore[arg-type]
    att = attestor_for(c, h100, lease_id)  # type: ignore[arg-type]
    bridge = c.app.state.bridge  # type: ignore[attr-defined]
    chain.time_travel(chain.now() + 40 * 60)  # type: ignore[attr-defined]
    for i in range(30):
        rep, sig, samples = att.next_report(util_bps=4000 + (i * 1733) % 6000)
        ok(c.post("/v1/metering/reports", json=submission(h100["nodeId"], rep, sig, samples)), 201)
        if i % 10 == 9:
            bridge.relayer.flush()
    liar = attestor_for(c, h100, lease_id)  # type: ignore[arg-type]
    liar.key = bytes(Account.create().key)
    rep, sig, samples = liar.next_report()
    c.post("/v1/metering/reports", json=submission(h100["nodeId"], rep, sig, samples))  # refused: wrong signer
    return {"lease": lease_id, "offer": int(h100["offerId"]), "provider": str(h100["address"]), "buyerKey": bkey}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--png", action="store_true", help="lossless PNG instead of JPEG (larger files)")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"screenshots need Debian's chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    chain = connect("memory")
    dep = deploy_suite(chain, chain.accounts[0])
    settings = Settings(chain_backend="memory", data_dir=Path(tempfile.mkdtemp(prefix="shots-")), background=False,
                        settle_every_s=1e9, settle_threshold_wei=10**30)  # fmt: skip
    app = create_app(settings, chain=chain, deployment=dep, auditor=web_auditor)
    try:
        with served(app, start_timeout_s=60) as url, _Client(base_url=url, timeout=60) as c, sync_playwright() as p:
            c.app = app
            m = make_market(c, chain)
            def shoot(pg: Any, stem: Path, full_page: bool = False) -> None:
                path = stem.with_suffix(".png" if args.png else ".jpg")
                if args.png:
                    pg.screenshot(path=str(path), full_page=full_page)
                else:
                    pg.screenshot(path=str(path), type="jpeg", quality=70, full_page=full_page)
                print(f"wrote {path}")

            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(f"{url}/web/audit")
            page.get_by_label("Lease id").fill(str(m["lease"]))
            page.get_by_role("button", name="Run audit").click()
            page.wait_for_selector("#verdict-status")
            shots = {
                "web-offers": "/web/offers",
                "web-offer": f"/web/offers/{m['offer']}",
                "web-provider": f"/web/providers/{m['provider']}",
                "web-audit": f"/web/audit?lease={m['lease']}",
                "web-login": "/web/login",
            }
            for name, path in shots.items():
                page.goto(url + path)
                shoot(page, args.out / name)
            page.goto(f"{url}/web/login")
            page.get_by_label("API key").fill(str(m["buyerKey"]))
            page.get_by_role("button", name="Log in").click()
            page.goto(f"{url}/web/leases/{m['lease']}")
            shoot(page, args.out / "web-lease", full_page=True)
            browser.close()
    finally:
        chain.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
