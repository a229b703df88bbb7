"""The provider, wallet and accessibility checks of the web market, in headless Chromium."""

from __future__ import annotations

import re
from typing import Any

from eth_account import Account
from playwright.sync_api import Page, expect

from bridge_helpers import new_account, ok, submission
from test_api_flow import PRICE, attestor_for, open_and_activate, setup_provider

from .conftest import Live


def test_provider_sees_a_refused_reports_reason(live: Live, page: Page) -> None:
    c = live.client
    prov = setup_provider(c, ["GPU-ref-1"], PRICE, region="ap-south")
    _, bkey = new_account(c, "buyer")
    lease_id = open_and_activate(c, bkey, prov, "web-refused")
    att = attestor_for(c, prov, lease_id)  # type: ignore[arg-type]
    att.key = bytes(Account.create().key)  # a report signed by a key that is not the node's attestor
    live.chain.time_travel(live.chain.now() + 120)
    rep, sig, samples = att.next_report()
    refused = c.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples))
    assert refused.status_code == 403, refused.text
    reason = refused.json()["detail"]
    page.goto(f"{live.url}/web/providers/{prov['address']}")
    row = page.locator("#refusals tbody tr").filter(has_text=f"{reason['code']}")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(reason["message"])
    expect(row.locator("td").nth(2)).to_have_text(str(lease_id))
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    expect(page.locator("#nodes tbody tr")).to_contain_text("none yet")  # its only report was refused
    expect(page.locator("#leases tbody tr")).to_contain_text(f"#{lease_id}")
    expect(page.locator("#days rect")).to_have_count(14)  # per-day attested availability, the last 14 days
    expect(page.locator("#days rect title").last).to_contain_text("%")  # today a lease ran; its report attested it


# An EIP-1193 provider injected before any page script: accounts from the test, eth_sendTransaction forwarded
# to Python (which signs the transaction with the wallet's key and submits it through POST /v1/tx).
WALLET_JS = """
window.ethereum = {
  async request({ method, params }) {
    if (method === "eth_requestAccounts" || method === "eth_accounts") return [%(address)r];
    if (method === "eth_chainId") return "0x" + (%(chain_id)d).toString(16);
    if (method === "eth_sendTransaction") return await window.__walletSend(params[0]);
    throw new Error("unsupported method " + method);
  },
};
"""


def injected_wallet(live: Live, page: Page, wallet: Any) -> list[dict[str, Any]]:
    """Inject the test wallet into ``page``; returns the list of transactions it is asked to send."""
    c = live.client
    chain_id = int(ok(c.get("/v1/chain"))["chainId"])
    sent: list[dict[str, Any]] = []

    def wallet_send(tx: dict[str, Any]) -> str:
        """The wallet: check what it is asked to sign, sign it, submit it."""
        assert tx["from"].lower() == wallet.address.lower() and int(tx["chainId"], 16) == chain_id
        sent.append(tx)
        fields = {"to": tx["to"], "data": tx["data"], "value": int(tx["value"], 16), "gas": int(tx["gas"], 16),
                  "nonce": int(tx["nonce"], 16), "chainId": chain_id}  # fmt: skip
        if "maxFeePerGas" in tx:
            fields.update(maxFeePerGas=int(tx["maxFeePerGas"], 16), maxPriorityFeePerGas=int(tx["maxPriorityFeePerGas"], 16))
        else:
            fields["gasPrice"] = int(tx["gasPrice"], 16)
        raw = Account.sign_transaction(fields, wallet.key).raw_transaction
        answer = ok(c.post("/v1/tx", json={"rawTransaction": "0x" + raw.hex().removeprefix("0x")}))
        return str(answer["txHash"])

    page.expose_function("__walletSend", wallet_send)
    page.add_init_script(WALLET_JS % {"address": wallet.address, "chain_id": chain_id})
    return sent


def test_wallet_opens_a_lease_signing_in_the_wallet(live: Live, page: Page) -> None:
    c = live.client
    prov = setup_provider(c, ["GPU-wal-1"], PRICE, region="sa-east")
    wallet = Account.create()
    ok(c.post("/v1/faucet", json={"address": wallet.address, "amountWei": 10**19}))
    sent = injected_wallet(live, page, wallet)
    page.goto(f"{live.url}/web/offers/{prov['offerId']}")
    page.get_by_role("button", name="Connect wallet").click()
    expect(page.locator("#acting")).to_contain_text(f"Acting as wallet {wallet.address}")
    expect(page.locator("#acting")).to_contain_text("signed in your wallet")
    page.get_by_label("Duration (hours)").fill("2")
    page.get_by_role("button", name=re.compile("Open lease")).click()
    expect(page).to_have_url(re.compile(r"/web/leases/\d+$"), timeout=15_000)
    lease_id = int(page.url.rsplit("/", 1)[1])
    doc = ok(c.get(f"/v1/leases/{lease_id}"))
    assert doc["buyer"] == wallet.address and doc["durationS"] == 2 * 3600 and len(sent) == 1
    expect(page.locator("#lease-state")).to_have_text("Open")
    expect(page.locator("#acting")).to_contain_text(wallet.address)  # the wallet still acts on the lease page

    # the provider starts it; the wallet closes it from the lease page: a second transaction signed in the wallet
    ok(c.post(f"/v1/leases/{lease_id}/activate", headers={"Authorization": f"Bearer {prov['key']}"}))
    page.reload()
    expect(page.locator("#lease-state")).to_have_text("Active")
    page.get_by_role("button", name="Close lease").click()
    expect(page.locator("#lease-state")).to_have_text("Closed", timeout=15_000)
    assert len(sent) == 2 and ok(c.get(f"/v1/leases/{lease_id}"))["state"] == "Closed"
    expect(page.locator("#refund")).to_contain_text("ETH")
    page.goto(f"{live.url}/web/account")  # the wallet's leases, listed from the JSON API
    expect(page.locator("#wallet-leases")).to_contain_text(f"Lease #{lease_id} on offer #{prov['offerId']}: Closed")


def test_wallet_approves_the_token_then_opens_an_erc20_lease(live: Live, page: Page) -> None:
    c = live.client
    token = ok(c.get("/v1/tokens"))["devToken"]
    prov = setup_provider(c, ["GPU-wal-t1"], PRICE, region="me-south", token=token)
    wallet = Account.create()
    ok(c.post("/v1/faucet", json={"address": wallet.address, "amountWei": 10**19}))
    ok(c.post("/v1/faucet", json={"address": wallet.address, "amountWei": 10**20, "token": token}))
    sent = injected_wallet(live, page, wallet)
    page.goto(f"{live.url}/web/offers/{prov['offerId']}")
    expect(page.locator("#offer-price")).to_have_text("0.0000036 tUSD")  # the token's symbol and decimals
    page.get_by_role("button", name="Connect wallet").click()
    page.get_by_label("Duration (hours)").fill("1")
    page.get_by_role("button", name=re.compile("Open lease")).click()
    expect(page).to_have_url(re.compile(r"/web/leases/\d+$"), timeout=15_000)
    lease_id = int(page.url.rsplit("/", 1)[1])
    assert [tx["to"].lower() for tx in sent][0] == token.lower() and len(sent) == 2  # approve, then openLease
    doc = ok(c.get(f"/v1/leases/{lease_id}"))
    assert doc["buyer"] == wallet.address and doc["token"] == token
    expect(page.locator("#escrow-left")).to_contain_text("tUSD")
    # the browser logs the bridge's 409 approval_required answer (the approve it carried was signed): expected
    expected = [e for e in page.console_errors if "status of 409" in e]  # type: ignore[attr-defined]
    assert len(expected) == 1
    page.console_errors.remove(expected[0])  # type: ignore[attr-defined]


CONTRAST_JS = """
() => {
  const lum = (rgb) => {
    const c = rgb.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const bg = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const b = getComputedStyle(e).backgroundColor;
      const alpha = b.startsWith("rgba") ? Number(b.split(",")[3]) : 1;
      if (alpha > 0) return b;
    }
    return "rgb(255, 255, 255)";
  };
  const worst = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || !el || !el.offsetParent) continue;
    const a = lum(getComputedStyle(el).color), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)} "${el.textContent.trim().slice(0, 30)}"`);
  }
  return worst;
}
"""

UNLABELLED_JS = """
() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((el) => el.type !== "hidden")
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !(el.tagName === "BUTTON" && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))
"""


def test_pages_have_labels_keyboard_focus_and_contrast(live: Live, page: Page) -> None:
    c = live.client
    prov = setup_provider(c, ["GPU-a11y-1"], PRICE)
    _, bkey = new_account(c, "buyer")
    lease_id = open_and_activate(c, bkey, prov, "web-a11y")
    for path in ("/web/offers", f"/web/offers/{prov['offerId']}", f"/web/leases/{lease_id}",
                 f"/web/providers/{prov['address']}", "/web/login", "/web/account"):  # fmt: skip
        page.goto(live.url + path)
        assert page.evaluate(UNLABELLED_JS) == [], path
        assert page.evaluate(CONTRAST_JS) == [], path
        assert page.locator("html").get_attribute("lang") == "en" and page.locator("h1").count() == 1, path
        # keyboard: the first Tab reaches the skip link, whose target is the main content; focus is visible
        page.keyboard.press("Tab")
        focused = page.evaluate("() => [document.activeElement.className, getComputedStyle(document.activeElement).outlineStyle]")
        assert focused == ["skip", "solid"], (path, focused)
    # the offer book works from the keyboard alone: type a filter, Enter applies it, Tab reaches the results
    page.goto(f"{live.url}/web/offers")
    page.get_by_label("GPU model").focus()
    page.keyboard.type("no-such-gpu")
    page.keyboard.press("Enter")
    expect(page.locator("#book")).to_contain_text("No offer matches these filters.")
