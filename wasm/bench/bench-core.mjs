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
  const items = Array.from({ length: n }, (_, i) => ({ id: `t${i}`, title: `Title ${i}` }));
  engine.loadCatalog({ items, embeddings: vec(n * d, 7) });
  const recommend = measure((i) => engine.recommend({ query: queries[i % queries.length], embedding: qs[i & 15], k: 10 }), 5, 100, now);
  const recommendNoRoute = measure((i) => engine.recommend({ embedding: qs[i & 15], k: 10 }), 5, 100, now);
  engine.free();
  return { route, adapt384: adapt, recommendTop10of10k: recommend, recommendTop10of10kNoRouting: recommendNoRoute };
}
