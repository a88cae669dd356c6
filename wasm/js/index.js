// Browser / bundler entry of sona-engine. `await init()` picks the simd128 build when the
// runtime validates a SIMD probe module and the plain build otherwise, then exposes `Engine`.
import { simdSupported } from './simd.js';

let mod = null;
let chosen = null;

/**
 * Load the engine's WebAssembly. Options: `{ simd?: boolean }` to force a variant,
 * `{ wasmUrl?: string | URL }` to fetch the .wasm from elsewhere. Resolves to the backend name.
 */
export async function init(options = {}) {
  if (mod) return chosen;
  const useSimd = options.simd ?? simdSupported();
  const m = useSimd
    ? await import('./web-simd/sona_wasm.js')
    : await import('./web-plain/sona_wasm.js');
  const url = options.wasmUrl ?? new URL(useSimd ? './web-simd/sona_wasm_bg.wasm' : './web-plain/sona_wasm_bg.wasm', import.meta.url);
  await m.default({ module_or_path: url });
  mod = m;
  chosen = useSimd ? 'simd128' : 'scalar';
  return chosen;
}

/** 'simd128' or 'scalar' once loaded, else null. */
export function backend() {
  return chosen;
}

function loaded() {
  if (!mod) throw new Error('sona-engine is not initialised: await init() first');
  return mod;
}

/** The engine class (see index.d.ts); usable once init() has resolved. `new Engine(bytes)` and
 * `Engine.load(options)` return instances of the wasm-bindgen class. */
export class Engine {
  constructor(router) {
    return new (loaded().Engine)(router);
  }
  static load(options) {
    return loaded().Engine.load(options);
  }
  static decodeUpdate(bytes) {
    return loaded().Engine.decodeUpdate(bytes);
  }
}

export { simdSupported };
