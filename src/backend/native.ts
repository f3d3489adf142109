/**
 * Loading the native engine's addon (`native/`, C++ on oneDNN and OpenBLAS/LAPACK, built by node-gyp during
 * `npm ci`; see native/README.md).
 *
 * The addon is optional: where it was not built (no compiler, no oneDNN, another OS) `loadNative()` returns
 * undefined and `nativeUnavailableReason()` says why in one line, and every caller falls back to the wasm kernels
 * and the TypeScript linear algebra.
 *
 * OpenBLAS (used for LAPACK) picks its kernels when the library is loaded: Debian's 0.3.21 misdetects AVX-512 Xeons
 * as 'Prescott' (SSE3, ~7× slower, ../shared/compute-stack.md), so `OPENBLAS_CORETYPE` is set from the CPU flags
 * before the addon (which links it) is loaded, unless the user set it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The functions the addon exports (native/src/addon.cc). Offsets are byte offsets into the wasm heap. */
export interface NativeAddon {
  info(): {
    dnnl: string;
    /** the instruction set oneDNN's JIT kernels use here, e.g. 'avx512_core' */
    cpuIsa: string;
    dnnlCpuRuntime: string;
    threads: number;
    openblas: string;
    openblasCore: string;
    impls: Record<string, string>;
    cachedPrimitives: number;
  };
  setThreads(n: number): void;
  clearCache(): void;
  convForward(heap: ArrayBuffer, x: number, w: number, bias: number, y: number, dims: Int32Array, act: number, alpha: number): void;
  convBackwardData(heap: ArrayBuffer, dy: number, w: number, dx: number, dims: Int32Array): void;
  convBackwardWeights(heap: ArrayBuffer, x: number, dy: number, dw: number, dims: Int32Array): void;
  gemm(heap: ArrayBuffer, a: number, b: number, out: number, dims: Int32Array, bias: number, act: number, alpha: number): void;
  maxPoolGrad(heap: ArrayBuffer, dy: number, x: number, dx: number, dims: Int32Array): void;
  avgPoolGrad(heap: ArrayBuffer, dy: number, dx: number, dims: Int32Array): void;
  patches(heap: ArrayBuffer, x: number, out: number, dims: Int32Array): void;
  patchSums(heap: ArrayBuffer, x: number, out: number, dims: Int32Array): void;
  batchNormForward(
    heap: ArrayBuffer, x: number, gamma: number, beta: number, y: number, xhat: number, mean: number, variance: number,
    dims: Int32Array, eps: number,
  ): void;
  batchNormBackward(
    heap: ArrayBuffer, dy: number, xhat: number, gamma: number, variance: number, dx: number, dgamma: number,
    dbeta: number, dims: Int32Array, eps: number,
  ): void;
  reluGrad(heap: ArrayBuffer, dy: number, x: number, dx: number, n: number): void;
  momentFromGram(data: Float32Array, gOff: number, cOff: number, count: number, K: number, out: Float64Array): void;
  allFinite(a: Float64Array): boolean;
  emaUpdate(sum: Float64Array, x: Float64Array, decay: number): void;
  concat(heap: ArrayBuffer, out: number, inputs: Float64Array, inners: Int32Array, outer: number): void;
  split(heap: ArrayBuffer, x: number, outputs: Float64Array, inners: Int32Array, outer: number): void;
  reduceMiddle(heap: ArrayBuffer, x: number, out: number, outer: number, reduced: number, inner: number, scale: number): void;
  binary(heap: ArrayBuffer, a: number, b: number, out: number, n: number, nb: number, op: number): void;
  // K-FAC's float64 linear algebra on LAPACK (native/src/linalg.cc), on plain Float64Arrays; see src/linalg/lapack.ts.
  /** In place: a becomes the full inverse (null), or the first failing pivot (a then holds garbage). */
  spdInverseF64(a: Float64Array, n: number, pivotTol: number): null | { pivot: number; value: number };
  /** values ascending, eigenvectors as the columns of row-major `vectors`; returns LAPACK's info (0: converged). */
  symEigF64(a: Float64Array, n: number, values: Float64Array, vectors: Float64Array): number;
  /** OpenBLAS threads per LAPACK call (default 1), after setting it to k when given. */
  linalgThreads(k?: number): number;
}

/** Where node-gyp puts the addon, relative to the package root. */
export const ADDON_PATH = 'native/build/Release/dkfac_native.node';

let loaded: NativeAddon | undefined;
let reason: string | undefined;

/** The package root: the nearest folder above this file holding native/binding.gyp. */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'native', 'binding.gyp'))) return dir;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** The OpenBLAS core type for this CPU (Linux /proc/cpuinfo flags), or undefined to let OpenBLAS detect it. */
export function openblasCoreType(cpuinfo?: string): string | undefined {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(text)?.[1] ?? '').trim().split(/\s+/));
  if (flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl') && flags.has('avx512dq')) return 'SkylakeX';
  if (flags.has('avx2') && flags.has('fma')) return 'Haswell';
  return undefined;
}

/**
 * The addon, loaded once per thread (Node loads an N-API addon separately in each worker thread), or undefined
 * when it is unavailable. `DKFAC_NATIVE=0` disables it.
 */
export function loadNative(): NativeAddon | undefined {
  if (loaded || reason) return loaded;
  if (process.env.DKFAC_NATIVE === '0') {
    reason = 'disabled by DKFAC_NATIVE=0';
    return undefined;
  }
  const root = packageRoot();
  const path = root ? join(root, ADDON_PATH) : undefined;
  if (!path || !existsSync(path)) {
    const log = root ? join(root, 'native', 'build.log') : undefined;
    const why = log && existsSync(log) ? firstErrorLine(readFileSync(log, 'utf8')) : undefined;
    reason = `the native addon was not built${why ? ` (${why}; see native/build.log)` : ''}: run \`npm run build:native\``;
    return undefined;
  }
  if (!process.env.OPENBLAS_CORETYPE) {
    const core = openblasCoreType();
    if (core) process.env.OPENBLAS_CORETYPE = core;
  }
  try {
    loaded = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    reason = `the native addon failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  return loaded;
}

/** Why `loadNative()` returned undefined (one line), or undefined when it loaded. */
export function nativeUnavailableReason(): string | undefined {
  loadNative();
  return reason;
}

/** The most telling line of a failed build log (the first compiler/linker error or missing package). */
export function firstErrorLine(log: string): string | undefined {
  const lines = log.split('\n').map((l) => l.trim());
  const pick =
    lines.find((l) => /fatal error|cannot find -l|No such file/.test(l)) ??
    lines.find((l) => /\berror\b/i.test(l) && !/gyp ERR! (stack|System|command|cwd|node -v|node-gyp -v|not ok)/.test(l));
  return pick?.slice(0, 200);
}
