// Replays the native golden cases (tests/goldens.json) on a wasm Engine and returns the
// mismatches. Shared by the Node test and the headless-Chromium test.

export const TOL = 1e-5;

/** Mismatches between a and b: numbers within TOL, everything else exactly. */
export function diff(a, b, path = '$', out = []) {
  if (typeof a === 'number' && typeof b === 'number') {
    if (!(Math.abs(a - b) <= TOL)) out.push(`${path}: ${a} vs ${b}`);
  } else if (Array.isArray(a) || ArrayBuffer.isView(a)) {
    const x = Array.from(a);
    if (!Array.isArray(b) || x.length !== b.length) {
      out.push(`${path}: length ${x.length} vs ${Array.isArray(b) ? b.length : typeof b}`);
    } else x.forEach((v, i) => diff(v, b[i], `${path}[${i}]`, out));
  } else if (a && typeof a === 'object') {
    if (!b || typeof b !== 'object') out.push(`${path}: object vs ${JSON.stringify(b)}`);
    else {
      const ka = Object.keys(a).sort();
      const kb = Object.keys(b).sort();
      if (ka.join() !== kb.join()) out.push(`${path}: keys ${ka} vs ${kb}`);
      for (const k of ka) if (k in b) diff(a[k], b[k], `${path}.${k}`, out);
    }
  } else if (a !== b) out.push(`${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  return out;
}

/** The recommend request of a golden step (embedding and context are optional). */
function request(s) {
  const r = { query: s.query, k: s.k, exclude: s.exclude, now: s.now };
  if (s.embedding) r.embedding = new Float32Array(s.embedding);
  if (s.context) r.context = s.context;
  return r;
}

/** Runs every golden case; returns {checked, failures}. `models`: {attention, shippedRouter} bytes. */
export function replay(Engine, goldens, routerBytes, models) {
  const failures = [];
  let checked = 0;
  const shipped = Engine.load({ router: models.shippedRouter });
  for (const r of goldens.shippedRoutes) {
    diff(shipped.route(r.text), r.output, `shipped route(${JSON.stringify(r.text)})`, failures);
    checked++;
  }
  shipped.free();
  const engine = Engine.load({ router: routerBytes, attention: models.attention, userId: goldens.userId, personalize: goldens.personalize });
  for (const a of goldens.attention) {
    diff(engine.selectAttention(a.text), a.output, `selectAttention(${JSON.stringify(a.text)})`, failures);
    checked++;
  }
  try {
    engine.loadCatalog({ items: goldens.catalog.items, embeddings: new Float32Array(goldens.catalog.embeddings) });
    for (const r of goldens.routes) {
      diff(engine.route(r.text), r.output, `route(${JSON.stringify(r.text)})`, failures);
      checked++;
    }
    for (const s of goldens.selectModel) {
      let got;
      try {
        got = { output: engine.selectModel(s.route, s.complexity, s.budget) };
      } catch (e) {
        got = { error: e.message };
      }
      const want = 'output' in s ? { output: s.output } : { error: s.error };
      diff(got, want, `selectModel(${s.route}, ${s.complexity}, ${s.budget})`, failures);
      checked++;
    }
    goldens.steps.forEach((s, i) => {
      const at = `steps[${i}] ${s.op}`;
      if (s.op === 'adapt') {
        const q = new Float32Array(s.input);
        diff(engine.adaptEmbeddings(q), s.output, `${at} embedding`, failures);
        diff(engine.adaptationMagnitude(q), s.magnitude, `${at} magnitude`, failures);
      } else if (s.op === 'recommend') {
        const out = engine.recommend(request(s));
        diff(out, s.output, at, failures);
      } else if (s.op === 'record') {
        const x = { contentId: s.contentId, type: s.type, context: s.context, now: s.now };
        if (s.rating !== null) x.rating = s.rating;
        diff(engine.recordInteraction(x), s.output, at, failures);
      } else if (s.op === 'stats') {
        diff(engine.stats(), s.output, at, failures);
      } else if (s.op === 'exportUpdate') {
        const bytes = engine.exportUpdate();
        diff(bytes.length, s.length, `${at} length`, failures);
        diff(Engine.decodeUpdate(bytes), s.decoded, `${at} decoded`, failures);
      } else if (s.op === 'applyGlobal') {
        diff(engine.applyGlobal(new Uint8Array(s.bytes)), s.version, at, failures);
        // Applying the same version again is stale and must be rejected.
        let stale = null;
        try {
          engine.applyGlobal(new Uint8Array(s.bytes));
        } catch (e) {
          stale = e;
        }
        if (!(stale instanceof Error) || !/not newer/.test(stale.message)) failures.push(`${at}: re-applying the same version was not rejected`);
      } else failures.push(`${at}: unknown op`);
      checked++;
    });
    // State round trip: a fresh engine restored from saveState ranks exactly like this one.
    const state = engine.saveState();
    const restored = Engine.load({ router: routerBytes, userId: goldens.userId, personalize: goldens.personalize, state });
    try {
      restored.loadCatalog({ items: goldens.catalog.items, embeddings: new Float32Array(goldens.catalog.embeddings) });
      // Every recommend after the interactions (the history is part of the state).
      for (const s of goldens.steps.slice(goldens.steps.findIndex((x) => x.op === 'applyGlobal'))) {
        if (s.op === 'recommend') diff(restored.recommend(request(s)), s.output, 'restored recommend', failures);
      }
      // fisherMass is excluded: the default Fisher storage is separable (row/column marginals), lossy by design.
      const { fisherMass: _a, ...restoredStats } = restored.stats();
      const { fisherMass: _b, ...liveStats } = engine.stats();
      diff(restoredStats, liveStats, 'restored stats', failures);
      checked++;
    } finally {
      restored.free();
    }
  } finally {
    engine.free();
  }
  return { checked, failures };
}
