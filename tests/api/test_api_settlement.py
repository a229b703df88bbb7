"""Settlement against the one-slot lease state: batches carry each lease's state, stale entries are retried,
records of one CheckpointsSettled log are indexed apart, calls that need the checkpoint carry the current one,
and the store's migration to the record index."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.errors import revert_status
from api.store.migrations.runner import MigrationRefused, alembic_config
from api.store import Store
from api.store.models import Account, ChainEvent, Report, SettlementTx
from bridge_helpers import auth, checkpoint, new_account, ok, submission
from tests.support.ledger_client import LedgerClient
from ledger.chain.reverts import error_registry
from ledger.protocol import report_digest, report_struct_hash
from ledger.chain.signing import sign_digest
from ledger.protocol.settlement import LeaseState, initial_ckpt
from test_api_flow import PRICE, attestor_for, open_and_activate, services, setup_provider

ZERO = b"\x00" * 32


def _lease(client: TestClient, tag: str, bkey: str | None = None) -> tuple[dict[str, Any], int, Any, str]:
    """A provider with one single-GPU offer, an active lease on it and its signing attestor."""
    if bkey is None:
        _, bkey = new_account(client, "buyer")
    prov = setup_provider(client, [f"GPU-{tag}"], PRICE)
    lease_id = open_and_activate(client, bkey, prov, f"open-{tag}")
    return prov, lease_id, attestor_for(client, prov, lease_id), bkey


def _submit(client: TestClient, prov: dict[str, Any], att: Any, n: int = 1) -> list[Any]:
    out = []
    for _ in range(n):
        rep, sig, samples = att.next_report()
        ok(client.post("/v1/metering/reports", json=submission(prov["nodeId"], rep, sig, samples)), 201)
        out.append((rep, sig))
    return out


def _selector(name: str) -> bytes:
    return next(sel for sel, spec in error_registry().items() if spec.name == name)


def test_batch_records_share_a_log_are_indexed_apart_and_rewound(bridge: TestClient) -> None:
    svc = services(bridge)
    chain = svc.chain
    prov_a, lease_a, att_a, bkey = _lease(bridge, "rec-a")
    prov_b, lease_b, att_b, _ = _lease(bridge, "rec-b", bkey)
    chain.time_travel(chain.now() + 10 * 60)
    reps_a = _submit(bridge, prov_a, att_a, 2)
    reps_b = _submit(bridge, prov_b, att_b, 1)
    fork = chain.snapshot()
    assert svc.relayer.flush() == 2

    # one transaction, one CheckpointsSettled log: two records, indexed as two events of that log
    with svc.store.db.session() as s:
        rows = list(s.scalars(select(ChainEvent).where(ChainEvent.name == "CheckpointSettled")))
        txs = list(s.scalars(select(SettlementTx)))
    assert len(txs) == 1 and txs[0].status == "mined"
    assert len({(r.block_hash, r.log_index) for r in rows}) == 1
    assert sorted((r.lease_id, r.record_index) for r in rows) == [(lease_a, 0), (lease_b, 1)]
    assert {r.tx_hash for r in rows} == {txs[0].tx_hash}
    # the lease's state now is the record's: seq and hash of the settled report
    states = svc.ledger.states.states_or_none([lease_a, lease_b])
    assert (states[lease_a].checkpoint.seq, states[lease_a].last_hash) == (2, report_struct_hash(reps_a[-1][0]))
    assert (states[lease_b].checkpoint.seq, states[lease_b].last_hash) == (1, report_struct_hash(reps_b[-1][0]))
    assert states[lease_a].commitment() == svc.ledger.read.state_hash(lease_a)
    doc = ok(bridge.get(f"/v1/leases/{lease_a}"))
    assert [(x["seq"], x["recordIndex"], x["billableDelta"]) for x in doc["settlements"]] == [(2, 0, att_a.cum["alloc"])]
    assert ok(bridge.get("/v1/audit/leases"))["leases"][-2:] == [
        {"leaseId": lease_a, "state": "Active", "reports": 2, "settlements": 1},
        {"leaseId": lease_b, "state": "Active", "reports": 1, "settlements": 1},
    ]

    # a reorg drops the batch: both records leave the index, and the lease state is rebuilt without them
    chain.revert(fork)
    chain.mine(3)
    svc.indexer.sync_once()
    with svc.store.db.session() as s:
        assert s.scalar(select(ChainEvent.id).where(ChainEvent.name == "CheckpointSettled")) is None
    states = svc.ledger.states.states_or_none([lease_a, lease_b])
    for lid in (lease_a, lease_b):
        assert (states[lid].checkpoint.seq, states[lid].last_hash) == (0, ZERO)
        assert states[lid].ckpt == initial_ckpt(states[lid].terms)
    assert ok(bridge.get(f"/v1/leases/{lease_a}"))["settlements"] == []


def test_stale_state_entry_is_queued_again_and_settled_with_the_fresh_state(
    bridge: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = services(bridge)
    chain = svc.chain
    prov, lease_id, att, _ = _lease(bridge, "stale")
    chain.time_travel(chain.now() + 10 * 60)
    (rep1, sig1), (rep2, _) = _submit(bridge, prov, att, 2)
    before = svc.ledger.states.state(lease_id)
    # someone else settles report 1 directly: the escrow's commitment moves past what the bridge read
    LedgerClient(chain, svc.deployment).settle(chain.accounts[2], rep1, sig1)
    assert svc.ledger.read.state_hash(lease_id) != before.commitment()

    real = svc.ledger.states.states
    calls: list[list[int]] = []

    def first_call_stale(ids: Any) -> dict[int, LeaseState]:
        calls.append(list(ids))
        if len(calls) == 1:  # the view the relayer had before that settlement
            return {lease_id: before}
        return real(ids)

    monkeypatch.setattr(svc.ledger.states, "states", first_call_stale)
    assert svc.relayer.flush() == 1
    assert calls[0] == [lease_id] and len(calls) >= 2  # one state read per batch
    skipped = [e for e in svc.ledger.events.read("CheckpointSkipped") if int(e.args["leaseId"]) == lease_id]
    assert [(int(e.args["seq"]), bytes(e.args["reason"])) for e in skipped] == [(2, _selector("LeaseEscrowStaleState"))]
    settled = [e for e in svc.ledger.events.read("CheckpointSettled") if int(e.args["leaseId"]) == lease_id]
    assert [int(e.args["seq"]) for e in settled] == [1, 2]  # the third party's, then the bridge's retry
    assert settled[1].args["reportHash"] == report_struct_hash(rep2)
    with svc.store.db.session() as s:
        assert [(r.seq, r.status) for r in s.scalars(select(Report).order_by(Report.seq))] == [
            (1, "superseded"),
            (2, "settled"),
        ]
        assert [t.status for t in s.scalars(select(SettlementTx).order_by(SettlementTx.id))] == ["mined", "mined"]
    assert checkpoint(svc, lease_id).last_seq == 2


def test_report_beyond_the_entry_fields_is_refused_at_intake(bridge: TestClient) -> None:
    svc = services(bridge)
    prov, lease_id, att, _ = _lease(bridge, "wide-intake")
    svc.chain.time_travel(svc.chain.now() + 10 * 60)
    rep, _, samples = att.next_report()
    wide = dataclasses.replace(rep, cumEnergyMj=2**48)  # the 48-bit field of a settlement entry cannot carry it
    sig = sign_digest(report_digest(wide, att.chain_id, att.escrow), att.key)
    r = bridge.post("/v1/metering/reports", json=submission(prov["nodeId"], wide, sig, samples))
    assert r.status_code == 422 and r.json()["detail"]["code"] == "unsettleable_report", r.text
    assert "cumEnergyMj" in r.json()["detail"]["message"]
    with svc.store.db.session() as s:
        assert s.scalars(select(Report).where(Report.lease_id == lease_id)).first() is None


def test_report_beyond_the_entry_fields_is_rejected_without_blocking_the_batch(
    bridge: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored report the entry cannot carry (say, accepted by an older bridge) is rejected by the relayer
    with the reason, and the rest of the batch settles."""
    svc = services(bridge)
    chain = svc.chain
    prov_a, lease_a, att_a, bkey = _lease(bridge, "wide-a")
    prov_b, lease_b, att_b, _ = _lease(bridge, "wide-b", bkey)
    chain.time_travel(chain.now() + 10 * 60)
    _submit(bridge, prov_a, att_a, 1)
    # the attestor signs a counter the 48-bit field of a settlement entry cannot carry
    rep, _, samples = att_b.next_report()
    wide = dataclasses.replace(rep, cumEnergyMj=2**48)
    sig = sign_digest(report_digest(wide, att_b.chain_id, att_b.escrow), att_b.key)
    monkeypatch.setattr("api.services.metering.check_settleable", lambda report: None)  # the intake checks, off
    monkeypatch.setattr("api.store.reports._check_sums", lambda *a: None)
    ok(bridge.post("/v1/metering/reports", json=submission(prov_b["nodeId"], wide, sig, samples)), 201)
    assert svc.relayer.flush() == 1
    assert [int(e.args["leaseId"]) for e in svc.ledger.events.read("CheckpointSettled")] == [lease_a]
    with svc.store.db.session() as s:
        bad = s.scalars(select(Report).where(Report.lease_id == lease_b)).one()
        good = s.scalars(select(Report).where(Report.lease_id == lease_a)).one()
    assert good.status == "settled"
    assert bad.status == "rejected" and "cumEnergyMj" in (bad.reason or "")
    assert svc.relayer.flush() == 0  # nothing left, nothing re-sent


def _managed_key(svc: Any, address: str) -> Any:
    with svc.store.db.session() as s:
        acct = s.get(Account, address)
    return svc.keybox.open(acct.address, acct.encrypted_key)


def _sign(account: Any, utx: dict[str, Any]) -> str:
    return "0x" + bytes(account.sign_transaction(utx).raw_transaction).hex()


def test_calls_needing_the_checkpoint_carry_the_current_state(bridge: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = services(bridge)
    chain = svc.chain
    buyer, bkey = new_account(bridge, "buyer")
    prov, lease_id, att, _ = _lease(bridge, "state", bkey)
    chain.time_travel(chain.now() + 10 * 60)
    _submit(bridge, prov, att, 2)
    assert svc.relayer.flush() == 1
    st = svc.ledger.states.state(lease_id)
    assert st.checkpoint.seq == 2 and st.last_hash != ZERO

    # a wallet user gets the unsigned dispute with the lease's (ckpt, lastReportHash) as arguments
    built = ok(bridge.post(f"/v1/leases/{lease_id}/dispute", headers={"X-Wallet-Address": buyer}))
    assert built["status"] == "unsigned"
    fn, args = svc.ledger.contracts.escrow.decode_function_input(built["unsignedTx"]["data"])
    assert fn.fn_name == "dispute"
    lid, ckpt, last = args.values()  # (leaseId, ckpt, lastReportHash) in ABI order
    assert (lid, ckpt, bytes(last)) == (lease_id, st.ckpt, st.last_hash)
    # the lease moves on (the relayer settles report 3): the signed dispute is now stale and refused as such
    _submit(bridge, prov, att, 1)
    assert svc.relayer.flush() == 1
    r = bridge.post("/v1/tx", json={"rawTransaction": _sign(_managed_key(svc, buyer), built["unsignedTx"])})
    assert r.status_code == 409 and r.json()["detail"]["details"]["error"] == "LeaseEscrowStaleState"

    # managed: the bridge reads the state itself; top-up then dispute go through with the settled state
    top = ok(bridge.post(f"/v1/leases/{lease_id}/top-up", json={"amountWei": PRICE * 60}, headers=auth(bkey)))
    assert [int(e["args"]["durationS"]) for e in top["events"] if e["name"] == "ToppedUp"] == [3600 + 60]
    pending = checkpoint(svc, lease_id).pending
    assert pending == PRICE * att.cum["alloc"] // 1000
    # the state read races a settlement (here: the first read returns the state before report 3): the
    # escrow refuses the stale state in the simulation and the bridge retries once with the fresh one
    real, reads = svc.views.lease_state, []

    def stale_once(lid: int) -> LeaseState:
        reads.append(lid)
        return st if len(reads) == 1 else real(lid)

    monkeypatch.setattr(svc.views, "lease_state", stale_once)
    disputed = ok(bridge.post(f"/v1/leases/{lease_id}/dispute", headers=auth(bkey)))
    assert reads == [lease_id, lease_id]
    monkeypatch.setattr(svc.views, "lease_state", real)
    assert [int(e["args"]["amount"]) for e in disputed["events"] if e["name"] == "DisputeOpened"] == [pending]
    assert checkpoint(svc, lease_id).frozen == pending
    # release with the dispute open: the contract's refusal, not a stale state
    r = bridge.post(f"/v1/leases/{lease_id}/release-earnings", headers=auth(prov["key"]))
    assert r.json()["detail"]["details"]["error"] == "LeaseEscrowDisputeOpen"
    assert r.status_code == revert_status("LeaseEscrowDisputeOpen")[0]


def test_migration_0003_upgrades_an_existing_store(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    store = Store(f"sqlite:///{db.as_posix()}")
    cfg = alembic_config()
    with store.db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    row = ("0x" + "11" * 32, 5, "0x" + "22" * 32)
    with sqlite3.connect(db) as raw:
        raw.execute(
            "INSERT INTO events (block_number, block_hash, block_ts, tx_hash, log_index, contract, name, args) "
            "VALUES (7, ?, 1, ?, ?, 'escrow', 'LeaseOpened', '{}')",
            (row[0], row[2], row[1]),
        )
    store.migrate()  # 0002 -> head on a store with data
    with store.db.session() as s:
        ev = s.scalars(select(ChainEvent)).one()
        assert (ev.block_hash, ev.log_index, ev.record_index, ev.name) == (row[0], 5, 0, "LeaseOpened")
    common = dict(block_number=7, block_hash=row[0], block_ts=1, tx_hash=row[2], log_index=5, contract="escrow",
                  name="CheckpointSettled", args="{}")
    with store.db.write() as s:  # a second record of the same log
        s.add(ChainEvent(record_index=1, **common))
    with pytest.raises(Exception, match="UNIQUE"):
        with store.db.write() as s:  # the same record twice
            s.add(ChainEvent(record_index=1, **common))
    with store.db.session() as s:
        assert sorted(s.scalars(select(ChainEvent.record_index))) == [0, 1]
    store.close()
    # and from scratch
    fresh = Store(f"sqlite:///{(tmp_path / 'new.sqlite3').as_posix()}")
    fresh.migrate()
    with sqlite3.connect(tmp_path / "new.sqlite3") as raw:
        cols = [r[1] for r in raw.execute("PRAGMA table_info(events)")]
        assert "record_index" in cols
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == (
            ScriptDirectory.from_config(cfg).get_current_head(),
        )
    fresh.close()


def test_migration_0004_refuses_a_store_of_protocol_1_reports_and_says_what_to_do(tmp_path: Path) -> None:
    """Protocol-1 reports can never settle on a protocol-2 escrow and their packed samples would be misread:
    a store holding any is refused at start-up with the way out, and nothing in it is changed."""
    db = tmp_path / "v1.sqlite3"
    store = Store(f"sqlite:///{db.as_posix()}")
    cfg = alembic_config()
    with store.db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    with sqlite3.connect(db) as raw:
        raw.execute(
            "INSERT INTO reports (lease_id, seq, struct_hash, signer, signature, body, samples_root, window_end_ms,"
            " cum_billable, status, accepted_ms) VALUES (1, 1, '0x01', '0x02', '0x03', '{}', '0x04', 5, 6, 'settled', 7)"
        )
    with pytest.raises(MigrationRefused, match="1 protocol-1 metering reports.*new database"):
        store.migrate()
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == ("0003",)
        assert raw.execute("SELECT COUNT(*) FROM reports").fetchone() == (1,)
    store.close()
