/**
 * The native engine's K-FAC bookkeeping (native/src/kfac.cc) against the TypeScript passes it replaces: the same
 * bits for the factor moments and the moving-average fold, the same verdict of the finiteness check; and its Gram
 * kernel (OpenBLAS ssyrk, native/src/linalg.cc) against XᵀX summed in float64 here, and the factors it feeds against
 * the same factors on the plain wasm engine; its patch Gram kernel (the KFC input factor's PᵀP from shifted products of
 * the input) against the patches' Gram in float64 and the KFC factors on wasm.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { GRAM_KERNEL, hasKernel, PATCH_GRAM_KERNEL } from '../src/backend/fused-ops';
import { loadNative } from '../src/backend/native';
import { checkStatsFinite } from '../src/kfac/blocks';
import { convKfcFactors, denseFactors, extractPatches, isKnownFinite, momentFromGramTs } from '../src/kfac/factors';
import { mulberry32 } from '../src/linalg/random';

const addon = loadNative();

/** `got` is XᵀX of the row-major [rows, K] matrix x, summed here in float64: to 1e-5 relative, and exactly symmetric. */
function expectGramOf(got: ArrayLike<number>, x: ArrayLike<number>, rows: number, K: number): void {
  let worst = 0;
  let asym = 0;
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) {
      let want = 0;
      let scale = 0;
      for (let n = 0; n < rows; n++) {
        const v = x[n * K + i]! * x[n * K + j]!;
        want += v;
        scale += Math.abs(v);
      }
      worst = Math.max(worst, Math.abs(got[i * K + j]! - want) / Math.max(scale, 1e-30));
      if (got[i * K + j] !== got[j * K + i]) asym++;
    }
  }
  expect(worst).toBeLessThan(1e-5);
  expect(asym).toBe(0);
}

describe.skipIf(!addon)('native K-FAC bookkeeping (skipped: the addon is not built)', () => {
  const r = mulberry32(5);
  it.each([1, 2, 31, 32, 33, 97, 300])('moment from a K×K Gram, K = %i, with and without the homogeneous coordinate, bit for bit', (K) => {
    const data = Float32Array.from({ length: 7 + K * K + K }, () => 4 * r() - 2);
    for (const cOff of [-1, 7 + K * K]) {
      const d = cOff >= 0 ? K + 1 : K;
      const want = momentFromGramTs(data, 7, cOff, 37, K, new Float64Array(d * d));
      const got = new Float64Array(d * d);
      addon!.momentFromGram(data, 7, cOff, 37, K, got);
      let differ = 0;
      let asym = 0;
      for (let i = 0; i < d * d; i++) if (!Object.is(got[i], want[i])) differ++;
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) if (got[i * d + j] !== got[j * d + i]) asym++;
      expect({ differ, asym }).toEqual({ differ: 0, asym: 0 });
    }
  });
  it.each([1, 33, 300, 600])('moment from an exactly symmetric K×K Gram, K = %i: the in-order pass gives the same bits as the symmetrising one', (K) => {
    const data = new Float32Array(3 + K * K + K);
    for (let i = 0; i < K; i++) for (let j = 0; j <= i; j++) data[3 + i * K + j] = data[3 + j * K + i] = 4 * r() - 2;
    for (let i = 0; i < K; i++) data[3 + K * K + i] = r();
    for (const cOff of [-1, 3 + K * K]) {
      const d = cOff >= 0 ? K + 1 : K;
      const want = momentFromGramTs(data, 3, cOff, 37, K, new Float64Array(d * d));
      const got = new Float64Array(d * d).fill(Number.NaN);
      addon!.momentFromGram(data, 3, cOff, 37, K, got, true);
      let differ = 0;
      for (let i = 0; i < d * d; i++) if (!Object.is(got[i], want[i])) differ++;
      expect(differ).toBe(0);
    }
  });
  it.each([40, 520])('the moment pass reports whether every entry it wrote is finite (NaN or ±Infinity in the Gram or the column sums, either pass), K = %i', (K) => {
    const fresh = () => {
      const data = new Float32Array(K * K + K);
      for (let i = 0; i < K; i++) for (let j = 0; j <= i; j++) data[i * K + j] = data[j * K + i] = 4 * r() - 2;
      return data;
    };
    const d = K + 1;
    for (const symmetric of [false, true]) {
      expect(addon!.momentFromGram(fresh(), 0, K * K, 3, K, new Float64Array(d * d), symmetric)).toBe(true);
      for (const [at, v] of [[5 * K + 7, Number.NaN], [K * K - 1, Infinity], [0, -Infinity], [K * K + 3, Number.NaN], [K * K + K - 1, Infinity]] as const) {
        const data = fresh();
        data[at] = v;
        if (at < K * K) data[(at % K) * K + Math.floor(at / K)] = v; // (keeps it symmetric)
        expect(addon!.momentFromGram(data, 0, K * K, 3, K, new Float64Array(d * d), symmetric), `${v} at ${at}, symmetric ${symmetric}`).toBe(false);
        // the column sums alone are not read without the homogeneous coordinate
        if (at >= K * K) expect(addon!.momentFromGram(data, 0, -1, 3, K, new Float64Array(K * K), symmetric)).toBe(true);
      }
    }
  });
  it("a NaN in a layer's input on the native engine: its factor is not taken as checked, and the statistics check names the layer", async () => {
    await initBackend('native');
    const a = Float32Array.from({ length: 16 * 9 }, () => r());
    a[40] = Number.NaN;
    const [ta, td] = [tf.tensor2d(a, [16, 9]), tf.tensor2d(Float32Array.from({ length: 16 * 4 }, () => r()), [16, 4])];
    const good = denseFactors(td, td, false);
    const bad = denseFactors(ta, td, true);
    tf.dispose([ta, td]);
    expect(isKnownFinite(good.A) && isKnownFinite(good.G)).toBe(true);
    expect(isKnownFinite(bad.A)).toBe(false);
    expect(() => checkStatsFinite('fc7', bad)).toThrow(/K-FAC block fc7: A factor has a non-finite entry NaN/);
    expect(() => checkStatsFinite('fc7', good)).not.toThrow();
  });
  it('rejects arrays of the wrong size', () => {
    expect(() => addon!.momentFromGram(new Float32Array(8), 0, -1, 1, 3, new Float64Array(9))).toThrow(/sizes do not match/);
    expect(() => addon!.emaUpdate(new Float64Array(3), new Float64Array(4), 0.9)).toThrow(/lengths differ/);
  });
  it.each([1001, (1 << 18) + 5])('moving-average fold of %i entries equals the TypeScript loop bit for bit', (n) => {
    const s = Float64Array.from({ length: n }, () => r());
    const x = Float64Array.from({ length: n }, () => r() * 1e3);
    const want = Float64Array.from(s, (v, i) => 0.95 * v + (1 - 0.95) * x[i]!);
    addon!.emaUpdate(s, x, 0.95);
    expect(Array.from(s)).toEqual(Array.from(want));
  });
  it('finiteness: NaN, ±Infinity anywhere are found; large finite values are not', () => {
    const a = Float64Array.from({ length: 513 }, () => (r() - 0.5) * 1e300);
    expect(addon!.allFinite(a)).toBe(true);
    for (const bad of [Number.NaN, Infinity, -Infinity]) {
      for (const at of [0, 256, 512]) {
        const b = Float64Array.from(a);
        b[at] = bad;
        expect(addon!.allFinite(b), `${bad} at ${at}`).toBe(false);
      }
    }
    expect(addon!.allFinite(new Float64Array(0))).toBe(true);
  });
});

describe.skipIf(!addon)('the native Gram kernel (skipped: the addon is not built)', () => {
  afterAll(async () => {
    await initBackend();
  });
  const r = mulberry32(11);
  it.each([
    [1, 1],
    [5, 3],
    [37, 33],
    [128, 1025],
    [4099, 75],
    [0, 6],
  ])('XᵀX of a [%i, %i] matrix equals the float64 sum to 1e-5 relative, exactly symmetric', async (rows, K) => {
    await initBackend('native');
    expect(hasKernel(GRAM_KERNEL)).toBe(true);
    const x = Float32Array.from({ length: rows * K }, () => 2 * r() - 1);
    const g = tf.tidy(() => tf.engine().runKernel(GRAM_KERNEL, { x: tf.tensor2d(x, [rows, K]) }, {}) as tf.Tensor2D);
    expect(g.shape).toEqual([K, K]);
    const got = g.dataSync();
    g.dispose();
    expectGramOf(got, x, rows, K);
  });
  it("a dense layer's factors are the same on the native engine as on wasm (matMul), to 1e-5", async () => {
    const a = Float32Array.from({ length: 64 * 40 }, () => 2 * r() - 1);
    const ds = Float32Array.from({ length: 64 * 12 }, () => 2 * r() - 1);
    const factors = async (engine: 'native' | 'wasm') => {
      await initBackend(engine);
      expect(hasKernel(GRAM_KERNEL)).toBe(engine === 'native');
      const [ta, td] = [tf.tensor2d(a, [64, 40]), tf.tensor2d(ds, [64, 12])];
      const f = denseFactors(ta, td, true);
      tf.dispose([ta, td]);
      return f;
    };
    const w = await factors('wasm');
    const n = await factors('native');
    for (const k of ['A', 'G'] as const) {
      expect(n[k].length).toBe(w[k].length);
      const scale = Math.max(...Array.from(w[k], Math.abs));
      n[k].forEach((v, i) => expect(Math.abs(v - w[k][i]!) / scale, `${k}[${i}]`).toBeLessThan(1e-5));
    }
  });
});

// Both of the kernel's paths: the AVX-512 one (where the addon was compiled for it: the tiles read the input in place)
// and the sgemm one over copied windows (every other CPU).
const patchGramPaths = addon ? [...new Set([addon.patchGramPath('auto'), 'blas' as const])] : [];
describe.skipIf(!addon).each(patchGramPaths)('the native patch Gram kernel, %s path (skipped: the addon is not built)', (path) => {
  beforeAll(() => {
    expect(addon!.patchGramPath(path === 'blas' ? 'blas' : 'auto')).toBe(path);
  });
  afterAll(async () => {
    addon!.patchGramPath('auto');
    await initBackend();
  });
  const r = mulberry32(23);
  it.each([
    [2, 5, 5, 3, 3, 3, 'same'],
    [3, 7, 6, 2, 5, 5, 'same'],
    [2, 9, 8, 4, 3, 3, 'valid'],
    [1, 4, 3, 5, 5, 5, 'same'],
    [2, 6, 7, 3, 2, 3, 'same'],
    [2, 6, 5, 2, 1, 3, 'valid'],
    [3, 5, 9, 2, 4, 2, 'same'],
    [5, 16, 16, 8, 5, 5, 'same'],
    // channel counts for the AVX-512 tiles: two vectors (the second partly masked, or one lane), 32 + 8 (two blocks)
    [2, 9, 7, 24, 3, 3, 'same'],
    [3, 7, 7, 17, 3, 2, 'same'],
    [2, 8, 8, 32, 5, 5, 'same'],
    [1, 6, 9, 40, 3, 3, 'valid'],
    // above the kernel's threshold for OpenMP threads (N·H·W·C·(2KW−1)C ≥ 2²⁰): regions and shifts split over them
    [4, 12, 12, 32, 5, 5, 'same'],
    [12, 10, 11, 20, 3, 5, 'valid'],
  ] as const)('N %i, %i×%i×%i input, %i×%i kernel, %s: PᵀP of the patches to 1e-5 relative, exactly symmetric', async (N, H, W, C, kh, kw, padding) => {
    const x = Float32Array.from({ length: N * H * W * C }, () => 2 * r() - 1);
    const geometry = { kernel: [kh, kw] as [number, number], strides: [1, 1] as [number, number], padding };
    // the reference: the patches on the cpu backend (its own slices and concatenation), multiplied out in float64
    await tf.setBackend('cpu');
    const p = tf.tidy(() => extractPatches(tf.tensor4d(x, [N, H, W, C]), geometry));
    const [, Ho, Wo, K] = p.shape;
    const pd = p.dataSync();
    p.dispose();
    await initBackend('native');
    expect(hasKernel(PATCH_GRAM_KERNEL)).toBe(true);
    const g = tf.tidy(() => tf.engine().runKernel(PATCH_GRAM_KERNEL, { x: tf.tensor4d(x, [N, H, W, C]) }, { kernel: [kh, kw], padding }) as tf.Tensor);
    expect(g.shape).toEqual([K, K]);
    const got = g.dataSync();
    g.dispose();
    expectGramOf(got, pd, N * Ho * Wo, K);
  });
  it('examples taken in chunks (a large input) give the sum of the per-example Grams, to 1e-5 relative', async () => {
    await initBackend('native');
    // 66×66 positions × 5·64 floats of windows per example: 6 examples per chunk, so 8 examples are 2 chunks
    const [N, H, C] = [8, 64, 64];
    const x = tf.randomNormal([N, H, H, C], 0, 1, 'float32', 3) as tf.Tensor4D;
    const attrs = { kernel: [3, 3], padding: 'same' };
    const pg = (t: tf.Tensor) => tf.engine().runKernel(PATCH_GRAM_KERNEL, { x: t }, attrs) as tf.Tensor;
    const whole = tf.tidy(() => pg(x)).dataSync();
    const parts = tf.tidy(() => tf.addN(tf.split(x, N).map(pg))).dataSync();
    x.dispose();
    let worst = 0;
    let scale = 0;
    for (const v of parts) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < parts.length; i++) worst = Math.max(worst, Math.abs(whole[i]! - parts[i]!) / scale);
    expect(worst).toBeLessThan(1e-5);
  });
  it("a stride-1 conv layer's KFC factors are the same on the native engine (patch Gram) as on wasm (patches), to 1e-5", async () => {
    const x = Float32Array.from({ length: 6 * 10 * 10 * 4 }, () => 2 * r() - 1);
    const ds = Float32Array.from({ length: 6 * 10 * 10 * 5 }, () => 2 * r() - 1);
    const g = { kernel: [3, 3] as [number, number], strides: [1, 1] as [number, number], padding: 'same' as const };
    const factors = async (engine: 'native' | 'wasm') => {
      await initBackend(engine);
      expect(hasKernel(PATCH_GRAM_KERNEL)).toBe(engine === 'native');
      const [tx, td] = [tf.tensor4d(x, [6, 10, 10, 4]), tf.tensor4d(ds, [6, 10, 10, 5])];
      const f = convKfcFactors(tx, td, g, true);
      tf.dispose([tx, td]);
      return f;
    };
    const w = await factors('wasm');
    const n = await factors('native');
    expect(n.scale).toBe(w.scale);
    for (const k of ['A', 'G'] as const) {
      expect(n[k].length).toBe(w[k].length);
      const scale = Math.max(...Array.from(w[k], Math.abs));
      n[k].forEach((v, i) => expect(Math.abs(v - w[k][i]!) / scale, `${k}[${i}]`).toBeLessThan(1e-5));
    }
  });
});
