"""Typed client of the Compute Ledger contracts: one method per contract function, decoded events.

Usage::

    from ledger.chain import connect
    from ledger.deploy import deploy_suite
    from ledger.client import LedgerClient, ETH, BillingMode

    chain = connect("memory")
    dep = deploy_suite(chain, admin=chain.accounts[0])
    cl = LedgerClient(chain.w3, dep)                 # keys={addr: privkey} to sign locally (rpc backend)

    provider, buyer, attestor = chain.accounts[1:4]
    cl.register_provider(provider, payout=provider, metadata_uri="ipfs://...")
    node_id = cl.register_node(provider, attestor, "NVIDIA H100", uuid_hashes, 81_559, 700_000, "eu-west").id
    offer_id = cl.publish_offer(provider, node_id, gpu_mask=0b11, price_per_gpu_second=10**9, token=ETH,
                                billing_mode=BillingMode.RESERVED, valid_from=t0, valid_until=t1).id
    lease_id = cl.open_lease(buyer, offer_id, holder=provider, duration_s=3600, start_by=t0 + 600).id
    cl.activate_lease(provider, lease_id)
    cl.settle(relayer, report, signature)            # report: ledger.protocol.MeteringReport, 65-byte sig
    cl.close_lease(buyer, lease_id); cl.withdraw(buyer, ETH)

Conventions: every write method takes the sender address first and returns a :class:`TxResult` (or a
:class:`Created` carrying the new id); views return frozen dataclasses or ints. Amounts are integers in the
token's smallest unit; times are unix seconds unless the name says ``_ms``. A revert raises
:class:`ledger.errors.ContractRevert` with the custom error's name and arguments (decoded in
``ledger.errors``). Token ``ETH`` (the zero address) means native ETH.

Reports are sent as settlement entries (``ledger.settlement.encode_entry``) carrying the lease's state
(terms, checkpoint, last report hash) that the escrow checks against its one-slot commitment; the contract
re-derives the protocol's EIP-712 struct, so the attestor signs ``ledger.protocol.report_digest`` unchanged.
The client finds each lease's state itself (:meth:`LedgerClient.lease_state`): from the ``leaseTerms`` view
and the ``CheckpointsSettled`` records, which it follows incrementally.

``settleBatch``'s ``CheckpointsSettled(bytes records)`` is decoded as one ``CheckpointSettled`` event per
record (same log index, ``args["recordIndex"]`` its position); ``settle``'s own ``CheckpointSettled`` is
decoded to the same args (``SettlementRecord.as_args``), so consumers see one shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Iterable, Mapping, Sequence

from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from .base import LedgerError
from .compiler import load_artifact
from .deploy import Deployment, escrow_abi
from .errors import ContractRevert, TransactionReverted, decode_exception
from .protocol import ZERO_HASH, MeteringReport, ProtocolError
from .settlement import (
    LeaseState,
    SettlementRecord,
    commitment,
    decode_records,
    encode_entries,
    encode_entry,
    initial_ckpt,
)

ETH = "0x0000000000000000000000000000000000000000"
# blocks per eth_getLogs request when the client rebuilds lease states from events
LOG_SCAN_BLOCKS = 5_000


class ClientError(LedgerError):
    """A client-side problem (bad argument, missing event) before or after a transaction."""


class BillingMode(IntEnum):
    RESERVED = 0  # allocated GPU time is billed
    METERED = 1  # attested busy GPU time is billed


class LeaseStatus(IntEnum):
    NONE = 0
    OPEN = 1
    ACTIVE = 2
    CLOSED = 3
    EXPIRED = 4
    EXHAUSTED = 5


class Outcome(IntEnum):
    COMPLETED = 0
    NO_SHOW = 1
    DISPUTE_WON = 2
    DISPUTE_LOST = 3


# --- plain data ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded log. ``args`` holds plain Python values (bytes, int, str, dict for structs)."""

    name: str
    address: str
    args: dict[str, Any]
    block_number: int
    tx_hash: bytes
    log_index: int


@dataclass(frozen=True, slots=True)
class TxResult:
    tx_hash: bytes
    block_number: int
    gas_used: int
    events: tuple[Event, ...] = field(default_factory=tuple)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    def event(self, name: str) -> Event:
        """The first event called ``name``; raises :class:`ClientError` if there is none."""
        for e in self.events:
            if e.name == name:
                return e
        raise ClientError(f"transaction emitted no {name} event (got {[e.name for e in self.events]})")


@dataclass(frozen=True, slots=True)
class Created:
    """Result of a call that creates something with an id (node, offer, lease)."""

    id: int
    tx: TxResult


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
    last_window_end_ms: int
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
class LeaseQuote:
    escrowed: int
    fee: int
    total: int
    fee_bps: int


@dataclass(frozen=True, slots=True)
class FeeConfig:
    base_fee_bps: int
    discounted_fee_bps: int
    discount_min_score_bps: int
    discount_min_completed: int
    slash_bps: int
    challenge_period_s: int


# --- packing ---------------------------------------------------------------------------------------


def lease_fee(escrowed: int, fee_bps: int) -> int:
    """The platform fee ``openLease`` escrows on top of ``escrowed`` (rounded down, as the contract does)."""
    return escrowed * fee_bps // 10_000


def top_up_fee(escrowed_before: int, amount: int, fee_bps: int) -> int:
    """The fee ``topUp`` adds with ``amount``: the fee on the new escrow minus the fee already held."""
    return lease_fee(escrowed_before + amount, fee_bps) - lease_fee(escrowed_before, fee_bps)


def report_tuple(report: MeteringReport) -> tuple[Any, ...]:
    """The full ``MeteringReport`` struct as the ABI tuple (for the digest views)."""
    return tuple(bytes(v) if isinstance(v, (bytes, bytearray)) else v for v in report.values())


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return value


def _b32(value: bytes | str, name: str) -> bytes:
    """bytes32 from bytes (right-padded) or text (UTF-8, right-padded)."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) > 32:
        raise ClientError(f"{name} is longer than 32 bytes")
    return raw.ljust(32, b"\x00")


def _b8(value: bytes | str, name: str) -> bytes:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) > 8:
        raise ClientError(f"{name} is longer than 8 bytes")
    return raw.ljust(8, b"\x00")


# --- transactions ----------------------------------------------------------------------------------


class Transactor:
    """Sends contract calls: from node-managed accounts (memory, anvil) or signed locally with ``keys``.

    The only place in ``ledger`` that builds transactions. Reverts are raised as :class:`ContractRevert`.
    """

    # On the in-process chain, estimate_gas replays a transaction ~15 times; one eth_call (to surface the
    # revert data) plus a fixed limit is far cheaper. Only the gas actually used is charged.
    TESTER_GAS_LIMIT = 12_000_000

    def __init__(self, w3: Web3, *, keys: Mapping[str, bytes] | None = None, poll_latency: float = 0.01) -> None:
        self.w3 = w3
        self._keys = {to_checksum_address(a): bytes(k) for a, k in (keys or {}).items()}
        self._poll = poll_latency
        from web3.providers.eth_tester import EthereumTesterProvider

        self._in_process = isinstance(w3.provider, EthereumTesterProvider)

    def _submit(self, tx_fn: Any, sender: str, value: int, gas: int | None) -> Any:
        sender = to_checksum_address(sender)
        params: dict[str, Any] = {"from": sender, "value": int(value)}
        if gas is not None:
            params["gas"] = int(gas)
        try:
            if gas is None and self._in_process and hasattr(tx_fn, "call"):
                tx_fn.call(dict(params), block_identifier="pending")  # raises with the revert data
                params["gas"] = self.TESTER_GAS_LIMIT
            if sender in self._keys:
                params["nonce"] = self.w3.eth.get_transaction_count(sender, "pending")
                built = tx_fn.build_transaction(params)
                signed = Account.sign_transaction(built, self._keys[sender])
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            else:
                tx_hash = tx_fn.transact(params)
        except Exception as e:
            rev = decode_exception(e)
            if rev is not None:
                raise rev from e
            raise
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=self._poll)
        if receipt["status"] != 1:
            raise TransactionReverted("TransactionReverted", (bytes(tx_hash),), b"", ("txHash",))
        return receipt

    def send(self, fn: Any, sender: str, value: int = 0, gas: int | None = None) -> Any:
        """Send a bound contract function call; returns the receipt."""
        return self._submit(fn, sender, value, gas)

    def call(self, fn: Any, sender: str | None = None) -> Any:
        """Evaluate a view (or simulate a write) and decode a revert."""
        try:
            return fn.call({"from": to_checksum_address(sender)} if sender else {})
        except Exception as e:
            rev = decode_exception(e)
            if rev is not None:
                raise rev from e
            raise

    def deploy_with_receipt(self, artifact: Mapping[str, Any], sender: str, args: Sequence[Any]) -> tuple[str, Any]:
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = self._submit(factory.constructor(*args), sender, 0, None)
        addr = receipt["contractAddress"]
        if not addr:
            raise ClientError(f"deploying {artifact.get('contractName')} produced no contract")
        return to_checksum_address(addr), receipt

    def deploy(self, artifact: Mapping[str, Any], sender: str, args: Sequence[Any]) -> str:
        return self.deploy_with_receipt(artifact, sender, args)[0]


# --- the client ------------------------------------------------------------------------------------


class LedgerClient:
    """Typed access to CapacityRegistry, LeaseEscrow (+ extension) and Reputation of one deployment."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        *,
        keys: Mapping[str, bytes] | None = None,
        poll_latency: float = 0.01,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.tx = Transactor(w3, keys=keys, poll_latency=poll_latency)
        self.registry = w3.eth.contract(address=deployment.registry, abi=load_artifact("CapacityRegistry")["abi"])
        self.reputation = w3.eth.contract(address=deployment.reputation, abi=load_artifact("Reputation")["abi"])
        self.escrow = w3.eth.contract(address=deployment.escrow, abi=escrow_abi())
        self._erc20_abi = load_artifact("MockERC20")["abi"] if _has_artifact("MockERC20") else _MIN_ERC20_ABI
        self._topics: dict[bytes, tuple[Any, str]] = {}
        # lease id -> (ckpt, last report hash) of its last CheckpointsSettled record; logs scanned up to
        # _state_block (see lease_state)
        self._settled: dict[int, tuple[int, bytes]] = {}
        self._state_block = deployment.block - 1
        for contract in (self.registry, self.escrow, self.reputation):
            for item in contract.abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    sig = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                    self._topics[keccak(text=sig)] = (contract, str(item["name"]))

    # --- plumbing ------------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def _send(self, fn: Any, sender: str, value: int = 0, gas: int | None = None) -> TxResult:
        receipt = self.tx.send(fn, sender, value, gas)
        return self._result(receipt)

    def _result(self, receipt: Any) -> TxResult:
        events = tuple(self.decode_logs(receipt["logs"]))
        self.note_settlements(events)
        return TxResult(
            tx_hash=bytes(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=events,
        )

    def _call(self, fn: Any, sender: str | None = None) -> Any:
        return self.tx.call(fn, sender)

    def decode_logs(self, logs: Iterable[Any]) -> list[Event]:
        """Decode the logs of the three contracts (others are skipped)."""
        out: list[Event] = []
        addresses = {self.deployment.registry, self.deployment.escrow, self.deployment.reputation}
        for log in logs:
            if to_checksum_address(log["address"]) not in addresses or not log["topics"]:
                continue
            found = self._topics.get(bytes(log["topics"][0]))
            if found is None:
                continue
            contract, name = found
            if to_checksum_address(log["address"]) != contract.address:
                continue
            data = contract.events[name]().process_log(log)
            # settle()'s CheckpointSettled and each record of settleBatch's CheckpointsSettled: one shape
            records: list[SettlementRecord] | None = None
            if name == "CheckpointSettled":
                a = data["args"]
                records = [SettlementRecord(int(a["leaseId"]), bytes(a["reportHash"]), int(a["ckpt"]), int(a["charged"]))]
            elif name == "CheckpointsSettled":
                records = decode_records(bytes(data["args"]["records"]))
            if records is not None:
                out.extend(
                    Event(
                        name="CheckpointSettled",
                        address=to_checksum_address(log["address"]),
                        args={**rec.as_args(), "recordIndex": i},
                        block_number=int(log["blockNumber"]),
                        tx_hash=bytes(log["transactionHash"]),
                        log_index=int(log["logIndex"]),
                    )
                    for i, rec in enumerate(records)
                )
                continue
            out.append(
                Event(
                    name=name,
                    address=to_checksum_address(log["address"]),
                    args=_plain(dict(data["args"])),
                    block_number=int(log["blockNumber"]),
                    tx_hash=bytes(log["transactionHash"]),
                    log_index=int(log["logIndex"]),
                )
            )
        return out

    def events(
        self,
        name: str | None = None,
        *,
        from_block: int | None = None,
        to_block: int | str = "latest",
        contract: str | None = None,
    ) -> list[Event]:
        """Every decoded event of the suite in a block range (default: from the deployment block).

        ``name`` filters by event name; ``contract`` by "registry" / "escrow" / "reputation". The range is
        read in requests of at most ``LOG_SCAN_BLOCKS`` blocks (public RPC providers cap ``eth_getLogs``).
        """
        start = self.deployment.block if from_block is None else from_block
        addrs = {
            "registry": [self.deployment.registry],
            "escrow": [self.deployment.escrow],
            "reputation": [self.deployment.reputation],
        }.get(contract or "", [self.deployment.registry, self.deployment.escrow, self.deployment.reputation])
        flt: dict[str, Any] = {"fromBlock": start, "toBlock": to_block, "address": addrs}
        if name is not None:
            wanted = {"CheckpointSettled", "CheckpointsSettled"} if name == "CheckpointSettled" else {name}
            topics = [t for t, (_, n) in self._topics.items() if n in wanted]
            if not topics:
                raise ClientError(f"unknown event {name}")
            flt["topics"] = [["0x" + t.hex() for t in topics]]
        last = int(self.w3.eth.get_block(to_block)["number"]) if isinstance(to_block, str) else int(to_block)
        logs: list[Any] = []
        for lo in range(start, last + 1, LOG_SCAN_BLOCKS):
            flt["fromBlock"], flt["toBlock"] = lo, min(lo + LOG_SCAN_BLOCKS - 1, last)
            logs.extend(self.w3.eth.get_logs(flt))  # type: ignore[arg-type]
        return self.decode_logs(logs)

    # --- lease state (the escrow's one-slot commitment) -------------------------------------------------

    def note_settlements(self, events: Iterable[Any]) -> None:
        """Learn lease states from decoded events (the client does this itself for its own receipts; a
        caller that sends settlements another way can feed it the receipts' events to save a log scan).
        ``events``: anything with ``name`` and ``args`` as :meth:`decode_logs` gives them."""
        for e in events:
            if e.name == "CheckpointSettled":
                self._settled[int(e.args["leaseId"])] = (int(e.args["ckpt"]), bytes(e.args["reportHash"]))

    def _scan_settlements(self, from_block: int) -> None:
        latest = int(self.w3.eth.block_number)
        if from_block <= latest:
            self.note_settlements(self.events("CheckpointSettled", from_block=from_block, to_block=latest))
            self._state_block = latest

    def lease_states(self, lease_ids: Sequence[int]) -> dict[int, LeaseState]:
        """The state each lease's calls must carry, checked against the escrow's ``stateHash``.

        Raises :class:`ClientError` for an unknown lease, or if the events cannot explain the commitment.
        """
        ids = list(dict.fromkeys(int(i) for i in lease_ids))
        if not ids:
            return {}
        out: dict[int, LeaseState] = {}
        for attempt in range(4):
            # re-read each round: a settlement landing between the view and the log scan moves both
            terms_list, hashes = self._call(self.escrow.functions.leaseTerms(ids))
            missing = []
            for lid, terms, want in zip(ids, terms_list, hashes):
                if lid in out:
                    continue
                if bytes(want) == ZERO_HASH:
                    raise ClientError(f"no lease {lid}")
                ck, last = self._settled.get(lid, (initial_ckpt(int(terms)), ZERO_HASH))
                if commitment(int(terms), ck, last) == bytes(want):
                    out[lid] = LeaseState(lid, int(terms), ck, last)
                else:
                    missing.append(lid)
            if not missing:
                return out
            if attempt < 2:
                self._scan_settlements(self._state_block + 1)  # new settlements since the last look
            elif attempt == 2:
                self._settled.clear()  # a reorg dropped what we saw: rebuild from the deployment block
                self._scan_settlements(self.deployment.block)
        raise ClientError(f"lease state of {missing} does not match the escrow's commitment")

    def lease_state(self, lease_id: int) -> LeaseState:
        return self.lease_states([lease_id])[int(lease_id)]

    # --- ERC-20 helpers -------------------------------------------------------------------------------

    def erc20(self, token: str) -> Any:
        return self.w3.eth.contract(address=to_checksum_address(token), abi=self._erc20_abi)

    def erc20_approve(self, sender: str, token: str, spender: str, amount: int) -> TxResult:
        return self._send(self.erc20(token).functions.approve(to_checksum_address(spender), amount), sender)

    def erc20_balance(self, token: str, account: str) -> int:
        return int(self._call(self.erc20(token).functions.balanceOf(to_checksum_address(account))))

    def balance(self, token: str, account: str) -> int:
        """ETH (token == ETH) or ERC-20 balance of ``account``."""
        if to_checksum_address(token) == ETH:
            return int(self.w3.eth.get_balance(to_checksum_address(account)))
        return self.erc20_balance(token, account)

    def _ensure_allowance(self, sender: str, token: str, spender: str, amount: int) -> None:
        tok = self.erc20(token)
        allowed = int(self._call(tok.functions.allowance(to_checksum_address(sender), spender)))
        if allowed < amount:
            self._send(tok.functions.approve(spender, amount), sender)

    # --- CapacityRegistry: providers and stake ------------------------------------------------------

    def register_provider(self, sender: str, payout: str, metadata_uri: str) -> TxResult:
        return self._send(self.registry.functions.registerProvider(to_checksum_address(payout), metadata_uri), sender)

    def update_provider(self, sender: str, payout: str, metadata_uri: str) -> TxResult:
        return self._send(self.registry.functions.updateProvider(to_checksum_address(payout), metadata_uri), sender)

    def stake(self, sender: str, token: str, amount: int, *, approve: bool = True) -> TxResult:
        """Add stake; ETH is sent as value, an ERC-20 is approved (if ``approve``) and pulled."""
        token = to_checksum_address(token)
        if token == ETH:
            return self._send(self.registry.functions.stake(token, amount), sender, value=amount)
        if approve:
            self._ensure_allowance(sender, token, self.deployment.registry, amount)
        return self._send(self.registry.functions.stake(token, amount), sender)

    def request_unstake(self, sender: str, token: str, amount: int) -> TxResult:
        return self._send(self.registry.functions.requestUnstake(to_checksum_address(token), amount), sender)

    def withdraw_stake(self, sender: str, token: str) -> TxResult:
        return self._send(self.registry.functions.withdrawStake(to_checksum_address(token)), sender)

    # --- CapacityRegistry: nodes ---------------------------------------------------------------------

    def register_node(
        self,
        sender: str,
        attestor: str,
        gpu_model: bytes | str,
        gpu_uuid_hashes: Sequence[bytes],
        vram_mib: int,
        max_power_mw_per_gpu: int,
        region: bytes | str,
    ) -> Created:
        """Register a node; ``gpu_uuid_hashes[i]`` = ``ledger.protocol.gpu_uuid_hash`` of GPU i."""
        fn = self.registry.functions.registerNode(
            to_checksum_address(attestor),
            _b32(gpu_model, "gpu_model"),
            [bytes(h) for h in gpu_uuid_hashes],
            vram_mib,
            max_power_mw_per_gpu,
            _b8(region, "region"),
        )
        res = self._send(fn, sender)
        return Created(int(res.event("NodeRegistered").args["nodeId"]), res)

    def rotate_attestor(self, sender: str, node_id: int, new_attestor: str) -> TxResult:
        return self._send(self.registry.functions.rotateAttestor(node_id, to_checksum_address(new_attestor)), sender)

    def deactivate_node(self, sender: str, node_id: int) -> TxResult:
        return self._send(self.registry.functions.deactivateNode(node_id), sender)

    # --- CapacityRegistry: offers and rights ---------------------------------------------------------

    def publish_offer(
        self,
        sender: str,
        node_id: int,
        gpu_mask: int,
        price_per_gpu_second: int,
        token: str,
        billing_mode: BillingMode | int,
        valid_from: int,
        valid_until: int,
        min_buyer_score_bps: int = 0,
        terms_hash: bytes = ZERO_HASH,
    ) -> Created:
        """Publish an offer; mints gpuCount × (valid_until − valid_from) rights to the payout address."""
        fn = self.registry.functions.publishOffer(
            node_id,
            gpu_mask,
            price_per_gpu_second,
            to_checksum_address(token),
            int(billing_mode),
            valid_from,
            valid_until,
            min_buyer_score_bps,
            _b32(terms_hash, "terms_hash"),
        )
        res = self._send(fn, sender)
        return Created(int(res.event("OfferPublished").args["offerId"]), res)

    def transfer_rights(self, sender: str, to: str, offer_id: int, amount: int) -> TxResult:
        """ERC-1155 safeTransferFrom of ``amount`` rights of ``offer_id`` from ``sender``."""
        fn = self.registry.functions.safeTransferFrom(
            to_checksum_address(sender), to_checksum_address(to), offer_id, amount, b""
        )
        return self._send(fn, sender)

    def set_rights_approval(self, sender: str, operator: str, approved: bool) -> TxResult:
        """ERC-1155 setApprovalForAll on the registry (lets ``operator`` move all of ``sender``'s rights)."""
        return self._send(self.registry.functions.setApprovalForAll(to_checksum_address(operator), approved), sender)

    def is_rights_approved(self, holder: str, operator: str) -> bool:
        fn = self.registry.functions.isApprovedForAll(to_checksum_address(holder), to_checksum_address(operator))
        return bool(self._call(fn))

    def transfer_rights_from(self, sender: str, holder: str, to: str, offer_id: int, amount: int) -> TxResult:
        """safeTransferFrom by an approved operator ``sender`` on behalf of ``holder``."""
        fn = self.registry.functions.safeTransferFrom(
            to_checksum_address(holder), to_checksum_address(to), offer_id, amount, b""
        )
        return self._send(fn, sender)

    def rights_balance(self, holder: str, offer_id: int) -> int:
        return int(self._call(self.registry.functions.balanceOf(to_checksum_address(holder), offer_id)))

    # --- CapacityRegistry: admin ---------------------------------------------------------------------

    def set_registry_escrow(self, sender: str, escrow: str) -> TxResult:
        """Admin: point the registry at an escrow (grants it ESCROW_ROLE, revokes the previous one)."""
        return self._send(self.registry.functions.setEscrow(to_checksum_address(escrow)), sender)

    def set_unbonding_delay(self, sender: str, seconds: int) -> TxResult:
        return self._send(self.registry.functions.setUnbondingDelay(seconds), sender)

    def unbonding_delay(self) -> int:
        return int(self._call(self.registry.functions.unbondingDelay()))

    def registry_escrow(self) -> str:
        return str(self._call(self.registry.functions.escrow()))

    def grant_role(self, sender: str, contract: str, role: bytes, account: str) -> TxResult:
        """AccessControl grantRole on "registry", "escrow" or "reputation" (admin only)."""
        c = {"registry": self.registry, "escrow": self.escrow, "reputation": self.reputation}[contract]
        return self._send(c.functions.grantRole(role, to_checksum_address(account)), sender)

    def revoke_role(self, sender: str, contract: str, role: bytes, account: str) -> TxResult:
        c = {"registry": self.registry, "escrow": self.escrow, "reputation": self.reputation}[contract]
        return self._send(c.functions.revokeRole(role, to_checksum_address(account)), sender)

    # --- CapacityRegistry: views ---------------------------------------------------------------------

    def provider(self, account: str) -> ProviderInfo:
        account = to_checksum_address(account)
        p = self._call(self.registry.functions.provider(account))
        uri = self._call(self.registry.functions.metadataURI(account))
        return ProviderInfo(payout=p[0], registered=bool(p[1]), locked_rights=int(p[2]), metadata_uri=str(uri))

    def node(self, node_id: int) -> NodeInfo:
        n = self._call(self.registry.functions.node(node_id))
        gpus = self._call(self.registry.functions.nodeGpus(node_id))
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
        )

    def offer(self, offer_id: int) -> OfferInfo:
        o = self._call(self.registry.functions.offer(offer_id))
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

    def stake_of(self, provider: str, token: str) -> StakeInfo:
        s = self._call(self.registry.functions.stakeOf(to_checksum_address(provider), to_checksum_address(token)))
        return StakeInfo(bonded=int(s[0]), unbonding=int(s[1]), unbonding_ends=int(s[2]))

    def rights_of(self, offer_id: int) -> RightsInfo:
        m, lk, b = self._call(self.registry.functions.rightsOf(offer_id))
        return RightsInfo(minted=int(m), locked=int(lk), burned=int(b))

    def node_count(self) -> int:
        return int(self._call(self.registry.functions.nodeCount()))

    def offer_count(self) -> int:
        return int(self._call(self.registry.functions.offerCount()))

    # --- LeaseEscrow: leases -------------------------------------------------------------------------

    def quote_lease(self, offer_id: int, duration_s: int) -> LeaseQuote:
        """What openLease will charge now: escrow = price × gpuCount × duration, plus the fee."""
        o = self.offer(offer_id)
        fee_bps = self.fee_bps_for(o.provider)
        escrowed = o.price_per_gpu_second * o.gpu_count * duration_s
        fee = lease_fee(escrowed, fee_bps)
        return LeaseQuote(escrowed=escrowed, fee=fee, total=escrowed + fee, fee_bps=fee_bps)

    def open_lease(
        self,
        sender: str,
        offer_id: int,
        holder: str,
        duration_s: int,
        start_by: int,
        max_total: int | None = None,
        *,
        approve: bool = True,
    ) -> Created:
        """Open a lease as ``sender`` (the buyer), paying the quoted total (ETH value or ERC-20 pull,
        approved first if ``approve``). ``max_total`` defaults to the quote."""
        o = self.offer(offer_id)
        q = self.quote_lease(offer_id, duration_s)
        cap = q.total if max_total is None else max_total
        fn = self.escrow.functions.openLease(offer_id, to_checksum_address(holder), duration_s, start_by, cap)
        if to_checksum_address(o.token) == ETH:
            res = self._send(fn, sender, value=q.total)
        else:
            if approve:
                self._ensure_allowance(sender, o.token, self.deployment.escrow, q.total)
            res = self._send(fn, sender)
        return Created(int(res.event("LeaseOpened").args["leaseId"]), res)

    def activate_lease(self, sender: str, lease_id: int) -> TxResult:
        return self._send(self.escrow.functions.activateLease(lease_id), sender)

    def settle(
        self,
        sender: str,
        report: MeteringReport,
        signature: bytes,
        *,
        state: LeaseState | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Settle one signed report (reverts with the failing check's error)."""
        st = state or self.lease_state(report.leaseId)
        return self._send(self.escrow.functions.settle(encode_entry(report, signature, st)), sender, gas=gas)

    def settle_batch(
        self,
        sender: str,
        reports: Sequence[MeteringReport],
        signatures: Sequence[bytes],
        *,
        states: Mapping[int, LeaseState] | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Settle many reports in one transaction; bad ones emit CheckpointSkipped instead of reverting.

        ``states`` (by lease id) saves the look-up. Every entry of a lease carries the same (pre-batch) state,
        so a second report of a lease settles only if the first was skipped; to chain several, encode the
        entries yourself (``ledger.settlement.encode_entries``) with each one's state.
        """
        if len(reports) != len(signatures):
            raise ClientError("reports and signatures differ in length")
        if states is None:
            states = self.lease_states([r.leaseId for r in reports])
        data = encode_entries((r, s, states[r.leaseId]) for r, s in zip(reports, signatures))
        return self._send(self.escrow.functions.settleBatch(data), sender, gas=gas)

    def top_up(self, sender: str, lease_id: int, amount: int, *, approve: bool = True) -> TxResult:
        """Extend a lease by amount / (price × gpuCount) seconds; pays amount plus its fee."""
        ls = self.lease(lease_id)
        fee = top_up_fee(ls.price_per_gpu_second * ls.gpu_count * ls.duration_s, amount, ls.fee_bps)
        st = self.lease_state(lease_id)
        fn = self.escrow.functions.topUp(lease_id, amount, st.ckpt, st.last_hash)
        if to_checksum_address(ls.token) == ETH:
            return self._send(fn, sender, value=amount + fee)
        if approve:
            self._ensure_allowance(sender, ls.token, self.deployment.escrow, amount + fee)
        return self._send(fn, sender)

    def close_lease(self, sender: str, lease_id: int) -> TxResult:
        st = self.lease_state(lease_id)
        return self._send(self.escrow.functions.closeLease(lease_id, st.ckpt, st.last_hash), sender)

    def expire_lease(self, sender: str, lease_id: int) -> TxResult:
        return self._send(self.escrow.functions.expireLease(lease_id), sender)

    def dispute(self, sender: str, lease_id: int) -> TxResult:
        st = self.lease_state(lease_id)
        return self._send(self.escrow.functions.dispute(lease_id, st.ckpt, st.last_hash), sender)

    def resolve_dispute(self, sender: str, lease_id: int, buyer_share_bps: int, provider_fault: bool) -> TxResult:
        st = self.lease_state(lease_id)
        fn = self.escrow.functions.resolveDispute(lease_id, buyer_share_bps, provider_fault, st.ckpt, st.last_hash)
        return self._send(fn, sender)

    def release_earnings(self, sender: str, lease_id: int) -> TxResult:
        st = self.lease_state(lease_id)
        return self._send(self.escrow.functions.releaseEarnings(lease_id, st.ckpt, st.last_hash), sender)

    def withdraw(self, sender: str, token: str = ETH) -> TxResult:
        return self._send(self.escrow.functions.withdraw(to_checksum_address(token)), sender)

    def rate(self, sender: str, lease_id: int, stars: int) -> TxResult:
        return self._send(self.escrow.functions.rate(lease_id, stars), sender)

    def sync_node(self, sender: str, node_id: int) -> TxResult:
        return self._send(self.escrow.functions.syncNode(node_id), sender)

    # --- LeaseEscrow: admin --------------------------------------------------------------------------

    def pause(self, sender: str) -> TxResult:
        return self._send(self.escrow.functions.pause(), sender)

    def unpause(self, sender: str) -> TxResult:
        return self._send(self.escrow.functions.unpause(), sender)

    def set_fee_config(
        self, sender: str, base_fee_bps: int, discounted_fee_bps: int, discount_min_score_bps: int, discount_min_completed: int
    ) -> TxResult:
        fn = self.escrow.functions.setFeeConfig(
            base_fee_bps, discounted_fee_bps, discount_min_score_bps, discount_min_completed
        )
        return self._send(fn, sender)

    def set_challenge_period(self, sender: str, seconds: int) -> TxResult:
        return self._send(self.escrow.functions.setChallengePeriod(seconds), sender)

    def set_slash_bps(self, sender: str, slash_bps: int) -> TxResult:
        return self._send(self.escrow.functions.setSlashBps(slash_bps), sender)

    def set_treasury(self, sender: str, treasury: str) -> TxResult:
        return self._send(self.escrow.functions.setTreasury(to_checksum_address(treasury)), sender)

    # --- LeaseEscrow: views --------------------------------------------------------------------------

    def lease(self, lease_id: int) -> LeaseInfo:
        v = self._call(self.escrow.functions.lease(lease_id))
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

    def checkpoint(self, lease_id: int) -> CheckpointInfo:
        st = self.lease_state(lease_id)
        v = self._call(self.escrow.functions.checkpoint(lease_id, st.ckpt, st.last_hash))
        return CheckpointInfo(
            last_seq=int(v[0]),
            last_report_hash=bytes(v[1]),
            cum_busy_ms=int(v[2]),
            cum_energy_mj=int(v[3]),
            cum_allocated_ms=int(v[4]),
            last_window_end_ms=int(v[5]),
            last_settled_at=int(v[6]),
            charged=int(v[7]),
            paid=int(v[8]),
            pending=int(v[9]),
            frozen=int(v[10]),
            refunded=int(v[11]),
            remaining=int(v[12]),
        )

    def withdrawable(self, account: str, token: str = ETH) -> int:
        fn = self.escrow.functions.withdrawable(to_checksum_address(account), to_checksum_address(token))
        return int(self._call(fn))

    def fee_bps_for(self, provider: str) -> int:
        return int(self._call(self.escrow.functions.feeBpsFor(to_checksum_address(provider))))

    def live_lease_of(self, offer_id: int) -> int:
        return int(self._call(self.escrow.functions.liveLeaseOf(offer_id)))

    def lease_count(self) -> int:
        return int(self._call(self.escrow.functions.leaseCount()))

    def fee_config(self) -> FeeConfig:
        v = self._call(self.escrow.functions.feeConfig())
        return FeeConfig(*(int(x) for x in v))

    def challenge_period(self) -> int:
        return int(self._call(self.escrow.functions.challengePeriod()))

    def treasury(self) -> str:
        return str(self._call(self.escrow.functions.treasury()))

    def node_cache(self, node_id: int) -> tuple[str, int]:
        a, p = self._call(self.escrow.functions.nodeCache(node_id))
        return str(a), int(p)

    def paused(self) -> bool:
        return bool(self._call(self.escrow.functions.paused()))

    def domain_separator(self) -> bytes:
        return bytes(self._call(self.escrow.functions.domainSeparator()))

    def hash_report(self, report: MeteringReport) -> bytes:
        """The contract's EIP-712 struct hash of ``report``."""
        return bytes(self._call(self.escrow.functions.hashReport(report_tuple(report))))

    def report_digest(self, report: MeteringReport) -> bytes:
        """The contract's EIP-712 digest of ``report`` (what the attestor signs)."""
        return bytes(self._call(self.escrow.functions.reportDigest(report_tuple(report))))

    def entry_digest(self, report: MeteringReport) -> bytes:
        """The digest the settle path computes from a settlement entry of ``report``."""
        entry = encode_entry(report, bytes(65), LeaseState(report.leaseId, 0, 0, report.prevReportHash))
        return bytes(self._call(self.escrow.functions.entryDigest(entry)))

    def state_hash(self, lease_id: int) -> bytes:
        """The escrow's commitment to the lease's (terms, ckpt, last report hash); zero: no lease."""
        return bytes(self._call(self.escrow.functions.stateHash(lease_id)))

    def has_role(self, contract: str, role: bytes, account: str) -> bool:
        c = {"registry": self.registry, "escrow": self.escrow, "reputation": self.reputation}[contract]
        return bool(self._call(c.functions.hasRole(role, to_checksum_address(account))))

    # --- Reputation ----------------------------------------------------------------------------------

    def score_of(self, account: str) -> int:
        """Beta-model score in basis points (5000 for a fresh account)."""
        return int(self._call(self.reputation.functions.scoreOf(to_checksum_address(account))))

    def counts_of(self, account: str) -> ReputationCounts:
        v = self._call(self.reputation.functions.countsOf(to_checksum_address(account)))
        return ReputationCounts(*(int(x) for x in v))

    def rated(self, lease_id: int) -> bool:
        return bool(self._call(self.reputation.functions.rated(lease_id)))


def _abi_type(inp: Mapping[str, Any]) -> str:
    t = str(inp["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp.get("components", [])) + ")" + t[5:]
    return t


def _has_artifact(name: str) -> bool:
    from .compiler import ArtifactNotFound

    try:
        load_artifact(name)
        return True
    except ArtifactNotFound:
        return False


_MIN_ERC20_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "approve",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "spender", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "type": "function",
        "name": "allowance",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "account", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
]

__all__ = [
    "ETH",
    "BillingMode",
    "LeaseStatus",
    "Outcome",
    "Event",
    "TxResult",
    "Created",
    "ProviderInfo",
    "NodeInfo",
    "OfferInfo",
    "StakeInfo",
    "RightsInfo",
    "LeaseInfo",
    "CheckpointInfo",
    "ReputationCounts",
    "LeaseQuote",
    "FeeConfig",
    "LedgerClient",
    "Transactor",
    "ClientError",
    "ContractRevert",
    "LeaseState",
    "lease_fee",
    "top_up_fee",
    "report_tuple",
]
