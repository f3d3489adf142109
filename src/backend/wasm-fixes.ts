/**
 * Training fixes for `@tensorflow/tfjs-backend-wasm` 4.22 (see
 * /work/shared/compute-stack.md for the measurements behind them).
 *
 * Out of the box wasm cannot train a convnet (no `Conv2DBackpropFilter`) and its
 * backward pass is dominated by scalar C++ loops. `registerWasmTrainingFixes()`
 * registers, once, kernels for the 'wasm' backend only (other backends keep their
 * native kernels, and the gradient registry is left untouched):
 *
 * 1. `Conv2DBackpropFilter` (new: im2colᵀ on the wasm heap times dy, one XNNPACK
 *    product) and `Conv2DBackpropInput` (replaced: forward convolutions with the
 *    reversed filter, one per stride phase) (wasm-conv.ts). This covers the
 *    gradients of conv2d, fused.conv2d and conv2dTranspose, for any stride,
 *    'same'/'valid'/explicit/numeric padding, NHWC and NCHW, dilation 1 (tfjs has
 *    no gradient for dilated convs at all).
 * 2. `BatchMatMul` and `_FusedMatMul`: transposed and batched products are
 *    rewritten into XNNPACK-eligible ones (wasm-matmul.ts).
 * 3. `MaxPoolGrad` and `AvgPoolGrad` (replaced): loops over the wasm heap, any
 *    window/stride/padding, with the cpu kernel's exact semantics (wasm-loops.ts).
 * 4. `Sum` and `Mean` (wrapped): reductions over leading/middle axes (bias
 *    gradients, batch-norm moments) through XNNPACK average pooling or a loop,
 *    instead of wasm's transpose + reduce.
 * 5. `UnsortedSegmentSum` (new): needed by the gradient of `tf.gather`.
 * 6. `Identity` and same-dtype `Cast`: share the data (as the cpu backend does)
 *    instead of copying it; the engine clones every tensor it saves for the
 *    backward pass, so on wasm each training step copied all its activations.
 *
 * Importing `@tensorflow/tfjs` (not tfjs-core alone) registers the gradients these
 * kernels serve.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { findKernel, type RefCountingBackend, replaceKernel } from './kernel-util';
import { conv2dBackpropFilterKernel, conv2dBackpropInputKernel } from './wasm-conv';
import { wrapBatchMatMul, wrapFusedMatMul } from './wasm-matmul';
import { avgPoolGradKernel, maxPoolGradKernel, unsortedSegmentSumKernel, wrapReduction } from './wasm-loops';

const BACKEND = 'wasm';

/** Names of the kernels that `registerWasmTrainingFixes` registers or replaces. */
export const WASM_FIXED_KERNELS = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'BatchMatMul',
  '_FusedMatMul',
  'MaxPoolGrad',
  'AvgPoolGrad',
  'Sum',
  'Mean',
  'UnsortedSegmentSum',
  'Identity',
  'Cast',
] as const;

/** The wasm kernel configs as they were before the fixes (kept for the wrappers and for tests). */
export const originalWasmKernels = new Map<string, tf.KernelConfig>();

let registered = false;

/** A kernel returning its input `x` as its output: one more reference to the same data, no copy. */
const shareKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const x = inputs.x as tf.TensorInfo;
  (backend as RefCountingBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
};

/** Whether the fixes are registered. */
export function wasmTrainingFixesRegistered(): boolean {
  return registered;
}

/** Register a kernel for wasm, remembering the one it replaces. */
function install(kernelName: string, kernelFunc: tf.KernelFunc): void {
  const previous = findKernel(kernelName, BACKEND);
  if (previous) originalWasmKernels.set(kernelName, previous);
  replaceKernel({
    kernelName,
    backendName: BACKEND,
    kernelFunc,
    // The originals bind their wasm exports in setupFunc: keep it so that they stay callable.
    setupFunc: previous?.setupFunc,
    disposeFunc: previous?.disposeFunc,
  });
}

/**
 * Register the wasm training fixes. Idempotent; may be called before or after
 * the wasm backend is initialised. Returns a short description of what it did.
 */
export function registerWasmTrainingFixes(): string {
  if (!registered) {
    const original = (name: string) => {
      const k = findKernel(name, BACKEND);
      if (!k) throw new Error(`wasm training fixes: the wasm kernel ${name} is not registered`);
      return k.kernelFunc;
    };
    const batchMatMul = original('BatchMatMul');
    const fusedMatMul = original('_FusedMatMul');
    const sum = original('Sum');
    const mean = original('Mean');
    install('Conv2DBackpropFilter', conv2dBackpropFilterKernel);
    install('Conv2DBackpropInput', conv2dBackpropInputKernel);
    install('BatchMatMul', wrapBatchMatMul(batchMatMul));
    install('_FusedMatMul', wrapFusedMatMul(fusedMatMul));
    install('MaxPoolGrad', maxPoolGradKernel);
    install('AvgPoolGrad', avgPoolGradKernel);
    install('Sum', wrapReduction(sum, 'sum'));
    install('Mean', wrapReduction(mean, 'mean'));
    install('UnsortedSegmentSum', unsortedSegmentSumKernel);
    install('Identity', shareKernel);
    const cast = original('Cast');
    install('Cast', (args) =>
      (args.attrs as { dtype?: string }).dtype === (args.inputs.x as tf.TensorInfo).dtype
        ? shareKernel(args)
        : cast(args),
    );
    registered = true;
  }
  return `${WASM_FIXED_KERNELS.length} training-kernel fixes (${WASM_FIXED_KERNELS.join(', ')})`;
}
