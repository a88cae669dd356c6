#!/usr/bin/env python3
"""Compares the Rust embedder's output on a file of texts with the Python references.

    cargo run --release -p sona-embed --example embed_lines -- TEXTS.txt RUST.jsonl
    python3 embed/tools/compare_rust.py TEXTS.txt RUST.jsonl [--embed-limit 500]

Token ids of every line are compared with the Hugging Face `tokenizers` library (exact match);
embeddings of the first --embed-limit lines with the float64 numpy forward pass of
make_goldens.py (max abs difference, min cosine).
"""

import argparse
import json
import os
import sys

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(__file__))
from make_goldens import MAX_SEQ_LENGTH, NumpyBert, default_model_dir  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("texts")
    ap.add_argument("rust_jsonl")
    ap.add_argument("--model-dir", default=default_model_dir())
    ap.add_argument("--embed-limit", type=int, default=500)
    args = ap.parse_args()

    with open(args.texts, encoding="utf-8") as f:
        texts = f.read().splitlines()
    with open(args.rust_jsonl, encoding="utf-8") as f:
        rust = [json.loads(line) for line in f]
    assert len(texts) == len(rust), (len(texts), len(rust))

    tok = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tok.enable_truncation(MAX_SEQ_LENGTH)
    tok.no_padding()
    ref_ids = [e.ids for e in tok.encode_batch(texts)]
    bad = [i for i, (r, e) in enumerate(zip(rust, ref_ids)) if r["ids"] != e]
    print(f"token ids: {len(texts) - len(bad)}/{len(texts)} texts match tokenizers exactly")
    for i in bad[:10]:
        print(f"  MISMATCH {texts[i]!r}\n    rust {rust[i]['ids']}\n    ref  {ref_ids[i]}")

    bert = NumpyBert(args.model_dir)
    n = min(args.embed_limit, len(texts))
    worst, min_cos = 0.0, 1.0
    for i in range(n):
        ref = bert.embed(ref_ids[i])
        got = np.asarray(rust[i]["embedding"], dtype=np.float64)
        worst = max(worst, float(np.abs(got - ref).max()))
        min_cos = min(min_cos, float(got @ ref / np.linalg.norm(got) / np.linalg.norm(ref)))
    print(f"embeddings: {n} texts, max |rust - numpy| = {worst:.3e}, min cosine = {min_cos:.9f}")
    return 1 if bad or worst >= 1e-4 else 0


if __name__ == "__main__":
    sys.exit(main())
