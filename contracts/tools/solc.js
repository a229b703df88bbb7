#!/usr/bin/env node
// A `solc` command line for tools that expect a native compiler (py-solc-x, forge), backed by the
// official solcjs build from npm: no compiler can be downloaded on the machines this project targets.
//
//   solc --version                 -> "solc, the solidity compiler commandline interface\nVersion: 0.8.x+..."
//   solc --standard-json [...]     -> reads the whole standard-JSON input from stdin, writes the output
//
// Imports that are not given as sources are resolved against --base-path, every --include-path, the
// --allow-paths roots and this package's node_modules. Output is written in full before the process
// ends: process.exitCode is set, process.exit() is never called (it truncates piped output at 64 KiB).
"use strict";
const fs = require("fs");
const path = require("path");

const HERE = path.resolve(__dirname, "..");
const solc = require(path.join(HERE, "node_modules", "solc"));

const args = process.argv.slice(2);

function versionLine() {
  return "Version: " + solc.version();
}

function roots() {
  const out = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const take = (flag) => {
      if (a === flag && i + 1 < args.length) return args[++i];
      if (a.startsWith(flag + "=")) return a.slice(flag.length + 1);
      return null;
    };
    for (const flag of ["--base-path", "--include-path", "--allow-paths"]) {
      const v = take(flag);
      if (v !== null) for (const p of v.split(",")) if (p) out.push(path.resolve(p));
    }
  }
  out.push(process.cwd(), HERE, path.join(HERE, "node_modules"));
  return out;
}

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath) ? [importPath] : roots().map((r) => path.join(r, importPath));
  for (const c of candidates) {
    try {
      return { contents: fs.readFileSync(c, "utf8") };
    } catch (_) {
      /* try the next root */
    }
  }
  return { error: "File not found: " + importPath };
}

function main() {
  if (args.includes("--version") || args.includes("-v")) {
    process.stdout.write("solc, the solidity compiler commandline interface\n" + versionLine() + "\n");
    return;
  }
  if (!args.includes("--standard-json")) {
    process.stderr.write("solc wrapper: only --version and --standard-json are supported\n");
    process.exitCode = 2;
    return;
  }
  const chunks = [];
  process.stdin.on("data", (c) => chunks.push(c));
  process.stdin.on("end", () => {
    const input = Buffer.concat(chunks).toString("utf8");
    let output = solc.compile(input, { import: findImports });
    // solcjs prints this advisory into its output when the SMT checker cannot run; it is not JSON.
    output = output
      .split("\n")
      .filter((line) => !line.startsWith(">>> Cannot retry compilation with SMT"))
      .join("\n");
    process.stdout.write(output, () => {
      process.exitCode = 0;
    });
  });
}

main();
