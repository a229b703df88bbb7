"""docs/protocol.md is true: its worked example is what the code computes, and every value in it re-verifies
with ethers and @openzeppelin/merkle-tree from the document alone (JavaScript written from the document's
text, not from this code)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "protocol.md"
CONTRACTS = REPO / "contracts"
NODE = shutil.which("node")

JS = r"""
const { StandardMerkleTree } = require('@openzeppelin/merkle-tree');
const { TypedDataEncoder, verifyTypedData, keccak256, toUtf8Bytes, concat, getBytes, AbiCoder, computeAddress,
        SigningKey, Signature } = require('ethers');
const x = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = {};
const B = (v) => BigInt(v);
// §3: domain, struct hashes, digest, signature
out.domainSeparator = TypedDataEncoder.hashDomain(x.domain);
const enc = TypedDataEncoder.from(x.types);
out.structHash = enc.hash(x.typedMessage);
out.windowHash = enc.hashStruct('WindowDetail', x.typedMessage.window);
out.digest = TypedDataEncoder.hash(x.domain, x.types, x.typedMessage);
out.signer = verifyTypedData(x.domain, x.types, x.typedMessage, x.signature);
out.keyAddress = computeAddress(new SigningKey(x.inputs.attestorPrivateKey).publicKey);
// §3.2: gpuSetHash from the UUIDs
const hs = x.inputs.gpuUuids.map((u) => keccak256(toUtf8Bytes(u))).sort();
out.gpuSetHash = keccak256(concat(hs));
// §3.3: configHash
const p = x.inputs.configPolicy;
const items = Object.keys(p).sort().map((k) => `${k}=${p[k]}`).join(';');
out.configHashText = `;${items}`;
// §4: leaves, root, proof
const tree = StandardMerkleTree.of(x.samples, x.leafTypes);
out.root = tree.root;
out.leaves = x.samples.map((s) => tree.leafHash(s));
out.proof0 = tree.getProof(0);
out.proofVerifies = StandardMerkleTree.verify(x.samplesRoot, x.leafTypes, x.samples[0], x.proofOfSample0);
// §5: the window's figures for this example (every interval inside the lease, no gap, no reset)
const S = x.samples.map((s) => s.map(B));
const sum = (i) => S.reduce((a, s) => a + s[i], 0n).toString();
out.allocatedMs = sum(3); out.busyMs = sum(4); out.smActiveMs = sum(6); out.tensorActiveMs = sum(7);
let energy = 0n;
for (const g of [0n, 1n]) {
  const read = S.filter((s) => s[0] === g && (s[12] & (1n << 22n)) === 0n).sort((a, b) => (a[1] < b[1] ? -1 : 1));
  for (let i = 1; i < read.length; i++) energy += read[i][10] - read[i - 1][10];
}
out.energyMj = energy.toString();
// §6.2: the entry, field by field
const e = getBytes(x.settlement.entry);
const num = (a, b) => BigInt('0x' + Buffer.from(e.slice(a, b)).toString('hex')).toString();
const hex = (a, b) => '0x' + Buffer.from(e.slice(a, b)).toString('hex');
out.entry = {
  length: e.length, leaseId: num(0, 4), seq: num(4, 8), windowEndMs: num(8, 14), cumBusyMs: num(14, 20),
  cumEnergyMj: num(20, 26), cumAllocatedMs: num(26, 32), cumSmActiveMs: num(32, 38), flags: e[38],
  prevReportHash: hex(39, 71), windowHash: hex(71, 103), r: hex(103, 135), vs: hex(135, 167),
  terms: num(167, 199), ckpt: num(199, 231),
};
const sig = Signature.from(x.signature);
out.sigR = sig.r; out.sigVs = sig.yParityAndS;
// §6.1: the words and the commitment
const M48 = (1n << 48n) - 1n, M32 = (1n << 32n) - 1n;
const ck = B(x.settlement.ckptAfter);
out.ckptAfter = { seq: (ck & M32).toString(), cumBusyMs: ((ck >> 32n) & M48).toString(),
  cumAllocatedMs: ((ck >> 80n) & M48).toString(), cumEnergyMj: ((ck >> 128n) & M48).toString(),
  cumSmActiveMs: ((ck >> 176n) & M48).toString(), settledAt: (ck >> 224n).toString() };
const t = B(x.settlement.terms);
out.terms = { nodeId: (t & M32).toString(), startS: ((t >> 32n) & M32).toString(), durationS: ((t >> 64n) & M32).toString(),
  gpuCount: ((t >> 96n) & 0xffffn).toString(), mode: ((t >> 112n) & 0xfn).toString(), status: ((t >> 116n) & 0xfn).toString(),
  price: ((t >> 120n) & ((1n << 96n) - 1n)).toString() };
const ckBefore = B(x.settlement.ckptBefore);
out.ckptBefore = { rest: (ckBefore & ((1n << 224n) - 1n)).toString(), settledAt: (ckBefore >> 224n).toString() };
const coder = AbiCoder.defaultAbiCoder();
out.stateHashBefore = keccak256(coder.encode(['uint256', 'uint256', 'bytes32'], [t, ckBefore, '0x' + '00'.repeat(32)]));
out.stateHashAfter = keccak256(coder.encode(['uint256', 'uint256', 'bytes32'], [t, ck, out.structHash]));
// §6.3: the charge; §6.4: the record
out.charged = (B(x.inputs.lease.pricePerGpuSecondWei) * B(x.report.cumSmActiveMs) / 1000n).toString();
const r = getBytes(x.settlement.record);
out.record = { length: r.length, leaseId: BigInt('0x' + Buffer.from(r.slice(0, 4)).toString('hex')).toString(),
  reportHash: '0x' + Buffer.from(r.slice(4, 36)).toString('hex'),
  ckpt: BigInt('0x' + Buffer.from(r.slice(36, 68)).toString('hex')).toString(),
  charged: BigInt('0x' + Buffer.from(r.slice(68, 84)).toString('hex')).toString() };
process.stdout.write(JSON.stringify(out));
"""


def _example() -> dict[str, Any]:
    text = DOC.read_text()
    block = text.split("<!-- example:begin -->", 1)[1].split("<!-- example:end -->", 1)[0]
    body = block.strip().removeprefix("```json").removesuffix("```")
    result: dict[str, Any] = json.loads(body)
    return result


def test_the_documents_example_is_what_the_code_computes() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "protocol_example.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(
    NODE is None or not (CONTRACTS / "node_modules" / "@openzeppelin" / "merkle-tree").is_dir(),
    reason="node or contracts/node_modules missing (npm ci in contracts/)",
)
def test_the_documents_example_verifies_with_ethers_and_openzeppelin() -> None:
    x = _example()
    assert NODE is not None
    run = subprocess.run([NODE, "-e", JS], input=json.dumps(x), capture_output=True, text=True, cwd=CONTRACTS, timeout=60)
    assert run.returncode == 0, run.stderr
    js = json.loads(run.stdout)
    rep, st = x["report"], x["settlement"]
    assert js["domainSeparator"] == x["domainSeparator"]
    assert (js["structHash"], js["windowHash"], js["digest"]) == (x["structHash"], x["windowHash"], x["digest"])
    assert js["signer"] == js["keyAddress"] == x["signer"]
    assert js["gpuSetHash"] == rep["gpuSetHash"]
    assert js["root"] == x["samplesRoot"] == rep["samplesRoot"] and js["leaves"] == x["leaves"]
    assert js["proof0"] == x["proofOfSample0"] and js["proofVerifies"] is True
    for name in ("allocatedMs", "busyMs", "smActiveMs", "tensorActiveMs", "energyMj"):
        assert js[name] == rep[name], name  # the window rule, by hand, on the document's samples
    for name in ("AllocatedMs", "BusyMs", "SmActiveMs", "EnergyMj"):
        assert rep["cum" + name] == rep[name[0].lower() + name[1:]]  # a lease's first report: totals = window
    e = js["entry"]
    assert e["length"] == 231 and e["flags"] == 0  # consecutive: the last hash is the prevReportHash
    for name in ("leaseId", "seq", "windowEndMs", "cumBusyMs", "cumEnergyMj", "cumAllocatedMs", "cumSmActiveMs"):
        assert e[name] == rep[name], name
    assert (e["prevReportHash"], e["windowHash"]) == (rep["prevReportHash"], x["windowHash"])
    assert (e["r"], e["vs"]) == (js["sigR"], js["sigVs"])
    assert (e["terms"], e["ckpt"]) == (st["terms"], st["ckptBefore"])
    lease = x["inputs"]["lease"]
    assert js["terms"] == {
        "nodeId": str(lease["nodeId"]), "startS": str(lease["startS"]), "durationS": str(lease["durationS"]),
        "gpuCount": str(lease["gpuCount"]), "mode": "2", "status": "2", "price": lease["pricePerGpuSecondWei"],
    }  # fmt: skip
    assert js["ckptBefore"] == {"rest": "0", "settledAt": str(lease["startS"])}
    assert js["ckptAfter"] == {
        "seq": rep["seq"], "cumBusyMs": rep["cumBusyMs"], "cumAllocatedMs": rep["cumAllocatedMs"],
        "cumEnergyMj": rep["cumEnergyMj"], "cumSmActiveMs": rep["cumSmActiveMs"], "settledAt": str(st["settledAt"]),
    }  # fmt: skip
    assert (js["stateHashBefore"], js["stateHashAfter"]) == (st["stateHashBefore"], st["stateHashAfter"])
    assert js["charged"] == st["charged"]
    assert js["record"] == {"length": 84, "leaseId": rep["leaseId"], "reportHash": x["structHash"],
                            "ckpt": st["ckptAfter"], "charged": st["charged"]}  # fmt: skip
