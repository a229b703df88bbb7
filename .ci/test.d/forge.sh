#!/usr/bin/env bash
# Foundry fuzz and invariant tests of the contracts (contracts/test/**), offline with the solcjs wrapper.
# Budget: contracts/foundry.toml ([fuzz] runs, [invariant] runs/depth). Prints forge's per-test summary.
# (That LeaseEscrow and its DELEGATECALL extension share one storage layout is checked by
# tests/contracts/test_storage_layout.py.)
set -euo pipefail
cd "$(dirname "$0")/../../contracts"
start=$(date +%s)
node_modules/.bin/forge test --color never
echo "forge: $(( $(date +%s) - start )) s"
