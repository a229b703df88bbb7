"""The chain source: terms, attestor keys and money read from the real contracts (memory chain), reports from
an archive. A lease is opened, metered by the fake GPU, settled at three checkpoints and closed; the auditor
then verifies it without any bridge."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from ledger.audit import AuditInput, verify_lease
from ledger.audit_cli import main
from ledger.base import LedgerError
from ledger.audit_sources import ArchiveSource, AuditSourceError, ChainLeaseReader, ChainSource, write_archive
from ledger.chain import Chain, connect
from ledger.client import ETH, BillingMode, LedgerClient
from ledger.deploy import deploy_suite
from ledger.protocol import address_of, gpu_uuid_hash
from tests.audit.fakegpu import ATTESTOR_KEY, MAX_MW, OTHER_KEY, FakeLease, make_lease

PRICE = 10**9
UUIDS = tuple(gpu_uuid_hash(f"GPU-chain-{i:02d}") for i in range(4))


@dataclasses.dataclass
class Scenario:
    chain: Chain
    client: LedgerClient
    lease_id: int
    node_id: int
    fake: FakeLease
    provider: str


def run_lease(chain: Chain) -> Scenario:
    """Deploy, register, open a 90 s lease on GPUs 1 and 2, meter 60 s, settle 3 checkpoints, close."""
    dep = deploy_suite(chain, admin=chain.accounts[0])
    cl = LedgerClient(chain.w3, dep, keys=chain.private_keys)
    provider, buyer, relayer = chain.accounts[1:4]
    cl.register_provider(provider, payout=provider, metadata_uri="ipfs://provider")
    node_id = cl.register_node(provider, address_of(ATTESTOR_KEY), "H100", UUIDS, 81_559, MAX_MW, "eu-west").id
    t0 = chain.now()
    offer_id = cl.publish_offer(provider, node_id, 0b0110, PRICE, ETH, BillingMode.RESERVED, t0, t0 + 86_400).id
    lease_id = cl.open_lease(buyer, offer_id, holder=provider, duration_s=90, start_by=t0 + 600).id
    cl.activate_lease(provider, lease_id)
    info = cl.lease(lease_id)
    fake = make_lease(
        6,
        gpus=(1, 2),
        lease_id=lease_id,
        start_ms=info.start_ms,
        chain_id=chain.chain_id,
        escrow_address=dep.escrow,
        gpu_uuid_hashes=UUIDS,
        duration_s=90,
        settle_at=(),
    )
    chain.time_travel(info.start_ms // 1000 + 61)  # every window has ended: none is in the future
    for seq in (2, 4, 6):
        sr = fake.reports[seq - 1]
        cl.settle(relayer, sr.report, sr.signature)
    cl.close_lease(buyer, lease_id)
    return Scenario(chain, cl, lease_id, node_id, fake, provider)


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    chain = connect("memory")
    try:
        yield run_lease(chain)
    finally:
        chain.close()


def _load(sc: Scenario, tmp_path: Path, reports: Any = None) -> AuditInput:
    archive = tmp_path / "archive.jsonl"
    write_archive(archive, sc.fake.reports if reports is None else reports)
    return ChainSource(ChainLeaseReader(sc.client), ArchiveSource(archive)).load(sc.lease_id)


def test_chain_source_reads_terms_checkpoints_and_money(scenario: Scenario, tmp_path: Path) -> None:
    inp = _load(scenario, tmp_path)
    t = inp.terms
    assert t.leaseId == scenario.lease_id and t.gpuIndices == (1, 2) and t.gpuCount == 2
    assert t.gpuSetHash == scenario.fake.input.terms.gpuSetHash
    assert [a.address for a in t.attestors] == [address_of(ATTESTOR_KEY)]
    assert [s.seq for s in inp.settlements] == [2, 4, 6]
    assert inp.settlements[0].billableDelta == scenario.fake.reports[1].report.cumAllocatedMs
    assert inp.money is not None and inp.money.closed
    assert inp.money.escrow == PRICE * 2 * 90
    assert inp.money.closedCharged == sum(s.charged for s in inp.settlements) == PRICE * 2 * 60
    assert inp.money.refund == PRICE * 2 * 30


def test_chain_source_audit_of_settled_and_closed_lease_passes(scenario: Scenario, tmp_path: Path) -> None:
    v = verify_lease(_load(scenario, tmp_path))
    assert v.ok, v.failures
    by = {r.check: r for r in v.results}
    assert by["settlement.charge"].detail == "3 checkpoints verified"
    assert by["money.conservation"].status == "PASS"


def test_chain_source_archive_missing_a_report_fails_chain_seq(scenario: Scenario, tmp_path: Path) -> None:
    reports = [sr for sr in scenario.fake.reports if sr.report.seq != 5]
    v = verify_lease(_load(scenario, tmp_path, reports))
    assert v.failed() == {("chain.seq", 6)}


def test_chain_source_rotated_attestor_gets_a_validity_period(scenario: Scenario) -> None:
    sc = scenario
    snap = sc.chain.snapshot()
    try:
        sc.client.rotate_attestor(sc.provider, sc.node_id, address_of(OTHER_KEY))
        rotated_at = sc.chain.now() * 1000
        periods = ChainLeaseReader(sc.client).attestors(sc.node_id)
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
        ChainLeaseReader(scenario.client).lease(999)
