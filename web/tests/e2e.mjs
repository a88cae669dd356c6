// End-to-end test of the TV demo in headless Chromium: load, type a query, check the route
// shown, act on results with the D-pad, check the ranking moved, reload, check persistence,
// save web/tests/screenshot.png. Needs wasm/pkg (wasm/build.sh) and web/public/data/catalog.json.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { start } from '../serve.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const server = await start(0);
const profile = mkdtempSync(join(tmpdir(), 'sona-tv-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1920, height: 1080 },
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});
const page = await context.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
const ready = () => page.waitForFunction(() => window.__sona && (window.__sona.ready || window.__sona.error), null, { timeout: 60000 });
const ids = (row) => page.$$eval(`#${row} .card`, (cs) => cs.map((c) => c.dataset.id));
const press = async (...keys) => {
  for (const k of keys) await page.keyboard.press(k);
};

try {
  await page.goto(`${server.url}/`);
  await ready();
  assert.equal(await page.evaluate(() => window.__sona.error ?? null), null);
  assert.equal(await page.evaluate(() => window.__sona.restored), false, 'fresh profile must start without state');

  // Type a query with the remote's keyboard and run it.
  await page.fill('#query', '');
  await page.focus('#query');
  await page.keyboard.type('something light and funny tonight');
  await press('Enter');
  await page.waitForFunction(() => document.querySelector('#row1-title').textContent.includes('light and funny'));
  const route = await page.$eval('#route b', (b) => b.dataset.route);
  const expected = await page.evaluate(async () => {
    // The route shown must be the engine's decision for the typed text.
    const m = await import('/pkg/index.js');
    const r = new Uint8Array(await (await fetch('/models/router.bin')).arrayBuffer());
    const e = m.Engine.load({ router: r });
    const out = e.route('something light and funny tonight').route;
    e.free();
    return out;
  });
  assert.equal(route, expected);
  const before = await ids('row1');
  assert.equal(before.length, 10);
  const tasteBefore = await ids('row2');

  // D-pad: down to the first card, Enter, "Not for me"; then the next card, "Watched" (x2).
  await press('ArrowDown', 'Enter', 'ArrowDown', 'Enter'); // skip before[0]
  await page.waitForFunction(() => window.__sona.actions === 1);
  await press('ArrowRight', 'ArrowRight', 'Enter', 'Enter'); // watched: third card now
  await page.waitForFunction(() => window.__sona.actions === 2);
  await press('ArrowRight', 'Enter', 'Enter'); // watched: fourth card
  await page.waitForFunction(() => window.__sona.actions === 3);
  // Back closes the menu without acting; Escape on a card goes back to the query box.
  await press('Enter', 'Backspace');
  assert.equal(await page.evaluate(() => window.__sona.actions), 3);
  assert.equal(await page.$eval('#menu', (m) => m.classList.contains('hidden')), true);

  const after = await ids('row1');
  const tasteAfter = await ids('row2');
  const acted = await page.evaluate(() => [...document.querySelectorAll('#history b')].map((b) => b.textContent));
  const adaptations = Number(await page.$eval('#adaptations', (e) => e.textContent));
  assert.ok(adaptations >= 2, `adapter must have learned (adaptations = ${adaptations})`);
  // The learned tier now contributes to scores, and the ranking of titles not acted on moved.
  const personal = await page.$$eval('#row1 .score', (s) => s.map((x) => Number(x.dataset.personal)));
  assert.ok(personal.some((p) => Math.abs(p) > 1e-3), 'personal scores are still zero');
  const keep = (l, drop) => l.filter((id) => !drop.includes(id));
  const actedIds = await page.evaluate(async () => {
    const h = await new Promise((res) => {
      const r = indexedDB.open('sona-tv', 1);
      r.onsuccess = () => { const g = r.result.transaction('kv').objectStore('kv').get('history'); g.onsuccess = () => res(g.result); };
    });
    return [...h.watched, ...h.skipped];
  });
  assert.equal(actedIds.length, 3);
  assert.notDeepEqual(keep(after, actedIds), keep(before, actedIds).slice(0, keep(after, actedIds).length), 'query ranking did not change beyond removing acted-on titles');
  assert.notDeepEqual(keep(tasteAfter, actedIds), keep(tasteBefore, actedIds).slice(0, keep(tasteAfter, actedIds).length), 'taste row did not change');
  // The fused ranking explains itself: the taste row now holds neighbours (co-watch) of the
  // watched titles, each naming the title it comes from.
  const tasteWhy = await page.$$eval('#row2 .expl', (e) => e.map((x) => x.textContent));
  const watchedTitles = (await page.$eval('#watched-list', (b) => b.textContent)).split(' · ');
  assert.ok(tasteWhy.some((t) => watchedTitles.some((w) => t === `Because you watched ${w}`)), `no "Because you watched" in the taste row: ${tasteWhy}`);
  const strategies = await page.$$eval('#row1 .score', (s) => s.map((x) => x.dataset.strategies));
  assert.ok(strategies.some((s) => s.includes('graph')), `no graph strategy in the query row: ${strategies}`);
  await press('Escape');

  // Reload: the adapter state and history come back from IndexedDB.
  await page.reload();
  await ready();
  assert.equal(await page.evaluate(() => window.__sona.restored), true);
  assert.equal(Number(await page.$eval('#adaptations', (e) => e.textContent)), adaptations);
  assert.deepEqual(await ids('row1'), after, 'ranking after reload differs');
  assert.deepEqual(await page.evaluate(() => [...document.querySelectorAll('#history b')].map((b) => b.textContent)), acted);

  await press('ArrowDown', 'ArrowRight');
  await page.screenshot({ path: join(here, 'screenshot.png') });
  assert.deepEqual(errors, []);
  console.log(`e2e passed: route ${route}; ranking moved after 3 actions (${adaptations} adaptations); state restored after reload`);
} finally {
  await context.close();
  await server.close();
  rmSync(profile, { recursive: true, force: true });
}
