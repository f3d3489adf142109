/**
 * Training fixes for `@tensorflow/tfjs-backend-wasm` 4.22 (see
 * /work/shared/compute-stack.md for the measurements behind them).
 *
 * Out of the box wasm cannot train a convnet (no `Conv2DBackpropFilter`) and its
 * backward pass is dominated by scalar C++ loops. `registerWasmTrainingFixes()`
 * registers, once, kernels for the 'wasm' backend only (other backends keep their
 * native kernels, and the gradient registry is left untouched):
 *
 * 1. `Conv2DBackpropFilter` (new) and `Conv2DBackpropInput` (replaced): each one
 *    forward convolution through XNNPACK (wasm-conv.ts). This covers the gradients
 *    of conv2d, fused.conv2d and conv2dTranspose, for any stride, 'same'/'valid'/
 *    explicit/numeric padding, NHWC and NCHW, dilation 1 (dilated convs have no
 *    gradient in tfjs at all).
 * 2. `BatchMatMul` and `_FusedMatMul`: transposed and batched products are
 *    rewritten into XNNPACK-eligible ones (wasm-matmul.ts).
 * 3. `MaxPoolGrad` (replaced): a direct loop over the wasm heap, exact first-max
 *    semantics of the cpu kernel, any window/stride (wasm-pool.ts).
 * 4. `UnsortedSegmentSum` (new): needed by the gradient of `tf.gather`.
 *
 * Importing `@tensorflow/tfjs` (not tfjs-core alone) registers the gradients these
 * kernels serve.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { findKernel, replaceKernel } from './kernel-util';
import { conv2dBackpropFilterKernel, conv2dBackpropInputKernel } from './wasm-conv';
import { wrapBatchMatMul, wrapFusedMatMul } from './wasm-matmul';
import { maxPoolGradKernel, unsortedSegmentSumKernel } from './wasm-pool';

const BACKEND = 'wasm';

/** Names of the kernels that `registerWasmTrainingFixes` registers or replaces. */
export const WASM_FIXED_KERNELS = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'BatchMatMul',
  '_FusedMatMul',
  'MaxPoolGrad',
  'UnsortedSegmentSum',
] as const;

/** The wasm kernel configs as they were before the fixes (kept for the wrappers and for tests). */
export const originalWasmKernels = new Map<string, tf.KernelConfig>();

let registered = false;

/** Whether the fixes are registered. */
export function wasmTrainingFixesRegistered(): boolean {
  return registered;
}

/** Register a kernel for wasm, remembering the one it replaces. */
function install(kernelName: string, kernelFunc: tf.KernelFunc, keepSetupFrom?: tf.KernelConfig): void {
  const previous = findKernel(kernelName, BACKEND);
  if (previous) originalWasmKernels.set(kernelName, previous);
  replaceKernel({
    kernelName,
    backendName: BACKEND,
    kernelFunc,
    // The wrapped originals bind their wasm exports in setupFunc.
    setupFunc: keepSetupFrom?.setupFunc,
    disposeFunc: keepSetupFrom?.disposeFunc,
  });
}

/**
 * Register the wasm training fixes. Idempotent; may be called before or after
 * the wasm backend is initialised. Returns a short description of what it did.
 */
export function registerWasmTrainingFixes(): string {
  if (!registered) {
    const batchMatMul = findKernel('BatchMatMul', BACKEND);
    const fusedMatMul = findKernel('_FusedMatMul', BACKEND);
    if (!batchMatMul || !fusedMatMul) {
      throw new Error('wasm training fixes: the wasm BatchMatMul/_FusedMatMul kernels are not registered');
    }
    install('Conv2DBackpropFilter', conv2dBackpropFilterKernel);
    install('Conv2DBackpropInput', conv2dBackpropInputKernel);
    install('BatchMatMul', wrapBatchMatMul(batchMatMul.kernelFunc), batchMatMul);
    install('_FusedMatMul', wrapFusedMatMul(fusedMatMul.kernelFunc), fusedMatMul);
    install('MaxPoolGrad', maxPoolGradKernel);
    install('UnsortedSegmentSum', unsortedSegmentSumKernel);
    registered = true;
  }
  return `${WASM_FIXED_KERNELS.length} training-kernel fixes (${WASM_FIXED_KERNELS.join(', ')})`;
}
