"""Gas per operation of the contract suite on the in-process chain (eth-tester / py-evm).

    .venv/bin/python bench/gas.py           # a table
    .venv/bin/python bench/gas.py --json    # one JSON object (keys below)

Figures are ``gasUsed`` of the transaction receipt, intrinsic 21,000 included; ``*_calldata`` rows show
the calldata share (16 gas per non-zero byte, 4 per zero byte) of the settlement figures. Settlement figures are
steady state: each lease already has one settled checkpoint, so its state slot is live (non-zero).

- settle_single: one checkpoint of one lease (``settle``), consecutive seq (hash-chain check on; the entry
  leaves out the last report hash, which equals the report's prevReportHash).
- settle_single_sm_active: the same for a lease billing SM-active time (billing mode 2, a GPM node).
- settle_single_after_gap: one checkpoint of a lease whose seq jumps by 10 (as when settling at close
  after an hour): its entry carries the last settled hash too (32 more calldata bytes).
- settle_batch_50_per_checkpoint: ``settleBatch`` of 50 consecutive checkpoints of 50 distinct leases of 3
  providers (one node each), divided by 50.
- gas_per_window_hourly: a metered lease reporting one-minute windows, settled hourly inside such batches:
  the hourly checkpoint (seq jumps by 60, so the entry carries the last settled hash too) costs
  ``settle_batch_50_hourly_per_checkpoint``; / 60 windows.
- voucher_*: the compute-voucher vault (VoucherVault): create / fund a programme, grant a voucher, mark one
  related party, open a lease paid by a voucher (ETH, 20 % co-pay), close it through the vault, reconcile
  (close-out: split the escrow's refunds back, pull them from the escrow), withdraw the co-pay refund,
  expire the voucher, close the programme.
- settle_single_voucher_lease / settle_single_escrow_lease_same_offer: one steady-state checkpoint of a lease
  paid by a voucher and of one paid from escrow on an identical offer; ``settle_single_voucher_extra`` is
  the difference (target ≤ 5,000), ``..._execution`` the same without calldata (the lease ids differ).
- list_rights / open_lease_from_listing: resale of capacity rights: a holder's ask, and a lease priced by it.
- set_tiers_2: an offer's two price tiers by committed duration.
- dynamic_*: dynamic prices (DynamicPricer): set a rule (floor, ceiling), move an offer's rights to the pricer
  (it reprices on arrival), ``open_lease_from_pricer`` (a lease at the pricer's ask), reprice after that lease
  changed the leased share, end the rule (ask withdrawn, unlocked rights returned).

Reports are protocol v2 (``ledger.protocol.report``), with the figures a one-GPU lease's attestor derives from
its samples (as tests/api/bridge_helpers.py ``SigningAttestor.next_report``): allocated = the whole window,
busy 90 % of it, SM-active 90 % of busy, tensor-active half of busy, 300 W. The run asserts that each batch
settled all 50 entries.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.chain.backends import Chain, connect  # noqa: E402
from ledger.chain.compiler import load_artifact  # noqa: E402
from ledger.chain.deploy import deploy_suite  # noqa: E402
from ledger.chain.sender import TxOutcome  # noqa: E402
from ledger.chain.signing import sign_digest  # noqa: E402
from ledger.chain.suite import LedgerChain  # noqa: E402
from ledger.chain.views import LeaseInfo  # noqa: E402
from ledger.protocol import ZERO_HASH, MeteringReport, gpu_uuid_hash, report_digest, report_struct_hash  # noqa: E402
from ledger.protocol.economics import ETH, BillingMode, NodeFeature, lease_escrow, quote_lease, top_up_fee  # noqa: E402

TARGETS = {"settle_single": 40_000, "settle_batch_50_per_checkpoint": 15_000, "gas_per_window_hourly": 300,
           "settle_single_voucher_extra": 5_000}
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
    cum_sm: int = 0


def _report(ls: LeaseState, seq: int, window_end_ms: int, busy_frac_bps: int = 9_000) -> MeteringReport:
    """Next report of a lease up to ``window_end_ms`` with allocation = the whole window (v2 figures)."""
    start = ls.end_ms
    dt = window_end_ms - start
    gpus = ls.info.gpu_count
    alloc = dt * gpus
    busy = alloc * busy_frac_bps // 10_000
    sm_active = busy * 9 // 10
    energy = dt * gpus * 300  # 300 W average: mW × ms / 1000 = mJ
    return MeteringReport(
        leaseId=ls.info.lease_id,
        seq=seq,
        prevReportHash=ls.prev if seq == ls.seq + 1 else b"\x33" * 32,
        windowEndMs=window_end_ms,
        cumBusyMs=ls.cum_busy + busy,
        cumEnergyMj=ls.cum_energy + energy,
        cumAllocatedMs=ls.cum + alloc,
        cumSmActiveMs=ls.cum_sm + sm_active,
        windowStartMs=start,
        gpuSetHash=ls.info.gpu_set_hash,
        busyMs=busy,
        smActiveMs=sm_active,
        tensorActiveMs=busy // 2,
        energyMj=energy,
        allocatedMs=alloc,
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
    ls.cum_sm = r.cumSmActiveMs


def _calldata_gas(chain: Chain, tx_hash: str) -> int:
    data = bytes(chain.w3.eth.get_transaction(tx_hash)["input"])
    return sum(16 if b else 4 for b in data)


def run() -> dict[str, Any]:
    chain: Chain = connect("memory")
    acc = chain.accounts
    admin, buyer, relayer = acc[0], acc[7], acc[8]
    providers = acc[1:4]
    attestors = acc[4:7]
    dep = deploy_suite(chain, admin, challenge_period_s=3600)
    ledger = LedgerChain(chain, dep, estimate=False)
    calls, read, states_of = ledger.calls, ledger.read, ledger.states

    def send(who: str, call: Any) -> TxOutcome:
        return ledger.sender.send(who, call)

    def open_lease(offer_id: int, holder: str, duration_s: int, start_by: int) -> tuple[int, TxOutcome]:
        o = read.offer(offer_id)
        q = quote_lease(o.price_per_gpu_second, o.gpu_count, duration_s, read.fee_bps_for(o.provider))
        value = q.total if o.token == ETH else 0
        res = send(buyer, calls.open_lease(offer_id, holder, duration_s, start_by, q.total, value=value))
        return int(res.event("LeaseOpened").args["leaseId"]), res

    def settle_batch(reports: list[MeteringReport], sigs: list[bytes]) -> TxOutcome:
        st = states_of.states([r.leaseId for r in reports])
        return send(relayer, calls.settle_batch((r, s, st[r.leaseId]) for r, s in zip(reports, sigs)))

    out: dict[str, Any] = {}

    # providers, GPM nodes, offers (one GPU each so 50 leases can run at once; the last one bills SM-active time)
    now = chain.now()
    offers: list[int] = []
    for p_i, (prov, att) in enumerate(zip(providers, attestors)):
        r = send(prov, calls.register_provider(prov, f"ipfs://provider-{p_i}"))
        out.setdefault("register_provider", r.gas_used)
        uuids = [gpu_uuid_hash(f"GPU-{p_i}-{g}") for g in range(GPUS_PER_NODE)]
        node = send(
            prov,
            calls.register_node(att, "NVIDIA H100 80GB HBM3", uuids, 81_559, 700_000, "eu-west1", features=NodeFeature.GPM),
        )
        node_id = int(node.event("NodeRegistered").args["nodeId"])
        out.setdefault(f"register_node_{GPUS_PER_NODE}_gpus", node.gas_used)
        for g in range(GPUS_PER_NODE):
            if len(offers) >= BATCH + 1:
                break
            mode = BillingMode.SM_ACTIVE if len(offers) == BATCH else BillingMode.METERED
            o = send(prov, calls.publish_offer(node_id, 1 << g, PRICE, ETH, mode, now, now + 30 * 86400))
            out.setdefault("publish_offer", o.gas_used)
            offers.append(int(o.event("OfferPublished").args["offerId"]))

    # an ERC-20 lease for its own figure
    token_addr, _ = ledger.sender.deploy(admin, load_artifact("MockERC20"), ["USD Coin", "USDC", 6])
    send(admin, calls.mint(token_addr, buyer, 10**15))
    uu = [gpu_uuid_hash("GPU-erc20-0")]
    n20 = send(providers[0], calls.register_node(attestors[0], "NVIDIA L4", uu, 23_034, 72_000, "us-east1"))
    n20_id = int(n20.event("NodeRegistered").args["nodeId"])
    o20 = send(providers[0], calls.publish_offer(n20_id, 1, 1_000, token_addr, BillingMode.RESERVED, now, now + 86400))
    send(buyer, calls.approve(token_addr, dep.escrow, 10**15))
    _, l20 = open_lease(int(o20.event("OfferPublished").args["offerId"]), providers[0], 3600, now + 600)
    out["open_lease_erc20"] = l20.gas_used

    # 50 ETH leases, metered, 1 GPU, 10 days each; one more billing SM-active time
    keys = {a: chain.private_keys[a] for a in attestors}
    states: list[LeaseState] = []
    for i, oid in enumerate(offers[: BATCH + 1]):
        prov = read.offer(oid).provider
        lease_id, opened = open_lease(oid, prov, 10 * 86400, now + 600)
        if i == 0:
            out["open_lease_eth"] = opened.gas_used
        act = send(prov, calls.activate_lease(lease_id))
        if i == 0:
            out["activate_lease"] = act.gas_used
        info = read.lease(lease_id)
        att = attestors[providers.index(prov)]
        states.append(LeaseState(info=info, attestor_key=keys[att], end_ms=info.start_ms))

    def signed(ls: LeaseState, r: MeteringReport) -> bytes:
        return sign_digest(report_digest(r, chain.chain_id, dep.escrow), ls.attestor_key)

    sm_lease = states.pop()
    assert sm_lease.info.billing_mode == BillingMode.SM_ACTIVE

    # first checkpoint of every lease (slots become live): 60 one-minute windows after the start
    chain.increase_time(3600 + 5)
    t_ms = chain.now() * 1000
    first_reports, first_sigs = [], []
    for ls in states + [sm_lease]:
        r = _report(ls, 60, min(ls.info.start_ms + 3_600_000, t_ms))
        first_reports.append(r)
        first_sigs.append(signed(ls, r))
    res = settle_batch(first_reports[:BATCH], first_sigs[:BATCH])
    assert len(res.named("CheckpointSettled")) == BATCH, res.named("CheckpointSkipped")
    out["settle_batch_50_first_checkpoint_per_checkpoint"] = res.gas_used // BATCH
    res = send(relayer, calls.settle(first_reports[BATCH], first_sigs[BATCH], states_of.state(sm_lease.info.lease_id)))
    assert res.named("CheckpointSettled"), res.named("CheckpointSkipped")
    for ls, r in zip(states + [sm_lease], first_reports):
        _advance(ls, r)

    # steady state, single consecutive checkpoint
    chain.increase_time(60)
    t_ms = chain.now() * 1000
    ls0 = states[0]
    r = _report(ls0, ls0.seq + 1, ls0.end_ms + 60_000)
    assert r.windowEndMs <= t_ms
    res = send(relayer, calls.settle(r, signed(ls0, r), states_of.state(r.leaseId)))
    out["settle_single"] = res.gas_used
    out["settle_single_calldata"] = _calldata_gas(chain, res.tx_hash)
    _advance(ls0, r)

    # the same for the lease billing SM-active time
    r = _report(sm_lease, sm_lease.seq + 1, sm_lease.end_ms + 60_000)
    res = send(relayer, calls.settle(r, signed(sm_lease, r), states_of.state(r.leaseId)))
    ev = res.event("CheckpointSettled").args
    assert ev["charged"] == PRICE * r.cumSmActiveMs // 1000 - PRICE * (r.cumSmActiveMs - r.smActiveMs) // 1000
    out["settle_single_sm_active"] = res.gas_used
    _advance(sm_lease, r)

    # single checkpoint after a gap (the hourly / at-close case): the entry also carries the last hash
    chain.increase_time(600)
    ls1 = states[1]
    r = _report(ls1, ls1.seq + 10, ls1.end_ms + 600_000)
    res = send(relayer, calls.settle(r, signed(ls1, r), states_of.state(r.leaseId)))
    out["settle_single_after_gap"] = res.gas_used
    _advance(ls1, r)

    # steady state batch of 50 consecutive checkpoints (distinct leases, 3 providers)
    chain.increase_time(60)
    reports, sigs = [], []
    for ls in states:
        r = _report(ls, ls.seq + 1, ls.end_ms + 60_000)
        reports.append(r)
        sigs.append(signed(ls, r))
    res = settle_batch(reports, sigs)
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
    res = settle_batch(reports, sigs)
    assert len(res.named("CheckpointSettled")) == BATCH, res.named("CheckpointSkipped")
    per_cp = res.gas_used // BATCH
    out["settle_batch_50_hourly_per_checkpoint"] = per_cp
    out["gas_per_window_hourly"] = per_cp // 60
    for ls, r in zip(states, reports):
        _advance(ls, r)

    # the rest of a lease's life on lease 1 and 2
    l1 = read.lease(states[0].info.lease_id)
    amount = PRICE * l1.gpu_count * 600
    fee = top_up_fee(lease_escrow(l1.price_per_gpu_second, l1.gpu_count, l1.duration_s), amount, l1.fee_bps)
    lid = l1.lease_id
    out["top_up"] = send(buyer, calls.top_up(states_of.state(lid), amount, value=amount + fee)).gas_used
    out["dispute"] = send(buyer, calls.dispute(states_of.state(lid))).gas_used
    out["resolve_dispute"] = send(admin, calls.resolve_dispute(states_of.state(lid), 5_000, False)).gas_used
    out["close_lease"] = send(buyer, calls.close_lease(states_of.state(lid))).gas_used
    out["rate"] = send(buyer, calls.rate(lid, 5)).gas_used
    l2 = states[1].info.lease_id
    send(buyer, calls.close_lease(states_of.state(l2)))
    chain.increase_time(3601)
    out["release_earnings"] = send(relayer, calls.release_earnings(states_of.state(l2))).gas_used
    out["withdraw"] = send(buyer, calls.withdraw(ETH)).gas_used
    _vouchers(chain, ledger, out, admin, providers[1], attestors[1], acc[9], relayer)
    return out


def _vouchers(chain: Chain, ledger: LedgerChain, out: dict[str, Any], issuer: str, prov: str, att: str,
              beneficiary: str, relayer: str) -> None:
    """Compute vouchers: the vault's operations, and one steady-state checkpoint of a voucher lease next to
    one of a lease paid from escrow on an identical offer (same node, price, billing mode)."""
    calls, read, states_of = ledger.calls, ledger.read, ledger.states

    def send(who: str, call: Any) -> TxOutcome:
        return ledger.sender.send(who, call)

    now = chain.now()
    uuids = [gpu_uuid_hash(f"GPU-voucher-{g}") for g in range(3)]
    node = send(prov, calls.register_node(att, "NVIDIA H100 80GB HBM3", uuids, 81_559, 700_000, "eu-west1"))
    node_id = int(node.event("NodeRegistered").args["nodeId"])
    offer_ids = [
        int(send(prov, calls.publish_offer(node_id, 1 << g, PRICE, ETH, BillingMode.METERED, now, now + 30 * 86400))
            .event("OfferPublished").args["offerId"])
        for g in range(2)
    ]
    res = send(issuer, calls.create_programme(ETH, ["NVIDIA H100 80GB HBM3"], ["eu-west1"], []))
    out["voucher_create_programme"] = res.gas_used
    pid = int(res.event("ProgrammeCreated").args["programmeId"])
    out["voucher_fund_programme"] = send(issuer, calls.fund_programme(pid, 10**18, value=10**18)).gas_used
    res = send(issuer, calls.grant_voucher(pid, beneficiary, 10**17, now + 20 * 86400, 2_000))
    out["voucher_grant"] = res.gas_used
    vid = int(res.event("VoucherGranted").args["voucherId"])
    out["voucher_set_related_1"] = send(issuer, calls.set_related(pid, [relayer])).gas_used

    q = quote_lease(PRICE, 1, 86400, read.fee_bps_for(prov))
    copay = q.total - q.total * 8_000 // 10_000
    res = send(beneficiary, calls.voucher_open_lease(vid, offer_ids[0], prov, 86400, now + 600, copay, value=copay))
    out["voucher_open_lease_eth"] = res.gas_used
    v_lease = int(res.event("LeaseOpened").args["leaseId"])
    res = send(beneficiary, calls.open_lease(offer_ids[1], prov, 86400, now + 600, q.total, value=q.total))
    e_lease = int(res.event("LeaseOpened").args["leaseId"])
    key = chain.private_keys[att]
    lss = []
    for lid in (v_lease, e_lease):
        send(prov, calls.activate_lease(lid))
        info = read.lease(lid)
        lss.append(LeaseState(info=info, attestor_key=key, end_ms=info.start_ms))
    gas = []
    for step in range(2):  # first checkpoint (state slot becomes live), then the measured steady-state one
        chain.increase_time(60)
        for ls in lss:
            r = _report(ls, ls.seq + 1, ls.end_ms + 60_000)
            sig = sign_digest(report_digest(r, chain.chain_id, ledger.deployment.escrow), ls.attestor_key)
            res = send(relayer, calls.settle(r, sig, states_of.state(r.leaseId)))
            assert res.named("CheckpointSettled"), res.named("CheckpointSkipped")
            _advance(ls, r)
            if step == 1:
                gas.append((res.gas_used, res.gas_used - _calldata_gas(chain, res.tx_hash)))
    (v_total, v_exec), (e_total, e_exec) = gas
    out["settle_single_voucher_lease"] = v_total
    out["settle_single_escrow_lease_same_offer"] = e_total
    out["settle_single_voucher_extra"] = v_total - e_total
    out["settle_single_voucher_extra_execution"] = v_exec - e_exec
    out["voucher_close_lease"] = send(beneficiary, calls.voucher_close_lease(states_of.state(v_lease))).gas_used
    chain.increase_time(3601)
    send(relayer, calls.release_earnings(states_of.state(v_lease)))
    out["voucher_reconcile"] = send(relayer, calls.reconcile_voucher_lease(states_of.state(v_lease))).gas_used
    out["voucher_withdraw"] = send(beneficiary, calls.vault_withdraw(ETH)).gas_used
    chain.increase_time(20 * 86400)
    out["voucher_expire"] = send(relayer, calls.expire_voucher(vid)).gas_used
    out["voucher_close_programme"] = send(issuer, calls.close_programme(pid)).gas_used

    # resale: the holder of an offer's rights (here its provider) lists them at its own ask; a lease of them
    o3 = send(prov, calls.publish_offer(node_id, 0b100, PRICE, ETH, BillingMode.METERED, chain.now(), chain.now() + 86400))
    oid3 = int(o3.event("OfferPublished").args["offerId"])
    out["list_rights"] = send(prov, calls.list_rights(oid3, 2 * PRICE)).gas_used
    q = quote_lease(2 * PRICE, 1, 3600, read.fee_bps_for(prov))
    res = send(beneficiary, calls.open_lease(oid3, prov, 3600, chain.now() + 600, q.total, value=q.total))
    assert read.lease(int(res.event("LeaseOpened").args["leaseId"])).price_per_gpu_second == 2 * PRICE
    out["open_lease_from_listing"] = res.gas_used
    # tiered prices: a committed week is cheaper per GPU-second than an hour
    out["set_tiers_2"] = send(prov, calls.set_tiers(offer_ids[1], [(3600, PRICE), (7 * 86400, PRICE * 8 // 10)])).gas_used
    _dynamic(chain, ledger, out, prov, att, beneficiary, relayer)


def _dynamic(chain: Chain, ledger: LedgerChain, out: dict[str, Any], prov: str, att: str, buyer: str, relayer: str) -> None:
    """Dynamic prices (DynamicPricer): set a rule, move the offer's rights to the pricer (repriced on arrival),
    open a lease from the pricer at its ask, reprice after it (the leased share changed), end the rule."""
    calls, read = ledger.calls, ledger.read
    pricer = ledger.deployment.dynamic_pricer
    assert pricer is not None

    def send(who: str, call: Any) -> TxOutcome:
        return ledger.sender.send(who, call)

    node = send(prov, calls.register_node(att, "NVIDIA H100 80GB HBM3", [gpu_uuid_hash("GPU-dynamic-0")], 81_559,
                                          700_000, "eu-west1"))
    node_id = int(node.event("NodeRegistered").args["nodeId"])
    res = send(prov, calls.publish_offer(node_id, 1, PRICE, ETH, BillingMode.METERED, chain.now(), chain.now() + 86400))
    oid = int(res.event("OfferPublished").args["offerId"])
    out["dynamic_set_rule"] = send(prov, calls.set_dynamic_rule(oid, PRICE, 3 * PRICE)).gas_used
    rights = read.rights_balance(prov, oid)
    out["dynamic_deposit_rights"] = send(prov, calls.transfer_rights(prov, pricer, oid, rights)).gas_used
    q = quote_lease(read.lease_price(oid, pricer, 3600), 1, 3600, read.fee_bps_for(prov))
    res = send(buyer, calls.open_lease(oid, pricer, 3600, chain.now() + 600, q.total, value=q.total))
    assert read.lease(int(res.event("LeaseOpened").args["leaseId"])).price_per_gpu_second == PRICE
    out["open_lease_from_pricer"] = res.gas_used
    res = send(relayer, calls.reprice(oid))
    assert PRICE < int(res.event("Repriced").args["price"]) <= 3 * PRICE
    out["dynamic_reprice"] = res.gas_used
    out["dynamic_end_rule"] = send(prov, calls.end_dynamic_rule(oid)).gas_used


ORDER = (
    "register_provider",
    f"register_node_{GPUS_PER_NODE}_gpus",
    "publish_offer",
    "open_lease_eth",
    "open_lease_erc20",
    "activate_lease",
    "settle_single",
    "settle_single_calldata",
    "settle_single_sm_active",
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
    "voucher_create_programme",
    "voucher_fund_programme",
    "voucher_grant",
    "voucher_set_related_1",
    "voucher_open_lease_eth",
    "settle_single_voucher_lease",
    "settle_single_escrow_lease_same_offer",
    "settle_single_voucher_extra",
    "settle_single_voucher_extra_execution",
    "voucher_close_lease",
    "voucher_reconcile",
    "voucher_withdraw",
    "voucher_expire",
    "voucher_close_programme",
    "list_rights",
    "open_lease_from_listing",
    "set_tiers_2",
    "dynamic_set_rule",
    "dynamic_deposit_rights",
    "open_lease_from_pricer",
    "dynamic_reprice",
    "dynamic_end_rule",
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
