"""Independence: ethers.verifyTypedData and @openzeppelin/merkle-tree agree with our reports and proofs.

A node script (tests/audit/js/verify_independent.js) recovers the signers of our EIP-712 reports with
ethers, rebuilds our samples roots and verifies our Merkle proofs with OpenZeppelin's StandardMerkleTree,
and issues its own proofs for our verifier. Skipped when node or the npm packages are not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ledger.protocol import DOMAIN_NAME, DOMAIN_VERSION, EIP712_REPORT_TYPES, REPORT_TYPE_STRING, MeteringReport, MerkleTree, Sample, report_struct_hash, report_typed_message, sample_leaf, verify_proof
from ledger.chain.signing import address_of
from tests.audit.fakegpu import ATTESTOR_KEY, CHAIN_ID, ESCROW, make_lease

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "contracts" / "node_modules"
SCRIPT = Path(__file__).resolve().parent / "js" / "verify_independent.js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None
    or not (NODE_MODULES / "ethers").is_dir()
    or not (NODE_MODULES / "@openzeppelin" / "merkle-tree").is_dir(),
    reason="node with ethers and @openzeppelin/merkle-tree (contracts/node_modules) is not installed",
)


def _json_report(report: MeteringReport) -> dict[str, Any]:
    """The report as the nested EIP-712 message; integers as decimal strings (JSON numbers above 2^53 would
    lose precision in JavaScript)."""

    def dec(d: dict[str, Any]) -> dict[str, Any]:
        return {k: dec(v) if isinstance(v, dict) else str(v) if isinstance(v, int) else v for k, v in d.items()}

    return dec(report_typed_message(report))


def _run_node(payload: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        env={"NODE_PATH": str(NODE_MODULES), "PATH": os.environ.get("PATH", "")},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _payload(reports: list[Any], windows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": CHAIN_ID, "verifyingContract": ESCROW},
        "types": EIP712_REPORT_TYPES,
        "reports": reports,
        "windows": windows,
    }


def _window(samples: tuple[Sample, ...], root: bytes, proof_idx: list[int]) -> dict[str, Any]:
    tree = MerkleTree.of_samples(samples)
    return {
        "samples": [[str(v) for v in s.values()] for s in samples],
        "root": "0x" + root.hex(),
        "proofs": [
            {
                "sample": [str(v) for v in samples[i].values()],
                "proof": ["0x" + p.hex() for p in tree.proof(sample_leaf(samples[i]))],
            }
            for i in proof_idx
        ],
        "askIndices": proof_idx,
    }


def test_independent_tools_agree_with_signed_reports_and_merkle_proofs() -> None:
    fl = make_lease(3, gpus=(0, 1, 2), samples_per_window=7, settle_at=(3,))
    # the types ethers gets encode to the protocol's type string (MeteringReport, then WindowDetail)
    assert EIP712_REPORT_TYPES["MeteringReport"][-1] == {"name": "window", "type": "WindowDetail"}
    assert REPORT_TYPE_STRING.startswith("MeteringReport(")
    assert ",WindowDetail window)WindowDetail(" in REPORT_TYPE_STRING
    assert DOMAIN_VERSION == "2" and "uint64 cumSmActiveMs" in REPORT_TYPE_STRING
    reports = [{"report": _json_report(sr.report), "signature": "0x" + sr.signature.hex()} for sr in fl.reports]
    windows = []
    for sr in fl.reports:
        assert sr.samples is not None
        windows.append(_window(sr.samples, sr.report.samplesRoot, [0, 5, len(sr.samples) - 1]))

    out = _run_node(_payload(reports, windows))

    assert out["typeString"] == REPORT_TYPE_STRING  # ethers' encodeType of the nested types is ours
    assert out["signers"] == [address_of(ATTESTOR_KEY)] * 3
    assert out["structHashes"] == ["0x" + report_struct_hash(sr.report).hex() for sr in fl.reports]
    assert out["roots"] == ["0x" + sr.report.samplesRoot.hex() for sr in fl.reports]
    assert out["proofsValid"] == [[True, True, True]] * 3
    for sr, js in zip(fl.reports, out["jsProofs"]):
        assert sr.samples is not None
        for p in js:
            proof = [bytes.fromhex(h[2:]) for h in p["proof"]]
            assert verify_proof(sr.report.samplesRoot, sample_leaf(sr.samples[p["index"]]), proof)


def test_independent_tools_reject_tampered_report_and_forged_proof() -> None:
    fl = make_lease(1, gpus=(0,), samples_per_window=5, settle_at=())
    sr = fl.reports[0]
    assert sr.samples is not None
    tampered = _json_report(sr.report)
    tampered["window"]["smActiveMs"] = str(sr.report.smActiveMs + 1)  # a field of the nested WindowDetail
    window = _window(sr.samples, sr.report.samplesRoot, [2])
    window["proofs"][0]["sample"][4] = str(sr.samples[2].busyMs + 1)  # forged busy time

    out = _run_node(_payload([{"report": tampered, "signature": "0x" + sr.signature.hex()}], [window]))

    assert out["signers"][0] != address_of(ATTESTOR_KEY)
    assert out["proofsValid"] == [[False]]
