#!/usr/bin/env bash
# CI step for the wasm package: installs what a fresh machine lacks, builds wasm/pkg, runs the
# native golden check, the Node tests and the headless-Chromium tests.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen 0.2.130" ]; then
  # --locked fails on crates.io today (webpki-roots 1.0.11 is not published); the crate pin
  # `wasm-bindgen = "=0.2.130"` is what must match.
  cargo install wasm-bindgen-cli --version 0.2.130
fi
if ! command -v chromium >/dev/null; then
  apt-get update && apt-get install -y chromium chromium-driver
fi
[ -d node_modules/binaryen ] && [ -d node_modules/playwright-core ] && [ -d node_modules/typescript ] || npm ci --no-audit --no-fund
cargo test -p sona-wasm --test native_goldens
./build.sh
node --test tests/
node tests/browser.mjs
