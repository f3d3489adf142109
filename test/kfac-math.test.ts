/**
 * K-FAC curvature mathematics against independent computations: the π rule, factored and exact (eigenbasis)
 * damping against explicit Kronecker solves, the KL identity vᵀg = vᵀ(F̂ + damping)v, the doubly-factored
 * identities and three-mode product, and the zero-debiased moving average.
 *
 * Vec convention throughout: vec = ROW-MAJOR flatten. For a dense/conv block the gradient matrix is G_W of shape
 * [(in+1), out] (bias last row) and F̂ = A ⊗ G acts on vec(G_W); for the doubly-factored block the weight is
 * [T, C, out] and F̂ = E[KKᵀ] ⊗ E[ΨΨᵀ] ⊗ E[DsDsᵀ].
 */
import * as tf from '@tensorflow/tfjs';
import { Matrix, solve } from 'ml-matrix';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { kronecker } from '../src/linalg';
import {
  computeInverses,
  DoublyFactoredBlock,
  type DoublyFactoredSnapshot,
  doublyFactoredFactors,
  KroneckerBlock,
  type KroneckerSnapshot,
  piAdjustments,
  ZeroDebiasedEma,
} from '../src/kfac';
import type { LayerInfo } from '../src/nn/layers';

beforeAll(async () => {
  await initBackend();
});

/** Deterministic uniform numbers in [-0.5, 0.5). */
function rand(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/** A random symmetric positive definite n×n matrix X Xᵀ / m (well conditioned for m ≥ 2n) with a given scale. */
function randSpd(n: number, seed: number, scale = 1): Float64Array {
  const m = 3 * n;
  const x = rand(n * m, seed);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < m; k++) s += x[i * m + k] * x[j * m + k];
    a[i * n + j] = (scale * s) / m;
  }
  return a;
}

function addI(a: Float64Array, n: number, v: number): Float64Array {
  const out = Float64Array.from(a);
  for (let i = 0; i < n; i++) out[i * n + i] += v;
  return out;
}

function tr(a: Float64Array, n: number): number {
  let t = 0;
  for (let i = 0; i < n; i++) t += a[i * n + i];
  return t;
}

/** x = M⁻¹ b by ml-matrix's LU solve (independent of src/linalg). */
function denseSolve(m: Float64Array, n: number, b: Float64Array): Float64Array {
  const A = Matrix.from1DArray(n, n, Array.from(m));
  return Float64Array.from(solve(A, Matrix.columnVector(Array.from(b))).to1DArray());
}

function matVec(m: Float64Array, n: number, v: Float64Array): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += m[i * n + j] * v[j];
    out[i] = s;
  }
  return out;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number): void {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  expect(worst).toBeLessThanOrEqual(rel * scale);
}

const denseInfo = (inUnits: number, outUnits: number, inputShape = [inUnits]): Extract<LayerInfo, { kind: 'dense' }> => ({
  kind: 'dense',
  name: 'fc',
  weight: 'fc/kernel',
  bias: 'fc/bias',
  inUnits,
  outUnits,
  inputShape,
});

/** Runs block.precondition on float32 tensors made from float64 arrays and returns [weight..., bias...] flat. */
function precondFlat(
  block: KroneckerBlock | DoublyFactoredBlock,
  w: Float64Array,
  wShape: number[],
  b: Float64Array,
  inv: ReturnType<typeof computeInverses>,
): Float64Array {
  const grads = new Map<string, tf.Tensor>([
    [block.weight, tf.tensor(Float32Array.from(w), wShape)],
    [block.bias!, tf.tensor1d(Float32Array.from(b))],
  ]);
  const v = block.precondition(grads, inv);
  const vw = v.get(block.weight)!;
  expect(vw.shape).toEqual(wShape);
  const out = Float64Array.from([...vw.dataSync(), ...v.get(block.bias!)!.dataSync()]);
  tf.dispose([...grads.values(), ...v.values()]);
  block.dispose();
  return out;
}

describe('π rule (P eq 12)', () => {
  it('Π π_i = 1 for k = 2 and 3; k = 2 gives sqrt(n_A/n_G); k = 3 gives ((n_a)²/(n_b n_c))^{1/3}', () => {
    const p2 = piAdjustments([12, 0.3], [4, 6]);
    expect(p2[0] * p2[1]).toBeCloseTo(1, 14);
    expect(p2[0]).toBeCloseTo(Math.sqrt(12 / 4 / (0.3 / 6)), 12);
    const n = [5 / 3, 0.02 / 7, 40 / 2];
    const p3 = piAdjustments([5, 0.02, 40], [3, 7, 2]);
    expect(p3[0] * p3[1] * p3[2]).toBeCloseTo(1, 14);
    expect(p3[0]).toBeCloseTo(Math.cbrt((n[0] * n[0]) / (n[1] * n[2])), 12);
    expect(p3[2]).toBeCloseTo(Math.cbrt((n[2] * n[2]) / (n[0] * n[1])), 12);
  });

  it('falls back to π = 1 when a trace is 0 or non-finite', () => {
    expect(piAdjustments([0, 3], [2, 2])).toEqual([1, 1]);
    expect(piAdjustments([1, Number.NaN, 2], [1, 1, 1])).toEqual([1, 1, 1]);
    expect(piAdjustments([1, Number.POSITIVE_INFINITY], [1, 1])).toEqual([1, 1]);
  });
});

describe('two-factor block inverses against explicit Kronecker solves', () => {
  const dIn = 3;
  const dA = dIn + 1;
  const dG = 5;
  const A = randSpd(dA, 1, 2);
  const G = randSpd(dG, 2, 0.01);
  const gw = rand(dA * dG, 3); // [(in+1), out] row-major: weight rows then the bias row
  const lam = 0.03;

  it('factored damping: matrix form = (A + π√λ I) ⊗ (G + √λ/π I) solved on vec(G_W), and the KL identity', () => {
    const snap: KroneckerSnapshot = { kind: 'kronecker', name: 'fc', A, dA, G, dG, scale: 1, steps: 1 };
    const inv = computeInverses(snap, lam, 'factored');
    const pi = Math.sqrt(tr(A, dA) / dA / (tr(G, dG) / dG));
    expect(inv.kind === 'kronecker' && inv.mode === 'factored' && inv.pis[0]).toBeCloseTo(pi, 10);
    const damped = kronecker(addI(A, dA, pi * Math.sqrt(lam)), dA, addI(G, dG, Math.sqrt(lam) / pi), dG);
    const expected = denseSolve(damped, dA * dG, gw);
    const v = precondFlat(new KroneckerBlock(denseInfo(dIn, dG)), gw.subarray(0, dIn * dG), [dIn, dG], gw.subarray(dIn * dG), inv);
    expectClose(v, expected, 2e-5);
    // KL identity (P §5): with v = (F̂ + damping)⁻¹ g, vᵀg = vᵀ(F̂ + damping)v for the explicit damped matrix
    const vg = dot(v, gw);
    const vMv = dot(v, matVec(damped, dA * dG, v));
    expect(vg).toBeGreaterThan(0);
    expect(Math.abs(vg - vMv)).toBeLessThan(1e-4 * vg);
  });

  it('exact eigenbasis damping equals the explicit solve of (A ⊗ G + λI), with the KL identity', () => {
    const snap: KroneckerSnapshot = { kind: 'kronecker', name: 'fc', A, dA, G, dG, scale: 1, steps: 1 };
    const inv = computeInverses(snap, lam, 'eigen');
    const exact = addI(kronecker(A, dA, G, dG), dA * dG, lam);
    const expected = denseSolve(exact, dA * dG, gw);
    const v = precondFlat(new KroneckerBlock(denseInfo(dIn, dG)), gw.subarray(0, dIn * dG), [dIn, dG], gw.subarray(dIn * dG), inv);
    expectClose(v, expected, 2e-5);
    const vg = dot(v, gw);
    expect(Math.abs(vg - dot(v, matVec(exact, dA * dG, v)))).toBeLessThan(1e-4 * vg);
  });

  it('conv KFC scale |T|: eigen mode solves (|T|·A⊗G + λI); factored mode is (1/|T|)(A⊗G + (λ/|T|)I) π-split', () => {
    const conv: Extract<LayerInfo, { kind: 'conv2d' }> = {
      kind: 'conv2d',
      name: 'conv',
      weight: 'conv/kernel',
      bias: 'conv/bias',
      kernel: [1, 3],
      strides: [1, 1],
      padding: 'valid',
      inChannels: 1,
      outChannels: dG,
      inSize: [4, 5],
      outSize: [4, 3],
    };
    const T = 12;
    const snap: KroneckerSnapshot = { kind: 'kronecker', name: 'conv', A, dA, G, dG, scale: T, steps: 1 };
    const wShape = [1, 3, 1, dG];
    const exact = addI(kronecker(A, dA, G, dG).map((x) => T * x), dA * dG, lam);
    const vEig = precondFlat(new KroneckerBlock(conv), gw.subarray(0, dIn * dG), wShape, gw.subarray(dIn * dG), computeInverses(snap, lam, 'eigen'));
    expectClose(vEig, denseSolve(exact, dA * dG, gw), 2e-5);
    const pi = Math.sqrt(tr(A, dA) / dA / (tr(G, dG) / dG));
    const r = Math.sqrt(lam / T);
    const damped = kronecker(addI(A, dA, pi * r), dA, addI(G, dG, r / pi), dG).map((x) => T * x);
    const vFac = precondFlat(new KroneckerBlock(conv), gw.subarray(0, dIn * dG), wShape, gw.subarray(dIn * dG), computeInverses(snap, lam, 'factored'));
    expectClose(vFac, denseSolve(damped, dA * dG, gw), 2e-5);
  });
});

describe('doubly-factored approximation (P §4)', () => {
  it('for rank-1 inputs A = k ψᵀ: E[KKᵀ] ⊗ E[ΨΨᵀ] = vec(A)vec(A)ᵀ (row-major vec), and the batch averages', () => {
    const [H, W, C, O] = [3, 1, 4, 2];
    const T = H * W;
    const M = 3;
    const ks = [rand(T, 11), rand(T, 12), rand(T, 13)];
    const ps = [rand(C, 21), rand(C, 22), rand(C, 23)];
    const acts = new Float32Array(M * T * C);
    for (let n = 0; n < M; n++) for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) acts[n * T * C + t * C + c] = ks[n][t] * ps[n][c];
    const ds = rand(M * O, 31);
    const a = tf.tensor2d(acts, [M, T * C]);
    const d = tf.tensor2d(Float32Array.from(ds), [M, O]);
    // one example: the identity of eqs 6–7
    const a1 = tf.slice(a, [0, 0], [1, T * C]);
    const d1 = tf.slice(d, [0, 0], [1, O]);
    const s1 = doublyFactoredFactors(a1, d1, [H, W, C]);
    const vecA = acts.subarray(0, T * C);
    const outer = new Float64Array(T * C * T * C);
    for (let i = 0; i < T * C; i++) for (let j = 0; j < T * C; j++) outer[i * T * C + j] = vecA[i] * vecA[j];
    expectClose(kronecker(s1.K, T, s1.Psi, C), outer, 1e-5);
    // a batch: K_n K_nᵀ = k kᵀ ‖ψ‖/‖k‖ and Ψ_n Ψ_nᵀ = ψ ψᵀ ‖k‖/‖ψ‖ (σ = ‖k‖‖ψ‖), averaged; D = E[(M ds)(M ds)ᵀ]
    const s = doublyFactoredFactors(a, d, [H, W, C]);
    const norm = (v: Float64Array) => Math.sqrt(dot(v, v));
    const eK = new Float64Array(T * T);
    const eP = new Float64Array(C * C);
    const eD = new Float64Array(O * O);
    for (let n = 0; n < M; n++) {
      const r = norm(ps[n]) / norm(ks[n]);
      for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) eK[i * T + j] += (ks[n][i] * ks[n][j] * r) / M;
      for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) eP[i * C + j] += (ps[n][i] * ps[n][j]) / r / M;
      for (let i = 0; i < O; i++) for (let j = 0; j < O; j++) eD[i * O + j] += (M * ds[n * O + i] * M * ds[n * O + j]) / M;
    }
    expectClose(s.K, eK, 1e-5);
    expectClose(s.Psi, eP, 1e-5);
    expectClose(s.D, eD, 1e-5);
    tf.dispose([a, d, a1, d1]);
  });

  it('the three-mode product equals the explicit solve of the π-damped three-way Kronecker product', () => {
    const [T, C, O] = [3, 2, 4];
    const K = randSpd(T, 41, 5);
    const Psi = randSpd(C, 42, 0.2);
    const D = randSpd(O, 43, 0.003);
    const lam = 0.02;
    const snap: DoublyFactoredSnapshot = { kind: 'doubly-factored', name: 'fc', K, dK: T, Psi, dPsi: C, D, dD: O, hasBias: true, steps: 1 };
    const inv = computeInverses(snap, lam, 'factored');
    const n = [tr(K, T) / T, tr(Psi, C) / C, tr(D, O) / O];
    const g = Math.cbrt(n[0] * n[1] * n[2]);
    const r = Math.cbrt(lam);
    const damped = kronecker(addI(K, T, (n[0] / g) * r), T, kronecker(addI(Psi, C, (n[1] / g) * r), C, addI(D, O, (n[2] / g) * r), O), C * O);
    const gw = rand(T * C * O, 44); // [T·C, O] row-major = [T, C, O] row-major
    const gb = rand(O, 45);
    const expectedW = denseSolve(damped, T * C * O, gw);
    const expectedB = denseSolve(addI(D, O, lam), O, gb);
    const block = new DoublyFactoredBlock(denseInfo(T * C, O, [T, 1, C]));
    const v = precondFlat(block, gw, [T * C, O], gb, inv);
    expectClose(v.subarray(0, T * C * O), expectedW, 2e-5);
    expectClose(v.subarray(T * C * O), expectedB, 2e-5);
  });
});

describe('zero-debiased moving average', () => {
  it('a constant matrix reads back as itself after every update', () => {
    const c = Float64Array.from([0.75, -2.5, 1.125, 3]);
    const exact = new ZeroDebiasedEma(0.5); // dyadic: every operation is exact
    const usual = new ZeroDebiasedEma(0.95);
    for (let k = 1; k <= 30; k++) {
      exact.update(c);
      usual.update(c);
      expect(exact.value()).toEqual(c);
      const u = usual.value();
      for (let i = 0; i < c.length; i++) expect(Math.abs(u[i] - c[i])).toBeLessThanOrEqual(4 * Number.EPSILON * Math.abs(c[i]));
    }
  });

  it('matches the closed form Σ_i (1−ε) ε^{k−i} x_i / (1 − ε^k) on a sequence', () => {
    const eps = 0.9;
    const ema = new ZeroDebiasedEma(eps);
    const xs: Float64Array[] = [];
    for (let k = 1; k <= 12; k++) {
      xs.push(rand(6, 100 + k));
      ema.update(xs[k - 1]);
      const expected = new Float64Array(6);
      for (let i = 1; i <= k; i++) for (let j = 0; j < 6; j++) expected[j] += ((1 - eps) * eps ** (k - i) * xs[i - 1][j]) / (1 - eps ** k);
      expectClose(ema.value(), expected, 1e-13);
    }
    expect(ema.steps).toBe(12);
  });
});
