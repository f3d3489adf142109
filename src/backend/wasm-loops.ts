/**
 * Kernels for the wasm backend written as plain loops over the wasm heap, for
 * memory-bound operations where wasm's own kernel is slow or missing:
 *
 * - `MaxPoolGrad`: wasm's kernel is a generic scalar loop (~180 ms for a
 *   128×32×32×32 input); 2×2/stride-2 windows get a branch-free path (~12–25 ms).
 * - `AvgPoolGrad`: wasm's kernel is a generic 3-D pooling loop (~180 ms there).
 * - `Sum` / `Mean` over axes that are not innermost (bias gradients, batch-norm
 *   moments, global average pooling): wasm transposes the whole input first
 *   (large ones run as XNNPACK average pooling plus a small loop instead).
 * - `UnsortedSegmentSum`: missing on wasm; the gradient of `tf.gather` needs it.
 *
 * The loops read their inputs and write their output in place in wasm memory.
 * Typed-array views are taken after the output is allocated, because
 * allocation may grow (and so detach) the wasm heap.
 */
import * as tf from '@tensorflow/tfjs';
import { asTensor, compositeKernel } from './kernel-util';

/** The members of the wasm backend that heap kernels use. */
interface HeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

const heap = (backend: object) => backend as HeapBackend;
const prod = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

type PoolPad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
interface PoolGradAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: PoolPad;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function poolInfo(xShape: number[], a: PoolGradAttrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computePool2DInfo(
    xShape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
}

// ---------------------------------------------------------------------------
// MaxPoolGrad

/**
 * Max-pool gradient, NHWC, any window, stride and padding (dilation 1).
 *
 * Tie rule: each output's gradient goes to the FIRST maximum of its window in
 * row-major window order (strict `>` starting from -∞), which is the rule of
 * tfjs's cpu kernel and of TensorFlow. With ties (windows of ReLU zeros,
 * repeated pixel values) one input gets the whole gradient, never several.
 * Overlapping windows add their contributions. Windows containing NaN may
 * route their gradient differently from the cpu kernel (which skips NaNs).
 */
export function maxPoolGradLoop(
  x: Float32Array | Int32Array,
  dy: Float32Array,
  dx: Float32Array,
  info: tf.backend_util.Conv2DInfo,
): void {
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  if (fh === 2 && fw === 2 && sh === 2 && sw === 2 && x instanceof Float32Array) {
    maxPoolGrad2x2(x, dy, dx, info);
  } else {
    dx.fill(0);
    maxPoolGradWindows(x, dy, dx, info, 0, info.outHeight, 0, info.outWidth);
  }
}

/**
 * Accumulate the gradient of output windows [i0,i1)×[j0,j1) (all batches and
 * channels) into dx: the general path, with data-dependent branches.
 */
function maxPoolGradWindows(
  x: ArrayLike<number>,
  dy: Float32Array,
  dx: Float32Array,
  info: tf.backend_util.Conv2DInfo,
  i0: number,
  i1: number,
  j0: number,
  j1: number,
): void {
  const { batchSize: nb, inHeight: h, inWidth: w, inChannels: c, outHeight: ho, outWidth: wo } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const best = new Float64Array(c);
  const pos = new Int32Array(c);
  for (let n = 0; n < nb; n++) {
    for (let i = i0; i < i1; i++) {
      const r0 = i * sh - top;
      const rMin = Math.max(0, r0);
      const rMax = Math.min(h, r0 + fh);
      for (let j = j0; j < j1; j++) {
        const dyBase = ((n * ho + i) * wo + j) * c;
        const c0 = j * sw - left;
        const cMin = Math.max(0, c0);
        const cMax = Math.min(w, c0 + fw);
        best.fill(-Infinity);
        pos.fill(-1);
        for (let r = rMin; r < rMax; r++) {
          for (let col = cMin; col < cMax; col++) {
            const base = ((n * h + r) * w + col) * c;
            for (let d = 0; d < c; d++) {
              const v = x[base + d]!;
              if (v > best[d]!) {
                best[d] = v;
                pos[d] = base;
              }
            }
          }
        }
        for (let d = 0; d < c; d++) {
          const p = pos[d]!;
          if (p >= 0) dx[p + d] += dy[dyBase + d]!;
        }
      }
    }
  }
}

/**
 * 2×2 windows with stride 2: every full window is handled without branches
 * (first-max weights from the six pairwise comparisons), and each dx element of
 * a full window is written exactly once. Windows cut by padding and input
 * rows/columns no window covers are handled separately.
 */
function maxPoolGrad2x2(x: Float32Array, dy: Float32Array, dx: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: nb, inHeight: h, inWidth: w, inChannels: c, outHeight: ho, outWidth: wo } = info;
  const { top, left } = info.padInfo;
  // Output windows lying fully inside the input: i in [iLo, iHi), j in [jLo, jHi).
  const iLo = Math.ceil(top / 2);
  const iHi = Math.max(iLo, Math.min(ho, Math.floor((h + top - 2) / 2) + 1));
  const jLo = Math.ceil(left / 2);
  const jHi = Math.max(jLo, Math.min(wo, Math.floor((w + left - 2) / 2) + 1));
  const fullCover = iLo === 0 && jLo === 0 && iHi === ho && jHi === wo && 2 * ho === h && 2 * wo === w && !top && !left;
  if (!fullCover) dx.fill(0);
  const rowStride = w * c;
  for (let n = 0; n < nb; n++) {
    for (let i = iLo; i < iHi; i++) {
      for (let j = jLo; j < jHi; j++) {
        const o = ((n * ho + i) * wo + j) * c;
        const p0 = ((n * h + 2 * i - top) * w + 2 * j - left) * c;
        const p1 = p0 + c;
        const p2 = p0 + rowStride;
        const p3 = p2 + c;
        for (let d = 0; d < c; d++) {
          const v0 = x[p0 + d]!;
          const v1 = x[p1 + d]!;
          const v2 = x[p2 + d]!;
          const v3 = x[p3 + d]!;
          const g = dy[o + d]!;
          const a = +(v1 > v0);
          const b = +(v2 > v0);
          const e = +(v3 > v0);
          const f = +(v2 > v1);
          const k = +(v3 > v1);
          const m = +(v3 > v2);
          dx[p0 + d] = (1 - a) * (1 - b) * (1 - e) * g;
          dx[p1 + d] = a * (1 - f) * (1 - k) * g;
          dx[p2 + d] = b * f * (1 - m) * g;
          dx[p3 + d] = e * k * m * g;
        }
      }
    }
  }
  if (!fullCover) {
    // Border windows cut by 'same' padding (their pixels belong to no full window).
    const rows: [number, number][] = [];
    if (iLo > 0) rows.push([0, iLo]);
    if (iHi < ho) rows.push([iHi, ho]);
    for (const [a, b] of rows) maxPoolGradWindows(x, dy, dx, info, a, b, 0, wo);
    for (const [a, b] of [
      [0, jLo],
      [jHi, wo],
    ] as const) {
      if (b > a) maxPoolGradWindows(x, dy, dx, info, iLo, iHi, a, b);
    }
  }
}

/** Kernel function for 'MaxPoolGrad' on wasm (inputs dy, input, output). */
export const maxPoolGradKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
  const info = poolInfo(input.shape, attrs as unknown as PoolGradAttrs);
  const be = heap(backend);
  const out = be.makeOutput(input.shape, 'float32');
  const x = be.typedArrayFromHeap(input) as Float32Array | Int32Array;
  maxPoolGradLoop(x, be.typedArrayFromHeap(dy) as Float32Array, be.typedArrayFromHeap(out) as Float32Array, info);
  return out;
};

// ---------------------------------------------------------------------------
// AvgPoolGrad

/**
 * Average-pool gradient, NHWC: every input pixel of a window receives
 * dy / (filterHeight·filterWidth). Like tfjs's cpu and wasm kernels, the divisor
 * is the full window size even for windows cut by 'same' padding (tfjs's forward
 * avgPool divides those by the number of valid pixels instead; avgpool-grad.ts
 * corrects that at the gradient level, for every backend, relying on this contract).
 */
export function avgPoolGradLoop(dy: Float32Array, dx: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: nb, inHeight: h, inWidth: w, inChannels: c, outHeight: ho, outWidth: wo } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const scale = 1 / (fh * fw);
  dx.fill(0);
  for (let n = 0; n < nb; n++) {
    for (let i = 0; i < ho; i++) {
      const r0 = i * sh - top;
      const rMin = Math.max(0, r0);
      const rMax = Math.min(h, r0 + fh);
      for (let j = 0; j < wo; j++) {
        const o = ((n * ho + i) * wo + j) * c;
        const c0 = j * sw - left;
        const cMin = Math.max(0, c0);
        const cMax = Math.min(w, c0 + fw);
        for (let r = rMin; r < rMax; r++) {
          for (let col = cMin; col < cMax; col++) {
            const base = ((n * h + r) * w + col) * c;
            for (let d = 0; d < c; d++) dx[base + d] += dy[o + d]! * scale;
          }
        }
      }
    }
  }
}

/** Kernel function for 'AvgPoolGrad' on wasm (inputs dy, input). */
export const avgPoolGradKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
  const info = poolInfo(input.shape, attrs as unknown as PoolGradAttrs);
  const be = heap(backend);
  const out = be.makeOutput(input.shape, 'float32');
  avgPoolGradLoop(be.typedArrayFromHeap(dy) as Float32Array, be.typedArrayFromHeap(out) as Float32Array, info);
  return out;
};

// ---------------------------------------------------------------------------
// Sum / Mean over a block of axes that is not innermost

/**
 * If `axes` (sorted, unique) form one contiguous block [p, q) with q < rank,
 * the sizes [outer, reduced, inner] of x viewed as a 3-D array; otherwise null.
 */
export function middleReduction(shape: number[], axes: number[]): [number, number, number] | null {
  if (axes.length === 0) return null;
  const p = axes[0]!;
  const q = axes[axes.length - 1]! + 1;
  if (q - p !== axes.length || q >= shape.length) return null;
  return [prod(shape.slice(0, p)), prod(shape.slice(p, q)), prod(shape.slice(q))];
}

/** out[a, i] = scale · Σ_r x[a, r, i], accumulated in float64. */
export function reduceMiddleLoop(
  x: Float32Array,
  out: Float32Array,
  outer: number,
  reduced: number,
  inner: number,
  scale: number,
): void {
  const acc = new Float64Array(inner);
  for (let a = 0; a < outer; a++) {
    acc.fill(0);
    let base = a * reduced * inner;
    for (let r = 0; r < reduced; r++, base += inner) {
      for (let i = 0; i < inner; i++) acc[i] += x[base + i]!;
    }
    const o = a * inner;
    for (let i = 0; i < inner; i++) out[o + i] = acc[i]! * scale;
  }
}

/** From this many reduced rows on, a reduction runs through XNNPACK average pooling. */
const POOL_MIN_ROWS = 256;

/** The largest divisor of r in [8, 1024], or 0: the group size of the pooled reduction. */
function poolGroup(r: number): number {
  for (let g = Math.min(1024, r); g >= 8; g--) if (r % g === 0) return g;
  return 0;
}

/**
 * Wrap wasm's Sum or Mean kernel. float32 reductions over one contiguous block of
 * axes that is not innermost (bias gradients, batch-norm moments, global average
 * pooling), viewing x as [outer, R, inner]:
 * - R ≥ 256 with a divisor g in [8, 1024]: XNNPACK average pooling over groups
 *   of g rows (memory-bound, ~4 ms for 4 M elements), then the mean of the R/g
 *   group means by this same kernel: a hierarchical sum, accurate to ~1e-7;
 * - otherwise a loop accumulating in float64.
 * Everything else (innermost axes, which wasm does well; other dtypes; scattered
 * axes) goes to the original kernel, which transposes first.
 */
export function wrapReduction(original: tf.KernelFunc, kind: 'sum' | 'mean'): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    if (x.dtype !== 'float32' || prod(x.shape) === 0) return original(args);
    const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((a, b) => a - b);
    const split = middleReduction(x.shape, axes);
    if (!split) return original(args);
    const [outer, reduced, inner] = split;
    const outShape = keepDims
      ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
      : x.shape.filter((_, i) => !axes.includes(i));
    const scale = kind === 'mean' ? 1 / reduced : 1;
    const g = reduced >= POOL_MIN_ROWS ? poolGroup(reduced) : 0;
    if (g) {
      return compositeKernel(args.backend, () => {
        const groups = reduced / g;
        const x4 = asTensor(x, args.backend).reshape([outer, groups, g, inner]) as tf.Tensor4D;
        const means = tf.avgPool(x4, [1, g], [1, g], 'valid'); // [outer, groups, 1, inner]
        let m = groups > 1 ? tf.mean(means.reshape([outer, groups, inner]), 1) : means;
        if (kind === 'sum') m = tf.mul(m, reduced);
        return m.reshape(outShape);
      });
    }
    const be = heap(args.backend);
    const out = be.makeOutput(outShape, 'float32');
    reduceMiddleLoop(
      be.typedArrayFromHeap(x) as Float32Array,
      be.typedArrayFromHeap(out) as Float32Array,
      outer,
      reduced,
      inner,
      scale,
    );
    return out;
  };
}

// ---------------------------------------------------------------------------
// UnsortedSegmentSum

/**
 * Kernel function for 'UnsortedSegmentSum' on wasm: out[s] = Σ_{i: ids[i] = s} x[i]
 * over the leading `segmentIds.rank` axes; ids outside [0, numSegments) are dropped.
 */
export const unsortedSegmentSumKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  const idRank = segmentIds.shape.length;
  const outShape = [numSegments, ...x.shape.slice(idRank)];
  const inner = prod(x.shape.slice(idRank));
  const be = heap(backend);
  const out = be.makeOutput(outShape, x.dtype);
  const xs = be.typedArrayFromHeap(x);
  const ids = be.typedArrayFromHeap(segmentIds);
  const o = be.typedArrayFromHeap(out);
  o.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let k = 0; k < inner; k++) o[dst + k] += xs[src + k]!;
  }
  return out;
};
