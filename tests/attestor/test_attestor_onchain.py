"""Integration: reports the attestor signs are accepted on-chain by LeaseEscrow.settle (memory chain)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from attestor.bridge import LeaseInfo, StaticLeases, SubmitOutcome
from attestor.daemon import Attestor
from attestor.keys import Signer
from attestor.meter import ReportBuilder, SamplingPolicy
from attestor.source import SimulatedSource
from attestor.spool import Spool, SpooledReport
from ledger.protocol import MeteringReport, ReportFlag, Sample, gpu_uuid_hash, report_struct_hash

import auditor.core as audit
import ledger.chain.backends as chain_mod
import tests.support.ledger_client as client_mod
import ledger.chain.deploy as deploy_mod

ETH = "0x0000000000000000000000000000000000000000"


class ChainClock:
    """Wall time that starts at a chosen ms and advances only when the loop waits."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def wall_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.ms += max(1, round(seconds * 1000))
        return event.is_set()


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
        src = SimulatedSource.from_spec("4xH100", seed=11, profile="steady")
        signer = Signer(b"\x2a" * 32)

        client.register_provider(provider, provider, "ipfs://provider")
        node_id = client.register_node(
            provider,
            signer.address,
            b"H100".ljust(32, b"\x00"),
            [gpu_uuid_hash(u) for u in src.uuids],
            src.model.vram_mib,
            src.model.limit_mw,
            b"eu-west\x00",
        ).id
        now_s = chain.w3.eth.get_block("latest")["timestamp"]
        offer_id = client.publish_offer(
            provider, node_id, 0b0110, 10**9, ETH, client_mod.BillingMode.RESERVED, now_s, now_s + 86_400
        ).id
        lease_id = client.open_lease(buyer, offer_id, provider, 3_600, now_s + 600).id
        client.activate_lease(provider, lease_id)
        lease = client.lease(lease_id)

        clock = ChainClock(lease.start_ms + 300)
        rx = Collect()
        builder = ReportBuilder(
            signer,
            chain.chain_id,
            dep.escrow,
            SamplingPolicy(1_000, 10_000),
            driver_version="simulated",
            nvml_version="simulated",
            simulated=True,
        )
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
        clock.ms += 1_000
        assert attestor.run(threading.Event(), once=True) == 0
        reports = [MeteringReport.from_json(i.report) for i in rx.items]
        assert [r.seq for r in reports] == [1, 2]
        assert not any(r.flags & (ReportFlag.SAMPLE_GAP | ReportFlag.CLOCK_ADJUSTED) for r in reports)
        chain.time_travel(reports[-1].windowEndMs // 1000 + 2)

        for k, (r, item) in enumerate(zip(reports, rx.items)):
            res = client.settle(admin, r, bytes.fromhex(item.signature[2:]))
            ev = res.event("CheckpointSettled").args
            # the record: the report's hash (which binds its samples root) and the lease's new ckpt, whose
            # fields are the report's counters and window end, settled at this block
            assert (ev["leaseId"], ev["seq"]) == (lease_id, r.seq)
            assert bytes(ev["reportHash"]) == report_struct_hash(r)
            assert (ev["cumBusyMs"], ev["cumAllocatedMs"], ev["cumEnergyMj"], ev["windowEndMs"]) == (
                r.cumBusyMs,
                r.cumAllocatedMs,
                r.cumEnergyMj,
                r.windowEndMs,
            )
            assert ev["settledAt"] == chain.w3.eth.get_block(res.block_number)["timestamp"]
            last_billable = reports[k - 1].cumAllocatedMs if k else 0  # reserved: allocated time is billed
            assert ev["charged"] == 10**9 * r.cumAllocatedMs // 1_000 - 10**9 * last_billable // 1_000
            state = client.lease_state(lease_id)
            assert (state.ckpt, state.last_hash) == (ev["ckpt"], report_struct_hash(r))
        cp = client.checkpoint(lease_id)
        assert cp.last_seq == 2 and cp.last_report_hash == report_struct_hash(reports[1])
        assert cp.cum_allocated_ms == reports[1].cumAllocatedMs and cp.cum_busy_ms == reports[1].cumBusyMs
        assert cp.charged == 10**9 * reports[1].cumAllocatedMs // 1_000

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
            pricePerGpuSecond=10**9,
            billingMode=audit.BillingMode.RESERVED,
            maxPowerMwPerGpu=src.model.limit_mw,
            samplePeriodMs=1_000,
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
        assert verdict.reports == 2 and verdict.settlements == 2 and verdict.samples == 2 * 2 * 11
    finally:
        chain.close()
