"""LeaseEscrowExtension runs by DELEGATECALL on LeaseEscrow's storage, so the two contracts must have the same
storage layout (state is only ever added to LeaseEscrowBase). Compares `forge inspect <C> storageLayout`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def _forge() -> str | None:
    local = CONTRACTS / "node_modules" / ".bin" / "forge"
    return str(local) if local.exists() else shutil.which("forge")


FORGE = _forge()
pytestmark = pytest.mark.skipif(FORGE is None, reason="forge not installed (contracts/node_modules/.bin/forge)")


def _layout(contract: str) -> list[str]:
    """Storage layout as `slot:offset:label:type`, AST ids stripped and struct members expanded, so two
    contracts compare equal exactly when every slot, offset, name and type agrees."""
    assert FORGE is not None
    # a cold cache builds first (the solcjs build takes tens of seconds); a warm one answers in about a second
    out = subprocess.run(
        [FORGE, "inspect", contract, "storageLayout", "--json"],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    data: dict[str, Any] = json.loads(out)
    types: dict[str, Any] = data["types"] or {}

    def canon(t: str) -> str:
        d = types.get(t) or {}
        members = [f"{m['slot']}:{m['offset']}:{m['label']}:{canon(m['type'])}" for m in d.get("members") or []]
        inner = [canon(d[k]) for k in ("key", "value", "base") if d.get(k)]
        # AST ids follow the type's name (t_struct(LeaseInfo)123_storage, t_userDefinedValueType(Terms)456) and
        # differ between builds of the two contracts: drop them, keep the name
        return re.sub(r"\)\d+", ")", t) + "{" + ",".join(members + inner) + "}"

    return [f"{s['slot']}:{s['offset']}:{s['label']}:{canon(s['type'])}" for s in data["storage"]]


def test_storage_layout_escrow_and_extension_identical() -> None:
    escrow = _layout("LeaseEscrow")
    extension = _layout("LeaseEscrowExtension")
    labels = [entry.split(":")[2] for entry in escrow]
    assert {"_roles", "_terms", "_stateHash", "_withdrawable", "_fees", "_treasury"} <= set(labels)
    assert escrow == extension


def test_storage_layout_comparison_detects_a_different_layout() -> None:
    # the canonical form is discriminating: another contract's layout does not compare equal
    assert _layout("CapacityRegistry") != _layout("LeaseEscrow")
