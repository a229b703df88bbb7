"""Authorization and idempotency: every write endpoint rejects the wrong caller; a retried POST moves money once."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from fastapi.testclient import TestClient

from bridge_helpers import auth, new_account, ok, submission
from test_api_flow import HOUR, PRICE, attestor_for, open_and_activate, services, setup_provider

BOTH_STORES = True  # the Idempotency-Key tests run on SQLite and on PostgreSQL (conftest)


def _world(client: TestClient) -> dict[str, Any]:
    owner = setup_provider(client, ["GPU-own-1"], PRICE)
    other = setup_provider(client, ["GPU-oth-1"], PRICE)
    _, buyer_key = new_account(client, "buyer")
    _, stranger_buyer_key = new_account(client, "buyer")
    _, auditor_key = new_account(client, "auditor", fund_wei=10**18)
    lease_id = open_and_activate(client, buyer_key, owner, "world-lease")
    return {
        "owner": owner,
        "other": other,
        "buyer": buyer_key,
        "stranger_buyer": stranger_buyer_key,
        "auditor": auditor_key,
        "lease": lease_id,
    }


def test_write_endpoints_reject_wrong_caller(bridge: TestClient) -> None:
    client = bridge
    w = _world(client)
    lease, node, offer_node = w["lease"], w["owner"]["nodeId"], w["owner"]["nodeId"]
    other_key, buyer, stranger, auditor = w["other"]["key"], w["buyer"], w["stranger_buyer"], w["auditor"]
    now = services(client).chain.now()
    offer_body = {"nodeId": offer_node, "gpuIndices": [0], "pricePerGpuSecondWei": PRICE, "validFrom": now + 3 * 86_400,
                  "validUntil": now + 4 * 86_400}
    node_body = {"attestor": Account.create().address, "gpuModel": "X", "gpuUuids": ["GPU-z"], "vramMiB": 1,
                 "maxPowerMwPerGpu": 1, "region": "r"}
    # (method, path, json, wrong caller's key, expected status, expected code)
    cases: list[tuple[str, str, dict[str, Any] | None, str, int, str]] = [
        ("POST", "/v1/providers", {}, buyer, 403, "missing_role"),
        ("POST", "/v1/providers", {}, auditor, 403, "missing_role"),
        ("POST", "/v1/providers/stake", {"amountWei": 1}, buyer, 403, "missing_role"),
        ("POST", "/v1/providers/unstake", {"amountWei": 1}, buyer, 403, "missing_role"),
        ("POST", "/v1/providers/withdraw-stake", {}, auditor, 403, "missing_role"),
        ("POST", "/v1/nodes", node_body, buyer, 403, "missing_role"),
        ("POST", f"/v1/nodes/{node}/rotate-attestor", {"attestor": Account.create().address}, other_key, 403, "forbidden"),
        ("POST", f"/v1/nodes/{node}/deactivate", None, other_key, 403, "forbidden"),
        ("POST", "/v1/offers", offer_body, other_key, 403, "forbidden"),
        ("POST", "/v1/leases", {"offerId": w["other"]["offerId"], "durationS": HOUR}, other_key, 403, "missing_role"),
        ("POST", f"/v1/leases/{lease}/activate", None, other_key, 403, "forbidden"),
        ("POST", f"/v1/leases/{lease}/top-up", {"amountWei": PRICE}, stranger, 403, "forbidden"),
        ("POST", f"/v1/leases/{lease}/close", None, stranger, 403, "forbidden"),
        ("POST", f"/v1/leases/{lease}/dispute", None, stranger, 403, "forbidden"),
        ("POST", f"/v1/leases/{lease}/rate", {"stars": 1}, stranger, 403, "forbidden"),
        ("POST", f"/v1/leases/{lease}/release-earnings", None, auditor, 403, "missing_role"),
        ("POST", f"/v1/leases/{lease}/expire", None, auditor, 403, "missing_role"),
        ("POST", "/v1/withdraw", {}, auditor, 403, "missing_role"),
    ]
    failures = []
    # anyone may release earnings or expire a lease, with no key at all: the contract then answers (here: not yet)
    public = {f"/v1/leases/{lease}/release-earnings", f"/v1/leases/{lease}/expire"}
    for method, path, body, key, status, code in cases:
        for headers, want_status, want_code in (
            ({}, *((409, "conflict") if path in public else (401, "unauthorized"))),
            ({"Authorization": "Bearer cl_0123456789abcdef_nope"}, 401, "unauthorized"),
            (auth(key), status, code),
        ):
            r = client.request(method, path, json=body, headers=headers)
            got = (r.status_code, r.json().get("detail", {}).get("code"))
            if got != (want_status, want_code):
                failures.append(f"{method} {path} {list(headers)}: {got} != {(want_status, want_code)}")
    assert not failures, "\n".join(failures)
    # the contract is the authority for wallet users: the simulated transaction is refused with its error
    wallet = Account.create().address
    r = client.post(f"/v1/nodes/{node}/deactivate", headers={"X-Wallet-Address": wallet})
    assert r.status_code == 402 and r.json()["detail"]["code"] == "insufficient_funds"  # cannot even pay gas
    ok(client.post("/v1/faucet", json={"address": wallet, "amountWei": 10**18}))
    r = client.post(f"/v1/nodes/{node}/deactivate", headers={"X-Wallet-Address": wallet})
    assert r.status_code == 403
    assert r.json()["detail"]["details"]["error"] == "CapacityRegistryNotNodeOwner"
    # the node's owner still can; nothing above changed the chain
    assert ok(client.get(f"/v1/leases/{lease}"))["state"] == "Active"
    assert ok(client.get(f"/v1/nodes/{node}"))["active"] is True


def test_metering_rejects_report_signed_by_other_key(bridge: TestClient) -> None:
    client = bridge
    w = _world(client)
    att = attestor_for(client, w["owner"], w["lease"])
    services(client).chain.time_travel(services(client).chain.now() + 600)
    att.key = bytes(Account.create().key)
    rep, sig, samples = att.next_report()
    r = client.post("/v1/metering/reports", json=submission(w["owner"]["nodeId"], rep, sig, samples))
    assert r.status_code == 403 and r.json()["detail"]["code"] == "wrong_signer"
    # the right key, but claiming the other provider's node: the lease is not on it
    att.restart(bytes(w["other"]["attestor"].key))
    rep, sig, samples = att.next_report()
    r = client.post("/v1/metering/reports", json=submission(w["other"]["nodeId"], rep, sig, samples))
    assert r.status_code == 403 and r.json()["detail"]["code"] == "wrong_signer"
    assert ok(client.get(f"/v1/leases/{w['lease']}/reports"))["reports"] == []


def test_open_lease_same_idempotency_key_escrows_once(bridge: TestClient) -> None:
    client = bridge
    svc = services(client)
    prov = setup_provider(client, ["GPU-idem-1", "GPU-idem-2"], PRICE)
    buyer, key = new_account(client, "buyer")
    headers = {**auth(key), "Idempotency-Key": "lease-42"}
    body = {"offerId": prov["offerId"], "durationS": HOUR}
    first = client.post("/v1/leases", json=body, headers=headers)
    balance_after_first = svc.chain.w3.eth.get_balance(buyer)
    second = client.post("/v1/leases", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert svc.chain.w3.eth.get_balance(buyer) == balance_after_first
    opened = svc.ledger.events.read("LeaseOpened")
    assert len(opened) == 1 and opened[0].args["buyer"] == buyer
    assert int(opened[0].args["escrowed"]) == PRICE * 2 * HOUR
    # the same key with another body is refused, and still escrows nothing
    other = client.post("/v1/leases", json={**body, "durationS": HOUR + 1}, headers=headers)
    assert other.status_code == 409 and other.json()["detail"]["code"] == "idempotency_key_reused"
    assert len(svc.ledger.events.read("LeaseOpened")) == 1
    # a refused request is remembered too: the retry answers the same error without sending anything
    gone = {"offerId": 999, "durationS": HOUR}
    h2 = {**auth(key), "Idempotency-Key": "lease-43"}
    r1, r2 = client.post("/v1/leases", json=gone, headers=h2), client.post("/v1/leases", json=gone, headers=h2)
    assert r1.status_code == r2.status_code == 404 and r1.json() == r2.json()



def test_open_lease_retry_after_receipt_timeout_does_not_escrow_twice(bridge: TestClient, monkeypatch: Any) -> None:
    """The openLease transaction went out but its receipt never came (node slow, connection lost): it may
    still be mined, so a retry with the same key must not run the action again. While no receipt is seen the
    retry answers 409 with the hash; once the receipt is there, it answers the mined outcome."""
    from ledger.chain.errors import ChainUnavailable

    client = bridge
    svc = services(client)
    prov = setup_provider(client, ["GPU-idem-to-1"], PRICE)
    buyer, key = new_account(client, "buyer")
    headers = {**auth(key), "Idempotency-Key": "lease-timeout"}
    body = {"offerId": prov["offerId"], "durationS": HOUR}
    real_wait, real_receipt = svc.ledger.sender.wait, svc.ledger.sender.receipt
    seen: list[str] = []

    def lost_receipt(tx_hash: str, timeout_s: float | None = None) -> Any:
        seen.append(tx_hash)
        raise ChainUnavailable("no receipt (simulated timeout)", tx_hash)

    monkeypatch.setattr(svc.idempotency, "receipt_wait_s", 0.0)
    monkeypatch.setattr(svc.ledger.sender, "wait", lost_receipt)
    monkeypatch.setattr(svc.ledger.sender, "receipt", lambda tx_hash: None)
    first = client.post("/v1/leases", json=body, headers=headers)
    assert first.status_code == 503
    assert len(svc.ledger.events.read("LeaseOpened")) == 1  # the chain did mine it
    retry = client.post("/v1/leases", json=body, headers=headers)
    assert retry.status_code == 409
    detail = retry.json()["detail"]
    assert detail["code"] == "idempotency_tx_unconfirmed"
    assert detail["details"]["txHashes"] == seen
    monkeypatch.setattr(svc.ledger.sender, "wait", real_wait)
    monkeypatch.setattr(svc.ledger.sender, "receipt", real_receipt)
    # the receipt is readable now: the retry answers the mined outcome, and sends nothing
    retry = client.post("/v1/leases", json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json()["txHash"] == seen[0] and retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json()["result"]["leaseId"] == int(svc.ledger.events.read("LeaseOpened")[0].args["leaseId"])
    assert client.post("/v1/leases", json=body, headers=headers).json() == retry.json()
    assert len(svc.ledger.events.read("LeaseOpened")) == 1  # escrowed once
    # a failure before anything was broadcast still lets the client retry with the same key
    h2 = {**auth(key), "Idempotency-Key": "lease-retryable"}
    real_build = svc.ledger.sender.build

    def node_down(*a: Any, **k: Any) -> Any:
        raise ChainUnavailable("node down (simulated)")

    other = setup_provider(client, ["GPU-idem-to-2"], PRICE)
    monkeypatch.setattr(svc.ledger.sender, "build", node_down)
    body2 = {"offerId": other["offerId"], "durationS": HOUR}
    assert client.post("/v1/leases", json=body2, headers=h2).status_code == 503
    monkeypatch.setattr(svc.ledger.sender, "build", real_build)
    assert client.post("/v1/leases", json=body2, headers=h2).status_code == 200
    assert len(svc.ledger.events.read("LeaseOpened")) == 2


def test_wallet_user_gets_unsigned_tx_and_relays_it_signed(bridge: TestClient) -> None:
    client = bridge
    svc = services(client)
    wallet = Account.create()
    ok(client.post("/v1/faucet", json={"address": wallet.address, "amountWei": 10**18}))
    built = ok(client.post("/v1/providers", json={"metadataURI": "wallet"}, headers={"X-Wallet-Address": wallet.address}))
    assert built["status"] == "unsigned" and built["txHash"] is None
    utx = built["unsignedTx"]
    assert utx["to"] == svc.deployment.registry and utx["from"] == wallet.address
    assert None not in utx.values() and utx["type"] in (0, 2)
    raw = wallet.sign_transaction(utx).raw_transaction  # eth-account signs the served form as is
    mined = ok(client.post("/v1/tx", json={"rawTransaction": "0x" + bytes(raw).hex()}))
    assert mined["status"] == "mined"
    assert [(e["name"], e["args"]["provider"]) for e in mined["events"]] == [("ProviderRegistered", wallet.address)]
    assert ok(client.get(f"/v1/providers/{wallet.address}"))["metadataURI"] == "wallet"
    # a replay of the same signed bytes is refused by the node, and changes nothing
    again = client.post("/v1/tx", json={"rawTransaction": "0x" + bytes(raw).hex()})
    assert again.status_code in (409, 422)
    # transactions to other contracts are not relayed
    stray = wallet.sign_transaction({**utx, "to": wallet.address, "nonce": utx["nonce"] + 1}).raw_transaction
    r = client.post("/v1/tx", json={"rawTransaction": "0x" + bytes(stray).hex()})
    assert r.status_code == 422 and r.json()["detail"]["code"] == "foreign_destination"


def test_request_cut_off_by_a_restart_answers_abandoned_not_in_progress(
    memory_chain: Any, tmp_path: Any, monkeypatch: Any, database_url: str | None
) -> None:
    """A bridge that dies while a keyed request runs leaves its record ``pending``; the next start marks it
    ``abandoned``: a retry is neither told "in progress" forever nor run again (it may have paid)."""
    from api.app import create_app
    from conftest import bridge_settings
    from ledger.chain.errors import ChainUnavailable

    chain, dep = memory_chain
    snap = chain.snapshot()
    try:
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            svc = services(client)
            prov = setup_provider(client, ["GPU-idem-crash-1"], PRICE)
            _, key = new_account(client, "buyer")
            headers = {**auth(key), "Idempotency-Key": "lease-crash"}
            body = {"offerId": prov["offerId"], "durationS": HOUR}

            def killed(*a: Any, **k: Any) -> Any:
                raise ChainUnavailable("the process dies here (simulated)")

            # a crash runs no cleanup: the record stays as the request left it
            monkeypatch.setattr(svc.store.idempotency, "forget", lambda *a: None)
            monkeypatch.setattr(svc.ledger.sender, "send", killed)
            assert client.post("/v1/leases", json=body, headers=headers).status_code == 503
            again = client.post("/v1/leases", json=body, headers=headers)
            assert again.status_code == 409 and again.json()["detail"]["code"] == "idempotency_in_progress"
            monkeypatch.undo()
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            retry = client.post("/v1/leases", json=body, headers=headers)
            assert retry.status_code == 409 and retry.json()["detail"]["code"] == "idempotency_abandoned", retry.text
            assert services(client).ledger.events.read("LeaseOpened") == []  # never run again
            fresh = client.post("/v1/leases", json=body, headers={**auth(key), "Idempotency-Key": "lease-crash-2"})
            assert fresh.status_code == 200
    finally:
        chain.revert(snap)


def test_a_malformed_wallet_address_is_an_invalid_credential_401_not_a_422(bridge: TestClient) -> None:
    """As a malformed API key: what schemathesis's invalid-credentials check sends (it was 422 validation_error)."""
    for value in ("junk", "", "0x1234", "0x" + "zz" * 20):
        for r in (bridge.get("/v1/accounts/me", headers={"X-Wallet-Address": value}),
                  bridge.post("/v1/providers", json={}, headers={"X-Wallet-Address": value})):  # fmt: skip
            assert r.status_code == 401 and r.json()["detail"]["code"] == "unauthorized", (value, r.text)
            assert "X-Wallet-Address" in r.json()["detail"]["message"]
