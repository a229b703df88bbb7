"""The suite's events: decoding receipts' logs and reading ranges of blocks, one shape for every consumer.

``settleBatch``'s ``CheckpointsSettled(bytes records)`` is decoded as one ``CheckpointSettled`` event per
84-byte record (same log index, ``record_index`` its position); ``settle``'s own ``CheckpointSettled`` is
decoded to the same args (``SettlementRecord.as_args``), so consumers see one shape whichever way a
checkpoint was settled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from ..protocol.economics import LeaseEvent
from ..protocol.settlement import SettlementRecord, decode_records
from .contracts import Contracts
from .errors import ChainError, ChainUnavailable

# blocks per eth_getLogs request (public RPC providers cap the range)
LOG_SCAN_BLOCKS = 5_000


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """A decoded log of the suite. ``args`` holds plain Python values (bytes, int, str, dict for structs);
    ``contract`` is "registry", "escrow" or "reputation"; hashes are 0x-hex."""

    contract: str
    address: str
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    record_index: int = 0

    @property
    def order(self) -> tuple[int, int, int]:
        """(block number, log index, record index): the chain's order of events."""
        return (self.block_number, self.log_index, self.record_index)

    def lease_event(self) -> LeaseEvent:
        """This event as the money fold (``ledger.protocol.economics.fold_lease``) reads it."""
        return LeaseEvent(self.name, self.args, self.order, self.tx_hash)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return value


def _abi_type(inp: Mapping[str, Any]) -> str:
    t = str(inp["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp.get("components", [])) + ")" + t[5:]
    return t


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


class EventDecoder:
    """Decodes the logs of the three contracts (logs of other addresses are skipped)."""

    def __init__(self, contracts: Contracts) -> None:
        self.contracts = contracts
        self.topics: dict[bytes, tuple[Contract, str, str]] = {}
        # by (address, topic): contracts share events (AccessControl's RoleGranted, ...)
        self._at: dict[tuple[str, bytes], tuple[Contract, str, str]] = {}
        for cname, contract in contracts.by_name.items():
            abi: list[dict[str, Any]] = cast(Any, contract.abi)
            for item in abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    sig = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                    topic = keccak(text=sig)
                    self.topics[topic] = self._at[(str(contract.address), topic)] = (contract, cname, str(item["name"]))

    def topics_of(self, names: Iterable[str]) -> list[str]:
        """0x topic hashes of the named events (``CheckpointSettled`` includes ``CheckpointsSettled``)."""
        wanted = set(names)
        if "CheckpointSettled" in wanted:
            wanted.add("CheckpointsSettled")
        found = ["0x" + t.hex() for t, (_, _, n) in self.topics.items() if n in wanted]
        if not found:
            raise ChainError(f"unknown event(s) {sorted(wanted)}")
        return found

    def decode(self, logs: Iterable[Any]) -> list[ChainEvent]:
        out: list[ChainEvent] = []
        for log in logs:
            address = to_checksum_address(log["address"])
            if address not in self.contracts.name_of or not log["topics"]:
                continue
            found = self._at.get((address, bytes(log["topics"][0])))
            if found is None:
                continue
            contract, cname, name = found
            data = contract.events[name]().process_log(log)
            base: dict[str, Any] = {
                "contract": cname,
                "address": address,
                "block_number": int(log["blockNumber"]),
                "block_hash": _hex(log["blockHash"]),
                "tx_hash": _hex(log["transactionHash"]),
                "log_index": int(log["logIndex"]),
            }
            records: list[SettlementRecord] | None = None
            if name == "CheckpointSettled":
                a = data["args"]
                records = [SettlementRecord(int(a["leaseId"]), bytes(a["reportHash"]), int(a["ckpt"]), int(a["charged"]))]
            elif name == "CheckpointsSettled":
                records = decode_records(bytes(data["args"]["records"]))
            if records is not None:
                out.extend(
                    ChainEvent(name="CheckpointSettled", args={**rec.as_args(), "recordIndex": i}, record_index=i, **base)
                    for i, rec in enumerate(records)
                )
                continue
            out.append(ChainEvent(name=name, args=_plain(dict(data["args"])), **base))
        return out


class EventReader:
    """Reads decoded events from block ranges, in bounded ``eth_getLogs`` requests."""

    def __init__(self, w3: Web3, contracts: Contracts, decoder: EventDecoder, lock: Any) -> None:
        self.w3 = w3
        self.contracts = contracts
        self.decoder = decoder
        self._lock = lock

    def read(
        self,
        name: str | None = None,
        *,
        from_block: int | None = None,
        to_block: int | str = "latest",
        contract: str | None = None,
        chunk_blocks: int | None = None,
    ) -> list[ChainEvent]:
        """Every decoded event of the suite in a block range (default: from the deployment block).

        ``name`` filters by event name; ``contract`` by "registry" / "escrow" / "reputation". Raises
        :class:`ChainUnavailable` when the node does not answer."""
        chunk = LOG_SCAN_BLOCKS if chunk_blocks is None else chunk_blocks
        start = self.contracts.deployment.block if from_block is None else from_block
        addrs = [self.contracts.by_name[contract].address] if contract else self.contracts.addresses
        flt: dict[str, Any] = {"address": addrs}
        if name is not None:
            flt["topics"] = [self.decoder.topics_of([name])]
        try:
            with self._lock:
                last = int(self.w3.eth.get_block(cast(Any, to_block))["number"]) if isinstance(to_block, str) else int(to_block)
            logs: list[Any] = []
            for lo in range(start, last + 1, chunk):
                flt["fromBlock"], flt["toBlock"] = lo, min(lo + chunk - 1, last)
                with self._lock:
                    logs.extend(self.w3.eth.get_logs(cast(Any, flt)))
        except Exception as e:
            raise ChainUnavailable(f"cannot read events: {type(e).__name__}: {str(e)[:300]}") from e
        return self.decoder.decode(logs)

    def logs_between(self, start: int, end: int) -> list[ChainEvent]:
        """All events of blocks ``start..end`` in one request (the indexer's chunks)."""
        try:
            with self._lock:
                flt: Any = {"fromBlock": start, "toBlock": end, "address": self.contracts.addresses}
                logs = self.w3.eth.get_logs(flt)
        except Exception as e:
            raise ChainUnavailable(f"cannot read events: {type(e).__name__}: {str(e)[:300]}") from e
        return self.decoder.decode(logs)
