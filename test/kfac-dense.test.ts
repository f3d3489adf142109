/**
 * Dense and batch-norm Fisher blocks from the stats computation (probes + sampled targets) against independent
 * computations: the exact one-example block from per-example weight gradients (tf.grads w.r.t. the weights),
 * factors from a forward/backward pass written out in JS loops, the BN full block from one-example gradients;
 * sampled targets; error reporting; and tensor hygiene over repeated steps.
 *
 * Vec convention: vec = ROW-MAJOR flatten of the [(in+1), out] gradient matrix (weight rows, then the bias row), for
 * which vec(DW) = ā ⊗ g and the block is A ⊗ G.
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { kronecker } from '../src/linalg';
import {
  computeInverses,
  computeStatistics,
  DoublyFactoredBlock,
  type FisherBlock,
  KfacError,
  KroneckerBlock,
  type KroneckerStats,
  registerBlocks,
  sampleTargets,
  ScaleShiftBlock,
  type ScaleShiftStats,
} from '../src/kfac';
import { crossEntropy, Model, type ModelFn } from '../src/nn/model';

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

/** (1/M) Σ_n v_n v_nᵀ of rows v_n (length d), optionally with a 1 appended as the LAST entry. */
function secondMoment(rows: number[][], homogeneous: boolean): Float64Array {
  const vs = rows.map((r) => (homogeneous ? [...r, 1] : r));
  const d = vs[0].length;
  const out = new Float64Array(d * d);
  for (const v of vs) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) out[i * d + j] += (v[i] * v[j]) / vs.length;
  return out;
}

const mlp: ModelFn = (L, x) => {
  const h = tf.tanh(L.dense('fc1', x, { units: 4 }));
  return L.dense('fc2', h, { units: 3 });
};

/** The MLP's forward and backward pass in plain JS: activations and per-example pre-activation derivatives. */
function mlpByHand(model: Model, x: Float32Array, M: number, targets: Int32Array) {
  const get = (n: string) => Array.from(model.params.get(n)!.dataSync());
  const [W1, b1, W2, b2] = [get('fc1/kernel'), get('fc1/bias'), get('fc2/kernel'), get('fc2/bias')];
  const xs: number[][] = [];
  const hs: number[][] = [];
  const ds1: number[][] = [];
  const ds2: number[][] = [];
  for (let n = 0; n < M; n++) {
    const xn = Array.from(x.subarray(n * 5, n * 5 + 5));
    const h = [0, 1, 2, 3].map((o) => Math.tanh(b1[o] + xn.reduce((s, xi, i) => s + xi * W1[i * 4 + o], 0)));
    const z = [0, 1, 2].map((o) => b2[o] + h.reduce((s, hi, i) => s + hi * W2[i * 3 + o], 0));
    const mx = Math.max(...z);
    const ez = z.map((v) => Math.exp(v - mx));
    const sum = ez.reduce((a, b) => a + b, 0);
    const d2 = ez.map((e, k) => e / sum - (k === targets[n] ? 1 : 0)); // d(−log p_y)/dz
    const d1 = h.map((hi, i) => (1 - hi * hi) * d2.reduce((s, dk, k) => s + dk * W2[i * 3 + k], 0));
    xs.push(xn);
    hs.push(h);
    ds1.push(d1);
    ds2.push(d2);
  }
  return { xs, hs, ds1, ds2 };
}

describe('dense Kronecker factors', () => {
  it('one example: the exact block E[vec(DW)vec(DW)ᵀ] from tf.grads w.r.t. the weights equals A ⊗ G', () => {
    const model = new Model('mlp', mlp, [1, 1, 5], 3, 7);
    const blocks = registerBlocks(model.layers, { conv: 'kfc' });
    expect(blocks.map((b) => b.constructor)).toEqual([KroneckerBlock, KroneckerBlock]);
    const x = tf.tensor4d(rand(5, 1, 2), [1, 1, 1, 5]);
    const res = computeStatistics(model, x, { blocks, sampled: true, rng: seedrandom('one example'), training: false });
    const names = ['fc1/kernel', 'fc1/bias', 'fc2/kernel', 'fc2/bias'];
    const y = tf.tensor1d(res.targets, 'int32');
    const grads = tf.grads((...ps: tf.Tensor[]) =>
      crossEntropy(model.forward(x, { training: false, override: new Map(names.map((n, i) => [n, ps[i]])) }).logits, y),
    )(names.map((n) => model.params.get(n)!));
    for (const [layer, gi] of [
      ['fc1', 0],
      ['fc2', 2],
    ] as const) {
      // vec(G_W), G_W = [DW; db] of shape [(in+1), out], row-major
      const vec = Float64Array.from([...grads[gi].dataSync(), ...grads[gi + 1].dataSync()]);
      const n = vec.length;
      const exact = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) exact[i * n + j] = vec[i] * vec[j];
      const s = res.stats.get(layer) as KroneckerStats;
      expect(s.dA * s.dG).toBe(n);
      expectClose(kronecker(s.A, s.dA, s.G, s.dG), exact, 1e-5);
    }
    tf.dispose([x, y, ...grads]);
    model.dispose();
  });

  it('a batch: A and G equal the averages of ā āᵀ and g gᵀ from a hand-written forward/backward pass', () => {
    const model = new Model('mlp', mlp, [1, 1, 5], 3, 8);
    const blocks = registerBlocks(model.layers, { conv: 'kfc' });
    const M = 6;
    const xd = rand(M * 5, 2, 3);
    const x = tf.tensor4d(xd, [M, 1, 1, 5]);
    for (const mode of ['sampled', 'empirical'] as const) {
      const labels = Int32Array.from([2, 0, 1, 1, 0, 2]);
      const res =
        mode === 'sampled'
          ? computeStatistics(model, x, { blocks, sampled: true, rng: seedrandom('batch') })
          : computeStatistics(model, x, { blocks, sampled: 'empirical', labels });
      if (mode === 'empirical') expect(Array.from(res.targets)).toEqual(Array.from(labels));
      const byHand = mlpByHand(model, xd, M, res.targets);
      const s1 = res.stats.get('fc1') as KroneckerStats;
      const s2 = res.stats.get('fc2') as KroneckerStats;
      expect([s1.dA, s1.dG, s2.dA, s2.dG, s1.scale]).toEqual([6, 4, 5, 3, 1]);
      expectClose(s1.A, secondMoment(byHand.xs, true), 1e-5);
      expectClose(s1.G, secondMoment(byHand.ds1, false), 1e-4);
      expectClose(s2.A, secondMoment(byHand.hs, true), 1e-5);
      expectClose(s2.G, secondMoment(byHand.ds2, false), 1e-5);
      // the mean cross-entropy against the targets used
      const ce = byHand.ds2.reduce((s, d, n) => s - Math.log(d[res.targets[n]] + 1), 0) / M;
      expect(res.loss).toBeCloseTo(ce, 4);
    }
    x.dispose();
    model.dispose();
  });
});

describe('sampled targets', () => {
  it('follow softmax(logits) over many draws, and a fixed seed reproduces them', () => {
    const rows = [
      [0, 1, 2, -1],
      [3, 0, -1, 0.5],
    ];
    const reps = 5000;
    const logits = tf.tensor2d(Array.from({ length: 2 * reps }, (_, i) => rows[i % 2]));
    const t = sampleTargets(logits, seedrandom('freq'));
    expect(t.length).toBe(2 * reps);
    for (let r = 0; r < 2; r++) {
      const z = rows[r].map(Math.exp);
      const sum = z.reduce((a, b) => a + b, 0);
      for (let k = 0; k < 4; k++) {
        const p = z[k] / sum;
        let count = 0;
        for (let i = r; i < 2 * reps; i += 2) if (t[i] === k) count++;
        // 5 standard deviations of a binomial frequency
        expect(Math.abs(count / reps - p)).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / reps) + 1e-9);
      }
    }
    const again = sampleTargets(logits, seedrandom('freq'));
    expect(Array.from(again)).toEqual(Array.from(t));
    const other = sampleTargets(logits, seedrandom('another seed'));
    expect(Array.from(other)).not.toEqual(Array.from(t));
    logits.dispose();
  });
});

describe('batch-norm scale/shift full block', () => {
  const spatial: ModelFn = (L, x) => {
    let h = L.conv2d('c', x, { filters: 3, kernel: 1, bias: false });
    h = tf.tanh(L.batchNorm('bn', h));
    return L.dense('fc', h, { units: 4 });
  };
  const flat: ModelFn = (L, x) => {
    const h = L.dense('c', x, { units: 3, bias: false });
    return L.dense('fc', tf.tanh(L.batchNorm('bn', h)), { units: 4 });
  };
  for (const [label, net] of [
    ['after a conv (NHWC)', spatial],
    ['after a dense layer ([N, C])', flat],
  ] as const) {
    it(`${label}: equals the average of per-example [dγ; dβ] outer products from one-example tf.grads (inference mode)`, () => {
      const model = new Model('bn', net, [2, 2, 2], 4, 3);
      model.params.get('bn/scale')!.assign(tf.tensor1d([0.7, 1.3, -0.9]));
      model.params.get('bn/shift')!.assign(tf.tensor1d([0.1, -0.4, 0.25]));
      model.store.state.get('bn/mean')!.assign(tf.tensor1d([0.05, -0.1, 0.2]));
      model.store.state.get('bn/variance')!.assign(tf.tensor1d([0.5, 2, 1.2]));
      const blocks = registerBlocks(model.layers, { conv: 'cheap' });
      expect(blocks.map((b) => b.constructor)).toEqual([KroneckerBlock, ScaleShiftBlock, KroneckerBlock]);
      expect(blocks[1].params).toEqual(['bn/scale', 'bn/shift']);
      const M = 5;
      const xd = rand(M * 8, 9, 2);
      const x = tf.tensor4d(xd, [M, 2, 2, 2]);
      const res = computeStatistics(model, x, { blocks, sampled: true, rng: seedrandom('bn'), training: false });
      const F = (res.stats.get('bn') as ScaleShiftStats).F;
      const rows: number[][] = [];
      for (let n = 0; n < M; n++) {
        const [gs, gb] = tf.tidy(() => {
          const xn = tf.slice(x, [n, 0, 0, 0], [1, 2, 2, 2]);
          const y = tf.tensor1d([res.targets[n]], 'int32');
          const g = tf.grads((s: tf.Tensor, b: tf.Tensor) =>
            crossEntropy(model.forward(xn, { training: false, override: new Map([['bn/scale', s], ['bn/shift', b]]) }).logits, y),
          )([model.params.get('bn/scale')!, model.params.get('bn/shift')!]);
          return g.map((t) => Array.from(t.dataSync()));
        });
        rows.push([...gs, ...gb]);
      }
      expectClose(F, secondMoment(rows, false), 1e-5);
      x.dispose();
      model.dispose();
    });
  }
});

describe('errors name the block', () => {
  it('non-finite statistics and failed inverses throw KfacError with layer and what', () => {
    const model = new Model('mlp', mlp, [1, 1, 5], 3, 7);
    const [b1] = registerBlocks(model.layers, { conv: 'kfc' }) as KroneckerBlock[];
    const A = new Float64Array(36);
    for (let i = 0; i < 6; i++) A[i * 6 + i] = 1;
    const G = new Float64Array(16);
    G[5] = Number.NaN;
    let err: unknown;
    try {
      b1.accumulate({ kind: 'kronecker', A, dA: 6, G, dG: 4, scale: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KfacError);
    expect((err as KfacError).layer).toBe('fc1');
    expect((err as KfacError).what).toBe('statistics');
    expect(b1.steps).toBe(0);
    // an indefinite factor (a negative eigenvalue larger than the damping) cannot be inverted
    const bad = new Float64Array(16);
    for (let i = 0; i < 4; i++) bad[i * 4 + i] = i === 2 ? -5 : 1;
    err = undefined;
    try {
      computeInverses({ kind: 'kronecker', name: 'fc1', A, dA: 6, G: bad, dG: 4, scale: 1, steps: 1 }, 1e-3, 'factored');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KfacError);
    expect((err as KfacError).layer).toBe('fc1');
    expect((err as KfacError).what).toBe('inverse');
    model.dispose();
  });
});

describe('tensor hygiene', () => {
  it('statistics, accumulation, inverses and preconditioning 20 times keep tf.memory().numTensors flat', () => {
    const net: ModelFn = (L, x) => {
      let h = tf.relu(L.conv2d('c1', x, { filters: 4, kernel: 3 }));
      h = L.conv2d('c2', h, { filters: 4, kernel: 3, strides: 2, padding: 'valid', bias: false });
      h = tf.relu(L.batchNorm('bn', h));
      const f = tf.relu(L.dense('fc1', h, { units: 5 }));
      return L.dense('fc2', f, { units: 3 });
    };
    const model = new Model('all', net, [6, 6, 1], 3, 11);
    const x = tf.tensor4d(rand(4 * 36, 5), [4, 6, 6, 1]);
    const grads = new Map<string, tf.Tensor>();
    for (const [name, p] of model.params) grads.set(name, tf.randomNormal(p.shape, 0, 1, 'float32', 1));
    for (const conv of ['kfc', 'cheap'] as const) {
      const blocks: FisherBlock[] = registerBlocks(model.layers, { conv, doublyFactored: { names: ['fc1'] } });
      expect(blocks.map((b) => b.constructor)).toEqual([KroneckerBlock, KroneckerBlock, ScaleShiftBlock, DoublyFactoredBlock, KroneckerBlock]);
      expect((blocks[0] as KroneckerBlock).variant).toBe(conv === 'kfc' ? 'conv-kfc' : 'conv-cheap');
      const rng = seedrandom(conv);
      let inverses = new Map<string, ReturnType<typeof computeInverses>>();
      let baseline = -1;
      for (let step = 0; step < 20; step++) {
        const { stats } = computeStatistics(model, x, { blocks, sampled: true, rng, bnChunk: 2 });
        for (const b of blocks) (b.accumulate as (s: unknown) => void)(stats.get(b.name));
        if (step % 5 === 0) inverses = new Map(blocks.map((b) => [b.name, computeInverses(b.factors(), 1e-2, conv === 'kfc' ? 'factored' : 'eigen')]));
        for (const b of blocks) {
          const v = b.precondition(grads, inverses.get(b.name)!);
          expect([...v.keys()]).toEqual([...b.params]);
          for (const [k, t] of v) {
            expect(t.shape).toEqual(grads.get(k)!.shape);
            expect(Number.isFinite(t.dataSync()[0])).toBe(true);
          }
          tf.dispose([...v.values()]);
        }
        if (step === 0) baseline = tf.memory().numTensors;
        else expect(tf.memory().numTensors).toBe(baseline);
      }
      // snapshots and inverses are plain data: a structured clone (what a worker thread receives) works the same,
      // and a restored checkpoint of the averages gives the same snapshot
      for (const b of blocks) {
        const snap = b.factors();
        const clone = structuredClone(snap);
        expect(clone).toEqual(snap);
        expect(computeInverses(clone, 1e-2)).toEqual(computeInverses(snap, 1e-2));
        const fresh = registerBlocks(model.layers, { conv, doublyFactored: { names: ['fc1'] } }).find((f) => f.name === b.name)!;
        fresh.restore(structuredClone(b.state()));
        expect(fresh.factors()).toEqual(snap);
      }
      for (const b of blocks) b.dispose();
    }
    tf.dispose([x, ...grads.values()]);
    model.dispose();
  });
});
