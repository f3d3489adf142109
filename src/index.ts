/**
 * dkfac: K-FAC (Ba, Grosse & Martens, ICLR 2017) for TensorFlow.js. The Node entry of the package.
 *
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { initBackend, fitKfac, kfac } from 'dkfac';
 * await initBackend();
 * await fitKfac(model, xs, ys, { optimizer: kfac(), epochs: 3, batchSize: 64 });   // model: any tf.LayersModel
 * await model.save('file://./my-model');
 * ```
 *
 * `@tensorflow/tfjs` is a peer dependency: dkfac trains with the same engine your `tf` is.
 */
import { type BackendInfo, type BackendName, initBackend as selectBackend } from './backend';
import { registerFileSystemIO } from './io/file-system';

export * from './api';
export { currentBackend, type BackendInfo, type BackendName } from './backend';
export { fileSystem, registerFileSystemIO } from './io/file-system';

/**
 * Selects and initialises the tfjs backend K-FAC trains on: `'auto'` (default) takes `@tensorflow/tfjs-node-gpu`,
 * then `@tensorflow/tfjs-node` where installed, else `@tensorflow/tfjs-backend-wasm` with dkfac's training-kernel
 * fixes (wasm alone cannot train a convnet); `'webgpu'`, `'wasm'`, `'cpu'` explicitly. The environment variable
 * DKFAC_BACKEND overrides 'auto'. Also registers `file://` save/load handlers for `model.save` and
 * `tf.loadLayersModel` when no other is registered (tfjs-node has its own).
 *
 * @returns which backend runs, its versions and details
 */
export async function initBackend(backend: BackendName = 'auto'): Promise<BackendInfo> {
  const info = await selectBackend(backend);
  registerFileSystemIO();
  return info;
}
