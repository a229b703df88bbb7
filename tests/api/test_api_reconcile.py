"""Reconciliation with the chain (issue 13): the store never claims what the chain does not hold, a refusal
that passes with time is retried, and health says when the chain is gone (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.store.models import Report
from api.workers import relayer as relayer_mod
from api.workers.relayer import RelayerCrash
from bridge_helpers import checkpoint, new_account, ok, submission
from conftest import bridge_settings
from ledger.chain.backends import ANVIL_BIN, Chain, connect
from ledger.chain.deploy import deploy_suite
from ledger.chain.deployment import Deployment
from ledger.chain.errors import ChainUnavailable
from test_api_flow import PRICE, attestor_for, open_and_activate, services, setup_provider

BOTH_STORES = True
SECRET = "reconcile-test-secret-0123456789"


def _statuses(client: TestClient, lease_id: int) -> list[tuple[int, str]]:
    with services(client).store.db.session() as s:
        return [(r.seq, r.status) for r in s.scalars(select(Report).where(Report.lease_id == lease_id).order_by(Report.seq))]


def _settled(client: TestClient) -> Counter[tuple[int, int]]:
    return Counter((int(e.args["leaseId"]), int(e.args["seq"])) for e in services(client).ledger.events.read("CheckpointSettled"))


def _lease_with_reports(client: TestClient, tag: str, n: int, *, before_reports: Any = None) -> int:
    _, bkey = new_account(client, "buyer")
    prov = setup_provider(client, [f"GPU-{tag}"], PRICE)
    lease_id = open_and_activate(client, bkey, prov, tag)
    att = attestor_for(client, prov, lease_id)
    if before_reports is not None:
        before_reports()
    chain = services(client).chain
    chain.time_travel(chain.now() + 15 * 60)
    for _ in range(n):
        rep, sig, samples = att.next_report()
        ok(client.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
    return lease_id


def test_health_answers_503_while_the_chain_is_unreachable(bridge: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ok(bridge.get("/v1/health"))["status"] == "ok"

    def down() -> int:
        raise ChainUnavailable("connection refused (simulated)")

    monkeypatch.setattr(services(bridge).ledger.read, "block_number", down)
    r = bridge.get("/v1/health")
    assert r.status_code == 503 and r.json()["status"] == "chain_unreachable"
    monkeypatch.undo()
    assert bridge.get("/v1/health").status_code == 200


def test_settlements_the_chain_lost_are_sent_again(
    memory_chain: tuple[Chain, Deployment], tmp_path: Path, database_url: str | None
) -> None:
    """The chain loses the blocks holding a settlement (an anvil restarted from an older state file): the
    store said settled, the chain says lastSeq 0. Reconciliation queues the reports again and they are paid."""
    chain, dep = memory_chain
    snap = chain.snapshot()
    try:
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            svc = services(client)
            lease_id = _lease_with_reports(client, "lost", 3)
            before_settlement = chain.snapshot()
            assert svc.relayer.flush() == 1
            assert checkpoint(svc, lease_id).last_seq == 3
            assert _statuses(client, lease_id) == [(1, "superseded"), (2, "superseded"), (3, "settled")]
            chain.revert(before_settlement)  # the settlement is gone from the chain
            chain.mine(2)
            assert checkpoint(svc, lease_id).last_seq == 0
        # a restart (the usual way after a chain crash) reconciles at start-up
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            svc = services(client)
            assert _statuses(client, lease_id) == [(1, "accepted"), (2, "accepted"), (3, "accepted")]
            assert svc.metrics.reports_reopened._value.get() == 3
            assert svc.relayer.flush() == 1
            assert checkpoint(svc, lease_id).last_seq == 3
            assert _settled(client) == Counter({(lease_id, 3): 1})
            assert _statuses(client, lease_id) == [(1, "superseded"), (2, "superseded"), (3, "settled")]
            assert svc.relayer.recover() is None and svc.relayer.flush() == 0  # nothing more to send
            assert ok(client.get(f"/v1/leases/{lease_id}"))["checkpoint"]["lastSeq"] == 3
    finally:
        chain.revert(snap)


def test_a_window_in_the_chains_future_is_queued_again_not_rejected(
    bridge: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LeaseEscrowWindowInFuture`` passes with time: the report goes back to the queue, then settles."""
    svc = services(bridge)
    chain = svc.chain
    marks: list[Any] = []
    lease_id = _lease_with_reports(bridge, "future", 1, before_reports=lambda: marks.append(chain.snapshot()))
    chain.revert(marks[0])  # the chain's clock goes back before the report's window ends
    chain.mine(1)
    monkeypatch.setattr(relayer_mod, "TEMPORARY_PAUSE_S", 0.0)
    assert svc.relayer.flush() == 0
    skipped = [e for e in svc.ledger.events.read("CheckpointSkipped") if int(e.args["leaseId"]) == lease_id]
    assert skipped, "the escrow was expected to skip the report"
    assert _statuses(bridge, lease_id) == [(1, "accepted")]  # not rejected
    chain.time_travel(chain.now() + 20 * 60)
    assert svc.relayer.flush() == 1
    assert _statuses(bridge, lease_id) == [(1, "settled")]
    assert checkpoint(svc, lease_id).last_seq == 1


@pytest.fixture(scope="module")
def anvil_chain() -> Iterator[tuple[Chain, Deployment]]:
    if not ANVIL_BIN.exists():
        pytest.skip("anvil binary not installed (npm ci in contracts/)")
    chain = connect("anvil")
    try:
        yield chain, deploy_suite(chain, chain.accounts[0])
    finally:
        chain.close()


@pytest.mark.anvil
def test_a_nonce_gap_is_filled_not_waited_on(
    anvil_chain: tuple[Chain, Deployment], tmp_path: Path, database_url: str | None
) -> None:
    """The chain lost a relayer transaction below a sent settlement (its nonce is free again): recovery fills
    the gap with a replacement and the settlement is mined, in seconds, not after the receipt timeout."""
    chain, dep = anvil_chain
    snap = chain.snapshot()
    try:
        settings = bridge_settings(tmp_path, database_url=database_url, chain_backend="anvil", server_secret=SECRET,
                                   relayer_tx_timeout_s=60.0)  # fmt: skip
        with TestClient(create_app(settings, chain=chain, deployment=dep)) as client:
            svc = services(client)
            lease_id = _lease_with_reports(client, "gap", 2)
            relayer = svc.relayer_account
            before = chain.snapshot()
            svc.ledger.sender.send_eth(relayer, relayer.address, 0)  # nonce k, lost below
            svc.relayer.crash_at = "sent"  # nonce k + 1: broadcast (and mined), then the process "dies"
            with pytest.raises(RelayerCrash):
                svc.relayer.flush()
            svc.relayer.crash_at = None
            chain.revert(before)  # nonce k and k + 1 are gone from the chain: k + 1 waits behind a gap
            assert checkpoint(svc, lease_id).last_seq == 0
            started = time.monotonic()
            svc.relayer.recover()
            assert time.monotonic() - started < 15
            assert checkpoint(svc, lease_id).last_seq == 2
            assert _statuses(client, lease_id) == [(1, "superseded"), (2, "settled")]
            assert _settled(client) == Counter({(lease_id, 2): 1})
    finally:
        chain.revert(snap)


@pytest.mark.anvil
def test_blocks_read_in_one_batch_are_the_blocks_read_one_by_one(anvil_chain: tuple[Chain, Deployment]) -> None:
    """The indexer reads a range's blocks as JSON-RPC batches over HTTP: the same blocks, in the order asked,
    whatever the batch size; a block the chain does not have is an error, never a shorter list."""
    from ledger.chain import views
    from ledger.chain.suite import LedgerChain

    chain, dep = anvil_chain
    read = LedgerChain(chain, dep).read
    head = read.block_number()
    numbers = [head, 0, *range(1, min(head, 7))]
    one_by_one = [read.block(n) for n in numbers]
    batch_size = views._BLOCK_BATCH
    try:
        views._BLOCK_BATCH = 2  # several batches
        batched = read.blocks(numbers)
    finally:
        views._BLOCK_BATCH = batch_size
    assert [(b["number"], b["hash"], b["parentHash"], b["timestamp"]) for b in batched] == [
        (b["number"], b["hash"], b["parentHash"], b["timestamp"]) for b in one_by_one
    ]
    with pytest.raises(ChainUnavailable):
        read.blocks([head + 1000])
