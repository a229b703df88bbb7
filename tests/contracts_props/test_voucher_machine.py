"""Money invariants of compute vouchers (VoucherVault over the escrow) under random sequences of operations
(hypothesis stateful testing).

Rules: an issuer funds its programme, grants vouchers (random face value, co-pay share, expiry) and closes it;
beneficiaries open leases through the vault (random offer and duration; refused when the voucher is expired,
exhausted or the co-pay cap is too low); the provider activates; the relayer settles signed reports; the
beneficiary closes, or an unstarted lease expires; anyone releases earnings, reconciles ended leases, expires
vouchers; everyone withdraws; time moves. After every state change:

- conservation across both contracts, per the model's flows: ETH held by the escrow and the vault = what was
  paid in (funding, co-pays) − what was withdrawn (from either);
- the vault owns what it owes: assets (balance + escrow.withdrawable(vault)) = liabilities + what the escrow
  already returned for ended leases not yet reconciled; liabilities = Σ pools + Σ unexpired voucher balances + Σ
  withdrawable;
- per voucher: balance ≤ face value, and face value = balance + Σ voucher share of its unreconciled leases +
  Σ what its reconciled leases finally cost it (until it expires: then the balance went to the issuer);
- per programme: funded = pool + granted + what closing returned; granted = Σ face values.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Collection

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.chain.backends import Chain, connect
from ledger.chain.deploy import deploy_suite
from ledger.chain.deployment import Deployment
from ledger.chain.reverts import ContractRevert
from ledger.protocol import gpu_uuid_hash
from ledger.protocol.economics import LeaseStatus
from ledger.protocol.vouchers import buyer_return, voucher_split
from tests.contracts.conftest import Meter
from tests.support.ledger_client import ETH, BillingMode, LedgerClient, NodeFeature, TxResult

PRICE = 10**9
START = 2_000_000_000  # unix s, after any wall clock this runs on
CHALLENGE_S = 600
FEE_BPS = 250
MAX_LEASES = 4
ENDED = (LeaseStatus.CLOSED, LeaseStatus.EXPIRED, LeaseStatus.EXHAUSTED)
pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")


@dataclass
class World:
    chain: Chain
    dep: Deployment
    cl: LedgerClient
    issuer: str
    provider: str
    attestor: str
    beneficiaries: tuple[str, str]
    relayer: str
    treasury: str
    offers: tuple[int, int, int]
    snapshot: Any
    sign_ns: Any = None


@functools.cache
def world() -> World:
    chain = connect("memory")
    a = chain.accounts
    admin, provider, attestor, b1, b2, relayer, treasury = a[:7]
    dep = deploy_suite(chain, admin, treasury=treasury, challenge_period_s=CHALLENGE_S, base_fee_bps=FEE_BPS)
    cl = LedgerClient(chain, dep)
    # Block times from a fixed point on: eth-tester stamps a block max(wall clock, parent + 1), so from here
    # they depend only on the steps taken, and every run replays the same examples.
    chain.time_travel(START)
    cl.register_provider(provider, provider, "ipfs://p")
    gpus = [gpu_uuid_hash(f"GPU-vm-{i}") for i in range(4)]
    node = cl.register_node(provider, attestor, "NVIDIA H100", gpus, 81_559, 700_000, "eu-west1",
                            features=NodeFeature.GPM).id
    t0 = chain.now()
    until = t0 + 30 * 86_400
    offers = (
        cl.publish_offer(provider, node, 0b0011, PRICE, ETH, BillingMode.RESERVED, t0, until).id,
        cl.publish_offer(provider, node, 0b0100, PRICE, ETH, BillingMode.METERED, t0, until).id,
        cl.publish_offer(provider, node, 0b1000, 2 * PRICE, ETH, BillingMode.SM_ACTIVE, t0, until).id,
    )
    w = World(chain, dep, cl, admin, provider, attestor, (b1, b2), relayer, treasury, offers, None)
    w.sign_ns = SimpleNamespace(chain=chain, dep=dep)
    w.snapshot = chain.snapshot()
    return w


@dataclass
class VLease:
    lease_id: int
    voucher_id: int
    voucher_paid: int
    copay_paid: int
    offer: int
    reconciled: bool = False
    meter: Meter | None = None


@dataclass
class Model:
    paid_in: int = 0
    paid_out: int = 0
    funded: dict[int, int] = field(default_factory=dict)
    close_returned: dict[int, int] = field(default_factory=dict)
    faces: dict[int, int] = field(default_factory=dict)  # voucher -> face value
    programme_of: dict[int, int] = field(default_factory=dict)
    spent: dict[int, int] = field(default_factory=dict)  # voucher -> Σ final cost of reconciled leases
    leases: dict[int, VLease] = field(default_factory=dict)


class VoucherMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = world()
        self.w.chain.revert(self.w.snapshot)
        self.cl = self.w.cl
        self.m = Model()
        self.counts: dict[str, int] = {}
        pid = self.cl.create_programme(self.w.issuer).id
        self.pid = pid
        # a funded programme with a voucher per beneficiary to start from (the rules add more)
        self.cl.fund_programme(self.w.issuer, pid, 3 * 10**16)
        self.m.funded[pid] = self.m.paid_in = 3 * 10**16
        for i, b in enumerate(self.w.beneficiaries):
            vid = self.cl.grant_voucher(self.w.issuer, pid, b, 10**16, self.now() + 2 * 86_400, (0, 2_500)[i]).id
            self.m.faces[vid], self.m.programme_of[vid] = 10**16, pid

    # --- helpers ---------------------------------------------------------------------------------------

    def now(self) -> int:
        return self.w.chain.now()

    def bump(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def expect(self, fn: Callable[[], Any], errors: Collection[str], *, must_fail: bool = False,
               may_fail: bool = False) -> Any:
        try:
            res = fn()
        except ContractRevert as e:
            assert (must_fail or may_fail) and e.name in errors, f"unexpected revert {e}"
            self.bump(f"rejected.{e.name}")
            return None
        assert not must_fail, f"expected one of {sorted(errors)}, call succeeded"
        return res

    def gas_paid(self, res: TxResult) -> int:
        r = self.w.chain.w3.eth.get_transaction_receipt(res.tx_hash)
        return int(r["gasUsed"] * r["effectiveGasPrice"])

    def status(self, lid: int) -> LeaseStatus:
        return self.cl.lease(lid).status

    def live_offers(self) -> set[int]:
        return {vl.offer for vl in self.m.leases.values() if self.status(vl.lease_id) in (LeaseStatus.OPEN, LeaseStatus.ACTIVE)}

    def with_status(self, *sts: LeaseStatus) -> list[int]:
        return [lid for lid in sorted(self.m.leases) if self.status(lid) in sts]

    def pick(self, data: st.DataObject, *sts: LeaseStatus) -> int | None:
        """A lease in one of ``sts`` (None when there is none)."""
        ids = self.with_status(*sts)
        return data.draw(st.sampled_from(ids), label="lease") if ids else None

    # --- issuer ----------------------------------------------------------------------------------------

    @precondition(lambda self: self.cl.programme(self.pid).pool < 10**16)
    @rule(amount=st.integers(1, 3 * 10**16))
    def fund(self, amount: int) -> None:
        closed = self.cl.programme(self.pid).closed
        res = self.expect(lambda: self.cl.fund_programme(self.w.issuer, self.pid, amount),
                          ("VoucherVaultProgrammeClosed",), must_fail=closed)
        if res is not None:
            self.m.paid_in += amount
            self.m.funded[self.pid] += amount
            self.bump("fund")

    @precondition(lambda self: len(self.m.faces) < 5)
    @rule(who=st.integers(0, 1), face=st.integers(1, 2 * 10**16), copay_bps=st.sampled_from([0, 1, 2_500, 9_999, 10_000]),
          days=st.integers(0, 3))
    def grant(self, who: int, face: int, copay_bps: int, days: int) -> None:
        p = self.cl.programme(self.pid)
        res = self.expect(
            lambda: self.cl.grant_voucher(self.w.issuer, self.pid, self.w.beneficiaries[who], face,
                                          self.now() + 3_600 + days * 86_400, copay_bps),
            ("VoucherVaultPoolTooSmall", "VoucherVaultProgrammeClosed"),
            must_fail=p.closed or p.pool < face,
        )
        if res is not None:
            self.m.faces[res.id] = face
            self.m.programme_of[res.id] = self.pid
            self.bump("grant")

    @precondition(lambda self: len(self.m.leases) >= 3)  # late in a run: closing stops funding and grants
    @rule()
    def close_programme(self) -> None:
        pool = self.cl.programme(self.pid).pool
        res = self.expect(lambda: self.cl.close_programme(self.w.issuer, self.pid), ("VoucherVaultProgrammeClosed",),
                          must_fail=self.cl.programme(self.pid).closed)
        if res is not None:
            assert res.event("ProgrammeClosed").args["returned"] == pool
            self.m.close_returned[self.pid] = pool
            self.bump("close_programme")

    # --- beneficiary -----------------------------------------------------------------------------------

    @precondition(lambda self: self.m.faces and len(self.m.leases) < MAX_LEASES)
    @rule(data=st.data(), duration=st.integers(60, 2 * 3600), tight_cap=st.booleans(), any_voucher=st.booleans(),
          start_now=st.booleans())
    def open_lease(self, data: st.DataObject, duration: int, tight_cap: bool, any_voucher: bool, start_now: bool) -> None:
        """A beneficiary redeems (``any_voucher``: possibly an expired or empty one, which is refused)."""
        usable = [i for i in sorted(self.m.faces) if self.cl.voucher(i).expiry > self.now() + 2]
        vid = data.draw(st.sampled_from(sorted(self.m.faces) if any_voucher or not usable else usable), label="voucher")
        free = [o for o in self.w.offers if o not in self.live_offers()]
        if not free:
            return
        oid = data.draw(st.sampled_from(free), label="offer")
        v = self.cl.voucher(vid)
        q = self.cl.quote_lease(oid, duration)
        from_voucher, copay = voucher_split(q.total, v.copay_bps, v.balance)
        expired = v.expired or self.now() + 2 >= v.expiry
        cap = max(copay - 1, 0) if tight_cap else copay
        errors = ("VoucherVaultExpired", "VoucherVaultExhausted", "VoucherVaultCopayAboveMax")
        res = self.expect(
            lambda: self.cl.voucher_open_lease(v.beneficiary, vid, oid, self.w.provider, duration, self.now() + 4 * 3600,
                                               max_copay=cap),
            errors,
            must_fail=v.expired or self.now() >= v.expiry or from_voucher == 0 or (tight_cap and copay > 0),
            may_fail=expired,
        )
        if res is None:
            return
        ev = res.tx.event("VoucherRedeemed").args
        assert (ev["voucherPaid"], ev["copayPaid"]) == (from_voucher, copay)
        assert ev["voucherPaid"] <= v.balance
        self.m.paid_in += copay
        self.m.leases[res.id] = VLease(res.id, vid, from_voucher, copay, oid)
        self.bump("open")
        if start_now:  # the provider starts it right away, and the first report follows
            self.cl.activate_lease(self.w.provider, res.id)
            self._metered(res.id)
            self.bump("activate")
            self._settle(res.id, data.draw(st.integers(1, 40), label="minutes"), 10_000)

    def _metered(self, lid: int) -> None:
        ls = self.cl.lease(lid)
        key = self.w.chain.private_keys[self.w.attestor]
        self.m.leases[lid].meter = Meter(world=self.w.sign_ns, lease=ls, key=key, end_ms=ls.start_ms)

    @precondition(lambda self: self.m.leases)
    @rule(data=st.data())
    def activate(self, data: st.DataObject) -> None:
        lid = self.pick(data, LeaseStatus.OPEN)
        if lid is None:
            return
        ls = self.cl.lease(lid)
        res = self.expect(lambda: self.cl.activate_lease(self.w.provider, lid), ("LeaseEscrowStartByPassed",),
                          must_fail=self.now() > ls.start_by, may_fail=self.now() + 2 >= ls.start_by)
        if res is not None:
            self._metered(lid)
            self.bump("activate")

    @precondition(lambda self: any(vl.meter is not None for vl in self.m.leases.values()))
    @rule(data=st.data(), minutes=st.integers(1, 40), busy=st.integers(0, 10_000))
    def settle(self, data: st.DataObject, minutes: int, busy: int) -> None:
        active = [lid for lid in self.with_status(LeaseStatus.ACTIVE) if self.m.leases[lid].meter is not None]
        if active:
            self._settle(data.draw(st.sampled_from(active), label="lease"), minutes, busy)

    def _settle(self, lid: int, minutes: int, busy: int) -> None:
        meter = self.m.leases[lid].meter
        assert meter is not None
        ls = self.cl.lease(lid)
        window = min(minutes * 60_000, ls.end_ms - meter.end_ms)
        if window <= 0:
            return
        target = -(-(meter.end_ms + window) // 1000)
        if self.now() < target:
            self.w.chain.time_travel(target)
        r, sig = meter.next(window, busy_bps=busy, sm_bps=busy)
        self.cl.settle(self.w.relayer, r, sig)
        self.bump("settle")

    @precondition(lambda self: self.m.leases)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        lid = self.pick(data, LeaseStatus.OPEN, LeaseStatus.ACTIVE)
        if lid is None:
            return
        beneficiary = self.cl.voucher(self.m.leases[lid].voucher_id).beneficiary
        self.cl.voucher_close_lease(beneficiary, lid)
        self.bump("close")

    @precondition(lambda self: self.m.leases)
    @rule(data=st.data())
    def expire_lease(self, data: st.DataObject) -> None:
        lid = self.pick(data, LeaseStatus.OPEN)
        if lid is None:
            return
        ls = self.cl.lease(lid)
        if self.now() <= ls.start_by:
            self.w.chain.time_travel(ls.start_by + 1)
        self.cl.expire_lease(self.w.relayer, lid)
        self.bump("expire_lease")

    @precondition(lambda self: self.m.leases)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lid = data.draw(st.sampled_from(sorted(self.m.leases)), label="lease")
        ck = self.cl.checkpoint(lid)
        if ck.pending == 0:
            return
        if self.now() < ck.last_settled_at + CHALLENGE_S:
            self.w.chain.time_travel(ck.last_settled_at + CHALLENGE_S)
        self.cl.release_earnings(self.w.relayer, lid)
        self.bump("release")

    @precondition(lambda self: self.m.leases)
    @rule(data=st.data())
    def reconcile(self, data: st.DataObject) -> None:
        lid = data.draw(st.sampled_from(sorted(self.m.leases)), label="lease")
        vl = self.m.leases[lid]
        ls = self.cl.lease(lid)
        res = self.expect(lambda: self.cl.reconcile(self.w.relayer, lid),
                          ("VoucherVaultLeaseNotFinal", "VoucherVaultAlreadyReconciled"),
                          must_fail=vl.reconciled or not ls.fees_settled)
        if res is None:
            return
        ev = res.event("RedemptionClosedOut").args
        back = buyer_return(ls.escrowed, ls.fee_held, self.cl.checkpoint(lid).paid, ls.fee_bps)
        assert ev["voucherReturned"] + ev["copayReturned"] == back
        assert ev["voucherSpent"] == vl.voucher_paid - ev["voucherReturned"]
        vl.reconciled = True
        self.m.spent[vl.voucher_id] = self.m.spent.get(vl.voucher_id, 0) + ev["voucherSpent"]
        self.bump("reconcile")

    @precondition(lambda self: self.m.leases)
    @rule(data=st.data(), wait=st.booleans())
    def expire_voucher(self, data: st.DataObject, wait: bool) -> None:
        vid = data.draw(st.sampled_from(sorted(self.m.faces)), label="voucher")
        v = self.cl.voucher(vid)
        if wait and self.now() < v.expiry:
            self.w.chain.time_travel(v.expiry)
        res = self.expect(lambda: self.cl.expire_voucher(self.w.relayer, vid), ("VoucherVaultNotExpired",),
                          must_fail=v.expired or self.now() + 2 < v.expiry, may_fail=self.now() < v.expiry)
        if res is not None:
            assert res.event("VoucherExpired").args["returned"] == v.balance
            self.bump("expire_voucher")

    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        """Someone with money due in either contract pulls it (everything it is owed there)."""
        everyone = (self.w.issuer, *self.w.beneficiaries, self.w.provider, self.w.treasury)
        dues = [(a, c) for a in everyone for c in ("vault", "escrow")
                if (self.cl.vault_withdrawable if c == "vault" else self.cl.withdrawable)(a, ETH)]
        if not dues:
            return
        account, contract = data.draw(st.sampled_from(dues), label="payee")
        due = (self.cl.vault_withdrawable if contract == "vault" else self.cl.withdrawable)(account, ETH)
        before = self.w.chain.w3.eth.get_balance(account)
        res = (self.cl.vault_withdraw if contract == "vault" else self.cl.withdraw)(account, ETH)
        assert self.w.chain.w3.eth.get_balance(account) == before + due - self.gas_paid(res)
        self.m.paid_out += due
        self.bump(f"withdraw.{contract}")

    @rule(seconds=st.sampled_from([60, 900, 3_600, 86_400]))
    def time_travel(self, seconds: int) -> None:
        self.w.chain.time_travel(self.now() + seconds)

    # --- invariants ------------------------------------------------------------------------------------

    @invariant()
    def money_conserved(self) -> None:
        w3, cl, vault, escrow = self.w.chain.w3, self.cl, self.w.dep.voucher_vault, self.w.dep.escrow
        assert vault is not None
        held = w3.eth.get_balance(vault) + w3.eth.get_balance(escrow)
        assert held == self.m.paid_in - self.m.paid_out, "ETH in vault + escrow != paid in − paid out"

        owed = cl.vault_liabilities(ETH)
        pools = sum(cl.programme(p).pool for p in self.m.funded)
        balances = sum(v.balance for v in (cl.voucher(i) for i in self.m.faces) if not v.expired)
        accounts = (self.w.issuer, *self.w.beneficiaries)
        assert owed == pools + balances + sum(cl.vault_withdrawable(a, ETH) for a in accounts)
        unreconciled = 0  # what the escrow already credited the vault for leases not yet reconciled
        for lid, vl in self.m.leases.items():
            ls = cl.lease(lid)
            assert ls.buyer == vault
            if vl.reconciled or ls.status not in ENDED:
                continue
            ck = cl.checkpoint(lid)
            if ls.fees_settled:
                unreconciled += buyer_return(ls.escrowed, ls.fee_held, ck.paid, ls.fee_bps)
            else:  # closed: the uncharged escrow came back at once, dispute refunds when ruled, the fee later
                unreconciled += ls.escrowed - ck.charged + ck.refunded
        assets = w3.eth.get_balance(vault) + cl.withdrawable(vault, ETH)
        assert assets == owed + unreconciled, f"vault assets {assets} != owed {owed} + unreconciled {unreconciled}"

        for vid, face in self.m.faces.items():
            v = cl.voucher(vid)
            assert v.balance <= face
            if v.expired:
                assert v.balance == 0
                continue
            in_flight = sum(vl.voucher_paid for vl in self.m.leases.values() if vl.voucher_id == vid and not vl.reconciled)
            assert face == v.balance + in_flight + self.m.spent.get(vid, 0), f"voucher {vid}: face value not accounted for"
        for pid, funded in self.m.funded.items():
            p = cl.programme(pid)
            assert p.granted == sum(f for v, f in self.m.faces.items() if self.m.programme_of[v] == pid)
            assert funded == p.pool + p.granted + self.m.close_returned.get(pid, 0)


VoucherMachine.TestCase.settings = settings(
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def test_voucher_state_machine() -> None:
    """Runs the machine in an interpreter of its own: its derandomized examples are then the same whatever other
    test modules ran first (schemathesis' use of hypothesis in the same process changes what they draw)."""
    done = subprocess.run(
        [sys.executable, "-c", "from tests.contracts_props.test_voucher_machine import run_machine; run_machine()"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    assert "voucher machine: every money path reached" in done.stdout, done.stdout[-4000:]


def run_machine() -> None:
    """The machine's examples; they are not vacuous: over them every money path happened."""
    seen: dict[str, int] = {}
    orig = VoucherMachine.teardown

    def teardown(self: VoucherMachine) -> None:
        for k, v in self.counts.items():
            seen[k] = seen.get(k, 0) + v
        orig(self)

    VoucherMachine.teardown = teardown  # type: ignore[method-assign]
    try:
        VoucherMachine.TestCase().runTest()
    finally:
        VoucherMachine.teardown = orig  # type: ignore[method-assign]
    for rule_name in ("fund", "grant", "open", "activate", "settle", "close", "release", "reconcile",
                      "expire_voucher", "withdraw.vault", "withdraw.escrow"):
        assert seen.get(rule_name, 0) > 0, f"no {rule_name} in {seen}"
    print(f"voucher machine: every money path reached: {seen}")
