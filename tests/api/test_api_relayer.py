"""Relayer durability and indexer resumption: restart mid-queue, nothing lost, nothing settled twice
(on SQLite and on PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.workers.relayer import RelayerCrash
from api.store.models import ChainEvent, Report, SettlementTx
from bridge_helpers import new_account, ok, submission
from conftest import bridge_settings
from ledger.chain.backends import Chain
from ledger.chain.deployment import Deployment
from test_api_flow import PRICE, attestor_for, open_and_activate, services, setup_provider

BOTH_STORES = True


def _leases_with_reports(client: TestClient, n_leases: int, n_reports: int, tag: str = "rl") -> list[int]:
    _, bkey = new_account(client, "buyer")
    chain = services(client).chain
    out = []
    atts = []
    for i in range(n_leases):
        prov = setup_provider(client, [f"GPU-{tag}-{i}"], PRICE)
        lease_id = open_and_activate(client, bkey, prov, f"{tag}-{i}")
        atts.append((prov, attestor_for(client, prov, lease_id)))
        out.append(lease_id)
    chain.time_travel(chain.now() + 15 * 60)
    for prov, att in atts:
        for _ in range(n_reports):
            rep, sig, samples = att.next_report()
            ok(client.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
    return out


def _settled_counts(client: TestClient) -> Counter[tuple[int, int]]:
    return Counter((int(e.args["leaseId"]), int(e.args["seq"])) for e in services(client).ledger.events.read("CheckpointSettled"))


@pytest.mark.parametrize("crash_at", ["signed", "sent"])
def test_relayer_restart_mid_queue_settles_each_checkpoint_once(
    memory_chain: tuple[Chain, Deployment], tmp_path: Path, database_url: str | None, crash_at: str
) -> None:
    chain, dep = memory_chain
    snap = chain.snapshot()
    try:
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            leases = _leases_with_reports(client, 2, 2)
            svc = services(client)
            svc.relayer.crash_at = crash_at
            with pytest.raises(RelayerCrash):
                svc.relayer.flush()
            with svc.store.db.session() as s:
                txs = list(s.scalars(select(SettlementTx)))
                assert [t.status for t in txs] == [crash_at]
                queued = s.scalar(select(func.count()).select_from(Report).where(Report.status == "queued"))
                assert queued == 2
            expected_before = {} if crash_at == "signed" else {(lid, 2): 1 for lid in leases}
            assert dict(_settled_counts(client)) == expected_before
        # the process is gone; a new one on the same store finishes the job at start-up
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            svc = services(client)
            assert dict(_settled_counts(client)) == {(lid, 2): 1 for lid in leases}
            with svc.store.db.session() as s:
                statuses = Counter(s.scalars(select(Report.status)))
                assert statuses == Counter({"settled": 2, "superseded": 2})
                assert [t.status for t in s.scalars(select(SettlementTx))] == ["mined"]
            assert svc.relayer.flush() == 0  # nothing left, nothing re-sent
            assert dict(_settled_counts(client)) == {(lid, 2): 1 for lid in leases}
            for lid in leases:
                assert ok(client.get(f"/v1/leases/{lid}"))["checkpoint"]["lastSeq"] == 2
    finally:
        chain.revert(snap)


def test_relayer_requeues_dropped_tx_and_settles_once(memory_chain: tuple[Chain, Deployment], tmp_path: Path, database_url: str | None) -> None:
    chain, dep = memory_chain
    snap = chain.snapshot()
    try:
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            leases = _leases_with_reports(client, 2, 1)
            svc = services(client)
            svc.relayer.crash_at = "signed"
            with pytest.raises(RelayerCrash):
                svc.relayer.flush()
            # the relayer's nonce is consumed by another transaction: the signed batch can never be mined
            relayer = svc.relayer_account
            svc.ledger.sender.send_eth(relayer, Account.create().address, 1)
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            svc = services(client)
            with svc.store.db.session() as s:
                assert [t.status for t in s.scalars(select(SettlementTx))] == ["dropped"]
            assert svc.relayer.flush() == 2
            assert dict(_settled_counts(client)) == {(lid, 1): 1 for lid in leases}
    finally:
        chain.revert(snap)


def test_relayer_settles_due_leases_on_cadence_and_threshold(memory_chain: tuple[Chain, Deployment], tmp_path: Path, database_url: str | None) -> None:
    chain, dep = memory_chain
    snap = chain.snapshot()
    try:
        settings = bridge_settings(tmp_path, database_url=database_url, settle_every_s=3600.0, settle_threshold_wei=PRICE * 100)
        with TestClient(create_app(settings, chain=chain, deployment=dep)) as client:
            svc = services(client)
            # one 60 s window on one GPU bills 60_000 GPU-ms = 60 s × PRICE: below the threshold (100 s)
            leases = _leases_with_reports(client, 1, 1)
            assert svc.relayer.tick() == 0
            prov_second = _leases_with_reports(client, 1, 2, tag="second")  # 120 s of GPU time: above the threshold
            assert svc.relayer.tick() == 1
            assert dict(_settled_counts(client)) == {(prov_second[0], 2): 1}
            # cadence: the first lease's report is old enough once settle_every_s has passed
            with svc.store.db.write() as s:
                for r in s.scalars(select(Report).where(Report.lease_id == leases[0])):
                    r.accepted_ms -= 3_600_001
            assert svc.relayer.tick() == 1
            assert dict(_settled_counts(client)) == {(prov_second[0], 2): 1, (leases[0], 1): 1}
    finally:
        chain.revert(snap)


def test_indexer_restart_resumes_without_duplicates(memory_chain: tuple[Chain, Deployment], tmp_path: Path, database_url: str | None) -> None:
    chain, dep = memory_chain
    snap = chain.snapshot()
    try:
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            prov = setup_provider(client, ["GPU-ix-1"], PRICE)
            svc = services(client)
            first = svc.indexer.indexed_block()
        # while the bridge is down, the chain moves on without it
        from tests.support.ledger_client import LedgerClient

        cl = LedgerClient(chain, dep)
        cl.register_provider(chain.accounts[3], chain.accounts[3], "direct")
        with TestClient(create_app(bridge_settings(tmp_path, database_url=database_url), chain=chain, deployment=dep)) as client:
            svc = services(client)
            assert svc.indexer.indexed_block() == chain.w3.eth.block_number > first
            with svc.store.db.session() as s:
                names = list(s.scalars(select(ChainEvent.name).order_by(ChainEvent.block_number, ChainEvent.log_index)))
                keys = list(s.execute(select(ChainEvent.tx_hash, ChainEvent.log_index, ChainEvent.record_index)))
            assert len(keys) == len(set(keys))
            assert names.count("ProviderRegistered") == 2 and names.count("OfferPublished") == 1
            assert ok(client.get(f"/v1/providers/{chain.accounts[3]}"))["metadataURI"] == "direct"
            assert svc.indexer.sync_once() == 0
    finally:
        chain.revert(snap)


def test_indexer_rewinds_reorged_blocks(memory_chain: tuple[Chain, Deployment], tmp_path: Path, database_url: str | None) -> None:
    run_reorg(*memory_chain, tmp_path, database_url=database_url)


def run_reorg(chain: Chain, dep: Deployment, tmp_path: Path, **settings: object) -> None:
    """Index a provider, node and offer, revert the chain under them (a reorg), check the rewind."""
    snap = chain.snapshot()
    try:
        with TestClient(create_app(bridge_settings(tmp_path, **settings), chain=chain, deployment=dep)) as client:
            svc = services(client)
            fork = chain.snapshot()
            prov = setup_provider(client, ["GPU-rg-1"], PRICE)
            assert ok(client.get("/v1/offers"))["total"] == 1
            with svc.store.db.session() as s:
                assert s.scalar(select(func.count()).select_from(ChainEvent).where(ChainEvent.name == "OfferPublished")) == 1
            chain.revert(fork)  # the blocks holding the provider, node and offer are gone
            chain.mine(3)
            svc.indexer.sync_once()
            assert svc.metrics.reorgs._value.get() == 1
            with svc.store.db.session() as s:
                assert s.scalar(select(func.count()).select_from(ChainEvent).where(ChainEvent.name.in_(
                    ("ProviderRegistered", "NodeRegistered", "OfferPublished")))) == 0
            assert ok(client.get("/v1/offers"))["total"] == 0
            assert client.get(f"/v1/nodes/{prov['nodeId']}").status_code == 404
            assert svc.indexer.indexed_block() == chain.w3.eth.block_number
    finally:
        chain.revert(snap)
