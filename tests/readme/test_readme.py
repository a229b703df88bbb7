"""The README runs as written: every ```bash and ```python block in it (but those marked
``<!-- readme-test: skip ... -->``), in order, in one shell, as a new user would: `make demo`, then the
walkthrough, a bridge on a local anvil chain through every role to money withdrawn, a dispute an arbiter rules
on, an audit that passes, and the Python client's examples against the same bridge (each ```python block run
by the venv's Python, with the shell's exported variables)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ledger.chain.backends import free_port

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SKIP = "<!-- readme-test: skip"


PY_END = "README_PYTHON_BLOCK"


def readme_blocks(text: str, lang: str = "bash|python") -> list[str]:
    """The blocks the README asks to run, in order, as shell: a python block becomes the venv's Python reading
    it from a here-document."""
    blocks = []
    for m in re.finditer(rf"```({lang})\n(.*?)```", text, flags=re.S):
        before = text[: m.start()].rstrip().splitlines()
        if before and before[-1].strip().startswith(SKIP):
            continue
        body = m.group(2)
        blocks.append(body if m.group(1) == "bash" else f"\"$REPO/.venv/bin/python\" - <<'{PY_END}'\n{body}{PY_END}\n")
    return blocks


def test_the_readme_python_examples_are_python() -> None:
    python = readme_blocks(README.read_text(), "python")
    assert len(python) >= 2
    for block in python:
        source = block.split("\n", 1)[1].rsplit(PY_END, 1)[0]
        compile(source, "README.md", "exec")


def test_the_readme_marks_what_it_does_not_run_and_says_why() -> None:
    text = README.read_text()
    for m in re.finditer(re.escape(SKIP) + r"(.*?)-->", text):
        assert m.group(1).strip().startswith("(") and len(m.group(1).strip()) > 10, "say why a block is not run"
    assert len(readme_blocks(text)) >= 8


@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("curl") is None, reason="jq and curl are installed by make install")
def test_a_new_user_following_the_readme_goes_from_make_demo_to_money_withdrawn(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "set -euo pipefail",
            "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
            "make demo > \"$DEMO_LOG\" 2>&1",
            *(f"# --- README block {i}\n{block}" for i, block in enumerate(readme_blocks(README.read_text()), 1)),
            "echo README-WALKTHROUGH-DONE",
        ]
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_API_", "COMPUTE_LEDGER_")) and k != "API"
    }
    env.update(PORT=str(free_port()), DEMO_LOG=str(tmp_path / "demo.log"), TMPDIR=str(tmp_path), REPO=str(REPO))
    out = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0 and "README-WALKTHROUGH-DONE" in out.stdout, (
        f"exit {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n--- stderr\n{out.stderr[-4000:]}"
    )
    assert "audit verdict PASS" in (tmp_path / "demo.log").read_text()
    lines = out.stdout.splitlines()
    # the provider's withdrawal moved its earnings, the buyer's its refund, and the arbiter split the dispute
    withdrawals = [json.loads(line)["withdrawnWei"] for line in lines if line.startswith('{"withdrawnWei"')]
    assert len(withdrawals) == 3 and all(len(w) == 1 and int(w[0]) > 0 for w in withdrawals), withdrawals
    assert any('"buyerShare"' in line and '"providerShare"' in line for line in lines)
    # the Python client's wallet buyer: a lease, a typed refusal, settlement awaited, a refund withdrawn
    said = [line.removeprefix("python: ") for line in lines if line.startswith("python: ")]
    assert any(x.startswith("lease ") and "opened" in x for x in said), said
    assert "refused as expected: 409 conflict (LeaseEscrowOfferBusy)" in said, said
    assert any(x.startswith("settled through report ") and not x.startswith("settled through report 0") for x in said)
    refunds = [int(x.split()[2]) for x in said if x.startswith("refund withdrawn ")]
    assert len(refunds) == 1 and refunds[0] > 0, said
    assert sum(1 for x in said if x.startswith("lease ") and ": paid " in x) == 3, said
