"""The web market's pages without a browser: offline assets (every script and stylesheet from the bridge
itself, the vendored htmx as pinned), the session cookie and CSRF protection, unreadable filters said on
the page (never a stack trace), the reference price band of settled leases. Browser flows: tests/web."""

from __future__ import annotations

import hashlib
import html as htmllib
import re
from pathlib import Path

from fastapi.testclient import TestClient

from bridge_helpers import new_account, ok, submission
from test_api_flow import PRICE, attestor_for, open_and_activate, services, setup_provider

STATIC = Path(__file__).resolve().parents[2] / "api" / "web" / "static"
HTMX_SHA256 = "22283ef68cb7545914f0a88a1bdedc7256a703d1d580c1d255217d0a50d31313"  # api/web/static/VENDORED.md


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, "the page has no CSRF token"
    return m.group(1)


def test_vendored_htmx_is_the_pinned_release() -> None:
    assert hashlib.sha256((STATIC / "htmx-2.0.8.min.js").read_bytes()).hexdigest() == HTMX_SHA256


def test_pages_load_only_the_bridges_own_assets(bridge: TestClient) -> None:
    prov = setup_provider(bridge, ["GPU-p-1"], PRICE)
    assert bridge.get("/", follow_redirects=False).headers["location"] == "/web/offers"
    for path in ("/web/offers", f"/web/offers/{prov['offerId']}", f"/web/providers/{prov['address']}", "/web/login",
                 "/web/account"):  # fmt: skip
        r = bridge.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "script-src 'self'" in r.headers["content-security-policy"]
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert refs and not [u for u in refs if re.match(r"(https?:)?//", u)], f"{path} loads from elsewhere: {refs}"
        for asset in {u for u in refs if u.startswith("/web/static/")}:
            assert bridge.get(asset).status_code == 200, asset


def test_login_sets_an_httponly_strict_session_and_forms_need_the_csrf_token(bridge: TestClient) -> None:
    _, key = new_account(bridge, "buyer")
    page = bridge.get("/web/login")
    token = csrf_of(page.text)
    assert "httponly" in page.headers["set-cookie"].lower() and "samesite=strict" in page.headers["set-cookie"].lower()
    refused = bridge.post("/web/login", data={"csrf": "0" * 64, "apiKey": key}, follow_redirects=False)
    assert refused.status_code == 403 and "security token" in refused.text and "cl_session" not in refused.headers.get("set-cookie", "")
    bad = bridge.post("/web/login", data={"csrf": token, "apiKey": "cl_nope"}, follow_redirects=False)
    assert bad.status_code == 401 and "malformed API key" in bad.text
    foreign = bridge.post("/web/login", data={"csrf": token, "apiKey": key}, headers={"Origin": "https://evil.example"},
                          follow_redirects=False)  # fmt: skip
    assert foreign.status_code == 403
    good = bridge.post("/web/login", data={"csrf": token, "apiKey": key}, follow_redirects=False)
    for hours in ("1e999999999", "NaN", "-1", "x"):  # a lease form with a number no one can mean: 422, said
        r = bridge.post("/web/leases", data={"csrf": token, "offerId": "1", "hours": hours}, follow_redirects=False)
        assert r.status_code == 422 and "hours" in htmllib.unescape(r.text), (hours, r.status_code)
    assert good.status_code == 303 and good.headers["location"] == "/web/account"
    cookie = good.headers["set-cookie"]
    assert cookie.startswith("cl_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert key not in cookie and key not in good.headers["location"]
    assert "Acting as managed account" in bridge.get("/web/account").text


def test_unreadable_filters_are_said_and_ignored(bridge: TestClient) -> None:
    setup_provider(bridge, ["GPU-f-1"], PRICE)
    r = bridge.get("/web/offers", params={"maxPrice": "cheap", "sort": "nonsense", "billing": "x", "minGpus": "-1"})
    assert r.status_code == 200
    for said in ("maximum price: 'cheap' is not a number", "sort 'nonsense' is unknown", "billing basis 'x' is unknown",
                 "minimum GPUs: '-1' is not a number"):  # fmt: skip
        assert said in htmllib.unescape(r.text)
    assert "1 offer" in r.text
    # numbers far too large are refused before anything expands them
    huge = bridge.get("/web/offers", params={"minGpus": "1e999999999", "page": "9" * 60, "maxPrice": "1e80"})
    assert huge.status_code == 200 and htmllib.unescape(huge.text).count("(ignored)") == 3
    # the availability window and the token are filters too
    assert "1 offer" in bridge.get("/web/offers", params={"minHours": "47"}).text  # valid 48 h (setup_provider)
    assert "0 offers" in bridge.get("/web/offers", params={"minHours": "49"}).text
    eth = "0x" + "00" * 20
    assert "1 offer" in bridge.get("/web/offers", params={"token": eth, "maxPrice": "0.0000036"}).text
    assert "0 offers" in bridge.get("/web/offers", params={"token": eth, "maxPrice": "0.0000035"}).text
    assert bridge.get("/web/leases/999999").status_code == 404
    assert bridge.get("/web/providers/nobody").status_code == 422


def test_reference_band_of_settled_leases_shows_in_the_book(bridge: TestClient) -> None:
    svc = services(bridge)
    prov = setup_provider(bridge, ["GPU-r-1", "GPU-r-2"], PRICE, region="eu-west", model="NVIDIA H100")
    _, bkey = new_account(bridge, "buyer")
    lease_id = open_and_activate(bridge, bkey, prov, "band-1")
    att = attestor_for(bridge, prov, lease_id)
    svc.chain.time_travel(svc.chain.now() + 600)
    rep, sig, samples = att.next_report()
    ok(bridge.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
    svc.relayer.flush()
    rates = svc.market.paid_rates()
    assert [(r.lease_id, r.per_gpu_hour) for r in rates] == [(lease_id, PRICE * 3600)]  # reserved: the price
    again = setup_provider(bridge, ["GPU-r-3"], 2 * PRICE, region="eu-west", model="NVIDIA H100")
    html = bridge.get("/web/offers", params={"gpuModel": "h100"}).text
    row = html[html.index(f'data-offer="{again["offerId"]}"'):]
    assert "0.0000036 ETH – 0.0000036 ETH" in row[: row.index("</tr>")] and "above" in row[: row.index("</tr>")]


def test_price_per_performance_uses_the_models_datasheet_figure_and_sorts_the_book(bridge: TestClient) -> None:
    """An H100 at twice an A100's price is still cheaper per PFLOP-hour (989 vs 312 TFLOPS BF16); a model with no
    figure says so and sorts last either way."""
    h100 = setup_provider(bridge, ["GPU-p-1"], 2 * PRICE, region="us-east", model="NVIDIA H100 80GB HBM3")
    a100 = setup_provider(bridge, ["GPU-p-2"], PRICE, region="us-east", model="NVIDIA A100-SXM4-80GB")
    other = setup_provider(bridge, ["GPU-p-3"], PRICE, region="us-east", model="Unknown Accelerator 9000")

    def order(sort: str) -> list[int]:
        html = bridge.get("/web/offers", params={"region": "us-east", "sort": sort}).text
        return [int(i) for i in re.findall(r'<tr data-offer="(\d+)"', html)]

    ids = [h100["offerId"], a100["offerId"], other["offerId"]]
    assert order("perf") == ids
    assert order("-perf") == [a100["offerId"], h100["offerId"], other["offerId"]]
    assert order("price")[-1] == h100["offerId"]  # the dearest per GPU-hour
    html = bridge.get("/web/offers", params={"region": "us-east"}).text
    row = html[html.index(f'data-offer="{h100["offerId"]}"'):]
    row = row[: row.index("</tr>")]
    # 2 × PRICE wei/GPU-s = 0.0000072 ETH per GPU-hour; per PFLOP-hour × 1000 / 989
    assert "(989 TFLOPS)" in row and "0.00000728 ETH" in row
    row = html[html.index(f'data-offer="{other["offerId"]}"'):]
    assert "no figure" in row[: row.index("</tr>")]
