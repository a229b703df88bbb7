"""Fixtures: one deployed suite on the in-process chain, with providers, nodes, offers and a test token;
every test starts from a snapshot of it and is reverted afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

from ledger.chain.backends import Chain, connect
from tests.support.ledger_client import ETH, BillingMode, LedgerClient, LeaseInfo, NodeFeature, TxResult
from ledger.chain.compiler import load_artifact
from ledger.chain.deployment import Deployment
from ledger.chain.deploy import deploy_suite
from ledger.chain.reverts import ContractRevert
from ledger.protocol import ZERO_HASH, MeteringReport, gpu_uuid_hash, report_digest, report_struct_hash
from ledger.chain.signing import sign_digest
from ledger.protocol.settlement import LeaseState, encode_entries

PRICE = 10**9  # wei per GPU-second
TOKEN_PRICE = 1_000  # token units per GPU-second
MAX_POWER_MW = 700_000
CHALLENGE_S = 3600
UNBONDING_S = 86_400
FEE_BPS = 250
SAMPLES_ROOT = bytes.fromhex("ab" * 32)
CONFIG_HASH = bytes.fromhex("cd" * 32)


@dataclass
class Meter:
    """Builds a lease's protocol v2 report chain like an attestor would (cumulative counters, hash chain)."""

    world: "World"
    lease: LeaseInfo
    key: bytes
    seq: int = 0
    prev: bytes = ZERO_HASH
    end_ms: int = 0
    cum_busy: int = 0
    cum_alloc: int = 0
    cum_energy: int = 0
    cum_sm: int = 0
    history: list[MeteringReport] = field(default_factory=list)

    def build(
        self,
        window_ms: int = 60_000,
        *,
        busy_bps: int = 8_000,
        alloc_bps: int = 10_000,
        sm_bps: int = 6_000,
        power_mw: int = 300_000,
        seq: int | None = None,
        **override: Any,
    ) -> MeteringReport:
        """The next report (not yet accepted): window of ``window_ms`` after the previous one; of its GPU time
        ``alloc_bps`` allocated, ``busy_bps`` busy (at most the allocated time: busy time is time the driver's
        samples covered) and ``sm_bps`` SM-active (GPM)."""
        g = self.lease.gpu_count
        alloc = window_ms * g * alloc_bps // 10_000
        busy = min(window_ms * g * busy_bps // 10_000, alloc)
        sm = window_ms * g * sm_bps // 10_000
        energy = window_ms * g * power_mw // 1000
        fields_: dict[str, Any] = dict(
            leaseId=self.lease.lease_id,
            seq=self.seq + 1 if seq is None else seq,
            prevReportHash=self.prev,
            windowEndMs=self.end_ms + window_ms,
            cumBusyMs=self.cum_busy + busy,
            cumEnergyMj=self.cum_energy + energy,
            cumAllocatedMs=self.cum_alloc + alloc,
            cumSmActiveMs=self.cum_sm + sm,
            windowStartMs=self.end_ms,
            gpuSetHash=self.lease.gpu_set_hash,
            busyMs=busy,
            smActiveMs=sm,
            tensorActiveMs=sm // 2,
            energyMj=energy,
            allocatedMs=alloc,
            maxMemUsedMiB=1024,
            sampleCount=60,
            samplesRoot=SAMPLES_ROOT,
            flags=0,
            configHash=CONFIG_HASH,
        )
        fields_.update(override)
        return MeteringReport(**fields_)

    def accept(self, r: MeteringReport) -> None:
        """Record ``r`` as emitted (the attestor's chain moves on whether or not it is settled)."""
        self.seq = r.seq
        self.prev = report_struct_hash(r)
        self.end_ms = r.windowEndMs
        self.cum_busy, self.cum_alloc, self.cum_energy = r.cumBusyMs, r.cumAllocatedMs, r.cumEnergyMj
        self.cum_sm = r.cumSmActiveMs
        self.history.append(r)

    def sign(self, r: MeteringReport, key: bytes | None = None, chain_id: int | None = None, contract: str | None = None) -> bytes:
        digest = report_digest(r, chain_id or self.world.chain.chain_id, contract or self.world.dep.escrow)
        return sign_digest(digest, key or self.key)

    def next(self, window_ms: int = 60_000, **kw: Any) -> tuple[MeteringReport, bytes]:
        """Build, accept and sign the next report."""
        r = self.build(window_ms, **kw)
        self.accept(r)
        return r, self.sign(r)


@dataclass
class World:
    chain: Chain
    dep: Deployment
    cl: LedgerClient
    admin: str
    provider: str
    provider2: str
    attestor: str
    attestor2: str
    buyer: str
    buyer2: str
    relayer: str
    arbiter: str
    treasury: str
    node: int  # provider, 6 GPUs, GPM
    node2: int  # provider2, 2 GPUs, no GPM
    offer_reserved: int  # provider, GPUs 0-1, ETH, reserved
    offer_metered: int  # provider, GPUs 2-3, ETH, metered
    offer_token: int  # provider2, GPU 0, token, reserved
    offer_sm: int  # provider, GPUs 4-5, ETH, SM-active
    token: str
    token_contract: Any
    uuids: list[bytes]
    uuids2: list[bytes]
    t0: int

    @property
    def w3(self) -> Any:
        return self.chain.w3

    def key(self, account: str) -> bytes:
        return self.chain.private_keys[account]

    def open_active(self, offer_id: int | None = None, duration_s: int = 3600, buyer: str | None = None) -> LeaseInfo:
        oid = self.offer_reserved if offer_id is None else offer_id
        o = self.cl.offer(oid)
        lid = self.cl.open_lease(buyer or self.buyer, oid, o.provider, duration_s, self.chain.now() + 600).id
        self.cl.activate_lease(o.provider, lid)
        return self.cl.lease(lid)

    def meter(self, lease: LeaseInfo) -> Meter:
        att = self.attestor if lease.provider == self.provider else self.attestor2
        return Meter(world=self, lease=lease, key=self.key(att), end_ms=lease.start_ms)

    def advance_to_ms(self, ms: int) -> None:
        """Make the chain's time at least ``ms`` (rounded up to the second)."""
        target = -(-ms // 1000)
        if self.chain.now() < target:
            self.chain.time_travel(target)

    def deploy(self, name: str, *args: Any) -> Any:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        h = factory.constructor(*args).transact({"from": self.admin})
        addr = self.w3.eth.wait_for_transaction_receipt(h)["contractAddress"]
        return self.w3.eth.contract(address=addr, abi=art["abi"])

    def send(self, fn: Any, sender: str, value: int = 0) -> Any:
        return self.cl.tx.send(fn, sender, value)


def expected_ckpt(r: MeteringReport, settled_at: int) -> int:
    """The ckpt word the escrow must store after settling ``r`` at ``settled_at`` (unix s), written out
    from ILeaseEscrow's header: seq[31:0] | cumBusyMs[79:32] | cumAllocatedMs[127:80] | cumEnergyMj[175:128]
    | cumSmActiveMs[223:176] | settledAt[255:224]."""
    return (
        r.seq
        | r.cumBusyMs << 32
        | r.cumAllocatedMs << 80
        | r.cumEnergyMj << 128
        | r.cumSmActiveMs << 176
        | settled_at << 224
    )


def state_after(state: LeaseState, r: MeteringReport, settled_at: int) -> LeaseState:
    """The lease state once ``r`` is settled at ``settled_at`` (terms unchanged unless the lease ended)."""
    return LeaseState(state.lease_id, state.terms, expected_ckpt(r, settled_at), report_struct_hash(r))


def pending_timestamp(world: "World") -> int:
    """Timestamp the next transaction's block will carry (the in-process chain mines it as it is pending)."""
    return int(world.w3.eth.get_block("pending")["timestamp"])


def send_entries(world: "World", data: bytes, *, strict: bool = False, sender: str | None = None) -> TxResult:
    """Send raw settlement entries (``settle`` if strict, else ``settleBatch``); decoded like the client's."""
    fns = world.cl.escrow.functions
    fn = fns.settle(data) if strict else fns.settleBatch(data)
    return world.cl._result(world.cl.tx.send(fn, sender or world.relayer))


def settle_in_one_batch(world: "World", reports: list[MeteringReport], sigs: list[bytes]) -> TxResult:
    """Settle ``reports`` (several of one lease allowed, in order) in ONE settleBatch: each entry carries
    the state its lease will have after the entries before it, whose ckpt holds the block's timestamp
    (known in advance on the in-process chain). Asserts that every entry settled."""
    t = pending_timestamp(world)
    states: dict[int, LeaseState] = {}
    items = []
    for r, sig in zip(reports, sigs, strict=True):
        st = states.get(r.leaseId) or world.cl.lease_state(r.leaseId)
        items.append((r, sig, st))
        states[r.leaseId] = state_after(st, r, t)
    res = send_entries(world, encode_entries(items))
    assert [e.args["reportHash"] for e in res.named("CheckpointSettled")] == [report_struct_hash(r) for r in reports]
    assert not res.named("CheckpointSkipped")
    return res


def meter_close_release(world: "World", lease_id: int, close: Any, windows: int = 3, window_ms: int = 60_000) -> int:
    """Settle ``windows`` reports of ``window_ms`` in one batch, close the lease with ``close(lease_id)``, and
    release the earnings after the challenge period; returns what was charged."""
    lease = world.cl.lease(lease_id)
    m = world.meter(lease)
    world.advance_to_ms(lease.start_ms + windows * window_ms)
    reps = [m.next(window_ms=window_ms) for _ in range(windows)]
    settle_in_one_batch(world, [r for r, _ in reps], [s for _, s in reps])
    close(lease_id)
    cp = world.cl.checkpoint(lease_id)
    world.chain.time_travel(cp.last_settled_at + CHALLENGE_S)
    world.cl.release_earnings(world.relayer, lease_id)
    return int(cp.charged)


def expect_revert(name: str, fn: Any, *args: Any, **kwargs: Any) -> ContractRevert:
    """Call ``fn`` and assert it reverts with custom error ``name``; return the decoded revert."""
    with pytest.raises(ContractRevert) as info:
        fn(*args, **kwargs)
    assert info.value.name == name, f"expected {name}, got {info.value}"
    return info.value


@pytest.fixture(scope="session")
def base_world() -> Iterator[World]:
    chain = connect("memory")
    a = chain.accounts
    admin, provider, provider2, attestor, attestor2, buyer, buyer2, relayer, arbiter, treasury = a[:10]
    dep = deploy_suite(
        chain,
        admin,
        treasury=treasury,
        arbiter=arbiter,
        pauser=admin,
        challenge_period_s=CHALLENGE_S,
        unbonding_delay_s=UNBONDING_S,
        base_fee_bps=FEE_BPS,
    )
    cl = LedgerClient(chain, dep)
    cl.register_provider(provider, provider, "ipfs://provider-1")
    cl.register_provider(provider2, provider2, "ipfs://provider-2")
    uuids = [gpu_uuid_hash(f"GPU-aaaa-{i}") for i in range(6)]
    uuids2 = [gpu_uuid_hash(f"GPU-bbbb-{i}") for i in range(2)]
    node = cl.register_node(
        provider, attestor, "NVIDIA H100 80GB HBM3", uuids, 81_559, MAX_POWER_MW, "eu-west1", features=NodeFeature.GPM
    ).id
    node2 = cl.register_node(provider2, attestor2, "NVIDIA L4", uuids2, 23_034, 72_000, "us-east1").id
    t0 = chain.now()
    until = t0 + 30 * 86_400
    o_res = cl.publish_offer(provider, node, 0b0011, PRICE, ETH, BillingMode.RESERVED, t0, until).id
    o_met = cl.publish_offer(provider, node, 0b1100, PRICE, ETH, BillingMode.METERED, t0, until).id
    o_sm = cl.publish_offer(provider, node, 0b110000, PRICE, ETH, BillingMode.SM_ACTIVE, t0, until).id
    art = load_artifact("MockERC20")
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    token_addr = chain.w3.eth.wait_for_transaction_receipt(
        factory.constructor("USD Coin", "USDC", 6).transact({"from": admin})
    )["contractAddress"]
    token = chain.w3.eth.contract(address=token_addr, abi=art["abi"])
    for who in (buyer, buyer2, provider, provider2):
        chain.w3.eth.wait_for_transaction_receipt(token.functions.mint(who, 10**15).transact({"from": admin}))
    o_tok = cl.publish_offer(provider2, node2, 0b01, TOKEN_PRICE, token_addr, BillingMode.RESERVED, t0, until).id
    cl.stake(provider, ETH, 10**18)
    cl.stake(provider2, token_addr, 10**12)
    yield World(
        chain=chain,
        dep=dep,
        cl=cl,
        admin=admin,
        provider=provider,
        provider2=provider2,
        attestor=attestor,
        attestor2=attestor2,
        buyer=buyer,
        buyer2=buyer2,
        relayer=relayer,
        arbiter=arbiter,
        treasury=treasury,
        node=node,
        node2=node2,
        offer_reserved=o_res,
        offer_metered=o_met,
        offer_token=o_tok,
        offer_sm=o_sm,
        token=token_addr,
        token_contract=token,
        uuids=uuids,
        uuids2=uuids2,
        t0=t0,
    )


@pytest.fixture
def world(base_world: World) -> Iterator[World]:
    snap = base_world.chain.snapshot()
    try:
        yield base_world
    finally:
        base_world.chain.revert(snap)
