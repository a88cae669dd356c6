#!/usr/bin/env bash
# The main job: the TV demo app on the SONA wasm engine, served on 127.0.0.1:$PORT (8080),
# with the sync server on its embedded SQLite store (out/sona-sync.db) on 127.0.0.1:$SYNC_PORT
# (8787). No external service. Installs what a fresh machine lacks for the npm package
# (wasm32 target, wasm-bindgen CLI 0.2.130, binaryen from npm), builds wasm/pkg and the
# catalog once (MovieLens 100K from $ML100K, ../shared/data/ml-100k or
# /work/shared/data/ml-100k; never downloaded, never committed). Ctrl-C stops both servers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${PORT:-8080}
SYNC_PORT=${SYNC_PORT:-8787}

if [ ! -f wasm/pkg/index.js ]; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen 0.2.130" ]; then
    cargo install wasm-bindgen-cli --version 0.2.130
  fi
  [ -d wasm/node_modules/binaryen ] || (cd wasm && npm ci --no-audit --no-fund)
  bash wasm/build.sh
fi

if [ ! -f web/public/data/catalog.json ]; then
  if [ -z "${ML100K:-}" ]; then
    for d in ../shared/data/ml-100k /work/shared/data/ml-100k; do
      [ -f "$d/u.item" ] && { ML100K=$d; break; }
    done
  fi
  if [ -z "${ML100K:-}" ]; then
    echo "error: MovieLens 100K not found; set ML100K=<dir with u.item and u.data>" >&2
    exit 2
  fi
  node web/prepare-data.mjs "$ML100K"
fi

cargo build --release --locked -p sona-sync
mkdir -p out
./target/release/sona-sync --listen "127.0.0.1:$SYNC_PORT" --store-url "sqlite://$ROOT/out/sona-sync.db" &
SYNC_PID=$!
trap 'kill "$SYNC_PID" 2>/dev/null || true; wait "$SYNC_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$SYNC_PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$SYNC_PID" 2>/dev/null || { echo "error: the sync server did not start" >&2; exit 1; }
  sleep 0.2
done
echo "sync server on http://127.0.0.1:$SYNC_PORT (store out/sona-sync.db; tokens: ./target/release/sona-sync issue-token --user NAME --store-url sqlite://$ROOT/out/sona-sync.db)"
PORT=$PORT node web/serve.mjs
