"""Metering protocol 2 at the bridge: intake re-derives what it can and refuses what cannot be true, reports
from the future are refused (or, on the clockless memory chain, followed), SM-active offers need GPM, and a
lease's page shows its usage."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bridge_helpers import auth, new_account, ok, submission
from test_api_flow import HOUR, PRICE, attestor_for, open_and_activate, services, setup_provider

from api.services.metering import ChainTime
from ledger.chain.signing import sign_digest
from ledger.protocol import DOMAIN_VERSION, ReportFlag, report_digest


def _code(resp: object) -> tuple[int, str]:
    return resp.status_code, resp.json()["detail"]["code"]  # type: ignore[attr-defined]


def _resign(att: object, report: object) -> bytes:
    return sign_digest(report_digest(report, att.chain_id, att.escrow), att.key)  # type: ignore[attr-defined, arg-type]


def _lease_with_attestor(client: TestClient, uuids: list[str], billing_mode: str, idem: str) -> tuple[int, int, Any]:
    """(node id, lease id, the node's signing attestor) of a fresh provider's node leased by a fresh buyer."""
    prov = setup_provider(client, uuids, PRICE, billing_mode=billing_mode)
    _, bkey = new_account(client, "buyer")
    lease_id = open_and_activate(client, bkey, prov, idem)
    return prov["nodeId"], lease_id, attestor_for(client, prov, lease_id)


def test_intake_refuses_figures_its_samples_do_not_support(bridge: TestClient) -> None:
    client = bridge
    node, lease_id, att = _lease_with_attestor(client, ["GPU-v2-1", "GPU-v2-2"], "metered", "v2-figures")
    r1, _, s1 = att.next_report()
    # busy time ten times what the samples show, signed by the node's real key: refused, nothing stored
    inflated = r1.replace(busyMs=r1.busyMs * 10, cumBusyMs=r1.cumBusyMs * 10)
    resp = client.post("/v1/metering/reports", json=submission(node, inflated, _resign(att, inflated), s1))
    assert _code(resp) == (422, "figures_mismatch") and "busyMs" in resp.json()["detail"]["message"]
    late = r1.replace(windowEndMs=r1.windowEndMs + 5_000)  # the window must end at its newest sample
    assert _code(client.post("/v1/metering/reports", json=submission(node, late, _resign(att, late), s1))) == (
        422, "figures_mismatch",
    )  # fmt: skip
    quiet = r1.replace(flags=0)  # the samples say SIMULATED: the report must too
    assert r1.flags & ReportFlag.SIMULATED
    assert _code(client.post("/v1/metering/reports", json=submission(node, quiet, _resign(att, quiet), s1))) == (
        422, "figures_mismatch",
    )  # fmt: skip
    assert ok(client.get(f"/v1/leases/{lease_id}/reports"))["reports"] == []
    ok(client.post("/v1/metering/reports", json=submission(node, r1, _resign(att, r1), s1)), 201)
    # the chain's arithmetic: a cumulative counter that goes backwards (window figures true, totals not)
    r2, _, s2 = att.next_report()
    backwards = r2.replace(cumBusyMs=r1.cumBusyMs - 1)
    resp = client.post("/v1/metering/reports", json=submission(node, backwards, _resign(att, backwards), s2))
    assert _code(resp) == (422, "figures_mismatch") and "cumBusyMs" in resp.json()["detail"]["message"]
    ok(client.post("/v1/metering/reports", json=submission(node, r2, _resign(att, r2), s2)), 201)
    usage = ok(client.get(f"/v1/leases/{lease_id}"))["usage"]
    assert usage["reports"] == 2 and usage["busyMs"] == r2.cumBusyMs and usage["smActiveMs"] == r2.cumSmActiveMs
    assert usage["smActiveShareOfBusyPct"] == round(100 * r2.cumSmActiveMs / r2.cumBusyMs, 1)


def test_reports_from_the_future_are_refused_where_the_chain_keeps_time(bridge: TestClient) -> None:
    client = bridge
    svc = services(client)
    domain = ok(client.get("/v1/metering/domain"))
    assert domain["domainVersion"] == DOMAIN_VERSION and domain["chainClock"] == "follows"  # memory backend
    prov = setup_provider(client, ["GPU-v2-f"], PRICE)
    _, bkey = new_account(client, "buyer")
    lease_id = open_and_activate(client, bkey, prov, "v2-future")
    att = attestor_for(client, prov, lease_id)
    att.last_end_ms = svc.chain.now() * 1000 + 25 * 60_000  # an attestor clock 25 minutes ahead
    r, sig, smp = att.next_report()
    metering = svc.metering
    keeps_time = ChainTime(svc.chain.now)  # what a chain with its own clock (anvil, rpc) is
    following = metering.chain_time
    metering.chain_time = keeps_time
    try:
        resp = client.post("/v1/metering/reports", json=submission(prov["nodeId"], r, sig, smp))
        assert _code(resp) == (422, "window_in_future") and "attestor's clock" in resp.json()["detail"]["message"]
        assert ok(client.get(f"/v1/leases/{lease_id}/reports"))["reports"] == []
    finally:
        metering.chain_time = following
    # the memory chain has no clock of its own: it follows the report instead
    ok(client.post("/v1/metering/reports", json=submission(prov["nodeId"], r, sig, smp)), 201)
    assert svc.chain.now() * 1000 >= r.windowEndMs


def test_sm_active_offers_need_a_node_that_measures_sm_activity(bridge: TestClient) -> None:
    client = bridge
    without = setup_provider(client, ["GPU-v2-nogpm"], PRICE, gpm=False)
    assert ok(client.get(f"/v1/nodes/{without['nodeId']}"))["gpm"] is False
    now = services(client).chain.now()
    body = {"nodeId": without["nodeId"], "gpuIndices": [0], "pricePerGpuSecondWei": PRICE, "billingMode": "sm_active",
            "validFrom": now, "validUntil": now + HOUR}  # fmt: skip
    resp = client.post("/v1/offers", json=body, headers=auth(without["key"]))
    assert _code(resp) == (422, "node_lacks_gpm") and resp.json()["detail"]["field"] == "billingMode"
    with_gpm = setup_provider(client, ["GPU-v2-gpm"], PRICE, billing_mode="sm_active")
    offer = ok(client.get(f"/v1/offers/{with_gpm['offerId']}"))
    assert offer["billingMode"] == "sm_active"
    listed = ok(client.get("/v1/offers", params={"billingMode": "sm_active"}))["offers"]
    assert [o["offerId"] for o in listed] == [with_gpm["offerId"]]


def test_a_refused_report_is_logged_with_its_reason(bridge: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="api")
    prov = setup_provider(bridge, ["GPU-log-1"], PRICE)
    _, bkey = new_account(bridge, "buyer")
    lease_id = open_and_activate(bridge, bkey, prov, "log")
    att = attestor_for(bridge, prov, lease_id)
    r, _, smp = att.next_report()
    bad = r.replace(busyMs=r.busyMs + 1, cumBusyMs=r.cumBusyMs + 1)
    assert bridge.post("/v1/metering/reports", json=submission(prov["nodeId"], bad, _resign(att, bad), smp)).status_code == 422
    assert f"report refused: lease {lease_id} seq 1" in caplog.text and "figures_mismatch" in caplog.text


def test_every_untrue_figure_is_refused_and_nothing_is_written(bridge: TestClient) -> None:
    """Finding 8 of issue 13, case by case: signed by the node's real key, each report below says something its
    samples or its chain do not, and each is refused with the figure named; the true reports then go in."""
    client = bridge
    node, lease_id, att = _lease_with_attestor(client, ["GPU-v2-u1", "GPU-v2-u2"], "sm_active", "v2-untrue")

    def refused(report: object, samples: list[object], code: str, names: str) -> None:
        resp = client.post("/v1/metering/reports", json=submission(node, report, _resign(att, report), samples))
        assert _code(resp) == (422, code), (names, resp.text)
        assert names in resp.json()["detail"]["message"], resp.text

    r1, _, s1 = att.next_report()
    # window figures the samples do not support (each window figure, inflated and shrunk, its total with it)
    for win, cum in (("busyMs", "cumBusyMs"), ("allocatedMs", "cumAllocatedMs"), ("smActiveMs", "cumSmActiveMs")):
        for factor in (10, 0):
            bad = r1.replace(**{win: getattr(r1, win) * factor, cum: getattr(r1, cum) * factor})
            refused(bad, s1, "figures_mismatch", win)
    for name in ("tensorActiveMs", "maxMemUsedMiB"):
        refused(r1.replace(**{name: getattr(r1, name) * 10 + 1}), s1, "figures_mismatch", name)
    # energy the counters do not show (its total with it, so the chain's arithmetic holds)
    refused(r1.replace(energyMj=r1.energyMj + 1, cumEnergyMj=r1.cumEnergyMj + 1), s1, "figures_mismatch", "energyMj")
    # a first report's totals are its window's figures
    for cum in ("cumBusyMs", "cumAllocatedMs", "cumSmActiveMs", "cumEnergyMj"):
        refused(r1.replace(**{cum: getattr(r1, cum) + 1}), s1, "figures_mismatch", cum)
    # samples that are not the committed ones, or fewer than the report counts
    refused(r1.replace(sampleCount=r1.sampleCount + 1), s1, "samples_mismatch", "sampleCount")
    refused(r1, s1[:-1], "samples_mismatch", "sampleCount")
    assert ok(client.get(f"/v1/leases/{lease_id}/reports"))["reports"] == []
    ok(client.post("/v1/metering/reports", json=submission(node, r1, _resign(att, r1), s1)), 201)

    r2, _, s2 = att.next_report()
    # every cumulative counter going backwards (the window figures true, the totals not)
    for cum in ("cumBusyMs", "cumAllocatedMs", "cumSmActiveMs", "cumEnergyMj"):
        refused(r2.replace(**{cum: getattr(r1, cum) - 1}), s2, "figures_mismatch", cum)
        refused(r2.replace(**{cum: getattr(r2, cum) + 1}), s2, "figures_mismatch", cum)  # or jumping ahead
    # the energy since the previous report's counters, ten times over
    assert r2.energyMj > 0
    more = r2.replace(energyMj=r2.energyMj * 10, cumEnergyMj=r1.cumEnergyMj + r2.energyMj * 10)
    refused(more, s2, "figures_mismatch", "energyMj")
    # a window that does not start where the previous one ended
    refused(r2.replace(windowStartMs=r2.windowStartMs - 1000), s2, "figures_mismatch", "windowStartMs")
    assert len(ok(client.get(f"/v1/leases/{lease_id}/reports"))["reports"]) == 1
    ok(client.post("/v1/metering/reports", json=submission(node, r2, _resign(att, r2), s2)), 201)
