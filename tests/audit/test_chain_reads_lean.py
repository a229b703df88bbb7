"""Over HTTP, ``ChainReader.call`` encodes, sends and decodes a view itself (a third of web3's per-call
cost): on a chain with providers, nodes, offers, leases and settlements, every view of every deployed
contract answers exactly what web3 answers (values and their Python types), or raises as web3 raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger.chain.backends import connect
from ledger.chain.suite import LedgerChain
from ledger.protocol.errors import LedgerError
from tests.audit.test_audit_chain import run_lease


def _typed(v: Any) -> Any:
    """The value with the type of every part, so that a tuple answered for a list differs."""
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [_typed(x) for x in v])
    return (type(v).__name__, v)


def _not_web3(*_: Any, **__: Any) -> Any:
    raise AssertionError("ChainReader.call went through web3 for a plain view over HTTP")


def _args_for(inputs: list[dict[str, Any]], ids: list[int], addresses: list[str]) -> list[list[Any]]:
    """A few argument lists for a view: every id and address the scenario has (and ones it has not)."""
    if not inputs:
        return [[]]
    choices: list[list[Any]] = []
    for inp in inputs:
        t = inp["type"]
        if t.startswith("uint") and "[" not in t:
            choices.append(ids)
        elif t == "address":
            choices.append(addresses)
        elif t == "bytes32":
            choices.append([b"\x00" * 32])
        else:
            return []  # structs and arrays: the views taking them are called by their own tests
    out: list[list[Any]] = [[]]
    for options in choices:
        out = [a + [o] for a in out for o in options][:40]
    return out


@pytest.mark.anvil
def test_every_view_answers_as_web3_answers(tmp_path: Path) -> None:
    try:
        chain = connect("anvil", data_dir=tmp_path / "anvil")
    except LedgerError as e:
        pytest.skip(f"anvil is not available: {e}")
    try:
        sc = run_lease(chain)
        read = LedgerChain(chain, sc.client.deployment).read
        ids = [0, 1, sc.lease_id, sc.node_id, sc.neighbour_id, 10**6]
        addresses = [sc.provider, *chain.accounts[:4], "0x" + "00" * 20]
        compared = raised = 0
        for contract in (read.registry, read.escrow, read.reputation):
            for entry in contract.abi:
                if entry.get("type") != "function" or entry.get("stateMutability") not in ("view", "pure"):
                    continue
                for args in _args_for(entry["inputs"], ids, addresses):
                    fn = contract.get_function_by_signature(
                        f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
                    )(*args)
                    try:
                        expected = fn.call()
                    except Exception as e:  # noqa: BLE001 - the lean path must raise too (web3 decides how)
                        with pytest.raises(Exception) as got:
                            read.call(fn)
                        assert type(got.value).__name__ in (type(e).__name__, "ContractRevert", "UndecodableAnswer",
                                                            "ChainUnavailable"), (entry["name"], args, got.value)  # fmt: skip
                        raised += 1
                        continue
                    fn.call = _not_web3  # the answer must come from the direct path, not web3's
                    assert _typed(read.call(fn)) == _typed(expected), (entry["name"], args)
                    compared += 1
        assert compared >= 100 and raised >= 5, (compared, raised)
    finally:
        chain.close()
