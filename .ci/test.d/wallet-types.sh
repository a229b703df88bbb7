#!/usr/bin/env bash
# The web market's one script of our own (api/web/static/wallet.js: the EIP-1193 wallet flow) is plain
# JavaScript with JSDoc types; TypeScript (pinned in contracts/package.json) checks it strictly.
set -euo pipefail
cd "$(dirname "$0")/../.."
contracts/node_modules/.bin/tsc --allowJs --checkJs --noEmit --strict --target es2022 \
  --lib dom,dom.iterable,es2022 api/web/static/wallet.js
echo "wallet.js: tsc --strict, no errors"
