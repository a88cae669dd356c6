#!/usr/bin/env python3
"""Writes the evidence/benchmark text sets used for sona-embed's reported figures.

    python3 embed/tools/make_queries.py OUT_DIR [--titles ../shared/data/ml-100k/u.item]

OUT_DIR/queries10k.txt: 10,000 short TV-discovery queries from templates (seed 42), with
  MovieLens titles mixed in when --titles is given.
OUT_DIR/fuzz.txt: 5,000 random strings over many Unicode blocks (controls, combining marks,
  CJK, Hangul, emoji, private use, ...; seed 7) plus the MovieLens titles when given.
Lines never contain characters Python's splitlines() treats as line breaks.
"""

import argparse
import os
import random

GENRES = ["sci-fi", "thriller", "romcom", "horror", "documentary", "anime", "k-drama", "true crime",
          "sitcom", "western", "noir", "fantasy", "mystery", "reality tv", "stand-up comedy"]
MOODS = ["cozy", "dark", "uplifting", "mind-bending", "feel-good", "scary", "sad", "funny",
         "slow-burn", "intense", "relaxing", "nostalgic"]
SHOWS = ["stranger things", "succession", "the office", "breaking bad", "game of thrones",
         "the crown", "squid game", "ted lasso", "the bear", "friends", "black mirror", "dark",
         "money heist", "the witcher", "narcos"]
TEMPLATES = ["{g} like {s}", "shows similar to {s}", "where can I watch {s}",
             "something {m} to watch tonight", "{m} {g} movies", "is {s} on netflix?",
             "best {g} of the 90s", "{m} {g} series with strong female lead", "movies like {t}",
             "watch {t} online", "{t}", "recommend me a {m} {g}", "anything new like {s}??",
             "{s} season 2 release date", "{g} for a rainy sunday"]
RANGES = [(0x20, 0x7e), (0xa0, 0x17f), (0x180, 0x24f), (0x300, 0x36f), (0x370, 0x3ff),
          (0x400, 0x4ff), (0x590, 0x5ff), (0x600, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f),
          (0x1100, 0x11ff), (0x1e00, 0x1eff), (0x2000, 0x206f), (0x20a0, 0x20cf), (0x2100, 0x214f),
          (0x2190, 0x21ff), (0x2e00, 0x2e7f), (0x3000, 0x303f), (0x3040, 0x30ff), (0x3400, 0x4dbf),
          (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xe000, 0xe0ff), (0xf900, 0xfaff), (0xfb00, 0xfb4f),
          (0xfe00, 0xfe6f), (0xff00, 0xffef), (0x1f300, 0x1faff), (0x20000, 0x2a6df),
          (0x2b920, 0x2ceaf), (0x1d400, 0x1d7ff), (0x0, 0x1f), (0x7f, 0x9f), (0xe0000, 0xe007f),
          (0x10fff0, 0x10fffd), (0x2ff0, 0x2fff), (0x1e900, 0x1e95f)]
LINE_BREAKS = {0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--titles", help="MovieLens u.item (latin-1) for movie titles")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    titles = []
    if args.titles:
        with open(args.titles, encoding="latin-1") as f:
            titles = [line.split("|")[1] for line in f]
    title_pool = titles or ["The Matrix (1999)", "Amélie (2001)", "Toy Story (1995)"]

    random.seed(42)
    qs = []
    for _ in range(10000):
        q = random.choice(TEMPLATES).format(g=random.choice(GENRES), s=random.choice(SHOWS),
                                            m=random.choice(MOODS), t=random.choice(title_pool))
        if random.random() < 0.2:
            q = q.upper() if random.random() < 0.3 else q.title()
        qs.append(q)
    with open(os.path.join(args.out_dir, "queries10k.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(qs) + "\n")

    random.seed(7)
    lines = []
    for _ in range(5000):
        s = []
        for _ in range(random.randint(0, 40)):
            if random.random() < 0.35:
                s.append(random.choice(" abcdefghijklmnopqrstuvwxyz  ,.!?'-"))
                continue
            a, b = random.choice(RANGES)
            c = random.randint(a, b)
            if c in LINE_BREAKS or 0xD800 <= c <= 0xDFFF:
                c = 0x20
            s.append(chr(c))
        lines.append("".join(s))
    with open(os.path.join(args.out_dir, "fuzz.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines + titles) + "\n")


if __name__ == "__main__":
    main()
