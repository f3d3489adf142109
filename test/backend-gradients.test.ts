/**
 * The wasm training fixes, and the native engine's kernels (src/backend/native-kernels.ts, native/), against the
 * stock cpu backend: every comparison below runs once per engine ('wasm', and 'native' where the addon is built).
 *
 * Every fixed wasm gradient must equal the cpu backend's to 1e-4 in the relative
 * sense of `relErr` below. The reference is independent of the fixes: they
 * register kernels for the 'wasm' backend only and never touch the gradient
 * registry, so on 'cpu' the stock gradients run the cpu backend's own kernels
 * (Conv2DBackpropFilter/Input, MaxPoolGrad, ...). The first test checks exactly that.
 * (The one registry change, avgpool-grad.ts's AvgPool gradient, applies to both
 * backends alike and is checked against a direct computation instead.)
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, resolveBackendRequest } from '../src/backend';
import { chunkedBatchNorm } from '../src/backend/fused-ops';
import { existsSync } from 'node:fs';
import { loadNative, nativeUnavailableReason } from '../src/backend/native';
import { im2colLimits } from '../src/backend/wasm-conv';
import { WASM_FIXED_KERNELS } from '../src/backend/wasm-fixes';
import { mulberry32 } from '../src/linalg/random';

const TOL = 1e-4;

type Engine = 'wasm' | 'native';
/** The engines under test: wasm with its fixes, and the native engine where its addon is built. */
const ENGINES: Engine[] = ['wasm', ...(loadNative() ? (['native'] as const) : [])];
/** The engine the current describe.each block tests (set in its beforeAll). */
let engine: Engine = 'wasm';

/** max |a − b| / max(max |b|, 1e-6): the error relative to the reference's scale. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  if (Number.isNaN(diff)) return Infinity;
  return diff / Math.max(scale, 1e-6);
}

/** Deterministic uniform [0,1) generator: the project's mulberry32. */
const rng = mulberry32;

interface Arr {
  data: Float32Array;
  shape: number[];
}

const sizeOf = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

function uniform(shape: number[], r: () => number): Arr {
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = 2 * r() - 1;
  return { data, shape };
}

/** Distinct values in random order: max-pool windows then have no ties. */
function distinct(shape: number[], r: () => number): Arr {
  const n = sizeOf(shape);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (i - n / 2) / n;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [data[i], data[j]] = [data[j]!, data[i]!];
  }
  return { data, shape };
}

const int = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

/**
 * On `backend`: y = f(...xs), then the vector-Jacobian product with the cotangent
 * `dy` (a fixed random array of y's shape). Returns [y, dx1, dx2, ...] as arrays.
 */
async function vjp(
  backend: 'cpu' | Engine,
  inputs: Arr[],
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  seed = 99,
): Promise<Float32Array[]> {
  await initBackend(backend);
  const before = tf.memory().numTensors;
  const outs = tf.tidy(() => {
    const xs = inputs.map((a) => tf.tensor(a.data, a.shape));
    const y = f(...xs);
    const dy = tf.tensor(uniform(y.shape, rng(seed)).data, y.shape);
    const g = tf.grads((...args: tf.Tensor[]) => f(...args))(xs, dy);
    return [y, ...g];
  });
  const arrays = outs.map((t) => t.dataSync() as Float32Array);
  tf.dispose(outs);
  expect(tf.memory().numTensors).toBe(before);
  return arrays;
}

/** Compare y and every input gradient between wasm (fixed) and cpu (stock). */
async function expectSameGradients(inputs: Arr[], f: (...xs: tf.Tensor[]) => tf.Tensor, label: string) {
  const ref = await vjp('cpu', inputs, f);
  const got = await vjp(engine, inputs, f);
  const errs = ref.map((r, i) => relErr(got[i]!, r));
  const names = ['y', ...inputs.map((_, i) => `d${i}`)];
  const report = errs.map((e, i) => `${names[i]}=${e.toExponential(1)}`).join(' ');
  for (const e of errs) expect(e, `${label}: ${report}`).toBeLessThan(TOL);
}

let cpuKernelsBefore: Map<string, tf.KernelConfig>;
let gradsBefore: Map<string, tf.GradConfig | undefined>;
const GRADS = ['Conv2D', 'BatchMatMul', '_FusedMatMul', 'MaxPool', 'FusedConv2D', 'Sum', 'Mean', 'Conv2DBackpropInput'];

beforeAll(async () => {
  cpuKernelsBefore = new Map(tf.getKernelsForBackend('cpu').map((k) => [k.kernelName, k]));
  gradsBefore = new Map(GRADS.map((n) => [n, tf.getGradient(n)]));
  await initBackend('wasm');
});

afterAll(async () => {
  await initBackend('wasm');
});

describe('reference independence', () => {
  it('the fixes leave the cpu kernels and the gradient registry untouched', () => {
    for (const name of WASM_FIXED_KERNELS) {
      const cpu = tf.getKernelsForBackend('cpu').find((k) => k.kernelName === name);
      expect(cpu, name).toBe(cpuKernelsBefore.get(name));
    }
    for (const n of GRADS) expect(tf.getGradient(n), n).toBe(gradsBefore.get(n));
    // The wasm backend does have the fixed kernels, Conv2DBackpropFilter included.
    const wasm = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
    for (const name of WASM_FIXED_KERNELS) expect(wasm.has(name), name).toBe(true);
  });
});

describe('the closed-form chunked batch norm (the reference for the engines above)', () => {
  it('equals tfjs differentiating the moments formula chunk by chunk, on cpu', async () => {
    await initBackend('cpu');
    const r = rng(60);
    const [N, H, W, C, chunks] = [6, 4, 3, 5, 3];
    const x = uniform([N, H, W, C], r);
    const g = uniform([C], r);
    const b = uniform([C], r);
    const dy = uniform([N, H, W, C], rng(61));
    const grads = (f: (...t: tf.Tensor[]) => tf.Tensor) =>
      tf.tidy(() => {
        const ts = [x, g, b].map((a) => tf.tensor(a.data, a.shape));
        return tf.grads(f)(ts, tf.tensor(dy.data, dy.shape)).map((t) => t.dataSync() as Float32Array);
      });
    const closed = grads((xt, gt, bt) => chunkedBatchNorm(xt!, gt!, bt!, chunks, 1e-3).y);
    const autodiff = grads((xt, gt, bt) => {
      const parts = tf.split(xt!, chunks, 0).map((p) => {
        const { mean, variance } = tf.moments(p, [0, 1, 2]);
        return tf.mul(tf.sub(p, mean), tf.rsqrt(tf.add(variance, 1e-3)));
      });
      return tf.add(tf.mul(tf.concat(parts, 0), gt!), bt!);
    });
    for (let i = 0; i < 3; i++) expect(relErr(closed[i]!, autodiff[i]!), ['dx', 'dγ', 'dβ'][i]).toBeLessThan(TOL);
  });
});

describe.each(ENGINES)('engine %s', (e) => {
  beforeAll(async () => {
    engine = e;
    await initBackend(e);
  });

  describe('conv2d gradients (dx and dfilter) equal the cpu kernels', () => {
    const r = rng(1);
    const cases: { k: number; s: number; pad: 'same' | 'valid' | 'explicit' }[] = [];
    for (const k of [1, 3, 5]) for (const s of [1, 2, 3]) for (const pad of ['same', 'valid', 'explicit'] as const) cases.push({ k, s, pad });
    it.each(cases)('kernel $k stride $s pad $pad', async ({ k, s, pad }) => {
      const n = int(r, 1, 3);
      const h = int(r, k, k + 8) | 1; // odd sizes
      const w = int(r, k, k + 9);
      const ci = int(r, 1, 5);
      const co = int(r, 1, 5);
      const padding: 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]] =
        pad === 'explicit'
          ? [
              [0, 0],
              [int(r, 0, k), int(r, 0, k)],
              [int(r, 0, k), int(r, 0, k)],
              [0, 0],
            ]
          : pad;
      const x = uniform([n, h, w, ci], r);
      const f = uniform([k, k, ci, co], r);
      await expectSameGradients(
        [x, f],
        (xt, ft) => tf.conv2d(xt as tf.Tensor4D, ft as tf.Tensor4D, s, padding),
        `x ${x.shape} f ${f.shape} s ${s} pad ${JSON.stringify(padding)}`,
      );
    });

    it('numeric padding and 1×1 stride-2 kernels', async () => {
      const r2 = rng(2);
      await expectSameGradients(
        [uniform([2, 9, 8, 3], r2), uniform([3, 3, 3, 4], r2)],
        (x, f) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 2, 2),
        'pad 2',
      );
      await expectSameGradients(
        [uniform([2, 8, 7, 5], r2), uniform([1, 1, 5, 6], r2)],
        (x, f) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, [2, 1], 'valid'),
        '1x1 stride [2,1]',
      );
    });

    it('fused.conv2d (bias + relu, and bias + linear: the fused custom gradient) and conv2dTranspose', async () => {
      const r2 = rng(3);
      await expectSameGradients(
        [uniform([2, 8, 9, 3], r2), uniform([3, 3, 3, 5], r2), uniform([5], r2)],
        (x, f, b) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: f as tf.Tensor4D, strides: 1, pad: 'valid', bias: b }),
        'fused.conv2d linear',
      );
      await expectSameGradients(
        [uniform([2, 9, 9, 3], r2), uniform([3, 3, 3, 4], r2), uniform([4], r2)],
        (x, f, b) =>
          tf.fused.conv2d({ x: x as tf.Tensor4D, filter: f as tf.Tensor4D, strides: 2, pad: 'same', bias: b, activation: 'relu' }),
        'fused.conv2d',
      );
      await expectSameGradients(
        [uniform([2, 5, 4, 4], r2), uniform([3, 3, 3, 4], r2)],
        (x, f) => tf.conv2dTranspose(x as tf.Tensor4D, f as tf.Tensor4D, [2, 9, 8, 3], 2, 'same'),
        'conv2dTranspose',
      );
    });

    it('filter gradient computed in several im2col chunks', async () => {
      const saved = im2colLimits.chunkFloats;
      im2colLimits.chunkFloats = 500; // forces one chunk per image (and a last partial one)
      try {
        const r2 = rng(5);
        await expectSameGradients(
          [uniform([5, 7, 6, 3], r2), uniform([3, 3, 3, 4], r2)],
          (x, f) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 2, 'same'),
          'chunked',
        );
      } finally {
        im2colLimits.chunkFloats = saved;
      }
    });

    it.each(['same', 'explicit'])('NCHW backprop kernels equal the cpu kernels (%s padding)', async (padKind) => {
      const r2 = rng(4);
      const x = uniform([2, 3, 9, 8], r2);
      const f = uniform([3, 3, 3, 4], r2);
      const pad = padKind === 'same' ? 'same' : [[0, 0], [0, 0], [2, 0], [1, 1]];
      const dy = uniform([2, 4, 5, 4], r2); // both paddings give 5×4 outputs
      const attrs = { strides: [2, 2], pad, dataFormat: 'NCHW', dimRoundingMode: undefined } as unknown as tf.NamedAttrMap;
      const run = async (backend: 'cpu' | Engine) => {
        await initBackend(backend);
        const [xt, dyt, ft] = [x, dy, f].map((a) => tf.tensor(a.data, a.shape));
        const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x: xt!, dy: dyt! }, { ...attrs, filterShape: f.shape }) as tf.Tensor;
        const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy: dyt!, filter: ft! }, { ...attrs, inputShape: x.shape }) as tf.Tensor;
        const out = [dw.dataSync() as Float32Array, dx.dataSync() as Float32Array];
        tf.dispose([xt!, dyt!, ft!, dw, dx]);
        return out;
      };
      const ref = await run('cpu');
      const got = await run(engine);
      expect(relErr(got[0]!, ref[0]!)).toBeLessThan(TOL);
      expect(relErr(got[1]!, ref[1]!)).toBeLessThan(TOL);
    });
  });

  describe('matMul gradients equal the cpu kernels', () => {
    const r = rng(10);
    const combos = [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const;
    const mat = (rows: number, cols: number, t: boolean) => uniform(t ? [cols, rows] : [rows, cols], r);
    it.each(combos)('2-D, transposeA=%s transposeB=%s', async (ta, tb) => {
      // Shapes covering both strategies for Aᵀ·Bᵀ (inputs transposed vs (B·A)ᵀ).
      for (const [m, k, n] of [
        [int(r, 1, 40), int(r, 1, 70), int(r, 1, 40)],
        [37, 3, 41],
        [3, 64, 5],
      ] as const) {
        await expectSameGradients(
          [mat(m, k, ta), mat(k, n, tb)],
          (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, ta, tb),
          `m${m} k${k} n${n}`,
        );
      }
    });
    it.each(combos)('batched, transposeA=%s transposeB=%s', async (ta, tb) => {
      const b3 = (batch: number[], rows: number, cols: number, t: boolean) =>
        uniform([...batch, ...(t ? [cols, rows] : [rows, cols])], r);
      for (const [batch, m, k, n] of [
        [[3], 33, 35, 31], // per-batch XNNPACK products
        [[4], 3, 4, 5], // tiny matrices: original loop
        [[2, 2], 32, 33, 34], // rank 4
      ] as const) {
        await expectSameGradients(
          [b3([...batch], m, k, ta), b3([...batch], k, n, tb)],
          (a, b) => tf.matMul(a, b, ta, tb),
          `batch ${batch} m${m} k${k} n${n}`,
        );
      }
    });
    it.each(combos)('broadcast batch (values only), transposeA=%s transposeB=%s', async (ta, tb) => {
      // tfjs's own BatchMatMul gradient does not reduce over broadcast batch
      // dimensions (on every backend), so only the products are compared here.
      const b3 = (batch: number[], rows: number, cols: number, t: boolean) =>
        uniform([...batch, ...(t ? [cols, rows] : [rows, cols])], r);
      for (const [ba, bb, m, k, n] of [
        [[3], [], 21, 19, 17], // batched A × shared B → one tall product
        [[], [3], 34, 33, 32], // shared A × batched B → per-batch products
        [[3], [1], 40, 41, 42], // batch-1 B
        [[2, 3], [3], 5, 4, 3], // mixed broadcasting: original loop
      ] as const) {
        const a = b3([...ba], m, k, ta);
        const b = b3([...bb], k, n, tb);
        const run = async (backend: 'cpu' | Engine) => {
          await initBackend(backend);
          const [at, bt] = [tf.tensor(a.data, a.shape), tf.tensor(b.data, b.shape)];
          const y = tf.matMul(at, bt, ta, tb);
          const out = { shape: y.shape, data: y.dataSync() as Float32Array };
          tf.dispose([at, bt, y]);
          return out;
        };
        const ref = await run('cpu');
        const got = await run(engine);
        expect(got.shape).toEqual(ref.shape);
        expect(relErr(got.data, ref.data), `batch ${ba}/${bb}`).toBeLessThan(TOL);
      }
    });
    it('fused matMul with bias (relu and linear), every transpose combination', async () => {
      for (const [ta, tb] of combos) {
        for (const activation of ['relu', 'linear'] as const) {
          await expectSameGradients(
            [mat(23, 31, ta), mat(31, 19, tb), uniform([19], r)],
            (a, b, bias) =>
              tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, transposeA: ta, transposeB: tb, bias, activation }),
            `fused ta=${ta} tb=${tb} ${activation}`,
          );
        }
      }
    });
  });

  describe('pooling gradients equal the cpu kernels', () => {
    const r = rng(20);
    const cases = [
      { size: 2, stride: 2, pad: 'valid' },
      { size: 2, stride: 2, pad: 'same' },
      { size: 3, stride: 2, pad: 'same' },
      { size: 3, stride: 2, pad: 'valid' },
      { size: 3, stride: 1, pad: 'same' },
      { size: 2, stride: 1, pad: 'valid' },
    ] as const;
    it.each(cases)('maxPool $size×$size stride $stride $pad (no ties)', async ({ size, stride, pad }) => {
      for (const shape of [
        [2, 8, 8, 3],
        [3, int(r, 5, 11), int(r, 5, 11), int(r, 1, 6)],
      ]) {
        await expectSameGradients([distinct(shape, r)], (x) => tf.maxPool(x as tf.Tensor4D, size, stride, pad), `x ${shape}`);
      }
    });
    it.each(cases)('maxPool $size×$size stride $stride $pad with ties: first maximum wins, as on cpu', async ({ size, stride, pad }) => {
      const x = uniform([2, 9, 7, 4], r);
      for (let i = 0; i < x.data.length; i++) x.data[i] = Math.max(0, Math.round(2 * x.data[i]!)); // many equal values
      await expectSameGradients([x], (t) => tf.maxPool(t as tf.Tensor4D, size, stride, pad), 'ties');
    });
    it.each(cases)('avgPool $size×$size stride $stride $pad', async ({ size, stride, pad }) => {
      await expectSameGradients([uniform([2, 9, 7, 3], r)], (x) => tf.avgPool(x as tf.Tensor4D, size, stride, pad), 'avg');
    });
    it.each(cases)('avgPool $size×$size stride $stride $pad: the gradient is the derivative of the forward pass', async ({ size, stride, pad }) => {
      // Direct computation: each output averages the valid inputs of its window, so each of them receives dy / count.
      const shape = [2, 9, 7, 3] as const;
      const x = uniform([...shape], r);
      const info = tf.backend_util.computePool2DInfo([...shape], size, stride, 1, pad);
      const dy = uniform([2, info.outHeight, info.outWidth, 3], rng(99));
      const want = new Float32Array(x.data.length);
      const [, h, w, c] = shape;
      for (let n = 0; n < 2; n++)
        for (let i = 0; i < info.outHeight; i++)
          for (let j = 0; j < info.outWidth; j++) {
            const r0 = i * stride - info.padInfo.top;
            const c0 = j * stride - info.padInfo.left;
            const rows = [...Array(size).keys()].map((a) => r0 + a).filter((v) => v >= 0 && v < h);
            const cols = [...Array(size).keys()].map((b) => c0 + b).filter((v) => v >= 0 && v < w);
            for (let d = 0; d < c; d++) {
              const g = dy.data[((n * info.outHeight + i) * info.outWidth + j) * c + d]! / (rows.length * cols.length);
              for (const rr of rows) for (const cc of cols) want[((n * h + rr) * w + cc) * c + d] += g;
            }
          }
      for (const backend of [engine, 'cpu'] as const) {
        await initBackend(backend);
        const got = tf.tidy(() => {
          const xt = tf.tensor4d(x.data, [...shape]);
          return tf.grads((t: tf.Tensor) => tf.avgPool(t as tf.Tensor4D, size, stride, pad))([xt], tf.tensor(dy.data, dy.shape))[0]!;
        });
        expect(relErr(got.dataSync(), want), backend).toBeLessThan(TOL);
        got.dispose();
      }
    });
  });

  describe('gradients of the other ops the layers use', () => {
    const r = rng(30);
    it('concat, slice, pad, split, stack', async () => {
      await expectSameGradients(
        [uniform([2, 5, 4, 3], r), uniform([2, 5, 4, 2], r)],
        (a, b) => {
          const c = tf.concat([a, b], 3);
          const s = tf.slice(c, [0, 1, 0, 1], [2, 3, 4, 3]);
          const [p, q] = tf.split(tf.pad(s, [[0, 0], [1, 2], [0, 1], [0, 0]]), [2, 4], 1);
          return tf.stack([tf.mul(p!, 2), tf.slice(q!, [0, 0, 0, 0], [2, 2, 5, 3])]);
        },
        'concat/slice/pad/split/stack',
      );
    });
    it('moments-based batch norm, mean and sum over axes', async () => {
      await expectSameGradients(
        [uniform([4, 5, 6, 3], r), uniform([3], r), uniform([3], r)],
        (x, gamma, beta) => {
          const { mean, variance } = tf.moments(x, [0, 1, 2]);
          const xhat = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-3)));
          const y = tf.add(tf.mul(xhat, gamma), beta);
          return tf.concat([tf.mean(y, [1, 2]).reshape([-1]), tf.sum(y, [0, 1]).reshape([-1]), tf.mean(y, 0).reshape([-1])]);
        },
        'batchnorm',
      );
    });
    // tf.batchNorm's gradient works in tfjs only with both offset and scale given and [C] statistics (tf.grads reads the
    // absent inputs' ids; other shapes it reshapes wrongly); where one is absent, and for statistics that are not per channel, the values are compared.
    const bnInputs = (xs: readonly number[], ss: readonly number[], seed: number) => {
      const rr = rng(seed);
      const positive = { data: uniform([...ss], rr).data.map((v) => 0.1 + Math.abs(v)), shape: [...ss] };
      return [uniform([...xs], rr), uniform([...ss], rr), positive, uniform([...ss], rr), uniform([...ss], rr)];
    };
    it.each([
      ['[C] statistics', [4, 5, 6, 3], [3]],
      ['[C] statistics above the threads threshold (2¹⁸ + 5 rows of 4)', [2 ** 18 + 5, 4], [4]],
    ] as const)('tf.batchNorm (FusedBatchNorm, as tf.layers.batchNormalization calls it) and its gradient: %s', async (_name, xs, ss) => {
      await expectSameGradients(bnInputs(xs, ss, 31), (x, m, v, o, sc) => tf.batchNorm(x!, m!, v!, o, sc, 1e-3), 'batchNorm');
    });
    it.each([
      ['[1, 1, C] statistics (tfjs\'s gradient reshapes them wrongly on every backend)', [3, 7, 5, 9], [1, 1, 9], true, true],
      ['no offset, [1, 1, C] statistics', [3, 7, 5, 9], [1, 1, 9], false, true],
      ['no scale, 2-D input', [37, 11], [11], true, false],
      ['neither', [6, 4, 8], [8], false, false],
      ['per-position statistics (wasm keeps these)', [2, 3, 4], [3, 4], true, true],
    ] as const)('tf.batchNorm values: %s', async (_name, xs, ss, hasOffset, hasScale) => {
      const inputs = bnInputs(xs, ss, 32);
      const run = async (be: 'cpu' | Engine) => {
        await initBackend(be);
        return tf.tidy(() => {
          const [x, m, v, o, sc] = inputs.map((a) => tf.tensor(a.data, a.shape));
          return tf.batchNorm(x!, m!, v!, hasOffset ? o : undefined, hasScale ? sc : undefined, 1e-3).dataSync() as Float32Array;
        });
      };
      const ref = await run('cpu');
      expect(relErr(await run(engine), ref)).toBeLessThan(TOL);
    });
    it('sum and mean over many rows (the pooled path) and over few rows (the loop)', async () => {
      await expectSameGradients(
        [uniform([8, 32, 32, 5], r)],
        (x) =>
          tf.concat([
            tf.sum(tf.mul(x, x), [0, 1, 2]),
            tf.mean(x, [0, 1, 2]),
            tf.mean(x, [1, 2]).reshape([-1]),
            tf.sum(x, [1]).reshape([-1]),
          ]),
        'large reductions',
      );
    });
    it('gather (UnsortedSegmentSum, missing on stock wasm)', async () => {
      const idx = [3, 0, 3, 1, 4, 0];
      await expectSameGradients(
        [uniform([5, 4], r)],
        (x) => tf.mul(tf.gather(x, tf.tensor1d(idx, 'int32')), 1.5),
        'gather',
      );
    });
    it('logSoftmax and softmaxCrossEntropy losses', async () => {
      const labels = tf.tidy(() => tf.oneHot(tf.tensor1d([1, 0, 4, 2, 2, 3], 'int32'), 5).arraySync()) as number[][];
      await expectSameGradients(
        [uniform([6, 5], r)],
        (logits) =>
          tf.add(
            tf.losses.softmaxCrossEntropy(tf.tensor2d(labels), logits),
            tf.neg(tf.mean(tf.sum(tf.mul(tf.tensor2d(labels), tf.logSoftmax(logits)), 1))),
          ),
        'losses',
      );
    });
  });

  describe('the native engine\'s own kernels (fused ops, large elementwise ops), on every engine', () => {
    const r = rng(50);
    it.each([
      { shape: [4, 6, 5, 8], chunks: 2 },
      { shape: [6, 7, 3, 5], chunks: 3 },
      { shape: [12, 16], chunks: 1 },
      { shape: [32, 9, 9, 16], chunks: 4 },
    ])('chunked batch norm $shape in $chunks chunks: y, x̂, statistics and every gradient', async ({ shape, chunks }) => {
      const C = shape[shape.length - 1]!;
      await expectSameGradients(
        [uniform(shape, r), uniform([C], r), uniform([C], r)],
        (x, g, b) => {
          const bn = chunkedBatchNorm(tf.mul(x, 3), g, b, chunks, 1e-3);
          return tf.concat([bn.y.reshape([-1]), tf.mul(bn.xhat, 0.5).reshape([-1]), bn.mean.reshape([-1]), bn.variance.reshape([-1])]);
        },
        `bn ${shape}/${chunks}`,
      );
    });
    it('tile (tfjs batch norm gradient broadcasts with it) on every axis pattern, and its gradient', async () => {
      for (const [shape, reps] of [
        [[1, 1, 1, 5], [8, 6, 7, 1]],
        [[2, 3, 4], [2, 1, 3]],
        [[3, 1], [1, 4]],
        [[7], [5]],
      ] as const) {
        await expectSameGradients([uniform([...shape], r)], (x) => tf.mul(tf.tile(x, [...reps]), 1.5), `tile ${shape} × ${reps}`);
      }
    });
    it('relu gradient, with zeros, negative zeros and NaN in the input', async () => {
      const x = uniform([64, 9, 9, 3], r);
      for (let i = 0; i < x.data.length; i += 7) x.data[i] = 0;
      for (let i = 3; i < x.data.length; i += 11) x.data[i] = -0;
      x.data[5] = Number.NaN;
      const run = async (backend: 'cpu' | Engine) => {
        await initBackend(backend);
        const xt = tf.tensor(x.data, x.shape);
        const dy = tf.tensor(uniform(x.shape, rng(7)).data, x.shape);
        const g = tf.grad((t: tf.Tensor) => tf.relu(t))(xt, dy);
        const out = g.dataSync() as Float32Array;
        tf.dispose([xt, dy, g]);
        return out;
      };
      const ref = await run('cpu');
      const got = await run(engine);
      expect(Number.isNaN(got[5]!) && Number.isNaN(ref[5]!)).toBe(true);
      got[5] = ref[5] = 0;
      expect(relErr(got, ref)).toBeLessThan(TOL);
      // and the forward pass itself (native: its own Relu kernel)
      const forward = async (backend: 'cpu' | Engine) => {
        await initBackend(backend);
        const y = tf.tidy(() => tf.relu(tf.tensor(x.data, x.shape)).dataSync() as Float32Array);
        return y;
      };
      const yRef = await forward('cpu');
      const yGot = await forward(engine);
      expect(Number.isNaN(yGot[5]!) && Number.isNaN(yRef[5]!)).toBe(true);
      yGot[5] = yRef[5] = 0;
      expect(Array.from(yGot)).toEqual(Array.from(yRef));
    });
    it('large same-shape and trailing-broadcast add, sub, mul (both operand orders), and concat/split on every axis', async () => {
      await expectSameGradients(
        [uniform([16, 8, 8, 12], r), uniform([12], r), uniform([8, 12], r), uniform([16, 8, 8, 12], r)],
        (a, b, c, d) =>
          tf.concat([
            tf.add(a, b), tf.sub(b, a), tf.sub(a, c), tf.mul(c, a), tf.mul(a, d), tf.sub(a, d), tf.add(tf.scalar(2), a),
            tf.mul(a, tf.scalar(0.3)), tf.sub(tf.scalar(1.5), a), tf.sub(a, tf.scalar(-0.25)),
          ], 0),
        'binary',
      );
      // a scalar operand on more than 2²⁰ elements (the kernel's flat loop, split between threads) and an odd size
      for (const n of [(1 << 20) + 3, 4099]) {
        await expectSameGradients(
          [uniform([n], r)],
          (a) => tf.concat([tf.mul(a, tf.scalar(1.75)), tf.sub(tf.scalar(0.5), a), tf.add(a, tf.scalar(3))]),
          `scalar binary n=${n}`,
        );
      }
      // RealDiv (dropout's scaling, tfjs's batch-norm gradient): divisors away from zero, every operand pattern
      const away = (shape: number[]) => ({ data: uniform(shape, r).data.map((v) => (v < 0 ? -0.5 : 0.5) + v), shape });
      await expectSameGradients(
        [away([16, 8, 8, 12]), away([12]), away([16, 8, 8, 12])],
        (a, b, d) => tf.concat([tf.div(a, b), tf.div(b, a), tf.div(a, d), tf.div(a, tf.scalar(0.8)), tf.div(tf.scalar(1.5), a)], 0),
        'div',
      );
      await expectSameGradients([away([(1 << 20) + 3])], (a) => tf.concat([tf.div(a, tf.scalar(0.75)), tf.div(tf.scalar(-2), a)]), 'scalar div');
      // division by zero and of zero: the same infinities and NaNs as cpu
      const zeros = async (backend: 'cpu' | Engine) => {
        await initBackend(backend);
        return tf.tidy(() => {
          const a = tf.tensor1d(Float32Array.from({ length: 5000 }, (_, i) => [0, 1, -1, 2.5][i % 4]!));
          const b = tf.tensor1d(Float32Array.from({ length: 5000 }, (_, i) => [0, 0, 0, -0.5, 3][i % 5]!));
          return Array.from(tf.concat([tf.div(a, b), tf.div(a, tf.scalar(0))]).dataSync());
        });
      };
      expect(await zeros(engine)).toEqual(await zeros('cpu'));
      for (const axis of [0, 1, 2, 3]) {
        await expectSameGradients(
          [uniform([6, 5, 4, 7], r), uniform([6, 5, 4, 7], r)],
          (a, b) => {
            const c = tf.concat([a, tf.mul(b, 2), a], axis);
            const parts = tf.split(c, [2, c.shape[axis]! - 5, 3], axis);
            return tf.concat(parts.map((p, i) => tf.mul(p, i + 1).reshape([-1])));
          },
          `concat/split axis ${axis}`,
        );
      }
    });
  });

  describe('a whole small CNN', () => {
    it('every parameter gradient equals cpu', async () => {
      const r = rng(40);
      const x = uniform([4, 16, 16, 3], r);
      const labels = new Float32Array(4 * 10);
      for (let i = 0; i < 4; i++) labels[i * 10 + int(r, 0, 9)] = 1;
      const params = [
        uniform([5, 5, 3, 8], r),
        uniform([8], r),
        uniform([3, 3, 8, 16], r),
        uniform([16], r),
        uniform([64, 10], r),
        uniform([10], r),
      ];
      const net = (w1: tf.Tensor, b1: tf.Tensor, w2: tf.Tensor, b2: tf.Tensor, w3: tf.Tensor, b3: tf.Tensor) => {
        let h = tf.tensor4d(x.data, x.shape as [number, number, number, number]);
        h = tf.relu(tf.add(tf.conv2d(h, w1 as tf.Tensor4D, 1, 'same'), b1)) as tf.Tensor4D;
        h = tf.maxPool(h, 2, 2, 'valid'); // 8×8
        h = tf.relu(tf.add(tf.conv2d(h, w2 as tf.Tensor4D, 2, 'same'), b2)) as tf.Tensor4D; // 4×4
        h = tf.avgPool(h, 2, 2, 'valid'); // 2×2×16
        const logits = tf.add(tf.matMul(h.reshape([4, 64]), w3 as tf.Tensor2D), b3);
        return tf.losses.softmaxCrossEntropy(tf.tensor2d(labels, [4, 10]), logits);
      };
      await expectSameGradients(params, net as unknown as (...xs: tf.Tensor[]) => tf.Tensor, 'cnn');
    });
  });
});

describe('initBackend', () => {
  it('explains that tfjs-node is not installed', async () => {
    await expect(initBackend('tfjs-node')).rejects.toThrow(
      /backend tfjs-node requested but @tensorflow\/tfjs-node is not installed \(npm i @tensorflow\/tfjs-node needs internet/,
    );
    await expect(initBackend('tfjs-node-gpu')).rejects.toThrow(/tfjs-node-gpu is not installed/);
  });
  it('explicit argument > DKFAC_BACKEND > auto', () => {
    expect(resolveBackendRequest('wasm', { DKFAC_BACKEND: 'cpu' })).toBe('wasm');
    expect(resolveBackendRequest('auto', { DKFAC_BACKEND: 'cpu' })).toBe('cpu');
    expect(resolveBackendRequest('auto', {})).toBe('auto');
    expect(() => resolveBackendRequest('auto', { DKFAC_BACKEND: 'gpu' })).toThrow(/DKFAC_BACKEND=gpu is not a backend/);
  });
  it("'auto' takes the native engine where its addon is built, else wasm, idempotently, and never cpu", async () => {
    const saved = process.env.DKFAC_BACKEND;
    delete process.env.DKFAC_BACKEND;
    try {
      const a = await initBackend();
      const b = await initBackend('auto');
      expect(a.name).toBe(loadNative() ? 'native' : 'wasm');
      expect(a.requested).toBe('auto');
      expect(a.detail).toMatch(/wasm simd, \d+ training-kernel fixes/);
      if (loadNative()) expect(a.detail).toMatch(/oneDNN (avx512|avx2)\w* kernels on the wasm heap/);
      expect(b).toBe(a);
      expect(tf.getBackend()).toBe('wasm');
      const cpu = await initBackend('cpu');
      expect(cpu.name).toBe('cpu');
      expect((await initBackend('wasm')).name).toBe('wasm');
    } finally {
      if (saved !== undefined) process.env.DKFAC_BACKEND = saved;
    }
  });
  it('the native addon is built wherever its prerequisites are installed (so CI runs the native engine)', () => {
    const prerequisites =
      process.platform === 'linux' &&
      existsSync('/usr/include/oneapi/dnnl/dnnl.hpp') &&
      existsSync('/usr/lib/x86_64-linux-gnu/libopenblas.so') &&
      process.env.DKFAC_NATIVE !== '0';
    if (prerequisites) expect(nativeUnavailableReason()).toBeUndefined();
    else expect(nativeUnavailableReason()).toMatch(/not built|failed to load|disabled/);
  });
  it('shared Identity/Cast data on wasm survives disposal of the original', async () => {
    await initBackend('wasm');
    const a = tf.tensor1d([1, 2, 3]);
    const b = tf.clone(a);
    const c = tf.cast(a, 'float32');
    a.dispose();
    expect(Array.from(b.dataSync())).toEqual([1, 2, 3]);
    expect(Array.from(c.dataSync())).toEqual([1, 2, 3]);
    tf.dispose([b, c]);
  });
});
