"""An auditor in the browser: audits a lease (VERIFIED), then the same lease after the bridge's copy of a
report's samples was tampered with (FAILED, the bridge to blame), each check with its detail, the evidence
downloadable, and the same verdict as the audit CLI's run over the same sources."""

from __future__ import annotations

import json
from dataclasses import replace

from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from api.store.models import Report, SampleSet
from api.store.samples import CODEC_ZLIB_COLUMNS, decode_samples, encode_samples
from auditor.cli import run
from auditor.sources import ApiSource
from bridge_helpers import new_account, ok, submission
from test_api_flow import PRICE, attestor_for, open_and_activate, setup_provider

from .conftest import Live


def audit_in_browser(page: Page, live: Live, lease_id: int) -> None:
    page.goto(f"{live.url}/web/audit")
    page.get_by_label("Lease id").fill(str(lease_id))
    page.get_by_role("button", name="Run audit").click()
    expect(page.locator("#verdict")).to_contain_text(f"Lease {lease_id}", timeout=30_000)


def test_auditor_sees_a_tampered_lease_fail(live: Live, page: Page) -> None:
    c = live.client
    prov = setup_provider(c, ["GPU-aud-1", "GPU-aud-2"], PRICE, region="eu-north")
    _, bkey = new_account(c, "buyer")
    lease_id = open_and_activate(c, bkey, prov, "web-audit")
    att = attestor_for(c, prov, lease_id)  # type: ignore[arg-type]
    live.chain.time_travel(live.chain.now() + 600)
    for _ in range(3):
        rep, sig, samples = att.next_report()
        ok(c.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
    live.bridge.relayer.flush()

    audit_in_browser(page, live, lease_id)
    expect(page.locator("#verdict-status")).to_have_text("VERIFIED")
    expect(page.locator("#checks tbody tr.fail")).to_have_count(0)
    assert page.locator("#checks tbody tr").count() > 5
    # evidence: the verdict as JSON, the HTML report, the reports and samples archive
    with page.expect_download() as dl:
        page.get_by_role("link", name="verdict (JSON)").click()
    verdict = json.loads(open(dl.value.path()).read())
    assert verdict["status"] == "verified" and verdict["leaseId"] == lease_id
    assert c.get(f"/v1/audit/archive?leaseId={lease_id}").text.count("\n") == 3
    # the offer book now says the provider was audited
    page.goto(f"{live.url}/web/offers?all=1&audited=1")
    expect(page.locator(f'tr[data-offer="{prov["offerId"]}"]')).to_contain_text("VERIFIED")

    # the bridge's copy of report 2's samples is altered: they no longer hash to the signed samples root
    store = live.bridge.store
    with store.db.write() as s:
        root = s.scalar(select(Report.samples_root).where(Report.lease_id == lease_id, Report.seq == 2))
        data, codec = s.execute(select(SampleSet.data, SampleSet.codec).where(SampleSet.root == root)).one()
        samples = decode_samples(data, codec)
        samples[-1] = replace(samples[-1], busyMs=samples[-1].busyMs ^ 1)  # one figure of one sample changed
        s.execute(update(SampleSet).where(SampleSet.root == root).values(data=encode_samples(samples), codec=CODEC_ZLIB_COLUMNS))
    audit_in_browser(page, live, lease_id)
    expect(page.locator("#verdict-status")).to_have_text("FAILED")
    failed = page.locator("#checks tbody tr.fail")
    assert failed.count() >= 1
    expect(failed.first.locator("td").nth(3)).to_have_text("2")  # the report that fails
    rows = [[td.inner_text() for td in tr.locator("td").all()] for tr in failed.all()]
    assert all(r[4] for r in rows)  # each failure says why

    # the CLI's run over the same sources gives the same verdict, check by check
    with ApiSource(live.url, chain=live.bridge.ledger) as source:
        [(_, cli_verdict)] = run(source, [lease_id])
    with page.expect_download() as dl:
        page.get_by_role("link", name="verdict (JSON)").click()
    web_verdict = json.loads(open(dl.value.path()).read())
    assert web_verdict["status"] == "failed"
    strip = lambda v: [(r["check"], r["status"], r["party"], r["reportSeq"]) for r in v["results"]]  # noqa: E731
    assert strip(web_verdict) == strip(cli_verdict.to_json())
    assert {r[2] for r in rows} <= {"bridge", "attestor"}

    # the lease page marks the report the audit failed
    page.goto(f"{live.url}/web/leases/{lease_id}")
    expect(page.locator("#lease-audit")).to_have_text("FAILED")
    audit_cells = {r.locator("td").nth(0).inner_text(): r.locator("td").nth(4).inner_text() for r in page.locator("#reports tbody tr").all()}
    assert audit_cells == {"3": "PASS", "2": "FAIL", "1": "PASS"}
