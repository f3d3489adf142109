import { expect, it } from 'vitest';
import { LinalgError, matmul, maxAbsDiff, randomSymmetric, symEig, transpose, identity } from '../src/linalg/index.js';
import { describeEngines } from './linalg-helpers.js';

/** max |A·V − V·diag(λ)| and max |VᵀV − I|, both relative to max(1, ‖A‖max). */
function check(a: Float64Array, n: number): { resid: number; orth: number; values: Float64Array } {
  const { values, vectors } = symEig(a, n);
  const av = matmul(a, vectors, n, n, n);
  let scale = 1;
  for (let i = 0; i < n * n; i++) scale = Math.max(scale, Math.abs(a[i]));
  let resid = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) resid = Math.max(resid, Math.abs(av[i * n + j] - vectors[i * n + j] * values[j]));
  }
  const vtv = matmul(transpose(vectors, n, n), vectors, n, n, n);
  return { resid: resid / scale, orth: maxAbsDiff(vtv, identity(n)), values };
}

function expectAscending(values: Float64Array): void {
  for (let i = 1; i < values.length; i++) expect(values[i]).toBeGreaterThanOrEqual(values[i - 1]);
}

describeEngines('symEig', () => {
  for (const n of [2, 3, 10, 64, 127, 256]) {
    it(`random symmetric n = ${n}: A·V = V·Λ and VᵀV = I to 1e-10, ascending`, () => {
      const a = randomSymmetric(n, 500 + n);
      const copy = Float64Array.from(a);
      const { resid, orth, values } = check(a, n);
      expect(maxAbsDiff(a, copy)).toBe(0);
      expect(resid).toBeLessThan(1e-10);
      expect(orth).toBeLessThan(1e-10);
      expectAscending(values);
      // Trace is preserved.
      let tr = 0;
      let sum = 0;
      for (let i = 0; i < n; i++) {
        tr += a[i * n + i];
        sum += values[i];
      }
      expect(Math.abs(tr - sum)).toBeLessThan(1e-10 * n);
    });
  }

  it('1×1', () => {
    const { values, vectors } = symEig(new Float64Array([-3.5]), 1);
    expect(Array.from(values)).toEqual([-3.5]);
    expect(Array.from(vectors)).toEqual([1]);
  });

  it('diagonal input: the sorted diagonal, eigenvectors ± unit vectors', () => {
    const d = [3, -1, 7, 0, 2.5];
    const n = d.length;
    const a = new Float64Array(n * n);
    d.forEach((v, i) => (a[i * n + i] = v));
    const { values, vectors } = symEig(a, n);
    expect(Array.from(values)).toEqual([...d].sort((x, y) => x - y));
    for (let j = 0; j < n; j++) {
      const src = d.indexOf(values[j]);
      for (let i = 0; i < n; i++) expect(Math.abs(vectors[i * n + j])).toBeCloseTo(i === src ? 1 : 0, 14);
    }
  });

  it('repeated eigenvalues: Q·diag(1,1,1,2,2,5,5,5)·Qᵀ', () => {
    const lam = [1, 1, 1, 2, 2, 5, 5, 5];
    const n = lam.length;
    // Orthogonal Q from the eigenvectors of a random symmetric matrix.
    const q = symEig(randomSymmetric(n, 77), n).vectors;
    const qd = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) qd[i * n + j] = q[i * n + j] * lam[j];
    const a = matmul(qd, transpose(q, n, n), n, n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[j * n + i] = a[i * n + j];
    const { resid, orth, values } = check(a, n);
    expect(resid).toBeLessThan(1e-10);
    expect(orth).toBeLessThan(1e-10);
    values.forEach((v, i) => expect(v).toBeCloseTo(lam[i], 12));
  });

  it('identity and zero matrices (fully degenerate)', () => {
    for (const scale of [1, 0]) {
      const n = 12;
      const a = identity(n).map((v) => v * scale);
      const { resid, orth, values } = check(a, n);
      expect(resid).toBeLessThan(1e-14);
      expect(orth).toBeLessThan(1e-14);
      values.forEach((v) => expect(v).toBe(scale));
    }
  });

  it('Kronecker-factor-like PSD matrix (low rank plus damping)', () => {
    const n = 100;
    const r = 5;
    const b = randomSymmetric(n, 3).subarray(0, n * r); // n×r
    const a = matmul(b, transpose(b, n, r), n, r, n);
    for (let i = 0; i < n; i++) {
      a[i * n + i] += 1e-3;
      for (let j = 0; j < i; j++) a[j * n + i] = a[i * n + j];
    }
    const { resid, orth, values } = check(a, n);
    expect(resid).toBeLessThan(1e-10);
    expect(orth).toBeLessThan(1e-10);
    for (let i = 0; i < n - r; i++) expect(values[i]).toBeCloseTo(1e-3, 10);
  });

  it('uses only the lower triangle and rejects NaN/Inf with the first index', () => {
    const n = 6;
    const a = randomSymmetric(n, 8);
    const junk = Float64Array.from(a);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) junk[i * n + j] = 99;
    expect(maxAbsDiff(symEig(junk, n).values, symEig(a, n).values)).toBe(0);
    a[14] = Number.POSITIVE_INFINITY;
    a[20] = Number.NaN;
    try {
      symEig(a, n);
      throw new Error('no error');
    } catch (e) {
      expect(e).toBeInstanceOf(LinalgError);
      expect((e as LinalgError).kind).toBe('non-finite');
      expect((e as LinalgError).index).toBe(14);
    }
  });
});
