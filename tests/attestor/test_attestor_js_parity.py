"""The attestor's commitments equal what the JavaScript reference libraries compute.

Merkle root and proofs against ``@openzeppelin/merkle-tree`` (``StandardMerkleTree``), the EIP-712 digest
against ethers' ``TypedDataEncoder``, and the signature against ethers' ``verifyTypedData``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from attestor.keys import Signer
from ledger.protocol import (
    DOMAIN_VERSION,
    EIP712_REPORT_TYPES,
    REPORT_TYPE_STRING,
    SAMPLE_LEAF_TYPES,
    MerkleTree,
    report_digest,
    report_typed_message,
    sample_leaf,
    verify_proof,
)
from tests.support.simulated import simulated_lease

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (CONTRACTS / "node_modules" / "@openzeppelin" / "merkle-tree").is_dir(),
    reason="node or contracts/node_modules missing (npm ci in contracts/)",
)

ESCROW = to_checksum_address("0x5fbdb2315678afecb367f032d315f642f64180aa")
CHAIN_ID = 31337

JS = r"""
const { StandardMerkleTree } = require('@openzeppelin/merkle-tree');
const { TypedDataEncoder, verifyTypedData } = require('ethers');
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const x = JSON.parse(input);
  const tree = StandardMerkleTree.of(x.values, x.leafTypes);
  const proofs = x.proofIndices.map((i) => tree.getProof(i));
  const digest = TypedDataEncoder.hash(x.domain, x.types, x.report);
  const structHash = TypedDataEncoder.from(x.types).hash(x.report);
  const signer = verifyTypedData(x.domain, x.types, x.report, x.signature);
  const typeString = TypedDataEncoder.from(x.types).encodeType('MeteringReport');
  process.stdout.write(JSON.stringify({ root: tree.root, proofs, digest, structHash, signer, typeString }));
});
"""


def _node(payload: dict[str, Any]) -> dict[str, Any]:
    assert NODE is not None
    out = subprocess.run(
        [NODE, "-e", JS], input=json.dumps(payload), capture_output=True, text=True, cwd=CONTRACTS, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_report_commitments_match_openzeppelin_and_ethers() -> None:
    signer = Signer(bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"))
    lease = simulated_lease(
        spec="8xH100", seed=3, profile="bursty", lease_id=42, gpu_indices=range(8), period_ms=2_000,
        window_ms=12_000, signer=signer, chain_id=CHAIN_ID, escrow=ESCROW,
    )  # fmt: skip
    built = lease.window()
    report = built.report
    samples = list(built.samples)
    tree = MerkleTree.of_samples(samples)
    picks = [0, 5, len(samples) - 1]

    js = _node(
        {
            "values": [smp.to_list() for smp in samples],
            "leafTypes": list(SAMPLE_LEAF_TYPES),
            "proofIndices": picks,
            "domain": {
                "name": "ComputeLedger", "version": DOMAIN_VERSION, "chainId": CHAIN_ID, "verifyingContract": ESCROW,
            },  # fmt: skip
            "types": EIP712_REPORT_TYPES,  # nested: MeteringReport with a WindowDetail window
            # the wire JSON as is: 64-bit integers are decimal strings, so JavaScript reads them exactly
            "report": json.loads(json.dumps(report_typed_message(report))),
            "signature": "0x" + built.signature.hex(),
        }
    )

    assert report.sampleCount == 8 * 6
    assert js["root"] == "0x" + report.samplesRoot.hex() == "0x" + tree.root.hex()
    for i, proof in zip(picks, js["proofs"], strict=True):
        leaf = sample_leaf(samples[i])
        ours = ["0x" + p.hex() for p in tree.proof(leaf)]
        assert ours == proof
        assert verify_proof(tree.root, leaf, tree.proof(leaf))
    assert js["digest"] == "0x" + report_digest(report, CHAIN_ID, ESCROW).hex()
    assert js["structHash"] == "0x" + built.report_hash.hex()
    assert js["signer"] == signer.address
    assert js["typeString"] == REPORT_TYPE_STRING


def test_merkle_tree_of_odd_and_single_leaf_sets_matches_openzeppelin() -> None:
    samples = list(simulated_lease(spec="3xL4", seed=9, profile="idle", gpu_indices=(0, 1, 2)).window().samples)[:5]
    subsets = (samples[:1], samples[:2], samples[:3], samples)
    script = (
        "const {StandardMerkleTree}=require('@openzeppelin/merkle-tree');"
        "const x=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "process.stdout.write(JSON.stringify(x.sets.map(v=>StandardMerkleTree.of(v,x.types).root)));"
    )
    payload = {
        "types": list(SAMPLE_LEAF_TYPES),
        "sets": [[[str(v) for v in smp.values()] for smp in sub] for sub in subsets],
    }
    out = subprocess.run(
        [str(NODE), "-e", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=CONTRACTS,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout) == ["0x" + MerkleTree.of_samples(sub).root.hex() for sub in subsets]
