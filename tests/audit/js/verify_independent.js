// Third-party check of our metering protocol with the ecosystem's standard tools (issue 6):
// ethers.verifyTypedData recovers the signer of each EIP-712 report, @openzeppelin/merkle-tree rebuilds
// each samples root and verifies (and issues) Merkle proofs. Reads one JSON object on stdin, writes one.
// Run with NODE_PATH pointing at contracts/node_modules.
"use strict";
const { verifyTypedData, TypedDataEncoder } = require("ethers");
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");

// protocol v2's sample leaf, written down here on its own (docs: ledger/protocol/samples.py SAMPLE_FIELDS):
// gpuIndex, tsMs, intervalMs, coveredMs, busyMs, utilSamples, smActiveMs, tensorActiveMs, powerMw,
// powerSamples, energyMj, memUsedMiB, flags
const SAMPLE_TYPES = [
  "uint16", "uint64", "uint32", "uint32", "uint32", "uint16", "uint32", "uint32", "uint32", "uint16", "uint64",
  "uint32", "uint32",
];

function main(input) {
  // the nested EIP-712 types as ledger.protocol.EIP712_REPORT_TYPES gives them (MeteringReport + WindowDetail)
  const types = input.types;
  const out = { signers: [], structHashes: [], roots: [], proofsValid: [], jsProofs: [] };
  out.typeString = TypedDataEncoder.from(types).encodeType("MeteringReport");
  for (const r of input.reports) {
    out.signers.push(verifyTypedData(input.domain, types, r.report, r.signature));
    out.structHashes.push(TypedDataEncoder.from(types).hash(r.report));
  }
  for (const w of input.windows) {
    const values = w.samples.map((s) => s.map((v) => BigInt(v).toString()));
    const tree = StandardMerkleTree.of(values, SAMPLE_TYPES);
    out.roots.push(tree.root);
    out.proofsValid.push(
      w.proofs.map((p) => StandardMerkleTree.verify(w.root, SAMPLE_TYPES, p.sample.map(String), p.proof)),
    );
    // proofs issued by the standard library, for our verifier to accept
    out.jsProofs.push(w.askIndices.map((i) => ({ index: i, proof: tree.getProof(i) })));
  }
  return out;
}

let raw = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (c) => (raw += c));
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify(main(JSON.parse(raw))));
});
