/**
 * Ops that the training step spends many small kernels on, written once for every backend, with a single-kernel
 * fast path where the engine registers one (the native engine: src/backend/native-kernels.ts).
 *
 * - `chunkedBatchNorm`: training-mode batch normalisation over chunks of examples (the paper's rbz). Its gradient is
 *   the closed form (dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)) per chunk, dγ = Σ dy·x̂, dβ = Σ dy) instead of tfjs
 *   differentiating through moments, which took ~30 kernels per layer. Kernels `DkfacBatchNorm` /
 *   `DkfacBatchNormGrad` when registered for the active backend, else the same maths in tf ops.
 * - `DkfacPatches` / `DkfacPatchSums` (src/kfac/factors.ts `extractPatches`, `patchSums`): every conv patch, or the
 *   per-example sum of the patches, in one kernel where registered; `DkfacGram` (`gram`): the factors' XᵀX;
 *   `DkfacPatchGram` (`patchGram`): the Gram matrix of a stride-1 convolution's patches without the patches.
 * - `registerReluGradFix`: Relu's gradient as one `DkfacReluGrad` kernel where registered (tfjs's own is
 *   Cast + Step + Multiply); other backends keep tfjs's gradient.
 */
import * as tf from '@tensorflow/tfjs';

export const BATCH_NORM_KERNEL = 'DkfacBatchNorm';
export const BATCH_NORM_GRAD_KERNEL = 'DkfacBatchNormGrad';
export const RELU_GRAD_KERNEL = 'DkfacReluGrad';
/** Patch extraction (im2col) for K-FAC's KFC factors: inputs {x}, attrs {kernel, strides, padding}. */
export const PATCHES_KERNEL = 'DkfacPatches';
/** Per-example sums of the conv patches for the cheap Appendix-A factors: inputs {x}, attrs as DkfacPatches. */
export const PATCH_SUMS_KERNEL = 'DkfacPatchSums';

/**
 * The Gram matrix XᵀX of a [rows, K] matrix for K-FAC's factors: inputs {x}, output [K, K]. The native engine runs
 * it as BLAS's symmetric rank-k update (half a general product's multiply-adds); elsewhere it is tf.matMul(x, x, true).
 */
export const GRAM_KERNEL = 'DkfacGram';

/**
 * PᵀP of every patch of a stride-1 convolution (the KFC input factor's Gram, [K, K] with K = kh·kw·Cin), computed
 * from the input without the patches: inputs {x}, attrs {kernel, padding}. Only the native engine has it
 * (native/src/linalg.cc `PatchGram`: C×C products per shift of the kernel instead of K×K per position).
 */
export const PATCH_GRAM_KERNEL = 'DkfacPatchGram';

/** Whether the active backend has a kernel registered under `name`. */
export function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

export interface BatchNormResult<T extends tf.Tensor> {
  /** γ x̂ + β */
  y: T;
  /** the normalised input, (x − mean)/sqrt(var + eps) per chunk */
  xhat: T;
  /** per-chunk mean and (biased) variance, [chunks, C] */
  mean: tf.Tensor2D;
  variance: tf.Tensor2D;
}

/**
 * Batch normalisation of x ([N, ..., C]) over `chunks` equal chunks of consecutive examples (N divisible by
 * `chunks`), differentiable in x, γ and β. The statistics and x̂ are side outputs (not differentiated).
 */
export function chunkedBatchNorm<T extends tf.Tensor>(
  x: T,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  chunks: number,
  eps: number,
): BatchNormResult<T> {
  const C = x.shape[x.rank - 1]!;
  const N = x.shape[0]!;
  if (N % chunks !== 0) throw new Error(`chunkedBatchNorm: ${N} examples do not split into ${chunks} equal chunks`);
  const M = x.size / chunks / C;
  const attrs = { chunks, eps };
  let side: Omit<BatchNormResult<T>, 'y'> | undefined;
  const forward = (xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    let y: tf.Tensor;
    let xhat: tf.Tensor;
    let mean: tf.Tensor2D;
    let variance: tf.Tensor2D;
    if (hasKernel(BATCH_NORM_KERNEL)) {
      [y, xhat, mean, variance] = tf.engine().runKernel(BATCH_NORM_KERNEL, { x: xi, gamma: g, beta: b }, attrs) as [
        tf.Tensor, tf.Tensor, tf.Tensor2D, tf.Tensor2D,
      ];
    } else {
      const xr = tf.reshape(xi, [chunks, M, C]);
      const m = tf.moments(xr, 1, true);
      xhat = tf.reshape(tf.mul(tf.sub(xr, m.mean), tf.rsqrt(tf.add(m.variance, eps))), xi.shape);
      y = tf.add(tf.mul(xhat, g), b);
      mean = tf.reshape(m.mean, [chunks, C]);
      variance = tf.reshape(m.variance, [chunks, C]);
    }
    // The engine runs this forward inside a tidy that keeps only `value`: the side outputs are kept here and
    // handed to the caller's scope below.
    side = { xhat: tf.keep(xhat) as T, mean: tf.keep(mean), variance: tf.keep(variance) };
    save([xhat, g, variance]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [h, gs, v] = saved as [tf.Tensor, tf.Tensor, tf.Tensor2D];
        const d = dy as tf.Tensor;
        if (hasKernel(BATCH_NORM_GRAD_KERNEL)) {
          return tf.engine().runKernel(BATCH_NORM_GRAD_KERNEL, { dy: d, xhat: h, gamma: gs, variance: v }, attrs) as tf.Tensor[];
        }
        const dyr = tf.reshape(d, [chunks, M, C]);
        const hr = tf.reshape(h, [chunks, M, C]);
        const s1 = tf.sum(dyr, 1, true);
        const s2 = tf.sum(tf.mul(dyr, hr), 1, true);
        const a = tf.mul(gs, tf.rsqrt(tf.add(tf.reshape(v, [chunks, 1, C]), eps)));
        const dx = tf.mul(a, tf.sub(tf.sub(dyr, tf.div(s1, M)), tf.mul(hr, tf.div(s2, M))));
        return [tf.reshape(dx, d.shape), tf.reshape(tf.sum(s2, [0, 1]), gs.shape), tf.reshape(tf.sum(s1, [0, 1]), gs.shape)];
      },
    };
  };
  const y = tf.customGrad(forward as unknown as Parameters<typeof tf.customGrad>[0])(x, gamma, beta) as T;
  const kept = side!;
  const out = { y, xhat: kept.xhat.clone(), mean: kept.mean.clone(), variance: kept.variance.clone() };
  tf.dispose([kept.xhat, kept.mean, kept.variance]);
  return out;
}

let reluFixed = false;

/** Relu's gradient through `DkfacReluGrad` where the active backend registers it (idempotent). */
export function registerReluGradFix(): void {
  if (reluFixed) return;
  const stock = tf.getGradient('Relu');
  if (!stock) throw new Error('Relu gradient is not registered: import @tensorflow/tfjs before the backend fixes');
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: stock.inputsToSave,
    outputsToSave: stock.outputsToSave,
    gradFunc: (dy, saved, attrs) => {
      if (!hasKernel(RELU_GRAD_KERNEL)) return stock.gradFunc(dy, saved, attrs);
      const x = saved[0]!;
      return { x: () => tf.engine().runKernel(RELU_GRAD_KERNEL, { dy: dy as tf.Tensor, x }, {}) as tf.Tensor };
    },
  });
  reluFixed = true;
}
