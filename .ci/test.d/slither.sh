#!/usr/bin/env bash
# Static analysis of contracts/src with slither (installed in .venv-tools by `make install`; it pins a web3
# major different from the product's). Fails on any medium or high finding; low/informational ones are
# counted, not gating. Paths and the compile framework are in contracts/slither.config.json.
set -euo pipefail
cd "$(dirname "$0")/../../contracts"
export PATH="$PWD/node_modules/.bin:$PATH"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
rc=0
../.venv-tools/bin/slither . --fail-medium --json "$out/slither.json" >"$out/slither.log" 2>&1 || rc=$?
../.venv-tools/bin/python - "$out/slither.json" "$out/slither.log" "$rc" <<'PY'
import collections, json, sys

path, log, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    with open(path) as f:
        data = json.load(f)
except (OSError, ValueError):
    print(open(log).read()[-4000:])
    print("slither: no JSON report (compilation or analysis failed)")
    sys.exit(0)
found = (data.get("results") or {}).get("detectors", [])
count = collections.Counter(r["impact"] for r in found)
print("slither:", ", ".join(f"{count.get(k, 0)} {k.lower()}" for k in ("High", "Medium", "Low", "Informational", "Optimization")))
for r in found:
    if r["impact"] in ("High", "Medium"):
        first = r["description"].strip().splitlines()[0]
        print(f"  [{r['impact']}/{r['confidence']}] {r['check']}: {first}")
PY
echo "slither: $(( $(date +%s) - start )) s, exit code $rc"
exit "$rc"
