/**
 * Wrappers for the wasm `BatchMatMul` and `_FusedMatMul` kernels.
 *
 * The wasm kernel sends a product to XNNPACK only when neither operand is
 * transposed and both have batch size 1; everything else runs a scalar blocked
 * loop at about 1 GFLOP/s instead of 10–18. tfjs's own matMul gradient uses the
 * transpose flags, so every dense layer's backward pass hit the slow loop.
 *
 * The wrappers rewrite such products into XNNPACK-eligible ones:
 * - transposed operands: explicit transposes, either of the inputs or, when that
 *   moves fewer elements, of the product computed the other way round (Cᵀ = op(B)ᵀ·op(A)ᵀ);
 * - a batched A times an unbatched B becomes one [B·M, K]×[K, N] product;
 * - other batched products with large enough matrices run as one XNNPACK
 *   product per batch element; tiny batched matrices keep the original loop.
 */
import * as tf from '@tensorflow/tfjs';
import { asTensor, compositeKernel, type KernelBackendArg } from './kernel-util';

/** Below this many multiply-adds per matrix a batched product stays on the original loop. */
const MIN_MACS_PER_BATCH_ITEM = 32 * 32 * 32;

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
}

const size = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

/** Swap the last two axes. */
function swapLast2(t: tf.Tensor): tf.Tensor {
  const r = t.rank;
  const perm = [...Array(r).keys()];
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return tf.transpose(t, perm);
}

/** Run a kernel function on Tensors and wrap its (freshly owned) output as a Tensor. */
function callKernel(
  kernel: tf.KernelFunc,
  backend: KernelBackendArg,
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap,
): tf.Tensor {
  const out = kernel({ inputs, backend, attrs }) as tf.TensorInfo;
  return tf.engine().makeTensorFromTensorInfo(out, backend as tf.KernelBackend);
}

/** Geometry of a (possibly batched, possibly transposed) product. */
function geometry(a: tf.TensorInfo, b: tf.TensorInfo, { transposeA, transposeB }: MatMulAttrs) {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const outBatchShape = tf.backend_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB);
  return { m, k, n, batchA: size(batchShapeA), batchB: size(batchShapeB), outBatchShape };
}

/**
 * op(A)·op(B) for 2-D (or batch-1) operands through untransposed products only,
 * choosing the cheaper of two rewrites by the elements moved (transposes) plus
 * the elements XNNPACK packs (the right operand, on every call):
 * - direct: transpose the flagged operands, then op(A)·op(B);
 * - swapped: (op(B)ᵀ·op(A)ᵀ)ᵀ, where a flagged operand is already in the needed layout.
 * E.g. a dense layer's input gradient dy·Wᵀ (m=128, k=256, n=4096) moves 0.6 M
 * elements swapped instead of 2.1 M direct. `mm` multiplies untransposed operands.
 */
function productUntransposed(
  a: tf.Tensor,
  b: tf.Tensor,
  t: MatMulAttrs,
  m: number,
  k: number,
  n: number,
  mm: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor,
): tf.Tensor {
  const direct = (t.transposeA ? m * k : 0) + (t.transposeB ? k * n : 0) + k * n;
  const swapped = (t.transposeB ? 0 : k * n) + (t.transposeA ? 0 : m * k) + k * m + m * n;
  if (swapped < direct) {
    return swapLast2(mm(t.transposeB ? b : swapLast2(b), t.transposeA ? a : swapLast2(a)));
  }
  return mm(t.transposeA ? swapLast2(a) : a, t.transposeB ? swapLast2(b) : b);
}

/** Wrap the original wasm BatchMatMul kernel function. */
export function wrapBatchMatMul(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, backend } = args;
    const attrs = args.attrs as unknown as MatMulAttrs;
    const a = inputs.a!;
    const b = inputs.b!;
    const g = geometry(a, b, attrs);
    const transposed = attrs.transposeA || attrs.transposeB;
    const batched = g.batchA > 1 || g.batchB > 1;
    if (!transposed && !batched) return original(args);
    if (batched && g.batchB > 1 && (g.m * g.k * g.n < MIN_MACS_PER_BATCH_ITEM || (g.batchA > 1 && g.batchA !== g.batchB))) {
      // Tiny matrices (per-op overhead would dominate) or mixed broadcasting: original loop.
      return original(args);
    }
    const plain = { transposeA: false, transposeB: false } as unknown as tf.NamedAttrMap;
    const mm2d = (x: tf.Tensor, y: tf.Tensor) => callKernel(original, backend, { a: x, b: y }, plain);
    return compositeKernel(backend, () => {
      const A = asTensor(a, backend);
      const B = asTensor(b, backend);
      const outShape = [...g.outBatchShape, g.m, g.n];
      if (!batched) {
        return productUntransposed(A, B, attrs, g.m, g.k, g.n, mm2d).reshape(outShape);
      }
      if (g.batchB === 1) {
        // One tall product: [batch·M, K] × [K, N].
        const A3 = (attrs.transposeA ? swapLast2(A) : A).reshape([1, g.batchA * g.m, g.k]);
        const B3 = (attrs.transposeB ? swapLast2(B) : B).reshape([1, g.k, g.n]);
        return mm2d(A3, B3).reshape(outShape);
      }
      // One XNNPACK product per batch element (A may be shared across the batch).
      const As = A.reshape([g.batchA, A.shape[A.rank - 2]!, A.shape[A.rank - 1]!]);
      const Bs = B.reshape([g.batchB, B.shape[B.rank - 2]!, B.shape[B.rank - 1]!]);
      const aList = g.batchA === 1 ? null : tf.unstack(As);
      const bList = tf.unstack(Bs);
      const A0 = g.batchA === 1 ? As.reshape(As.shape.slice(1)) : null;
      const outs = bList.map((bi, i) =>
        productUntransposed(aList ? aList[i]! : A0!, bi, attrs, g.m, g.k, g.n, (x, y) =>
          mm2d(x.reshape([1, ...x.shape]), y.reshape([1, ...y.shape])).reshape([x.shape[0]!, y.shape[1]!]),
        ),
      );
      return tf.stack(outs).reshape(outShape);
    });
  };
}

/** Wrap the original wasm _FusedMatMul kernel function (transposes only; batched fused products keep the original). */
export function wrapFusedMatMul(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, backend } = args;
    const attrs = args.attrs as unknown as MatMulAttrs;
    const a = inputs.a!;
    const b = inputs.b!;
    const g = geometry(a, b, attrs);
    if (!(attrs.transposeA || attrs.transposeB) || g.batchA > 1 || g.batchB > 1) return original(args);
    return compositeKernel(backend, () => {
      const A = asTensor(a, backend);
      const B = asTensor(b, backend);
      const rest: tf.NamedTensorInfoMap = {};
      for (const [name, t] of Object.entries(inputs)) {
        if (name !== 'a' && name !== 'b' && t) rest[name] = t;
      }
      const fusedAttrs = { ...args.attrs, transposeA: false, transposeB: false } as tf.NamedAttrMap;
      return callKernel(
        original,
        backend,
        { ...rest, a: attrs.transposeA ? swapLast2(A) : A, b: attrs.transposeB ? swapLast2(B) : B },
        fusedAttrs,
      );
    });
  };
}
