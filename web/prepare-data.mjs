// Builds the demo catalog from MovieLens 100K: web/public/data/catalog.json (ignored by git).
//   node web/prepare-data.mjs [path/to/ml-100k]   (default: ../shared/data/ml-100k from the repo root)
// Each item gets the demo embedding of src/features.js from its genres, year and rating stats,
// and its co-watch list: the 20 titles rated by the most of the same users, by cosine with
// shrinkage |U_i ∩ U_j| / (√|U_i|·√|U_j| + 10) (the engine's "related" input of loadCatalog).
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GENRES, DIM, itemEmbedding } from './src/features.js';

const here = dirname(fileURLToPath(import.meta.url));
const src = resolve(process.argv[2] ?? join(here, '..', '..', 'shared', 'data', 'ml-100k'));
if (!existsSync(join(src, 'u.item'))) {
  console.error(`prepare-data: ${src}/u.item not found (pass the ml-100k directory)`);
  process.exit(1);
}
// u.item is latin-1.
const uItem = readFileSync(join(src, 'u.item')).toString('latin1');
const uData = readFileSync(join(src, 'u.data'), 'utf8');

const stats = new Map();
const byUser = new Map();
for (const line of uData.split('\n')) {
  if (!line.trim()) continue;
  const [user, item, rating] = line.split('\t');
  if (!byUser.has(user)) byUser.set(user, []);
  byUser.get(user).push(item);
  const s = stats.get(item) ?? { n: 0, sum: 0 };
  s.n += 1;
  s.sum += Number(rating);
  stats.set(item, s);
}
const maxLog = Math.log1p(Math.max(...[...stats.values()].map((s) => s.n)));

const reading = (t) => {
  const m = t.match(/^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El)$/);
  return m ? `${m[2]} ${m[1]}` : t;
};
const items = [];
const embeddings = [];
for (const line of uItem.split('\n')) {
  if (!line.trim()) continue;
  const f = line.split('|');
  const id = f[0];
  const raw = f[1];
  if (raw === 'unknown') continue;
  const ym = raw.match(/\((\d{4})\)\s*$/);
  const year = ym ? Number(ym[1]) : null;
  const title = reading(raw.replace(/\s*\(\d{4}\)\s*$/, '').replace(/\s*\([^)]*\)\s*$/, '').trim());
  const genres = GENRES.filter((_, g) => f[5 + g] === '1' && g > 0);
  const s = stats.get(id) ?? { n: 0, sum: 0 };
  const pop = Math.log1p(s.n) / maxLog;
  const mean = s.n ? (s.sum / s.n - 1) / 4 : 0.5;
  items.push({ id: `ml${id}`, title, year, genres, ratings: s.n, meanRating: s.n ? +(s.sum / s.n).toFixed(2) : null });
  embeddings.push(...itemEmbedding({ genres, year }, pop, mean).map((x) => +x.toFixed(5)));
}
// Co-watch neighbours over the kept titles.
const kept = new Set(items.map((it) => it.id.slice(2)));
const co = new Map(); // item -> Map(item -> count)
for (const list of byUser.values()) {
  const l = list.filter((i) => kept.has(i));
  for (const a of l) {
    let m = co.get(a);
    if (!m) co.set(a, (m = new Map()));
    for (const b of l) if (a !== b) m.set(b, (m.get(b) ?? 0) + 1);
  }
}
const related = {};
for (const [a, m] of co) {
  const na = Math.sqrt(stats.get(a).n);
  const sims = [...m].map(([b, c]) => [b, c / (na * Math.sqrt(stats.get(b).n) + 10)]);
  sims.sort((x, y) => y[1] - x[1] || Number(x[0]) - Number(y[0]));
  related[`ml${a}`] = sims.slice(0, 20).map(([b, s]) => [`ml${b}`, +s.toFixed(4)]);
}
const out = join(here, 'public', 'data');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'catalog.json'), JSON.stringify({ source: 'MovieLens 100K', dim: DIM, items, embeddings, related }));
console.log(`prepare-data: ${items.length} titles, d = ${DIM} -> ${join(out, 'catalog.json')}`);
