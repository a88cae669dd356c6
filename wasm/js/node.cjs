// Node (CommonJS) entry of sona-engine: loads the simd128 build when the runtime validates
// the SIMD probe, the plain build otherwise. Synchronous; `init()` exists for parity with the browser.
'use strict';
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b,
  0x03, 0x02, 0x01, 0x00, 0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x11, 0x0b,
]);
function simdSupported() {
  try {
    return WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}
const forced = process.env.SONA_WASM_SIMD; // "0" forces the plain build, "1" the simd one
const useSimd = forced === undefined ? simdSupported() : forced === '1';
const m = useSimd ? require('./node-simd/sona_wasm.js') : require('./node-plain/sona_wasm.js');
const name = useSimd ? 'simd128' : 'scalar';
module.exports = {
  Engine: m.Engine,
  init: async () => name,
  backend: () => name,
  simdSupported,
};
