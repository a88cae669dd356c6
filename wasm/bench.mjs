// Latency benchmark of the built package: p50/p99 per call in Node (plain and simd128 builds)
// and in headless Chromium (both builds). `node bench.mjs` after ./build.sh.
// Targets: route <= 25 us p50; adapt one 384-d embedding <= 10 us p50; recommend top 10 of a
// 10k-item catalog (d = 384) <= 5 ms p50.
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBench } from './bench/bench-core.mjs';
import { serveStatic, chromiumOptions } from './tests/shared/static-server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const router = new Uint8Array(readFileSync(join(here, '..', 'models', 'router.bin'))); // the shipped router
const TARGETS = { route: 25, adapt384: 10, recommendTop10of10k: 5000 };

function report(where, results) {
  for (const [name, s] of Object.entries(results)) {
    const t = TARGETS[name];
    const verdict = t === undefined ? '' : s.p50_us <= t ? `  (target p50 <= ${t} us: ok)` : `  (target p50 <= ${t} us: MISSED)`;
    console.log(`${where.padEnd(24)} ${name.padEnd(30)} p50 ${String(s.p50_us).padStart(9)} us   p99 ${String(s.p99_us).padStart(9)} us${verdict}`);
  }
}

for (const v of ['plain', 'simd']) {
  const { Engine } = require(join(here, 'pkg', `node-${v}`, 'sona_wasm.js'));
  report(`node ${process.version} ${v}`, runBench(Engine, router));
}

if (process.argv.includes('--no-browser')) process.exit(0);
const { chromium } = await import('playwright-core');
const server = await serveStatic(join(here, '..'));
const profile = mkdtempSync(join(tmpdir(), 'sona-bench-'));
const browser = await chromium.launchPersistentContext(profile, chromiumOptions());
try {
  for (const simd of ['0', '1']) {
    const page = await browser.newPage();
    await page.goto(`${server.url}/wasm/bench/bench.html?simd=${simd}`);
    await page.waitForFunction(() => window.__bench !== undefined, null, { timeout: 300000 });
    const r = await page.evaluate(() => window.__bench);
    if (r.fatal) throw new Error(r.fatal);
    report(`chromium ${browser.browser()?.version() ?? ''} ${r.backend}`, r.results);
    await page.close();
  }
} finally {
  await browser.close();
  await server.close();
  rmSync(profile, { recursive: true, force: true });
}
