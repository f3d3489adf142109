/**
 * Convolution factors against explicit patch extraction in JS loops (TF zero padding, 'same'/'valid', strides 1
 * and 2): the patch tensor itself, the KFC factors with the |T| convention (A and G averaged over the M·|T| rows,
 * block F̂ = |T|·A⊗G), the Appendix-A factors (mean patch, summed derivatives), and a conv with a 1×1 output map
 * against the equivalent dense layer. The network's forward and backward passes are written out by hand, so the
 * derivatives are independent of the probe mechanism too.
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { loadNative } from '../src/backend/native';
import {
  computeInverses,
  computeStatistics,
  type ConvGeometry,
  extractPatches,
  type KroneckerBlock,
  type KroneckerStats,
  patchSums,
  registerBlocks,
} from '../src/kfac';
import { Model, type ModelFn } from '../src/nn/model';
import type { Padding } from '../src/nn/layers';

beforeAll(async () => {
  await initBackend();
});

function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * scale;
  }
  return out;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number): void {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  expect(scale).toBeGreaterThan(0);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  expect(worst).toBeLessThanOrEqual(rel * scale);
}

/** (1/count) Σ v vᵀ over the rows. */
function moment(rows: number[][], count = rows.length): Float64Array {
  const d = rows[0].length;
  const out = new Float64Array(d * d);
  for (const v of rows) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) out[i * d + j] += (v[i] * v[j]) / count;
  return out;
}

/**
 * Explicit patches: patches[n][t] for output location t = y·Wo + x, entry ((i·kw + j)·C + c) = input at
 * (y·s + i − top, x·s + j − left, c), zero outside. TF padding: total = max((Ho−1)s + k − H, 0), top = ⌊total/2⌋.
 */
function patchesByHand(x: Float32Array, [M, H, W, C]: number[], k: [number, number], s: [number, number], padding: Padding) {
  const out1 = (n: number, kk: number, ss: number) => (padding === 'same' ? Math.ceil(n / ss) : Math.floor((n - kk) / ss) + 1);
  const Ho = out1(H, k[0], s[0]);
  const Wo = out1(W, k[1], s[1]);
  const top = padding === 'same' ? Math.floor(Math.max((Ho - 1) * s[0] + k[0] - H, 0) / 2) : 0;
  const left = padding === 'same' ? Math.floor(Math.max((Wo - 1) * s[1] + k[1] - W, 0) / 2) : 0;
  const patches: number[][][] = [];
  for (let n = 0; n < M; n++) {
    const pn: number[][] = [];
    for (let y = 0; y < Ho; y++) {
      for (let xo = 0; xo < Wo; xo++) {
        const p: number[] = [];
        for (let i = 0; i < k[0]; i++) {
          for (let j = 0; j < k[1]; j++) {
            for (let c = 0; c < C; c++) {
              const r = y * s[0] + i - top;
              const q = xo * s[1] + j - left;
              p.push(r >= 0 && r < H && q >= 0 && q < W ? x[((n * H + r) * W + q) * C + c] : 0);
            }
          }
        }
        pn.push(p);
      }
    }
    patches.push(pn);
  }
  return { patches, Ho, Wo };
}

const CONFIGS: { kernel: [number, number]; strides: [number, number]; padding: Padding }[] = [
  { kernel: [3, 3], strides: [1, 1], padding: 'same' },
  { kernel: [3, 2], strides: [2, 2], padding: 'same' },
  { kernel: [2, 3], strides: [1, 2], padding: 'same' },
  { kernel: [3, 3], strides: [1, 1], padding: 'valid' },
  { kernel: [2, 3], strides: [2, 2], padding: 'valid' },
];
const SHAPE = [3, 5, 6, 2]; // M, H, W, Cin
const COUT = 3;
const CLASSES = 4;

describe('patch extraction', () => {
  // both the native engine's DkfacPatches kernel (where built) and the composite slices on plain wasm
  it.each<'wasm' | 'native'>(['wasm', ...(loadNative() ? (['native'] as const) : [])])('extractPatches and patchSums equal explicit loops (TF zero padding, strides 1 and 2), %s engine', async (engine) => {
    await initBackend(engine);
    const xd = rand(SHAPE.reduce((a, b) => a * b), 1, 2);
    const x = tf.tensor4d(xd, SHAPE as [number, number, number, number]);
    for (const g of CONFIGS) {
      const { patches, Ho, Wo } = patchesByHand(xd, SHAPE, g.kernel, g.strides, g.padding);
      const p = extractPatches(x, g as ConvGeometry);
      const K = g.kernel[0] * g.kernel[1] * SHAPE[3];
      expect(p.shape).toEqual([SHAPE[0], Ho, Wo, K]);
      expect(Array.from(p.dataSync())).toEqual(patches.flat(2).map(Math.fround));
      // and they are exactly what tf.conv2d multiplies: conv(x, W) = patches · W_flat
      const w = tf.tensor4d(rand(K * COUT, 2), [g.kernel[0], g.kernel[1], SHAPE[3], COUT]);
      const conv = tf.conv2d(x, w, g.strides, g.padding);
      const viaPatches = tf.matMul(tf.reshape(p, [-1, K]) as tf.Tensor2D, tf.reshape(w, [K, COUT]) as tf.Tensor2D);
      expectClose(viaPatches.dataSync(), conv.dataSync(), 1e-6);
      const sums = patchSums(x, g as ConvGeometry);
      const expected = patches.map((pn) => pn[0].map((_, i) => pn.reduce((s, v) => s + v[i], 0))).flat();
      expectClose(sums.dataSync(), expected, 1e-6);
      tf.dispose([p, w, conv, viaPatches, sums]);
    }
    x.dispose();
    await initBackend();
  });
});

describe('conv factors: KFC (|T| convention) and Appendix A', () => {
  for (const g of CONFIGS) {
    it(`kernel ${g.kernel} stride ${g.strides} ${g.padding}`, () => {
      // conv (pre-activation, no nonlinearity) → flatten → dense: ds of the conv is (p − e_y)·W_fcᵀ, by hand
      const net: ModelFn = (L, x) => L.dense('fc', L.conv2d('c', x, { filters: COUT, kernel: g.kernel, strides: g.strides, padding: g.padding }), { units: CLASSES });
      const model = new Model('conv', net, SHAPE.slice(1) as [number, number, number], CLASSES, 5);
      model.params.get('c/bias')!.assign(tf.tensor1d(rand(COUT, 6, 0.5)));
      const [M, H, W, C] = SHAPE;
      const xd = rand(M * H * W * C, 3, 2);
      const x = tf.tensor4d(xd, [M, H, W, C]);
      const { patches, Ho, Wo } = patchesByHand(xd, SHAPE, g.kernel, g.strides, g.padding);
      const T = Ho * Wo;
      const K = g.kernel[0] * g.kernel[1] * C;
      const wc = model.params.get('c/kernel')!.dataSync();
      const bc = model.params.get('c/bias')!.dataSync();
      const wf = model.params.get('fc/kernel')!.dataSync();
      const bf = model.params.get('fc/bias')!.dataSync();
      for (const conv of ['kfc', 'cheap'] as const) {
        const blocks = registerBlocks(model.layers, { conv });
        const res = computeStatistics(model, x, { blocks, sampled: true, rng: seedrandom(`${g.kernel}${g.strides}${g.padding}`) });
        const aRows: number[][] = [];
        const dRows: number[][] = [];
        const meanA: number[][] = [];
        const sumD: number[][] = [];
        for (let n = 0; n < M; n++) {
          // forward: s_t = a_t·W + b, logits = flatten(s)·W_fc + b_fc
          const s = patches[n].map((a) => [...Array(COUT).keys()].map((o) => bc[o] + a.reduce((acc, ai, i) => acc + ai * wc[i * COUT + o], 0)));
          const flat = s.flat();
          const z = [...Array(CLASSES).keys()].map((k) => bf[k] + flat.reduce((acc, v, i) => acc + v * wf[i * CLASSES + k], 0));
          const mx = Math.max(...z);
          const ez = z.map((v) => Math.exp(v - mx));
          const sum = ez.reduce((a, b) => a + b, 0);
          const dz = ez.map((e, k) => e / sum - (k === res.targets[n] ? 1 : 0));
          // backward: ds (per example) = W_fc · dz, reshaped [T, Cout]
          const ds = flat.map((_, i) => dz.reduce((acc, d, k) => acc + d * wf[i * CLASSES + k], 0));
          const dsT = [...Array(T).keys()].map((t) => ds.slice(t * COUT, (t + 1) * COUT));
          for (let t = 0; t < T; t++) {
            aRows.push([...patches[n][t], 1]);
            dRows.push(dsT[t]);
          }
          meanA.push([...patches[n][0].map((_, i) => patches[n].reduce((acc, a) => acc + a[i], 0) / T), 1]);
          sumD.push(dsT[0].map((_, o) => dsT.reduce((acc, d) => acc + d[o], 0)));
        }
        const st = res.stats.get('c') as KroneckerStats;
        expect([st.dA, st.dG]).toEqual([K + 1, COUT]);
        if (conv === 'kfc') {
          // A = E_{n,t}[ā ā ᵀ], G = E_{n,t}[ds dsᵀ] over the M·|T| rows; F̂ = |T|·A⊗G
          expect(st.scale).toBe(T);
          expectClose(st.A, moment(aRows), 1e-5);
          expectClose(st.G, moment(dRows), 1e-4);
          expect((blocks[0] as KroneckerBlock).variant).toBe('conv-kfc');
        } else {
          // A = E_n[m_a m_aᵀ] (mean patch, homogeneous 1), G = E_n[σ σᵀ] (σ = Σ_t ds_t); F̂ = A⊗G
          expect(st.scale).toBe(1);
          expectClose(st.A, moment(meanA), 1e-5);
          expectClose(st.G, moment(sumD), 1e-4);
        }
      }
      x.dispose();
      model.dispose();
    });
  }
});

describe('a conv with a 1×1 output map is the dense layer on the flattened input', () => {
  it('same A, G (KFC and cheap) and the same preconditioned direction', () => {
    const [H, W, C, O] = [3, 2, 2, 3];
    const convNet: ModelFn = (L, x) => L.dense('fc', tf.tanh(L.conv2d('c', x, { filters: O, kernel: [H, W], padding: 'valid' })), { units: 4 });
    const denseNet: ModelFn = (L, x) => L.dense('fc', tf.tanh(L.dense('c', x, { units: O })), { units: 4 });
    const cm = new Model('conv', convNet, [H, W, C], 4, 1);
    const dm = new Model('dense', denseNet, [H, W, C], 4, 2);
    const K = H * W * C;
    dm.params.get('c/kernel')!.assign(tf.reshape(cm.params.get('c/kernel')!, [K, O]));
    cm.params.get('c/bias')!.assign(tf.tensor1d(rand(O, 4, 0.5)));
    dm.params.get('c/bias')!.assign(cm.params.get('c/bias')!);
    dm.params.get('fc/kernel')!.assign(tf.reshape(cm.params.get('fc/kernel')!, [O, 4]));
    dm.params.get('fc/bias')!.assign(cm.params.get('fc/bias')!);
    const M = 4;
    const x = tf.tensor4d(rand(M * K, 8, 2), [M, H, W, C]);
    const gw = tf.tensor4d(rand(K * O, 9), [H, W, C, O]);
    const gb = tf.tensor1d(rand(O, 10));
    const gd = new Map<string, tf.Tensor>([
      ['c/kernel', tf.reshape(gw, [K, O])],
      ['c/bias', gb],
    ]);
    const gc = new Map<string, tf.Tensor>([
      ['c/kernel', gw],
      ['c/bias', gb],
    ]);
    for (const conv of ['kfc', 'cheap'] as const) {
      const cb = registerBlocks(cm.layers, { conv })[0] as KroneckerBlock;
      const db = registerBlocks(dm.layers, { conv })[0] as KroneckerBlock;
      expect(db.variant).toBe('dense');
      const sc = computeStatistics(cm, x, { blocks: [cb], sampled: true, rng: seedrandom('same') });
      const sd = computeStatistics(dm, x, { blocks: [db], sampled: true, rng: seedrandom('same') });
      expect(Array.from(sc.targets)).toEqual(Array.from(sd.targets));
      const a = sc.stats.get('c') as KroneckerStats;
      const b = sd.stats.get('c') as KroneckerStats;
      expect(a.scale).toBe(1);
      expectClose(a.A, b.A, 1e-5);
      expectClose(a.G, b.G, 1e-5);
      cb.accumulate(a);
      db.accumulate(b);
      for (const mode of ['factored', 'eigen'] as const) {
        const vc = cb.precondition(gc, computeInverses(cb.factors(), 1e-3, mode));
        const vd = db.precondition(gd, computeInverses(db.factors(), 1e-3, mode));
        expect(vc.get('c/kernel')!.shape).toEqual([H, W, C, O]);
        expectClose(vc.get('c/kernel')!.dataSync(), vd.get('c/kernel')!.dataSync(), 1e-3);
        expectClose(vc.get('c/bias')!.dataSync(), vd.get('c/bias')!.dataSync(), 1e-3);
        tf.dispose([...vc.values(), ...vd.values()]);
      }
      cb.dispose();
      db.dispose();
    }
    tf.dispose([x, gw, gb, ...gd.values()]);
    cm.dispose();
    dm.dispose();
  });
});
