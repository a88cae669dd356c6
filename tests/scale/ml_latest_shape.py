#!/usr/bin/env python3
"""Writes synthetic MovieLens data in the ml-latest CSV layout, for timing only.

    python3 tests/scale/ml_latest_shape.py OUT_DIR [USERS TITLES RATINGS SEED]

Defaults give the shape of ml-latest-small (610 viewers, 9,742 titles, about
100,000 ratings, 1996-2018), the most likely "other MovieLens data" for `sona eval`
and six times ML-100K's catalog. Tastes are random (Zipf popularity, no structure),
so the metrics `sona eval` prints on this data mean nothing; what it measures is
how long each stage takes on a catalog this size (see models/recommendation.md,
"Scale"). Standard-library Python, deterministic for a given seed.
"""
import bisect
import csv
import os
import random
import sys

GENRES = ("Action Adventure Animation Children Comedy Crime Documentary Drama Fantasy "
          "Film-Noir Horror IMAX Musical Mystery Romance Sci-Fi Thriller War Western").split()
TAGS = ("funny", "dark", "twist ending", "classic", "based on a book", "slow", "visually appealing")
# Gaps between a viewer's consecutive ratings, in seconds: sign-up bursts (0-5 s),
# a session (30 s-10 min) and the next day.
GAPS = (0, 0, 1, 2, 5, 30, 600, 86400)


def main():
    args = sys.argv[1:]
    if not args or len(args) > 5:
        sys.exit(__doc__)
    out = args[0]
    users, titles, ratings, seed = (int(a) for a in (args[1:] + ["610", "9742", "100000", "1"][len(args) - 1:]))
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)

    with open(os.path.join(out, "movies.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["movieId", "title", "genres"])
        for i in range(titles):
            genres = "|".join(rng.sample(GENRES, rng.randint(1, 3)))
            w.writerow([i * 3 + 1, f"Movie {i}, The ({1950 + i % 69})", genres])

    weights = [1.0 / (r + 1) ** 0.9 for r in range(titles)]
    rng.shuffle(weights)
    cumulative, total = [], 0.0
    for x in weights:
        total += x
        cumulative.append(total)

    # Heavy-tailed activity, at least 20 ratings each (as MovieLens requires),
    # scaled so that the total comes close to RATINGS.
    raw = [rng.paretovariate(1.2) for _ in range(users)]

    def activity(scale):
        return [min(titles // 2, 20 + int(x * scale)) for x in raw]

    lo, hi = 0.0, float(ratings)
    for _ in range(60):  # bisect the scale: the cap at TITLES/2 bends the total
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(activity(mid)) < ratings else (lo, mid)
    per_user = activity(lo)

    rows = []
    t_first, t_last = 828_000_000, 1_537_000_000
    for u, n in enumerate(per_user):
        t = rng.randint(t_first, t_last - 86400 * 30)
        seen = set()
        for _ in range(n):
            while True:
                i = bisect.bisect(cumulative, rng.random() * total)
                if i not in seen:
                    break
            seen.add(i)
            t += rng.choice(GAPS)
            rows.append((u + 1, i * 3 + 1, rng.choice((1, 1.5, 2, 2.5, 3, 3.5, 4, 4, 4.5, 5)), t))

    with open(os.path.join(out, "ratings.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows(rows)
    with open(os.path.join(out, "tags.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "tag", "timestamp"])
        for u, i, _, t in rng.sample(rows, min(3000, len(rows))):
            w.writerow([u, i, rng.choice(TAGS), t])
    print(f"{out}: {users} viewers, {titles} titles, {len(rows)} ratings")


if __name__ == "__main__":
    main()
