/**
 * A correct AvgPool gradient for 'same' padding, on every backend.
 *
 * tfjs 4.22's AvgPool forward divides each window's sum by the number of VALID (non-padding) inputs, as TensorFlow
 * does, but its gradient (AvgPoolGrad, on cpu and wasm alike) divides by the full window size kh·kw. Where 'same'
 * padding makes windows overlap the border, the gradient is therefore wrong (measured here against finite differences:
 * 3×3/2 'same' on 8×8 gives half the true directional derivative). The paper's CIFAR net uses exactly such pools.
 *
 * Fix: rescale dy by kh·kw / count(valid inputs of the window) and hand it to the stock gradient, which then gives
 * each valid input dy / count, the derivative of the forward pass.
 */
import * as tf from '@tensorflow/tfjs';

let installed = false;

/** Number of valid inputs in each output window along one dimension. */
function validCounts(inSize: number, outSize: number, k: number, s: number, padBefore: number): number[] {
  const out: number[] = [];
  for (let o = 0; o < outSize; o++) {
    const start = o * s - padBefore;
    out.push(Math.min(start + k, inSize) - Math.max(start, 0));
  }
  return out;
}

export function registerAvgPoolGradFix(): void {
  if (installed) return;
  const stock = tf.getGradient('AvgPool');
  if (!stock) throw new Error('AvgPool gradient is not registered: import @tensorflow/tfjs before the backend fixes');
  tf.registerGradient({
    kernelName: 'AvgPool',
    inputsToSave: stock.inputsToSave,
    outputsToSave: stock.outputsToSave,
    gradFunc: (dy, saved, attrs) => {
      const a = attrs as unknown as { filterSize: number | [number, number]; strides: number | [number, number]; pad: unknown };
      const x = saved[0] as tf.Tensor4D;
      const [kh, kw] = typeof a.filterSize === 'number' ? [a.filterSize, a.filterSize] : a.filterSize;
      const [sh, sw] = typeof a.strides === 'number' ? [a.strides, a.strides] : a.strides;
      const g = dy as tf.Tensor4D;
      if (a.pad !== 'same') return stock.gradFunc(dy, saved, attrs);
      const [H, W] = [x.shape[1], x.shape[2]];
      const [Ho, Wo] = [g.shape[1], g.shape[2]];
      const padTop = Math.floor(Math.max((Ho - 1) * sh + kh - H, 0) / 2);
      const padLeft = Math.floor(Math.max((Wo - 1) * sw + kw - W, 0) / 2);
      const rows = validCounts(H, Ho, kh, sh, padTop);
      const cols = validCounts(W, Wo, kw, sw, padLeft);
      if (rows.every((r) => r === kh) && cols.every((c) => c === kw)) return stock.gradFunc(dy, saved, attrs);
      const scale = new Float32Array(Ho * Wo);
      for (let i = 0; i < Ho; i++) for (let j = 0; j < Wo; j++) scale[i * Wo + j] = (kh * kw) / (rows[i] * cols[j]);
      const scaled = tf.mul(g, tf.tensor4d(scale, [1, Ho, Wo, 1]));
      return stock.gradFunc(scaled, saved, attrs);
    },
  });
  installed = true;
}
