#!/usr/bin/env bash
# CI step for the TV demo: needs wasm/pkg (wasm/ci.sh builds it; built here if missing) and the
# MovieLens 100K files (ML100K, default ../shared/data/ml-100k from the repo root).
set -euo pipefail
cd "$(dirname "$0")"
[ -f ../wasm/pkg/index.js ] || ../wasm/build.sh
if ! command -v chromium >/dev/null; then
  apt-get update && apt-get install -y chromium chromium-driver
fi
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
# shared/ sits beside the clone in CI; a clone made elsewhere (e.g. /tmp) falls back to
# the workplace's copy. Nothing is downloaded and the data is never committed.
if [ -z "${ML100K:-}" ]; then
  for d in ../../shared/data/ml-100k /work/shared/data/ml-100k; do
    [ -f "$d/u.item" ] && { ML100K=$d; break; }
  done
fi
node prepare-data.mjs "${ML100K:-../../shared/data/ml-100k}"
node tests/e2e.mjs
