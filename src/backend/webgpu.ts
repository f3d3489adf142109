/**
 * The WebGPU route in Node: Dawn's `webgpu` npm package (a prebuilt dawn.node)
 * provides `navigator.gpu`, and `@tensorflow/tfjs-backend-webgpu` (all training
 * kernels) runs on it. Both are optional dependencies, loaded dynamically.
 *
 * Adapter choice: first Dawn's default backends (Vulkan on Linux with a GPU
 * driver, Metal, D3D12) with a high-performance adapter; if there is none, Mesa's
 * software OpenGL (llvmpipe) through Dawn's OpenGL backend, which needs
 * `EGL_PLATFORM=surfaceless` and a 'compatibility' feature-level adapter. The
 * software route runs at about 2 GFLOP/s: a smoke test, not a training engine.
 * tfjs-backend-webgpu only self-registers when `navigator.gpu` exists at import
 * time and then cannot ask for a compatibility adapter, so the 'webgpu' backend
 * is registered here with the device chosen here.
 */
import * as tf from '@tensorflow/tfjs';

/** What the WebGPU route found. */
export interface WebGpuRoute {
  /** 'hardware' or 'software (Mesa llvmpipe via OpenGL)'. */
  kind: string;
  /** Adapter description, e.g. 'NVIDIA GeForce … (vulkan)'. */
  adapter: string;
}

/** A short Error for this route. */
function fail(reason: string): Error {
  return new Error(`backend webgpu requested but ${reason}`);
}

/** Dynamic import of an optional package; resolves to undefined when it is not installed. */
export async function importOptional(spec: string): Promise<any> {
  try {
    return await import(/* @vite-ignore */ spec);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const notFound =
      err?.code === 'ERR_MODULE_NOT_FOUND' ||
      err?.code === 'MODULE_NOT_FOUND' ||
      /Cannot find (module|package)/.test(String(err?.message));
    if (notFound && String(err?.message).includes(spec)) return undefined;
    throw e;
  }
}

/** Describe an adapter from its GPUAdapterInfo. */
function describe(adapter: any, backendHint: string): string {
  const info = adapter?.info ?? {};
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s: unknown) => s);
  return `${parts.join(' ') || 'unknown adapter'} (${backendHint})`;
}

/**
 * tfjs-backend-webgpu reads GPU data synchronously (dataSync/arraySync) through
 * an OffscreenCanvas, which Node lacks; turn that ReferenceError into a clear one.
 */
function nodeBackendClass(Base: any): any {
  return class NodeWebGPUBackend extends Base {
    readSync(dataId: object) {
      try {
        return super.readSync(dataId);
      } catch (e) {
        if (e instanceof ReferenceError && /OffscreenCanvas/.test(e.message)) {
          throw new Error(
            'webgpu backend in Node: synchronous reads (dataSync/arraySync/bufferSync) need OffscreenCanvas; ' +
              'use the async tensor.data()/array() instead',
          );
        }
        throw e;
      }
    }
  };
}

let route: WebGpuRoute | undefined;
let dawnGpu: any;

/**
 * Make the 'webgpu' tfjs backend available (does not select it). Throws a clear
 * Error when the packages are missing or no adapter can be opened.
 */
export async function registerWebGpu(): Promise<WebGpuRoute> {
  if (route) return route;
  const dawn = await importOptional('webgpu');
  if (!dawn) throw fail('the npm package `webgpu` (Dawn for Node) is not installed (npm i webgpu)');
  const tfWebGpu = await importOptional('@tensorflow/tfjs-backend-webgpu');
  if (!tfWebGpu) {
    throw fail('@tensorflow/tfjs-backend-webgpu is not installed (npm i @tensorflow/tfjs-backend-webgpu)');
  }
  Object.assign(globalThis, dawn.globals);

  let adapter: any = null;
  let kind = 'hardware';
  let hint = 'default Dawn backend';
  const errors: string[] = [];
  try {
    dawnGpu = dawn.create([]);
    adapter = await dawnGpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    errors.push(`default backends: ${(e as Error).message}`);
  }
  if (!adapter) {
    // Software fallback: Mesa llvmpipe through Dawn's OpenGL backend.
    process.env.EGL_PLATFORM ??= 'surfaceless';
    try {
      dawnGpu = dawn.create(['backend=opengl']);
      adapter = await dawnGpu.requestAdapter({ featureLevel: 'compatibility' });
      kind = 'software (OpenGL, compatibility mode)';
      hint = 'opengl';
    } catch (e) {
      errors.push(`opengl: ${(e as Error).message}`);
    }
  }
  if (!adapter) {
    dawnGpu = undefined;
    throw fail(
      `Dawn found no GPU adapter (no Vulkan/Metal/D3D12 GPU, and no software OpenGL via EGL)` +
        (errors.length ? `: ${errors.join('; ')}` : ''),
    );
  }

  const limits = adapter.limits;
  const requiredFeatures = ['timestamp-query'].filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
    },
  });
  // tfjs-backend-webgpu reads navigator.gpu in places (e.g. isWebGPUSupported).
  const g = globalThis as any;
  if (!g.navigator) Object.defineProperty(g, 'navigator', { value: {}, configurable: true, writable: true });
  try {
    g.navigator.gpu = dawnGpu;
  } catch {
    /* a read-only navigator (newer Node) is fine: the backend gets its device directly */
  }
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  const NodeWebGPUBackend = nodeBackendClass(tfWebGpu.WebGPUBackend);
  tf.registerBackend('webgpu', () => new NodeWebGPUBackend(device, adapter.info), 0);
  route = { kind, adapter: describe(adapter, hint) };
  return route;
}

/**
 * Drop the references to Dawn so that the process can exit (dawn.node keeps the
 * event loop alive while `navigator.gpu` is referenced).
 */
export function releaseWebGpu(): void {
  const g = globalThis as any;
  if (g.navigator && g.navigator.gpu === dawnGpu) {
    try {
      delete g.navigator.gpu;
    } catch {
      /* ignore */
    }
  }
  dawnGpu = undefined;
}
