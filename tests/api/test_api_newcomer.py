"""What a new user meets first, each a finding that failed before: clear set-up errors, curl's content type,
funds for gas, the GPU-model filter, anonymous release with its time served, disputes an arbiter can end,
transactions wallets sign as they are, errors that say what is wrong, and bad offers refused at publication."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from bridge_helpers import auth, new_account, ok, submission
from test_api_flow import HOUR, PRICE, attestor_for, open_and_activate, services, setup_provider

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "contracts"


def _code(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["detail"]["code"]


def test_serve_without_a_secret_names_the_variable_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_API_")}
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "--backend", "anvil", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "LEDGER_API_SERVER_SECRET" in out.stderr and "token_hex" in out.stderr and "Traceback" not in out.stderr


def test_curl_bodies_are_read_as_json_and_other_bodies_told_what_to_send(bridge: TestClient) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
    created = bridge.post("/v1/accounts", content=b'{"roles":["buyer"]}', headers=form)
    assert created.status_code == 201 and created.json()["roles"] == ["buyer"]
    assert _code(bridge.post("/v1/accounts", content=b"roles=buyer", headers=form)) == (415, "unsupported_media_type")
    bad = bridge.post("/v1/accounts", content=b'{"roles": [', headers={"Content-Type": "application/json"})
    assert _code(bad) == (422, "invalid_json") and bad.json()["detail"].get("field") is None


def test_a_new_account_without_eth_is_told_to_fund_it(bridge: TestClient) -> None:
    acct = ok(bridge.post("/v1/accounts", json={"roles": ["provider"]}), 201)
    assert any("POST /v1/faucet" in n for n in acct["notes"])
    r = bridge.post("/v1/providers", json={"metadataURI": "https://p"}, headers=auth(acct["apiKey"]))
    assert _code(r) == (402, "insufficient_funds") and "POST /v1/faucet" in r.json()["detail"]["message"]


def test_the_gpu_model_filter_matches_any_part_in_any_case(bridge: TestClient) -> None:
    prov = setup_provider(bridge, ["GPU-model-1"], PRICE, model="NVIDIA H100 80GB HBM3")
    for q in ("NVIDIA H100", "h100", "80gb hbm3"):
        found = ok(bridge.get("/v1/offers", params={"gpuModel": q}))["offers"]
        assert prov["offerId"] in [o["offerId"] for o in found], q
    assert ok(bridge.get("/v1/offers", params={"gpuModel": "A100"}))["offers"] == []


def test_anyone_releases_earnings_without_a_key_once_the_time_served_has_come(bridge: TestClient) -> None:
    svc = services(bridge)
    chain = svc.chain
    info = ok(bridge.get("/v1/chain"))
    assert info["challengePeriodS"] == svc.deployment.challenge_period_s and info["chainTime"] == chain.now()
    prov = setup_provider(bridge, ["GPU-rel-1"], PRICE)
    _, bkey = new_account(bridge, "buyer")
    lease_id = open_and_activate(bridge, bkey, prov, "rel")
    att = attestor_for(bridge, prov, lease_id)
    chain.time_travel(chain.now() + 120)
    rep, sig, smp = att.next_report()
    ok(bridge.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, smp)), 201)
    assert svc.relayer.flush() == 1
    earnings = ok(bridge.get(f"/v1/leases/{lease_id}"))["earnings"]
    assert int(earnings["pending"]) > 0 and earnings["releasableAt"] > chain.now()
    early = bridge.post(f"/v1/leases/{lease_id}/release-earnings")  # no key at all
    assert _code(early) == (409, "conflict") and str(earnings["releasableAt"]) in early.json()["detail"]["message"]
    chain.time_travel(earnings["releasableAt"] + 1)
    released = ok(bridge.post(f"/v1/leases/{lease_id}/release-earnings"))
    assert released["status"] == "mined" and [e["name"] for e in released["events"]][0] == "EarningsReleased"
    assert int(ok(bridge.get(f"/v1/leases/{lease_id}"))["earnings"]["pending"]) == 0


def test_a_dispute_ends_through_the_api_and_the_money_follows(bridge: TestClient) -> None:
    svc = services(bridge)
    chain = svc.chain
    prov = setup_provider(bridge, ["GPU-arb-1"], PRICE)
    buyer, bkey = new_account(bridge, "buyer")
    lease_id = open_and_activate(bridge, bkey, prov, "arb")
    att = attestor_for(bridge, prov, lease_id)
    chain.time_travel(chain.now() + 120)
    rep, sig, smp = att.next_report()
    ok(bridge.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, smp)), 201)
    assert svc.relayer.flush() == 1
    frozen = int(ok(bridge.get(f"/v1/leases/{lease_id}"))["earnings"]["pending"])
    ok(bridge.post(f"/v1/leases/{lease_id}/dispute", headers=auth(bkey)))
    assert ok(bridge.get(f"/v1/leases/{lease_id}"))["earnings"]["releasableAt"] is None  # frozen
    stuck = bridge.post(f"/v1/leases/{lease_id}/release-earnings")
    assert stuck.status_code == 409 and "GET /v1/disputes" in stuck.json()["detail"]["message"]
    open_ = ok(bridge.get("/v1/disputes"))["disputes"]
    assert [(d["leaseId"], d["status"], int(d["frozenWei"])) for d in open_] == [(lease_id, "open", frozen)]
    # a buyer cannot rule on its own dispute; an arbiter account (granted the role on this dev chain) can
    assert bridge.post(f"/v1/leases/{lease_id}/resolve", json={"buyerShareBps": 10_000},
                       headers=auth(bkey)).status_code == 403  # fmt: skip
    arb = ok(bridge.post("/v1/accounts", json={"roles": ["arbiter"]}), 201)
    assert any("ARBITER_ROLE granted" in n for n in arb["notes"])
    ok(bridge.post("/v1/faucet", json={"address": arb["address"], "amountWei": 10**18}))
    ruled = ok(bridge.post(f"/v1/leases/{lease_id}/resolve", json={"buyerShareBps": 2_500}, headers=auth(arb["apiKey"])))
    ev = next(e for e in ruled["events"] if e["name"] == "DisputeResolved")["args"]
    assert int(ev["buyerShare"]) == frozen * 2_500 // 10_000 and int(ev["buyerShare"]) + int(ev["providerShare"]) == frozen
    done = ok(bridge.get("/v1/disputes", params={"status": "resolved"}))["disputes"]
    assert done[0]["leaseId"] == lease_id and done[0]["resolution"]["buyerShareWei"] == ev["buyerShare"]
    assert ok(bridge.get("/v1/disputes"))["disputes"] == []
    assert int(ok(bridge.get(f"/v1/balances/{buyer}"))["withdrawableWei"]) >= int(ev["buyerShare"])


@pytest.mark.skipif(
    shutil.which("node") is None or not (CONTRACTS / "node_modules" / "ethers").is_dir(),
    reason="node or contracts/node_modules missing",
)
def test_wallet_transactions_are_signed_by_ethers_as_served(bridge: TestClient) -> None:
    svc = services(bridge)
    wallet = Account.create()
    ok(bridge.post("/v1/faucet", json={"address": wallet.address, "amountWei": 10**18}))
    built = ok(bridge.post("/v1/providers", json={"metadataURI": "ethers"}, headers={"X-Wallet-Address": wallet.address}))
    etx = built["ethersTx"]
    assert None not in etx.values() and "gas" not in etx and etx["gasLimit"] == built["unsignedTx"]["gas"]
    script = (
        "const { Wallet } = require('ethers');"
        "const x = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "new Wallet(x.key).signTransaction(x.tx).then((raw) => process.stdout.write(raw));"
    )
    out = subprocess.run(
        ["node", "-e", script], input=json.dumps({"key": "0x" + bytes(wallet.key).hex(), "tx": etx}),
        capture_output=True, text=True, cwd=CONTRACTS, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    mined = ok(bridge.post("/v1/tx", json={"rawTransaction": out.stdout.strip()}))
    assert mined["status"] == "mined" and ok(bridge.get(f"/v1/providers/{wallet.address}"))["metadataURI"] == "ethers"
    assert svc.chain.w3.eth.get_transaction_count(wallet.address) == 1


def test_errors_say_what_is_wrong(bridge: TestClient) -> None:
    svc = services(bridge)
    prov = setup_provider(bridge, ["GPU-err-n1"], PRICE)
    buyer, bkey = new_account(bridge, "buyer")
    too_long = bridge.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": 10 * 86_400}, headers=auth(bkey))
    assert _code(too_long) == (422, "validation_error") and too_long.json()["detail"]["field"] == "durationS"
    assert "longest lease" in too_long.json()["detail"]["message"]
    lease_id = open_and_activate(bridge, bkey, prov, "err-n")
    # a stranger's close: said in words; a state refusal names the state
    wallet = Account.create().address
    ok(bridge.post("/v1/faucet", json={"address": wallet, "amountWei": 10**18}))
    stranger = bridge.post(f"/v1/leases/{lease_id}/close", headers={"X-Wallet-Address": wallet})
    assert stranger.status_code == 403 and "only the buyer may close" in stranger.json()["detail"]["message"]
    rate = bridge.post(f"/v1/leases/{lease_id}/rate", json={"stars": 5}, headers=auth(bkey))
    assert rate.status_code == 409 and rate.json()["detail"]["details"]["args"]["status"] == "Active"
    # an offer past its validity is a state conflict
    svc.chain.time_travel(svc.chain.now() + 3 * 86_400)
    expired = bridge.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": 60}, headers=auth(bkey))
    assert _code(expired) == (409, "offer_expired")


def test_bad_offers_and_rotations_are_refused_at_publication(bridge: TestClient) -> None:
    svc = services(bridge)
    prov = setup_provider(bridge, ["GPU-bad-1", "GPU-bad-2"], PRICE)
    now = svc.chain.now()
    base = {"nodeId": prov["nodeId"], "gpuIndices": [0], "pricePerGpuSecondWei": PRICE, "validFrom": now,
            "validUntil": now + HOUR}  # fmt: skip
    cases = [
        ({"token": Account.create().address}, 422, "unknown_token", "token"),  # an address with no token behind it
        ({"token": svc.deployment.registry}, 422, "unknown_token", "token"),  # a contract that is not an ERC-20
        ({"validFrom": now + 3 * 365 * 86_400, "validUntil": now + 3 * 365 * 86_400 + HOUR}, 422, "validation_error",
         "validFrom"),
        ({"validFrom": now - 2 * HOUR, "validUntil": now - HOUR}, 422, "validation_error", "validUntil"),
        ({"gpuIndices": [0, 0]}, 422, "validation_error", "gpuIndices"),
    ]  # fmt: skip
    for change, status, code, field in cases:
        r = bridge.post("/v1/offers", json={**base, **change}, headers=auth(prov["key"]))
        assert (r.status_code, r.json()["detail"]["code"], r.json()["detail"].get("field")) == (status, code, field), change
    same = bridge.post(f"/v1/nodes/{prov['nodeId']}/rotate-attestor", json={"attestor": prov["attestor"].address},
                       headers=auth(prov["key"]))  # fmt: skip
    assert _code(same) == (422, "validation_error") and same.json()["detail"]["field"] == "attestor"
