// Node ESM entry of sona-engine (wraps the CommonJS loader).
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const m = require('./node.cjs');
export const Engine = m.Engine;
export const init = m.init;
export const backend = m.backend;
export const simdSupported = m.simdSupported;
