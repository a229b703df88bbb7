"""A tampered bridge against the auditor: the chain is the auditor's root of trust.

A real bridge (api.create_app on the memory chain, eth-tester) meters five leases of one node through its
HTTP API; a tampering proxy in front of it (an httpx transport rewriting the bridge's JSON answers) plays a
bridge that lies. The auditor reads the chain in process (the memory backend publishes no RPC URL) and
must name the right check and the right party for each lie:

- A  honest, 6 reports, checkpoints at seq 3 and 6, closed: forged attestor history with re-signed reports,
     a doubled charge, proofs whose served root is not the signed one;
- B  every report refused by the bridge (signed by a key the chain never registered): nothing to audit;
- C  4 reports whose samples the attestor listed in another order: the order rule;
- D  one report accepted, two more served from the future (100 s windows);
- E  2 reports settled, then disputed by the buyer: the verdict says so, and the outcome once resolved.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import api.app  # noqa: F401  (an import error here must fail the suite, not skip it)

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx transport; not ours to fix
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from auditor.cli import main, run  # noqa: E402
from auditor.core import SignedReport, verify_lease  # noqa: E402
from auditor.sources import ApiSource, report_to_json  # noqa: E402
from ledger.chain.backends import connect, free_port  # noqa: E402
from ledger.chain.deploy import deploy_suite  # noqa: E402
from ledger.chain.signing import address_of, sign_digest  # noqa: E402
from ledger.protocol import gpu_uuid_hash, report_digest  # noqa: E402
from ledger.protocol.errors import LedgerError  # noqa: E402
from tests.audit.fakegpu import ATTESTOR_KEY, OTHER_KEY, FakeLease, make_lease  # noqa: E402
from tests.support.ledger_client import LedgerClient  # noqa: E402
from tests.support.serve import served  # noqa: E402

UUIDS = [f"GPU-tamper-{i:04d}" for i in range(10)]
PRICE = 10**9
HOUR = 3600

Rule = Callable[[str, dict[str, str], Any], Any]
"""``rule(path, query, body) -> body``: how the tampering bridge rewrites one JSON answer."""


def _ok(resp: Any, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    return resp.json()


class Scene:
    def __init__(self, client: TestClient, ledger: Any, chain: Any, app: Any) -> None:
        self.client = client
        self.ledger = ledger  # the chain, in process: what the auditor trusts
        self.chain = chain
        self.app = app
        self.ids: dict[str, int] = {}
        self.fakes: dict[str, FakeLease] = {}
        self.buyer: dict[str, str] = {}
        self.rules: list[Rule] = []

    def proxy(self, *rules: Rule, fail: Callable[[str], int | None] | None = None) -> httpx.Client:
        """An httpx client for a bridge that answers like the real one, rewritten by ``rules``; ``fail(path)``
        may answer an HTTP error instead."""

        def handler(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            status = fail(path) if fail is not None else None
            if status is not None:
                return httpx.Response(status, json={"detail": {"code": "broken", "message": "tampered"}})
            resp = self.client.get(request.url.raw_path.decode())
            if resp.status_code != 200 or "json" not in resp.headers.get("content-type", ""):
                return httpx.Response(resp.status_code, content=resp.content, headers=resp.headers)
            body = resp.json()
            for rule in rules:
                body = rule(path, dict(request.url.params), body)
            return httpx.Response(200, json=body)

        return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://bridge")


def _source(client: httpx.Client, ledger: Any, **kw: Any) -> ApiSource:
    """The auditor's bridge source over ``client``, the chain handed in process (the memory backend publishes no
    RPC URL)."""
    return ApiSource(client=client, chain=ledger, **kw)


def _submit(client: TestClient, node_id: int, sr: SignedReport, *, shuffle: random.Random | None = None) -> Any:
    assert sr.samples is not None
    samples = list(sr.samples)
    if shuffle is not None:
        while samples == list(sr.samples):
            shuffle.shuffle(samples)
    body = {
        "nodeId": node_id,
        "report": sr.report.to_json(),
        "signature": "0x" + sr.signature.hex(),
        "samples": [s.to_list() for s in samples],
    }
    return client.post("/v1/metering/reports", json=body)


def build_scene(client: Any, app: Any, chain: Any, dep: Any, names: str = "ABCDE") -> Scene:
    """Meter the leases ``names`` (of A…E above) through the bridge ``client`` (a TestClient, or an httpx client
    of a served bridge) whose app is ``app``."""
    sc = Scene(client, LedgerClient(chain, dep).ledger, chain, app)
    prov = _account(client, "provider")[1]
    _ok(client.post("/v1/providers", json={"metadataURI": "https://example.invalid/p"}, headers=prov))
    node = {
        "attestor": address_of(ATTESTOR_KEY),
        "gpuModel": "NVIDIA H200",
        "gpuUuids": UUIDS,
        "vramMiB": 143_771,
        "maxPowerMwPerGpu": 700_000,
        "region": "eu-west",
    }
    node_id = _ok(client.post("/v1/nodes", json=node, headers=prov))["result"]["nodeId"]
    now = chain.now()
    _, buyer = _account(client, "buyer")
    sc.buyer = buyer
    docs = {}
    gpus_of = {"A": [0, 1], "B": [2, 3], "C": [4, 5], "D": [6, 7], "E": [8, 9]}
    for name in names:
        offer = {"nodeId": node_id, "gpuIndices": gpus_of[name], "pricePerGpuSecondWei": PRICE,
                 "validFrom": now, "validUntil": now + 86_400}  # fmt: skip
        offer_id = _ok(client.post("/v1/offers", json=offer, headers=prov))["result"]["offerId"]
        lease = _ok(client.post("/v1/leases", json={"offerId": offer_id, "durationS": HOUR}, headers=buyer))
        sc.ids[name] = int(lease["result"]["leaseId"])
        _ok(client.post(f"/v1/leases/{sc.ids[name]}/activate", headers=prov))
        docs[name] = _ok(client.get(f"/v1/leases/{sc.ids[name]}"))
    shape = {"A": (6, 10, ATTESTOR_KEY), "B": (2, 10, OTHER_KEY), "C": (4, 10, ATTESTOR_KEY),
             "D": (3, 100, ATTESTOR_KEY), "E": (2, 10, ATTESTOR_KEY)}  # fmt: skip
    for name in names:
        n, per_window, key = shape[name]
        doc = docs[name]
        sc.fakes[name] = make_lease(
            n,
            gpus=tuple(doc["gpuIndices"]),
            samples_per_window=per_window,
            lease_id=sc.ids[name],
            start_ms=doc["startMs"],
            chain_id=doc["chainId"],
            escrow_address=doc["escrow"],
            gpu_uuid_hashes=tuple(gpu_uuid_hash(u) for u in UUIDS),
            duration_s=HOUR,
            settle_at=(),
            key=key,
            seed=3 + len(sc.fakes),
        )
    # every submitted window has ended (D's first one 100 s in); D's later windows end 200 and 300 s in
    chain.time_travel(max(d["startMs"] for d in docs.values()) // 1000 + 120)
    relayer = app.state.bridge.relayer
    f = sc.fakes
    for i, sr in enumerate(f["A"].reports if "A" in f else ()):
        _ok(_submit(client, node_id, sr), 201)
        if i == 2:
            assert relayer.flush() == 1  # a checkpoint at seq 3
    for sr in f["B"].reports if "B" in f else ():  # signed by a key the chain never registered: refused
        assert _submit(client, node_id, sr).status_code == 403
    shuffle = random.Random(5)
    for sr in f["C"].reports if "C" in f else ():  # listed in another order than (tsMs, gpuIndex)
        _ok(_submit(client, node_id, sr, shuffle=shuffle), 201)
    if "D" in f:
        _ok(_submit(client, node_id, f["D"].reports[0]), 201)
    for sr in f["E"].reports if "E" in f else ():
        _ok(_submit(client, node_id, sr), 201)
    assert relayer.flush() == len(set(names) & set("ACDE"))  # A at 6, C at 4, D at 1, E at 2
    if "A" in f:
        _ok(client.post(f"/v1/leases/{sc.ids['A']}/close", headers=buyer))
    if "E" in f:
        _ok(client.post(f"/v1/leases/{sc.ids['E']}/dispute", headers=buyer))
    return sc


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    chain = connect("memory")
    dep = deploy_suite(chain, chain.accounts[0])
    settings = Settings(
        chain_backend="memory",
        data_dir=tmp_path_factory.mktemp("bridge"),
        background=False,
        settle_every_s=300.0,
        settle_threshold_wei=10**30,
    )
    app = create_app(settings, chain=chain, deployment=dep)
    with TestClient(app) as client:
        yield build_scene(client, app, chain, dep)
    chain.close()


def _account(client: TestClient, role: str) -> tuple[str, dict[str, str]]:
    body = _ok(client.post("/v1/accounts", json={"roles": [role]}), 201)
    _ok(client.post("/v1/faucet", json={"address": body["address"], "amountWei": 10**20}))
    return body["address"], {"Authorization": f"Bearer {body['apiKey']}"}


def _lease_path(sc: Scene, name: str) -> str:
    return f"/v1/leases/{sc.ids[name]}"


def _party(v: Any, check: str) -> set[str]:
    return {r.blame for r in v.failures if r.check == check}


# --- the honest bridge ------------------------------------------------------------------------------------


def test_honest_bridge_every_lease_verified_in_full_and_by_spot_checks(scene: Scene) -> None:
    with scene.proxy() as client:
        src = _source(client, scene.ledger, rng=random.Random(1))
        for name in ("A", "C", "E"):
            for k in (None, 4):
                v = verify_lease(src.load(scene.ids[name], k), k)
                assert v.ok, (name, k, v.failures)
                by = {r.check: r.status for r in v.results}
                assert by["bridge.chain"] == by["bridge.consistency"] == "PASS"
                if k is not None:
                    assert by["bridge.proofs"] == by["samples.spot_check"] == "PASS"


# --- 1. a forged attestor history, every report re-signed ---------------------------------------------------


def _forge_attestor(sc: Scene) -> Rule:
    forged = address_of(OTHER_KEY)
    chain_id, escrow = sc.ledger.chain_id, sc.ledger.escrow

    def rule(path: str, q: dict[str, str], body: Any) -> Any:
        if path == _lease_path(sc, "A"):
            return body | {"attestors": [{"address": forged, "fromMs": 0, "untilMs": None}]}
        if path == _lease_path(sc, "A") + "/reports":
            from ledger.protocol import MeteringReport

            for e in body["reports"]:
                r = MeteringReport.from_json(e["report"])
                e["signature"] = "0x" + sign_digest(report_digest(r, chain_id, escrow), OTHER_KEY).hex()
        return body

    return rule


@pytest.mark.parametrize("k", [None, 4], ids=["full", "spot-check"])
def test_forged_attestor_history_with_resigned_reports_is_the_bridges(scene: Scene, k: int | None) -> None:
    """Before: VERIFIED (the auditor took the attestor history from the bridge). After: every signature fails,
    and the served history is not the chain's; both blamed on the bridge."""
    with scene.proxy(_forge_attestor(scene)) as client:
        v = verify_lease(_source(client, scene.ledger).load(scene.ids["A"], k), k)
    assert not v.ok
    assert v.failed() == {("bridge.consistency", None)} | {("signature", s) for s in range(1, 7)}
    assert _party(v, "signature") == _party(v, "bridge.consistency") == {"bridge"}
    detail = next(r.detail for r in v.failures if r.check == "bridge.consistency")
    assert "attestor history (NodeRegistered / AttestorRotated)" in detail and address_of(OTHER_KEY).lower() in detail
    sig = next(r.detail for r in v.failures if r.check == "signature")
    assert f"signed by {address_of(OTHER_KEY)}, registered attestor {address_of(ATTESTOR_KEY)}" == sig


# --- 2. a served charge that is not the chain's --------------------------------------------------------------


def _double(where: str) -> Callable[[Scene], Rule]:
    def make(sc: Scene) -> Rule:
        def rule(path: str, q: dict[str, str], body: Any) -> Any:
            if path == _lease_path(sc, "A"):
                if where == "settlement":
                    body["settlements"][0]["charged"] = str(2 * int(body["settlements"][0]["charged"]))
                else:
                    body["money"][where] = str(2 * int(body["money"][where]))
            return body

        return rule

    return make


@pytest.mark.parametrize("where", ["settlement", "closedCharged", "charged"])
def test_a_served_charge_that_disagrees_with_the_chain_fails_bridge_consistency(scene: Scene, where: str) -> None:
    """Before: settlement.charge (or money.conservation) failed: the escrow was blamed for the bridge's number.
    After: the charges are the chain's (they verify); the bridge's copy fails bridge.consistency."""
    with scene.proxy(_double(where)(scene)) as client:
        v = verify_lease(_source(client, scene.ledger).load(scene.ids["A"]))
    assert v.failed() == {("bridge.consistency", None)}
    assert _party(v, "bridge.consistency") == {"bridge"}
    by = {r.check: r for r in v.results}
    assert by["settlement.charge"].status == by["money.conservation"].status == "PASS"
    label = {"settlement": "settlement 1 (seq 3) charged", "closedCharged": "money.closedCharged",
             "charged": "money.charged"}[where]  # fmt: skip
    assert f"{label}: the bridge serves " in by["bridge.consistency"].detail


# --- 3. the order of a report's samples --------------------------------------------------------------------


def test_reordered_samples_full_and_spot_audits_accept_alike(scene: Scene) -> None:
    """docs/protocol.md §4.2: no check depends on the order a report lists its samples in. Lease C's attestor
    listed them shuffled; a bridge serving them in yet another order (reversed) changes nothing either."""

    def reverse(path: str, q: dict[str, str], body: Any) -> Any:
        if path == _lease_path(scene, "C") + "/reports":
            for e in body["reports"]:
                if e.get("samples"):  # (null when the auditor asked for proofs instead)
                    e["samples"] = e["samples"][::-1]
        return body

    verdicts = []
    for rules in ((), (reverse,)):
        with scene.proxy(*rules) as client:
            src = _source(client, scene.ledger, rng=random.Random(7))
            inp = src.load(scene.ids["C"])
            stored = [s for sr in inp.reports for s in sr.samples or ()]
            assert stored != sorted(stored, key=lambda s: (s.tsMs, s.gpuIndex))  # not the producers' order
            for k in (None, 3, 1000):
                loaded = inp if k is None else src.load(scene.ids["C"], k)
                verdicts.append(verify_lease(loaded, k))
    assert all(v.ok for v in verdicts), [v.failures for v in verdicts]
    assert {v.status for v in verdicts} == {"verified"} and {frozenset(v.failed()) for v in verdicts} == {frozenset()}


# --- 4. a proof whose served root is not the signed one -----------------------------------------------------


def test_a_served_proof_root_that_is_not_the_signed_one_is_the_bridges(scene: Scene) -> None:
    """Before: VERIFIED (the served root was ignored). After: bridge.proofs fails for every report; the proofs
    still verify against the signed samplesRoot (samples.spot_check passes)."""
    other = "0x" + "ab" * 32

    def root(path: str, q: dict[str, str], body: Any) -> Any:
        if path.startswith(_lease_path(scene, "A") + "/reports/") and path.endswith("/proofs"):
            for p in body["proofs"]:
                p["root"] = other
        return body

    with scene.proxy(root) as client:
        v = verify_lease(_source(client, scene.ledger).load(scene.ids["A"], 3), 3)
    assert v.failed() == {("bridge.proofs", s) for s in range(1, 7)}
    assert _party(v, "bridge.proofs") == {"bridge"}
    assert {r.check: r.status for r in v.results}["samples.spot_check"] == "PASS"
    assert "served root 0xabababababababab… is not the signed samplesRoot" in v.failures[0].detail


# --- 5. audit all: a lease without an accepted report, every lease listed -----------------------------------


def test_audit_all_lists_every_lease_and_a_lease_without_reports_is_nothing_to_audit(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: exit 3, no verdict at all (lease B's document has no samplePeriodMs). After: every lease is
    listed; B is verified with "nothing metered to audit"."""
    import auditor.cli

    with scene.proxy() as client:
        monkeypatch.setattr(auditor.cli, "ApiSource", lambda *a, **kw: _source(client, scene.ledger))
        rc = main(["all", "--api", "http://bridge", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in "ABCDE":
        assert f"lease {scene.ids[name]}: VERIFIED" in out
    assert f"lease {scene.ids['B']}: VERIFIED (no report accepted: nothing metered to audit)" in out
    assert out.rstrip().endswith("all 5 lease(s) verified")


def test_audit_all_goes_on_past_a_lease_it_cannot_audit(scene: Scene) -> None:
    """A bridge failing for one lease (HTTP 500 on its reports) does not stop the audit: that lease could not be
    audited (and why), the others are verified."""
    broken = _lease_path(scene, "C") + "/reports"
    with scene.proxy(fail=lambda path: 500 if path == broken else None) as client:
        src = _source(client, scene.ledger)
        audits = run(src, src.lease_ids())
    status = {v.leaseId: v.status for _, v in audits}
    assert status == {i: "could not audit" if n == "C" else "verified" for n, i in scene.ids.items()}
    (why,) = [v.unaudited for _, v in audits if v.unaudited]
    assert why is not None and why.startswith(f"GET {broken}: HTTP 500")


# --- 6. a window that ends in the future -------------------------------------------------------------------


def test_a_window_ending_in_the_future_fails_window_future(scene: Scene) -> None:
    """Lease D's attestor signed two more 100 s windows that end 200 and 300 s into the lease, after the chain's
    present (about 120 s in) + 30 s: a bridge serving them. Before: VERIFIED. After: window.future, the
    attestor's (it signed time that has not happened)."""
    extra = [report_to_json(sr, node_id=1) for sr in scene.fakes["D"].reports[1:]]

    def future(path: str, q: dict[str, str], body: Any) -> Any:
        if path == _lease_path(scene, "D") + "/reports":
            body["reports"] += extra
        return body

    with scene.proxy(future) as client:
        v = verify_lease(_source(client, scene.ledger).load(scene.ids["D"]))
    assert v.failed() == {("window.future", 2), ("window.future", 3)}
    assert _party(v, "window.future") == {"attestor"}
    assert "after the chain's present" in v.failures[0].detail


# --- 7. an open dispute, then its outcome ------------------------------------------------------------------


def test_an_open_dispute_and_its_outcome_appear_in_the_verdict(scene: Scene) -> None:
    """Before: no mention of the dispute. After: the verdict's notes and lease.state say it is open, then how it
    was resolved (read from the chain, before the bridge has indexed it: its lag is not a finding)."""
    lease_id = scene.ids["E"]
    with scene.proxy() as client:
        v = verify_lease(_source(client, scene.ledger).load(lease_id))
        assert v.ok, v.failures
        (note,) = v.notes
        assert note.startswith("dispute open since block ") and note.endswith("frozen until the arbiter resolves it")
        assert {r.check: r for r in v.results}["lease.state"].detail == f"Active; {note}"

        arbiter = scene.ledger.deployment.arbiter
        LedgerClient(scene.chain, scene.ledger.deployment).resolve_dispute(arbiter, lease_id, 2_500, True)
        v = verify_lease(_source(client, scene.ledger).load(lease_id))
        assert v.ok, v.failures
        (note,) = v.notes
        assert "resolved" in note and "the provider at fault" in note
        by = {r.check: r for r in v.results}
        assert "the bridge has indexed through block" in by["bridge.consistency"].detail  # it lags: not a lie

        scene.app.state.bridge.indexer.sync_once()
        v = verify_lease(_source(client, scene.ledger).load(lease_id))
        assert v.ok and v.notes == (note,)
        assert "indexed through" not in {r.check: r for r in v.results}["bridge.consistency"].detail


# --- the bridge's GET /v1/chain, and a bridge whose chain the auditor cannot reach --------------------------


@pytest.mark.parametrize(
    ("field", "value", "difference"),
    [
        ("chainId", 1, "chainId: the bridge serves 1, the chain holds "),
        ("domain", {"verifyingContract": "0x" + "11" * 20}, "domain.verifyingContract: the bridge serves '0x1111"),
        ("domain", {"version": "1"}, "domain.version: the bridge serves '1', the chain holds '2'"),
        ("deployment", {"block": 99_999}, "deployment.block: the bridge serves 99999, the chain holds "),
    ],
)
def test_a_chain_document_that_is_not_the_chains_fails_bridge_chain(
    scene: Scene, field: str, value: Any, difference: str
) -> None:
    """The bridge's GET /v1/chain names another chain, domain or deployment than the one the auditor reads: a
    finding on every lease, the bridge's; the audit itself reads the chain and goes on."""

    def lie(path: str, q: dict[str, str], body: Any) -> Any:
        if path == "/v1/chain":
            body[field] = body[field] | value if isinstance(value, dict) else value
        return body

    with scene.proxy(lie) as client:
        src = _source(client, scene.ledger)
        audits = run(src, [scene.ids["A"], scene.ids["C"]])
    for _, v in audits:
        assert v.failed() == {("bridge.chain", None)}
        assert _party(v, "bridge.chain") == {"bridge"} and difference in v.failures[0].detail


def test_a_bridge_without_rpc_url_and_no_chain_given_could_not_audit(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The memory backend's chain lives in the bridge's process: it publishes no RPC URL. Without --rpc the
    audit says exactly that, and exits 3 (could not audit)."""
    import auditor.cli

    with scene.proxy() as client:
        monkeypatch.setattr(auditor.cli, "ApiSource", lambda *a, **kw: ApiSource(client=client))
        rc = main(["all", "--api", "http://bridge", "--quiet"])
    out = capsys.readouterr()
    assert rc == 3
    assert out.out.startswith(f"could not audit: the bridge publishes no RPC URL for chain {scene.ledger.chain_id} (")
    assert "memory backend" in out.out and out.out.rstrip().endswith("give --rpc URL of a node of that chain")
    assert "Traceback" not in out.err


# --- over JSON-RPC: the chain found through the bridge, or your own node ------------------------------------


@pytest.mark.anvil
def test_audit_over_json_rpc_finds_the_chain_through_the_bridge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bridge on an anvil node, served on 127.0.0.1: ``audit lease ID --api URL`` finds the chain through GET
    /v1/chain (RPC URL and deployment record, verified on the node); ``--rpc`` uses your own node instead;
    ``--deployment`` your own record."""
    import json

    try:
        chain = connect("anvil", data_dir=tmp_path / "anvil")
    except LedgerError as e:  # the npm package is optional
        pytest.skip(f"anvil is not available: {e}")
    try:
        dep = deploy_suite(chain, chain.accounts[0])
        settings = Settings(chain_backend="anvil", data_dir=tmp_path / "bridge", background=False,
                            settle_every_s=300.0, settle_threshold_wei=10**30,
                            server_secret=SecretStr("audit-rpc-test-secret-0123456789"))  # fmt: skip
        app = create_app(settings, chain=chain, deployment=dep)
        with _served(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            sc = build_scene(client, app, chain, dep, names="A")
            lease = str(sc.ids["A"])
            assert client.get("/v1/chain").json()["rpcUrl"] == chain.rpc_url
            rc = main(["lease", lease, "--api", url, "--quiet", "--json"])
            data = json.loads(capsys.readouterr().out)
            assert rc == 0, data
            by = {r["check"]: r for r in data["leases"][0]["results"]}
            assert f"the RPC node {chain.rpc_url} the bridge publishes" in by["bridge.chain"]["detail"]
            assert by["bridge.consistency"]["status"] == "PASS" and by["settlement.charge"]["status"] == "PASS"

            mine = tmp_path / "deployment.json"
            dep.save(mine)
            rc = main(["lease", lease, "--api", url, "--rpc", str(chain.rpc_url), "--deployment", str(mine), "--quiet"])
            out = capsys.readouterr().out
            assert rc == 0 and out.startswith(f"lease {lease}: VERIFIED"), out
            assert f"the RPC node {chain.rpc_url} (yours); your deployment record" in out

            nobody = f"http://127.0.0.1:{free_port()}"
            rc = main(["all", "--api", url, "--rpc", nobody, "--quiet"])
            out = capsys.readouterr().out
            assert rc == 3 and out.startswith(f"could not audit: the RPC node {nobody} (yours): no JSON-RPC answer")
    finally:
        chain.close()


def _served(app: Any) -> contextlib.AbstractContextManager[str]:
    """``app`` served by uvicorn on 127.0.0.1 (a free port) while the block runs."""
    return served(app)
