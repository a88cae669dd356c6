#!/usr/bin/env bash
# Build the npm package into wasm/pkg/: two wasm builds (plain and +simd128), wasm-bindgen for
# the browser (--target web) and Node (--target nodejs), wasm-opt -Oz (npm binaryen@132), the
# loader, types, README and package.json. Prints the gzipped engine size and fails above the
# 200 KB budget (SONA_WASM_ENFORCE_SIZE=0: warn only). `python3 size-report.py` says where the
# bytes go.
# Needs: rustup target wasm32-unknown-unknown, wasm-bindgen 0.2.130 on PATH, `npm ci` done in wasm/.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd .. && pwd)
PKG=pkg
# One codegen unit + LTO for size; the shared release profile stays untouched for native builds.
export CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort
# Size over speed for the wasm build only (env overrides; the workspace profile is unchanged).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${SONA_WASM_OPT_LEVEL:-s}

cargo build --target wasm32-unknown-unknown --release -p sona-wasm --target-dir "$ROOT/target/wasm-plain"
RUSTFLAGS="-C target-feature=+simd128" cargo build --target wasm32-unknown-unknown --release \
  -p sona-wasm --target-dir "$ROOT/target/wasm-simd"
PLAIN="$ROOT/target/wasm-plain/wasm32-unknown-unknown/release/sona_wasm.wasm"
SIMD="$ROOT/target/wasm-simd/wasm32-unknown-unknown/release/sona_wasm.wasm"

rm -rf "$PKG"
mkdir -p "$PKG"
for v in plain simd; do
  src=$PLAIN; [ "$v" = simd ] && src=$SIMD
  wasm-bindgen --target web --out-dir "$PKG/web-$v" --out-name sona_wasm "$src"
  wasm-bindgen --target nodejs --out-dir "$PKG/node-$v" --out-name sona_wasm "$src"
done
WASM_OPT=node_modules/.bin/wasm-opt
for f in "$PKG"/*/sona_wasm_bg.wasm; do
  flags=(-Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue)
  case "$f" in *simd*) flags+=(--enable-simd) ;; esac
  "$WASM_OPT" "${flags[@]}" "$f" -o "$f"
done
# Raw bindings' own .d.ts files are kept for reference; the curated types are index.d.ts.
rm -f "$PKG"/*/package.json "$PKG"/*/.gitignore
# The Node glue is CommonJS inside a "type": "module" package.
for v in plain simd; do echo '{ "type": "commonjs" }' > "$PKG/node-$v/package.json"; done
cp js/index.js js/node.mjs js/node.cjs js/simd.js js/index.d.ts js/README.md "$PKG/"
cp js/package.json "$PKG/package.json"

echo "--- sizes (bytes: raw, gzip -9) ---"
for f in "$PKG"/*/sona_wasm_bg.wasm "$PKG"/web-plain/sona_wasm.js; do
  printf '%-34s %8d %8d\n' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)"
done
GZ=$(gzip -9c "$PKG/web-simd/sona_wasm_bg.wasm" | wc -c)
GZP=$(gzip -9c "$PKG/web-plain/sona_wasm_bg.wasm" | wc -c)
MAX=$(( GZ > GZP ? GZ : GZP ))
echo "engine wasm gzipped (largest variant, models excluded): $MAX bytes ($(( (MAX + 1023) / 1024 )) KB); limit 204800"
if [ "$MAX" -gt 204800 ]; then
  echo "OVER BUDGET: engine wasm is over 200 KB gzipped (SONA_WASM_ENFORCE_SIZE=0 makes this a warning)" >&2
  if [ "${SONA_WASM_ENFORCE_SIZE:-1}" = 1 ]; then exit 1; fi
fi
