"""schemathesis over the bridge's OpenAPI document, in ASGI mode, with every check: no server error and no
status code or body the document does not declare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from api.app import create_app
from conftest import bridge_settings
from ledger.chain.backends import Chain
from ledger.chain.deployment import Deployment

import schemathesis  # noqa: E402  (pinned in the test extra: a missing install must fail, not skip)

from schemathesis.config import SchemathesisConfig  # noqa: E402

EXAMPLES_PER_OPERATION = 15
# A schema-valid request may still be refused by the ledger's state or a rule across fields: 400 (a
# metering report the protocol refuses, e.g. an integral float), 402 (funds), 422 (the contract or a
# cross-field rule). Every such status is declared on its route; the other checks run unchanged.
ACCEPTED_REFUSALS = ["2xx", "400", "401", "402", "403", "404", "409", "422"]


# The derandomized requests depend on what used hypothesis earlier in the same interpreter (the whole suite draws
# other requests than this module alone), so the check runs in an interpreter of its own: the same requests
# every run, in CI as here.
CHILD = os.environ.get("LEDGER_SCHEMA_TEST_CHILD") == "1"


@pytest.mark.skipif(CHILD, reason="this is the run in its own interpreter")
def test_openapi_document_holds_in_its_own_interpreter() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "ignore",
         f"{Path(__file__).resolve()}::test_openapi_document_holds_for_generated_requests"],
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, "LEDGER_SCHEMA_TEST_CHILD": "1"},
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-12000:] + done.stderr[-4000:]


@pytest.mark.skipif(not CHILD, reason="run by test_openapi_document_holds_in_its_own_interpreter")
def test_openapi_document_holds_for_generated_requests(memory_chain: tuple[Chain, Deployment], tmp_path: Path) -> None:
    chain, dep = memory_chain
    snap = chain.snapshot()
    failures: list[str] = []
    try:
        # every generated request comes from one client: the per-client limits (429, tested in
        # test_api_load.py) would answer most of them
        unlimited = {f"rate_{k}_per_s": 0 for k in ("accounts", "faucet", "reports")}
        app = create_app(bridge_settings(tmp_path, **unlimited), chain=chain, deployment=dep)
        with TestClient(app) as client:  # runs the lifespan: the services stay up while schemathesis calls the app
            # the security schemes as the document declares them: schemathesis authenticates with a funded managed
            # account of every role (so writes run past 401), and checks that invalid credentials get 401
            acct = client.post("/v1/accounts", json={"roles": ["provider", "buyer", "arbiter"]}).json()
            client.post("/v1/faucet", json={"address": acct["address"], "amountWei": 10**21})
            config = SchemathesisConfig.from_dict({
                "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_REFUSALS}},
                "auth": {"openapi": {"apiKey": {"bearer": acct["apiKey"]}}},
            })
            schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
            operations = [r.ok() for r in schema.get_all_operations()]
            assert len(operations) >= 30
            for op in operations:

                @given(case=op.as_strategy())
                @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                          suppress_health_check=list(HealthCheck), database=None)
                def check(case: Any) -> None:
                    case.call_and_validate()

                try:
                    check()
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as e:  # collect every operation's failure, then report them all
                    failures.append(f"{op.method.upper()} {op.path}: {str(e)[:1500]}")
            statuses: dict[str, float] = {}
            authenticated_writes: set[str] = set()  # routes that took the API key and did something
            server_errors: set[str] = set()  # "METHOD route status" of every 5xx answered
            for metric in app.state.bridge.metrics.requests.collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        code = sample.labels["status"]
                        statuses[code] = statuses.get(code, 0) + sample.value
                        if sample.labels["method"] == "POST" and code.startswith("2"):
                            authenticated_writes.add(sample.labels["route"])
                        if code.startswith("5") and sample.value:
                            server_errors.add(f"{sample.labels['method']} {sample.labels['route']} {code}")
            assert {"/v1/providers", "/v1/nodes"} <= authenticated_writes, authenticated_writes
            assert sum(statuses.values()) >= 10 * len(operations)
            assert statuses.get("200", 0) + statuses.get("201", 0) > 0
            assert not server_errors, (server_errors, statuses, failures)
    finally:
        chain.revert(snap)
    assert not failures, "\n\n".join(failures)
