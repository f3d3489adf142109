import { describe, expect, it } from 'vitest';
import {
  LinalgError,
  matmul,
  randomGaussian,
  symEig,
  topSingularPair,
  topSingularPairs,
  transpose,
} from '../src/linalg/index.js';

/** Exact σ₁ = √λmax(AᵀA) via symEig. */
function exactSigma(a: Float64Array, rows: number, cols: number): number {
  const g = matmul(transpose(a, rows, cols), a, cols, rows, cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < i; j++) g[j * cols + i] = g[i * cols + j];
  return Math.sqrt(symEig(g, cols).values[cols - 1]);
}

function norm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

/** max |A·v − σu| and max |Aᵀu − σv|. */
function pairResidual(
  a: ArrayLike<number>,
  rows: number,
  cols: number,
  sigma: number,
  u: ArrayLike<number>,
  v: ArrayLike<number>,
): number {
  let r = 0;
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += a[i * cols + j] * v[j];
    r = Math.max(r, Math.abs(s - sigma * u[i]));
  }
  for (let j = 0; j < cols; j++) {
    let s = 0;
    for (let i = 0; i < rows; i++) s += a[i * cols + j] * u[i];
    r = Math.max(r, Math.abs(s - sigma * v[j]));
  }
  return r;
}

describe('topSingularPair', () => {
  for (const [rows, cols] of [
    [36, 256],
    [256, 36],
    [9, 9],
    [64, 64],
    [1, 17],
    [17, 1],
    [1, 1],
  ] as const) {
    it(`random ${rows}×${cols}: σ₁ equals √λmax(AᵀA) from symEig; A·v = σu, Aᵀu = σv`, () => {
      const a = randomGaussian(rows, cols, rows * 1000 + cols);
      const p = topSingularPair(a, rows, cols);
      const exact = exactSigma(a, rows, cols);
      expect(p.converged).toBe(true);
      expect(Math.abs(p.sigma - exact) / exact).toBeLessThan(1e-12);
      expect(norm(p.u)).toBeCloseTo(1, 13);
      expect(norm(p.v)).toBeCloseTo(1, 13);
      expect(pairResidual(a, rows, cols, p.sigma, p.u, p.v) / exact).toBeLessThan(1e-8);
    });
  }

  it('exact rank-1 s·u·vᵀ: recovers s, u and v up to a common sign', () => {
    for (const [rows, cols] of [
      [36, 256],
      [200, 12],
      [5, 5],
    ] as const) {
      const u0 = randomGaussian(rows, 1, 1);
      const v0 = randomGaussian(cols, 1, 2);
      const nu = norm(u0);
      const nv = norm(v0);
      u0.forEach((x, i) => (u0[i] = x / nu));
      v0.forEach((x, i) => (v0[i] = x / nv));
      const s = 3.75;
      const a = new Float64Array(rows * cols);
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) a[i * cols + j] = s * u0[i] * v0[j];
      const p = topSingularPair(a, rows, cols);
      expect(p.sigma).toBeCloseTo(s, 12);
      expect(p.iterations).toBeLessThanOrEqual(3);
      const sign = Math.sign(p.v[0] * v0[0]);
      for (let i = 0; i < rows; i++) expect(p.u[i]).toBeCloseTo(sign * u0[i], 12);
      for (let j = 0; j < cols; j++) expect(p.v[j]).toBeCloseTo(sign * v0[j], 12);
      // Sign convention: the largest-magnitude entry of v is positive.
      let jm = 0;
      for (let j = 1; j < cols; j++) if (Math.abs(p.v[j]) > Math.abs(p.v[jm])) jm = j;
      expect(p.v[jm]).toBeGreaterThan(0);
    }
  });

  it('zero matrix: σ = 0 and unit vectors', () => {
    const p = topSingularPair(new Float64Array(6 * 4), 6, 4);
    expect(p.sigma).toBe(0);
    expect(norm(p.u)).toBe(1);
    expect(norm(p.v)).toBe(1);
  });

  it('float32 input, deterministic, and a warm start converges immediately', () => {
    const a64 = randomGaussian(30, 80, 5);
    const a32 = Float32Array.from(a64);
    const p1 = topSingularPair(a32, 30, 80);
    const p2 = topSingularPair(a32, 30, 80);
    expect(p1.sigma).toBe(p2.sigma);
    expect(Array.from(p1.v)).toEqual(Array.from(p2.v));
    expect(Math.abs(p1.sigma - exactSigma(Float64Array.from(a32), 30, 80)) / p1.sigma).toBeLessThan(1e-12);
    const warmV = topSingularPair(a32, 30, 80, { init: p1.v });
    const warmU = topSingularPair(a32, 30, 80, { init: p1.u });
    for (const w of [warmV, warmU]) {
      expect(w.sigma).toBeCloseTo(p1.sigma, 12);
      expect(w.iterations).toBeLessThan(p1.iterations);
    }
  });

  it('a start exactly on the second singular vector still finds the first', () => {
    // diag(3, 2, 1) padded: v₂ = e₂ is an exact eigenvector of AᵀA.
    const a = new Float64Array([3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
    const p = topSingularPair(a, 4, 3, { init: [0, 1, 0] });
    expect(p.sigma).toBeCloseTo(3, 12);
  });

  it('rejects NaN with its index', () => {
    const a = new Float64Array(12);
    a[7] = Number.NaN;
    try {
      topSingularPair(a, 3, 4);
      throw new Error('no error');
    } catch (e) {
      expect(e).toBeInstanceOf(LinalgError);
      expect((e as LinalgError).kind).toBe('non-finite');
      expect((e as LinalgError).index).toBe(7);
    }
  });
});

describe('topSingularPairs (batched)', () => {
  it('equals the single-matrix results for every example, including a zero one', () => {
    const batch = 9;
    const rows = 12;
    const cols = 40;
    const data = Float32Array.from(randomGaussian(batch * rows, cols, 17));
    data.fill(0, 4 * rows * cols, 5 * rows * cols); // example 4 is zero
    const r = topSingularPairs(data, batch, rows, cols);
    expect(r.sigma.length).toBe(batch);
    for (let b = 0; b < batch; b++) {
      const one = topSingularPair(data.subarray(b * rows * cols, (b + 1) * rows * cols), rows, cols);
      expect(r.sigma[b]).toBe(one.sigma);
      expect(Array.from(r.u.subarray(b * rows, (b + 1) * rows))).toEqual(Array.from(one.u));
      expect(Array.from(r.v.subarray(b * cols, (b + 1) * cols))).toEqual(Array.from(one.v));
      expect(r.converged[b]).toBe(1);
    }
    expect(r.sigma[4]).toBe(0);
  });

  it('accepts per-example warm starts', () => {
    const batch = 4;
    const data = randomGaussian(batch * 20, 7, 3);
    const cold = topSingularPairs(data, batch, 20, 7);
    const warm = topSingularPairs(data, batch, 20, 7, { init: cold.v });
    for (let b = 0; b < batch; b++) expect(warm.sigma[b]).toBeCloseTo(cold.sigma[b], 12);
  });
});
