"""Gas per operation of the contract suite on the in-process chain (eth-tester / py-evm).

    .venv/bin/python bench/gas.py           # a table
    .venv/bin/python bench/gas.py --json    # one JSON object (keys below)

Figures are ``gasUsed`` of the transaction receipt, intrinsic 21,000 included; ``*_calldata`` rows show
the calldata share (16 gas per non-zero byte, 4 per zero byte) of the settlement figures. Settlement figures are
steady state: each lease already has one settled checkpoint, so its state slot is live (non-zero).

- settle_single: one checkpoint of one lease (``settle``), consecutive seq (hash-chain check on; the entry
  leaves out the last report hash, which equals the report's prevReportHash).
- settle_single_after_gap: one checkpoint of a lease whose seq jumps by 10 (as when settling at close
  after an hour): its entry carries the last settled hash too (32 more calldata bytes).
- settle_batch_50_per_checkpoint: ``settleBatch`` of 50 consecutive checkpoints of 50 distinct leases of 3
  providers (one node each), divided by 50.
- gas_per_window_hourly: a metered lease reporting one-minute windows, settled hourly inside such batches:
  the hourly checkpoint (seq jumps by 60, so the entry carries the last settled hash too) costs
  ``settle_batch_50_hourly_per_checkpoint``; / 60 windows.

The run asserts that each batch settled all 50 entries.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.chain import Chain, connect  # noqa: E402
from ledger.client import ETH, BillingMode, LedgerClient, LeaseInfo  # noqa: E402
from ledger.compiler import load_artifact  # noqa: E402
from ledger.deploy import deploy_suite  # noqa: E402
from ledger.protocol import (  # noqa: E402
    ZERO_HASH,
    MeteringReport,
    gpu_uuid_hash,
    report_digest,
    report_struct_hash,
    sign_digest,
)

TARGETS = {"settle_single": 40_000, "settle_batch_50_per_checkpoint": 15_000, "gas_per_window_hourly": 300}
PRICE = 10**9  # wei per GPU-second
GPUS_PER_NODE = 17
BATCH = 50


@dataclass
class LeaseState:
    info: LeaseInfo
    attestor_key: bytes
    seq: int = 0
    prev: bytes = ZERO_HASH
    end_ms: int = 0
    cum: int = 0
    cum_busy: int = 0
    cum_energy: int = 0


def _report(ls: LeaseState, seq: int, window_end_ms: int, busy_frac_bps: int = 9_000) -> MeteringReport:
    """Next report of a 1-GPU lease up to ``window_end_ms`` with allocation = the whole window."""
    start = ls.end_ms
    dt = window_end_ms - start
    gpus = ls.info.gpu_count
    alloc = dt * gpus
    busy = alloc * busy_frac_bps // 10_000
    energy = dt * gpus * 300  # 300 W average: mW × ms / 1000 = mJ
    return MeteringReport(
        leaseId=ls.info.lease_id,
        seq=seq,
        prevReportHash=ls.prev if seq == ls.seq + 1 else b"\x33" * 32,
        windowStartMs=start,
        windowEndMs=window_end_ms,
        gpuSetHash=ls.info.gpu_set_hash,
        busyMs=busy,
        energyMj=energy,
        allocatedMs=alloc,
        cumBusyMs=ls.cum_busy + busy,
        cumEnergyMj=ls.cum_energy + energy,
        cumAllocatedMs=ls.cum + alloc,
        maxMemUsedMiB=40_000,
        sampleCount=60 * gpus,
        samplesRoot=bytes.fromhex("ab" * 32),
        flags=0,
        configHash=bytes.fromhex("cd" * 32),
    )


def _advance(ls: LeaseState, r: MeteringReport) -> None:
    ls.seq = r.seq
    ls.prev = report_struct_hash(r)
    ls.end_ms = r.windowEndMs
    ls.cum = r.cumAllocatedMs
    ls.cum_busy = r.cumBusyMs
    ls.cum_energy = r.cumEnergyMj


def _calldata_gas(chain: Chain, tx_hash: bytes) -> int:
    data = bytes(chain.w3.eth.get_transaction(tx_hash)["input"])
    return sum(16 if b else 4 for b in data)


def run() -> dict[str, Any]:
    chain: Chain = connect("memory")
    acc = chain.accounts
    admin, buyer, relayer = acc[0], acc[7], acc[8]
    providers = acc[1:4]
    attestors = acc[4:7]
    dep = deploy_suite(chain, admin, challenge_period_s=3600)
    cl = LedgerClient(chain.w3, dep)
    out: dict[str, Any] = {}

    # providers, nodes, offers (one GPU each so 50 leases can run at once)
    now = chain.now()
    offers: list[int] = []
    for p_i, (prov, att) in enumerate(zip(providers, attestors)):
        r = cl.register_provider(prov, prov, f"ipfs://provider-{p_i}")
        out.setdefault("register_provider", r.gas_used)
        uuids = [gpu_uuid_hash(f"GPU-{p_i}-{g}") for g in range(GPUS_PER_NODE)]
        node = cl.register_node(prov, att, "NVIDIA H100 80GB HBM3", uuids, 81_559, 700_000, "eu-west1")
        out.setdefault(f"register_node_{GPUS_PER_NODE}_gpus", node.tx.gas_used)
        for g in range(GPUS_PER_NODE):
            if len(offers) >= BATCH + 2:
                break
            o = cl.publish_offer(prov, node.id, 1 << g, PRICE, ETH, BillingMode.METERED, now, now + 30 * 86400)
            out.setdefault("publish_offer", o.tx.gas_used)
            offers.append(o.id)

    # an ERC-20 lease for its own figure
    token_art = load_artifact("MockERC20")
    token = chain.w3.eth.contract(abi=token_art["abi"], bytecode=token_art["bytecode"])
    th = token.constructor("USD Coin", "USDC", 6).transact({"from": admin})
    token_addr = chain.w3.eth.wait_for_transaction_receipt(th)["contractAddress"]
    tok = chain.w3.eth.contract(address=token_addr, abi=token_art["abi"])
    chain.w3.eth.wait_for_transaction_receipt(tok.functions.mint(buyer, 10**15).transact({"from": admin}))
    uu = [gpu_uuid_hash("GPU-erc20-0")]
    n20 = cl.register_node(providers[0], attestors[0], "NVIDIA L4", uu, 23_034, 72_000, "us-east1")
    o20 = cl.publish_offer(providers[0], n20.id, 1, 1_000, token_addr, BillingMode.RESERVED, now, now + 86400)
    cl.erc20_approve(buyer, token_addr, dep.escrow, 10**15)
    l20 = cl.open_lease(buyer, o20.id, providers[0], 3600, now + 600, approve=False)
    out["open_lease_erc20"] = l20.tx.gas_used

    # 50 ETH leases, metered, 1 GPU, 10 days each
    keys = {a: chain.private_keys[a] for a in attestors}
    states: list[LeaseState] = []
    for i, oid in enumerate(offers[:BATCH]):
        prov = cl.offer(oid).provider
        lease = cl.open_lease(buyer, oid, prov, 10 * 86400, now + 600)
        if i == 0:
            out["open_lease_eth"] = lease.tx.gas_used
        act = cl.activate_lease(prov, lease.id)
        if i == 0:
            out["activate_lease"] = act.gas_used
        info = cl.lease(lease.id)
        att = attestors[providers.index(prov)]
        states.append(LeaseState(info=info, attestor_key=keys[att], end_ms=info.start_ms))

    def signed(ls: LeaseState, r: MeteringReport) -> bytes:
        return sign_digest(report_digest(r, chain.chain_id, dep.escrow), ls.attestor_key)

    # first checkpoint of every lease (slots become live): 60 one-minute windows after the start
    chain.increase_time(3600 + 5)
    t_ms = chain.now() * 1000
    first_reports, first_sigs = [], []
    for ls in states:
        r = _report(ls, 60, min(ls.info.start_ms + 3_600_000, t_ms))
        first_reports.append(r)
        first_sigs.append(signed(ls, r))
    res = cl.settle_batch(relayer, first_reports, first_sigs)
    assert len(res.named("CheckpointSettled")) == BATCH, res.named("CheckpointSkipped")
    out["settle_batch_50_first_checkpoint_per_checkpoint"] = res.gas_used // BATCH
    for ls, r in zip(states, first_reports):
        _advance(ls, r)

    # steady state, single consecutive checkpoint
    chain.increase_time(60)
    t_ms = chain.now() * 1000
    ls0 = states[0]
    r = _report(ls0, ls0.seq + 1, ls0.end_ms + 60_000)
    assert r.windowEndMs <= t_ms
    res = cl.settle(relayer, r, signed(ls0, r))
    out["settle_single"] = res.gas_used
    out["settle_single_calldata"] = _calldata_gas(chain, res.tx_hash)
    _advance(ls0, r)

    # single checkpoint after a gap (the hourly / at-close case): the entry also carries the last hash
    chain.increase_time(600)
    ls1 = states[1]
    r = _report(ls1, ls1.seq + 10, ls1.end_ms + 600_000)
    res = cl.settle(relayer, r, signed(ls1, r))
    out["settle_single_after_gap"] = res.gas_used
    _advance(ls1, r)

    # steady state batch of 50 consecutive checkpoints (distinct leases, 3 providers)
    chain.increase_time(60)
    reports, sigs = [], []
    for ls in states:
        r = _report(ls, ls.seq + 1, ls.end_ms + 60_000)
        reports.append(r)
        sigs.append(signed(ls, r))
    res = cl.settle_batch(relayer, reports, sigs)
    assert len(res.named("CheckpointSettled")) == BATCH, res.named("CheckpointSkipped")
    out["settle_batch_50_total"] = res.gas_used
    out["settle_batch_50_per_checkpoint"] = res.gas_used // BATCH
    out["settle_batch_50_calldata_per_checkpoint"] = _calldata_gas(chain, res.tx_hash) // BATCH
    for ls, r in zip(states, reports):
        _advance(ls, r)

    # hourly settlement of one-minute windows: seq jumps by 60 per checkpoint
    chain.increase_time(3600)
    reports, sigs = [], []
    for ls in states:
        r = _report(ls, ls.seq + 60, ls.end_ms + 3_600_000)
        reports.append(r)
        sigs.append(signed(ls, r))
    res = cl.settle_batch(relayer, reports, sigs)
    assert len(res.named("CheckpointSettled")) == BATCH, res.named("CheckpointSkipped")
    per_cp = res.gas_used // BATCH
    out["settle_batch_50_hourly_per_checkpoint"] = per_cp
    out["gas_per_window_hourly"] = per_cp // 60
    for ls, r in zip(states, reports):
        _advance(ls, r)

    # the rest of a lease's life on lease 1 and 2
    l1 = states[0].info
    out["top_up"] = cl.top_up(buyer, l1.lease_id, PRICE * l1.gpu_count * 600).gas_used
    out["dispute"] = cl.dispute(buyer, l1.lease_id).gas_used
    out["resolve_dispute"] = cl.resolve_dispute(admin, l1.lease_id, 5_000, False).gas_used
    out["close_lease"] = cl.close_lease(buyer, l1.lease_id).gas_used
    out["rate"] = cl.rate(buyer, l1.lease_id, 5).gas_used
    l2 = states[1].info
    cl.close_lease(buyer, l2.lease_id)
    chain.increase_time(3601)
    out["release_earnings"] = cl.release_earnings(relayer, l2.lease_id).gas_used
    out["withdraw"] = cl.withdraw(buyer, ETH).gas_used
    return out


ORDER = (
    "register_provider",
    f"register_node_{GPUS_PER_NODE}_gpus",
    "publish_offer",
    "open_lease_eth",
    "open_lease_erc20",
    "activate_lease",
    "settle_single",
    "settle_single_calldata",
    "settle_single_after_gap",
    "settle_batch_50_first_checkpoint_per_checkpoint",
    "settle_batch_50_total",
    "settle_batch_50_per_checkpoint",
    "settle_batch_50_calldata_per_checkpoint",
    "settle_batch_50_hourly_per_checkpoint",
    "gas_per_window_hourly",
    "top_up",
    "close_lease",
    "withdraw",
    "dispute",
    "resolve_dispute",
    "release_earnings",
    "rate",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    figures = run()
    if args.json:
        print(json.dumps(figures, sort_keys=True))
        return 0
    width = max(len(k) for k in ORDER)
    print(f"{'operation':<{width}}  {'gas':>10}  target")
    for k in ORDER:
        target = TARGETS.get(k)
        mark = "" if target is None else f"<= {target:,} {'ok' if figures[k] <= target else 'MISSED'}"
        print(f"{k:<{width}}  {figures[k]:>10,}  {mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
