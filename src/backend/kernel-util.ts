/**
 * Helpers for writing tfjs kernels out of other tfjs ops (composite kernels) and
 * for re-registering kernels of a backend.
 *
 * A kernel function receives `TensorInfo`s and must return `TensorInfo`s whose
 * data the engine then owns. Composite kernels here run ordinary `tf.*` ops
 * inside `tf.tidy`; nested ops called from inside a kernel are neither recorded
 * on the gradient tape nor kept: the engine marks them as kernel-internal.
 */
import * as tf from '@tensorflow/tfjs';

/** The members of a tfjs backend that the composite kernels use. */
export interface RefCountingBackend {
  incRef(dataId: tf.DataId): void;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

/** The backend argument of a kernel function (typed `{}` by tfjs). */
export type KernelBackendArg = object;

/**
 * View a kernel input as a `tf.Tensor` usable with ops. The engine passes real
 * Tensors when a kernel runs through `runKernel`; other kernels calling a kernel
 * function directly pass bare TensorInfos, which get a Tensor wrapper holding
 * one extra reference (released when the surrounding `tf.tidy` disposes it).
 */
export function asTensor<R extends tf.Rank = tf.Rank>(info: tf.TensorInfo, backend: KernelBackendArg): tf.Tensor<R> {
  if (info instanceof tf.Tensor) return info as tf.Tensor<R>;
  (backend as RefCountingBackend).incRef(info.dataId);
  return tf.engine().makeTensorFromTensorInfo(info, backend as tf.KernelBackend) as tf.Tensor<R>;
}

/**
 * Run `fn` (which builds its result with tf ops) inside `tf.tidy` and return the
 * result as a kernel output: the result's data gets one extra reference, which
 * survives the tidy and which the engine takes over with the output.
 */
export function compositeKernel(backend: KernelBackendArg, fn: () => tf.Tensor): tf.TensorInfo {
  let out: tf.TensorInfo | undefined;
  tf.tidy(() => {
    const r = fn();
    (backend as RefCountingBackend).incRef(r.dataId);
    out = { dataId: r.dataId, shape: r.shape.slice(), dtype: r.dtype };
  });
  return out!;
}

/** The kernel config currently registered for (name, backend), or undefined. */
export function findKernel(kernelName: string, backendName: string): tf.KernelConfig | undefined {
  return tf.getKernelsForBackend(backendName).find((k) => k.kernelName === kernelName);
}

/** Register `config`, replacing (without the tfjs warning) any kernel registered under its name. */
export function replaceKernel(config: tf.KernelConfig): void {
  if (findKernel(config.kernelName, config.backendName)) {
    tf.unregisterKernel(config.kernelName, config.backendName);
  }
  tf.registerKernel(config);
}

/** Normalise a stride/size attribute to [height, width]. */
export function pair(v: number | [number, number] | number[]): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

/**
 * Rows [start, start+length) and columns [cStart, cStart+cLength) of an NHWC
 * tensor, where positions outside the tensor read as zero: a crop and a zero
 * pad in one call (negative `start` pads before, a window past the end pads after).
 */
export function spatialWindow(
  x: tf.Tensor4D,
  start: number,
  length: number,
  cStart: number,
  cLength: number,
): tf.Tensor4D {
  const [, h, w] = x.shape;
  const r0 = Math.max(0, start);
  const r1 = Math.min(h, start + length);
  const c0 = Math.max(0, cStart);
  const c1 = Math.min(w, cStart + cLength);
  if (r1 <= r0 || c1 <= c0) {
    return tf.zeros([x.shape[0], length, cLength, x.shape[3]], x.dtype) as tf.Tensor4D;
  }
  let y = x;
  if (r0 !== 0 || r1 !== h || c0 !== 0 || c1 !== w) {
    y = tf.slice(x, [0, r0, c0, 0], [-1, r1 - r0, c1 - c0, -1]);
  }
  const padTop = r0 - start;
  const padBottom = start + length - r1;
  const padLeft = c0 - cStart;
  const padRight = cStart + cLength - c1;
  if (padTop || padBottom || padLeft || padRight) {
    y = tf.pad(y, [
      [0, 0],
      [padTop, padBottom],
      [padLeft, padRight],
      [0, 0],
    ]);
  }
  return y;
}
