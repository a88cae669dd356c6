// Node tests of the built package (wasm/pkg): golden parity with the native build for both
// variants, every error case, the pack contents, the TypeScript consumer, the SIMD probe.
// Run `./build.sh` first; `node --test tests/` runs this file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { replay } from './shared/replay.mjs';
import { checkErrors } from './shared/errors.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..', 'pkg');
const require = createRequire(import.meta.url);
const goldens = JSON.parse(readFileSync(join(here, 'goldens.json'), 'utf8'));
const router = new Uint8Array(readFileSync(join(here, goldens.router)));
const models = {
  attention: new Uint8Array(readFileSync(join(here, goldens.attentionSelector))),
  shippedRouter: new Uint8Array(readFileSync(join(here, goldens.shippedRouter))),
};

const variants = {
  plain: () => require(join(pkg, 'node-plain/sona_wasm.js')).Engine,
  simd: () => require(join(pkg, 'node-simd/sona_wasm.js')).Engine,
};

for (const [name, load] of Object.entries(variants)) {
  test(`${name} build reproduces the native goldens within 1e-5`, () => {
    const { checked, failures } = replay(load(), goldens, router, models);
    assert.deepEqual(failures, []);
    assert.ok(checked >= goldens.routes.length + goldens.steps.length);
  });
  test(`${name} build throws a clear Error for every bad input and changes nothing`, () => {
    const { checked, problems } = checkErrors(load(), goldens, router, models);
    assert.deepEqual(problems, []);
    assert.ok(checked > 50);
  });
}

for (const [name, load] of Object.entries(variants)) {
  test(`${name} build: text NFKC changes (full width, ligatures, combining marks) routes like its normal form`, () => {
    const Engine = load();
    const e = Engine.load({ router, attention: models.attention, userId: goldens.userId, personalize: goldens.personalize });
    try {
      e.loadCatalog({ items: goldens.catalog.items, embeddings: new Float32Array(goldens.catalog.embeddings) });
      const embedding = new Float32Array(goldens.steps.find((s) => s.op === 'recommend').embedding);
      for (const [odd, normal] of [
        ['ＭＯＶＩＥＳ ｌｉｋｅ ｈｅａｔ', 'movies like heat'],
        ['ﬁnd sci-ﬁ movies from １９７７', 'find sci-fi movies from 1977'],
        ['he\u0301llo wo\u0308rld', 'h\u00e9llo w\u00f6rld'],
      ]) {
        assert.notEqual(odd, normal);
        assert.equal(odd.normalize('NFKC').toLowerCase(), normal);
        assert.deepEqual(e.route(odd), e.route(normal));
        assert.deepEqual(e.selectAttention(odd), e.selectAttention(normal));
        assert.deepEqual(e.recommend({ query: odd, embedding, k: 3 }), e.recommend({ query: normal, embedding, k: 3 }));
      }
    } finally {
      e.free();
    }
  });
}

test('package entry (ESM) picks a backend and works', async () => {
  const m = await import(join(pkg, 'node.mjs'));
  assert.equal(await m.init(), 'simd128'); // Node 20 validates SIMD
  assert.equal(m.backend(), 'simd128');
  const e = m.Engine.load({ router: models.shippedRouter });
  assert.equal(e.route('where can i watch fargo').route, 'availability_check');
  assert.equal(e.route('movies like heat').route, 'gnn_similarity');
  const viaNew = new m.Engine(models.shippedRouter);
  assert.deepEqual(viaNew.route('movies like heat'), e.route('movies like heat'));
  viaNew.free();
  e.free();
});

test('SIMD probe is a real test: a corrupted probe does not validate', async () => {
  const { SIMD_PROBE, simdSupported } = await import(join(pkg, 'simd.js'));
  assert.equal(simdSupported(), true);
  assert.equal(WebAssembly.validate(SIMD_PROBE), true);
  const bad = SIMD_PROBE.slice();
  bad[bad.length - 2] = 0xff; // unknown SIMD opcode
  assert.equal(WebAssembly.validate(bad), false);
});

test('npm pack contains every file package.json references', () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json'], { cwd: pkg, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const files = new Set(JSON.parse(out)[0].files.map((f) => f.path));
  const meta = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'));
  const refs = [meta.main, meta.module, meta.browser, meta.types, ...meta.files];
  const walk = (v) => (typeof v === 'string' ? refs.push(v) : Object.values(v).forEach(walk));
  walk(meta.exports);
  for (const r of refs) {
    const p = r.replace(/^\.\//, '');
    assert.ok(files.has(p), `${p} is referenced by package.json but not in the pack`);
    assert.ok(existsSync(join(pkg, p)), `${p} does not exist`);
  }
  for (const f of files) assert.ok(!f.includes('..'), f);
  assert.ok(files.has('web-simd/sona_wasm_bg.wasm') && files.has('node-plain/sona_wasm_bg.wasm'));
});

test('TypeScript consumer compiles against index.d.ts', () => {
  const tsc = join(here, '..', 'node_modules', '.bin', 'tsc');
  execFileSync(tsc, ['-p', join(here, 'ts-consumer', 'tsconfig.json')], { stdio: 'pipe' });
});
