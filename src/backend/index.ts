/**
 * Backend selection for dkfac.
 *
 * Everybody imports `* as tf from '@tensorflow/tfjs'` (or `{ tf }` from here:
 * the same module instance). The backend packages register into that instance:
 * there is one `@tensorflow/tfjs-core` in the install, and tfjs keeps its engine
 * and kernel/gradient registries on the global object anyway; `initBackend`
 * checks that the backend it loaded is visible to this instance.
 *
 * - 'tfjs-node-gpu' / 'tfjs-node': TensorFlow C library (optional dependencies;
 *   they cannot install without internet access, so they are loaded dynamically).
 * - 'webgpu': Dawn (`webgpu` package) + @tensorflow/tfjs-backend-webgpu; see webgpu.ts.
 * - 'native': the addon of native/ (oneDNN, OpenBLAS/LAPACK) executing the heavy kernels on the wasm backend's heap
 *   in place (native-kernels.ts); every other op stays on wasm. Unavailable where the addon was not built.
 * - 'wasm': XNNPACK with SIMD, plus the training-kernel fixes of wasm-fixes.ts.
 * - 'cpu': plain JS, correct but far too slow to train; only on explicit request.
 * - 'auto': tfjs-node-gpu, then tfjs-node, then native, then wasm (printing once why native was not used).
 *
 * The default request comes from the environment variable DKFAC_BACKEND when
 * `initBackend` gets no explicit (non-'auto') argument.
 *
 * `initBackend` also registers, for every backend, the corrected AvgPool gradient
 * of avgpool-grad.ts (the one change it makes to the gradient registry).
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { registerAvgPoolGradFix } from './avgpool-grad';
import { registerReluGradFix } from './fused-ops';
import { loadNative, nativeUnavailableReason, openblasCoreNote } from './native';
import { disableNativeKernels, enableNativeKernels, NATIVE_KERNELS } from './native-kernels';
import { registerWasmTrainingFixes } from './wasm-fixes';
import { importOptional, registerWebGpu, releaseWebGpu } from './webgpu';

export { tf };
export { registerWasmTrainingFixes } from './wasm-fixes';

/** The `@tensorflow/tfjs` namespace every module of the project must use. */
export function tfjs(): typeof tf {
  return tf;
}

export type BackendName = 'auto' | 'tfjs-node-gpu' | 'tfjs-node' | 'native' | 'webgpu' | 'wasm' | 'cpu';

export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'tfjs-node-gpu', 'tfjs-node', 'native', 'webgpu', 'wasm', 'cpu'];

export interface BackendInfo {
  /** The engine actually active: 'native' (the addon's kernels on the wasm backend), or the tfjs backend's own
   *  name ('tensorflow', 'webgpu', 'wasm', 'cpu'). */
  name: string;
  /** The tfjs backend underneath (`tf.getBackend()`): 'wasm' for the native engine. */
  tfBackend: string;
  /** What was asked for, after applying DKFAC_BACKEND. */
  requested: BackendName;
  /** The engine 'auto' (or the request) resolved to: passing it to `initBackend` gives the same engine again
   *  (the distributed runtime's worker threads do). */
  activated: Exclude<BackendName, 'auto'>;
  /** Package versions, e.g. '@tensorflow/tfjs-backend-wasm 4.22.0, tfjs-core 4.22.0'. */
  version: string;
  /** Human-readable details, e.g. 'wasm simd, 6 training-kernel fixes (...)'. */
  detail: string;
}

/** The order 'auto' tries. cpu is never chosen automatically: it cannot train. */
const AUTO_ORDER: readonly Exclude<BackendName, 'auto'>[] = ['tfjs-node-gpu', 'tfjs-node', 'native', 'wasm'];

let current: BackendInfo | undefined;

/** The BackendInfo of the last successful `initBackend`, if any. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

/** Resolve the request: explicit argument > DKFAC_BACKEND > 'auto'. */
export function resolveBackendRequest(req: BackendName = 'auto', env = process.env): BackendName {
  if (req !== 'auto') return req;
  const fromEnv = env.DKFAC_BACKEND?.trim();
  if (!fromEnv) return 'auto';
  if (!(BACKEND_NAMES as readonly string[]).includes(fromEnv)) {
    throw new Error(`DKFAC_BACKEND=${fromEnv} is not a backend; use one of ${BACKEND_NAMES.join(', ')}`);
  }
  return fromEnv as BackendName;
}

/**
 * Select and initialise a backend. Idempotent: asking again for the active
 * backend returns at once; asking for another one switches to it.
 */
export async function initBackend(req: BackendName = 'auto'): Promise<BackendInfo> {
  const requested = resolveBackendRequest(req);
  // Backend-independent gradient correction (tfjs's AvgPool 'same' gradient divides border windows wrongly).
  registerAvgPoolGradFix();
  registerReluGradFix();
  if (current && current.requested === requested && tf.getBackend() === current.tfBackend) return current;
  if (requested !== 'auto') {
    current = { ...(await activate(requested)), requested, activated: requested };
    return current;
  }
  const reasons: string[] = [];
  for (const name of AUTO_ORDER) {
    try {
      current = { ...(await activate(name)), requested, activated: name };
      if (name === 'wasm') noteNativeFallback();
      return current;
    } catch (e) {
      reasons.push((e as Error).message);
    }
  }
  throw new Error(`no usable backend for 'auto':\n  ${reasons.join('\n  ')}`);
}

type Activated = Omit<BackendInfo, 'requested' | 'activated'>;

let fallbackNoted = false;

/** One line, once per process, when 'auto' ends on plain wasm although the native engine was tried. */
function noteNativeFallback(): void {
  if (fallbackNoted) return;
  fallbackNoted = true;
  console.warn(`dkfac: native engine unavailable (${nativeUnavailableReason()}); using wasm`);
}

/** Make `tfName` the active tfjs backend, failing with a message naming `label`. */
async function select(label: string, tfName: string): Promise<void> {
  if (!tf.findBackendFactory(tfName)) {
    throw new Error(
      `backend ${label} requested but its tfjs backend '${tfName}' is not registered with this @tensorflow/tfjs ` +
        `instance (a second copy of @tensorflow/tfjs-core in node_modules?)`,
    );
  }
  let ok = false;
  try {
    ok = await tf.setBackend(tfName);
  } catch (e) {
    throw new Error(`backend ${label} requested but initialising '${tfName}' failed: ${(e as Error).message}`);
  }
  if (!ok || tf.getBackend() !== tfName) {
    throw new Error(`backend ${label} requested but tfjs could not initialise '${tfName}'`);
  }
  await tf.ready();
}

const coreVersion = () => `tfjs-core ${tf.version_core}`;

/** The installed version of a package, from its package.json ('?' if unreadable). */
function packageVersion(pkg: string): string {
  try {
    return (createRequire(import.meta.url)(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return '?';
  }
}

async function activate(name: Exclude<BackendName, 'auto'>): Promise<Activated> {
  switch (name) {
    case 'tfjs-node-gpu':
    case 'tfjs-node':
      return activateNode(name);
    case 'webgpu':
      return activateWebGpu();
    case 'native':
      return activateNative();
    case 'wasm':
      return activateWasm();
    case 'cpu':
      await select('cpu', 'cpu');
      return {
        name: 'cpu',
        tfBackend: 'cpu',
        version: `@tensorflow/tfjs-backend-cpu ${tf.version_cpu ?? tf.version_core}, ${coreVersion()}`,
        detail: 'plain JavaScript: correct but far too slow to train (reference and tests only)',
      };
  }
}

async function activateNode(name: 'tfjs-node' | 'tfjs-node-gpu'): Promise<Activated> {
  const pkg = `@tensorflow/${name}`;
  let mod: any;
  try {
    mod = await importOptional(pkg);
  } catch (e) {
    throw new Error(`backend ${name} requested but ${pkg} failed to load: ${(e as Error).message}`);
  }
  if (!mod) {
    throw new Error(
      `backend ${name} requested but ${pkg} is not installed ` +
        `(npm i ${pkg} needs internet to download libtensorflow)`,
    );
  }
  await select(name, 'tensorflow');
  const be = tf.backend() as { isUsingGpuDevice?: boolean };
  const gpu = be.isUsingGpuDevice;
  const version = packageVersion(pkg);
  return {
    name: tf.getBackend(),
    tfBackend: tf.getBackend(),
    version: `${pkg} ${version}, ${coreVersion()}`,
    detail:
      `TensorFlow C library` +
      (gpu === undefined ? '' : gpu ? ' on a CUDA GPU' : ' on the CPU (no usable CUDA GPU found)'),
  };
}

async function activateWebGpu(): Promise<Activated> {
  const route = await registerWebGpu();
  try {
    await select('webgpu', 'webgpu');
  } catch (e) {
    releaseWebGpu();
    throw e;
  }
  return {
    name: 'webgpu',
    tfBackend: 'webgpu',
    version: `@tensorflow/tfjs-backend-webgpu ${packageVersion('@tensorflow/tfjs-backend-webgpu')}, ${coreVersion()}`,
    detail: `${route.kind}: ${route.adapter}`,
  };
}

async function activateNative(): Promise<Activated> {
  const addon = loadNative();
  if (!addon) throw new Error(`backend native requested but ${nativeUnavailableReason()}`);
  const wasm = await activateWasm();
  enableNativeKernels(addon);
  const i = addon.info();
  const note = openblasCoreNote();
  return {
    name: 'native',
    tfBackend: 'wasm',
    version: `oneDNN ${i.dnnl} (${i.cpuIsa}, ${i.dnnlCpuRuntime} ${i.threads} threads), ${i.openblas.split(' ').slice(0, 2).join(' ')} (${i.openblasCore}${note ? `; ${note}` : ''}), ${wasm.version}`,
    detail: `oneDNN ${i.cpuIsa} kernels on the wasm heap (${NATIVE_KERNELS.join(', ')}); other ops: ${wasm.detail}`,
  };
}

async function activateWasm(): Promise<Activated> {
  // Static dependency: wasm-fixes.ts imports @tensorflow/tfjs-backend-wasm, which registers 'wasm'.
  const fixes = registerWasmTrainingFixes();
  disableNativeKernels();
  await select('wasm', 'wasm');
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  return {
    name: 'wasm',
    tfBackend: 'wasm',
    version: `@tensorflow/tfjs-backend-wasm ${wasm.version_wasm}, ${coreVersion()}`,
    detail: `wasm ${simd ? 'simd' : 'no simd'}${threads ? ', threads' : ''}, ${fixes}`,
  };
}

/**
 * The implementation oneDNN chose for each kind of native kernel that has run in this thread (e.g. conv_fwd:
 * 'brgconv:avx512_core'), for the run's sidecar; undefined on other engines.
 */
export function engineKernels(): Record<string, string> | undefined {
  if (current?.name !== 'native') return undefined;
  return loadNative()?.info().impls;
}

/**
 * Set the number of threads the native engine's kernels use in this thread (oneDNN's OpenMP team). Worker threads
 * of the distributed runtime use 1 each (DKFAC_WORKER_THREADS to change it), so that several roles on a small
 * machine do not oversubscribe its cores: OpenMP teams that share cores wait for each other at every barrier.
 * Returns the number it replaces (undefined on other engines).
 */
export function setEngineThreads(n: number): number | undefined {
  if (current?.name !== 'native') return undefined;
  const addon = loadNative();
  const before = addon?.info().threads;
  addon?.setThreads(n);
  return before;
}

/** Let the process exit after using the webgpu backend (Dawn otherwise keeps it alive). */
export function releaseBackend(): void {
  releaseWebGpu();
}
