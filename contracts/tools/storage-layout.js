#!/usr/bin/env node
// Fails unless the given contracts have the same storage layout, as forge reports it:
//
//   node tools/storage-layout.js LeaseEscrow LeaseEscrowExtension
//
// LeaseEscrowExtension runs by DELEGATECALL on LeaseEscrow's storage, so every slot, offset, variable name and
// type (struct members, mapping keys and values, array elements expanded) must agree. AST ids are dropped
// from type names: they differ between the two contracts' builds. Run from contracts/ after `forge build`
// (`forge inspect` reuses the build). Prints the first difference and exits 1, or one line and exits 0.
"use strict";
const { execFileSync } = require("child_process");
const path = require("path");

const FORGE = path.join(__dirname, "..", "node_modules", ".bin", "forge");

function layout(contract) {
  const out = execFileSync(FORGE, ["inspect", contract, "storageLayout", "--json"], {
    cwd: path.join(__dirname, ".."),
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  const data = JSON.parse(out);
  const types = data.types || {};
  const canon = (t) => {
    const d = types[t] || {};
    const members = (d.members || []).map((m) => `${m.slot}:${m.offset}:${m.label}:${canon(m.type)}`);
    const inner = ["key", "value", "base"].filter((k) => d[k]).map((k) => canon(d[k]));
    return t.replace(/\)\d+/g, ")") + "{" + members.concat(inner).join(",") + "}";
  };
  return (data.storage || []).map((s) => `${s.slot}:${s.offset}:${s.label}:${canon(s.type)}`);
}

const names = process.argv.slice(2);
if (names.length < 2) {
  console.error("usage: storage-layout.js CONTRACT CONTRACT...");
  process.exitCode = 2;
} else {
  const [first, ...rest] = names;
  const want = layout(first);
  let ok = want.length > 0;
  if (!ok) console.error(`storage layout: ${first} reports no storage`);
  for (const other of rest) {
    const got = layout(other);
    const n = Math.max(want.length, got.length);
    for (let i = 0; i < n; i++) {
      if (want[i] !== got[i]) {
        console.error(`storage layout: ${first} and ${other} differ at entry ${i}:`);
        console.error(`  ${first}: ${want[i] === undefined ? "(none)" : want[i]}`);
        console.error(`  ${other}: ${got[i] === undefined ? "(none)" : got[i]}`);
        ok = false;
        break;
      }
    }
  }
  if (ok) console.log(`storage layout: ${names.join(" = ")} (${want.length} variables)`);
  process.exitCode = ok ? 0 : 1;
}
