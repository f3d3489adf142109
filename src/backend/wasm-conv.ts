/**
 * Conv2D backprop kernels for the wasm backend, built from forward convolutions
 * (which wasm runs through XNNPACK).
 *
 * wasm has no `Conv2DBackpropFilter` kernel at all, and its `Conv2DBackpropInput`
 * is a scalar C++ loop. Both are replaced by kernels, registered for 'wasm' only,
 * so every op whose gradient needs them (conv2d, fused.conv2d, conv2dTranspose)
 * is covered and other backends keep their native kernels.
 *
 * Notation: x [N,H,W,Ci], filter w [kh,kw,Ci,Co], dy [N,Ho,Wo,Co], strides
 * (sh,sw), padding (top,left) from tfjs's own `computeConv2DInfo`, dilation 1.
 *
 * - dW[a,b,c,o] = Σ_{n,i,j} xpad[n, i·sh+a, j·sw+b, c] · dy[n,i,j,o]: a stride-1
 *   convolution whose batch is c, whose input channels are n and whose filter is
 *   dy (spatial size Ho×Wo) dilated by the stride: conv(xpad^T[c,·,·,n],
 *   dy^T[i,j,n,o], dilation (sh,sw)). xpad is cropped to the rows the forward pass
 *   read, (Ho-1)·sh+kh, so the result is exactly kh×kw.
 * - dx = the stride-1 'valid' convolution of dy dilated by the stride (s-1 zeros
 *   between its rows/columns), zero-padded by kh-1-top above, with the spatially
 *   reversed filter whose in/out channels are swapped.
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

/** The filter gradient of an NHWC conv2d (dilation 1) via one forward convolution. */
export function conv2dFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  strides: number | [number, number],
  pad: ConvPad,
  dimRoundingMode?: Rounding,
): tf.Tensor4D {
  const info = convInfo(x.shape, filterShape, strides, pad, dimRoundingMode);
  const [kh, kw] = [info.filterHeight, info.filterWidth];
  const [sh, sw] = [info.strideHeight, info.strideWidth];
  // The part of the zero-padded input that the forward pass read.
  const xw = spatialWindow(
    x,
    -info.padInfo.top,
    (info.outHeight - 1) * sh + kh,
    -info.padInfo.left,
    (info.outWidth - 1) * sw + kw,
  );
  const xT = tf.transpose(xw, [3, 1, 2, 0]); // [Ci, ., ., N]
  const dyT = tf.transpose(dy, [1, 2, 0, 3]); // [Ho, Wo, N, Co]
  const g = tf.conv2d(xT, dyT, 1, 'valid', 'NHWC', [sh, sw]); // [Ci, kh, kw, Co]
  return tf.transpose(g, [1, 2, 0, 3]);
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

/** The input gradient of an NHWC conv2d (dilation 1) via one forward convolution. */
export function conv2dInputGrad(
  xShape: [number, number, number, number],
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: number | [number, number],
  pad: ConvPad,
  dimRoundingMode?: Rounding,
): tf.Tensor4D {
  const info = convInfo(xShape, filter.shape, strides, pad, dimRoundingMode);
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

const toNHWC = (t: tf.Tensor4D) => tf.transpose(t, [0, 2, 3, 1]);
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
    return conv2dFilterGrad(x, dy, a.filterShape, pair(a.strides), a.pad, a.dimRoundingMode);
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
    const dx = conv2dInputGrad(xShape, dy, filter, pair(a.strides), a.pad, a.dimRoundingMode);
    return nchw ? toNCHW(dx) : dx;
  });
};
