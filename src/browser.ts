/**
 * dkfac's browser entry (package.json `exports` condition "browser"): the same API as the Node entry, with an
 * `initBackend` for web pages and workers (WebGPU where offered, else wasm). Nothing here imports a Node module.
 *
 * ```ts
 * import { initBackend, fitKfac, kfac } from 'dkfac';
 * await initBackend('auto', { wasmPaths: '/wasm/' });
 * await fitKfac(model, xs, ys, { optimizer: kfac(), epochs: 3 });
 * ```
 */
export * from './api';
export { initBackend, type WebBackendInfo, type WebBackendName, type WebBackendOptions } from './web/backend';
