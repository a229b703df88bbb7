"""Contract reverts as Python exceptions: the one place revert data is decoded.

Every custom error of every contract artifact (and Solidity's ``Error(string)`` / ``Panic(uint256)``) is
known by its 4-byte selector. :func:`decode_exception` turns whatever a backend raised into a
:class:`ContractRevert` carrying the error's ``name`` and decoded ``args``:

- eth-tester raises ``eth_tester.exceptions.TransactionFailed("execution reverted: b'...'")`` with the
  raw revert data as the repr of a bytes object (or the decoded reason string for ``Error(string)``);
- web3 over JSON-RPC (anvil, geth) raises ``ContractCustomError`` / ``ContractLogicError`` /
  ``ContractPanicError`` whose ``.data`` is the 0x-hex revert data.

Usage::

    try:
        client.settle(relayer, report, signature)
    except ContractRevert as e:
        if e.name == "LeaseEscrowStaleReport": ...
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from .compiler import ArtifactNotFound, load_artifact
from .errors import ChainError

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

# Contracts whose ABIs contribute error definitions (test contracts add theirs when present).
ARTIFACT_NAMES: tuple[str, ...] = (
    "CapacityRegistry",
    "LeaseEscrow",
    "LeaseEscrowExtension",
    "Reputation",
    "VoucherVault",
    "DynamicPricer",
    "MockERC20",
    "ReentrantToken",
    "RevertingReceiver",
    "ReentrantReceiver",
)


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One custom error: its name, argument names and ABI types."""

    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.arg_types)})"

    @property
    def selector(self) -> bytes:
        return keccak(text=self.signature)[:4]


class ContractRevert(ChainError):
    """A call or transaction reverted. ``name`` is the custom error (or ``Error`` / ``Panic`` /
    ``Unknown``), ``args`` its decoded arguments in declaration order, ``data`` the raw revert data."""

    def __init__(self, name: str, args: tuple[Any, ...], data: bytes, arg_names: tuple[str, ...] = ()) -> None:
        self.name = name
        self.args_ = args
        self.data = data
        self.arg_names = arg_names
        shown = ", ".join(repr(a) for a in args)
        super().__init__(f"{name}({shown})")

    @property
    def kwargs(self) -> dict[str, Any]:
        """Arguments by name (positional names ``arg0``... when the ABI gives none)."""
        names = self.arg_names or tuple(f"arg{i}" for i in range(len(self.args_)))
        return dict(zip(names, self.args_))

    # `args` is BaseException's tuple of constructor arguments; expose the decoded ones under a clear name.
    @property
    def error_args(self) -> tuple[Any, ...]:
        return self.args_


class TransactionReverted(ContractRevert):
    """A mined transaction has status 0 (sent with explicit gas, so no revert data was captured)."""


def _type_of(inp: dict[str, Any]) -> str:
    t = str(inp["type"])
    if t.startswith("tuple"):
        inner = ",".join(_type_of(c) for c in inp.get("components", []))
        return f"({inner}){t[5:]}"
    return t


def specs_from_abi(abi: Iterable[dict[str, Any]]) -> list[ErrorSpec]:
    out: list[ErrorSpec] = []
    for item in abi:
        if item.get("type") != "error":
            continue
        inputs = item.get("inputs", [])
        out.append(
            ErrorSpec(
                name=str(item["name"]),
                arg_names=tuple(str(i.get("name", "")) for i in inputs),
                arg_types=tuple(_type_of(i) for i in inputs),
            )
        )
    return out


@lru_cache(maxsize=1)
def error_registry() -> dict[bytes, ErrorSpec]:
    """Selector -> error, from every known contract artifact."""
    reg: dict[bytes, ErrorSpec] = {}
    for name in ARTIFACT_NAMES:
        try:
            abi = load_artifact(name)["abi"]
        except ArtifactNotFound:
            continue
        for spec in specs_from_abi(abi):
            reg.setdefault(spec.selector, spec)
    return reg


def error_selector(name: str) -> bytes:
    """Selector of a known custom error by name; raises KeyError for an unknown one."""
    for sel, spec in error_registry().items():
        if spec.name == name:
            return sel
    raise KeyError(name)


def error_name(selector: bytes) -> str:
    """Name of the error with this selector, or its hex if unknown."""
    spec = error_registry().get(bytes(selector))
    return spec.name if spec else "0x" + bytes(selector).hex()


def decode_revert_data(data: bytes) -> ContractRevert:
    """Decode raw revert data into a :class:`ContractRevert`."""
    data = bytes(data)
    if len(data) < 4:
        return ContractRevert("Unknown", (), data)
    sel, body = data[:4], data[4:]
    if sel == ERROR_STRING_SELECTOR:
        try:
            return ContractRevert("Error", (abi_decode(["string"], body)[0],), data, ("reason",))
        except Exception:
            return ContractRevert("Error", (), data)
    if sel == PANIC_SELECTOR:
        try:
            return ContractRevert("Panic", (abi_decode(["uint256"], body)[0],), data, ("code",))
        except Exception:
            return ContractRevert("Panic", (), data)
    spec = error_registry().get(sel)
    if spec is None:
        return ContractRevert("Unknown", (), data)
    try:
        values = tuple(_normalize(t, v) for t, v in zip(spec.arg_types, abi_decode(list(spec.arg_types), body)))
    except Exception:
        return ContractRevert(spec.name, (), data, spec.arg_names)
    return ContractRevert(spec.name, values, data, spec.arg_names)


def _normalize(abi_type: str, value: Any) -> Any:
    """Checksummed addresses, plain bytes; everything else as decoded."""
    if abi_type == "address" and isinstance(value, str):
        return to_checksum_address(value)
    if abi_type.endswith("[]") and isinstance(value, (list, tuple)):
        return tuple(_normalize(abi_type[:-2], v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return value


def _hex_to_bytes(value: str) -> bytes | None:
    s = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        return bytes.fromhex(s)
    except ValueError:
        return None


def _revert_data_of(exc: BaseException) -> bytes | str | None:
    """Raw revert data (bytes), a plain reason (str), or None when ``exc`` is not a revert."""
    # web3 over JSON-RPC: ContractCustomError / ContractLogicError / ContractPanicError carry .data
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        raw = _hex_to_bytes(data)
        if raw is not None:
            return raw
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, dict) and isinstance(data.get("data"), str):
        raw = _hex_to_bytes(data["data"])
        if raw is not None:
            return raw
    # eth-tester: TransactionFailed("execution reverted: b'...'") or the decoded Error(string) reason
    if type(exc).__name__ == "TransactionFailed" and exc.args:
        first = exc.args[0]
        if isinstance(first, Exception) and first.args:
            first = first.args[0]
        if isinstance(first, (bytes, bytearray)):
            return bytes(first)
        if isinstance(first, str):
            msg = first
            prefix = "execution reverted: "
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
            if msg.startswith(("b'", 'b"')):
                try:
                    value = ast.literal_eval(msg)
                except (ValueError, SyntaxError):
                    return msg
                if isinstance(value, bytes):
                    return value
            return msg
    return None


def decode_exception(exc: BaseException) -> ContractRevert | None:
    """The :class:`ContractRevert` an exception from web3 or eth-tester stands for; None if not a revert."""
    if isinstance(exc, ContractRevert):
        return exc
    found = _revert_data_of(exc)
    if found is None:
        return None
    if isinstance(found, bytes):
        return decode_revert_data(found)
    if found in ("execution reverted", ""):
        return ContractRevert("Unknown", (), b"")
    return ContractRevert("Error", (found,), b"", ("reason",))
