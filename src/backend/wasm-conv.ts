/**
 * Conv2D backprop kernels for the wasm backend, built from XNNPACK products and
 * forward convolutions.
 *
 * wasm has no `Conv2DBackpropFilter` kernel at all, and its `Conv2DBackpropInput`
 * is a scalar C++ loop. Both are replaced by kernels, registered for 'wasm' only,
 * so every op whose gradient needs them (conv2d, fused.conv2d, conv2dTranspose)
 * is covered and other backends keep their native kernels.
 *
 * Notation: x [N,H,W,Ci], filter w [kh,kw,Ci,Co], dy [N,Ho,Wo,Co], strides
 * (sh,sw), padding (top,left) from tfjs's own `computeConv2DInfo`, dilation 1.
 *
 * - dW[a,b,c,o] = Σ_{n,i,j} xpad[n, i·sh+a, j·sw+b, c] · dy[n,i,j,o] = Pᵀ·DY, one
 *   XNNPACK product of the transposed im2col matrix Pᵀ [kh·kw·Ci, N·Ho·Wo] (built
 *   by a loop over the wasm heap, in chunks of images to bound its memory (64 MB)) with
 *   dy viewed as [N·Ho·Wo, Co]; its rows come out in HWIO order.
 *   (Measured alternative: dW as a forward convolution of xᵀ with dyᵀ as the
 *   filter, dilated by the stride. It is exact too but 1.2–2× slower, because
 *   wasm's Conv2D transposes and repacks its whole filter, here as large as dy,
 *   on every call.)
 * - dx = the stride-1 'valid' convolution of dy, zero-padded by kh-1-top above,
 *   with the spatially reversed filter whose in/out channels are swapped. The
 *   filter is small, so wasm's Conv2D handles this one well. For a stride s > 1,
 *   one such convolution per stride phase with the sub-filter w[r::s] (no
 *   multiplications by the zeros of a stride-dilated dy); unequal strides use the
 *   stride-dilated dy.
 */
import * as tf from '@tensorflow/tfjs';
import { asTensor, compositeKernel, pair, spatialWindow } from './kernel-util';

type ConvPad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

/** Conv geometry exactly as the tfjs kernels compute it (NHWC). */
function convInfo(
  xShape: number[],
  filterShape: number[],
  strides: number | [number, number],
  pad: ConvPad,
  dimRoundingMode: Rounding,
): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
}

/**
 * Floats per im2col chunk (default 2²⁴ = 64 MB): bounds the scratch memory of the
 * filter gradient. Fewer, larger products are faster (measured: 2²⁰ takes 1.5–2×
 * as long as one chunk), so only very large layers are split.
 */
export const im2colLimits = { chunkFloats: 1 << 24 };

/** The members of the wasm backend that the im2col loop uses. */
interface HeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * Transposed im2col of an NHWC input for images [n0, n1):
 * out[(a·kw + b)·Ci + c, ((n−n0)·Ho + i)·Wo + j] = x[n, i·sh + a − top, j·sw + b − left, c],
 * zero where that position lies in the padding. Writes run contiguously along j;
 * the reads stay within one input row.
 */
export function im2colTransposed(
  x: Float32Array,
  info: tf.backend_util.Conv2DInfo,
  n0: number,
  n1: number,
  out: Float32Array,
): void {
  const { inHeight: h, inWidth: w, inChannels: ci, outHeight: ho, outWidth: wo } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;
  const cols = (n1 - n0) * ho * wo;
  let col0 = 0;
  for (let n = n0; n < n1; n++) {
    for (let i = 0; i < ho; i++, col0 += wo) {
      for (let a = 0; a < kh; a++) {
        const r = i * sh + a - top;
        const rowInside = r >= 0 && r < h;
        const xRow = (n * h + r) * w;
        for (let b = 0; b < kw; b++) {
          // Output columns j whose input column j·sw + b − left lies inside the input.
          const jLo = Math.max(0, Math.ceil((left - b) / sw));
          const jHi = Math.min(wo, Math.floor((w - 1 + left - b) / sw) + 1);
          let o = (a * kw + b) * ci * cols + col0;
          const step = sw * ci;
          for (let c = 0; c < ci; c++, o += cols) {
            // Plain loops rather than fill(): these runs are short and fill() calls cost more than they save.
            if (!rowInside || jHi <= jLo) {
              for (let j = 0; j < wo; j++) out[o + j] = 0;
              continue;
            }
            for (let j = 0; j < jLo; j++) out[o + j] = 0;
            let src = (xRow + jLo * sw + b - left) * ci + c;
            for (let j = jLo; j < jHi; j++, src += step) out[o + j] = x[src]!;
            for (let j = jHi; j < wo; j++) out[o + j] = 0;
          }
        }
      }
    }
  }
}

/**
 * The filter gradient of an NHWC conv2d (dilation 1) on the wasm backend: Pᵀ·DY
 * with Pᵀ built chunk by chunk on the wasm heap. Must run inside `tf.tidy`.
 */
export function conv2dFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  strides: number | [number, number],
  pad: ConvPad,
  dimRoundingMode: Rounding,
  backend: object,
): tf.Tensor4D {
  const info = convInfo(x.shape, filterShape, strides, pad, dimRoundingMode);
  const be = backend as HeapBackend;
  const [n, , , co] = dy.shape;
  const rows = info.filterHeight * info.filterWidth * info.inChannels;
  const perImage = info.outHeight * info.outWidth;
  const imagesPerChunk = Math.max(1, Math.floor(im2colLimits.chunkFloats / (rows * perImage)));
  const dy2 = dy.reshape([n * perImage, co]);
  let acc: tf.Tensor | undefined;
  for (let n0 = 0; n0 < n; n0 += imagesPerChunk) {
    const n1 = Math.min(n, n0 + imagesPerChunk);
    const cols = (n1 - n0) * perImage;
    const pInfo = be.makeOutput([rows, cols], 'float32');
    const p = tf.engine().makeTensorFromTensorInfo(pInfo, backend as tf.KernelBackend); // disposed by the caller's tidy
    // Views after the allocation: it may have grown the heap.
    im2colTransposed(be.typedArrayFromHeap(x) as Float32Array, info, n0, n1, be.typedArrayFromHeap(pInfo) as Float32Array);
    const d = n1 - n0 === n ? dy2 : tf.slice(dy2, [n0 * perImage, 0], [cols, co]);
    const part = tf.matMul(p, d);
    acc = acc ? tf.add(acc, part) : part;
  }
  return acc!.reshape(filterShape);
}

/** Insert (s-1) zeros between the rows and between the columns of an NHWC tensor (trailing zeros kept). */
export function dilateSpatial(t: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  const [n, h, w, c] = t.shape;
  let y: tf.Tensor4D = t;
  if (sh > 1) {
    y = tf.pad(y.reshape([n, h, 1, w * c]), [
      [0, 0],
      [0, 0],
      [0, sh - 1],
      [0, 0],
    ]).reshape([n, h * sh, w, c]);
  }
  if (sw > 1) {
    const rows = y.shape[1];
    y = tf.pad(y.reshape([n * rows, w, 1, c]), [
      [0, 0],
      [0, 0],
      [0, sw - 1],
      [0, 0],
    ]).reshape([n, rows, w * sw, c]);
  }
  return y;
}

/**
 * The input gradient of an NHWC conv2d (dilation 1) via forward convolutions:
 * one for stride 1 (or unequal strides, via the stride-dilated dy), s² small ones
 * for an equal stride s > 1 (see `conv2dInputGradPolyphase`).
 */
export function conv2dInputGrad(
  xShape: [number, number, number, number],
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: number | [number, number],
  pad: ConvPad,
  dimRoundingMode: Rounding,
  backend: object,
): tf.Tensor4D {
  const info = convInfo(xShape, filter.shape, strides, pad, dimRoundingMode);
  if (info.strideHeight === info.strideWidth && info.strideHeight > 1) {
    return conv2dInputGradPolyphase(xShape, dy, filter, info, backend);
  }
  const [kh, kw] = [info.filterHeight, info.filterWidth];
  const [, h, w] = xShape;
  const dyd = dilateSpatial(dy, info.strideHeight, info.strideWidth);
  const dyw = spatialWindow(
    dyd,
    info.padInfo.top - (kh - 1),
    h + kh - 1,
    info.padInfo.left - (kw - 1),
    w + kw - 1,
  );
  const wRev = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]); // [kh, kw, Co, Ci]
  return tf.conv2d(dyw, wRev, 1, 'valid');
}

/**
 * Input gradient for an equal stride s > 1 without multiplying by the zeros of a
 * stride-dilated dy (which would cost s² times the forward FLOPs).
 *
 * Input row p receives filter rows a ≡ p + top (mod s) only. Writing
 * p + top = P·s + r, the rows of phase r are dx[P·s + r − top] =
 * Σ_t dy[P − t] · w[r + s·t]: a stride-1 convolution of dy with the sub-filter
 * w[r::s] (reversed, in/out channels swapped). The s² phases (r, r') are computed
 * over a common range of P and interleaved into dx by one loop over the wasm heap
 * (phases without taps, e.g. 3 of the 4 of a 1×1 stride-2 conv, are zeros there).
 * Must run inside `tf.tidy`.
 */
function conv2dInputGradPolyphase(
  xShape: [number, number, number, number],
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  info: tf.backend_util.Conv2DInfo,
  backend: object,
): tf.Tensor4D {
  const s = info.strideHeight;
  const [, h, w, ci] = xShape;
  const [kh, kw, , co] = filter.shape;
  const { top, left } = info.padInfo;
  const p0 = Math.floor(top / s);
  const p1 = Math.floor((h - 1 + top) / s) + 1;
  const q0 = Math.floor(left / s);
  const q1 = Math.floor((w - 1 + left) / s) + 1;
  const phases: (tf.Tensor4D | null)[] = [];
  for (let r = 0; r < s; r++) {
    for (let rc = 0; rc < s; rc++) {
      const tr = r < kh ? Math.ceil((kh - r) / s) : 0; // taps of the sub-filter
      const tc = rc < kw ? Math.ceil((kw - rc) / s) : 0;
      if (tr === 0 || tc === 0) {
        phases.push(null);
        continue;
      }
      const sub = tf.stridedSlice(filter, [r, rc, 0, 0], [kh, kw, ci, co], [s, s, 1, 1]) as tf.Tensor4D;
      const subRev = tf.transpose(tf.reverse(sub, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D; // [tr, tc, Co, Ci]
      const win = spatialWindow(dy, p0 - (tr - 1), p1 - p0 + tr - 1, q0 - (tc - 1), q1 - q0 + tc - 1);
      phases.push(tf.conv2d(win, subRev, 1, 'valid')); // [N, p1−p0, q1−q0, Ci]
    }
  }
  const be = backend as HeapBackend;
  const outInfo = be.makeOutput(xShape, 'float32');
  const out = tf.engine().makeTensorFromTensorInfo(outInfo, backend as tf.KernelBackend) as tf.Tensor4D;
  const views = phases.map((t) => (t ? (be.typedArrayFromHeap(t) as Float32Array) : null));
  interleavePhases(views, s, top - p0 * s, left - q0 * s, xShape, p1 - p0, q1 - q0, be.typedArrayFromHeap(outInfo) as Float32Array);
  return out;
}

/**
 * dx[n, p, q, :] = phase[(p+r0) mod s][(q+c0) mod s][n, ⌊(p+r0)/s⌋, ⌊(q+c0)/s⌋, :]
 * (zeros for a null phase); each phase is [N, ph, pw, Ci].
 */
export function interleavePhases(
  phases: (Float32Array | null)[],
  s: number,
  r0: number,
  c0: number,
  [n, h, w, ci]: [number, number, number, number],
  ph: number,
  pw: number,
  out: Float32Array,
): void {
  let o = 0;
  for (let b = 0; b < n; b++) {
    for (let p = 0; p < h; p++) {
      const rr = p + r0;
      const rowPhase = (rr % s) * s;
      const rowBase = (b * ph + Math.floor(rr / s)) * pw;
      for (let q = 0; q < w; q++, o += ci) {
        const cc = q + c0;
        const src = phases[rowPhase + (cc % s)];
        if (!src) {
          for (let c = 0; c < ci; c++) out[o + c] = 0;
          continue;
        }
        const i = (rowBase + Math.floor(cc / s)) * ci;
        for (let c = 0; c < ci; c++) out[o + c] = src[i + c]!;
      }
    }
  }
}

const toNHWC = (t: tf.Tensor4D) => tf.transpose(t, [0, 2, 3, 1]);

/** Explicit NCHW padding [[0,0],[0,0],[t,b],[l,r]] reordered for NHWC data. */
function padNHWC(a: ConvBackpropAttrs): ConvPad {
  const p = a.pad;
  if (a.dataFormat !== 'NCHW' || !Array.isArray(p)) return p;
  return [p[0]!, p[2]!, p[3]!, p[1]!] as tf.backend_util.ExplicitPadding;
}
const toNCHW = (t: tf.Tensor4D) => tf.transpose(t, [0, 3, 1, 2]);

interface ConvBackpropAttrs {
  strides: number | [number, number];
  pad: ConvPad;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: Rounding;
}

/** Kernel function for 'Conv2DBackpropFilter' (inputs x, dy; attr filterShape). */
export const conv2dBackpropFilterKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const a = attrs as unknown as ConvBackpropAttrs & { filterShape: [number, number, number, number] };
  return compositeKernel(backend, () => {
    let x = asTensor<tf.Rank.R4>(inputs.x!, backend);
    let dy = asTensor<tf.Rank.R4>(inputs.dy!, backend);
    if (a.dataFormat === 'NCHW') {
      x = toNHWC(x);
      dy = toNHWC(dy);
    }
    if (x.dtype !== 'float32') x = tf.cast(x, 'float32');
    return conv2dFilterGrad(x, dy, a.filterShape, pair(a.strides), padNHWC(a), a.dimRoundingMode, backend);
  });
};

/** Kernel function for 'Conv2DBackpropInput' (inputs dy, filter; attr inputShape). */
export const conv2dBackpropInputKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const a = attrs as unknown as ConvBackpropAttrs & { inputShape: [number, number, number, number] };
  return compositeKernel(backend, () => {
    let dy = asTensor<tf.Rank.R4>(inputs.dy!, backend);
    const filter = asTensor<tf.Rank.R4>(inputs.filter!, backend);
    let xShape = a.inputShape;
    const nchw = a.dataFormat === 'NCHW';
    if (nchw) {
      dy = toNHWC(dy);
      xShape = [xShape[0], xShape[2], xShape[3], xShape[1]];
    }
    const dx = conv2dInputGrad(xShape, dy, filter, pair(a.strides), padNHWC(a), a.dimRoundingMode, backend);
    return nchw ? toNCHW(dx) : dx;
  });
};
