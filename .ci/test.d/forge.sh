#!/usr/bin/env bash
# Foundry fuzz and invariant tests of the contracts (contracts/test/**), offline with the solcjs wrapper.
# Budget: contracts/foundry.toml ([fuzz] runs, [invariant] runs/depth). Prints forge's per-test summary,
# then checks that LeaseEscrow and LeaseEscrowExtension (run by DELEGATECALL on LeaseEscrow's storage)
# have the same storage layout.
set -euo pipefail
cd "$(dirname "$0")/../../contracts"
start=$(date +%s)
node_modules/.bin/forge test --color never
node - <<'JS'
const fs = require("fs");
// Layout of a contract with AST ids removed and struct members expanded, so that two compilation units
// compare equal exactly when every slot, offset, name and type agrees.
function layout(name) {
  const { storage, types } = JSON.parse(fs.readFileSync(`out/${name}.sol/${name}.json`, "utf8")).storageLayout;
  const canon = (t) => {
    const d = types[t] || {};
    const members = (d.members || []).map((m) => `${m.slot}:${m.offset}:${m.label}:${canon(m.type)}`);
    const inner = [d.key, d.value, d.base].filter(Boolean).map(canon);
    return `${t.replace(/\)\d+_/g, ")_")}{${members.concat(inner).join(",")}}`;
  };
  return storage.map((s) => `${s.slot}:${s.offset}:${s.label}:${canon(s.type)}`);
}
const a = layout("LeaseEscrow");
const b = layout("LeaseEscrowExtension");
if (JSON.stringify(a) !== JSON.stringify(b)) {
  console.error("storage layouts of LeaseEscrow and LeaseEscrowExtension differ:");
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) console.error(`  ${a[i]}\n  ${b[i]}`);
  process.exitCode = 1;
} else {
  console.log(`storage layout: LeaseEscrow == LeaseEscrowExtension (${a.length} variables)`);
}
JS
echo "forge: $(( $(date +%s) - start )) s"
