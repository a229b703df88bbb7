"""Build pipeline and chain backends (issue 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from ledger.chain import compiler
from ledger.chain.backends import Chain, ChainError, connect
from compute_ledger.cli import main as cli_main

COUNTER_SOL = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract Counter is Ownable {
    uint256 public value;
    event Set(uint256 value);
    constructor() Ownable(msg.sender) {}
    function set(uint256 v) external onlyOwner { value = v; emit Set(v); }
}
"""


@pytest.fixture(scope="module")
def counter_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("build")
    src, out = root / "src", root / "artifacts"
    (src / "lib").mkdir(parents=True)
    (src / "Counter.sol").write_text(COUNTER_SOL)
    (src / "lib" / "IThing.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ninterface IThing { function x() external; }\n"
    )
    compiler.compile_contracts(src, out)
    return src, out


def _deploy_counter(chain: Chain, artifact: dict[str, Any]) -> Any:
    w3 = chain.w3
    owner = chain.accounts[0]
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor().transact({"from": owner})
    receipt = w3.eth.wait_for_transaction_receipt(tx, poll_latency=0.01)
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def test_compile_writes_artifact_per_deployable_contract(counter_build: tuple[Path, Path]) -> None:
    _, out = counter_build
    names = sorted(p.stem for p in out.glob("*.json"))
    assert names == ["Counter"]  # the interface has no bytecode and gets no artifact
    art = json.loads((out / "Counter.json").read_text())
    assert art["contractName"] == "Counter"
    assert art["bytecode"].startswith("0x60") and len(art["deployedBytecode"]) > 100
    assert art["compiler"].startswith("0.8.")
    assert art["sourceHash"].startswith("sha256:")
    assert any(e.get("name") == "set" for e in art["abi"])


def test_check_passes_on_clean_tree_and_names_stale_contract_after_edit(
    counter_build: tuple[Path, Path], tmp_path: Path
) -> None:
    src, out = counter_build
    assert compiler.check_artifacts(src, out) == []
    edited = tmp_path / "src"
    shutil.copytree(src, edited)
    (edited / "Counter.sol").write_text(COUNTER_SOL.replace("value = v;", "value = v + 1;"))
    stale = compiler.check_artifacts(edited, out)
    assert [s.contract for s in stale] == ["Counter"]
    assert "differs" in stale[0].reason


def test_check_reports_missing_artifact(counter_build: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = counter_build
    stale = compiler.check_artifacts(src, tmp_path / "empty")
    assert [(s.contract, s.reason) for s in stale] == [("Counter", "no committed artifact")]


def test_compile_writes_abi_only_artifact_for_listed_interface_and_checks_it(
    counter_build: tuple[Path, Path], tmp_path: Path
) -> None:
    # as ILeaseEscrow, the escrow's one ABI: an interface named in ABI_ARTIFACTS gets an artifact without bytecode
    src, _ = counter_build
    out = tmp_path / "artifacts"
    assert compiler.compile_contracts(src, out, abi_only=("IThing",)) == ["Counter", "IThing"]
    art = json.loads((out / "IThing.json").read_text())
    assert [e["name"] for e in art["abi"]] == ["x"]
    assert "bytecode" not in art and art["sourceHash"].startswith("sha256:")
    assert compiler.check_artifacts(src, out, abi_only=("IThing",)) == []
    edited = tmp_path / "src"
    shutil.copytree(src, edited)
    (edited / "lib" / "IThing.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\n"
        "interface IThing { function x() external; function y() external; }\n"
    )
    stale = compiler.check_artifacts(edited, out, abi_only=("IThing",))
    assert [(s.contract, s.reason) for s in stale] == [("IThing", "abi differs from contracts/src/lib/IThing.sol")]


def test_compile_reports_solidity_error_as_compiler_error(tmp_path: Path) -> None:
    (tmp_path / "Bad.sol").write_text("pragma solidity ^0.8.24; contract Bad { function f( }")
    with pytest.raises(compiler.CompilerError, match="ParserError"):
        compiler.compile_contracts(tmp_path, tmp_path / "out")


def test_wrapper_returns_output_larger_than_64KiB_intact() -> None:
    std_input = {
        "language": "Solidity",
        "sources": {
            "src/Big.sol": {
                "content": 'pragma solidity ^0.8.24; import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";'
                "contract Big is ERC1155 { constructor() ERC1155(\"\") {} }"
            }
        },
        "settings": {
            "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
            "outputSelection": {"*": {"*": ["abi", "evm.assembly", "evm.bytecode", "metadata"], "": ["ast"]}},
        },
    }
    proc = subprocess.run(
        [str(compiler.SOLC_WRAPPER), "--standard-json"],
        input=json.dumps(std_input).encode(),
        capture_output=True,
        cwd=compiler.CONTRACTS_DIR,
        check=True,
    )
    assert len(proc.stdout) > 64 * 1024
    out = json.loads(proc.stdout)  # truncated output would not parse
    assert "Big" in out["contracts"]["src/Big.sol"]
    assert not [e for e in out.get("errors", []) if e["severity"] == "error"]


def test_wrapper_reports_version_like_native_solc() -> None:
    proc = subprocess.run([str(compiler.SOLC_WRAPPER), "--version"], capture_output=True, text=True, check=True)
    assert "Version: 0.8." in proc.stdout


def test_memory_backend_deploys_and_answers_call(counter_build: tuple[Path, Path]) -> None:
    _, out = counter_build
    art = json.loads((out / "Counter.json").read_text())
    chain = connect("memory")
    c = _deploy_counter(chain, art)
    tx = c.functions.set(42).transact({"from": chain.accounts[0]})
    rcpt = chain.w3.eth.wait_for_transaction_receipt(tx)
    assert c.functions.value().call() == 42
    (ev,) = c.events.Set().process_receipt(rcpt)
    assert ev["args"]["value"] == 42
    snap = chain.snapshot()
    c.functions.set(7).transact({"from": chain.accounts[0]})
    chain.revert(snap)
    assert c.functions.value().call() == 42
    t0 = chain.now()
    chain.increase_time(3600)
    assert chain.now() >= t0 + 3600


@pytest.mark.anvil
def test_anvil_backend_deploys_answers_and_resumes_state_after_restart(
    counter_build: tuple[Path, Path], tmp_path: Path
) -> None:
    _, out = counter_build
    art = json.loads((out / "Counter.json").read_text())
    data = tmp_path / "chain"
    with connect("anvil", data_dir=data) as chain:
        assert chain.rpc_url is not None and chain.rpc_url.startswith("http://127.0.0.1:")
        c = _deploy_counter(chain, art)
        tx = c.functions.set(1234).transact({"from": chain.accounts[0]})
        chain.w3.eth.wait_for_transaction_receipt(tx, poll_latency=0.01)
        address = c.address
        block = chain.w3.eth.block_number
    assert (data / "anvil-state.json").exists()
    with connect("anvil", data_dir=data) as chain2:
        assert chain2.w3.eth.block_number >= block
        c2 = chain2.w3.eth.contract(address=address, abi=art["abi"])
        assert c2.functions.value().call() == 1234


def test_rpc_backend_unreachable_url_is_one_clear_error() -> None:
    with pytest.raises(ChainError, match="no JSON-RPC answer at http://127.0.0.1:9"):
        connect("rpc", rpc_url="http://127.0.0.1:9")


def test_cli_chain_unreachable_rpc_exits_nonzero_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["chain", "--backend", "rpc", "--rpc-url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == ["compute-ledger chain: no JSON-RPC answer at http://127.0.0.1:9"]


def test_anvil_missing_binary_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ledger.chain.backends as chain_mod

    monkeypatch.setattr(chain_mod, "ANVIL_BIN", tmp_path / "nope")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChainError, match="anvil binary not found"):
        connect("anvil")


def test_unknown_backend_rejected() -> None:
    with pytest.raises(ChainError, match="unknown chain backend 'geth'"):
        connect("geth")


def test_checksum_dev_accounts_have_keys() -> None:
    chain = connect("memory")
    from ledger.chain.signing import address_of

    for addr in chain.accounts[:3]:
        assert Web3.is_checksum_address(addr)
        assert address_of(chain.private_keys[addr]) == addr
