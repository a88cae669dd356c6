// The golden parity and error checks in headless Chromium (plain and simd128 builds).
// `node tests/browser.mjs` (after ./build.sh); exits non-zero on any failure.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveStatic, chromiumOptions } from './shared/static-server.mjs';

// Served from the repository root so the tests can fetch the shipped models/ too.
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const server = await serveStatic(root);
const profile = mkdtempSync(join(tmpdir(), 'sona-chromium-'));
const browser = await chromium.launchPersistentContext(profile, chromiumOptions());
let failed = false;
try {
  for (const simd of ['0', '1']) {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error('pageerror:', e.message));
    await page.goto(`${server.url}/wasm/tests/browser.html?simd=${simd}`);
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 60000 });
    const r = await page.evaluate(() => window.__result);
    if (r.fatal) {
      console.error(`simd=${simd}: fatal: ${r.fatal}`);
      failed = true;
      continue;
    }
    const bad = [...r.parity.failures, ...r.errors.problems];
    console.log(`chromium ${r.backend}: parity ${r.parity.checked} cases, ${r.parity.failures.length} mismatches; errors ${r.errors.checked} cases, ${r.errors.problems.length} problems`);
    for (const b of bad.slice(0, 20)) console.error('  ' + b);
    if (bad.length || r.backend !== (simd === '1' ? 'simd128' : 'scalar')) failed = true;
    await page.close();
  }
} finally {
  await browser.close();
  await server.close();
  rmSync(profile, { recursive: true, force: true });
}
if (failed) {
  console.error('browser tests FAILED');
  process.exit(1);
}
console.log('browser tests passed');
