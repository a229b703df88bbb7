"""The README runs as written: every ```bash block in it (but those marked ``<!-- readme-test: skip ... -->``),
in order, in one shell, as a new user would: `make demo`, then the walkthrough, a bridge on a local anvil
chain through every role to money withdrawn, a dispute an arbiter rules on, and an audit that passes."""

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


def readme_blocks(text: str) -> list[str]:
    """The bash blocks the README asks to run, in order."""
    blocks = []
    for m in re.finditer(r"```bash\n(.*?)```", text, flags=re.S):
        before = text[: m.start()].rstrip().splitlines()
        if before and before[-1].strip().startswith(SKIP):
            continue
        blocks.append(m.group(1))
    return blocks


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
    env.update(PORT=str(free_port()), DEMO_LOG=str(tmp_path / "demo.log"), TMPDIR=str(tmp_path))
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
