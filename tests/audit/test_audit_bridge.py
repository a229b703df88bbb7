"""End to end against the real bridge (api.create_app on the memory chain): a provider, a buyer and an
attestor go through the HTTP API, the relayer settles, the buyer closes; the auditor then reads everything
back through api/AUDIT_API.md and verifies it, in full and by spot checks, and from the bridge's archive plus
the chain."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

import api.app  # noqa: F401  (an import error here must fail the suite, not skip it)

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx transport; not ours to fix
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from api.app import create_app  # noqa: E402
from api.store.models import Report, SampleSet  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from api.settings import Settings  # noqa: E402
from auditor.core import verify_lease  # noqa: E402
from auditor.sources import ApiSource, ArchiveSource, AuditSourceError, ChainLeaseReader, ChainSource  # noqa: E402
from ledger.chain.backends import connect  # noqa: E402
from tests.support.ledger_client import LedgerClient  # noqa: E402
from ledger.chain.deploy import deploy_suite  # noqa: E402
from ledger.protocol import gpu_uuid_hash  # noqa: E402
from ledger.chain.signing import address_of
from tests.audit.fakegpu import ATTESTOR_KEY, FakeLease, make_lease  # noqa: E402

UUIDS = ["GPU-audit-0001", "GPU-audit-0002"]
PRICE = 10**9
HOUR = 3600


def _ok(resp: Any, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    return resp.json()


def _account(client: TestClient, role: str) -> tuple[str, dict[str, str]]:
    body = _ok(client.post("/v1/accounts", json={"roles": [role]}), 201)
    _ok(client.post("/v1/faucet", json={"address": body["address"], "amountWei": 10**20}))
    return body["address"], {"Authorization": f"Bearer {body['apiKey']}"}


@pytest.fixture(scope="module")
def bridge_lease(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, int, FakeLease, Any]]:
    chain = connect("memory")
    dep = deploy_suite(chain, chain.accounts[0])
    settings = Settings(
        chain_backend="memory",
        data_dir=tmp_path_factory.mktemp("bridge"),
        background=False,
        settle_every_s=300.0,
        settle_threshold_wei=10**30,
    )
    app = create_app(settings, chain=chain, deployment=dep)
    with TestClient(app) as client:
        _, prov = _account(client, "provider")
        _ok(client.post("/v1/providers", json={"metadataURI": "https://example.invalid/p"}, headers=prov))
        node = _ok(
            client.post(
                "/v1/nodes",
                json={
                    "attestor": address_of(ATTESTOR_KEY),
                    "gpuModel": "NVIDIA H100",
                    "gpuUuids": UUIDS,
                    "vramMiB": 81_559,
                    "maxPowerMwPerGpu": 700_000,
                    "region": "eu-west",
                },
                headers=prov,
            )
        )
        node_id = node["result"]["nodeId"]
        now = chain.now()
        offer = _ok(
            client.post(
                "/v1/offers",
                json={
                    "nodeId": node_id,
                    "gpuIndices": [0, 1],
                    "pricePerGpuSecondWei": PRICE,
                    "validFrom": now,
                    "validUntil": now + 86_400,
                },
                headers=prov,
            )
        )
        _, buyer = _account(client, "buyer")
        body = {"offerId": offer["result"]["offerId"], "durationS": HOUR}
        lease = _ok(client.post("/v1/leases", json=body, headers=buyer))
        lease_id = int(lease["result"]["leaseId"])
        _ok(client.post(f"/v1/leases/{lease_id}/activate", headers=prov))
        doc = _ok(client.get(f"/v1/leases/{lease_id}"))
        fake = make_lease(
            6,
            gpus=tuple(doc["gpuIndices"]),
            lease_id=lease_id,
            start_ms=doc["startMs"],
            chain_id=doc["chainId"],
            escrow_address=doc["escrow"],
            gpu_uuid_hashes=tuple(gpu_uuid_hash(u) for u in UUIDS),
            duration_s=HOUR,
            settle_at=(),
        )
        chain.time_travel(doc["startMs"] // 1000 + 120)
        svc = app.state.bridge
        for i, sr in enumerate(fake.reports):
            assert sr.samples is not None
            body = {
                "nodeId": node_id,
                "report": sr.report.to_json(),
                "signature": "0x" + sr.signature.hex(),
                "samples": [s.to_list() for s in sr.samples],
            }
            _ok(client.post("/v1/metering/reports", json=body), 201)
            if i == 2:
                assert svc.relayer.flush() == 1  # a checkpoint at seq 3
        _ok(client.post(f"/v1/leases/{lease_id}/close", headers=buyer))  # settles seq 6 first, then closes
        yield client, lease_id, fake, (chain, LedgerClient(chain, dep))
    chain.close()


def test_bridge_audit_of_real_bridge_lease_passes(bridge_lease: Any) -> None:
    client, lease_id, fake, (_, ledger_client) = bridge_lease
    inp = ApiSource(client=client, chain=ledger_client.ledger).load(lease_id)
    assert [sr.report.seq for sr in inp.reports] == [1, 2, 3, 4, 5, 6]
    assert [s.seq for s in inp.settlements] == [3, 6]
    assert inp.reports == fake.input.reports
    v = verify_lease(inp)
    assert v.ok, v.failures
    by = {r.check: r for r in v.results}
    assert by["settlement.charge"].detail == "2 checkpoints verified"
    assert by["money.conservation"].status == "PASS"
    assert inp.money is not None and inp.money.closed
    # the bridge's copy of the chain's data is the chain's, and its GET /v1/chain names this chain
    assert by["bridge.consistency"].status == "PASS" and by["bridge.chain"].status == "PASS"
    assert by["window.future"].status == "PASS" and by["lease.state"].detail == "Closed"


def test_bridge_audit_without_a_chain_says_it_could_not_audit(bridge_lease: Any) -> None:
    """The memory backend publishes no RPC URL: without one (or the chain in process) there is no audit."""
    client, lease_id, _, _ = bridge_lease
    with pytest.raises(AuditSourceError, match=r"the bridge publishes no RPC URL for chain \d+ \(the chain runs inside"):
        ApiSource(client=client).load(lease_id)


def test_bridge_audit_spot_check_uses_the_bridges_proofs(bridge_lease: Any) -> None:
    client, lease_id, _, (_, ledger_client) = bridge_lease
    inp = ApiSource(client=client, chain=ledger_client.ledger).load(lease_id, spot_check_k=5)
    assert all(sr.samples is None and len(sr.proofs) == 5 for sr in inp.reports)
    v = verify_lease(inp, spot_check_k=5)
    assert v.ok, v.failures
    assert {r.check: r.status for r in v.results}["bridge.proofs"] == "PASS"  # served roots are the signed ones


def test_bridge_audit_lists_the_lease(bridge_lease: Any) -> None:
    client, lease_id, _, (_, ledger_client) = bridge_lease
    src = ApiSource(client=client, page_size=1, chain=ledger_client.ledger)
    assert src.listed_lease_ids() == [lease_id] == src.lease_ids()  # the bridge's list and the chain's


def test_bridge_archive_plus_chain_agrees_with_the_api(bridge_lease: Any, tmp_path: Path) -> None:
    client, lease_id, _, (_, ledger_client) = bridge_lease
    resp = client.get("/v1/audit/archive", params={"leaseId": lease_id})
    assert resp.status_code == 200
    archive = tmp_path / "archive.jsonl"
    archive.write_bytes(resp.content)
    chain_inp = ChainSource(ChainLeaseReader(ledger_client.ledger), ArchiveSource(archive)).load(lease_id)
    api_inp = ApiSource(client=client, chain=ledger_client.ledger).load(lease_id)
    assert chain_inp.reports == api_inp.reports
    assert chain_inp.settlements == api_inp.settlements
    assert chain_inp.terms.attestors == api_inp.terms.attestors
    v = verify_lease(chain_inp)
    assert v.ok, v.failures


def test_audit_passes_after_retention_moved_the_samples_to_the_archive(bridge_lease: Any) -> None:
    """Storage with a budget (issue 13): once the challenge period has passed after a lease's settlements, the
    retention worker moves its samples out of the live store into an archive segment; the bridge still serves
    them (reports, proofs, the archive download) and the audit, from the API or from the segment plus the
    chain, still passes. Kept last in the module: the lease's samples are archived from here on."""
    client, lease_id, fake, (chain, ledger_client) = bridge_lease
    svc = client.app.state.bridge  # type: ignore[attr-defined]
    before = ApiSource(client=client, chain=ledger_client.ledger).load(lease_id)

    def live_sets() -> int:
        with svc.store.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(SampleSet)) or 0)

    assert live_sets() == 6
    assert svc.retention.run_once() == 0  # the challenge period has not passed
    period = ledger_client.ledger.read.challenge_period()
    chain.time_travel(chain.now() + period + 1)
    assert svc.retention.run_once() == 6 and live_sets() == 0
    assert svc.retention.run_once() == 0  # nothing twice
    with svc.store.db.session() as s:
        segments = set(s.scalars(select(Report.archive).where(Report.lease_id == lease_id)))
        kept = [r.body != "" for r in s.scalars(select(Report).where(Report.lease_id == lease_id).order_by(Report.seq))]
    assert kept == [False] * 5 + [True]  # the segment holds them; the latest stays whole for the next link
    assert segments == {f"lease-{lease_id}/000000000001-000000000006.jsonl.gz"}
    assert svc.store.archive is not None and (svc.store.archive.root / segments.pop()).is_file()

    after = ApiSource(client=client, chain=ledger_client.ledger).load(lease_id)
    assert after.reports == before.reports == fake.input.reports
    v = verify_lease(after)
    assert v.ok, v.failures
    spot = ApiSource(client=client, chain=ledger_client.ledger).load(lease_id, spot_check_k=5)
    assert verify_lease(spot, spot_check_k=5).ok
    # the archive directory, copied anywhere, is what an auditor needs besides the chain
    from_files = ChainSource(ChainLeaseReader(ledger_client.ledger), ArchiveSource(svc.store.archive.root)).load(lease_id)
    assert from_files.reports == before.reports
    assert verify_lease(from_files).ok
    download = client.get("/v1/audit/archive", params={"leaseId": lease_id})
    assert download.status_code == 200 and len(download.content.splitlines()) == 6
