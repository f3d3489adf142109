/**
 * Kernels for the wasm backend written as plain loops over the wasm heap:
 * `MaxPoolGrad` (wasm's own is slow) and `UnsortedSegmentSum` (missing on wasm;
 * the gradient of `tf.gather` needs it).
 *
 * The loops read inputs and write the output in place in wasm memory, with no
 * copies. They are memory-bound, O(input size · window area), and run in V8's
 * optimising compiler at a few hundred million elements per second.
 */
import * as tf from '@tensorflow/tfjs';

/** The members of the wasm backend that heap kernels use. */
interface HeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * Max-pool gradient for any window, stride and padding (dilation 1), NHWC.
 *
 * Each output's gradient goes to the first maximum of its window in row-major
 * window order (strict `>` from -∞), exactly the rule of tfjs's cpu kernel and
 * of TensorFlow: with ties (e.g. windows of ReLU zeros, repeated pixel values)
 * one input gets the whole gradient, not every tied input. NaNs never win and a
 * window with no finite-or-+∞ maximum passes no gradient. Overlapping windows
 * add their contributions.
 */
export function maxPoolGradLoop(
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  dx: Float32Array,
  info: tf.backend_util.Conv2DInfo,
): void {
  const { batchSize: nb, inHeight: h, inWidth: w, inChannels: c, outHeight: ho, outWidth: wo } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const best = new Float64Array(c);
  const pos = new Int32Array(c);
  dx.fill(0);
  let dyBase = 0;
  for (let n = 0; n < nb; n++) {
    for (let i = 0; i < ho; i++) {
      const r0 = i * sh - top;
      const rMin = Math.max(0, r0);
      const rMax = Math.min(h, r0 + fh);
      for (let j = 0; j < wo; j++, dyBase += c) {
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

/** Kernel function for 'MaxPoolGrad' on wasm (inputs dy, input, output). */
export const maxPoolGradKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
  const a = attrs as unknown as {
    filterSize: number | [number, number];
    strides: number | [number, number];
    pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
  const be = backend as unknown as HeapBackend;
  const out = be.makeOutput(input.shape, 'float32');
  // Views are taken after allocating the output: allocation may grow (and detach) the heap.
  maxPoolGradLoop(be.typedArrayFromHeap(input), be.typedArrayFromHeap(dy), be.typedArrayFromHeap(out) as Float32Array, info);
  return out;
};

/**
 * Kernel function for 'UnsortedSegmentSum' on wasm: out[s] = Σ_{i: ids[i] = s} x[i]
 * over the leading `segmentIds.rank` axes; ids outside [0, numSegments) are dropped.
 */
export const unsortedSegmentSumKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  const idRank = segmentIds.shape.length;
  const outShape = [numSegments, ...x.shape.slice(idRank)];
  const inner = x.shape.slice(idRank).reduce((p, d) => p * d, 1);
  const be = backend as unknown as HeapBackend;
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
