"""Contract build pipeline: Solidity sources -> committed JSON artifacts (ABI + bytecode).

Compilation goes through py-solc-x with a small node wrapper around the official solcjs build
(``contracts/tools/solc.js``), because no native compiler can be downloaded where this project runs.
Running the product never needs a compiler: it loads the committed artifacts in ``ledger/chain/artifacts``.

``compile_contracts()`` writes one artifact per deployable contract, and an ABI-only artifact per interface
named in ``ABI_ARTIFACTS`` (``ILeaseEscrow``: the escrow's one ABI, LeaseEscrow with LeaseEscrowExtension behind
its fallback); ``check_artifacts()`` recompiles in memory and names every artifact that differs from what its
source compiles to.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..protocol.errors import LedgerError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
SOURCE_DIR = CONTRACTS_DIR / "src"
NODE_MODULES = CONTRACTS_DIR / "node_modules"
SOLC_WRAPPER = CONTRACTS_DIR / "tools" / "solc.js"
SETTINGS_FILE = CONTRACTS_DIR / "compiler.json"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
# Interfaces the build writes an artifact for (ABI, no bytecode): ILeaseEscrow is the ABI of the escrow's address,
# both halves in one Solidity type (see its NatSpec), so no caller stitches ABIs together.
ABI_ARTIFACTS: tuple[str, ...] = ("ILeaseEscrow",)


class CompilerError(LedgerError):
    """The compiler is missing, failed, or reported errors in the sources."""


class ArtifactNotFound(LedgerError, LookupError):
    """No committed artifact for the requested contract."""


@dataclass(frozen=True)
class StaleArtifact:
    contract: str
    reason: str


def _settings() -> dict[str, Any]:
    base: dict[str, Any] = {
        "optimizer": {"enabled": True, "runs": 200},
        "evmVersion": "cancun",
        "viaIR": False,
    }
    if SETTINGS_FILE.exists():
        base.update(json.loads(SETTINGS_FILE.read_text()))
    return base


def _source_files(source_dir: Path) -> list[Path]:
    return sorted(p for p in source_dir.rglob("*.sol") if p.is_file())


def standard_input(source_dir: Path = SOURCE_DIR) -> dict[str, Any]:
    """Standard-JSON input for every source under ``source_dir``; imports resolve through the wrapper."""
    files = _source_files(source_dir)
    if not files:
        raise CompilerError(f"no Solidity sources under {source_dir.name}/")
    settings = _settings()
    # Source unit names are "src/<path under source_dir>" wherever the folder lives (tests compile copies).
    sources = {"src/" + p.relative_to(source_dir).as_posix(): {"content": p.read_text()} for p in files}
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": settings["optimizer"],
            "evmVersion": settings["evmVersion"],
            "viaIR": settings["viaIR"],
            "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}
            },
        },
    }


def _require_toolchain() -> None:
    if shutil.which("node") is None:
        raise CompilerError("node is not installed; the compiler runs on node (npm package solc)")
    if not (NODE_MODULES / "solc").exists():
        raise CompilerError("contracts/node_modules/solc is missing; run `make install` (npm ci in contracts/)")


@lru_cache(maxsize=1)
def compiler_version() -> str:
    _require_toolchain()
    out = subprocess.run(
        [str(SOLC_WRAPPER), "--version"], capture_output=True, text=True, check=False, cwd=CONTRACTS_DIR
    )
    for line in out.stdout.splitlines():
        if line.startswith("Version: "):
            return line.split(" ", 1)[1].strip()
    raise CompilerError(f"the solc wrapper did not report a version: {out.stderr.strip()}")


def run_compiler(std_input: dict[str, Any]) -> dict[str, Any]:
    """Compile standard-JSON input with py-solc-x through the solcjs wrapper; raise on any error."""
    _require_toolchain()
    import solcx  # imported here: only the build needs it
    from solcx.exceptions import SolcError

    try:
        output: dict[str, Any] = solcx.compile_standard(
            std_input,
            solc_binary=str(SOLC_WRAPPER),
            allow_paths=[str(CONTRACTS_DIR)],
            base_path=str(CONTRACTS_DIR),
        )
    except SolcError as e:
        raise CompilerError(f"solc failed: {str(e).splitlines()[0] if str(e) else e!r}") from e
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompilerError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    return output


def build_artifacts(
    output: dict[str, Any], std_input: dict[str, Any], abi_only: tuple[str, ...] = ABI_ARTIFACTS
) -> dict[str, dict[str, Any]]:
    """One artifact per contract with bytecode and an ABI (interfaces and abstract contracts have no bytecode,
    and a library of internal functions, ``contracts/src/types/``, has nothing to deploy or call), plus an
    ABI-only artifact (no ``bytecode`` keys) for each interface named in ``abi_only``."""
    version = compiler_version()
    artifacts: dict[str, dict[str, Any]] = {}
    for source_path, contracts in sorted(output.get("contracts", {}).items()):
        if not source_path.startswith("src/"):
            continue  # OpenZeppelin and other imports
        source_hash = hashlib.sha256(std_input["sources"][source_path]["content"].encode()).hexdigest()
        for name, c in sorted(contracts.items()):
            bytecode = c["evm"]["bytecode"]["object"]
            if name in abi_only and not bytecode:
                if name in artifacts:
                    raise CompilerError(f"two contracts are named {name}; names must be unique")
                artifacts[name] = {
                    "contractName": name,
                    "sourcePath": "contracts/" + source_path,
                    "abi": c["abi"],
                    "compiler": version,
                    "sourceHash": "sha256:" + source_hash,
                }
                continue
            if not bytecode or not c["abi"]:
                continue  # an interface or abstract contract; or a library of internal functions only
            if name in artifacts:
                raise CompilerError(f"two contracts are named {name}; names must be unique")
            artifacts[name] = {
                "contractName": name,
                "sourcePath": "contracts/" + source_path,
                "abi": c["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
                "compiler": version,
                "sourceHash": "sha256:" + source_hash,
            }
    return artifacts


def compile_contracts(
    source_dir: Path = SOURCE_DIR, out_dir: Path = ARTIFACTS_DIR, abi_only: tuple[str, ...] = ABI_ARTIFACTS
) -> list[str]:
    """Compile every source and (re)write the artifacts; stale artifacts of removed contracts are deleted."""
    std_input = standard_input(source_dir)
    artifacts = build_artifacts(run_compiler(std_input), std_input, abi_only)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.json"):
        if old.stem not in artifacts:
            old.unlink()
    for name, art in artifacts.items():
        tmp = out_dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(art, indent=1, sort_keys=True) + "\n")
        tmp.replace(out_dir / f"{name}.json")
    load_artifact.cache_clear()
    return sorted(artifacts)


def check_artifacts(
    source_dir: Path = SOURCE_DIR, out_dir: Path = ARTIFACTS_DIR, abi_only: tuple[str, ...] = ABI_ARTIFACTS
) -> list[StaleArtifact]:
    """Recompile in memory; list every artifact (contract or ABI-only interface) that is missing, extra or
    differs."""
    std_input = standard_input(source_dir)
    fresh = build_artifacts(run_compiler(std_input), std_input, abi_only)
    stale: list[StaleArtifact] = []
    committed = {p.stem for p in out_dir.glob("*.json")}
    for name, art in sorted(fresh.items()):
        path = out_dir / f"{name}.json"
        if not path.exists():
            stale.append(StaleArtifact(name, "no committed artifact"))
            continue
        old = json.loads(path.read_text())
        for key in ("abi", "bytecode", "deployedBytecode", "sourceHash"):
            if old.get(key) != art.get(key):
                stale.append(StaleArtifact(name, f"{key} differs from {art['sourcePath']}"))
                break
    for name in sorted(committed - set(fresh)):
        stale.append(StaleArtifact(name, "artifact has no source any more"))
    return stale


@lru_cache(maxsize=None)
def load_artifact(name: str, artifacts_dir: Path = ARTIFACTS_DIR) -> dict[str, Any]:
    """The committed artifact of contract ``name`` (ABI, bytecode, ...)."""
    path = artifacts_dir / f"{name}.json"
    if not path.exists():
        raise ArtifactNotFound(f"no artifact for contract {name}; run `compute-ledger compile`")
    art: dict[str, Any] = json.loads(path.read_text())
    return art
