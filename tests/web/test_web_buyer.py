"""A buyer in the browser: finds an offer by filter, logs in, opens a lease, watches charges rise as reports
settle, closes it and sees the refund."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from bridge_helpers import new_account, ok, submission  # tests/api (on the path: tests/web/conftest.py)
from test_api_flow import PRICE, attestor_for, setup_provider

from .conftest import Live


def login(page: Page, live: Live, api_key: str) -> None:
    page.goto(f"{live.url}/web/login")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#acting-address")).to_be_visible()


def test_buyer_filters_opens_watches_closes(live: Live, page: Page) -> None:
    c = live.client
    h100 = setup_provider(c, ["GPU-web-h1", "GPU-web-h2"], PRICE, region="eu-west", model="NVIDIA H100 80GB HBM3")
    setup_provider(c, ["GPU-web-a1"], 3 * PRICE, region="us-east", model="NVIDIA A100")
    buyer, key = new_account(c, "buyer")

    # the offer book, filtered by GPU model and region: only the H100 offer is left, its price in ETH
    page.goto(f"{live.url}/web/offers")
    expect(page.locator("h1")).to_have_text("Offer book")
    page.get_by_label("GPU model").fill("h100")
    page.get_by_label("Region").select_option("eu-west")
    page.get_by_role("button", name="Apply").click()
    row = page.locator(f'tr[data-offer="{h100["offerId"]}"]')
    expect(row).to_be_visible()
    expect(page.locator("#book tbody tr")).to_have_count(1)
    expect(row.locator(".price")).to_have_text("0.0000036 ETH")  # 1 gwei per GPU-second × 3600
    assert "gpuModel=h100" in page.url  # the filter is in the URL: a comparison can be shared

    # log in with the API key (a session cookie the page cannot read), open a lease from the offer page
    login(page, live, key)
    cookies = {ck["name"]: ck for ck in page.context.cookies()}
    assert cookies["cl_session"]["httpOnly"] and cookies["cl_session"]["sameSite"] == "Strict"
    assert key not in page.url and key not in str(page.evaluate("JSON.stringify(localStorage)+JSON.stringify(sessionStorage)"))
    page.goto(f"{live.url}/web/offers/{h100['offerId']}")
    page.get_by_label("Duration (hours)").fill("1")
    page.get_by_role("button", name="Open lease").click()
    expect(page).to_have_url(re.compile(r"/web/leases/\d+$"))
    lease_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#lease-state")).to_have_text("Open")
    expect(page.locator("#charged")).to_have_text("0 ETH")

    # the provider starts it; the attestor reports; the relayer settles: the page (polling) shows charges rise
    ok(c.post(f"/v1/leases/{lease_id}/activate", headers={"Authorization": f"Bearer {h100['key']}"}))
    att = attestor_for(c, h100, lease_id)  # type: ignore[arg-type]
    live.chain.time_travel(live.chain.now() + 600)
    seen: list[str] = []
    for _ in range(2):
        for _ in range(2):
            rep, sig, samples = att.next_report()
            ok(c.post("/v1/metering/reports", json=submission(h100["nodeId"], rep, sig, samples)), 201)
        live.bridge.relayer.flush()
        expected = f"{PRICE * att.cum['alloc'] // 1000 / 10**18:.10f}".rstrip("0")
        expect(page.locator("#charged")).to_have_text(f"{expected} ETH", timeout=10_000)  # htmx refresh, no reload
        seen.append(page.locator("#charged").inner_text())
    assert seen[0] != seen[1]
    expect(page.locator("#checkpoints tbody tr")).to_have_count(2)
    expect(page.locator("#checkpoints tbody tr").first.locator(".mono")).to_have_text(re.compile(r"^0x[0-9a-f]{64}$"))
    assert int(page.locator("svg.chart").first.get_attribute("data-points") or 0) == 4
    expect(page.locator("#escrow-alert")).to_be_visible()  # a 1 h lease runs out within the hour

    # close: the rest is refunded
    page.get_by_role("button", name="Close lease").click()
    expect(page.locator("#lease-state")).to_have_text("Closed")
    doc = ok(c.get(f"/v1/leases/{lease_id}"))
    refund = int(doc["money"]["refund"]) + int(doc["money"]["feeRefund"])
    assert refund > 0
    expect(page.locator("#refund")).to_contain_text("ETH")
    shown = page.locator("#refund").inner_text().split()[0]
    assert abs(float(shown) - refund / 10**18) < 1e-6
    assert ok(c.get(f"/v1/balances/{buyer}"))["withdrawableWei"] != "0"

    # rate the provider; the offer page shows it in the provider's history, with the node's availability bars
    page.get_by_label("Rate the provider (1–5)").select_option("4")
    page.get_by_role("button", name="Rate").click()
    page.goto(f"{live.url}/web/offers/{h100['offerId']}")
    expect(page.locator("#history")).to_contain_text("rated 4 / 5")
    expect(page.locator("#days rect")).to_have_count(14)
    assert "100.0 %" in (page.locator("#days rect title").last.text_content() or "")  # every leased GPU-ms attested
