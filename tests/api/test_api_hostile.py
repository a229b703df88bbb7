"""Hostile bodies against a real bridge process (uvicorn, memory chain, 127.0.0.1): one unauthenticated
request must never kill the process that holds the money's keys."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.chain.backends import free_port

ATTACK = b"[" * 80_000 + b"]" * 80_000  # 160 KB; killed the bridge with SIGSEGV (exit 139)
ROUTES = ("/v1/accounts", "/v1/faucet", "/v1/metering/reports", "/v1/leases", "/v1/providers")


@pytest.fixture(scope="module")
def served_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("hostile") / "bridge.log"
    env = {**os.environ, "LEDGER_API_BACKGROUND": "false"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "--backend", "memory", "--port", str(port), "--log-level", "warning"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"bridge exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("bridge did not start within 90 s")
            time.sleep(0.3)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _assert_alive(base: str, proc: subprocess.Popen[bytes]) -> None:
    assert proc.poll() is None, f"bridge died with exit code {proc.returncode}"
    assert httpx.get(f"{base}/v1/health", timeout=5).status_code == 200


@pytest.mark.parametrize("route", ROUTES)
def test_deep_json_body_is_refused_and_bridge_survives(served_bridge: tuple[str, subprocess.Popen[bytes]], route: str) -> None:
    base, proc = served_bridge
    resp = httpx.post(base + route, content=ATTACK, headers={"content-type": "application/json"}, timeout=30)
    # the metering wire answers every malformed body 400 invalid_report (api/METERING_API.md); others 422
    want = (400, "invalid_report") if route.startswith("/v1/metering/") else (422, "invalid_json")
    assert (resp.status_code, resp.json()["detail"]["code"]) == want, resp.text[:300]
    assert "deeper than 64" in resp.json()["detail"]["message"]
    _assert_alive(base, proc)


def test_deep_json_refused_whatever_the_content_type_and_framing(served_bridge: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, proc = served_bridge

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body arrives chunked
        for i in range(0, len(ATTACK), 16_384):
            yield ATTACK[i : i + 16_384]

    for headers in ({"content-type": "application/x-www-form-urlencoded"}, {}, {"content-type": "text/plain"}):
        resp = httpx.post(base + "/v1/accounts", content=chunks(), headers=headers, timeout=30)
        assert resp.status_code == 422, (headers, resp.text[:300])
        assert resp.json()["detail"]["code"] == "invalid_json"
    big = b"[" * 2_000_000 + b"]" * 2_000_000  # 4 MB, just under the body limit
    resp = httpx.post(base + "/v1/metering/reports", content=big, headers={"content-type": "application/json"}, timeout=60)
    assert resp.status_code == 400 and resp.json()["detail"]["code"] == "invalid_report"
    _assert_alive(base, proc)


def test_shallow_bodies_still_reach_their_routes(served_bridge: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, proc = served_bridge
    ok = httpx.post(base + "/v1/accounts", json={"roles": ["buyer"]}, timeout=30)
    assert ok.status_code == 201 and ok.json()["apiKey"].startswith("cl_")
    bad = httpx.post(base + "/v1/accounts", content=b"[1,2", headers={"content-type": "application/json"}, timeout=30)
    assert bad.status_code == 422 and bad.json()["detail"]["code"] == "invalid_json"
    not_json = httpx.post(base + "/v1/metering/reports", content=b'{"nodeId": ', headers={"content-type": "application/json"}, timeout=30)
    assert not_json.status_code == 400 and not_json.json()["detail"]["code"] == "invalid_report"
    _assert_alive(base, proc)
