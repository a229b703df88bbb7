"""Errors: metering codes of api/METERING_API.md, 422 naming the field, 413, contract reverts mapped to statuses."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ledger.protocol import ReportFlag

from bridge_helpers import auth, new_account, ok, submission
from test_api_flow import HOUR, PRICE, attestor_for, open_and_activate, services, setup_provider


def _code(resp: object) -> tuple[int, str]:
    r = resp  # httpx.Response
    return r.status_code, r.json()["detail"]["code"]  # type: ignore[attr-defined]


def test_metering_answers_protocol_codes(bridge: TestClient) -> None:
    client = bridge
    prov = setup_provider(client, ["GPU-err-1"], PRICE)
    _, bkey = new_account(client, "buyer")
    lease_id = open_and_activate(client, bkey, prov, "err")
    att = attestor_for(client, prov, lease_id)
    services(client).chain.time_travel(services(client).chain.now() + 600)
    node = prov["nodeId"]
    r1 = att.next_report()
    r2 = att.next_report()
    r3 = att.next_report()
    # a gap: seq 2 before seq 1
    assert _code(client.post("/v1/metering/reports", json=submission(node, *r2))) == (409, "seq_gap")
    first = client.post("/v1/metering/reports", json=submission(node, *r1))
    assert first.status_code == 201
    # the exact duplicate is acknowledged again with 200, nothing stored twice
    dup = client.post("/v1/metering/reports", json=submission(node, *r1))
    assert dup.status_code == 200 and dup.json() == {**first.json(), "duplicate": True}
    # same seq, other content (still true to its samples: a flag the samples cannot show)
    forged = r1[0].replace(flags=r1[0].flags | int(ReportFlag.CLOCK_ADJUSTED))
    from ledger.protocol import report_digest
    from ledger.chain.signing import sign_digest

    sig = sign_digest(report_digest(forged, att.chain_id, att.escrow), att.key)
    assert _code(client.post("/v1/metering/reports", json=submission(node, forged, sig, r1[2]))) == (409, "seq_conflict")
    # seq 2 not chained to seq 1
    broken = r2[0].replace(prevReportHash=b"\x01" * 32)
    sig = sign_digest(report_digest(broken, att.chain_id, att.escrow), att.key)
    assert _code(client.post("/v1/metering/reports", json=submission(node, broken, sig, r2[2]))) == (409, "chain_mismatch")
    # samples that are not the committed ones
    assert _code(client.post("/v1/metering/reports", json=submission(node, r2[0], r2[1], r2[2][:-1]))) == (422, "samples_mismatch")
    ok(client.post("/v1/metering/reports", json=submission(node, *r2)), 201)
    ok(client.post("/v1/metering/reports", json=submission(node, *r3)), 201)
    # malformed bodies: 400 invalid_report
    body = submission(node, *r1)
    for bad in (
        {**body, "nodeId": -1},
        {**body, "signature": "0x1234"},
        {**body, "samples": [[1, 2, 3]]},
        {**body, "report": {**body["report"], "seq": 1.5}},
        [],
    ):
        assert _code(client.post("/v1/metering/reports", json=bad)) == (400, "invalid_report")
    assert _code(client.post("/v1/metering/reports", content=b"{not json")) == (400, "invalid_report")
    # unknown lease / node
    assert _code(client.post("/v1/metering/reports", json={**body, "nodeId": 999})) == (404, "unknown_lease")
    other = {**body, "report": {**body["report"], "leaseId": 999}}
    assert _code(client.post("/v1/metering/reports", json=other)) == (404, "unknown_lease")
    stored = ok(client.get(f"/v1/leases/{lease_id}/reports", params={"samples": "false"}))["reports"]
    assert [int(r["report"]["seq"]) for r in stored] == [1, 2, 3] and all("samples" not in r or r["samples"] is None for r in stored)
    assert _code(client.get(f"/v1/leases/{lease_id}/reports/9/samples/0/proof")) == (404, "unknown_report")
    assert _code(client.get(f"/v1/leases/{lease_id}/reports/1/samples/999/proof")) == (404, "unknown_sample")
    proofs = f"/v1/leases/{lease_id}/reports/1/samples/proofs"
    assert _code(client.get(proofs, params={"indices": "0,999"})) == (404, "unknown_sample")
    assert _code(client.get(f"/v1/leases/{lease_id}/reports/9/samples/proofs", params={"indices": "0"})) == (
        404,
        "unknown_report",
    )
    for bad in ("", "1,,2", "-1", "a", ",".join("0" * 257)):
        assert client.get(proofs, params={"indices": bad}).status_code == 422, bad


def test_validation_errors_name_the_field_and_bodies_are_bounded(bridge: TestClient) -> None:
    client = bridge
    _, key = new_account(client, "buyer", fund_wei=0)
    r = client.post("/v1/leases", json={"offerId": 1, "durationS": 0}, headers=auth(key))
    assert r.status_code == 422 and r.json()["detail"]["field"] == "durationS"
    r = client.post("/v1/faucet", json={"address": "0x123"})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "address"
    r = client.get("/v1/offers", params={"limit": 0})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "limit"
    r = client.post("/v1/accounts", json={"roles": ["buyer"], "extra": 1})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "extra"
    limit = services(client).settings.max_request_bytes
    r = client.post("/v1/accounts", content=b"x" * (limit + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"]["code"] == "body_too_large"
    assert r.json()["detail"]["message"] == f"the request body is above {limit:,} bytes, the most /v1/accounts takes"
    # reports carry their samples: the metering route takes more (then refuses the body as not JSON)
    r = client.post("/v1/metering/reports", content=b"x" * (limit + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"]["code"] == "invalid_report"
    assert _code(client.get("/v1/leases/12345")) == (404, "unknown_lease")
    assert _code(client.get("/v1/nodes/77")) == (404, "unknown_node")
    assert _code(client.get("/v1/offers/77")) == (404, "unknown_offer")


def test_contract_errors_map_to_statuses(bridge: TestClient) -> None:
    client = bridge
    prov = setup_provider(client, ["GPU-map-1"], PRICE)
    _, bkey = new_account(client, "buyer")
    lease_id = open_and_activate(client, bkey, prov, "map")
    ok(client.post(f"/v1/leases/{lease_id}/close", headers=auth(bkey)))
    # a closed lease: 409 with the contract's error named
    r = client.post(f"/v1/leases/{lease_id}/top-up", json={"amountWei": PRICE}, headers=auth(bkey))
    assert r.status_code == 409 and r.json()["detail"]["details"]["error"] == "LeaseEscrowBadStatus"
    # rating twice: 409; stars out of range: 422 naming the field
    ok(client.post(f"/v1/leases/{lease_id}/rate", json={"stars": 4}, headers=auth(bkey)))
    r = client.post(f"/v1/leases/{lease_id}/rate", json={"stars": 4}, headers=auth(bkey))
    assert r.status_code == 409
    r = client.post(f"/v1/leases/{lease_id}/rate", json={"stars": 6}, headers=auth(bkey))
    assert r.status_code == 422 and r.json()["detail"]["field"] == "stars"
    # an offer busy with a live lease cannot be leased twice
    lease2 = open_and_activate(client, bkey, prov, "map-2")
    r = client.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": HOUR}, headers=auth(bkey))
    assert r.status_code == 409 and r.json()["detail"]["details"]["error"] == "LeaseEscrowOfferBusy"
    assert ok(client.get(f"/v1/leases/{lease2}"))["state"] == "Active"


def test_serve_cli_refuses_default_secret_outside_memory(capsys: object, monkeypatch: object) -> None:
    import pytest

    from api.cli import main

    monkeypatch.delenv("LEDGER_API_SERVER_SECRET", raising=False)  # type: ignore[attr-defined]

    with pytest.raises(SystemExit) as exc:
        main(["--backend", "anvil", "--port", "0"])
    assert exc.value.code == 2
    assert "default server secret" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_faucet_is_mounted_on_dev_chains_only(tmp_path: object) -> None:
    from api.app import create_app
    from api.settings import Settings

    rpc = create_app(Settings(chain_backend="rpc", rpc_url="http://127.0.0.1:9", server_secret="x" * 32))
    dev = create_app(Settings(chain_backend="memory"))
    assert "/v1/faucet" not in rpc.openapi()["paths"]
    assert "/v1/faucet" in dev.openapi()["paths"]
    assert "/v1/leases" in rpc.openapi()["paths"]


def test_health_and_metrics_report_state(bridge: TestClient) -> None:
    health = ok(bridge.get("/v1/health"))
    assert health["status"] == "ok" and health["indexedBlock"] == health["head"]
    text = bridge.get("/metrics").text
    assert 'ledger_api_requests_total{method="GET",route="/v1/health",status="200"} 1.0' in text
    assert "ledger_api_indexed_block" in text


def test_open_lease_duration_beyond_offer_window_is_422_naming_the_field(bridge: TestClient) -> None:
    client = bridge
    prov = setup_provider(client, ["GPU-long-1"], PRICE)
    _, key = new_account(client, "buyer")
    r = client.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": 3_000_000_000}, headers=auth(key))
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "durationS"


def test_revert_without_error_data_is_not_reported_as_not_found() -> None:
    from api.errors import revert_status

    assert revert_status("Unknown") == (422, "rejected_by_contract")
    assert revert_status("LeaseEscrowUnknownLease") == (404, "not_found")


def test_indexer_rpc_outage_is_not_taken_for_a_reorg(bridge: TestClient, monkeypatch: object) -> None:
    """A node that fails to answer for a moment must not make the indexer rewind and drop its events."""
    import pytest

    client = bridge
    svc = services(client)
    setup_provider(client, ["GPU-outage-1"], PRICE)
    svc.indexer.sync_once()
    from api.store.models import ChainEvent
    from sqlalchemy import func, select

    with svc.store.db.session() as s:
        before = s.scalar(select(func.count()).select_from(ChainEvent))
    assert before and before > 0
    reorgs = svc.metrics.reorgs._value.get()
    w3 = svc.chain.w3

    def down(*_: object, **__: object) -> object:
        raise ConnectionError("node unreachable (simulated)")

    mp = pytest.MonkeyPatch()
    mp.setattr(w3.eth, "get_block", down)
    from ledger.chain.errors import ChainUnavailable

    try:
        with pytest.raises(ChainUnavailable, match="node unreachable"):
            svc.indexer._check_reorg()
    finally:
        mp.undo()
    with svc.store.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ChainEvent)) == before
    assert svc.metrics.reorgs._value.get() == reorgs


def test_unknown_offer_lookups_keep_the_read_caches(bridge: TestClient) -> None:
    """Looking up an id the chain does not have changes no projection, so it must not invalidate the read
    caches (they key on the indexer's generation): a client probing ids cannot flush them for everyone."""
    client = bridge
    setup_provider(client, ["GPU-probe-1"], PRICE)
    ix = services(client).indexer
    ok(client.get("/v1/offers"))
    before = ix.generation
    for offer_id in (9_001, 9_002, 9_003):
        assert _code(client.get(f"/v1/offers/{offer_id}")) == (404, "unknown_offer")
    assert ix.generation == before
