"""Money invariants of the escrow under random sequences of lease operations (hypothesis stateful testing).

One suite is deployed per module on the in-process chain; every example starts from a snapshot of it.
Leases run on four offers: ETH reserved, ETH metered, token reserved and ETH SM-active (a GPM node), so every
billing mode of protocol v2 is exercised. Rules: open, activate, settle and settleBatch (signed v2 reports
built with ``ledger.protocol``, sent as settlement entries built with ``ledger.protocol.settlement`` carrying
the lease state the model tracks; cumulative counters growing by random amounts within the v2 bounds; a batch
may hold several leases and consecutive reports of one lease; entries sometimes corrupted in one of the ways of
``CORRUPTIONS`` that must be rejected with the matching custom error), top-up, close, expire, dispute,
resolve, release, withdraw and time travel; each rule also checks its own events and amounts. After every
state change, for ETH and a MockERC20:

- conservation: escrow balance = Σ uncharged escrow of live leases + Σ fee held + Σ pending + Σ withdrawable,
  and = what was paid in (plus slashed stake) − what was withdrawn; the registry holds exactly the stakes;
- rights, per offer: minted = held + locked + burned, locked = the live lease's gpuCount × durationS;
- nobody is paid beyond escrow: charged ≤ escrowed and paid + refunded + pending = charged per lease;
- the model's lease state (terms from the chain; ckpt and last report hash from the settlement records it
  accepted, checked against what the reports imply) is the escrow's commitment ``stateHash``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Collection

import pytest
from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address
from eth_utils.abi import get_abi_output_types
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger.chain.backends import Chain, connect
from tests.support.ledger_client import (
    ETH,
    BillingMode,
    CheckpointInfo,
    LeaseInfo,
    LeaseStatus,
    LedgerClient,
    NodeFeature,
    OfferInfo,
    TxResult,
)
from ledger.chain.compiler import load_artifact
from ledger.chain.deployment import Deployment
from ledger.chain.deploy import deploy_suite
from tests.contracts.conftest import expected_ckpt
from ledger.chain.reverts import ContractRevert, error_name
from ledger.protocol import SECP256K1_HALF_N, ZERO_HASH, MeteringReport, gpu_uuid_hash, report_digest, report_struct_hash
from ledger.chain.signing import sign_digest
from ledger.protocol.settlement import Checkpoint, LeaseState, commitment, encode_entries, initial_ckpt
from ledger.protocol.economics import checkpoint_billable

ETH_PRICE = 10**9  # wei per GPU-second
TOKEN_PRICE = 1_000  # token units per GPU-second
MAX_POWER_MW = 700_000
CHALLENGE_S = 3600
FEE_BPS = 250
OFFER_SPAN_S = 30 * 86_400
ETH_STAKE = 10**18
TOKEN_STAKE = 10**12
MAX_LEASES = 3
SAMPLES_ROOT = bytes.fromhex("ab" * 32)
CONFIG_HASH = bytes.fromhex("cd" * 32)
LIVE = (LeaseStatus.OPEN, LeaseStatus.ACTIVE)
BAD_HASH = bytes.fromhex("ee" * 32)
OTHER_GPUS = bytes.fromhex("0f" * 32)  # a GPU set no lease has
# py-evm raises the recursion limit while executing; hypothesis then warns that it cannot restore its own.
pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")
# Entry corruptions and the custom errors each must be rejected with (a wrong GPU set is not one: the
# chain does not check it, see the settle rule's ``other_gpus``).
CORRUPTIONS: dict[str, tuple[str, ...]] = {
    "wrong_signer": ("LeaseEscrowWrongSigner",),
    "other_chain": ("LeaseEscrowWrongSigner",),
    "high_s": ("LeaseEscrowMalleableSignature",),
    "counter_down": ("LeaseEscrowCounterDecreased",),
    "sm_down": ("LeaseEscrowCounterDecreased",),
    "above_capacity": ("LeaseEscrowTimeAboveCapacity",),
    "sm_above_capacity": ("LeaseEscrowTimeAboveCapacity",),
    "busy_above_allocated": ("LeaseEscrowBusyAboveAllocated",),
    "energy_above_cap": ("LeaseEscrowEnergyAboveCap",),
    "replay": ("LeaseEscrowStaleReport",),
    "future_window": ("LeaseEscrowWindowInFuture", "LeaseEscrowWindowOutsideLease"),
    "window_at_start": ("LeaseEscrowWindowOutsideLease",),
    "broken_chain": ("LeaseEscrowBrokenChain",),
    "broken_chain_implicit": ("LeaseEscrowStaleState",),
    "stale_state": ("LeaseEscrowStaleState",),
    "forged_terms": ("LeaseEscrowStaleState",),
}


class Views:
    """Read-only contract calls straight on the in-process tester (a few ms each instead of ~15 through
    the client's revert-decoding path): the invariants read dozens of getters after every step."""

    def __init__(self, chain: Chain) -> None:
        self._tester = chain.w3.provider.ethereum_tester
        self._from = chain.accounts[0]
        self._encoded: dict[tuple[str, str, str], tuple[str, list[str]]] = {}

    def call(self, contract: Any, name: str, *args: Any) -> Any:
        key = (contract.address, name, repr(args))
        cached = self._encoded.get(key)
        if cached is None:  # the invariants repeat the same reads: encode each once
            types = get_abi_output_types(contract.get_function_by_name(name).abi)
            cached = self._encoded[key] = (contract.encode_abi(name, args=list(args)), types)
        data, types = cached
        tx = {"from": self._from, "to": contract.address, "data": data, "gas": 10_000_000, "value": 0}
        raw = self._tester.call(tx)
        out = abi_decode(types, bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw))
        return out[0] if len(out) == 1 else out


@dataclass
class World:
    chain: Chain
    dep: Deployment
    cl: LedgerClient
    views: Views
    token: Any
    provider: str
    reseller: str
    attestor: str
    outsider: str
    buyers: tuple[str, str]
    arbiter: str
    treasury: str
    stranger: str
    offers: tuple[int, int, int, int]  # ETH reserved (2 GPUs), ETH metered, token reserved, ETH SM-active (1 GPU)
    offer_info: dict[int, OfferInfo]  # offers never change: read once
    snapshot: Any

    @property
    def actors(self) -> tuple[str, ...]:
        """Everyone the escrow may credit (buyers, rights holders, treasury)."""
        return (self.provider, self.reseller, self.treasury, *self.buyers)

    def key(self, account: str) -> bytes:
        return self.chain.private_keys[account]


@functools.cache
def world() -> World:
    """Deploy the suite once for the module and snapshot it."""
    chain = connect("memory")
    a = chain.accounts
    admin, provider, reseller, attestor, outsider, buyer1, buyer2, arbiter, treasury, stranger = a[:10]
    dep = deploy_suite(
        chain,
        admin,
        treasury=treasury,
        arbiter=arbiter,
        pauser=admin,
        challenge_period_s=CHALLENGE_S,
        base_fee_bps=FEE_BPS,
    )
    cl = LedgerClient(chain, dep)
    cl.register_provider(provider, provider, "ipfs://provider")
    gpus_a = [gpu_uuid_hash(f"GPU-prop-a-{i}") for i in range(4)]
    gpus_b = [gpu_uuid_hash(f"GPU-prop-b-{i}") for i in range(1)]
    node_a = cl.register_node(
        provider, attestor, "NVIDIA H100", gpus_a, 81_559, MAX_POWER_MW, "eu-west1", features=NodeFeature.GPM
    ).id
    node_b = cl.register_node(provider, attestor, "NVIDIA L4", gpus_b, 23_034, MAX_POWER_MW, "us-east1").id
    token_addr = cl.tx.deploy(load_artifact("MockERC20"), admin, ["USD Coin", "USDC", 6])
    token = cl.erc20(token_addr)
    t0 = chain.now()
    until = t0 + OFFER_SPAN_S
    offers = (
        cl.publish_offer(provider, node_a, 0b011, ETH_PRICE, ETH, BillingMode.RESERVED, t0, until).id,
        cl.publish_offer(provider, node_a, 0b100, ETH_PRICE, ETH, BillingMode.METERED, t0, until).id,
        cl.publish_offer(provider, node_b, 0b1, TOKEN_PRICE, token_addr, BillingMode.RESERVED, t0, until).id,
        cl.publish_offer(provider, node_a, 0b1000, ETH_PRICE, ETH, BillingMode.SM_ACTIVE, t0, until).id,
    )
    for who in (buyer1, buyer2, provider):
        cl.tx.send(token.functions.mint(who, 10**18), admin)
    for who in (buyer1, buyer2):
        cl.erc20_approve(who, token_addr, dep.escrow, 2**255)
    cl.stake(provider, ETH, ETH_STAKE)
    cl.stake(provider, token_addr, TOKEN_STAKE)
    for oid in offers:  # half the rights of every offer are resold: leases lock them from either holder
        cl.transfer_rights(provider, reseller, oid, cl.rights_balance(provider, oid) // 2)
    # Run a day ahead of the wall clock: eth-tester stamps a new block max(wall clock, parent + 1), so from
    # here on block times depend only on the steps taken and every example replays identically.
    chain.time_travel(t0 + 86_400)
    return World(
        chain=chain,
        dep=dep,
        cl=cl,
        views=Views(chain),
        token=token,
        provider=provider,
        reseller=reseller,
        attestor=attestor,
        outsider=outsider,
        buyers=(buyer1, buyer2),
        arbiter=arbiter,
        treasury=treasury,
        stranger=stranger,
        offers=offers,
        offer_info={oid: cl.offer(oid) for oid in offers},
        snapshot=chain.snapshot(),
    )


@dataclass
class Meter:
    """The attestor's side of one lease: the last report it signed that the chain accepted."""

    seq: int = 0
    prev: bytes = ZERO_HASH
    end_ms: int = 0
    cum_busy: int = 0
    cum_alloc: int = 0
    cum_energy: int = 0
    cum_sm: int = 0

    @classmethod
    def after(cls, r: MeteringReport) -> "Meter":
        return cls(
            r.seq, report_struct_hash(r), r.windowEndMs, r.cumBusyMs, r.cumAllocatedMs, r.cumEnergyMj, r.cumSmActiveMs
        )


@dataclass(frozen=True)
class Seen:
    """What the last invariant pass read of a lease."""

    status: LeaseStatus
    pending: int
    frozen: int
    fees_settled: bool


@dataclass
class LeaseModel:
    """A lease as the model knows it: the attestor's chain and the settlement state (ckpt None: nothing
    settled yet, the lease's initial checkpoint, ``initial_ckpt(terms)``)."""

    lease_id: int
    offer_idx: int
    token: str
    meter: Meter = field(default_factory=Meter)
    ckpt: int | None = None
    last_hash: bytes = ZERO_HASH
    last_signed: tuple[MeteringReport, bytes] | None = None  # the last settled report and its signature
    older: LeaseState | None = None  # the state before the last settlement (stale since)


def pending_timestamp(chain: Chain) -> int:
    """Timestamp the next transaction's block carries (the in-process chain mines the pending block)."""
    return int(chain.w3.eth.get_block("pending")["timestamp"])


def energy_cap(cap_ms: int) -> int:
    """The escrow's energy bound for ``cap_ms`` GPU-ms: power cap × time + 5 %, in mJ."""
    return MAX_POWER_MW * cap_ms * 10_500 // 10_000_000


CALLS = {"steps": 0, "examples": 0}
"""What this run of the machine did (printed in pytest's summary by conftest.py)."""


class EscrowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = world()
        self.w.chain.revert(self.w.snapshot)
        self.cl = self.w.cl
        self.leases: dict[int, LeaseModel] = {}
        self.paid_in = {ETH: 0, self.w.token.address: 0}
        self.paid_out = {ETH: 0, self.w.token.address: 0}
        self.counts: dict[str, int] = {}
        self.checked_block = -1
        self.live_rights: dict[int, int] = {}
        self.seen: dict[int, Seen] = {}
        self.credits: dict[tuple[str, str], int] = {}

    # --- helpers ---------------------------------------------------------------------------------------

    def now(self) -> int:
        return self.w.chain.now()

    def advance_to(self, timestamp_s: int) -> None:
        """Time travel to ``timestamp_s`` or, if that is not ahead of the pending block, just past it."""
        self.w.chain.time_travel(max(timestamp_s, self.now() + 2))

    def bump(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def expect(
        self, fn: Callable[[], TxResult], errors: Collection[str], *, must_fail: bool = False, may_fail: bool = False
    ) -> TxResult | None:
        """Run ``fn``: it must succeed, or (may_fail/must_fail) revert with one of ``errors``."""
        try:
            res = fn()
        except ContractRevert as e:
            assert (must_fail or may_fail) and e.name in errors, f"unexpected revert {e}"
            self.bump("rejected")
            self.bump(f"rejected.{e.name}")
            return None
        assert not must_fail, f"expected one of {sorted(errors)}, call succeeded"
        return res

    # The invariant pass reads every lease after each state change; rules and preconditions use that
    # view (``seen``) instead of re-reading the chain.

    def with_status(self, *statuses: LeaseStatus) -> list[int]:
        return [i for i, s in sorted(self.seen.items()) if s.status in statuses]

    def pick(self, data: st.DataObject, ids: list[int]) -> LeaseModel | None:
        if not ids:
            return None
        return self.leases[data.draw(st.sampled_from(ids), label="lease")]

    def free_offers(self) -> list[int]:
        live = {self.leases[i].offer_idx for i in self.with_status(*LIVE)}
        return [i for i in range(len(self.w.offers)) if i not in live]

    def disputable(self) -> list[int]:
        return [i for i, s in sorted(self.seen.items()) if s.pending > 0 and s.frozen == 0]

    def frozen(self) -> list[int]:
        return [i for i, s in sorted(self.seen.items()) if s.frozen > 0]

    def pending(self) -> list[int]:
        return [i for i, s in sorted(self.seen.items()) if s.pending > 0]

    def token_of(self, idx: int) -> str:
        return self.w.token.address if idx == 2 else ETH

    def stake_total(self, token: str) -> int:
        s = self.cl.stake_of(self.w.provider, token)
        return s.bonded + s.unbonding

    # --- chain reads for the rules (fast path, same dataclasses as the client) --------------------------

    def lease(self, lease_id: int) -> LeaseInfo:
        v = self.w.views.call(self.cl.escrow, "lease", lease_id)
        return LeaseInfo(
            lease_id,
            v[0],
            v[1],
            to_checksum_address(v[2]),
            to_checksum_address(v[3]),
            to_checksum_address(v[4]),
            to_checksum_address(v[5]),
            LeaseStatus(v[6]),
            BillingMode(v[7]),
            *v[8:],
        )

    def terms(self, lease_id: int) -> int:
        return int(self.w.views.call(self.cl.escrow, "leaseTerms", [lease_id])[0][0])

    def state(self, lm: LeaseModel) -> LeaseState:
        """The lease state the model holds (terms read from the chain)."""
        t = self.terms(lm.lease_id)
        return LeaseState(lm.lease_id, t, initial_ckpt(t) if lm.ckpt is None else lm.ckpt, lm.last_hash)

    def state_hash(self, lease_id: int) -> bytes:
        return bytes(self.w.views.call(self.cl.escrow, "stateHash", lease_id))

    def checkpoint(self, lease_id: int) -> CheckpointInfo:
        st_ = self.state(self.leases[lease_id])
        return CheckpointInfo(*self.w.views.call(self.cl.escrow, "checkpoint", lease_id, st_.ckpt, st_.last_hash))

    def block_time(self, res: TxResult) -> int:
        return int(self.w.chain.w3.eth.get_block(res.block_number)["timestamp"])

    def rights_balance(self, holder: str, offer_id: int) -> int:
        return int(self.w.views.call(self.cl.registry, "balanceOf", holder, offer_id))

    # --- reports -------------------------------------------------------------------------------------

    def next_report(
        self, lm: LeaseModel, m: Meter, window: int, fractions: tuple[int, int, int, int], gpu_set: bytes | None = None
    ) -> MeteringReport | None:
        """The next valid report after ``m`` (window end random up to now and the lease end); counters grow
        by ``fractions`` (of 10^4: busy, allocated, energy, SM-active) of the room left under each bound (busy
        within allocated time, allocated and SM-active time within capacity, energy within the cap). None when
        no time is left. ``gpu_set``: the GPU set the report claims (default the lease's; the chain does not
        check it)."""
        ls = self.lease(lm.lease_id)
        max_to = min(self.now() * 1000, ls.end_ms)
        if max_to <= m.end_ms:
            return None
        to_ms = m.end_ms + 1 + window % (max_to - m.end_ms)
        cap = ls.gpu_count * (to_ms - ls.start_ms)
        busy, alloc, energy, sm = fractions
        cum_alloc = m.cum_alloc + (cap - m.cum_alloc) * alloc // 10**4
        cum_busy = m.cum_busy + (cum_alloc - m.cum_busy) * busy // 10**4
        cum_energy = m.cum_energy + (energy_cap(cap) - m.cum_energy) * energy // 10**4
        cum_sm = m.cum_sm + (cap - m.cum_sm) * sm // 10**4
        return MeteringReport(
            leaseId=lm.lease_id,
            seq=m.seq + 1,
            prevReportHash=m.prev,
            windowEndMs=to_ms,
            cumBusyMs=cum_busy,
            cumEnergyMj=cum_energy,
            cumAllocatedMs=cum_alloc,
            cumSmActiveMs=cum_sm,
            windowStartMs=m.end_ms,
            gpuSetHash=ls.gpu_set_hash if gpu_set is None else gpu_set,
            busyMs=cum_busy - m.cum_busy,
            smActiveMs=cum_sm - m.cum_sm,
            tensorActiveMs=(cum_sm - m.cum_sm) // 2,
            energyMj=cum_energy - m.cum_energy,
            allocatedMs=cum_alloc - m.cum_alloc,
            maxMemUsedMiB=1024,
            sampleCount=60,
            samplesRoot=SAMPLES_ROOT,
            flags=0,
            configHash=CONFIG_HASH,
        )

    def sign(self, r: MeteringReport, key: bytes | None = None, chain_id: int | None = None) -> bytes:
        digest = report_digest(r, chain_id or self.cl.chain_id, self.w.dep.escrow)
        return sign_digest(digest, key or self.w.key(self.w.attestor))

    def corrupt(
        self,
        r: MeteringReport,
        m: Meter,
        st: LeaseState,
        corruption: str | None,
        *,
        stale: LeaseState | None,
        last_signed: tuple[MeteringReport, bytes] | None,
    ) -> tuple[MeteringReport, bytes, LeaseState, str | None]:
        """Apply ``corruption`` to the valid report ``r`` (that follows ``m``, for a lease in state ``st``)
        and sign it; returns the report, its signature, the state the entry carries and the corruption
        actually applied (None: the entry is valid). ``stale``: an outdated state of the lease, if any;
        ``last_signed``: its last settled report and signature, if any."""
        key = self.w.key(self.w.attestor)
        chain_id = self.cl.chain_id
        ls = self.lease(r.leaseId)
        cap = ls.gpu_count * (r.windowEndMs - ls.start_ms)
        high_s = False
        if corruption == "wrong_signer":
            key = self.w.key(self.w.outsider)
        elif corruption == "other_chain":
            chain_id += 1
        elif corruption == "high_s":
            high_s = True
        elif corruption == "counter_down" and m.cum_alloc > 0:
            r = r.replace(cumAllocatedMs=m.cum_alloc - 1, cumBusyMs=min(r.cumBusyMs, m.cum_alloc - 1))
        elif corruption == "sm_down" and m.cum_sm > 0:
            r = r.replace(cumSmActiveMs=m.cum_sm - 1)
        elif corruption == "above_capacity":
            r = r.replace(cumAllocatedMs=cap + 1)
        elif corruption == "sm_above_capacity":
            r = r.replace(cumSmActiveMs=cap + 1)
        elif corruption == "busy_above_allocated":
            r = r.replace(cumBusyMs=r.cumAllocatedMs + 1)
        elif corruption == "window_at_start":
            r = r.replace(windowEndMs=ls.start_ms)
        elif corruption == "energy_above_cap":
            r = r.replace(cumEnergyMj=energy_cap(cap) + 1)
        elif corruption == "replay" and last_signed is not None:
            return last_signed[0], last_signed[1], st, corruption
        elif corruption == "future_window":
            r = r.replace(windowEndMs=(self.now() + 3600) * 1000)
        elif corruption == "broken_chain":  # lastReportHash given explicitly: the link is checked
            r = r.replace(prevReportHash=BAD_HASH)
        elif corruption == "broken_chain_implicit":  # omitted: the bad link stands for the last hash
            r = r.replace(prevReportHash=BAD_HASH)
            st = LeaseState(st.lease_id, st.terms, st.ckpt, BAD_HASH)
        elif corruption == "stale_state":
            st = stale if stale is not None else LeaseState(st.lease_id, st.terms, st.ckpt ^ 1 << 224, st.last_hash)
        elif corruption == "forged_terms":  # a higher price
            st = LeaseState(st.lease_id, st.terms + (1 << 120), st.ckpt, st.last_hash)
        else:
            corruption = None
        sig = self.sign(r, key, chain_id)
        if high_s:  # an s above n/2 (the compact form can carry it up to 2^255)
            sig = sig[:32] + (SECP256K1_HALF_N + 1).to_bytes(32, "big") + sig[64:]
        return r, sig, st, corruption

    def accept(
        self,
        lm: LeaseModel,
        r: MeteringReport,
        sig: bytes,
        ev: dict[str, Any],
        settled_at: int,
        before: LeaseState,
        last: bool = True,
    ) -> None:
        """Check a settled report's record (the new ckpt is the report's four counters and the block's time;
        charged = price × Δbillable / 1000, billable = the counter of the lease's billing mode) and move the
        model on: the attestor's chain and the lease state; for the ``last`` report of a lease in a transaction,
        also that the lease is Exhausted iff it billed everything."""
        ls = self.lease(lm.lease_id)
        m = lm.meter
        mode = int(ls.billing_mode)
        assert ev["leaseId"] == lm.lease_id and ev["seq"] == r.seq
        assert ev["reportHash"] == report_struct_hash(r)
        assert ev["ckpt"] == expected_ckpt(r, settled_at), "the new ckpt is not what the report implies"
        old_bill = checkpoint_billable(mode, Checkpoint.of(before.ckpt))
        new_bill = checkpoint_billable(mode, Checkpoint.of(ev["ckpt"]))
        assert old_bill == (m.cum_alloc, m.cum_busy, m.cum_sm)[mode]
        assert new_bill == (r.cumAllocatedMs, r.cumBusyMs, r.cumSmActiveMs)[mode]
        price = ls.price_per_gpu_second
        assert ev["charged"] == price * new_bill // 1000 - price * old_bill // 1000
        self.bump(f"settle.mode{mode}")
        lm.meter = Meter.after(r)
        lm.older = before
        lm.ckpt, lm.last_hash, lm.last_signed = ev["ckpt"], ev["reportHash"], (r, sig)
        if last:
            exhausted = new_bill == ls.gpu_count * ls.duration_s * 1000
            assert (ls.status == LeaseStatus.EXHAUSTED) == exhausted, "exhausted iff all escrow is billed"
        self.bump("settle")

    # --- rules -----------------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        CALLS["examples"] += 1
        assert self.cl.lease_count() == 0

    @precondition(lambda self: len(self.leases) < MAX_LEASES and self.free_offers())
    @rule(
        data=st.data(),
        buyer=st.integers(0, 1),
        duration=st.integers(60, 4 * 3600),
        delay=st.integers(5, 4 * 3600),
        resold=st.booleans(),
        start_now=st.booleans(),
    )
    def open_lease(
        self, data: st.DataObject, buyer: int, duration: int, delay: int, resold: bool, start_now: bool
    ) -> None:
        idx = data.draw(st.sampled_from(self.free_offers()), label="offer")
        oid = self.w.offers[idx]
        holder = self.w.reseller if resold else self.w.provider
        start_by = self.now() + delay
        offer = self.w.offer_info[oid]
        fits = start_by + duration <= offer.valid_until
        enough = self.rights_balance(holder, oid) >= offer.gpu_count * duration
        escrowed = offer.price_per_gpu_second * offer.gpu_count * duration
        fee = escrowed * FEE_BPS // 10_000  # no fee discount is configured
        res = self.expect(
            lambda: self.cl.open_lease(self.w.buyers[buyer], oid, holder, duration, start_by).tx,
            ("LeaseEscrowBadStartBy", "CapacityRegistryInsufficientRights"),
            must_fail=not fits or not enough,
        )
        if res is None:
            return
        ev = res.event("LeaseOpened").args
        assert ev["escrowed"] == escrowed and ev["fee"] == fee and ev["holder"] == holder
        lm = LeaseModel(int(ev["leaseId"]), idx, self.token_of(idx))
        self.leases[lm.lease_id] = lm
        self.paid_in[lm.token] += escrowed + fee
        self.bump("open")
        if start_now and delay > 2:  # the provider starts it right away
            self.cl.activate_lease(self.w.provider, lm.lease_id)
            lm.meter = Meter(end_ms=self.lease(lm.lease_id).start_ms)
            self.bump("activate")

    @precondition(lambda self: self.with_status(LeaseStatus.OPEN))
    @rule(data=st.data(), by_attestor=st.booleans())
    def activate(self, data: st.DataObject, by_attestor: bool) -> None:
        lm = self.pick(data, self.with_status(LeaseStatus.OPEN))
        if lm is None:
            return
        ls = self.lease(lm.lease_id)
        sender = self.w.attestor if by_attestor else self.w.provider
        res = self.expect(
            lambda: self.cl.activate_lease(sender, lm.lease_id),
            ("LeaseEscrowStartByPassed",),
            must_fail=self.now() > ls.start_by,
            may_fail=self.now() + 2 >= ls.start_by,  # the tx's block may be a second past `now`
        )
        if res is not None:
            ls = self.lease(lm.lease_id)
            assert ls.status == LeaseStatus.ACTIVE and ls.end_ms == ls.start_ms + ls.duration_s * 1000
            assert res.event("LeaseActivated").args["startMs"] == ls.start_ms
            lm.meter = Meter(end_ms=ls.start_ms)
            self.bump("activate")

    @precondition(lambda self: self.with_status(LeaseStatus.ACTIVE))
    @rule(
        data=st.data(),
        window=st.integers(1, 10**9),
        fractions=st.tuples(*(st.integers(0, 10**4) for _ in range(4))),
        corruption=st.one_of(st.none(), st.sampled_from(sorted(CORRUPTIONS))),
        other_gpus=st.booleans(),
    )
    def settle(
        self,
        data: st.DataObject,
        window: int,
        fractions: tuple[int, int, int, int],
        corruption: str | None,
        other_gpus: bool = False,
    ) -> None:
        """settle() one report (``other_gpus``: about a GPU set that is not the lease's, which the chain
        does not check: it is the auditors' to compare)."""
        lm = self.pick(data, self.with_status(LeaseStatus.ACTIVE))
        if lm is None:
            return
        if self.now() * 1000 <= lm.meter.end_ms:
            self.advance_to(lm.meter.end_ms // 1000 + 1 + window % 900)
        valid = self.next_report(lm, lm.meter, window, fractions, gpu_set=OTHER_GPUS if other_gpus else None)
        if valid is None:
            return
        st_before = self.state(lm)
        r, sig, st_, corruption = self.corrupt(
            valid, lm.meter, st_before, corruption, stale=lm.older, last_signed=lm.last_signed
        )
        before = self.checkpoint(lm.lease_id)
        committed = self.state_hash(lm.lease_id)
        errors = CORRUPTIONS[corruption] if corruption else ()
        res = self.expect(
            lambda: self.cl.settle(self.w.stranger, r, sig, state=st_), errors, must_fail=corruption is not None
        )
        if res is None:
            assert self.checkpoint(lm.lease_id) == before, "a rejected report changed the checkpoint"
            assert self.state_hash(lm.lease_id) == committed, "a rejected report changed the commitment"
            return
        (ev,) = res.named("CheckpointSettled")
        self.accept(lm, r, sig, ev.args, self.block_time(res), st_before)
        assert self.checkpoint(lm.lease_id).charged == before.charged + ev.args["charged"]
        if other_gpus:
            self.bump("settle.other_gpus")

    @precondition(lambda self: self.with_status(LeaseStatus.ACTIVE))
    @rule(
        picks=st.lists(st.integers(0, MAX_LEASES - 1), min_size=1, max_size=4),
        windows=st.lists(st.integers(1, 10**9), min_size=4, max_size=4),
        fractions=st.tuples(*(st.integers(0, 10**4) for _ in range(4))),
        corruption=st.one_of(st.none(), st.sampled_from(sorted(CORRUPTIONS))),
        bad_pick=st.integers(0, MAX_LEASES - 1),
    )
    def settle_batch(
        self,
        picks: list[int],
        windows: list[int],
        fractions: tuple[int, int, int, int],
        corruption: str | None,
        bad_pick: int,
    ) -> None:
        """One settleBatch of the next reports of the Active leases ``picks`` selects (a lease picked twice
        gets two consecutive entries, the second carrying the state after the first, whose ckpt holds the
        block's time), optionally followed by a corrupted entry for one of them, which must be skipped
        (CheckpointSkipped with its error's selector) without failing the batch."""
        active = self.with_status(LeaseStatus.ACTIVE)
        if not active:
            return
        self.advance_to(self.now() + 60 * len(picks))
        t = pending_timestamp(self.w.chain)
        meters: dict[int, Meter] = {}
        states: dict[int, LeaseState] = {}
        last_signed: dict[int, tuple[MeteringReport, bytes]] = {}
        exhausted: set[int] = set()
        valid: list[tuple[int, MeteringReport, bytes, LeaseState]] = []
        for p, w in zip(picks, windows):
            lid = active[p % len(active)]
            if lid in exhausted:
                continue  # nothing can follow the report that bills all of the escrow
            lm = self.leases[lid]
            m = meters.get(lid, lm.meter)
            st_ = states.get(lid) or self.state(lm)
            r = self.next_report(lm, m, w, fractions)
            if r is None:
                continue
            sig = self.sign(r)
            valid.append((lid, r, sig, st_))
            meters[lid] = Meter.after(r)
            states[lid] = LeaseState(lid, st_.terms, expected_ckpt(r, t), report_struct_hash(r))
            last_signed[lid] = (r, sig)
            ls = self.lease(lid)
            bill = (r.cumAllocatedMs, r.cumBusyMs, r.cumSmActiveMs)[int(ls.billing_mode)]
            if bill == ls.gpu_count * ls.duration_s * 1000:
                exhausted.add(lid)
        entries = [(r, sig, st_) for _, r, sig, st_ in valid]
        bad: tuple[int, str] | None = None
        candidates = [i for i in active if i not in exhausted]
        if corruption is not None and candidates:
            lid = candidates[bad_pick % len(candidates)]
            lm = self.leases[lid]
            m = meters.get(lid, lm.meter)
            r = self.next_report(lm, m, windows[-1], fractions)
            if r is not None:
                # once this batch settled the lease, its state from before the batch is the stale one
                stale = self.state(lm) if lid in states else lm.older
                st_ = states.get(lid) or self.state(lm)
                r, sig, st_, applied = self.corrupt(
                    r, m, st_, corruption, stale=stale, last_signed=last_signed.get(lid, lm.last_signed)
                )
                if applied is not None:
                    entries.append((r, sig, st_))
                    bad = (lid, applied)
        if not entries:
            return
        assert pending_timestamp(self.w.chain) == t
        res = self.cl._result(
            self.cl.tx.send(self.cl.escrow.functions.settleBatch(encode_entries(entries)), self.w.stranger)
        )
        assert self.block_time(res) == t
        settled = res.named("CheckpointSettled")
        skipped = res.named("CheckpointSkipped")
        assert len(settled) == len(valid), "a valid entry was not settled"
        last_of = {lid: i for i, (lid, *_rest) in enumerate(valid)}
        for i, ((lid, r, sig, st_), ev) in enumerate(zip(valid, settled)):
            assert ev.args["recordIndex"] == i
            self.accept(self.leases[lid], r, sig, ev.args, t, st_, last=last_of[lid] == i)
        if bad is not None:
            assert len(skipped) == 1 and skipped[0].args["leaseId"] == bad[0]
            assert error_name(skipped[0].args["reason"]) in CORRUPTIONS[bad[1]], (bad, skipped[0].args)
            self.bump("rejected")
            self.bump(f"rejected.batch.{bad[1]}")
        else:
            assert not skipped
        if len(last_of) < len(valid):
            self.bump("settle_batch.chained")

    @precondition(lambda self: self.with_status(*LIVE))
    @rule(data=st.data(), seconds=st.integers(1, 3600))
    def top_up(self, data: st.DataObject, seconds: int) -> None:
        lm = self.pick(data, self.with_status(*LIVE))
        if lm is None:
            return
        ls = self.lease(lm.lease_id)
        start_s = ls.start_ms // 1000 if ls.status == LeaseStatus.ACTIVE else ls.start_by
        if start_s + ls.duration_s + seconds > self.w.offer_info[ls.offer_id].valid_until:
            return
        if self.rights_balance(ls.holder, ls.offer_id) < ls.gpu_count * seconds:
            return
        amount = ls.price_per_gpu_second * ls.gpu_count * seconds
        fee = (ls.escrowed + amount) * ls.fee_bps // 10_000 - ls.fee_held
        res = self.cl.top_up(ls.buyer, lm.lease_id, amount)
        assert res.event("ToppedUp").args["fee"] == fee
        after = self.lease(lm.lease_id)
        assert after.duration_s == ls.duration_s + seconds and after.escrowed == ls.escrowed + amount
        self.paid_in[lm.token] += amount + fee
        self.bump("top_up")

    @precondition(lambda self: self.with_status(*LIVE))
    @rule(data=st.data(), by_buyer=st.booleans(), at_end=st.booleans())
    def close(self, data: st.DataObject, by_buyer: bool, at_end: bool) -> None:
        """The buyer closes (any time), or a stranger tries (allowed once the lease ended; ``at_end``:
        after letting it end)."""
        lm = self.pick(data, self.with_status(*LIVE))
        if lm is None:
            return
        ls = self.lease(lm.lease_id)
        if at_end and ls.status == LeaseStatus.ACTIVE and self.now() * 1000 < ls.end_ms:
            self.advance_to(-(-ls.end_ms // 1000))
        sender = ls.buyer if by_buyer else self.w.stranger
        ended = ls.status == LeaseStatus.ACTIVE and self.now() * 1000 >= ls.end_ms
        near_end = ls.status == LeaseStatus.ACTIVE and (self.now() + 2) * 1000 >= ls.end_ms
        res = self.expect(
            lambda: self.cl.close_lease(sender, lm.lease_id),
            ("LeaseEscrowNotEnded",),
            must_fail=not by_buyer and not near_end,
            may_fail=not by_buyer and not ended,
        )
        if res is not None:
            ev = res.event("LeaseClosed").args
            assert ev["charged"] == self.checkpoint(lm.lease_id).charged
            assert ev["refund"] == ls.escrowed - ev["charged"]
            assert ev["rightsBurned"] + ev["rightsReleased"] == ls.gpu_count * ls.duration_s
            self.bump("close")

    @precondition(lambda self: self.with_status(LeaseStatus.OPEN))
    @rule(data=st.data(), late=st.booleans())
    def expire(self, data: st.DataObject, late: bool) -> None:
        """Anyone expires an Open lease (``late``: after letting its start deadline pass; otherwise it is
        refused while the deadline is ahead)."""
        lm = self.pick(data, self.with_status(LeaseStatus.OPEN))
        if lm is None:
            return
        ls = self.lease(lm.lease_id)
        if late and self.now() <= ls.start_by:
            self.advance_to(ls.start_by + 1)
        res = self.expect(
            lambda: self.cl.expire_lease(self.w.stranger, lm.lease_id),
            ("LeaseEscrowStartByNotPassed",),
            must_fail=self.now() + 2 <= ls.start_by,
            may_fail=self.now() <= ls.start_by,
        )
        if res is not None:
            assert res.event("LeaseExpired").args["refund"] == ls.escrowed
            self.bump("expire")

    @precondition(lambda self: self.disputable())
    @rule(data=st.data())
    def dispute(self, data: st.DataObject) -> None:
        lm = self.pick(data, self.disputable())
        if lm is None:
            return
        ck = self.checkpoint(lm.lease_id)
        ends = ck.last_settled_at + CHALLENGE_S
        buyer = self.lease(lm.lease_id).buyer
        res = self.expect(
            lambda: self.cl.dispute(buyer, lm.lease_id),
            ("LeaseEscrowChallengePeriodOver",),
            must_fail=self.now() >= ends,
            may_fail=self.now() + 2 >= ends,
        )
        if res is not None:
            assert res.event("DisputeOpened").args["amount"] == ck.pending
            self.bump("dispute")

    @precondition(lambda self: self.frozen())
    @rule(data=st.data(), buyer_share_bps=st.integers(0, 10_000), fault=st.booleans())
    def resolve(self, data: st.DataObject, buyer_share_bps: int, fault: bool) -> None:
        lm = self.pick(data, self.frozen())
        if lm is None:
            return
        ck = self.checkpoint(lm.lease_id)
        stake_before = self.stake_total(lm.token)
        res = self.cl.resolve_dispute(self.w.arbiter, lm.lease_id, buyer_share_bps, fault)
        ev = res.event("DisputeResolved").args
        assert ev["buyerShare"] + ev["providerShare"] == ck.frozen
        assert ev["buyerShare"] == ck.frozen * buyer_share_bps // 10_000
        slashed = stake_before - self.stake_total(lm.token)
        assert ev["slashed"] == slashed == (min(ck.frozen * 5_000 // 10_000, stake_before) if fault else 0)
        self.paid_in[lm.token] += slashed
        self.bump("resolve")

    @precondition(lambda self: self.pending())
    @rule(data=st.data(), wait_out=st.booleans())
    def release(self, data: st.DataObject, wait_out: bool) -> None:
        """Anyone releases pending earnings (``wait_out``: after letting the challenge period pass)."""
        lm = self.pick(data, self.pending())
        if lm is None:
            return
        ck = self.checkpoint(lm.lease_id)
        ends = ck.last_settled_at + CHALLENGE_S
        if wait_out and self.now() < ends:
            self.advance_to(ends)
        errors = ("LeaseEscrowDisputeOpen",) if ck.frozen else ("LeaseEscrowInChallengePeriod",)
        res = self.expect(
            lambda: self.cl.release_earnings(self.w.stranger, lm.lease_id),
            errors,
            must_fail=bool(ck.frozen) or self.now() + 2 < ends,
            may_fail=self.now() < ends,
        )
        if res is not None:
            ev = res.event("EarningsReleased").args
            assert ev["amount"] == ck.pending and ev["holder"] == self.lease(lm.lease_id).holder
            self.bump("release")

    @precondition(lambda self: any(self.credits.values()))
    @rule(data=st.data(), who=st.integers(0, 4), in_token=st.booleans(), credited=st.booleans())
    def withdraw(self, data: st.DataObject, who: int, in_token: bool, credited: bool) -> None:
        """An account pulls its balance (``credited``: one that has something to withdraw; otherwise any
        account, which is refused when it has nothing)."""
        if credited:
            pairs = sorted(k for k, v in self.credits.items() if v)
            account, token = data.draw(st.sampled_from(pairs), label="credited")
        else:
            account = self.w.actors[who]
            token = self.w.token.address if in_token else ETH
        due = self.credits.get((account, token), 0)
        before = self.cl.balance(token, account)
        res = self.expect(
            lambda: self.cl.withdraw(account, token), ("LeaseEscrowNothingToWithdraw",), must_fail=due == 0
        )
        if res is None:
            return
        assert res.event("Withdrawn").args["amount"] == due
        assert self.cl.withdrawable(account, token) == 0
        gas = 0
        if token == ETH:
            receipt = self.w.chain.w3.eth.get_transaction_receipt(res.tx_hash)
            gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert self.cl.balance(token, account) == before + due - gas
        self.paid_out[token] += due
        self.bump("withdraw")

    @rule(seconds=st.one_of(st.integers(1, 600), st.sampled_from([1800, 3600, 3 * 3600])))
    def time_travel(self, seconds: int) -> None:
        self.advance_to(self.now() + seconds)

    # --- invariants ------------------------------------------------------------------------------------

    @invariant()
    def money_and_rights_conserved(self) -> None:
        # The invariants are functions of the chain state (and of the model's flows, which only move with
        # a transaction): re-check only when a block was mined since the last check.
        CALLS["steps"] += 1  # hypothesis checks invariants after the initialization and after every rule
        block = self.w.chain.w3.eth.block_number
        if block == self.checked_block:
            return
        self.checked_block = block
        self.check_money()
        self.check_rights()

    def check_money(self) -> None:
        v, w = self.w.views, self.w
        escrow, registry = self.cl.escrow, self.cl.registry
        owed = {ETH: 0, w.token.address: 0}
        self.live_rights = {}
        ids = sorted(self.leases)
        terms_list, hashes = v.call(escrow, "leaseTerms", ids) if ids else ([], [])
        for lid, terms, committed in zip(ids, terms_list, hashes):
            lm = self.leases[lid]
            # the model's state is the escrow's commitment
            ckpt = initial_ckpt(terms) if lm.ckpt is None else lm.ckpt
            assert commitment(terms, ckpt, lm.last_hash) == bytes(committed), f"lease {lid}: state != commitment"
            ls = v.call(escrow, "lease", lid)
            ck = v.call(escrow, "checkpoint", lid, ckpt, lm.last_hash)
            status, escrowed, fee_held, fees_settled = LeaseStatus(ls[6]), ls[16], ls[17], ls[18]
            charged, paid, pending, frozen, refunded = ck[7], ck[8], ck[9], ck[10], ck[11]
            # nobody is paid beyond escrow
            assert charged <= escrowed, f"lease {lid}: charged {charged} > escrowed {escrowed}"
            assert paid + refunded + pending == charged, f"lease {lid}: {paid}+{refunded}+{pending} != {charged}"
            assert frozen <= pending
            if status in (LeaseStatus.OPEN, LeaseStatus.EXPIRED):
                assert charged == 0
            if status == LeaseStatus.EXHAUSTED:
                assert charged == escrowed
            if status in LIVE:
                self.live_rights[w.offers[lm.offer_idx]] = ls[8] * ls[11]  # gpuCount × durationS
            if fees_settled and not (lid in self.seen and self.seen[lid].fees_settled):
                self.bump("fees_settled" if paid == 0 else "fees_settled_with_treasury_share")
            self.seen[lid] = Seen(status, pending, frozen, fees_settled)
            uncharged = escrowed - charged if status in LIVE else 0
            owed[lm.token] += uncharged + (0 if fees_settled else fee_held) + pending
        for token in owed:
            for a in w.actors:
                self.credits[(a, token)] = v.call(escrow, "withdrawable", a, token)
                owed[token] += self.credits[(a, token)]
        eth_balance = w.chain.w3.eth.get_balance(w.dep.escrow)
        token_balance = v.call(w.token, "balanceOf", w.dep.escrow)
        for token, balance in ((ETH, eth_balance), (w.token.address, token_balance)):
            flow = self.paid_in[token] - self.paid_out[token]
            assert balance == owed[token], f"{token}: escrow balance {balance} != owed {owed[token]}"
            assert balance == flow, f"{token}: escrow balance {balance} != paid in - paid out {flow}"
        # the registry holds exactly the provider's stakes
        registry_balances = (
            (ETH, w.chain.w3.eth.get_balance(w.dep.registry)),
            (w.token.address, v.call(w.token, "balanceOf", w.dep.registry)),
        )
        for token, balance in registry_balances:
            bonded, unbonding, _ = v.call(registry, "stakeOf", w.provider, token)
            assert balance == bonded + unbonding, f"{token}: registry balance {balance} != stake {bonded + unbonding}"

    def check_rights(self) -> None:
        """Per offer: minted = held + locked + burned, and locked = the live lease's gpuCount × durationS."""
        v, w = self.w.views, self.w
        accounts = [a for a in w.actors for _ in w.offers]
        ids = [o for _ in w.actors for o in w.offers]
        held = v.call(self.cl.registry, "balanceOfBatch", accounts, ids)
        for oid in w.offers:
            minted, locked, burned = v.call(self.cl.registry, "rightsOf", oid)
            holders = sum(h for h, i in zip(held, ids) if i == oid)
            assert minted == holders + locked + burned, f"offer {oid}: {minted} != {holders}+{locked}+{burned}"
            want = self.live_rights.get(oid, 0)
            assert locked == want, f"offer {oid}: locked {locked} != live lease rights {want}"


EscrowMachine.TestCase.settings = settings(
    # ~80 ms a rule on py-evm: about 1,000 calls, 1.5 CPU-minutes; forge's invariant run carries the bulk of
    # the fuzzing budget (contracts/foundry.toml)
    max_examples=50,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
TestEscrowStateMachine = EscrowMachine.TestCase


def test_state_machine_scripted_run_rejects_every_corruption() -> None:
    """A fixed run through the machine's rules: a busy offer is refused, and every corruption the machine
    draws is rejected with its named error, by settle and by settleBatch (so a corruption that silently
    stopped applying cannot hide in the random mix); the invariants hold after every step."""
    m = EscrowMachine()
    m.start()
    check = m.money_and_rights_conserved
    m.open_lease(_Fixed(0), 0, 3600, 600, False, True)
    check()
    lid = max(m.leases)
    with pytest.raises(ContractRevert) as busy:
        m.cl.open_lease(m.w.buyers[1], m.w.offers[0], m.w.provider, 60, m.now() + 600)
    assert busy.value.name == "LeaseEscrowOfferBusy"
    m.time_travel(300)
    check()
    m.settle(_Fixed(lid), 59_000, (5_000,) * 4, None)  # seq 1, counters > 0
    check()
    assert m.counts["settle"] == 1
    for corruption in sorted(CORRUPTIONS):
        rejected = m.counts.get("rejected", 0)
        m.settle(_Fixed(lid), 30_000, (5_000,) * 4, corruption)
        check()
        m.settle_batch([0], [10_000] * 4, (5_000,) * 4, corruption, 0)
        check()
        assert m.counts["rejected"] == rejected + 2, corruption
        assert m.counts[f"rejected.batch.{corruption}"] == 1
    assert m.counts["settle"] == 1 + len(CORRUPTIONS)  # one valid report per batch
    # a report about GPUs that are not the lease's settles (the auditors compare the GPU set)
    m.settle(_Fixed(lid), 20_000, (5_000,) * 4, None, True)
    check()
    assert m.counts["settle.other_gpus"] == 1 and m.lease(lid).gpu_set_hash != OTHER_GPUS
    assert m.cl.lease_state(lid) == m.state(m.leases[lid])  # the client rebuilds the model's state
    m.dispute(_Fixed(lid))
    check()
    m.resolve(_Fixed(lid), 2_500, True)
    check()
    m.close(_Fixed(lid), True, False)
    check()
    # a metered lease billed to the last millisecond by one batch of two reports is Exhausted
    m.open_lease(_Fixed(1), 1, 120, 600, False, True)
    check()
    lid2 = max(m.leases)
    ls2 = m.lease(lid2)
    m.advance_to(ls2.end_ms // 1000 + 1)
    check()
    m.settle_batch([0, 0], [1_000, ls2.end_ms - ls2.start_ms - 1_002, 1, 1], (10_000, 10_000, 0, 0), None, 0)
    check()
    assert m.counts["settle_batch.chained"] == 1
    assert m.lease(lid2).status == LeaseStatus.EXHAUSTED
    assert m.checkpoint(lid2).charged == ls2.escrowed
    m.release(_Fixed(lid2), True)  # after its challenge period: earnings to the holder, fee split
    check()
    assert m.lease(lid2).fees_settled
    # an SM-active lease: its first report bills half its SM-active capacity so far and no busy or allocated
    # time at all (SM activity is bounded by capacity alone); the next one bills all of it: Exhausted
    m.open_lease(_Fixed(3), 0, 120, 600, False, True)
    check()
    lid3 = max(m.leases)
    ls3 = m.lease(lid3)
    assert ls3.billing_mode == BillingMode.SM_ACTIVE
    m.advance_to(ls3.start_ms // 1000 + 60)
    m.settle(_Fixed(lid3), 30_000, (0, 0, 0, 5_000), None)
    check()
    cp3 = m.checkpoint(lid3)
    assert cp3.cum_allocated_ms == cp3.cum_busy_ms == 0 < cp3.cum_sm_active_ms
    assert cp3.charged == ls3.price_per_gpu_second * cp3.cum_sm_active_ms // 1000 > 0
    m.advance_to(ls3.end_ms // 1000 + 1)
    m.settle(_Fixed(lid3), ls3.end_ms - m.leases[lid3].meter.end_ms - 1, (0, 0, 0, 10_000), None)  # to the end
    check()
    assert m.lease(lid3).status == LeaseStatus.EXHAUSTED and m.checkpoint(lid3).charged == ls3.escrowed
    assert m.counts["settle.mode2"] == 2
    m.release(_Fixed(lid3), True)
    check()
    for who in range(len(m.w.actors)):
        if m.credits.get((m.w.actors[who], ETH)):
            m.withdraw(_Fixed((m.w.actors[who], ETH)), who, False, True)
            check()
    assert m.counts["dispute"] == m.counts["resolve"] == m.counts["close"] == 1
    assert m.counts["settle"] == 1 + len(CORRUPTIONS) + 1 + 2 + 2
    assert m.counts["withdraw"] >= 3  # buyer (refund + slash), holder, treasury
    assert m.w.chain.w3.eth.get_balance(m.w.dep.escrow) == 0


class _Fixed:
    """A stand-in for hypothesis' data object that always draws ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        return self.value
