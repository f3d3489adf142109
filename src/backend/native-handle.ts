/**
 * The native engine's addon as seen by code that also runs in browsers (src/kfac, src/linalg): no Node imports here.
 * In Node, src/backend/native.ts registers its loader when it is imported (every Node entry does, through
 * src/backend/index.ts); in a browser nothing registers and `nativeAddon()` is undefined, so callers take their
 * TypeScript paths.
 */

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
  /** Writes the moment into `out`; returns whether every entry written is finite. */
  momentFromGram(data: Float32Array, gOff: number, cOff: number, count: number, K: number, out: Float64Array, symmetric?: boolean): boolean;
  allFinite(a: Float64Array): boolean;
  emaUpdate(sum: Float64Array, x: Float64Array, decay: number): void;
  concat(heap: ArrayBuffer, out: number, inputs: Float64Array, inners: Int32Array, outer: number): void;
  split(heap: ArrayBuffer, x: number, outputs: Float64Array, inners: Int32Array, outer: number): void;
  reduceMiddle(heap: ArrayBuffer, x: number, out: number, outer: number, reduced: number, inner: number, scale: number): void;
  binary(heap: ArrayBuffer, a: number, b: number, out: number, n: number, nb: number, op: number): void;
  tile(heap: ArrayBuffer, x: number, out: number, shape: Int32Array, reps: Int32Array): void;
  /** tfjs's FusedBatchNorm with [C] statistics on [m, C] rows; offset / scale −1 when absent. */
  batchNormApply(heap: ArrayBuffer, x: number, out: number, mean: number, variance: number, offset: number, scale: number, m: number, C: number, eps: number): void;
  // K-FAC's float64 linear algebra on LAPACK (native/src/linalg.cc), on plain Float64Arrays; see src/linalg/lapack.ts.
  /** In place: a becomes the full inverse (null), or the first failing pivot (a then holds garbage). */
  spdInverseF64(a: Float64Array, n: number, pivotTol: number): null | { pivot: number; value: number };
  /** values ascending, eigenvectors as the columns of row-major `vectors`; returns LAPACK's info (0: converged). */
  symEigF64(a: Float64Array, n: number, values: Float64Array, vectors: Float64Array): number;
  /** XᵀX of a row-major float32 [rows, K] matrix on the wasm heap into a K×K output (ssyrk, mirrored). */
  gram(heap: ArrayBuffer, x: number, out: number, rows: number, K: number): void;
  /** PᵀP of the stride-1 patches of an NHWC input, [K, K]; dims as patches (strides 1). */
  patchGram(heap: ArrayBuffer, x: number, out: number, dims: Int32Array): void;
  /** The path patchGram takes ('avx512' where compiled, else 'blas'), after forcing 'blas' or restoring 'auto'. */
  patchGramPath(path?: 'blas' | 'auto'): 'avx512' | 'blas';
  relu(heap: ArrayBuffer, x: number, y: number, n: number): void;
  maxPool(heap: ArrayBuffer, x: number, y: number, dims: Int32Array): void;
  /** OpenBLAS threads per LAPACK call (default 1), after setting it to k when given. */
  linalgThreads(k?: number): number;
}

let loader: (() => { addon?: NativeAddon; reason?: string }) | undefined;

/** Called once by src/backend/native.ts. */
export function registerNativeLoader(f: () => { addon?: NativeAddon; reason?: string }): void {
  loader = f;
}

/** The addon when it is available in this thread, else undefined. */
export function nativeAddon(): NativeAddon | undefined {
  return loader?.().addon;
}

/** Why `nativeAddon()` is undefined (one line), or undefined when it is available. */
export function nativeAddonReason(): string | undefined {
  if (!loader) return 'the native engine is not available here (no Node.js, or src/backend/native.ts was not loaded)';
  return loader().reason;
}
