"""The market's figures recomputed from a chain node alone (anvil started by the test): the voucher
redemption report of ``compute-ledger vouchers report --rpc-url`` and the price index of ``compute-ledger
price-index --rpc-url`` equal the ones folded from the client's own reading of the same events, and the index
is what the leases paid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from compute_ledger import price_index_cli, vouchers_cli
from ledger.chain.backends import ANVIL_BIN, connect
from ledger.chain.deploy import deploy_suite
from ledger.protocol import gpu_uuid_hash
from ledger.protocol.price_index import IndexEvent, price_index
from ledger.protocol.vouchers import Evt, redemption_report
from tests.contracts.conftest import Meter
from tests.support.ledger_client import ETH, BillingMode, LedgerClient, NodeFeature

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.skipif(not ANVIL_BIN.exists(), reason="anvil binary not installed (npm ci in contracts/)"),
]
PRICE = 10**9


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An anvil chain with a voucher programme and two leases (one voucher-paid, one escrow-paid), metered,
    settled and closed; the deployment record written to a file."""
    chain = connect("anvil")
    try:
        a = chain.accounts
        admin, provider, attestor, buyer, relayer = a[:5]
        dep = deploy_suite(chain, admin, challenge_period_s=60)
        path = tmp_path_factory.mktemp("market") / "deployment.json"
        dep.save(path)
        cl = LedgerClient(chain, dep)
        cl.register_provider(provider, provider, "ipfs://p")
        gpus = [gpu_uuid_hash(f"GPU-anvil-{i}") for i in range(2)]
        node = cl.register_node(provider, attestor, "NVIDIA H100", gpus, 81_559, 700_000, "eu-west1",
                                features=NodeFeature.GPM).id
        t0 = chain.now()
        offers = [cl.publish_offer(provider, node, 1 << g, PRICE, ETH, BillingMode.RESERVED, t0, t0 + 86_400).id
                  for g in range(2)]
        pid = cl.create_programme(admin, ETH, ["NVIDIA H100"]).id
        cl.fund_programme(admin, pid, 10**17)
        vid = cl.grant_voucher(admin, pid, buyer, 10**16, t0 + 7 * 86_400, 2_500).id
        leases = [
            cl.voucher_open_lease(buyer, vid, offers[0], provider, 7200, t0 + 600).id,
            cl.open_lease(buyer, offers[1], provider, 7200, t0 + 600).id,
        ]
        signer = SimpleNamespace(chain=chain, dep=dep)
        meters = []
        for lid in leases:
            cl.activate_lease(provider, lid)
            info = cl.lease(lid)
            meters.append(Meter(world=signer, lease=info, key=chain.private_keys[attestor], end_ms=info.start_ms))  # type: ignore[arg-type]
        for _ in range(2):  # two half-hour windows each: 1 GPU-hour per lease
            chain.time_travel(max(m.end_ms for m in meters) // 1000 + 1_801)
            for m in meters:
                r, s = m.next(1_800_000)
                cl.settle(relayer, r, s)
        cl.voucher_close_lease(buyer, leases[0])
        cl.close_lease(buyer, leases[1])
        chain.increase_time(61)
        for lid in leases:
            cl.release_earnings(relayer, lid)
        cl.reconcile(relayer, leases[0])
        yield {"chain": chain, "dep": dep, "path": path, "cl": cl, "pid": pid, "leases": leases}
    finally:
        chain.close()


def test_voucher_report_from_the_chain_alone(market: dict[str, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    chain, cl, pid = market["chain"], market["cl"], market["pid"]
    out = tmp_path / "report.json"
    rc = vouchers_cli.main(["report", str(pid), "--rpc-url", str(chain.rpc_url), "--deployment", str(market["path"]),
                            "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    evs = [Evt(e.name, e.args, e.block_number, e.tx_hash, e.log_index, e.record_index) for e in cl.events()]
    assert doc == redemption_report(pid, evs).to_json()
    (row,) = doc["leases"]
    assert row["leaseId"] == market["leases"][0] and row["status"] == "closed-out"
    assert row["usage"]["checkpoints"] == 2 and int(row["charged"]) == PRICE * 3600
    rc = vouchers_cli.main(["report", str(pid), "--rpc-url", str(chain.rpc_url), "--deployment", str(market["path"]),
                            "--format", "csv"])
    assert rc == 0 and capsys.readouterr().out.splitlines()[1].startswith(f"{pid},{row['leaseId']},")
    assert vouchers_cli.main(["report", "99", "--rpc-url", str(chain.rpc_url), "--deployment", str(market["path"])]) == 1


def test_price_index_from_the_chain_alone(market: dict[str, Any], tmp_path: Path) -> None:
    chain, cl = market["chain"], market["cl"]
    src = ["--rpc-url", str(chain.rpc_url), "--deployment", str(market["path"])]
    out = tmp_path / "index.json"
    assert price_index_cli.main([*src, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    evs = [IndexEvent(e.name, e.args, e.order) for e in cl.events()]
    assert doc == [c.to_json() for c in price_index(evs)]
    (cell,) = doc
    # two leases, 1 GPU-hour each, both paid PRICE per GPU-second (one of them by a voucher)
    assert (cell["gpuModel"], cell["region"], cell["leases"]) == ("NVIDIA H100", "eu-west1", 2)
    assert cell["pricePerGpuHour"] == str(PRICE * 3600) and cell["billableGpuMs"] == 2 * 3_600_000
    assert price_index_cli.main([*src, "--band", "NVIDIA H100", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["low"] == str(PRICE * 3600)
    assert price_index_cli.main([*src, "--band", "NVIDIA L4"]) == 1


def test_dynamic_price_on_anvil(market: dict[str, Any]) -> None:
    """deploy_suite deploys the DynamicPricer on anvil too (recorded in the deployment file); a lease opened from
    it pays the rule's price, and a reprice after it stays in the band."""
    chain, cl, dep = market["chain"], market["cl"], market["dep"]
    pricer = dep.dynamic_pricer
    assert pricer is not None and json.loads(market["path"].read_text())["addresses"]["DynamicPricer"] == pricer
    provider, attestor, buyer, relayer = chain.accounts[1], chain.accounts[2], chain.accounts[3], chain.accounts[4]
    node = cl.register_node(provider, attestor, "NVIDIA H100", [gpu_uuid_hash("GPU-anvil-dyn")], 81_559, 700_000,
                            "eu-west1").id
    t = chain.now()
    oid = cl.publish_offer(provider, node, 1, PRICE, ETH, BillingMode.RESERVED, t, t + 86_400).id
    cl.set_dynamic_rule(provider, oid, PRICE, 2 * PRICE)
    cl.transfer_rights(provider, pricer, oid, cl.rights_balance(provider, oid))
    lid = cl.open_lease(buyer, oid, pricer, 3600, chain.now() + 600).id
    assert cl.lease(lid).price_per_gpu_second == PRICE
    price = cl.reprice(relayer, oid).event("Repriced").args["price"]
    assert price == PRICE + PRICE * 3600 // 86_400 and cl.ask_of(oid, pricer) == price
