"""The Python client (client/compute_ledger_client) against the real bridge on the memory chain: every role's
routes, retries that never move money twice, typed errors, and a wallet that signs locally."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from api.error_codes import ERROR_CODES as BRIDGE_ERROR_CODES
from compute_ledger_client import (
    ERROR_CODES,
    ComputeLedger,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    NotFound,
    OutcomeUnknown,
    RetryPolicy,
    ServerError,
    TransportError,
    Unauthorized,
    ValidationError,
    WaitTimeout,
    format_eth,
    parse_eth,
)
from tests.api.bridge_helpers import SigningAttestor, submission
from tests.client.helpers import ProviderSetup, client_over, provider_with_offer

PRICE = 10**9  # wei per GPU-second
HOUR = 3600
FAST = RetryPolicy(max_retries=3, backoff_s=0.01, max_backoff_s=0.05)


def services(app: TestClient) -> Any:
    return app.app.state.bridge  # type: ignore[attr-defined]


def attestor_for(app: TestClient, cl: ComputeLedger, prov: ProviderSetup, lease_id: int) -> SigningAttestor:
    svc = services(app)
    doc = cl.lease(lease_id)
    return SigningAttestor(
        key=bytes(prov.attestor.key), chain_id=doc.chain_id, escrow=svc.deployment.escrow, lease_id=lease_id,
        gpu_indices=doc.gpu_indices, gpu_set_hash=bytes.fromhex(doc.gpu_set_hash[2:]), lease_start_ms=doc.start_ms,
    )  # fmt: skip


def meter(app: TestClient, prov: ProviderSetup, att: SigningAttestor, windows: int) -> None:
    """The node's attestor sends ``windows`` signed reports (the attestor's wire, not the client's)."""
    for _ in range(windows):
        rep, sig, samples = att.next_report()
        r = app.post("/v1/metering/reports", json=submission(prov.node_id, rep, sig, samples))
        assert r.status_code == 201, r.text


def test_the_client_carries_the_bridges_error_table() -> None:
    assert ERROR_CODES == {code: status for code, status, _ in BRIDGE_ERROR_CODES}


def test_every_role_through_the_client_from_account_to_money_withdrawn(bridge: TestClient) -> None:
    """Provider, buyer, arbiter and auditor, each a managed account, through the client only (the attestor's
    reports aside): money conserved, settlement awaited, a dispute split, the audit data read back."""
    svc = services(bridge)
    chain = svc.chain
    anon = ComputeLedger(http=bridge)
    assert anon.health().status == "ok"
    info = anon.chain()
    prov = provider_with_offer(anon, PRICE, billing_mode="metered")
    assert anon.node(prov.node_id).gpu_count == 2 and anon.provider(prov.address).registered
    assert [x.offer_id for x in anon.offers(gpu_model="h100").offers] == [prov.offer_id]
    offer = anon.offer(prov.offer_id)
    assert offer.price_per_gpu_hour == PRICE * 3600 and offer.billing_mode == "metered"

    b = anon.create_account(["buyer"], label="lab")
    buyer = anon.with_api_key(b.api_key)
    assert buyer.me().roles == ["buyer"] and buyer.me().eth_balance_wei == 0
    buyer.faucet()
    opened = buyer.open_lease(prov.offer_id, HOUR, max_total_wei=parse_eth("1"))
    assert opened.status == "mined" and opened.idempotency_key and not opened.replayed
    lease_id = opened.lease_id
    prov.client.activate_lease(lease_id)
    assert [x.lease_id for x in prov.client.active_leases(prov.node_id)] == [lease_id]
    doc = buyer.lease(lease_id)
    assert doc.state == "Active" and doc.money.escrow == PRICE * 2 * HOUR and isinstance(doc.money.fee, int)
    assert format_eth(doc.money.escrow, 8) == "0.0000072 ETH"

    # the attestor meters; the client waits while the relayer settles in the background
    att = attestor_for(bridge, buyer, prov, lease_id)
    chain.time_travel(chain.now() + 10 * 60)
    meter(bridge, prov, att, 3)
    with pytest.raises(WaitTimeout):
        buyer.wait_for_settlement(lease_id, timeout_s=0.3, poll_s=0.1)
    polls: list[int] = []

    def relayer_runs_at_the_third_poll(req: httpx.Request, n: int) -> None:
        if req.url.path == f"/v1/leases/{lease_id}":
            polls.append(n)
            if n == 2:  # the relayer's batch lands while the client is waiting (in line with the polls)
                svc.relayer.flush()

    waiter, _ = client_over(bridge, relayer_runs_at_the_third_poll, api_key=b.api_key)
    settled = waiter.wait_for_settlement(lease_id, timeout_s=30, poll_s=0.05)
    assert polls == [0, 1, 2]
    assert settled.checkpoint.last_seq == 3 and settled.usage is not None and settled.usage.reports == 3
    assert settled.checkpoint.charged == PRICE * att.cum["busy"] // 1000 > 0
    assert [r.status for r in anon.reports(lease_id).reports][-1] == "settled"

    closed = buyer.close_lease(lease_id)
    (ev,) = closed.events_named("LeaseClosed")
    charged, refund = ev.int_arg("charged"), ev.int_arg("refund")
    assert charged + refund == doc.money.escrow
    assert buyer.wait_for_state(lease_id, "Closed", timeout_s=5).money.closed

    # before the challenge period ends the release is a 409 naming the contract's reason
    with pytest.raises(Conflict) as early:
        prov.client.release_earnings(lease_id)
    assert early.value.contract_error == "LeaseEscrowInChallengePeriod" and early.value.status == 409
    chain.time_travel(chain.now() + info.challenge_period_s + 1)
    anon.release_earnings_when_due(lease_id, timeout_s=10)
    assert prov.client.balance().withdrawable_wei == charged
    paid = prov.client.withdraw()
    assert [e.int_arg("amount") for e in paid.events_named("Withdrawn")] == [charged]
    assert prov.client.balance().withdrawable_wei == 0
    refunded = buyer.balance().withdrawable_wei
    assert refunded >= refund
    assert [e.int_arg("amount") for e in buyer.withdraw().events_named("Withdrawn")] == [refunded]
    buyer.rate(lease_id, 5)
    assert anon.reputation(prov.address).counts["ratings"] == 1

    # a second lease: disputed within the challenge period, split by an arbiter
    lease2 = buyer.open_lease(prov.offer_id, HOUR).lease_id
    prov.client.activate_lease(lease2)
    att2 = attestor_for(bridge, buyer, prov, lease2)
    chain.time_travel(chain.now() + 5 * 60)
    meter(bridge, prov, att2, 2)
    svc.relayer.flush()
    frozen = buyer.wait_for_settlement(lease2, seq=2, timeout_s=5).earnings.pending
    buyer.dispute(lease2)
    (open_dispute,) = anon.disputes()
    assert (open_dispute.lease_id, open_dispute.frozen_wei, open_dispute.status) == (lease2, frozen, "open")
    arb = anon.with_api_key(anon.create_account(["arbiter"]).api_key)
    arb.faucet()
    with pytest.raises(Forbidden):
        buyer.resolve_dispute(lease2, 5000)
    ruled = arb.resolve_dispute(lease2, 5000)
    (res,) = ruled.events_named("DisputeResolved")
    assert res.int_arg("buyerShare") + res.int_arg("providerShare") == frozen
    assert anon.disputes("resolved")[0].resolution is not None and anon.disputes() == []

    # auditors: the lease list, reports with samples, Merkle proofs, the archive, the domain
    listing = anon.audit_leases()
    assert {x.lease_id: x.reports for x in listing.leases} == {lease_id: 3, lease2: 2}
    page = anon.reports(lease_id, samples=True)
    assert [int(r.report["seq"]) for r in page.reports] == [1, 2, 3] and page.reports[0].samples
    proofs = anon.sample_proofs(lease_id, 1, [0, 1])
    assert [p.index for p in proofs] == [0, 1] and proofs[0].root == page.reports[0].report["samplesRoot"]
    assert anon.sample_proof(lease_id, 1, 1) == proofs[1]
    assert any(x.get("name") == "settleBatch" for x in anon.chain_abi("LeaseEscrow"))
    assert len(anon.archive(lease_id)) == 3
    assert anon.metering_domain().verifying_contract == svc.deployment.escrow
    assert anon.leases(buyer=b.address).total == 2


def test_a_lost_answer_is_retried_with_the_same_key_and_escrows_once(bridge: TestClient) -> None:
    anon = ComputeLedger(http=bridge)
    prov = provider_with_offer(anon, PRICE)
    b = anon.create_account(["buyer"])
    anon.faucet(b.address)
    # the first open reaches the bridge (and escrows), its answer is lost; then a 503 from a proxy
    def fault(req: httpx.Request, n: int) -> str | httpx.Response | None:
        if req.url.path != "/v1/leases" or req.method != "POST":
            return None
        return {0: "lost", 1: httpx.Response(503, json={"detail": "upstream busy"})}.get(n)

    buyer, seen = client_over(bridge, fault, api_key=b.api_key, retry=FAST)
    before = buyer.balance().wallet_balance_wei
    opened = buyer.open_lease(prov.offer_id, HOUR)
    attempts = seen.attempts("POST", "/v1/leases")
    assert len(attempts) == 3 and len({a.idempotency_key for a in attempts}) == 1 and attempts[0].idempotency_key
    assert opened.replayed and opened.idempotency_key == attempts[0].idempotency_key
    # one lease, one escrow: the buyer's wallet paid escrow + fee once (and gas once)
    assert anon.leases(buyer=b.address).total == 1
    doc = anon.lease(opened.lease_id)
    receipt = services(bridge).chain.w3.eth.get_transaction_receipt(opened.tx_hash)
    gas = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert before - buyer.balance().wallet_balance_wei == doc.money.escrow + doc.money.fee + gas
    # the next logical call gets a new key: a second lease (refused here: the offer is taken)
    with pytest.raises(Conflict) as busy:
        buyer.open_lease(prov.offer_id, HOUR)
    assert busy.value.contract_error == "LeaseEscrowOfferBusy"
    assert len({a.idempotency_key for a in seen.attempts("POST", "/v1/leases")}) == 2


def test_a_write_without_a_key_is_never_sent_twice_once_it_may_have_arrived(bridge: TestClient) -> None:
    anon = ComputeLedger(http=bridge)
    p = anon.create_account(["provider"])
    anon.faucet(p.address)
    lost = client_over(bridge, lambda req, n: "lost" if req.url.path == "/v1/providers" else None,
                       api_key=p.api_key, retry=FAST)  # fmt: skip
    prov, seen = lost
    with pytest.raises(OutcomeUnknown):
        prov.register_provider("https://once.example")
    assert len(seen.attempts("POST", "/v1/providers")) == 1
    assert anon.provider(p.address).registered  # it did arrive: reading the state says so
    # a connection refused never reached the bridge: sent again, done once
    refused = lambda req, n: "connect" if req.url.path == "/v1/providers/unstake" and n < 2 else None  # noqa: E731
    prov2, seen2 = client_over(bridge, refused, api_key=p.api_key, retry=FAST)
    with pytest.raises(InsufficientFunds):  # nothing staked: the contract refuses, after two refused connections
        prov2.request_unstake(1)
    assert [a.forwarded for a in seen2.attempts("POST", "/v1/providers/unstake")] == [False, False, True]


def test_reads_and_429_are_retried_and_give_up_with_a_typed_error(bridge: TestClient) -> None:
    def fault(req: httpx.Request, n: int) -> str | httpx.Response | None:
        if req.url.path == "/v1/health":
            return httpx.Response(503, json={"detail": {"code": "chain_unavailable", "message": "down"}}) if n < 2 else None
        if req.url.path == "/v1/accounts":
            return httpx.Response(429, headers={"Retry-After": "0"},
                                  json={"detail": {"code": "rate_limited", "message": "slow down"}}) if n < 1 else None
        if req.url.path == "/v1/tokens":
            return "lost"
        return None

    cl, seen = client_over(bridge, fault, retry=FAST)
    assert cl.health().status == "ok" and len(seen.attempts("GET", "/v1/health")) == 3
    assert cl.create_account(["buyer"]).api_key and len(seen.attempts("POST", "/v1/accounts")) == 2
    with pytest.raises(TransportError) as down:
        cl.tokens()
    assert not isinstance(down.value, OutcomeUnknown) and len(seen.attempts("GET", "/v1/tokens")) == 4
    always = client_over(bridge, lambda req, n: httpx.Response(503, json={"detail": {"code": "store_unavailable",
                                                                                     "message": "db"}}), retry=FAST)[0]
    with pytest.raises(ServerError) as e:
        always.health()
    assert (e.value.status, e.value.code) == (503, "store_unavailable")


def test_errors_are_typed_with_the_bridges_code_status_message_and_field(bridge: TestClient) -> None:
    anon = ComputeLedger(http=bridge)
    with pytest.raises(NotFound) as nf:
        anon.lease(987_654)
    assert (nf.value.status, nf.value.code) == (404, "unknown_lease") and "987654" in nf.value.message
    with pytest.raises(Unauthorized):
        anon.open_lease(1, HOUR)
    with pytest.raises(Unauthorized):
        ComputeLedger(http=bridge, api_key="cl_not-a-key").me()
    prov = provider_with_offer(anon, PRICE)
    poor = anon.with_api_key(anon.create_account(["buyer"]).api_key)
    with pytest.raises(InsufficientFunds) as broke:
        poor.open_lease(prov.offer_id, HOUR)
    assert broke.value.code == "insufficient_funds" and "faucet" in broke.value.message
    with pytest.raises(ValidationError) as bad:
        prov.client.publish_offer(prov.node_id, [0, 0], PRICE, 1, 2)
    assert bad.value.code == "validation_error" and bad.value.field and "gpuIndices" in bad.value.field
    with pytest.raises(ValueError):
        ComputeLedger(http=bridge, api_key="x", wallet=Account.create().key)


def test_a_wallet_signs_locally_and_pays_in_eth_and_in_an_erc20_after_approving(bridge: TestClient) -> None:
    svc = services(bridge)
    anon = ComputeLedger(http=bridge)
    token = anon.tokens().dev_token
    assert token is not None
    eth_offer = provider_with_offer(anon, PRICE)
    erc_offer = provider_with_offer(anon, PRICE, uuids=("GPU-t-1",), token=token)
    key = Account.create()
    anon.faucet(key.address)
    anon.faucet(key.address, 10**20, token)
    wallet = ComputeLedger(http=bridge, wallet="0x" + bytes(key.key).hex())
    assert wallet.address == key.address and wallet.me().kind == "wallet"

    opened = wallet.open_lease(eth_offer.offer_id, HOUR)  # built unsigned, signed here, relayed by POST /v1/tx
    assert opened.status == "mined" and anon.lease(opened.lease_id).buyer == key.address
    # ERC-20: the bridge asks for the approval first (409); the client signs it, then the lease itself
    paid = wallet.open_lease(erc_offer.offer_id, HOUR)
    doc = anon.lease(paid.lease_id)
    assert doc.token == token and doc.buyer == key.address
    assert wallet.balance(token=token).wallet_balance_wei == 10**20 - doc.money.escrow - doc.money.fee
    relayed = [e for e in svc.ledger.events.read("LeaseOpened") if e.args["buyer"] == key.address]
    assert len(relayed) == 2

    # a wallet address alone gets the transaction unsigned; signed elsewhere, submitted through the client
    watcher = ComputeLedger(http=bridge, wallet_address=key.address)
    built = watcher.close_lease(opened.lease_id)
    assert built.status == "unsigned" and built.unsigned_tx is not None and built.ethers_tx is not None
    raw = key.sign_transaction({k: v for k, v in built.unsigned_tx.items() if k != "from"}).raw_transaction
    mined = watcher.submit_transaction(bytes(raw))
    assert mined.status == "mined" and mined.events_named("LeaseClosed")
    again = watcher.submit_transaction(bytes(raw))  # the same signed bytes: the first answer, nothing resent
    assert again.replayed and again.tx_hash == mined.tx_hash
    assert anon.lease(opened.lease_id).state == "Closed"


def test_a_busy_key_is_asked_again_with_the_same_key_and_an_abandoned_one_is_raised(bridge: TestClient) -> None:
    anon = ComputeLedger(http=bridge)
    b = anon.create_account(["buyer"])
    anon.faucet(b.address)
    busy = {"detail": {"code": "idempotency_in_progress", "message": "still running: retry"}}
    abandoned = {"detail": {"code": "idempotency_abandoned", "message": "cut off by a restart"}}

    def fault(req: httpx.Request, n: int) -> str | httpx.Response | None:
        if req.url.path == "/v1/withdraw" and n == 0:
            return httpx.Response(409, json=busy)
        if req.url.path.endswith("/top-up"):
            return httpx.Response(409, json=abandoned)
        return None

    buyer, seen = client_over(bridge, fault, api_key=b.api_key, retry=FAST)
    with pytest.raises(Conflict) as nothing:  # asked again with the same key; then the contract's answer
        buyer.withdraw()
    assert nothing.value.contract_error == "LeaseEscrowNothingToWithdraw"
    keys = [a.idempotency_key for a in seen.attempts("POST", "/v1/withdraw")]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0]
    with pytest.raises(IdempotencyConflict) as cut:
        buyer.top_up(1, 10**9)
    assert cut.value.code == "idempotency_abandoned" and len(seen.attempts("POST", "/v1/leases/1/top-up")) == 1
