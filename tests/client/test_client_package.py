"""The client is a package of its own (client/pyproject.toml, `pip install ./client`): it loads none of the
ledger's code, and imports only what its pyproject installs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import compute_ledger_client

CLIENT = Path(__file__).resolve().parents[2] / "client"
LEDGER_CODE = {"ledger", "api", "attestor", "auditor", "compute_ledger", "web3", "eth_tester", "fastapi", "sqlalchemy"}


def test_importing_the_client_loads_none_of_the_ledgers_code(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(CLIENT)}
    probe = "import sys, compute_ledger_client; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    loaded = set(out.stdout.split())
    assert "compute_ledger_client" in loaded and "httpx" in loaded and "eth_account" in loaded
    assert not loaded & LEDGER_CODE, loaded & LEDGER_CODE


def test_the_client_imports_only_what_its_pyproject_installs() -> None:
    meta = tomllib.loads((CLIENT / "pyproject.toml").read_text())
    declared = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].replace("-", "_") for d in meta["project"]["dependencies"]}
    assert meta["project"]["version"] == compute_ledger_client.__version__
    imported: set[str] = set()
    for path in (CLIENT / "compute_ledger_client").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "compute_ledger_client"}
    assert third_party and third_party <= declared, third_party - declared
    assert (CLIENT / "compute_ledger_client" / "py.typed").exists()
