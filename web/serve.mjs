// Serves the TV demo on 127.0.0.1: `node web/serve.mjs` (PORT, default 8080) or `npm --prefix web start`.
// /pkg -> wasm/pkg (run wasm/build.sh), /src -> web/src, /models/router.bin -> models/router.bin
// (the shipped router) or, until it exists, the wasm test fixture router; the rest -> web/public.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { extname, join, normalize, sep, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.wasm': 'application/wasm', '.bin': 'application/octet-stream', '.png': 'image/png' };

export function routerPath() {
  const shipped = join(root, 'models', 'router.bin');
  return existsSync(shipped) ? shipped : join(root, 'wasm', 'tests', 'fixtures', 'router.bin');
}

function resolvePath(path) {
  const mounts = [['/pkg/', join(root, 'wasm', 'pkg')], ['/src/', join(here, 'src')], ['/', join(here, 'public')]];
  if (path === '/models/router.bin') return routerPath();
  for (const [prefix, dir] of mounts) {
    if (path.startsWith(prefix)) {
      const rest = path.slice(prefix.length) || 'index.html';
      const file = normalize(join(dir, rest));
      return file.startsWith(normalize(dir) + sep) ? file : null;
    }
  }
  return null;
}

/** Starts the server; resolves to {url, close()}. */
export function start(port = 0) {
  const server = createServer(async (req, res) => {
    const file = resolvePath(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    try {
      if (!file) throw new Error('forbidden');
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) })));
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (!existsSync(join(root, 'wasm', 'pkg', 'index.js'))) console.warn('warning: wasm/pkg is missing: run wasm/build.sh');
  if (!existsSync(join(here, 'public', 'data', 'catalog.json'))) console.warn('warning: no catalog: run node web/prepare-data.mjs <ml-100k dir>');
  const { url } = await start(Number(process.env.PORT ?? 8080));
  console.log(`SONA TV demo on ${url}/ (router: ${routerPath()})`);
}
