// A/B latency of two built packages in ONE Node process, batches interleaved, so machine load
// hits both alike (the shared dev machine is too noisy for two separate `node bench.mjs` runs).
// Usage: node bench/ab.cjs PKG_A PKG_B   (each a wasm/pkg directory built by ./build.sh)
// Prints per build variant the min and median over 27 batches of the mean µs per call of
// route (shipped router, 5 queries) and adaptEmbeddings (one 384-d embedding).
const fs = require('node:fs');
const path = require('node:path');
const [a, b] = process.argv.slice(2);
if (!a || !b) {
  console.error('usage: node bench/ab.cjs PKG_A PKG_B');
  process.exit(2);
}
const router = new Uint8Array(fs.readFileSync(path.join(__dirname, '..', '..', 'models', 'router.bin')));
const engines = {};
for (const [k, dir] of [['A', a], ['B', b]])
  for (const v of ['plain', 'simd'])
    engines[`${k} ${v}`] = require(path.resolve(dir, `node-${v}`, 'sona_wasm.js')).Engine.load({ router });
const qs = ['movies like heat', 'find sci-fi movies from 1977', 'something light and funny tonight', 'where can i watch fargo', 'recommend something for me'];
const q384 = new Float32Array(384).map((_, i) => Math.sin(i));
const res = {};
const time = (n, f) => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f(i);
  return Number(process.hrtime.bigint() - t) / n / 1000;
};
for (let round = 0; round < 30; round++) {
  for (const [k, e] of Object.entries(engines)) {
    const r = time(2000, (i) => e.route(qs[i % 5]));
    const ad = time(4000, () => e.adaptEmbeddings(q384));
    res[k] ??= { route: [], adapt: [] };
    if (round >= 3) {
      res[k].route.push(r);
      res[k].adapt.push(ad);
    }
  }
}
const med = (x) => x.slice().sort((p, q) => p - q)[x.length >> 1];
const f = (x) => `min ${Math.min(...x).toFixed(2).padStart(6)} med ${med(x).toFixed(2).padStart(6)} µs`;
console.log(`A = ${a}\nB = ${b}`);
for (const [k, r] of Object.entries(res)) console.log(`${k.padEnd(8)} route ${f(r.route)}   adapt384 ${f(r.adapt)}`);
