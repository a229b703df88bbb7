#!/usr/bin/env bash
# Foundry fuzz and invariant tests of the contracts (contracts/test/**), offline with the solcjs wrapper.
# Budget: contracts/foundry.toml ([fuzz] runs, [invariant] runs/depth). Prints forge's per-test summary.
# Then the storage layouts: LeaseEscrowExtension runs by DELEGATECALL on LeaseEscrow's storage, so
# `forge inspect` must report the same slots, offsets, names and types for both (tools/storage-layout.js;
# tests/contracts/test_storage_layout.py checks the same from Python).
set -euo pipefail
cd "$(dirname "$0")/../../contracts"
start=$(date +%s)
log=$(mktemp)
node_modules/.bin/forge test --color never | tee "$log"
# the fuzzing budget actually spent: invariant handler calls and fuzz runs, summed over the tests
awk '/\(runs: [0-9]+, calls: [0-9]+/ { sub(/.*calls: /, ""); sub(/,.*/, ""); calls += $0 }
     /\(runs: [0-9]+, μ:/ { sub(/.*runs: /, ""); sub(/,.*/, ""); runs += $0 }
     END { printf "forge: %d invariant handler calls, %d fuzz runs\n", calls, runs }' "$log"
rm -f "$log"
node tools/storage-layout.js LeaseEscrow LeaseEscrowExtension
echo "forge: $(( $(date +%s) - start )) s"
