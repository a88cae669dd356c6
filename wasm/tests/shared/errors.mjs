// Every bad input must throw an Error (instanceof Error, clear message) and leave the engine
// unchanged. Shared by the Node test and the headless-Chromium test.

/** [name, (ctx) => void, expected message pattern]. ctx: {Engine, router, goldens, engine, bare}. */
export const ERROR_CASES = [
  ['load without options', (c) => c.Engine.load(), /options object/],
  ['load with a string', (c) => c.Engine.load('router.bin'), /options object/],
  ['constructor with garbage', (c) => new c.Engine(new Uint8Array(8)), /router/],
  ['constructor without bytes', (c) => new c.Engine(), /router/],
  ['load without router', (c) => c.Engine.load({}), /router .*required/],
  ['load router not bytes', (c) => c.Engine.load({ router: [1, 2, 3] }), /Uint8Array/],
  ['load corrupt router', (c) => c.Engine.load({ router: new Uint8Array([1, 2, 3, 4]) }), /router/],
  ['load truncated router', (c) => c.Engine.load({ router: c.router.slice(0, c.router.length - 9) }), /router/],
  ['load flipped router byte', (c) => { const b = c.router.slice(); b[40] ^= 0xff; c.Engine.load({ router: b }); }, /checksum|router/i],
  ['load unknown option', (c) => c.Engine.load({ router: c.router, bogus: 1 }), /unknown option "bogus"/],
  ['load unknown personalize key', (c) => c.Engine.load({ router: c.router, personalize: { rnak: 4 } }), /unknown option "rnak"/],
  ['load bad rank', (c) => c.Engine.load({ router: c.router, personalize: { rank: 99 } }), /rank/],
  ['load bad enum string', (c) => c.Engine.load({ router: c.router, personalize: { dtype: 'f64' } }), /f64|variant/],
  ['load corrupt state', (c) => c.Engine.load({ router: c.router, state: new Uint8Array(40) }), /state/],
  ['route empty', (c) => c.engine.route('  ?! '), /empty query/],
  ['route not a string', (c) => c.engine.route(42), /string/],
  ['routeEmbedding on a text router', (c) => c.engine.routeEmbedding(new Float32Array(384)), /reads text/],
  ['routeEmbedding NaN', (c) => c.engine.routeEmbedding(new Float32Array([NaN])), /not finite/],
  ['selectModel unknown route', (c) => c.engine.selectModel('teleport', 0.5, 1), /unknown route/],
  ['selectModel NaN complexity', (c) => c.engine.selectModel('vector_search', NaN, 1), /complexity/],
  ['selectModel complexity > 1', (c) => c.engine.selectModel('vector_search', 1.5, 1), /complexity/],
  ['selectModel negative budget', (c) => c.engine.selectModel('vector_search', 0.5, -1), /budget/],
  ['selectModel nothing fits', (c) => c.engine.selectModel('gnn_similarity', 0.5, 0.01), /no model fits/],
  ['adapt wrong length', (c) => c.engine.adaptEmbeddings(new Float32Array(5)), /expected 32 values, got 5/],
  ['adapt NaN', (c) => { const q = new Float32Array(32); q[3] = NaN; c.engine.adaptEmbeddings(q); }, /index 3 is not finite/],
  ['adapt Infinity', (c) => { const q = new Float32Array(32); q[0] = Infinity; c.engine.adaptEmbeddings(q); }, /not finite/],
  ['adapt plain array', (c) => c.engine.adaptEmbeddings(new Array(32).fill(0)), /Float32Array/],
  ['recommend before loadCatalog', (c) => c.bare.recommend({ embedding: new Float32Array(32) }), /no catalog/],
  ['record before loadCatalog', (c) => c.bare.recordInteraction({ contentId: 'm1', type: 'skip', now: 1 }), /no catalog/],
  ['catalog wrong embedding length', (c) => c.bare.loadCatalog({ items: c.goldens.catalog.items, embeddings: new Float32Array(10) }), /expected 24 items/],
  ['catalog NaN embedding', (c) => { const e = new Float32Array(c.goldens.catalog.embeddings); e[7] = NaN; c.bare.loadCatalog({ items: c.goldens.catalog.items, embeddings: e }); }, /not finite/],
  ['catalog duplicate id', (c) => { const it = c.goldens.catalog.items.map((x) => ({ ...x, id: 'same' })); c.bare.loadCatalog({ items: it, embeddings: new Float32Array(c.goldens.catalog.embeddings) }); }, /duplicate/],
  ['catalog item without title', (c) => c.bare.loadCatalog({ items: [{ id: 'x' }], embeddings: new Float32Array(32) }), /title/],
  ['catalog items not an array', (c) => c.bare.loadCatalog({ items: 'x', embeddings: new Float32Array(32) }), /array/],
  ['catalog empty', (c) => c.bare.loadCatalog({ items: [], embeddings: new Float32Array(0) }), /no items/],
  ['recommend k = 0', (c) => c.engine.recommend({ embedding: new Float32Array(32), k: 0 }), /k must be/],
  ['recommend k = 1.5', (c) => c.engine.recommend({ embedding: new Float32Array(32), k: 1.5 }), /k must be/],
  ['recommend k NaN', (c) => c.engine.recommend({ embedding: new Float32Array(32), k: NaN }), /k must be/],
  ['recommend wrong embedding length', (c) => c.engine.recommend({ embedding: new Float32Array(31) }), /expected d = 32/],
  ['recommend NaN embedding', (c) => c.engine.recommend({ embedding: new Float32Array(32).fill(NaN) }), /not finite/],
  ['recommend embedding not floats', (c) => c.engine.recommend({ query: 'hi', embedding: [1, 2] }), /Float32Array/],
  ['recommend unknown device', (c) => c.engine.recommend({ context: { device: 'toaster' } }), /unknown device/],
  ['recommend hour out of range', (c) => c.engine.recommend({ context: { hourOfDay: 24 } }), /hourOfDay must be 0\.\.=23/],
  ['recommend day out of range', (c) => c.engine.recommend({ context: { dayOfWeek: 7 } }), /dayOfWeek must be 0\.\.=6/],
  ['recommend negative hour', (c) => c.engine.recommend({ context: { hourOfDay: -1 } }), /context/],
  ['recommend unknown context key', (c) => c.engine.recommend({ context: { moods: ['cozy'] } }), /unknown field `moods`/],
  ['recommend context not an object', (c) => c.engine.recommend({ context: 'evening' }), /context/],
  ['recommend NaN now', (c) => c.engine.recommend({ now: NaN }), /now/],
  ['catalog related unknown id', (c) => c.bare.loadCatalog({ items: c.goldens.catalog.items, embeddings: new Float32Array(c.goldens.catalog.embeddings), related: { m0: [['nope', 1]] } }), /unknown item "nope"/],
  ['catalog related bad weight', (c) => c.bare.loadCatalog({ items: c.goldens.catalog.items, embeddings: new Float32Array(c.goldens.catalog.embeddings), related: { m0: [['m1', -1]] } }), /weight > 0/],
  ['catalog related not pairs', (c) => c.bare.loadCatalog({ items: c.goldens.catalog.items, embeddings: new Float32Array(c.goldens.catalog.embeddings), related: { m0: ['m1'] } }), /related/],
  ['recommend empty query', (c) => c.engine.recommend({ query: '', embedding: new Float32Array(32) }), /empty query/],
  ['recommend unknown exclude id', (c) => c.engine.recommend({ embedding: new Float32Array(32), exclude: ['nope'] }), /unknown item "nope"/],
  ['recommend unknown option', (c) => c.engine.recommend({ embedding: new Float32Array(32), top: 3 }), /unknown option "top"/],
  ['record unknown content', (c) => c.engine.recordInteraction({ contentId: 'nope', type: 'skip', now: 1 }), /unknown contentId/],
  ['record unknown type', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'like', now: 1 }), /unknown interaction type/],
  ['record rating without stars', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'rating', now: 1 }), /needs a star/],
  ['record rating out of range', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'rating', rating: 7, now: 1 }), /out of range/],
  ['record rating NaN', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'rating', rating: NaN, now: 1 }), /not finite/],
  ['record stars on a skip', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'skip', rating: 3, now: 1 }), /takes no star/],
  ['record unknown device', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'skip', now: 1, context: { device: 'toaster' } }), /unknown device/],
  ['record hour out of range', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'skip', now: 1, context: { hourOfDay: 30 } }), /hour_of_day/],
  ['record unknown context key', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'skip', now: 1, context: { mood: 'x' } }), /unknown field/],
  ['record NaN time', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'skip', now: NaN }), /now/],
  ['record wrong embedding length', (c) => c.engine.recordInteraction({ contentId: 'm1', type: 'skip', now: 1, embedding: new Float32Array(3) }), /expected 32/],
  ['record without type', (c) => c.engine.recordInteraction({ contentId: 'm1' }), /type is required/],
  ['applyGlobal garbage', (c) => c.engine.applyGlobal(new Uint8Array([9, 9, 9])), /global adapter/],
  ['applyGlobal wrong artifact', (c) => c.engine.applyGlobal(c.engine.exportUpdate()), /magic|global adapter/],
  ['applyGlobal not bytes', (c) => c.engine.applyGlobal('x'), /Uint8Array/],
  ['loadState garbage', (c) => c.engine.loadState(new Uint8Array(100)), /state/],
  ['loadState truncated', (c) => { const s = c.engine.saveState(); c.engine.loadState(s.slice(0, s.length - 1)); }, /state/],
  ['loadState other user', (c) => { const other = c.Engine.load({ router: c.router, userId: 'someone-else', personalize: c.goldens.personalize }); try { c.engine.loadState(other.saveState()); } finally { other.free(); } }, /belongs to user/],
  ['selectAttention without a selector', (c) => c.engine.selectAttention('movies like heat'), /no attention selector/],
  ['selectAttention empty', (c) => c.withSelector.selectAttention('  ?! '), /empty query/],
  ['selectAttention not a string', (c) => c.withSelector.selectAttention(null), /string/],
  ['load router file as selector', (c) => c.Engine.load({ router: c.router, attention: c.router }), /selector|mechanisms|f32/],
  ['load corrupt selector', (c) => c.Engine.load({ router: c.router, attention: new Uint8Array(64) }), /attention selector/],
  ['decodeUpdate garbage', (c) => c.Engine.decodeUpdate(new Uint8Array(20)), /adapter update/],
  ['use after free', (c) => { const e = c.Engine.load({ router: c.router }); e.free(); e.route('hello'); }, /./],
];

/** Runs every case; returns a list of problems (empty when all threw a proper Error). */
export function checkErrors(Engine, goldens, router, models) {
  const problems = [];
  const withSelector = Engine.load({ router, attention: models.attention });
  const engine = Engine.load({ router, userId: goldens.userId, personalize: goldens.personalize });
  const bare = Engine.load({ router, userId: goldens.userId, personalize: goldens.personalize });
  engine.loadCatalog({ items: goldens.catalog.items, embeddings: new Float32Array(goldens.catalog.embeddings) });
  const ctx = { Engine, router, goldens, engine, bare, withSelector };
  const probe = new Float32Array(goldens.steps[0].input);
  engine.recordInteraction({ contentId: 'm3', type: 'watch_complete', now: 5, context: { hourOfDay: 20 } });
  // The ranking (it reads the viewer's history) is part of the state that must not change.
  const before = () => JSON.stringify([engine.stats(), Array.from(engine.adaptEmbeddings(probe)), bare.catalogSize, engine.recommend({ k: 5, now: 1, context: { hourOfDay: 21 } })]);
  for (const [name, fn, pattern] of ERROR_CASES) {
    const snapshot = before();
    let thrown = null;
    try {
      fn(ctx);
    } catch (e) {
      thrown = e;
    }
    if (thrown === null) problems.push(`${name}: did not throw`);
    else if (!(thrown instanceof Error)) problems.push(`${name}: threw a non-Error ${String(thrown)}`);
    else if (!thrown.message || !pattern.test(thrown.message)) problems.push(`${name}: message ${JSON.stringify(thrown.message)} does not match ${pattern}`);
    if (before() !== snapshot) problems.push(`${name}: the engine changed although the call was rejected`);
  }
  engine.free();
  bare.free();
  withSelector.free();
  return { checked: ERROR_CASES.length, problems };
}
