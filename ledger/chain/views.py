"""Typed reads of the suite: every view function of the three contracts (and of ERC-20 tokens) as a method
that returns a frozen dataclass or an int.

Every read takes the chain lock (eth-tester is not thread-safe; one lock also keeps reads and sends of
many threads simple). A contract's refusal raises :class:`ledger.chain.reverts.ContractRevert`; a read that
gets no answer raises :class:`ledger.chain.errors.ChainUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_abi import decode as abi_decode, encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_abi.grammar import TupleType, parse as parse_abi_type
from eth_utils import get_abi_input_types, get_abi_output_types, to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import BadFunctionCallOutput, BlockNotFound

from ..protocol.economics import ETH, BillingMode, LeaseStatus, NodeFeature
from ..protocol.report import MeteringReport
from ..protocol.settlement import LeaseState, encode_entry
from .contracts import Contracts
from .errors import ChainUnavailable, UndecodableAnswer
from .reverts import decode_exception

_BLOCK_BATCH = 500  # blocks per JSON-RPC batch (ChainReader.blocks)

T = TypeVar("T")


class _LeanCall:
    """Selector, argument types and an output decoder of one contract function, built once per ABI entry."""

    _cache: dict[tuple[str, str], "_LeanCall | None"] = {}

    def __init__(self, selector: bytes, inputs: list[str], outputs: list[str]) -> None:
        self.selector = selector
        self.inputs = inputs
        self.outputs = outputs
        self.fix = [_checksummer(parse_abi_type(t)) for t in outputs]

    @classmethod
    def of(cls, fn: Any) -> "_LeanCall | None":
        key = (str(fn.address), str(fn.abi_element_identifier))
        if key not in cls._cache:
            try:
                abi = fn.abi
                cls._cache[key] = cls(
                    bytes.fromhex(str(fn.selector).removeprefix("0x")),
                    list(get_abi_input_types(abi)),
                    list(get_abi_output_types(abi)),
                )
            except Exception:  # noqa: BLE001 - an ABI entry this path does not know: web3 calls it
                cls._cache[key] = None
        return cls._cache[key]

    def encode(self, args: Any) -> str:
        return "0x" + (self.selector + abi_encode(self.inputs, list(args))).hex()

    def decode(self, result: str) -> Any:
        values = abi_decode(self.outputs, bytes.fromhex(result.removeprefix("0x")))
        out = [fix(v) for fix, v in zip(self.fix, values)]
        return out[0] if len(out) == 1 else out


def _checksummer(t: Any) -> Callable[[Any], Any]:
    """A function that checksums every address inside a decoded value of ABI type ``t`` (as web3 returns it)."""
    if t.is_array:
        item = _checksummer(t.item_type)
        return lambda v: [item(x) for x in v]  # web3 answers arrays as lists (eth-abi: tuples)
    if isinstance(t, TupleType):
        parts = [_checksummer(c) for c in t.components]
        return lambda v: tuple(f(x) for f, x in zip(parts, v))
    if t.base == "address":
        return lambda v: to_checksum_address(v)
    return lambda v: v


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    payout: str
    registered: bool
    locked_rights: int
    metadata_uri: str


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: int
    provider: str
    attestor: str
    gpu_model: bytes
    gpu_count: int
    vram_mib: int
    max_power_mw_per_gpu: int
    region: bytes
    active: bool
    gpu_uuid_hashes: tuple[bytes, ...]
    features: NodeFeature = NodeFeature.NONE

    @property
    def gpm(self) -> bool:
        """Whether the node's GPUs measure SM activity (it may offer SM-active billing)."""
        return bool(self.features & NodeFeature.GPM)


@dataclass(frozen=True, slots=True)
class OfferInfo:
    offer_id: int
    provider: str
    node_id: int
    gpu_mask: int
    gpu_count: int
    price_per_gpu_second: int
    token: str
    billing_mode: BillingMode
    valid_from: int
    valid_until: int
    min_buyer_score_bps: int
    gpu_set_hash: bytes
    terms_hash: bytes

    @property
    def gpu_indices(self) -> list[int]:
        return [i for i in range(self.gpu_mask.bit_length()) if self.gpu_mask >> i & 1]


@dataclass(frozen=True, slots=True)
class StakeInfo:
    bonded: int
    unbonding: int
    unbonding_ends: int


@dataclass(frozen=True, slots=True)
class RightsInfo:
    minted: int
    locked: int
    burned: int


@dataclass(frozen=True, slots=True)
class DynamicRule:
    """An offer's dynamic-price rule at the pricer (floor and ceiling 0: none, or ended; owner kept)."""

    offer_id: int
    owner: str
    floor: int
    ceiling: int

    @property
    def active(self) -> bool:
        return self.floor != 0


@dataclass(frozen=True, slots=True)
class DynamicQuote:
    """What the rule gives now: ``price`` per GPU-second from ``taken`` (locked + burned) of ``minted``
    GPU-seconds of the offer's rights."""

    price: int
    taken: int
    minted: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    lease_id: int
    offer_id: int
    node_id: int
    buyer: str
    holder: str
    provider: str
    token: str
    status: LeaseStatus
    billing_mode: BillingMode
    gpu_count: int
    price_per_gpu_second: int
    fee_bps: int
    duration_s: int
    start_by: int
    start_ms: int
    end_ms: int
    gpu_set_hash: bytes
    escrowed: int
    fee_held: int
    fees_settled: bool


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    last_seq: int
    last_report_hash: bytes
    cum_busy_ms: int
    cum_energy_mj: int
    cum_allocated_ms: int
    cum_sm_active_ms: int
    last_settled_at: int
    charged: int
    paid: int
    pending: int
    frozen: int
    refunded: int
    remaining: int


@dataclass(frozen=True, slots=True)
class ReputationCounts:
    completed: int
    no_shows: int
    disputes_won: int
    disputes_lost: int
    ratings: int
    rating_sum: int
    attested_ms: int
    lease_ms: int
    positive: int
    negative: int


@dataclass(frozen=True, slots=True)
class FeeConfig:
    base_fee_bps: int
    discounted_fee_bps: int
    discount_min_score_bps: int
    discount_min_completed: int
    slash_bps: int
    challenge_period_s: int


@dataclass(frozen=True, slots=True)
class ProgrammeInfo:
    """A voucher programme (VoucherVault): issuer, token, eligibility flags and its money so far."""

    programme_id: int
    issuer: str
    token: str
    closed: bool
    any_model: bool
    any_region: bool
    any_provider: bool
    pool: int
    granted: int
    spent: int
    returned: int


@dataclass(frozen=True, slots=True)
class VoucherInfo:
    voucher_id: int
    programme_id: int
    beneficiary: str
    expiry: int
    copay_bps: int
    expired: bool
    face_value: int
    balance: int


@dataclass(frozen=True, slots=True)
class VoucherLeaseInfo:
    """The vault's record of a lease (voucher_id 0: not a voucher lease)."""

    lease_id: int
    voucher_id: int
    reconciled: bool
    voucher_paid: int
    copay_paid: int


def report_tuple(report: MeteringReport) -> tuple[Any, ...]:
    """The full ``MeteringReport`` struct as the ABI tuple (for the digest views)."""
    return tuple(bytes(v) if isinstance(v, (bytes, bytearray)) else v for v in report.values())


class ChainReader:
    """Typed views of one deployment. ``lock`` is the chain lock shared with the sender."""

    def __init__(self, w3: Web3, contracts: Contracts, lock: Any) -> None:
        self.w3 = w3
        self.contracts = contracts
        self.registry = contracts.registry
        self.escrow = contracts.escrow
        self.reputation = contracts.reputation
        self.lock = lock

    def _read(self, fn: Callable[[], T]) -> T:
        with self.lock:
            try:
                return fn()
            except (BadFunctionCallOutput, DecodingError) as e:
                raise UndecodableAnswer(f"the answer does not decode: {e}") from e
            except Exception as e:
                rev = decode_exception(e)
                if rev is not None:
                    raise rev from e
                raise ChainUnavailable(f"chain call failed: {type(e).__name__}: {str(e)[:300]}") from e

    def call(self, fn: Any) -> Any:
        """Evaluate a bound web3 contract function (a view) with revert decoding. Over HTTP, the call is encoded,
        sent and decoded directly (eth-abi and one JSON-RPC request: a third of web3's per-call cost, which a
        fresh indexer pays hundreds of times); the answer is the one web3 gives (addresses checksummed, one
        output as itself, several as a list). Anything unusual (a revert, an argument eth-abi does not take
        as it is) goes through web3, which raises or converts as always."""
        if isinstance(self.w3.provider, HTTPProvider) and not fn.kwargs:
            lean = _LeanCall.of(fn)
            if lean is not None:
                try:
                    data = lean.encode(fn.args)
                except Exception:  # noqa: BLE001 - web3's own normalizers take it from here
                    data = None
                if data is not None:
                    answer = self._read(lambda: self.w3.provider.make_request(
                        "eth_call", [{"to": fn.address, "data": data}, "latest"]  # type: ignore[arg-type]
                    ))  # fmt: skip
                    result = answer.get("result") if isinstance(answer, dict) else None
                    if isinstance(result, str) and "error" not in answer:
                        return self._read(lambda: lean.decode(result))
        return self._read(fn.call)

    # --- the chain itself --------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        return int(self._read(lambda: self.w3.eth.chain_id))

    def block_number(self) -> int:
        return int(self._read(lambda: self.w3.eth.block_number))

    def block(self, number: int | str) -> Any:
        """The block (``number`` or a tag such as "latest")."""
        return self._read(lambda: self.w3.eth.get_block(number))  # type: ignore[arg-type]

    def blocks(self, numbers: Sequence[int]) -> list[Any]:
        """Blocks ``numbers``, in that order: one JSON-RPC batch per 500 over HTTP (a fresh indexer reads a block
        per block with events: one round trip each cost a third of its start-up), one call each in process."""
        if not isinstance(self.w3.provider, HTTPProvider):
            return [self.block(n) for n in numbers]
        out: list[Any] = []
        for i in range(0, len(numbers), _BLOCK_BATCH):
            part = numbers[i : i + _BLOCK_BATCH]

            def batch(part: Sequence[int] = part) -> list[Any]:
                with self.w3.batch_requests() as b:
                    for n in part:
                        b.add(self.w3.eth.get_block(n))
                    return list(b.execute())

            got = self._read(batch)
            if len(got) != len(part) or any(int(blk["number"]) != n for blk, n in zip(got, part)):
                raise ChainUnavailable(f"a batch of {len(part)} blocks came back as {len(got)} other blocks")
            out.extend(got)
        return out

    def block_or_none(self, number: int) -> Any:
        """Block ``number``, or None when the chain does not have it (a fork dropped it, or not mined yet)."""
        try:
            return self.block(number)
        except ChainUnavailable as e:
            if isinstance(e.__cause__, BlockNotFound):
                return None
            raise

    def now(self) -> int:
        """Timestamp (unix s) of the latest block: the chain's clock."""
        return int(self.block("latest")["timestamp"])

    def eth_balance(self, account: str) -> int:
        return int(self._read(lambda: self.w3.eth.get_balance(to_checksum_address(account))))

    def code(self, address: str) -> bytes:
        return bytes(self._read(lambda: self.w3.eth.get_code(to_checksum_address(address))))

    def transaction_count(self, account: str, block: str = "latest") -> int:
        return int(self._read(lambda: self.w3.eth.get_transaction_count(to_checksum_address(account), block)))  # type: ignore[arg-type]

    # --- ERC-20 ------------------------------------------------------------------------------------------

    def erc20_balance(self, token: str, account: str) -> int:
        return int(self.call(self.contracts.erc20(token).functions.balanceOf(to_checksum_address(account))))

    def erc20_allowance(self, token: str, owner: str, spender: str) -> int:
        fn = self.contracts.erc20(token).functions.allowance(to_checksum_address(owner), to_checksum_address(spender))
        return int(self.call(fn))

    def erc20_field(self, token: str, name: str) -> Any:
        """``name()``, ``symbol()`` or ``decimals()`` of a token."""
        return self.call(getattr(self.contracts.erc20(token).functions, name)())

    def balance(self, token: str, account: str) -> int:
        """ETH (token == ETH) or ERC-20 balance of ``account``."""
        if to_checksum_address(token) == ETH:
            return self.eth_balance(account)
        return self.erc20_balance(token, account)

    # --- CapacityRegistry --------------------------------------------------------------------------------

    def provider(self, account: str) -> ProviderInfo:
        account = to_checksum_address(account)
        p = self.call(self.registry.functions.provider(account))
        uri = self.call(self.registry.functions.metadataURI(account))
        return ProviderInfo(payout=p[0], registered=bool(p[1]), locked_rights=int(p[2]), metadata_uri=str(uri))

    def node(self, node_id: int) -> NodeInfo:
        n = self.call(self.registry.functions.node(node_id))
        gpus = self.call(self.registry.functions.nodeGpus(node_id))
        return NodeInfo(
            node_id=node_id,
            provider=n[0],
            attestor=n[1],
            gpu_model=bytes(n[2]),
            gpu_count=int(n[3]),
            vram_mib=int(n[4]),
            max_power_mw_per_gpu=int(n[5]),
            region=bytes(n[6]),
            active=bool(n[7]),
            gpu_uuid_hashes=tuple(bytes(h) for h in gpus),
            features=NodeFeature(int(n[8])),
        )

    def offer(self, offer_id: int) -> OfferInfo:
        o = self.call(self.registry.functions.offer(offer_id))
        return OfferInfo(
            offer_id=offer_id,
            provider=o[0],
            node_id=int(o[1]),
            gpu_mask=int(o[2]),
            gpu_count=int(o[3]),
            price_per_gpu_second=int(o[4]),
            token=o[5],
            billing_mode=BillingMode(int(o[6])),
            valid_from=int(o[7]),
            valid_until=int(o[8]),
            min_buyer_score_bps=int(o[9]),
            gpu_set_hash=bytes(o[10]),
            terms_hash=bytes(o[11]),
        )

    def ask_of(self, offer_id: int, holder: str) -> int:
        """A holder's resale ask for an offer's rights, wei (or token units) per GPU-second; 0: none."""
        return int(self.call(self.registry.functions.askOf(offer_id, to_checksum_address(holder))))

    def lease_price(self, offer_id: int, holder: str, duration_s: int) -> int:
        """The price per GPU-second a lease of ``duration_s`` locking ``holder``'s rights of the offer pays
        (``offerFor``: the holder's resale ask, else the offer's tier for that duration, else its price): what
        ``openLease`` escrows and fixes."""
        fn = self.registry.functions.offerFor(offer_id, to_checksum_address(holder), duration_s)
        return int(self.call(fn)[4])

    def stake_of(self, provider: str, token: str) -> StakeInfo:
        s = self.call(self.registry.functions.stakeOf(to_checksum_address(provider), to_checksum_address(token)))
        return StakeInfo(bonded=int(s[0]), unbonding=int(s[1]), unbonding_ends=int(s[2]))

    def rights_of(self, offer_id: int) -> RightsInfo:
        m, lk, b = self.call(self.registry.functions.rightsOf(offer_id))
        return RightsInfo(minted=int(m), locked=int(lk), burned=int(b))

    def rights_balance(self, holder: str, offer_id: int) -> int:
        return int(self.call(self.registry.functions.balanceOf(to_checksum_address(holder), offer_id)))

    def is_rights_approved(self, holder: str, operator: str) -> bool:
        fn = self.registry.functions.isApprovedForAll(to_checksum_address(holder), to_checksum_address(operator))
        return bool(self.call(fn))

    def node_count(self) -> int:
        return int(self.call(self.registry.functions.nodeCount()))

    def offer_count(self) -> int:
        return int(self.call(self.registry.functions.offerCount()))

    def unbonding_delay(self) -> int:
        return int(self.call(self.registry.functions.unbondingDelay()))

    def registry_escrow(self) -> str:
        return str(self.call(self.registry.functions.escrow()))

    # --- LeaseEscrow -------------------------------------------------------------------------------------

    def lease(self, lease_id: int) -> LeaseInfo:
        v = self.call(self.escrow.functions.lease(lease_id))
        return LeaseInfo(
            lease_id=lease_id,
            offer_id=int(v[0]),
            node_id=int(v[1]),
            buyer=v[2],
            holder=v[3],
            provider=v[4],
            token=v[5],
            status=LeaseStatus(int(v[6])),
            billing_mode=BillingMode(int(v[7])),
            gpu_count=int(v[8]),
            price_per_gpu_second=int(v[9]),
            fee_bps=int(v[10]),
            duration_s=int(v[11]),
            start_by=int(v[12]),
            start_ms=int(v[13]),
            end_ms=int(v[14]),
            gpu_set_hash=bytes(v[15]),
            escrowed=int(v[16]),
            fee_held=int(v[17]),
            fees_settled=bool(v[18]),
        )

    def lease_terms(self, lease_ids: Sequence[int]) -> tuple[list[int], list[bytes]]:
        """(terms words, state commitments) of many leases in one call (zero commitment: no such lease)."""
        terms, hashes = self.call(self.escrow.functions.leaseTerms(list(lease_ids)))
        return [int(t) for t in terms], [bytes(h) for h in hashes]

    def checkpoint(self, lease_id: int, state: LeaseState) -> CheckpointInfo:
        """The lease's checkpoint and money view; ``state`` is its current settlement state."""
        v = self.call(self.escrow.functions.checkpoint(lease_id, state.ckpt, state.last_hash))
        return CheckpointInfo(int(v[0]), bytes(v[1]), *(int(x) for x in v[2:]))

    def withdrawable(self, account: str, token: str = ETH) -> int:
        fn = self.escrow.functions.withdrawable(to_checksum_address(account), to_checksum_address(token))
        return int(self.call(fn))

    def fee_bps_for(self, provider: str) -> int:
        return int(self.call(self.escrow.functions.feeBpsFor(to_checksum_address(provider))))

    def live_lease_of(self, offer_id: int) -> int:
        return int(self.call(self.escrow.functions.liveLeaseOf(offer_id)))

    def lease_count(self) -> int:
        return int(self.call(self.escrow.functions.leaseCount()))

    def fee_config(self) -> FeeConfig:
        return FeeConfig(*(int(x) for x in self.call(self.escrow.functions.feeConfig())))

    def challenge_period(self) -> int:
        return int(self.call(self.escrow.functions.challengePeriod()))

    def treasury(self) -> str:
        return str(self.call(self.escrow.functions.treasury()))

    def node_cache(self, node_id: int) -> tuple[str, int]:
        a, p = self.call(self.escrow.functions.nodeCache(node_id))
        return str(a), int(p)

    def paused(self) -> bool:
        return bool(self.call(self.escrow.functions.paused()))

    def domain_separator(self) -> bytes:
        return bytes(self.call(self.escrow.functions.domainSeparator()))

    def hash_report(self, report: MeteringReport) -> bytes:
        """The contract's EIP-712 struct hash of ``report``."""
        return bytes(self.call(self.escrow.functions.hashReport(report_tuple(report))))

    def report_digest(self, report: MeteringReport) -> bytes:
        """The contract's EIP-712 digest of ``report`` (what the attestor signs)."""
        return bytes(self.call(self.escrow.functions.reportDigest(report_tuple(report))))

    def entry_digest(self, report: MeteringReport) -> bytes:
        """The digest the settle path computes from a settlement entry of ``report``."""
        entry = encode_entry(report, bytes(65), LeaseState(report.leaseId, 0, 0, report.prevReportHash))
        return bytes(self.call(self.escrow.functions.entryDigest(entry)))

    def state_hash(self, lease_id: int) -> bytes:
        """The escrow's commitment to the lease's (terms, ckpt, last report hash); zero: no lease."""
        return bytes(self.call(self.escrow.functions.stateHash(lease_id)))

    def has_role(self, contract: str, role: bytes, account: str) -> bool:
        c = self.contracts.by_name[contract]
        return bool(self.call(c.functions.hasRole(role, to_checksum_address(account))))

    # --- Reputation --------------------------------------------------------------------------------------

    def score_of(self, account: str) -> int:
        """Beta-model score in basis points (5000 for a fresh account)."""
        return int(self.call(self.reputation.functions.scoreOf(to_checksum_address(account))))

    def counts_of(self, account: str) -> ReputationCounts:
        v = self.call(self.reputation.functions.countsOf(to_checksum_address(account)))
        return ReputationCounts(*(int(x) for x in v))

    # --- VoucherVault ------------------------------------------------------------------------------------

    @property
    def vault(self) -> Any:
        """The vault's binding; :class:`ChainUnavailable` on a deployment without one."""
        if self.contracts.vault is None:
            raise ChainUnavailable("this deployment has no VoucherVault (redeploy to use compute vouchers)")
        return self.contracts.vault

    def programme(self, programme_id: int) -> ProgrammeInfo:
        v = self.call(self.vault.functions.programme(programme_id))
        return ProgrammeInfo(programme_id, str(v[0]), str(v[1]), *(bool(x) for x in v[2:6]), *(int(x) for x in v[6:]))

    def voucher(self, voucher_id: int) -> VoucherInfo:
        v = self.call(self.vault.functions.voucher(voucher_id))
        return VoucherInfo(voucher_id, int(v[0]), str(v[1]), int(v[2]), int(v[3]), bool(v[4]), int(v[5]), int(v[6]))

    def voucher_lease(self, lease_id: int) -> VoucherLeaseInfo:
        v = self.call(self.vault.functions.voucherLease(lease_id))
        return VoucherLeaseInfo(lease_id, int(v[0]), bool(v[1]), int(v[2]), int(v[3]))

    def voucher_eligible(self, programme_id: int, offer_id: int) -> tuple[bool, int]:
        """(eligible, the failed rule: 0 token, 1 GPU model, 2 region, 3 provider)."""
        ok, rule = self.call(self.vault.functions.eligible(programme_id, offer_id))
        return bool(ok), int(rule)

    def is_related(self, programme_id: int, account: str) -> bool:
        return bool(self.call(self.vault.functions.isRelated(programme_id, to_checksum_address(account))))

    def vault_withdrawable(self, account: str, token: str = ETH) -> int:
        fn = self.vault.functions.withdrawable(to_checksum_address(account), to_checksum_address(token))
        return int(self.call(fn))

    def vault_liabilities(self, token: str = ETH) -> int:
        return int(self.call(self.vault.functions.liabilities(to_checksum_address(token))))

    # --- DynamicPricer -----------------------------------------------------------------------------------

    @property
    def pricer(self) -> Any:
        """The pricer's binding; :class:`ChainUnavailable` on a deployment without one."""
        if self.contracts.pricer is None:
            raise ChainUnavailable("this deployment has no DynamicPricer (redeploy to use dynamic prices)")
        return self.contracts.pricer

    @property
    def pricer_address(self) -> str | None:
        return None if self.contracts.pricer is None else str(self.contracts.pricer.address)

    def dynamic_rule(self, offer_id: int) -> DynamicRule:
        owner, floor, ceiling = self.call(self.pricer.functions.ruleOf(offer_id))
        return DynamicRule(offer_id, str(owner), int(floor), int(ceiling))

    def dynamic_quote(self, offer_id: int) -> DynamicQuote:
        """The rule's price now (reverts DynamicPricerNoRule without a rule)."""
        price, taken, minted = self.call(self.pricer.functions.quote(offer_id))
        return DynamicQuote(int(price), int(taken), int(minted))

    def pricer_owed(self, owner: str, token: str = ETH) -> int:
        return int(self.call(self.pricer.functions.owed(to_checksum_address(owner), to_checksum_address(token))))

    def pricer_liabilities(self, token: str = ETH) -> int:
        return int(self.call(self.pricer.functions.liabilities(to_checksum_address(token))))

    def pricer_claimed(self, lease_id: int) -> int:
        return int(self.call(self.pricer.functions.claimed(lease_id)))

    def programme_count(self) -> int:
        return int(self.call(self.vault.functions.programmeCount()))

    def voucher_count(self) -> int:
        return int(self.call(self.vault.functions.voucherCount()))

    def rated(self, lease_id: int) -> bool:
        return bool(self.call(self.reputation.functions.rated(lease_id)))
