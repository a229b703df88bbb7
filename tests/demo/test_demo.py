"""The main job: `compute-ledger demo` runs the whole story and the audit passes (issue 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_demo(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compute_ledger.cli", "demo", "--windows", "6", "--out", str(tmp_path / "demo"), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _figure(stdout: str, label: str) -> str:
    line = next(l for l in stdout.splitlines() if l.strip().startswith(label))
    return line.split()[1]


def test_demo_memory_runs_end_to_end_and_audit_passes(tmp_path: Path) -> None:
    proc = _run_demo(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in range(1, 10):
        assert f"[{step}/9]" in proc.stderr
    out = proc.stdout
    assert "audit verdict PASS" in out
    escrowed = float(_figure(out, "escrowed"))
    paid = float(_figure(out, "paid"))
    refunded = float(_figure(out, "refunded"))
    assert 0 < paid < escrowed
    assert abs(escrowed - paid - refunded) < 1e-5  # printed figures are rounded to 1e-6 ETH
    assert "18 signed" in out  # 6 windows x 3 leases (reserved, metered, SM-active)
    assert "6 checkpoints in 2 settleBatch" in out
    assert "SM-active" in proc.stderr and "% of busy" in proc.stderr  # each buyer sees its GPU time
    html = Path(out.split("audit report")[1].strip())
    assert html.exists() and html.read_text().lstrip().lower().startswith("<!doctype html")
    assert "<svg" in html.read_text()


def _has_nvidia_driver() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


@pytest.mark.skipif(_has_nvidia_driver(), reason="this machine has an NVIDIA driver: demo --gpu would run")
def test_demo_gpu_without_a_driver_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "compute_ledger.cli", "demo", "--gpu", "--out", str(tmp_path / "demo")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "compute-ledger demo --gpu: no NVIDIA driver found (run it without --gpu for the simulated node)"
    ]
    assert not (tmp_path / "demo").exists()  # nothing started, nothing half-written


def test_demo_rejects_bad_window_count(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "compute_ledger.cli", "demo", "--windows", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--windows must be between 1 and 60" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.anvil
def test_demo_anvil_runs_same_story(tmp_path: Path) -> None:
    proc = _run_demo(tmp_path, "--backend", "anvil")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "anvil chain" in proc.stderr
    assert "audit verdict PASS" in proc.stdout


def test_demo_exits_nonzero_when_audit_catches_tampering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's verdict is the auditor's: a bridge that served one altered sample fails the demo."""
    import dataclasses

    import auditor.cli as audit_cli
    from compute_ledger.demo import main as demo_main

    real_verify = audit_cli.verify_lease

    def verify_tampered(inp, *args, **kwargs):  # type: ignore[no-untyped-def]
        first = inp.reports[0]
        assert first.samples
        bad = dataclasses.replace(first.samples[0], powerMw=first.samples[0].powerMw + 1)
        tampered = dataclasses.replace(first, samples=(bad, *first.samples[1:]))
        return real_verify(dataclasses.replace(inp, reports=(tampered, *inp.reports[1:])), *args, **kwargs)

    monkeypatch.setattr(audit_cli, "verify_lease", verify_tampered)
    code = demo_main(["--windows", "2", "--out", str(tmp_path / "demo")])
    out = capsys.readouterr()
    assert code == 1
    assert "audit verdict FAIL" in out.out
    assert "samples.root" in out.err and "FAIL" in out.err
