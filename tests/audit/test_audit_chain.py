"""The chain source: terms, attestor keys and money read from the real contracts (memory chain), reports from
an archive. A lease is opened, metered by the fake GPU, settled at three checkpoints and closed; the auditor
then verifies it without any bridge."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from auditor.core import AuditInput, charge_for, verify_lease
from auditor.cli import main
from ledger.protocol.errors import LedgerError
from auditor.sources import ArchiveSource, AuditSourceError, ChainLeaseReader, ChainSource, write_archive
from ledger.chain.backends import Chain, connect
from tests.support.ledger_client import ETH, BillingMode, LedgerClient
from ledger.chain.deploy import deploy_suite
from ledger.protocol import gpu_set_hash, gpu_uuid_hash, report_struct_hash
from ledger.chain.signing import address_of
from tests.audit.fakegpu import ATTESTOR_KEY, MAX_MW, OTHER_KEY, FakeLease, ReportHook, make_lease

PRICE = 10**9
PERIOD_MS = 1000  # the fake attestor's sample period (tests.audit.fakegpu.make_lease's default)
UUIDS = tuple(gpu_uuid_hash(f"GPU-chain-{i:02d}") for i in range(4))


@dataclasses.dataclass
class Scenario:
    chain: Chain
    client: LedgerClient
    lease_id: int
    node_id: int
    fake: FakeLease
    provider: str
    neighbour_id: int  # a metered lease on the node's other GPUs, settled in the same batches
    neighbour: FakeLease


def run_lease(chain: Chain, report_hook: ReportHook | None = None) -> Scenario:
    """Deploy, register, open a 90 s lease on GPUs 1 and 2, meter 60 s, settle 3 checkpoints, close.

    A neighbour lease (metered, GPUs 0 and 3) runs alongside: checkpoints 2 and 6 of both settle in one
    ``settleBatch`` each (one CheckpointsSettled log, a record per lease), checkpoint 4 of each by ``settle``.
    ``report_hook`` lets the attestor of the first lease lie before signing (``tests.audit.fakegpu``)."""
    dep = deploy_suite(chain, admin=chain.accounts[0])
    cl = LedgerClient(chain, dep, keys=chain.private_keys)
    provider, buyer, relayer = chain.accounts[1:4]
    cl.register_provider(provider, payout=provider, metadata_uri="ipfs://provider")
    node_id = cl.register_node(provider, address_of(ATTESTOR_KEY), "H100", UUIDS, 81_559, MAX_MW, "eu-west").id
    t0 = chain.now()
    offer_id = cl.publish_offer(provider, node_id, 0b0110, PRICE, ETH, BillingMode.RESERVED, t0, t0 + 86_400).id
    offer_b = cl.publish_offer(provider, node_id, 0b1001, PRICE, ETH, BillingMode.METERED, t0, t0 + 86_400).id
    fakes = []
    for offer, gpus, hook, seed in ((offer_id, (1, 2), report_hook, 7), (offer_b, (0, 3), None, 5)):
        lid = cl.open_lease(buyer, offer, holder=provider, duration_s=90, start_by=t0 + 600).id
        cl.activate_lease(provider, lid)
        info = cl.lease(lid)
        fake = make_lease(
            6,
            gpus=gpus,
            lease_id=lid,
            start_ms=info.start_ms,
            chain_id=chain.chain_id,
            escrow_address=dep.escrow,
            gpu_uuid_hashes=UUIDS,
            duration_s=90,
            settle_at=(),
            report_hook=hook,
            seed=seed,
        )
        fakes.append((lid, info, fake))
    (lease_id, _, fake), (neighbour_id, _, neighbour) = fakes
    chain.time_travel(max(i.start_ms for _, i, _ in fakes) // 1000 + 61)  # every window has ended
    for seq, batch in ((2, (neighbour, fake)), (4, None), (6, (fake, neighbour))):
        if batch is None:
            for f in (fake, neighbour):
                sr = f.reports[seq - 1]
                res = cl.settle(relayer, sr.report, sr.signature)
                assert res.event("CheckpointSettled").args["seq"] == seq
        else:
            srs = [f.reports[seq - 1] for f in batch]
            res = cl.settle_batch(relayer, [sr.report for sr in srs], [sr.signature for sr in srs])
            recs = res.named("CheckpointSettled")
            assert [(e.args["leaseId"], e.args["seq"], e.args["recordIndex"]) for e in recs] == [
                (sr.report.leaseId, seq, i) for i, sr in enumerate(srs)
            ]
            assert len({e.log_index for e in recs}) == 1  # one log, a record per lease
    cl.close_lease(buyer, lease_id)
    cl.close_lease(buyer, neighbour_id)
    return Scenario(chain, cl, lease_id, node_id, fake, provider, neighbour_id, neighbour)


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    chain = connect("memory")
    try:
        yield run_lease(chain)
    finally:
        chain.close()


def _load(sc: Scenario, tmp_path: Path, reports: Any = None, lease_id: int | None = None) -> AuditInput:
    archive = tmp_path / "archive.jsonl"
    write_archive(archive, list(sc.fake.reports if reports is None else reports) + sc.neighbour.reports)
    reader = ChainLeaseReader(sc.client.ledger, sample_period_ms=PERIOD_MS)
    return ChainSource(reader, ArchiveSource(archive)).load(lease_id or sc.lease_id)


def test_chain_source_reads_terms_checkpoints_and_money(scenario: Scenario, tmp_path: Path) -> None:
    inp = _load(scenario, tmp_path)
    t = inp.terms
    assert t.leaseId == scenario.lease_id and t.gpuIndices == (1, 2) and t.gpuCount == 2
    assert t.gpuSetHash == scenario.fake.input.terms.gpuSetHash
    assert [a.address for a in t.attestors] == [address_of(ATTESTOR_KEY)]
    assert [s.seq for s in inp.settlements] == [2, 4, 6]
    # each settlement is the record of a CheckpointsSettled log: the report's hash and counters, as the
    # lease's new ckpt word; settled in a block after its window ended
    for st in inp.settlements:
        r = scenario.fake.reports[st.seq - 1].report
        assert st.reportHash == report_struct_hash(r)
        assert (st.cumBusyMs, st.cumAllocatedMs, st.cumEnergyMj, st.cumSmActiveMs) == (
            r.cumBusyMs,
            r.cumAllocatedMs,
            r.cumEnergyMj,
            r.cumSmActiveMs,
        )
        assert st.settledAt * 1000 >= r.windowEndMs and len(st.order) == 3 and st.txHash
    assert inp.settlements[0].billable(BillingMode.RESERVED) == scenario.fake.reports[1].report.cumAllocatedMs
    allocated = [0] + [scenario.fake.reports[s - 1].report.cumAllocatedMs for s in (2, 4, 6)]
    assert [s.charged for s in inp.settlements] == [
        charge_for(PRICE, allocated[i + 1], allocated[i]) for i in range(3)
    ]  # the GPUs' whole time, as the driver's samples tile it: about 2 × 20 s per checkpoint
    # checkpoints 2 and 6 are records of batch logs shared with the neighbour lease: record 1 of the first
    # batch, record 0 of the last; checkpoint 4 is settle()'s own event
    nb = _load(scenario, tmp_path, lease_id=scenario.neighbour_id).settlements
    assert [s.order[:2] for s in inp.settlements][0::2] == [s.order[:2] for s in nb][0::2]
    assert [s.order[2] for s in inp.settlements] == [1, 0, 0] and [s.order[2] for s in nb] == [0, 0, 1]
    assert inp.money is not None and inp.money.closed
    assert inp.money.escrow == PRICE * 2 * 90
    assert inp.money.closedCharged == sum(s.charged for s in inp.settlements) == PRICE * allocated[-1] // 1000
    assert inp.money.refund == PRICE * 2 * 90 - inp.money.closedCharged


def test_chain_source_audit_of_settled_and_closed_lease_passes(scenario: Scenario, tmp_path: Path) -> None:
    for lease_id in (scenario.lease_id, scenario.neighbour_id):
        inp = _load(scenario, tmp_path, lease_id=lease_id)
        v = verify_lease(inp)
        assert v.ok, v.failures
        by = {r.check: r for r in v.results}
        assert by["settlement.charge"].detail == "3 checkpoints verified"
        assert by["settlement.checkpoint"].detail == "3 checkpoints verified"
        assert by["report.gpu_set"].detail == "6 reports verified"
        assert by["money.conservation"].status == "PASS"
    assert inp.terms.billingMode == BillingMode.METERED  # the neighbour bills busy time
    assert [s.charged for s in inp.settlements] == [
        PRICE * inp.reports[s.seq - 1].report.cumBusyMs // 1000 - PRICE * (prev.cumBusyMs if prev else 0) // 1000
        for s, prev in zip(inp.settlements, [None, *inp.settlements[:-1]])
    ]


def test_chain_source_archive_missing_a_report_fails_chain_seq(scenario: Scenario, tmp_path: Path) -> None:
    reports = [sr for sr in scenario.fake.reports if sr.report.seq != 5]
    v = verify_lease(_load(scenario, tmp_path, reports))
    assert v.failed() == {("chain.seq", 6)}


def test_chain_source_events_that_do_not_explain_the_state_commitment_are_refused(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that drops a log (here: the last checkpoint's record) cannot pass for the chain: the escrow's
    stateHash commits to the last ckpt and report hash, which the reader's events must reproduce."""
    events = scenario.client.ledger.events
    real = events.read

    def lossy(*args: Any, **kwargs: Any) -> list[Any]:
        return [e for e in real(*args, **kwargs) if not (e.name == "CheckpointSettled" and e.args["seq"] == 6)]

    monkeypatch.setattr(events, "read", lossy)
    with pytest.raises(AuditSourceError, match="do not explain the escrow's state commitment"):
        _load(scenario, tmp_path)


def test_chain_source_report_about_other_gpus_is_paid_on_chain_but_fails_report_gpu_set(tmp_path: Path) -> None:
    """The escrow no longer checks a report's GPU set (it is inside the signed WindowDetail): a report the
    attestor signed about GPUs the lease does not hold settles. The auditor compares it with the lease's
    on-chain gpuSetHash and names it."""
    foreign = gpu_set_hash(UUIDS[i] for i in (0, 3))  # the node's GPUs, but not the lease's (1 and 2)

    def other_gpus(seq: int, f: dict[str, Any]) -> dict[str, Any]:
        if seq == 4:
            f["gpuSetHash"] = foreign
        return f

    chain = connect("memory")
    try:
        sc = run_lease(chain, report_hook=other_gpus)  # all three checkpoints settle, report 4 among them
        assert sc.client.lease(sc.lease_id).gpu_set_hash != foreign
        v = verify_lease(_load(sc, tmp_path))
        assert v.failed() == {("report.gpu_set", 4)}
        assert foreign.hex()[:16] in v.failures[0].detail
    finally:
        chain.close()


def test_chain_source_rotated_attestor_gets_a_validity_period(scenario: Scenario) -> None:
    sc = scenario
    snap = sc.chain.snapshot()
    try:
        sc.client.rotate_attestor(sc.provider, sc.node_id, address_of(OTHER_KEY))
        rotated_at = sc.chain.now() * 1000
        periods = ChainLeaseReader(sc.client.ledger).attestors(sc.node_id)
        assert [(p.address, p.untilMs) for p in periods] == [
            (address_of(ATTESTOR_KEY), rotated_at),
            (address_of(OTHER_KEY), None),
        ]
        assert periods[1].fromMs == rotated_at
    finally:
        sc.chain.revert(snap)


@pytest.mark.anvil
def test_audit_cli_chain_source_over_json_rpc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        chain = connect("anvil", data_dir=tmp_path / "anvil")
    except LedgerError as e:  # the npm package is optional
        pytest.skip(f"anvil is not available: {e}")
    try:
        sc = run_lease(chain)
        deployment = tmp_path / "deployment.json"
        sc.client.deployment.save(deployment)
        archive = tmp_path / "archive.jsonl"
        write_archive(archive, sc.fake.reports)
        assert chain.rpc_url is not None
        argv = ["lease", str(sc.lease_id), "--rpc", chain.rpc_url, "--deployment", str(deployment)]
        argv += ["--period-ms", str(PERIOD_MS)]
        rc = main(argv + ["--archive", str(archive), "--quiet"])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert out.startswith(f"lease {sc.lease_id}: VERIFIED")
        write_archive(archive, [sr for sr in sc.fake.reports if sr.report.seq != 3])
        rc = main(argv + ["--archive", str(archive), "--quiet", "--json"])
        data = json.loads(capsys.readouterr().out)
        assert rc == 1
        assert [(r["check"], r["reportSeq"]) for r in data["leases"][0]["results"] if not r["ok"]] == [("chain.seq", 4)]
    finally:
        chain.close()


def test_chain_source_unknown_lease_raises_source_error(scenario: Scenario) -> None:
    with pytest.raises(AuditSourceError, match="lease 999"):
        ChainLeaseReader(scenario.client.ledger).lease(999)
