#!/usr/bin/env bash
# Foundry fuzz and invariant tests of the contracts (contracts/test/**), offline with the solcjs wrapper.
# Budget: contracts/foundry.toml ([fuzz] runs, [invariant] runs/depth). Prints forge's per-test summary.
# Then the storage layouts: LeaseEscrowExtension runs by DELEGATECALL on LeaseEscrow's storage, so
# `forge inspect` must report the same slots, offsets, names and types for both (tools/storage-layout.js;
# tests/contracts/test_storage_layout.py checks the same from Python).
set -euo pipefail
cd "$(dirname "$0")/../../contracts"
start=$(date +%s)
node_modules/.bin/forge test --color never
node tools/storage-layout.js LeaseEscrow LeaseEscrowExtension
echo "forge: $(( $(date +%s) - start )) s"
