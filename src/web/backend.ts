/**
 * Backend selection in a web page or web worker (the browser entry's `initBackend`): WebGPU where the browser offers
 * an adapter, otherwise tfjs's wasm backend with dkfac's training-kernel fixes (src/backend/wasm-fixes.ts: wasm alone
 * cannot train a convnet). The wasm binaries are fetched from `wasmPaths` (tfjs's setWasmPaths) when given.
 * No Node modules (src/backend/index.ts is the Node counterpart).
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { registerAvgPoolGradFix } from '../backend/avgpool-grad';
import { registerWasmTrainingFixes } from '../backend/wasm-fixes';

export type WebBackendName = 'auto' | 'webgpu' | 'wasm' | 'webgl' | 'cpu';

export interface WebBackendInfo {
  /** the tfjs backend that runs ('webgpu', 'wasm', ...) */
  name: string;
  requested: WebBackendName;
  version: string;
  /** e.g. 'wasm simd, 11 training-kernel fixes; webgpu: no adapter' */
  detail: string;
}

export interface WebBackendOptions {
  /** folder URL (ending in '/') that serves tfjs-backend-wasm's .wasm files; default: tfjs's own lookup */
  wasmPaths?: string;
}

interface Gpu {
  requestAdapter(): Promise<{ info?: Record<string, string> } | null>;
}

async function webGpuAdapter(): Promise<string> {
  const gpu = (globalThis as { navigator?: { gpu?: Gpu } }).navigator?.gpu;
  if (!gpu) throw new Error('this browser has no WebGPU');
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const i = adapter.info ?? {};
  return [i.vendor, i.architecture, i.description].filter(Boolean).join(' ') || 'adapter';
}

async function select(name: string): Promise<void> {
  if (!(await tf.setBackend(name)) || tf.getBackend() !== name) throw new Error(`tfjs could not initialise '${name}'`);
  await tf.ready();
}

/**
 * Selects the backend K-FAC trains on in the browser: 'auto' (default) is WebGPU where an adapter is offered, else
 * wasm; 'webgpu', 'wasm', 'webgl', 'cpu' explicitly.
 */
export async function initBackend(req: WebBackendName = 'auto', opts: WebBackendOptions = {}): Promise<WebBackendInfo> {
  registerAvgPoolGradFix();
  const notes: string[] = [];
  if (req === 'webgpu' || req === 'auto') {
    try {
      const adapter = await webGpuAdapter();
      await import('@tensorflow/tfjs-backend-webgpu');
      await select('webgpu');
      return { name: 'webgpu', requested: req, version: `tfjs-core ${tf.version_core}`, detail: `WebGPU: ${adapter}` };
    } catch (e) {
      if (req === 'webgpu') throw new Error(`backend webgpu requested but ${(e as Error).message}`);
      notes.push(`webgpu: ${(e as Error).message}`);
    }
  }
  if (req === 'webgl' || req === 'cpu') {
    await select(req);
    return { name: req, requested: req, version: `tfjs-core ${tf.version_core}`, detail: req };
  }
  if (opts.wasmPaths) setWasmPaths(opts.wasmPaths);
  const fixes = registerWasmTrainingFixes();
  await select('wasm');
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  return {
    name: 'wasm',
    requested: req,
    version: `@tensorflow/tfjs-backend-wasm ${wasm.version_wasm}, tfjs-core ${tf.version_core}`,
    detail: [`wasm ${simd ? 'simd' : 'no simd'}${threads ? ', threads' : ''}, ${fixes}`, ...notes].join('; '),
  };
}
