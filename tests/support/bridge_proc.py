"""Bridge processes for the tests: ``python -m api.cli`` (uvicorn) on a free 127.0.0.1 port, with its log in a
file, waited for until /v1/health answers; stopped (or killed) by the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ledger.chain.backends import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class BridgeProc:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no clean-up runs (a crash)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_exit(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)


def start_bridge(args: list[str], env: dict[str, str], log: Path, *, timeout_s: float = 90,
                 healthy: tuple[int, ...] = (200,)) -> BridgeProc:  # fmt: skip
    """Start ``compute-ledger serve`` with ``args`` (a port is added) and wait for /v1/health."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args, "--port", str(port), "--log-level", "warning"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env}, stdout=out, stderr=out,
        )  # fmt: skip
    bridge = BridgeProc(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"bridge exited with {proc.returncode}: {bridge.tail()}")
        try:
            if httpx.get(f"{bridge.base}/v1/health", timeout=2).status_code in healthy:
                return bridge
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            bridge.kill()
            raise RuntimeError(f"bridge did not answer within {timeout_s:g} s: {bridge.tail()}")
        time.sleep(0.2)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:500]}"
    return resp.json()
