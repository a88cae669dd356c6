// Latency measurements shared by Node and the browser. Per-call times come from batches
// (browser timers are coarse): p50/p99 are over batch means.

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { p50_us: +(q(0.5) * 1000).toFixed(2), p99_us: +(q(0.99) * 1000).toFixed(2), batches: s.length };
}

function measure(fn, batch, batches, now) {
  for (let i = 0; i < batch * 3; i++) fn(i); // warm-up
  const out = [];
  for (let b = 0; b < batches; b++) {
    const t0 = now();
    for (let i = 0; i < batch; i++) fn(i);
    out.push((now() - t0) / batch);
  }
  return stats(out);
}

/** A deterministic pseudo-random Float32Array in [-1, 1). */
function vec(n, seed) {
  const v = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    v[i] = (x / 4294967296) * 2 - 1;
  }
  return v;
}

export function runBench(Engine, router, now = () => performance.now()) {
  const queries = ['movies like heat', 'find sci-fi movies from 1977', 'something light and funny tonight', "what's new this week", 'where can i watch fargo', 'recommend something for me'];
  const d = 384;
  const engine = Engine.load({ router }); // default personalization: d = 384, rank 8
  const route = measure((i) => engine.route(queries[i % queries.length]), 200, 200, now);
  const qs = Array.from({ length: 16 }, (_, i) => vec(d, 100 + i));
  const adapt = measure((i) => engine.adaptEmbeddings(qs[i & 15]), 200, 200, now);
  const n = 10000;
  // A catalog shaped like a real one: 1-3 of 19 genres, years 1920-2024, two- to four-word titles.
  const GENRES = ['Action', 'Adventure', 'Animation', "Children's", 'Comedy', 'Crime', 'Documentary', 'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical', 'Mystery', 'Romance', 'Sci-Fi', 'Thriller', 'War', 'Western', 'Family'];
  const WORDS = ['night', 'day', 'love', 'city', 'heat', 'star', 'dark', 'last', 'man', 'woman', 'river', 'king', 'war', 'home', 'dead', 'story', 'time', 'blue', 'game', 'house'];
  const r = vec(n * 8, 3);
  const pick = (x, m) => Math.floor(((x + 1) / 2) * m) % m;
  const items = Array.from({ length: n }, (_, i) => ({
    id: `t${i}`,
    title: Array.from({ length: 2 + pick(r[i * 8], 3) }, (_, w) => WORDS[pick(r[i * 8 + 1 + w], WORDS.length)]).join(' ') + ` ${i}`,
    genres: Array.from({ length: 1 + pick(r[i * 8 + 5], 3) }, (_, g) => GENRES[(pick(r[i * 8 + 6], GENRES.length) + 7 * g) % GENRES.length]),
    year: 1920 + pick(r[i * 8 + 7], 105),
  }));
  engine.loadCatalog({ items, embeddings: vec(n * d, 7) });
  const recommendNoRoute = measure((i) => engine.recommend({ embedding: qs[i & 15], k: 10, now: 1717200000 }), 5, 100, now);
  // The full fused pipeline: a viewer with 8 watched titles (graph seeds, profile, context habits),
  // routed queries (every route's weights, freshness included) and a context.
  for (let j = 0; j < 8; j++) {
    engine.recordInteraction({ contentId: `t${j * 997}`, type: j % 3 ? 'watch_complete' : 'skip', now: 1717200000 + j, embedding: qs[j], context: { device: 'tv', hourOfDay: 18 + (j % 5), dayOfWeek: j % 7 } });
  }
  const context = { device: 'tv', hourOfDay: 21, dayOfWeek: 4 };
  const recommend = measure((i) => engine.recommend({ query: queries[i % queries.length], embedding: qs[i & 15], context, k: 10, now: 1717200000 }), 5, 100, now);
  const recommendNoEmbedding = measure((i) => engine.recommend({ query: queries[i % queries.length], context, k: 10, now: 1717200000 }), 5, 100, now);
  engine.free();
  return { route, adapt384: adapt, recommendTop10of10k: recommend, recommendTop10of10kProfileOnly: recommendNoEmbedding, recommendTop10of10kEmbeddingOnly: recommendNoRoute };
}
