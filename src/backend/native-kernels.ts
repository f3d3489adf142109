/**
 * The native engine's kernels: tfjs kernels registered on the wasm backend that run in the native addon
 * (oneDNN / OpenBLAS) and read and write the wasm heap in place.
 *
 * Why on the wasm backend: tensors keep living where tfjs-backend-wasm allocates them, so every op the addon does
 * not implement still runs on wasm's own kernel, with no copy between the two; an addon kernel gets the heap's
 * ArrayBuffer and byte offsets of its inputs and of the output that tfjs allocated for it. The price is wasm's
 * 4 GB heap bound on everything alive at once (see the README's "Engines").
 *
 * Each kernel handles the cases the addon supports (float32, NHWC, the activations oneDNN has as post-ops) and
 * passes every other call to the kernel it replaced, so tfjs semantics hold for every input. `enableNativeKernels`
 * / `disableNativeKernels` swap the registrations, which lets a test run the same model on both engines in one
 * process.
 */
import * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_GRAD_KERNEL, BATCH_NORM_KERNEL, GRAM_KERNEL, PATCH_GRAM_KERNEL, PATCH_SUMS_KERNEL, PATCHES_KERNEL, RELU_GRAD_KERNEL } from './fused-ops';
import { findKernel, replaceKernel } from './kernel-util';
import { middleReduction } from './wasm-loops';
import type { NativeAddon } from './native-handle';

const BACKEND = 'wasm';

/** The members of the wasm backend that heap kernels use. */
interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number } };
  wasm: { HEAPU8: Uint8Array };
}

const heapOf = (backend: object) => (backend as WasmHeapBackend).wasm.HEAPU8.buffer as ArrayBuffer;
const offsetOf = (backend: object, t: tf.TensorInfo) => (backend as WasmHeapBackend).dataIdMap.get(t.dataId).memoryOffset;
const makeOutput = (backend: object, shape: number[]) => (backend as WasmHeapBackend).makeOutput(shape, 'float32');
const size = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

/** tfjs activation names → the addon's codes (native/src/common.h `Activation`). undefined: not supported. */
export const ACTIVATIONS: Record<string, number | undefined> = {
  linear: 0,
  relu: 1,
  relu6: 2,
  elu: 3,
  leakyrelu: 4,
  sigmoid: 5,
};

/** The addon's binary operation codes (native/src/eltwise.cc `Binary`). */
const BINARY_OPS = { add: 0, sub: 1, mul: 2, rsub: 3, div: 4, rdiv: 5 } as const;

type ConvPad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

interface ConvAttrs {
  strides: number | [number, number];
  pad: ConvPad;
  dataFormat?: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/**
 * The addon's convolution geometry for tfjs's own Conv2DInfo (native/src/conv.cc): [N, H, W, Ci, Co, KH, KW, Ho,
 * Wo, sH, sW, padTop, padBottom, padLeft, padRight, dilH, dilW]. The bottom/right padding is recomputed from the
 * output size so that oneDNN's consistency rule holds for every padding mode (negative where 'valid' leaves rows out).
 */
export function convDims(c: tf.backend_util.Conv2DInfo): Int32Array {
  const effH = (c.filterHeight - 1) * c.dilationHeight + 1;
  const effW = (c.filterWidth - 1) * c.dilationWidth + 1;
  const bottom = (c.outHeight - 1) * c.strideHeight + effH - c.inHeight - c.padInfo.top;
  const right = (c.outWidth - 1) * c.strideWidth + effW - c.inWidth - c.padInfo.left;
  return Int32Array.from([
    c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.outChannels, c.filterHeight, c.filterWidth,
    c.outHeight, c.outWidth, c.strideHeight, c.strideWidth, c.padInfo.top, bottom, c.padInfo.left, right,
    c.dilationHeight, c.dilationWidth,
  ]);
}

function convInfo(xShape: number[], filterShape: number[], a: ConvAttrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    a.dilations ?? 1,
    a.pad,
    a.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(a.dataFormat ?? 'NHWC'),
  );
}

/** Whether the addon's convolution handles this call (else the replaced kernel runs). */
function convSupported(c: tf.backend_util.Conv2DInfo, ...ts: tf.TensorInfo[]): boolean {
  return c.dataFormat === 'channelsLast' && ts.every((t) => t.dtype === 'float32') && size(c.outShape) > 0 && c.inChannels > 0;
}

type Fallbacks = Map<string, tf.KernelFunc>;

interface PoolAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: ConvPad;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function nativeKernels(addon: NativeAddon, fallback: Fallbacks): Record<string, tf.KernelFunc> {
  const prev = (name: string): tf.KernelFunc => {
    const k = fallback.get(name);
    if (!k) throw new Error(`native engine: no ${name} kernel to fall back to on wasm`);
    return k;
  };

  const conv2d: tf.KernelFunc = (args) => {
    const { x, filter } = args.inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    const c = convInfo(x.shape, filter.shape, args.attrs as unknown as ConvAttrs);
    if (!convSupported(c, x, filter)) return prev('Conv2D')(args);
    const out = makeOutput(args.backend, c.outShape);
    const be = args.backend;
    addon.convForward(heapOf(be), offsetOf(be, x), offsetOf(be, filter), -1, offsetOf(be, out), convDims(c), 0, 0);
    return out;
  };

  const fusedConv2d: tf.KernelFunc = (args) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const attrs = args.attrs as unknown as ConvAttrs & { activation: string; leakyreluAlpha?: number };
    const c = convInfo(x!.shape, filter!.shape, attrs);
    const act = ACTIVATIONS[attrs.activation];
    const biasOk = !bias || (bias.dtype === 'float32' && size(bias.shape) === c.outChannels);
    if (act === undefined || preluActivationWeights || !biasOk || !convSupported(c, x!, filter!)) {
      return prev('FusedConv2D')(args);
    }
    const out = makeOutput(args.backend, c.outShape);
    const be = args.backend;
    addon.convForward(
      heapOf(be), offsetOf(be, x!), offsetOf(be, filter!), bias ? offsetOf(be, bias) : -1, offsetOf(be, out),
      convDims(c), act, attrs.leakyreluAlpha ?? 0.2,
    );
    return out;
  };

  const conv2dBackpropInput: tf.KernelFunc = (args) => {
    const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const attrs = args.attrs as unknown as ConvAttrs & { inputShape: number[] };
    const c = convInfo(attrs.inputShape, filter.shape, attrs);
    if (!convSupported(c, dy, filter)) return prev('Conv2DBackpropInput')(args);
    const out = makeOutput(args.backend, attrs.inputShape);
    const be = args.backend;
    addon.convBackwardData(heapOf(be), offsetOf(be, dy), offsetOf(be, filter), offsetOf(be, out), convDims(c));
    return out;
  };

  const conv2dBackpropFilter: tf.KernelFunc = (args) => {
    const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const attrs = args.attrs as unknown as ConvAttrs & { filterShape: number[] };
    const c = convInfo(x.shape, attrs.filterShape, attrs);
    if (!convSupported(c, x, dy)) return prev('Conv2DBackpropFilter')(args);
    const out = makeOutput(args.backend, attrs.filterShape);
    const be = args.backend;
    addon.convBackwardWeights(heapOf(be), offsetOf(be, x), offsetOf(be, dy), offsetOf(be, out), convDims(c));
    return out;
  };

  /** BatchMatMul and _FusedMatMul through the addon's gemm, or undefined when it does not apply. */
  const gemm = (
    args: Parameters<tf.KernelFunc>[0],
    bias: tf.TensorInfo | undefined,
    act: number,
    alpha: number,
  ): tf.TensorInfo | undefined => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return undefined;
    const ra = a.shape.length;
    const rb = b.shape.length;
    const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
    const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    if (k !== kb) return undefined; // the replaced kernel raises tfjs's own error
    const batchShapeA = a.shape.slice(0, -2);
    const batchShapeB = b.shape.slice(0, -2);
    const batchA = size(batchShapeA);
    const batchB = size(batchShapeB);
    // The addon broadcasts a whole operand (batch 1); other broadcasts keep the replaced kernel.
    const sameBatch = batchShapeA.length === batchShapeB.length && batchShapeA.every((d, i) => d === batchShapeB[i]);
    if (!sameBatch && batchA !== 1 && batchB !== 1) return undefined;
    if (bias && (bias.dtype !== 'float32' || size(bias.shape) !== n || bias.shape[bias.shape.length - 1] !== n)) return undefined;
    const outBatch = tf.backend_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB);
    const out = makeOutput(args.backend, [...outBatch, m, n]);
    if (m * n === 0) return out;
    const be = args.backend;
    addon.gemm(
      heapOf(be), offsetOf(be, a), offsetOf(be, b), offsetOf(be, out),
      Int32Array.from([batchA, batchB, m, n, k, transposeA ? 1 : 0, transposeB ? 1 : 0]),
      bias ? offsetOf(be, bias) : -1, act, alpha,
    );
    return out;
  };

  const batchMatMul: tf.KernelFunc = (args) => gemm(args, undefined, 0, 0) ?? prev('BatchMatMul')(args);

  const fusedMatMul: tf.KernelFunc = (args) => {
    const { bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { activation, leakyreluAlpha } = args.attrs as { activation: string; leakyreluAlpha?: number };
    const act = ACTIVATIONS[activation];
    const out = act === undefined || preluActivationWeights ? undefined : gemm(args, bias, act, leakyreluAlpha ?? 0.2);
    return out ?? prev('_FusedMatMul')(args);
  };

  const poolDims = (xShape: number[], a: PoolAttrs): Int32Array | undefined => {
    const c = tf.backend_util.computePool2DInfo(xShape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
    if (c.dilationHeight !== 1 || c.dilationWidth !== 1 || c.dataFormat !== 'channelsLast') return undefined;
    return Int32Array.from([
      c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.outHeight, c.outWidth, c.filterHeight, c.filterWidth,
      c.strideHeight, c.strideWidth, c.padInfo.top, c.padInfo.left,
    ]);
  };

  const maxPool: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const dims = x.dtype === 'float32' ? poolDims(x.shape, args.attrs as unknown as PoolAttrs) : undefined;
    if (!dims) return prev('MaxPool')(args);
    const out = makeOutput(args.backend, [dims[0]!, dims[4]!, dims[5]!, dims[3]!]);
    const be = args.backend;
    if (size(out.shape) > 0) addon.maxPool(heapOf(be), offsetOf(be, x), offsetOf(be, out), dims);
    return out;
  };

  const relu: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== 'float32') return prev('Relu')(args);
    const be = args.backend;
    const out = makeOutput(be, x.shape);
    const n = size(x.shape);
    if (n > 0) addon.relu(heapOf(be), offsetOf(be, x), offsetOf(be, out), n);
    return out;
  };

  const maxPoolGrad: tf.KernelFunc = (args) => {
    const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    const dims = input.dtype === 'float32' && dy.dtype === 'float32' ? poolDims(input.shape, args.attrs as unknown as PoolAttrs) : undefined;
    if (!dims) return prev('MaxPoolGrad')(args);
    const out = makeOutput(args.backend, input.shape);
    const be = args.backend;
    if (size(input.shape) > 0) addon.maxPoolGrad(heapOf(be), offsetOf(be, dy), offsetOf(be, input), offsetOf(be, out), dims);
    return out;
  };

  const avgPoolGrad: tf.KernelFunc = (args) => {
    const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    const dims = dy.dtype === 'float32' ? poolDims(input.shape, args.attrs as unknown as PoolAttrs) : undefined;
    if (!dims) return prev('AvgPoolGrad')(args);
    const out = makeOutput(args.backend, input.shape);
    const be = args.backend;
    if (size(input.shape) > 0) addon.avgPoolGrad(heapOf(be), offsetOf(be, dy), offsetOf(be, out), dims);
    return out;
  };

  /** DkfacPatches (all patches, [N, Ho, Wo, K]) and DkfacPatchSums (their per-example sums, [N, K]). */
  const patchKernel =
    (sums: boolean): tf.KernelFunc =>
    (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      const { kernel, strides, padding } = args.attrs as unknown as { kernel: [number, number]; strides: [number, number]; padding: 'same' | 'valid' };
      const [n, , , C] = x.shape as [number, number, number, number];
      const dims = poolDims(x.shape, { filterSize: kernel, strides, pad: padding })!;
      const K = kernel[0] * kernel[1] * C;
      const out = makeOutput(args.backend, sums ? [n, K] : [n, dims[4]!, dims[5]!, K]);
      const be = args.backend;
      if (size(out.shape) > 0) (sums ? addon.patchSums : addon.patches)(heapOf(be), offsetOf(be, x), offsetOf(be, out), dims);
      return out;
    };

  // XᵀX of a float32 [rows, K] matrix (K-FAC's factors): OpenBLAS ssyrk, then the triangle mirrored (linalg.cc)
  const gram: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.shape.length !== 2 || x.dtype !== 'float32') throw new Error(`${GRAM_KERNEL}: expects a float32 [rows, K] matrix, got ${x.dtype} [${x.shape}]`);
    const [rows, K] = x.shape as [number, number];
    const be = args.backend;
    const out = makeOutput(be, [K, K]);
    if (K > 0) addon.gram(heapOf(be), offsetOf(be, x), offsetOf(be, out), rows, K);
    return out;
  };

  // PᵀP of a stride-1 convolution's patches from its input (linalg.cc PatchGram)
  const patchGram: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { kernel, padding } = args.attrs as unknown as { kernel: [number, number]; padding: 'same' | 'valid' };
    if (x.shape.length !== 4 || x.dtype !== 'float32') throw new Error(`${PATCH_GRAM_KERNEL}: expects a float32 NHWC input, got ${x.dtype} [${x.shape}]`);
    const dims = poolDims(x.shape, { filterSize: kernel, strides: [1, 1], pad: padding })!;
    const K = kernel[0] * kernel[1] * x.shape[3]!;
    const be = args.backend;
    const out = makeOutput(be, [K, K]);
    if (K > 0) addon.patchGram(heapOf(be), offsetOf(be, x), offsetOf(be, out), dims);
    return out;
  };

  const bnDims = (x: tf.TensorInfo, chunks: number) => {
    const C = x.shape[x.shape.length - 1]!;
    return Int32Array.from([chunks, size(x.shape) / chunks / C, C]);
  };

  const batchNorm: tf.KernelFunc = (args) => {
    const { x, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
    const { chunks, eps } = args.attrs as { chunks: number; eps: number };
    const be = args.backend;
    const C = x!.shape[x!.shape.length - 1]!;
    const y = makeOutput(be, x!.shape);
    const xhat = makeOutput(be, x!.shape);
    const mean = makeOutput(be, [chunks, C]);
    const variance = makeOutput(be, [chunks, C]);
    addon.batchNormForward(
      heapOf(be), offsetOf(be, x!), offsetOf(be, gamma!), offsetOf(be, beta!), offsetOf(be, y), offsetOf(be, xhat),
      offsetOf(be, mean), offsetOf(be, variance), bnDims(x!, chunks), eps,
    );
    return [y, xhat, mean, variance];
  };

  const batchNormGrad: tf.KernelFunc = (args) => {
    const { dy, xhat, gamma, variance } = args.inputs as Record<string, tf.TensorInfo>;
    const { chunks, eps } = args.attrs as { chunks: number; eps: number };
    const be = args.backend;
    const dx = makeOutput(be, dy!.shape);
    const dgamma = makeOutput(be, gamma!.shape);
    const dbeta = makeOutput(be, gamma!.shape);
    addon.batchNormBackward(
      heapOf(be), offsetOf(be, dy!), offsetOf(be, xhat!), offsetOf(be, gamma!), offsetOf(be, variance!),
      offsetOf(be, dx), offsetOf(be, dgamma), offsetOf(be, dbeta), bnDims(dy!, chunks), eps,
    );
    return [dx, dgamma, dbeta];
  };

  const reluGrad: tf.KernelFunc = (args) => {
    const { dy, x } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
    const be = args.backend;
    const dx = makeOutput(be, x.shape);
    const n = size(x.shape);
    if (n > 0) addon.reluGrad(heapOf(be), offsetOf(be, dy), offsetOf(be, x), offsetOf(be, dx), n);
    return dx;
  };

  /** [outer, inner per tensor] of a concatenation along `axis`, or undefined when the addon does not apply. */
  const blocks = (shapes: number[][], axis: number) => {
    const outer = size(shapes[0]!.slice(0, axis));
    return { outer, inners: Int32Array.from(shapes.map((s) => size(s.slice(axis)))) };
  };

  const concat: tf.KernelFunc = (args) => {
    const inputs = args.inputs as unknown as tf.TensorInfo[];
    const axis = tf.util.parseAxisParam((args.attrs as { axis: number | number[] }).axis, inputs[0]!.shape)[0]!;
    if (inputs.length < 2 || inputs.some((t) => t.dtype !== 'float32')) return prev('Concat')(args);
    const outShape = tf.backend_util.computeOutShape(inputs.map((t) => t.shape), axis);
    const out = makeOutput(args.backend, outShape);
    if (size(outShape) === 0) return out;
    const be = args.backend;
    const { outer, inners } = blocks(inputs.map((t) => t.shape), axis);
    addon.concat(heapOf(be), offsetOf(be, out), Float64Array.from(inputs.map((t) => offsetOf(be, t))), inners, outer);
    return out;
  };

  const splitV: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    if (x.dtype !== 'float32') return prev('SplitV')(args);
    const $axis = tf.util.parseAxisParam(axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x, numOrSizeSplits, $axis);
    const shapes = sizes.map((s) => x.shape.map((d, i) => (i === $axis ? s : d)));
    const be = args.backend;
    const outs = shapes.map((s) => makeOutput(be, s));
    if (size(x.shape) === 0) return outs;
    const { outer, inners } = blocks(shapes, $axis);
    addon.split(heapOf(be), offsetOf(be, x), Float64Array.from(outs.map((t) => offsetOf(be, t))), inners, outer);
    return outs;
  };

  const reduction =
    (name: 'Sum' | 'Mean'): tf.KernelFunc =>
    (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
      if (x.dtype !== 'float32' || size(x.shape) === 0) return prev(name)(args);
      const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((p, q) => p - q);
      const split = middleReduction(x.shape, axes);
      if (!split) return prev(name)(args);
      const [outer, reduced, inner] = split;
      const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
      const out = makeOutput(args.backend, outShape);
      const be = args.backend;
      addon.reduceMiddle(heapOf(be), offsetOf(be, x), offsetOf(be, out), outer, reduced, inner, name === 'Mean' ? 1 / reduced : 1);
      return out;
    };

  /**
   * Add / Sub / Multiply / RealDiv where one operand equals the other's trailing dimensions (bias adds, per-channel scales,
   * scalars) or both have one shape; other broadcasts keep wasm's kernel.
   */
  const binary =
    (name: 'Add' | 'Sub' | 'Multiply' | 'RealDiv', op: number): tf.KernelFunc =>
    (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      if (a.dtype !== 'float32' || b.dtype !== 'float32') return prev(name)(args);
      const na = size(a.shape);
      const nb = size(b.shape);
      const trailing = (big: number[], small: number[]) => {
        const s = small.slice(small.findIndex((d) => d !== 1) < 0 ? small.length : small.findIndex((d) => d !== 1));
        return s.length <= big.length && s.every((d, i) => d === big[big.length - s.length + i]);
      };
      const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
      const n = size(outShape);
      let swap = false;
      if (nb === n && na !== n) swap = true;
      else if (na !== n) return prev(name)(args);
      const [big, small] = swap ? [b, a] : [a, b];
      if (n < 4096 || !trailing(big.shape, small.shape)) return prev(name)(args);
      const code = swap && name === 'Sub' ? BINARY_OPS.rsub : swap && name === 'RealDiv' ? BINARY_OPS.rdiv : op;
      const out = makeOutput(args.backend, outShape);
      const be = args.backend;
      addon.binary(heapOf(be), offsetOf(be, big), offsetOf(be, small), offsetOf(be, out), n, size(small.shape), code);
      return out;
    };

  /**
   * FusedBatchNorm (tf.batchNorm, as tf.layers.batchNormalization calls it) where every statistic has the channel
   * count C = x's last dimension as its size (shape [C] or [1, …, 1, C]); other broadcasts keep wasm's kernel.
   */
  const fusedBatchNorm: tf.KernelFunc = (args) => {
    const { x, mean, variance, offset, scale } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { varianceEpsilon } = args.attrs as unknown as { varianceEpsilon: number };
    const C = x!.shape[x!.shape.length - 1] ?? 1;
    const perChannel = (t: tf.TensorInfo | undefined) => t === undefined || (t.dtype === 'float32' && size(t.shape) === C && t.shape[t.shape.length - 1] === C);
    if (x!.dtype !== 'float32' || x!.shape.length < 1 || ![mean, variance].every((t) => t !== undefined) || ![mean, variance, offset, scale].every(perChannel)) {
      return prev('FusedBatchNorm')(args);
    }
    const be = args.backend;
    const out = makeOutput(be, x!.shape);
    const n = size(x!.shape);
    if (n > 0) {
      const off = (t: tf.TensorInfo | undefined) => (t === undefined ? -1 : offsetOf(be, t));
      addon.batchNormApply(heapOf(be), offsetOf(be, x!), offsetOf(be, out), off(mean), off(variance), off(offset), off(scale), n / C, C, varianceEpsilon);
    }
    return out;
  };

  const tile: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { reps } = args.attrs as { reps: number[] };
    if (x.dtype !== 'float32' || reps.length !== x.shape.length) return prev('Tile')(args);
    const outShape = x.shape.map((d, i) => d * reps[i]!);
    const out = makeOutput(args.backend, outShape);
    if (size(outShape) === 0) return out;
    const be = args.backend;
    addon.tile(heapOf(be), offsetOf(be, x), offsetOf(be, out), Int32Array.from(x.shape), Int32Array.from(reps));
    return out;
  };

  return {
    Tile: tile,
    Sum: reduction('Sum'),
    Mean: reduction('Mean'),
    Add: binary('Add', BINARY_OPS.add),
    Sub: binary('Sub', BINARY_OPS.sub),
    Multiply: binary('Multiply', BINARY_OPS.mul),
    RealDiv: binary('RealDiv', BINARY_OPS.div),
    Concat: concat,
    SplitV: splitV,
    MaxPool: maxPool,
    MaxPoolGrad: maxPoolGrad,
    Relu: relu,
    FusedBatchNorm: fusedBatchNorm,
    AvgPoolGrad: avgPoolGrad,
    [BATCH_NORM_KERNEL]: batchNorm,
    [BATCH_NORM_GRAD_KERNEL]: batchNormGrad,
    [RELU_GRAD_KERNEL]: reluGrad,
    [PATCHES_KERNEL]: patchKernel(false),
    [PATCH_SUMS_KERNEL]: patchKernel(true),
    [GRAM_KERNEL]: gram,
    [PATCH_GRAM_KERNEL]: patchGram,
    Conv2D: conv2d,
    FusedConv2D: fusedConv2d,
    Conv2DBackpropInput: conv2dBackpropInput,
    Conv2DBackpropFilter: conv2dBackpropFilter,
    BatchMatMul: batchMatMul,
    _FusedMatMul: fusedMatMul,
  };
}

/** Names of the kernels the native engine runs in the addon. */
export const NATIVE_KERNELS = [
  'Conv2D',
  'FusedConv2D',
  'Conv2DBackpropInput',
  'Conv2DBackpropFilter',
  'BatchMatMul',
  '_FusedMatMul',
  'MaxPool',
  'MaxPoolGrad',
  'Relu',
  'FusedBatchNorm',
  'AvgPoolGrad',
  'Concat',
  'SplitV',
  'Tile',
  'Sum',
  'Mean',
  'Add',
  'Sub',
  'Multiply',
  'RealDiv',
  BATCH_NORM_KERNEL,
  BATCH_NORM_GRAD_KERNEL,
  RELU_GRAD_KERNEL,
  PATCHES_KERNEL,
  PATCH_SUMS_KERNEL,
  GRAM_KERNEL,
  PATCH_GRAM_KERNEL,
] as const;

/** The kernels of NATIVE_KERNELS that only the native engine has (no wasm kernel to fall back to or restore). */
const NATIVE_ONLY: readonly string[] = [BATCH_NORM_KERNEL, BATCH_NORM_GRAD_KERNEL, RELU_GRAD_KERNEL, PATCHES_KERNEL, PATCH_SUMS_KERNEL, GRAM_KERNEL, PATCH_GRAM_KERNEL];

/** The wasm registrations the native kernels replaced (restored by `disableNativeKernels`). */
const replaced = new Map<string, tf.KernelConfig>();
let enabled = false;

/** Whether the native kernels are registered on wasm right now. */
export function nativeKernelsEnabled(): boolean {
  return enabled;
}

/**
 * Register the native kernels on the wasm backend (after the wasm training fixes, whose kernels become the
 * fallbacks). Idempotent.
 */
export function enableNativeKernels(addon: NativeAddon): void {
  if (enabled) return;
  const fallback: Fallbacks = new Map();
  for (const name of NATIVE_KERNELS) {
    if (NATIVE_ONLY.includes(name)) continue;
    const k = findKernel(name, BACKEND);
    if (!k) throw new Error(`native engine: the wasm kernel ${name} is not registered`);
    replaced.set(name, k);
    fallback.set(name, k.kernelFunc);
  }
  const kernels = nativeKernels(addon, fallback);
  for (const name of NATIVE_KERNELS) {
    const k = replaced.get(name);
    replaceKernel({ kernelName: name, backendName: BACKEND, kernelFunc: kernels[name]!, setupFunc: k?.setupFunc, disposeFunc: k?.disposeFunc });
  }
  enabled = true;
}

/** Restore the wasm kernels the native ones replaced (the plain wasm engine). Idempotent. */
export function disableNativeKernels(): void {
  if (!enabled) return;
  for (const name of NATIVE_ONLY) tf.unregisterKernel(name, BACKEND);
  for (const k of replaced.values()) replaceKernel(k);
  replaced.clear();
  enabled = false;
}
