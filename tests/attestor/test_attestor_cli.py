"""``compute-ledger attest``: run --once without a bridge, status, gpus, missing driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pynvml
import pytest

from attestor import cli
from attestor.keys import create_keystore
from attestor.spool import Spool
from ledger.protocol import ReportFlag, gpu_uuid_hash

REPO = Path(__file__).resolve().parents[2]


def _has_nvml() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_cli_run_once_with_static_leases_spools_and_status_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPUTE_LEDGER_ATTESTOR_PASSWORD", "pw")
    create_keystore(tmp_path / "ks.json", "pw", kdf="pbkdf2", iterations=2)
    now = time.time_ns() // 1_000_000
    cfg = tmp_path / "attestor.toml"
    cfg.write_text(
        f'node_id = 4\nchain_id = 31337\nescrow = "0x5FbDB2315678afecb367f032d315f642f64180aa"\n'
        f"sample_period_ms = 250\nwindow_ms = 500\n"
        f"[[leases]]\nlease_id = 11\ngpu_indices = [0, 1]\nstart_ms = {now - 1000}\nend_ms = {now + 3_600_000}\n"
    )
    data = tmp_path / "data"
    rc = cli.main(
        [
            "run",
            "--config",
            str(cfg),
            "--simulate",
            "2xL4",
            "--seed",
            "3",
            "--data-dir",
            str(data),
            "--keystore",
            str(tmp_path / "ks.json"),
            "--once",
            "--once-timeout",
            "0.2",
        ]
    )
    assert rc == 1  # spooled, but there is no bridge to take it
    spool = Spool(data / "spool.sqlite")
    [(report, _sig, samples, acked)] = list(spool.reports(11))
    spool.close()
    assert not acked and report.seq == 1 and report.flags & ReportFlag.SIMULATED
    assert {s.gpuIndex for s in samples} == {0, 1}
    capsys.readouterr()
    assert cli.main(["status", "--data-dir", str(data), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["spoolDepth"] == 1
    assert st["leases"] == [
        {
            "leaseId": 11,
            "lastSeq": 1,
            "lastAckedSeq": 0,
            "unacked": 1,
            "lastError": "no bridge configured (--api); report kept in the spool",
        }
    ]
    assert cli.main(["status", "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert "spool depth: 1" in text and "lease 11: last seq 1, last acknowledged seq 0" in text


def test_cli_run_requires_node_and_something_to_meter(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--simulate", "1xH100"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["run", "--node-id", "1", "--simulate", "1xH100"])


def test_cli_run_refuses_spool_of_another_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPUTE_LEDGER_ATTESTOR_PASSWORD", "pw")
    create_keystore(tmp_path / "ks.json", "pw", kdf="pbkdf2", iterations=2)
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "chain_id": 1,
                "escrow": "0x5FbDB2315678afecb367f032d315f642f64180aa",
                "leases": [{"lease_id": 1, "gpu_indices": [0], "start_ms": 0, "end_ms": 1}],
            }
        )
    )
    base = [
        "run",
        "--config",
        str(cfg),
        "--simulate",
        "1xH100",
        "--data-dir",
        str(tmp_path / "d"),
        "--keystore",
        str(tmp_path / "ks.json"),
        "--once",
        "--once-timeout",
        "0",
        "--window-ms",
        "1000",
        "--sample-period-ms",
        "500",
    ]
    assert cli.main(["run", "--node-id", "1", *base[1:]]) == 0
    assert cli.main(["run", "--node-id", "2", *base[1:]]) == 1
    assert "belongs to node 1" in capsys.readouterr().err


def test_cli_gpus_lists_simulated_uuid_hashes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gpus", "--simulate", "2xH100", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].endswith("(simulated)") and lines[1].startswith("#\tUUID")
    idx, uuid, h, name, vram, power, busy, gpm = lines[3].split("\t")
    assert idx == "1" and uuid.startswith("GPU-") and h == "0x" + gpu_uuid_hash(uuid).hex() and "H100" in name
    assert (vram, power, gpm) == ("80 GiB", "700 W", "yes")
    assert busy.startswith("driver sample buffer, holds 19.8 s")
    assert cli.main(["gpus", "--simulate", "A100"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("no (SM-active billing unavailable)")


@pytest.mark.skipif(_has_nvml(), reason="this machine has an NVIDIA driver")
def test_cli_without_driver_says_so_and_exits_2(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "attestor.cli", "gpus"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == "no NVIDIA driver found; use --simulate"


def test_cli_refuses_second_daemon_on_same_data_dir(tmp_path: Path) -> None:
    held = cli._lock_data_dir(tmp_path)
    try:
        with pytest.raises(cli.AttestorError, match="another attestor is running"):
            cli._lock_data_dir(tmp_path)
    finally:
        held.close()
    cli._lock_data_dir(tmp_path).close()  # free again once the holder is gone


def _static_run_args(tmp_path: Path, escrow: str) -> list[str]:
    create_keystore(tmp_path / "ks.json", "pw", kdf="pbkdf2", iterations=2)
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "chain_id": 1,
                "escrow": escrow,
                "leases": [{"lease_id": 1, "gpu_indices": [0], "start_ms": 0, "end_ms": 1}],
            }
        )
    )
    return [
        "run", "--node-id", "1", "--config", str(cfg), "--simulate", "1xH100",
        "--data-dir", str(tmp_path / "d"), "--keystore", str(tmp_path / "ks.json"),
        "--once", "--once-timeout", "0", "--window-ms", "1000", "--sample-period-ms", "500",
    ]


def test_cli_run_bad_escrow_address_is_one_line_before_metering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPUTE_LEDGER_ATTESTOR_PASSWORD", "pw")
    assert cli.main(_static_run_args(tmp_path, "nothex")) == 1
    err = capsys.readouterr().err
    assert "escrow 'nothex' is not an address" in err
    assert "Traceback" not in err


def test_cli_run_zero_sample_period_is_refused_not_defaulted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPUTE_LEDGER_ATTESTOR_PASSWORD", "pw")
    args = _static_run_args(tmp_path, "0x5FbDB2315678afecb367f032d315f642f64180aa")
    args[args.index("--sample-period-ms") + 1] = "0"
    assert cli.main(args) != 0
    assert "sample period" in capsys.readouterr().err
