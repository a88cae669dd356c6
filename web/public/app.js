// SONA TV demo: D-pad navigation, routed queries, on-device learning, IndexedDB persistence.
import { init, Engine, backend } from '/pkg/index.js';
import { queryEmbedding, DIM } from '/src/features.js';

const USER = 'living-room';
// Learn after every interaction (the library default waits for 5 interactions and an hour).
const PERSONALIZE = { d: DIM, rank: 4, alpha: 4, baseLr: 0.006, minInteractions: 1, minIntervalSecs: 0, minSignal: 0.1 };
const DEFAULT_QUERY = 'something light and funny tonight';
const $ = (id) => document.getElementById(id);

// ---------- IndexedDB ----------
function db() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open('sona-tv', 1);
    r.onupgradeneeded = () => r.result.createObjectStore('kv');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function idbGet(key) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const r = d.transaction('kv').objectStore('kv').get(key);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function idbPut(entries) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction('kv', 'readwrite');
    for (const [k, v] of Object.entries(entries)) t.objectStore('kv').put(v, k);
    t.oncomplete = () => resolve();
    t.onerror = () => reject(t.error);
  });
}

// ---------- state ----------
let engine;
let history = { watched: [], skipped: [], query: '' };
let rows = [[], []]; // recommended items per row
let prevRanks = new Map();
let focus = { row: 0, col: 0 };
let menu = null; // {item, index}
let lastEmbedding = null;
const titles = new Map();

function excluded() {
  return [...history.watched, ...history.skipped];
}

function renderRoute(r, matched, error) {
  const el = $('route');
  if (error) {
    el.innerHTML = `<span class="fb">${error}</span>`;
    return;
  }
  const pct = (r.confidence * 100).toFixed(0);
  const fb = r.fellBack ? ` <span class="fb">(fell back from ${r.originalRoute})</span>` : '';
  const kw = matched.length ? `<br>matched: ${matched.join(', ')}` : '';
  el.innerHTML = `Route <b data-route="${r.route}">${r.route}</b> · ${pct}%${fb}${kw}`;
}

function card(item, rank, rowIdx, col) {
  const c = document.createElement('div');
  c.className = 'card';
  c.dataset.id = item.id;
  c.dataset.row = rowIdx;
  c.dataset.col = col;
  let move = '';
  if (rowIdx === 1 && prevRanks.size) {
    const before = prevRanks.get(item.id);
    if (before === undefined) move = '<span class="move new">new</span>';
    else if (before > rank) move = `<span class="move up">▲${before - rank}</span>`;
    else if (before < rank) move = `<span class="move down">▼${rank - before}</span>`;
  }
  const p = item.personalScore ?? 0;
  const taste = Math.abs(p) >= 0.005 ? ` · taste ${p > 0 ? '+' : ''}${p.toFixed(2)}` : '';
  const why = item.strategies.slice(0, 3).map((s) => `${s.strategy} #${s.rank}`).join(' · ');
  c.innerHTML = `${move}<div class="title">${item.title}</div>
    <div class="meta">${item.year ?? ''} · ${item.genres.slice(0, 3).join(', ')}</div>
    <div class="expl">${item.explanation}</div>
    <div class="score" data-personal="${p}" data-strategies="${item.strategies.map((s) => s.strategy).join(' ')}">${why || 'filler'}${taste}</div>`;
  return c;
}

function render() {
  for (const [i, el] of [$('row1'), $('row2')].entries()) {
    el.replaceChildren(...rows[i].map((it, col) => card(it, col, i + 1, col)));
  }
  const w = history.watched.map((id) => titles.get(id)).slice(-4);
  const s = history.skipped.map((id) => titles.get(id)).slice(-4);
  $('history').innerHTML = `Watched: <b id="watched-list">${w.join(' · ') || '—'}</b><br>Not for me: <b id="skipped-list">${s.join(' · ') || '—'}</b>`;
  const st = engine.stats();
  $('stats').innerHTML = `On-device adapter: <span id="adaptations">${st.adaptations}</span> updates from ${st.interactionCount} interactions · ‖ΔW‖ ${st.updateNorm.toFixed(3)} · wasm ${backend()}`;
  paintFocus();
}

/** The viewing context the engine ranks for: this TV, the local hour and weekday. */
function context(now = new Date()) {
  return { device: 'tv', hourOfDay: now.getHours(), dayOfWeek: (now.getDay() + 6) % 7 };
}

function runQuery({ keepRanks = false } = {}) {
  const text = $('query').value.trim() || DEFAULT_QUERY;
  const { embedding, matched } = queryEmbedding(text);
  if (!keepRanks) prevRanks = new Map();
  else prevRanks = new Map(rows[0].map((it, i) => [it.id, i]));
  try {
    const res = engine.recommend({ query: text, embedding, context: context(), k: 10, exclude: excluded() });
    rows[0] = res.items;
    renderRoute(res.route, matched);
  } catch (e) {
    const res = engine.recommend({ embedding, context: context(), k: 10, exclude: excluded() });
    rows[0] = res.items;
    renderRoute(null, matched, e.message);
  }
  lastEmbedding = embedding;
  $('row1-title').textContent = `Top picks for “${text}”`;
  // No query: the viewer's profile, the neighbours of what they watched, their context habits.
  const taste = engine.recommend({ context: context(), k: 10, exclude: excluded() });
  rows[1] = taste.items;
  history.query = text;
  render();
}

async function act(item, type) {
  engine.recordInteraction({ contentId: item.id, type, embedding: lastEmbedding, context: context() });
  (type === 'skip' ? history.skipped : history.watched).push(item.id);
  await idbPut({ engine: engine.saveState(), history });
  runQuery({ keepRanks: true });
  window.__sona.actions += 1;
}

// ---------- focus / D-pad ----------
function paintFocus() {
  document.querySelectorAll('.focused').forEach((e) => e.classList.remove('focused'));
  if (menu) {
    document.querySelectorAll('.menu-btn')[menu.index].classList.add('focused');
    return;
  }
  if (focus.row === 0) {
    $('query').classList.add('focused');
    $('query').focus();
    return;
  }
  $('query').blur();
  const row = rows[focus.row - 1];
  if (!row.length) return;
  focus.col = Math.min(focus.col, row.length - 1);
  const el = document.querySelector(`.card[data-row="${focus.row}"][data-col="${focus.col}"]`);
  el?.classList.add('focused');
  el?.parentElement.scrollTo({ left: Math.max(0, el.offsetLeft - 200), behavior: 'instant' });
}

function openMenu(item) {
  menu = { item, index: 0 };
  $('menu-title').textContent = item.title;
  $('menu-expl').textContent = item.explanation;
  $('menu').classList.remove('hidden');
  paintFocus();
}
function closeMenu() {
  menu = null;
  $('menu').classList.add('hidden');
  paintFocus();
}

document.addEventListener('keydown', async (ev) => {
  const k = ev.key;
  if (menu) {
    ev.preventDefault();
    if (k === 'ArrowDown') menu.index = Math.min(2, menu.index + 1);
    else if (k === 'ArrowUp') menu.index = Math.max(0, menu.index - 1);
    else if (k === 'Backspace' || k === 'Escape') return closeMenu();
    else if (k === 'Enter') {
      const action = document.querySelectorAll('.menu-btn')[menu.index].dataset.action;
      const item = menu.item;
      closeMenu();
      if (action !== 'back') await act(item, action);
      return;
    }
    return paintFocus();
  }
  if (focus.row === 0) {
    if (k === 'Enter') {
      ev.preventDefault();
      runQuery();
      await idbPut({ history });
    } else if (k === 'ArrowDown') {
      ev.preventDefault();
      focus = { row: 1, col: 0 };
      paintFocus();
    }
    return; // typing (and Backspace) edit the query
  }
  ev.preventDefault();
  if (k === 'ArrowRight') focus.col += 1;
  else if (k === 'ArrowLeft') focus.col = Math.max(0, focus.col - 1);
  else if (k === 'ArrowDown') focus.row = Math.min(2, focus.row + 1);
  else if (k === 'ArrowUp') focus.row -= 1;
  else if (k === 'Backspace' || k === 'Escape') focus = { row: 0, col: 0 };
  else if (k === 'Enter') {
    const item = rows[focus.row - 1][focus.col];
    if (item) openMenu(item);
    return;
  }
  paintFocus();
});

// ---------- start ----------
async function main() {
  window.__sona = { ready: false, actions: 0 };
  await init();
  const [routerBuf, catalog] = await Promise.all([
    fetch('/models/router.bin').then((r) => r.arrayBuffer()),
    fetch('/data/catalog.json').then((r) => {
      if (!r.ok) throw new Error('no catalog: run node web/prepare-data.mjs <ml-100k dir>');
      return r.json();
    }),
  ]);
  const router = new Uint8Array(routerBuf);
  const saved = await idbGet('engine');
  history = (await idbGet('history')) ?? history;
  try {
    engine = Engine.load({ router, userId: USER, personalize: PERSONALIZE, state: saved });
  } catch (e) {
    console.warn('stored state rejected, starting fresh:', e.message);
    engine = Engine.load({ router, userId: USER, personalize: PERSONALIZE });
    history = { watched: [], skipped: [], query: '' };
  }
  for (const it of catalog.items) titles.set(it.id, it.title);
  engine.loadCatalog({
    items: catalog.items.map(({ id, title, year, genres }) => ({ id, title, year, genres })),
    embeddings: Float32Array.from(catalog.embeddings),
    related: catalog.related,
  });
  $('query').value = history.query || DEFAULT_QUERY;
  runQuery();
  window.__sona = { ready: true, actions: 0, restored: !!saved, backend: backend() };
}

main().catch((e) => {
  $('route').innerHTML = `<span class="fb">${e.message}</span>`;
  window.__sona = { ready: false, error: e.message };
});
