"""The escrow's ABI is one build product: the ILeaseEscrow interface's (ledger/artifacts/ILeaseEscrow.json), which
must be exactly LeaseEscrow's and LeaseEscrowExtension's ABIs together, since the client calls both halves
through the escrow's one address."""

from __future__ import annotations

import json
from functools import reduce
from typing import Any

from eth_utils import keccak

from ledger.chain.compiler import load_artifact
from ledger.chain.contracts import escrow_abi

from .conftest import World

# What no caller invokes by name; ILeaseEscrow leaves them out (its NatSpec says why).
NOT_IN_INTERFACE = ("constructor", "fallback", "receive")
# Functions ILeaseEscrow has from OpenZeppelin (AccessControl, EIP712, ERC165, Pausable), not from the escrow's
# own interfaces, so not in LEASE_ESCROW_INTERFACE_ID.
OPENZEPPELIN_FUNCTIONS = {
    "DEFAULT_ADMIN_ROLE",
    "eip712Domain",
    "getRoleAdmin",
    "grantRole",
    "hasRole",
    "paused",
    "renounceRole",
    "revokeRole",
    "supportsInterface",
}


def _canon(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


def _signature(item: dict[str, Any]) -> str:
    def typ(i: dict[str, Any]) -> str:
        t = str(i["type"])
        if t.startswith("tuple"):
            return "(" + ",".join(typ(c) for c in i["components"]) + ")" + t[5:]
        return t

    return f"{item['name']}({','.join(typ(i) for i in item['inputs'])})"


def test_escrow_abi_is_the_interface_artifact() -> None:
    art = load_artifact("ILeaseEscrow")
    assert "bytecode" not in art and art["sourcePath"] == "contracts/src/interfaces/ILeaseEscrow.sol"
    assert list(escrow_abi()) == art["abi"]


def test_escrow_abi_is_exactly_both_contracts_abis() -> None:
    both = {
        _canon(item)
        for name in ("LeaseEscrow", "LeaseEscrowExtension")
        for item in load_artifact(name)["abi"]
        if item["type"] not in NOT_IN_INTERFACE
    }
    abi = [_canon(item) for item in escrow_abi()]
    assert len(abi) == len(set(abi)), "an entry appears twice"
    assert set(abi) - both == set(), "the interface declares what neither contract has"
    assert both - set(abi) == set(), "a contract has what the interface does not declare"


def test_escrow_abi_has_every_extension_function_and_event() -> None:
    abi = escrow_abi()
    ext = load_artifact("LeaseEscrowExtension")["abi"]
    for kind in ("function", "event", "error"):
        have = {_signature(i) for i in abi if i["type"] == kind}
        assert {_signature(i) for i in ext if i["type"] == kind} <= have, kind


def test_escrow_supports_its_whole_interface_id(world: World) -> None:
    own = [i for i in escrow_abi() if i["type"] == "function" and i["name"] not in OPENZEPPELIN_FUNCTIONS]
    selectors = [int.from_bytes(keccak(text=_signature(i))[:4], "big") for i in own]
    interface_id = reduce(lambda a, b: a ^ b, selectors).to_bytes(4, "big")
    supports = world.cl.escrow.functions.supportsInterface
    assert len(own) == 43  # ILeaseEscrowBase 6 + ILeaseEscrowCore 13 + ILeaseEscrowExtension 24
    assert supports(interface_id).call() is True
    assert supports(bytes.fromhex("7965db0b")).call() is True  # IAccessControl
    assert supports(bytes.fromhex("01ffc9a7")).call() is True  # IERC165
    assert supports(bytes.fromhex("ffffffff")).call() is False
    # the id of the interface one function short (as the old ILeaseEscrow was) is not claimed
    short = (int.from_bytes(interface_id, "big") ^ selectors[0]).to_bytes(4, "big")
    assert supports(short).call() is False
