/**
 * Per-batch Kronecker-factor statistics, computed on the tfjs backend from what a forward pass captured (a layer's
 * input activations) and the probe gradients (the back-propagated derivatives of the pre-activations), and read back
 * once per layer as float64 row-major matrices.
 *
 * Every `ds` argument is the gradient of the batch-MEAN loss with respect to a layer's pre-activation probe, i.e.
 * Ds/M for a batch of M examples; it is multiplied by M here before any G factor is formed [P §1.1; ACKTR
 * "bpropFactor *= B"]. Layouts follow tfjs: dense kernels [in, out], conv kernels [kh, kw, Cin, Cout] flattened
 * row-major to [kh·kw·Cin, Cout], the bias (homogeneous coordinate: a 1 appended as the LAST entry of ā) last.
 *
 *  - dense                 A = (1/M) Σ_n ā āᵀ,   G = (1/M) Σ_n g gᵀ                              [P eq 2]
 *  - conv, KFC             A = E_{n,t}[ā_t ā_tᵀ], G = E_{n,t}[ds_t ds_tᵀ] over M·|T| rows; F̂ = |T|·A⊗G  [P eq 15, KFC]
 *  - conv, cheap (App. A)  A = E_n[m_a m_aᵀ] (m_a = mean_t ā_t), G = E_n[σ σᵀ] (σ = Σ_t ds_t); F̂ = A⊗G  [P eqs 16–19]
 *  - doubly factored       E[K Kᵀ], E[Ψ Ψᵀ], E[Ds Dsᵀ] with A_n ≈ K Ψᵀ its top singular pair       [P §4 eqs 4–8]
 *  - batch-norm scale/shift  F̂ = E_n[g gᵀ], g = [Σ_sp ds·x̂ ; Σ_sp ds]                            [P §6.2.1, App. C]
 */
import * as tf from '@tensorflow/tfjs';
import { GRAM_KERNEL, hasKernel, PATCH_GRAM_KERNEL, PATCH_SUMS_KERNEL, PATCHES_KERNEL } from '../backend/fused-ops';
import { nativeAddon } from '../backend/native-handle';
import type { Padding } from '../nn/layers';
import { topSingularPairs } from '../linalg';

/** Row-major square matrix statistics of one batch, float64. */
export interface KroneckerStats {
  kind: 'kronecker';
  /** input factor, dA × dA (dA includes the homogeneous coordinate when the layer has a bias) */
  A: Float64Array;
  dA: number;
  /** output (pre-activation derivative) factor, dG × dG */
  G: Float64Array;
  dG: number;
  /** the block is F̂ = scale · A⊗G: |T| for conv KFC, 1 for dense and the cheap conv factors */
  scale: number;
}

export interface DoublyFactoredStats {
  kind: 'doubly-factored';
  /** E[K Kᵀ], T × T (spatial) */
  K: Float64Array;
  dK: number;
  /** E[Ψ Ψᵀ], C × C (channels) */
  Psi: Float64Array;
  dPsi: number;
  /** E[Ds Dsᵀ], out × out (also the full Fisher block of the bias) */
  D: Float64Array;
  dD: number;
}

export interface ScaleShiftStats {
  kind: 'scale-shift';
  /** E[g gᵀ] over g = [dγ; dβ], 2C × 2C */
  F: Float64Array;
  d: number;
}

export type BatchStats = KroneckerStats | DoublyFactoredStats | ScaleShiftStats;

/** Convolution geometry (from LayerInfo conv2d). */
export interface ConvGeometry {
  kernel: [number, number];
  strides: [number, number];
  padding: Padding;
}

/** Upper bound on floats of patch matrix materialised at once by the KFC A factor (examples are chunked). */
export const PATCH_CHUNK_FLOATS = 1 << 23;

// -------------------------------------------------------------------------------------------------------------
// Read-back helpers

/** The wasm backend's heap and where a tensor's data lies on it (tfjs-backend-wasm internals, as the native kernels read them). */
interface WasmHeap {
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number } | undefined };
  wasm: { HEAPU8: Uint8Array };
}

/**
 * Reads float32 tensors for `use` and disposes them afterwards. On the wasm backend (and so the native engine) `data`
 * is a view of the wasm heap itself and `offsets` each tensor's float index in it: no copy, no concatenation, no
 * garbage (the moments are read straight from where the kernels wrote them); `use` must not run tensor ops (an
 * allocation may move the heap). Elsewhere one download of the tensors concatenated (readBackFlat).
 */
export function withReadBack<T>(ts: tf.Tensor[], use: (data: Float32Array, offsets: number[]) => T): T {
  try {
    const be = tf.backend() as unknown as Partial<WasmHeap>;
    const heap = tf.getBackend() === 'wasm' && be.dataIdMap && be.wasm ? be.wasm.HEAPU8 : undefined;
    const at = heap ? ts.map((t) => (t.dtype === 'float32' ? be.dataIdMap!.get(t.dataId)?.memoryOffset : undefined)) : [];
    if (heap && at.every((o) => o !== undefined && o % 4 === 0)) {
      return use(new Float32Array(heap.buffer, heap.byteOffset, heap.byteLength >> 2), at.map((o) => o! / 4));
    }
    const { data, offsets } = readBackFlat(ts);
    return use(data, offsets);
  } finally {
    tf.dispose(ts);
  }
}

/** Several tensors read back with ONE download: their entries concatenated (float32) and where each starts. */
function readBackFlat(ts: tf.Tensor[]): { data: Float32Array; offsets: number[] } {
  const flat = tf.tidy(() => tf.concat(ts.map((t) => tf.reshape(t, [-1]))));
  const data = flat.dataSync() as Float32Array;
  flat.dispose();
  const offsets: number[] = [];
  let off = 0;
  for (const t of ts) {
    offsets.push(off);
    off += t.size;
  }
  return { data, offsets };
}

/**
 * Float64 matrices of batch statistics already folded into the moving averages (`releaseMoments`), by length, reused
 * by the next batch's `momentFromGram`: without them every statistics batch allocates its factors afresh (8 MB for a
 * 1025-wide factor), and those large objects cost about one mark-compact GC per step. At most POOL_PER_LENGTH kept.
 */
const momentPool = new Map<number, Float64Array[]>();
const POOL_PER_LENGTH = 32;

/**
 * Statistics arrays known to be finite in this thread: checked once (blocks.ts checkStatsFinite: a batch's statistics
 * are checked where they are computed and again where they are folded in, perhaps after a trip to another thread or
 * process), or written by the native moment pass, which checks every entry as it writes it. Arrays are never written
 * after they are made, except a pooled one reused for a new batch, which `releaseMoments` forgets first.
 */
const knownFinite = new WeakSet<Float64Array>();

/** Whether `a` is known to hold only finite entries (see knownFinite). */
export function isKnownFinite(a: Float64Array): boolean {
  return knownFinite.has(a);
}

/** Records that `a` was found finite. */
export function noteFinite(a: Float64Array): void {
  knownFinite.add(a);
}

/**
 * Hands matrices back to the pool once nothing reads them any more (their batch folded in). A detached array (moved
 * to another thread) is ignored.
 */
export function releaseMoments(arrays: Iterable<Float64Array>): void {
  for (const a of arrays) {
    knownFinite.delete(a);
    if (a.length === 0 || a.byteLength === 0) continue;
    let list = momentPool.get(a.length);
    if (!list) momentPool.set(a.length, (list = []));
    if (list.length < POOL_PER_LENGTH && !list.includes(a)) list.push(a);
  }
}

/**
 * The (K+1)×(K+1) second moment of rows [x, 1] from XᵀX (K×K), the column sums Xᵀ1 and the row count, divided
 * by `count` (the homogeneous coordinate is the LAST index), made exactly symmetric. Without column sums
 * (`cOff` < 0): XᵀX / count. Reads the Gram (at `gOff`) and the sums (at `cOff`) in place from the float32 data
 * of one read-back, in one pass, so a factor's statistics cost one float64 matrix and no intermediate copies.
 * `symmetric`: the Gram is exactly symmetric (the native pass then reads it in order; the same bits).
 */
export function momentFromGram(data: Float32Array, gOff: number, cOff: number, count: number, K: number, symmetric = false): Float64Array {
  const d = cOff >= 0 ? K + 1 : K;
  // every entry is written below: a released matrix of the same size serves as well as a zeroed one
  const out = momentPool.get(d * d)?.pop() ?? new Float64Array(d * d);
  const addon = nativeAddon(); // the same pass in C++ (native/src/kfac.cc), bit for bit
  if (addon) {
    // (the pass checks finiteness as it writes: a finite result needs no second pass in checkStatsFinite)
    if (addon.momentFromGram(data, gOff, cOff, count, K, out, symmetric)) knownFinite.add(out);
    return out;
  }
  return momentFromGramTs(data, gOff, cOff, count, K, out);
}

/** `momentFromGram` in TypeScript, into `out` (the fallback, and the reference of the native pass's test). */
export function momentFromGramTs(data: Float32Array, gOff: number, cOff: number, count: number, K: number, out: Float64Array): Float64Array {
  const d = cOff >= 0 ? K + 1 : K;
  const half = 0.5 / count;
  // 32×32 tiles of the upper triangle: the transposed reads stay in cache for large K
  const B = 32;
  for (let i0 = 0; i0 < K; i0 += B) {
    const i1 = Math.min(K, i0 + B);
    for (let j0 = i0; j0 < K; j0 += B) {
      const j1 = Math.min(K, j0 + B);
      for (let i = i0; i < i1; i++) {
        const ri = gOff + i * K;
        for (let j = Math.max(j0, i); j < j1; j++) {
          const v = (data[ri + j]! + data[gOff + j * K + i]!) * half;
          out[i * d + j] = v;
          out[j * d + i] = v;
        }
      }
    }
  }
  if (cOff >= 0) {
    for (let i = 0; i < K; i++) {
      const m = data[cOff + i]! / count;
      out[i * d + K] = m;
      out[K * d + i] = m;
    }
    out[K * d + K] = 1;
  }
  return out;
}

/** Whether `gram` (and the patch Gram) give exactly symmetric matrices: the native kernels mirror their triangle. */
function symmetricGrams(): boolean {
  return hasKernel(GRAM_KERNEL);
}

/** XᵀX of a [rows, K] matrix (one symmetric rank-k update where the engine registers `DkfacGram`). */
function gram(x: tf.Tensor2D): tf.Tensor2D {
  if (hasKernel(GRAM_KERNEL)) return tf.engine().runKernel(GRAM_KERNEL, { x }, {}) as tf.Tensor2D;
  return tf.matMul(x, x, true, false);
}

// -------------------------------------------------------------------------------------------------------------
// Dense

/** Dense layer factors [P eq 2]: A = E[ā āᵀ] (ā = [a; 1] if `bias`), G = E[g gᵀ], g = M·ds. */
export function denseFactors(a: tf.Tensor, ds: tf.Tensor, bias: boolean): KroneckerStats {
  const M = a.shape[0];
  const K = a.size / M;
  const O = ds.size / M;
  const parts = tf.tidy(() => {
    const a2 = tf.reshape(a, [M, K]) as tf.Tensor2D;
    const g = tf.mul(tf.reshape(ds, [M, O]), M) as tf.Tensor2D;
    const out = [gram(a2), gram(g)];
    if (bias) out.push(tf.sum(a2, 0));
    return out;
  });
  return withReadBack(parts, (data, offsets) => ({
    kind: 'kronecker',
    A: momentFromGram(data, offsets[0]!, bias ? offsets[2]! : -1, M, K, symmetricGrams()),
    dA: bias ? K + 1 : K,
    G: momentFromGram(data, offsets[1]!, -1, M, O, symmetricGrams()),
    dG: O,
    scale: 1,
  }));
}

// -------------------------------------------------------------------------------------------------------------
// Convolution: patches

/** Output size and the TF zero padding (before, after) along one spatial axis: pad_total = max((o−1)s + k − n, 0). */
export function padding1d(n: number, k: number, s: number, padding: Padding): { out: number; before: number; after: number } {
  if (padding === 'valid') return { out: Math.floor((n - k) / s) + 1, before: 0, after: 0 };
  const out = Math.ceil(n / s);
  const total = Math.max((out - 1) * s + k - n, 0);
  const before = Math.floor(total / 2);
  return { out, before, after: total - before };
}

/** Zero-pads an NHWC input exactly as TF 'same'/'valid' does; returns the padded tensor and the output size. */
function padInput(x: tf.Tensor4D, g: ConvGeometry): { padded: tf.Tensor4D; Ho: number; Wo: number } {
  const [, H, W] = x.shape;
  const ph = padding1d(H, g.kernel[0], g.strides[0], g.padding);
  const pw = padding1d(W, g.kernel[1], g.strides[1], g.padding);
  const padded =
    ph.before + ph.after + pw.before + pw.after === 0
      ? x
      : tf.pad(x, [
          [0, 0],
          [ph.before, ph.after],
          [pw.before, pw.after],
          [0, 0],
        ]);
  return { padded, Ho: ph.out, Wo: pw.out };
}

/**
 * The input rows i, i+s, …, i+s(Ho−1) and columns j, …, j+s(Wo−1) of the padded input: the (i, j) kernel tap of
 * every output location, [M, Ho, Wo, Cin].
 */
function tap(padded: tf.Tensor4D, i: number, j: number, Ho: number, Wo: number, s: [number, number]): tf.Tensor4D {
  const [M, , , C] = padded.shape;
  if (s[0] === 1 && s[1] === 1) return tf.slice(padded, [0, i, j, 0], [M, Ho, Wo, C]);
  return tf.stridedSlice(padded, [0, i, j, 0], [M, i + s[0] * (Ho - 1) + 1, j + s[1] * (Wo - 1) + 1, C], [1, s[0], s[1], 1]) as tf.Tensor4D;
}

/**
 * Patch vectors of every output location, [M, Ho, Wo, kh·kw·Cin], in the kernel's flatten order (kh, kw, Cin):
 * entry ((i·kw + j)·Cin + c) of the patch at (y, x) is the padded input at (y·s + i, x·s + j, c).
 */
export function extractPatches(x: tf.Tensor4D, g: ConvGeometry): tf.Tensor4D {
  if (hasKernel(PATCHES_KERNEL)) {
    return tf.engine().runKernel(PATCHES_KERNEL, { x }, { kernel: g.kernel, strides: g.strides, padding: g.padding }) as tf.Tensor4D;
  }
  return tf.tidy(() => {
    const { padded, Ho, Wo } = padInput(x, g);
    const taps: tf.Tensor4D[] = [];
    for (let i = 0; i < g.kernel[0]; i++) for (let j = 0; j < g.kernel[1]; j++) taps.push(tap(padded, i, j, Ho, Wo, g.strides));
    return taps.length === 1 ? taps[0] : tf.concat(taps, 3);
  });
}

/**
 * The [n, k] 0/1 matrix S with S[r, i] = 1 iff input row r is tap i of some output position along one axis:
 * r = y·s + i − before for a y in [0, out) (rows in the zero padding are simply absent).
 */
function tapSelection(n: number, k: number, s: number, out: number, before: number): tf.Tensor2D {
  const sel = new Float32Array(n * k);
  for (let i = 0; i < k; i++) {
    for (let y = 0; y < out; y++) {
      const r = y * s + i - before;
      if (r >= 0 && r < n) sel[r * k + i] = 1;
    }
  }
  return tf.tensor2d(sel, [n, k]);
}

/**
 * Σ_t a_t per example, [M, kh·kw·Cin], WITHOUT materialising the patches. Entry (i, j, c) is the sum over output
 * positions of the padded input at rows i, i+s, …, i+s(Ho−1) and columns j, …, j+s(Wo−1) — a separable sum:
 * Σ_r Σ_q S_h[r, i] S_w[q, j] x[n, r, q, c] with the tap-selection matrices S_h [H, kh] and S_w [W, kw] (zero
 * padding contributes nothing). Two thin 2-D matrix products, no per-offset slices (those are slow on wasm).
 */
export function patchSums(x: tf.Tensor4D, g: ConvGeometry): tf.Tensor2D {
  if (hasKernel(PATCH_SUMS_KERNEL)) {
    return tf.engine().runKernel(PATCH_SUMS_KERNEL, { x }, { kernel: g.kernel, strides: g.strides, padding: g.padding }) as tf.Tensor2D;
  }
  return tf.tidy(() => {
    const [M, H, W, C] = x.shape;
    const [kh, kw] = g.kernel;
    const ph = padding1d(H, kh, g.strides[0], g.padding);
    const pw = padding1d(W, kw, g.strides[1], g.padding);
    // contract W: [M, H, C, W] · S_w → [M, H, C, kw]
    const xw = tf.reshape(tf.transpose(x, [0, 1, 3, 2]), [M * H * C, W]) as tf.Tensor2D;
    const y = tf.matMul(xw, tapSelection(W, kw, g.strides[1], pw.out, pw.before));
    // contract H: [M, C, kw, H] · S_h → [M, C, kw, kh]
    const yh = tf.reshape(tf.transpose(tf.reshape(y, [M, H, C, kw]), [0, 2, 3, 1]), [M * C * kw, H]) as tf.Tensor2D;
    const z = tf.matMul(yh, tapSelection(H, kh, g.strides[0], ph.out, ph.before));
    // to the kernel's flatten order (kh, kw, Cin)
    return tf.reshape(tf.transpose(tf.reshape(z, [M, C, kw, kh]), [0, 3, 2, 1]), [M, kh * kw * C]) as tf.Tensor2D;
  });
}

// -------------------------------------------------------------------------------------------------------------
// Convolution: factors

/**
 * Σ_t ā_t ā_tᵀ over every patch of the batch (without the homogeneous coordinate) and Σ_t ā_t: from the input in
 * one kernel for stride-1 convolutions where the engine registers `DkfacPatchGram` (the patches' Gram without the
 * patches), else from the patches, materialised in chunks of examples.
 */
function patchMoments(x: tf.Tensor4D, g: ConvGeometry, T: number, K: number, bias: boolean): [tf.Tensor, tf.Tensor] {
  const M = x.shape[0];
  // (a 1×1 kernel's patches are the input itself: its Gram is the plain one below)
  if (g.strides[0] === 1 && g.strides[1] === 1 && g.kernel[0] * g.kernel[1] > 1 && hasKernel(PATCH_GRAM_KERNEL)) {
    const aa = tf.engine().runKernel(PATCH_GRAM_KERNEL, { x }, { kernel: g.kernel, padding: g.padding }) as tf.Tensor;
    return [aa, bias ? tf.tidy(() => tf.sum(patchSums(x, g), 0)) : tf.zeros([1])];
  }
  const chunk = Math.max(1, Math.min(M, Math.floor(PATCH_CHUNK_FLOATS / (T * K))));
  let aa: tf.Tensor | null = null;
  let colSum: tf.Tensor | null = null;
  for (let start = 0; start < M; start += chunk) {
    const m = Math.min(chunk, M - start);
    const [dAA, dSum] = tf.tidy(() => {
      const xc = m === M ? x : tf.slice(x, [start, 0, 0, 0], [m, -1, -1, -1]);
      const p = tf.reshape(extractPatches(xc, g), [m * T, K]) as tf.Tensor2D;
      return [gram(p), bias ? tf.sum(p, 0) : tf.zeros([1])];
    });
    if (aa === null) {
      aa = dAA;
      colSum = dSum;
    } else {
      const prevA: tf.Tensor = aa;
      const prevS: tf.Tensor = colSum!;
      aa = tf.add(prevA, dAA);
      colSum = tf.add(prevS, dSum);
      tf.dispose([prevA, prevS, dAA, dSum]);
    }
  }
  return [aa!, colSum!];
}

/**
 * KFC factors (Grosse & Martens 2016) in the TF/kfac-jax normalisation [P eq 15]: A = E_{n,t}[ā_t ā_tᵀ] and
 * G = E_{n,t}[ds_t ds_tᵀ] (ds_t per example, i.e. ×M), both averaged over the M·|T| rows; the block is
 * F̂ = |T|·A⊗G with |T| = Ho·Wo returned as `scale`.
 */
export function convKfcFactors(x: tf.Tensor4D, ds: tf.Tensor4D, g: ConvGeometry, bias: boolean): KroneckerStats {
  const [M, , , Cin] = x.shape;
  const [, Ho, Wo, O] = ds.shape;
  const T = Ho * Wo;
  const K = g.kernel[0] * g.kernel[1] * Cin;
  const [aa, colSum] = patchMoments(x, g, T, K, bias);
  const gg = tf.tidy(() => gram(tf.mul(tf.reshape(ds, [M * T, O]), M) as tf.Tensor2D));
  return withReadBack([aa, colSum, gg], (data, offsets) => ({
    kind: 'kronecker',
    A: momentFromGram(data, offsets[0]!, bias ? offsets[1]! : -1, M * T, K, symmetricGrams()),
    dA: bias ? K + 1 : K,
    G: momentFromGram(data, offsets[2]!, -1, M * T, O, symmetricGrams()),
    dG: O,
    scale: T,
  }));
}

/**
 * The cheaper conv factors of Appendix A [P eqs 16–19, ACKTR approxT2]: per example the mean patch
 * m_a = mean_t(ā_t) (homogeneous 1 appended: the mean of 1 is 1) and σ = Σ_t ds_t (×M); A = E_n[m_a m_aᵀ],
 * G = E_n[σ σᵀ]; the block is F̂ = A⊗G (= |T|² E[m_a m_aᵀ] ⊗ E[m_ds m_dsᵀ]).
 */
export function convCheapFactors(x: tf.Tensor4D, ds: tf.Tensor4D, g: ConvGeometry, bias: boolean): KroneckerStats {
  const M = x.shape[0];
  const [, Ho, Wo, O] = ds.shape;
  const T = Ho * Wo;
  const K = g.kernel[0] * g.kernel[1] * x.shape[3];
  const parts = tf.tidy(() => {
    const ma = tf.div(patchSums(x, g), T) as tf.Tensor2D;
    const sigma = tf.mul(tf.sum(ds, [1, 2]), M) as tf.Tensor2D;
    const out = [gram(ma), gram(sigma)];
    if (bias) out.push(tf.sum(ma, 0));
    return out;
  });
  return withReadBack(parts, (data, offsets) => ({
    kind: 'kronecker',
    A: momentFromGram(data, offsets[0]!, bias ? offsets[2]! : -1, M, K, symmetricGrams()),
    dA: bias ? K + 1 : K,
    G: momentFromGram(data, offsets[1]!, -1, M, O, symmetricGrams()),
    dG: O,
    scale: 1,
  }));
}

// -------------------------------------------------------------------------------------------------------------
// Doubly factored

/**
 * Doubly-factored statistics [P §4 eqs 5–8] of a dense layer whose input is a flattened per-example map of shape
 * `inputShape` = [H, W, C] (T = H·W, row-major flatten = [T, C]): per example the top singular pair
 * (σ, u, v) of A_n ∈ R^{T×C}, K = √σ u, Ψ = √σ v; returns E[K Kᵀ], E[Ψ Ψᵀ] and E[Ds Dsᵀ] (Ds per example).
 * The SVDs run on the CPU in float64 (src/linalg).
 */
export function doublyFactoredFactors(a: tf.Tensor, ds: tf.Tensor, inputShape: readonly number[]): DoublyFactoredStats {
  if (inputShape.length !== 3) throw new Error(`doubly-factored statistics need an [H, W, C] input, got [${inputShape}]`);
  const M = a.shape[0];
  const T = inputShape[0] * inputShape[1];
  const C = inputShape[2];
  const O = ds.size / M;
  if (a.size !== M * T * C) throw new Error(`doubly-factored input has ${a.size / M} units per example, expected ${T * C}`);
  const dd = tf.tidy(() => gram(tf.mul(tf.reshape(ds, [M, O]), M) as tf.Tensor2D));
  const D = withReadBack([dd], (data, offsets) => momentFromGram(data, offsets[0]!, -1, M, O, symmetricGrams()));
  const acts = a.dataSync() as Float32Array; // float32 activations, read once (the SVDs accumulate in float64)
  const { sigma, u, v } = topSingularPairs(acts, M, T, C);
  // E[K Kᵀ] = (1/M) Σ_n σ_n u_n u_nᵀ and E[Ψ Ψᵀ] = (1/M) Σ_n σ_n v_n v_nᵀ (the sign of the pair cancels)
  const KK = new Float64Array(T * T);
  const PP = new Float64Array(C * C);
  for (let n = 0; n < M; n++) {
    const w = sigma[n] / M;
    outerAdd(KK, u, n * T, T, w);
    outerAdd(PP, v, n * C, C, w);
  }
  return {
    kind: 'doubly-factored',
    K: KK,
    dK: T,
    Psi: PP,
    dPsi: C,
    D,
    dD: O,
  };
}

/** out += w · x xᵀ for x = vec[off, off + d). */
function outerAdd(out: Float64Array, vec: ArrayLike<number>, off: number, d: number, w: number): void {
  for (let i = 0; i < d; i++) {
    const xi = w * vec[off + i];
    if (xi === 0) continue;
    const row = i * d;
    for (let j = 0; j < d; j++) out[row + j] += xi * vec[off + j];
  }
}

// -------------------------------------------------------------------------------------------------------------
// Batch norm scale and shift

/**
 * The full Fisher block of a batch norm's [γ; β] [P §6.2.1, App. C]: per example dγ_c = Σ_sp ds·x̂ and
 * dβ_c = Σ_sp ds (ds per example, ×M; x̂ is the normalised input the layer captured); F̂ = E_n[g gᵀ], 2C × 2C.
 */
export function scaleShiftFactors(xhat: tf.Tensor, ds: tf.Tensor): ScaleShiftStats {
  const M = xhat.shape[0];
  const C = xhat.shape[xhat.rank - 1];
  const ff = tf.tidy(() => {
    const d = tf.mul(ds, M);
    const axes = xhat.rank > 2 ? Array.from({ length: xhat.rank - 2 }, (_, i) => i + 1) : [];
    const dg = axes.length ? tf.sum(tf.mul(d, xhat), axes) : tf.mul(d, xhat);
    const db = axes.length ? tf.sum(d, axes) : d;
    return gram(tf.concat([tf.reshape(dg, [M, C]), tf.reshape(db, [M, C])], 1) as tf.Tensor2D);
  });
  return withReadBack([ff], (data, offsets) => ({ kind: 'scale-shift', F: momentFromGram(data, offsets[0]!, -1, M, 2 * C, symmetricGrams()), d: 2 * C }));
}
