"""Leases paid in an ERC-20 through the API: the dev token, the faucet, the approve step (managed and wallet),
idempotent retries, per-token balances and withdrawals, and conservation of the escrow's token balance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.chain.errors import ChainUnavailable
from conftest import bridge_settings
from ledger.chain.backends import Chain
from tests.support.ledger_client import LeaseStatus
from ledger.chain.deployment import Deployment

from bridge_helpers import auth, checkpoint, new_account, ok, submission
from test_api_flow import HOUR, PRICE, attestor_for, services, setup_provider

MINTED = 10**20


def dev_token(client: TestClient) -> str:
    body = ok(client.get("/v1/tokens"))
    token = body["devToken"]
    assert token is not None
    dev = [t for t in body["tokens"] if t["address"] == token]
    assert dev and dev[0]["dev"] and dev[0]["faucet"] and dev[0]["symbol"] == "tUSD" and dev[0]["decimals"] == 18
    return str(token)


def token_balance(client: TestClient, token: str, who: str) -> int:
    return int(services(client).ledger.contracts.erc20(token).functions.balanceOf(who).call())


def approvals(client: TestClient, token: str, owner: str, spender: str) -> list[int]:
    """Values of the token's Approval(owner, spender, value) events, oldest first."""
    logs = services(client).ledger.contracts.erc20(token).events.Approval().get_logs(from_block=0)
    return [int(e.args["value"]) for e in logs if e.args["owner"] == owner and e.args["spender"] == spender]


def allowance(client: TestClient, token: str, owner: str, spender: str) -> int:
    return int(services(client).ledger.contracts.erc20(token).functions.allowance(owner, spender).call())


def opened_by(client: TestClient, buyer: str) -> list[int]:
    return [int(e.args["leaseId"]) for e in services(client).ledger.events.read("LeaseOpened") if e.args["buyer"] == buyer]


def escrow_held(client: TestClient, token: str, accounts: list[str], leases: list[int]) -> int:
    """What the getters say the escrow owes in ``token``: withdrawable balances, plus per lease the escrow not
    charged yet (a live lease's; a finished lease's was refunded to a withdrawable balance), the charges
    pending (frozen ones included) and the fee still held."""
    svc = services(client)
    owed = sum(svc.ledger.read.withdrawable(a, token) for a in accounts)
    for lease_id in leases:
        ls, cp = svc.ledger.read.lease(lease_id), checkpoint(svc, lease_id)
        live = ls.status in (LeaseStatus.OPEN, LeaseStatus.ACTIVE)
        owed += (cp.remaining if live else 0) + cp.pending + (0 if ls.fees_settled else ls.fee_held)
    return int(owed)


def test_api_erc20_lease_end_to_end_conserves_tokens(bridge: TestClient) -> None:
    run_erc20_flow(bridge)


def run_erc20_flow(bridge: TestClient) -> None:
    """A token offer, a buyer funded by the faucet, open (approve + escrow), settlements, top-up, close,
    refund and earnings withdrawn in tokens; the escrow's token balance always equals what its getters owe."""
    svc = services(bridge)
    chain = svc.chain
    escrow = svc.deployment.escrow
    treasury = svc.deployment.treasury
    token = dev_token(bridge)
    prov = setup_provider(bridge, ["GPU-tok-1", "GPU-tok-2"], PRICE, token=token)
    offer = ok(bridge.get(f"/v1/offers/{prov['offerId']}"))
    assert offer["token"] == token
    assert [o["offerId"] for o in ok(bridge.get("/v1/offers", params={"token": token}))["offers"]] == [prov["offerId"]]
    assert [t["inOffers"] for t in ok(bridge.get("/v1/tokens"))["tokens"] if t["address"] == token] == [True]

    # the buyer gets ETH for gas and tokens from the faucet
    buyer, bkey = new_account(bridge, "buyer")
    minted = ok(bridge.post("/v1/faucet", json={"address": buyer, "amountWei": MINTED, "token": token}))
    assert minted["result"] == {"token": token, "amountWei": str(MINTED)}
    bal = ok(bridge.get(f"/v1/balances/{buyer}", params={"token": token}))
    assert (bal["token"], bal["walletBalanceWei"], bal["withdrawableWei"]) == (token, str(MINTED), "0")
    assert int(bal["ethBalanceWei"]) > 0

    # open: the bridge approves exactly escrow + fee, then opens; the escrow pulls exactly that
    eth_before = int(ok(bridge.get(f"/v1/balances/{buyer}"))["walletBalanceWei"])
    opened = ok(bridge.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": HOUR},
                            headers={**auth(bkey), "Idempotency-Key": "erc20-open"}))
    lease_id = int(opened["result"]["leaseId"])
    escrowed = PRICE * 2 * HOUR
    fee_bps = svc.ledger.read.fee_bps_for(prov["address"])
    fee = escrowed * fee_bps // 10_000
    assert opened["result"]["totalWei"] == str(escrowed + fee) and opened["result"]["token"] == token
    assert len(opened["result"]["approveTxHashes"]) == 1
    assert approvals(bridge, token, buyer, escrow) == [escrowed + fee]
    assert allowance(bridge, token, buyer, escrow) == 0  # spent by the escrow's transferFrom
    ev = [e for e in opened["events"] if e["name"] == "LeaseOpened"][0]["args"]
    assert (int(ev["escrowed"]), int(ev["fee"])) == (escrowed, fee)
    assert token_balance(bridge, token, buyer) == MINTED - escrowed - fee
    assert token_balance(bridge, token, escrow) == escrowed + fee == escrow_held(bridge, token, [buyer], [lease_id])
    assert int(ok(bridge.get(f"/v1/balances/{buyer}"))["walletBalanceWei"]) < eth_before  # gas only, in ETH
    doc = ok(bridge.get(f"/v1/leases/{lease_id}"))
    assert doc["token"] == token and doc["money"]["escrow"] == str(escrowed) and doc["samplePeriodMs"] is None

    ok(bridge.post(f"/v1/leases/{lease_id}/activate", headers=auth(prov["key"])))
    att = attestor_for(bridge, prov, lease_id)
    chain.time_travel(chain.now() + 10 * 60)
    for _ in range(3):
        rep, sig, samples = att.next_report()
        ok(bridge.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
    assert svc.relayer.flush() == 1
    charged_so_far = PRICE * att.cum["alloc"] // 1000
    assert checkpoint(svc, lease_id).pending == charged_so_far
    assert token_balance(bridge, token, escrow) == escrow_held(bridge, token, [buyer, prov["address"]], [lease_id])
    assert ok(bridge.get(f"/v1/leases/{lease_id}"))["samplePeriodMs"] == 1000  # the helper samples every 1000 ms

    # top-up of 60 s: approved and pulled the same way (amount + its fee)
    amount = PRICE * 2 * 60
    topped = ok(bridge.post(f"/v1/leases/{lease_id}/top-up", json={"amountWei": amount},
                            headers={**auth(bkey), "Idempotency-Key": "erc20-topup"}))
    top_fee = int(topped["result"]["feeWei"])
    assert top_fee == (escrowed + amount) * fee_bps // 10_000 - fee
    assert approvals(bridge, token, buyer, escrow) == [escrowed + fee, amount + top_fee]
    assert allowance(bridge, token, buyer, escrow) == 0
    assert token_balance(bridge, token, buyer) == MINTED - escrowed - fee - amount - top_fee
    again = bridge.post(f"/v1/leases/{lease_id}/top-up", json={"amountWei": amount},
                        headers={**auth(bkey), "Idempotency-Key": "erc20-topup"})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert token_balance(bridge, token, buyer) == MINTED - escrowed - fee - amount - top_fee
    assert len(approvals(bridge, token, buyer, escrow)) == 2

    # one more window, then the buyer closes: the latest report is settled first, the rest refunded in tokens
    rep, sig, samples = att.next_report()
    ok(bridge.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
    closed = ok(bridge.post(f"/v1/leases/{lease_id}/close", headers={**auth(bkey), "Idempotency-Key": "erc20-close"}))
    charged = PRICE * att.cum["alloc"] // 1000
    closed_ev = [e for e in closed["events"] if e["name"] == "LeaseClosed"][0]["args"]
    assert (int(closed_ev["charged"]), int(closed_ev["refund"])) == (charged, escrowed + amount - charged)
    parties = [buyer, prov["address"], treasury]
    assert token_balance(bridge, token, escrow) == escrow_held(bridge, token, parties, [lease_id])
    assert int(ok(bridge.get(f"/v1/balances/{buyer}", params={"token": token}))["withdrawableWei"]) >= escrowed + amount - charged

    # challenge period over: earnings released to the provider, fees split, everything withdrawn in tokens
    chain.time_travel(chain.now() + svc.deployment.challenge_period_s + 1)
    ok(bridge.post(f"/v1/leases/{lease_id}/release-earnings", headers=auth(prov["key"])))
    settled = [e for e in svc.ledger.events.read("FeesSettled") if int(e.args["leaseId"]) == lease_id]
    assert len(settled) == 1
    treasury_fee = int(settled[0].args["treasuryFee"])
    assert treasury_fee == charged * fee_bps // 10_000
    assert int(settled[0].args["buyerRefund"]) == fee + top_fee - treasury_fee
    assert ok(bridge.get(f"/v1/balances/{prov['address']}", params={"token": token}))["withdrawableWei"] == str(charged)
    assert ok(bridge.get(f"/v1/balances/{prov['address']}"))["withdrawableWei"] == "0"  # nothing in ETH
    assert token_balance(bridge, token, escrow) == escrow_held(bridge, token, parties, [lease_id])

    w = ok(bridge.post("/v1/withdraw", json={"token": token}, headers={**auth(prov["key"]), "Idempotency-Key": "erc20-wd"}))
    assert [(e["args"]["token"], int(e["args"]["amount"])) for e in w["events"] if e["name"] == "Withdrawn"] == [(token, charged)]
    assert token_balance(bridge, token, prov["address"]) == charged
    ok(bridge.post("/v1/withdraw", json={"token": token}, headers=auth(bkey)))
    assert token_balance(bridge, token, buyer) == MINTED - charged - treasury_fee
    assert ok(bridge.get(f"/v1/balances/{buyer}", params={"token": token}))["walletBalanceWei"] == str(MINTED - charged - treasury_fee)
    # what is left in the escrow is the treasury's fee, as the getters say
    assert token_balance(bridge, token, escrow) == treasury_fee == escrow_held(bridge, token, parties, [lease_id])
    assert ok(bridge.get(f"/v1/leases/{lease_id}"))["money"]["feeRefund"] == str(fee + top_fee - treasury_fee)


def test_api_erc20_open_retry_approves_and_escrows_once(bridge: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first attempt dies after its approval was mined (503, the key is released); the retry with the same
    key finds the exact allowance standing, sends no second approval, and opens; a third call replays."""
    svc = services(bridge)
    escrow = svc.deployment.escrow
    token = dev_token(bridge)
    prov = setup_provider(bridge, ["GPU-idem-1"], PRICE, token=token)
    buyer, bkey = new_account(bridge, "buyer")
    ok(bridge.post("/v1/faucet", json={"address": buyer, "amountWei": MINTED, "token": token}))
    total = PRICE * HOUR + PRICE * HOUR * svc.ledger.read.fee_bps_for(prov["address"]) // 10_000

    real = svc.ledger.sender.send

    def crash_on_open(account: Any, call: Any, **kw: Any) -> Any:
        if call.label == "escrow.openLease":
            raise ChainUnavailable("node went away")
        return real(account, call, **kw)

    monkeypatch.setattr(svc.ledger.sender, "send", crash_on_open)
    body = {"offerId": prov["offerId"], "durationS": HOUR}
    headers = {**auth(bkey), "Idempotency-Key": "open-once"}
    first = bridge.post("/v1/leases", json=body, headers=headers)
    assert first.status_code == 503
    assert approvals(bridge, token, buyer, escrow) == [total]
    assert opened_by(bridge, buyer) == [] and token_balance(bridge, token, buyer) == MINTED
    monkeypatch.setattr(svc.ledger.sender, "send", real)

    second = ok(bridge.post("/v1/leases", json=body, headers=headers))
    assert second["result"]["approveTxHashes"] == []
    assert approvals(bridge, token, buyer, escrow) == [total]  # the one approval, spent by the open
    assert allowance(bridge, token, buyer, escrow) == 0
    third = bridge.post("/v1/leases", json=body, headers=headers)
    assert third.status_code == 200 and third.headers.get("Idempotent-Replayed") == "true"
    assert third.json()["result"]["leaseId"] == second["result"]["leaseId"]
    assert opened_by(bridge, buyer) == [int(second["result"]["leaseId"])]
    assert approvals(bridge, token, buyer, escrow) == [total]
    assert token_balance(bridge, token, buyer) == MINTED - total
    assert token_balance(bridge, token, escrow) == total


def test_api_erc20_refused_open_leaves_no_approval(bridge: TestClient) -> None:
    """Not enough tokens: 402 before anything is sent. A contract refusal (offer busy) is answered before any
    approval is sent."""
    svc = services(bridge)
    escrow = svc.deployment.escrow
    token = dev_token(bridge)
    prov = setup_provider(bridge, ["GPU-poor-1"], PRICE, token=token)
    poor, pkey = new_account(bridge, "buyer")
    ok(bridge.post("/v1/faucet", json={"address": poor, "amountWei": PRICE, "token": token}))
    r = bridge.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": HOUR}, headers=auth(pkey))
    assert r.status_code == 402 and r.json()["detail"]["code"] == "insufficient_funds"
    assert r.json()["detail"]["details"]["balanceWei"] == str(PRICE)
    rich, rkey = new_account(bridge, "buyer")
    ok(bridge.post("/v1/faucet", json={"address": rich, "amountWei": MINTED, "token": token}))
    ok(bridge.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": HOUR}, headers=auth(rkey)))
    ok(bridge.post("/v1/faucet", json={"address": poor, "amountWei": MINTED, "token": token}))
    busy = bridge.post("/v1/leases", json={"offerId": prov["offerId"], "durationS": HOUR}, headers=auth(pkey))
    assert busy.status_code == 409 and busy.json()["detail"]["details"]["error"] == "LeaseEscrowOfferBusy"
    assert approvals(bridge, token, poor, escrow) == []


def _sign(wallet: Any, utx: dict[str, Any]) -> str:
    return "0x" + bytes(wallet.sign_transaction(utx).raw_transaction).hex()


def test_api_erc20_wallet_gets_approve_then_open(bridge: TestClient) -> None:
    """A wallet user: 409 approval_required with the unsigned approve (not stored under the key); once the
    approval is relayed, the same request answers the unsigned openLease."""
    svc = services(bridge)
    escrow = svc.deployment.escrow
    token = dev_token(bridge)
    prov = setup_provider(bridge, ["GPU-wal-1"], PRICE, token=token)
    wallet = Account.create()
    ok(bridge.post("/v1/faucet", json={"address": wallet.address}))
    ok(bridge.post("/v1/faucet", json={"address": wallet.address, "amountWei": MINTED, "token": token}))
    headers = {"X-Wallet-Address": wallet.address, "Idempotency-Key": "wallet-open"}
    body = {"offerId": prov["offerId"], "durationS": HOUR}
    total = PRICE * HOUR + PRICE * HOUR * svc.ledger.read.fee_bps_for(prov["address"]) // 10_000

    r = bridge.post("/v1/leases", json=body, headers=headers)
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert detail["code"] == "approval_required"
    assert (detail["details"]["token"], detail["details"]["spender"], detail["details"]["amountWei"]) == (token, escrow, str(total))
    utx = detail["details"]["unsignedTx"]
    assert utx["to"] == token and utx["from"] == wallet.address
    # approvals on other contracts, or of other spenders, are not relayed
    stray = {**utx, "data": utx["data"][:34] + wallet.address[2:].lower() + utx["data"][74:]}
    refused = bridge.post("/v1/tx", json={"rawTransaction": _sign(wallet, stray)})
    assert refused.status_code == 422 and refused.json()["detail"]["code"] == "foreign_destination"
    ok(bridge.post("/v1/tx", json={"rawTransaction": _sign(wallet, utx)}))
    assert approvals(bridge, token, wallet.address, escrow) == [total]

    built = ok(bridge.post("/v1/leases", json=body, headers=headers))
    assert built["status"] == "unsigned" and built["unsignedTx"]["to"] == escrow and built["unsignedTx"]["value"] == "0x0"
    mined = ok(bridge.post("/v1/tx", json={"rawTransaction": _sign(wallet, built["unsignedTx"])}))
    lease_id = [int(e["args"]["leaseId"]) for e in mined["events"] if e["name"] == "LeaseOpened"]
    assert opened_by(bridge, wallet.address) == lease_id and len(lease_id) == 1
    assert token_balance(bridge, token, wallet.address) == MINTED - total
    assert ok(bridge.get(f"/v1/leases/{lease_id[0]}"))["token"] == token


def test_api_faucet_mints_only_the_dev_token(bridge: TestClient) -> None:
    svc = services(bridge)
    buyer, _ = new_account(bridge, "buyer", fund_wei=0)
    r = bridge.post("/v1/faucet", json={"address": buyer, "amountWei": 1, "token": svc.deployment.escrow})
    assert r.status_code == 422 and r.json()["detail"]["code"] == "unknown_token" and r.json()["detail"]["field"] == "token"
    r = bridge.get(f"/v1/balances/{buyer}", params={"token": buyer})
    assert r.status_code == 422 and r.json()["detail"]["code"] == "not_a_token"


def test_api_rpc_bridge_has_no_dev_token_and_no_faucet(memory_chain: tuple[Chain, Deployment], tmp_path: Path) -> None:
    """Configured for rpc, the bridge deploys no test token and mounts no faucet: minting is refused."""
    chain, dep = memory_chain
    snap = chain.snapshot()
    try:
        settings = bridge_settings(tmp_path, chain_backend="rpc", rpc_url="http://127.0.0.1:9",
                                   server_secret="rpc-test-secret-0123456789")
        with TestClient(create_app(settings, chain=chain, deployment=dep)) as client:
            tokens = ok(client.get("/v1/tokens"))
            assert tokens["devToken"] is None
            assert [(t["address"], t["faucet"]) for t in tokens["tokens"]] == [("0x" + "00" * 20, False)]
            r = client.post("/v1/faucet", json={"address": chain.accounts[1], "amountWei": 1, "token": chain.accounts[2]})
            assert r.status_code == 404
    finally:
        chain.revert(snap)


def test_api_erc20_stake_is_approved_to_the_registry(bridge: TestClient) -> None:
    svc = services(bridge)
    registry = svc.deployment.registry
    token = dev_token(bridge)
    prov, pkey = new_account(bridge, "provider")
    ok(bridge.post("/v1/providers", json={"metadataURI": "tok"}, headers=auth(pkey)))
    ok(bridge.post("/v1/faucet", json={"address": prov, "amountWei": MINTED, "token": token}))
    staked = ok(bridge.post("/v1/providers/stake", json={"token": token, "amountWei": 10**18},
                            headers={**auth(pkey), "Idempotency-Key": "stake-tok"}))
    assert len(staked["result"]["approveTxHashes"]) == 1
    assert approvals(bridge, token, prov, registry) == [10**18] and allowance(bridge, token, prov, registry) == 0
    assert svc.ledger.read.stake_of(prov, token).bonded == 10**18
    assert token_balance(bridge, token, prov) == MINTED - 10**18
    assert token_balance(bridge, token, registry) == 10**18


def test_api_erc20_concurrent_payments_of_one_account_are_serialized(
    bridge: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ERC-20 payment sets the allowance to exactly its amount and spends it: two payments of one managed
    account in one token run one after the other (the approval is always made under the account's pay lock),
    so both open and no allowance is left standing."""
    import threading

    svc = services(bridge)
    escrow = svc.deployment.escrow
    token = dev_token(bridge)
    provs = [setup_provider(bridge, [f"GPU-conc-{i}"], PRICE, token=token) for i in range(2)]
    buyer, bkey = new_account(bridge, "buyer")
    ok(bridge.post("/v1/faucet", json={"address": buyer, "amountWei": MINTED, "token": token}))
    held: list[bool] = []
    real_approve = svc.actor.approve_exact

    def checked_approve(account: Any, token_: str, spender: str, amount: int, current: int) -> Any:
        held.append(svc.actor.pay_lock(account.address, token_, spender).locked())
        return real_approve(account, token_, spender, amount, current)

    monkeypatch.setattr(svc.actor, "approve_exact", checked_approve)
    results: list[Any] = []

    def open_one(offer_id: int) -> None:
        results.append(bridge.post("/v1/leases", json={"offerId": offer_id, "durationS": HOUR}, headers=auth(bkey)))

    threads = [threading.Thread(target=open_one, args=(p["offerId"],)) for p in provs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert held and all(held)
    assert len(opened_by(bridge, buyer)) == 2
    assert allowance(bridge, token, buyer, escrow) == 0
    assert svc.actor.pay_lock(buyer.upper(), token, escrow) is svc.actor.pay_lock(buyer, token.lower(), escrow)
