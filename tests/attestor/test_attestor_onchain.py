"""Integration: reports the attestor signs (its daemon, over the simulated driver) settle on-chain through
LeaseEscrow.settle, an SM-active lease is charged for SM-active time, and the auditor finds nothing wrong."""

from __future__ import annotations

import threading
from pathlib import Path

from attestor.bridge import LeaseInfo, StaticLeases, SubmitOutcome
from attestor.daemon import Attestor
from attestor.keys import Signer
from attestor.meter import ReportBuilder, SamplingPolicy
from attestor.simdriver import ManualClock, simulated_source
from attestor.source import GPU_MODELS
from attestor.spool import Spool, SpooledReport
from ledger.protocol import MeteringReport, ReportFlag, Sample, gpu_uuid_hash, report_struct_hash
from ledger.protocol.economics import NodeFeature

import auditor.core as audit
import ledger.chain.backends as chain_mod
import ledger.chain.deploy as deploy_mod
import tests.support.ledger_client as client_mod

ETH = "0x0000000000000000000000000000000000000000"
PRICE = 10**9


class Collect:
    def __init__(self) -> None:
        self.items: list[SpooledReport] = []

    def submit(self, node_id: int, item: SpooledReport) -> SubmitOutcome:
        self.items.append(item)
        return SubmitOutcome(True, 201)


def test_attestor_reports_settle_on_chain(tmp_path: Path) -> None:
    chain = chain_mod.connect("memory")
    try:
        admin, provider, buyer = chain.accounts[0], chain.accounts[1], chain.accounts[2]
        dep = deploy_mod.deploy_suite(chain, admin=admin, challenge_period_s=60)
        client = client_mod.LedgerClient(chain, dep)
        model = GPU_MODELS["H100"]
        clock = ManualClock(chain.now() * 1_000_000)
        src = simulated_source("4xH100", seed=11, profile="bursty", clock_us=clock)
        signer = Signer(b"\x2a" * 32)

        client.register_provider(provider, provider, "ipfs://provider")
        node_id = client.register_node(
            provider, signer.address, b"H100".ljust(32, b"\x00"), [gpu_uuid_hash(u) for u in src.uuids],
            model.vram_mib, model.limit_mw, b"eu-west\x00", features=NodeFeature.GPM,
        ).id  # fmt: skip
        now_s = chain.now()
        offer_id = client.publish_offer(
            provider, node_id, 0b0110, PRICE, ETH, client_mod.BillingMode.SM_ACTIVE, now_s, now_s + 86_400
        ).id
        lease_id = client.open_lease(buyer, offer_id, provider, 3_600, now_s + 600).id
        client.activate_lease(provider, lease_id)
        lease = client.lease(lease_id)

        clock.set_us(max(clock(), lease.start_ms * 1000 + 300_000))
        rx = Collect()
        builder = ReportBuilder(
            signer, chain.chain_id, dep.escrow, SamplingPolicy(5_000, 20_000),
            driver_version=src.driver_version, nvml_version=src.nvml_version, simulated=True,
        )  # fmt: skip
        attestor = Attestor(
            node_id=node_id,
            source=src,
            builder=builder,
            spool=Spool(tmp_path / "spool.sqlite"),
            leases=StaticLeases(
                [LeaseInfo(lease_id, (1, 2), lease.start_ms, lease.end_ms, "Active", lease.gpu_set_hash)]
            ),
            sink_factory=lambda: rx,
            clock=clock,
        )
        assert attestor.run(threading.Event(), once=True) == 0
        assert attestor.run(threading.Event(), once=True) == 0
        reports = [MeteringReport.from_json(i.report) for i in rx.items]
        assert [r.seq for r in reports] == [1, 2]
        assert not any(r.flags & (ReportFlag.SAMPLE_GAP | ReportFlag.CLOCK_ADJUSTED) for r in reports)
        assert all(r.flags & ReportFlag.SIMULATED for r in reports)
        chain.time_travel(reports[-1].windowEndMs // 1000 + 2)

        for k, (r, item) in enumerate(zip(reports, rx.items)):
            res = client.settle(admin, r, bytes.fromhex(item.signature[2:]))
            ev = res.event("CheckpointSettled").args
            # the record: the report's hash (which binds its samples root) and the lease's new ckpt, whose
            # fields are the report's cumulative counters, settled at this block
            assert (ev["leaseId"], ev["seq"]) == (lease_id, r.seq)
            assert bytes(ev["reportHash"]) == report_struct_hash(r)
            assert (ev["cumBusyMs"], ev["cumAllocatedMs"], ev["cumEnergyMj"], ev["cumSmActiveMs"]) == (
                r.cumBusyMs, r.cumAllocatedMs, r.cumEnergyMj, r.cumSmActiveMs,
            )  # fmt: skip
            assert ev["settledAt"] == chain.w3.eth.get_block(res.block_number)["timestamp"]
            last = reports[k - 1].cumSmActiveMs if k else 0  # SM-active: SM-active time is billed
            assert ev["charged"] == PRICE * r.cumSmActiveMs // 1_000 - PRICE * last // 1_000
            state = client.lease_state(lease_id)
            assert (state.ckpt, state.last_hash) == (ev["ckpt"], report_struct_hash(r))
        cp = client.checkpoint(lease_id)
        assert cp.last_seq == 2 and cp.last_report_hash == report_struct_hash(reports[1])
        assert cp.cum_sm_active_ms == reports[1].cumSmActiveMs < reports[1].cumBusyMs <= reports[1].cumAllocatedMs
        assert cp.charged == PRICE * reports[1].cumSmActiveMs // 1_000

        # The independent auditor, given the same public data, finds nothing wrong (rules and physics).
        settled = [
            audit.Settlement.of_ckpt(
                int(e.args["ckpt"]),
                bytes(e.args["reportHash"]),
                int(e.args["charged"]),
                order=(e.block_number, e.log_index, int(e.args["recordIndex"])),
                txHash=e.tx_hash,
            )
            for e in client.events("CheckpointSettled")
        ]
        assert [st.seq for st in settled] == [1, 2]
        terms = audit.LeaseTerms(
            leaseId=lease_id,
            chainId=chain.chain_id,
            escrow=dep.escrow,
            attestors=(audit.AttestorPeriod(signer.address),),
            gpuSetHash=lease.gpu_set_hash,
            gpuCount=2,
            startMs=lease.start_ms,
            endMs=lease.end_ms,
            pricePerGpuSecond=PRICE,
            billingMode=audit.BillingMode.SM_ACTIVE,
            maxPowerMwPerGpu=model.limit_mw,
            samplePeriodMs=5_000,
            gpuIndices=(1, 2),
        )
        signed = tuple(
            audit.SignedReport(
                MeteringReport.from_json(i.report),
                bytes.fromhex(i.signature[2:]),
                tuple(Sample.from_values(v) for v in i.samples),
            )
            for i in rx.items
        )
        verdict = audit.verify_lease(audit.AuditInput(terms, signed, tuple(settled)))
        assert verdict.ok, [(r.check, r.report_seq, r.detail) for r in verdict.failures]
        assert verdict.reports == 2 and verdict.settlements == 2
    finally:
        chain.close()
