import { describe, expect, it } from 'vitest';
import {
  frobenius,
  identity,
  kronecker,
  LinalgError,
  matmul,
  matmulTransB,
  matvec,
  maxAbsDiff,
  randomGaussian,
  randomSpd,
  spdInverse,
  symmetrize,
  trace,
  transpose,
} from '../src/linalg/index.js';

/** Reference triple loop. */
function naiveMatmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
      c[i * n + j] = s;
    }
  }
  return c;
}

describe('products and helpers', () => {
  it('matmul and matmulTransB match a triple loop for ragged shapes (tile remainders)', () => {
    for (const [m, k, n] of [
      [1, 1, 1],
      [5, 3, 7],
      [9, 17, 6],
      [33, 8, 31],
    ] as const) {
      const a = randomGaussian(m, k, m + k);
      const b = randomGaussian(k, n, k + n);
      const ref = naiveMatmul(a, b, m, k, n);
      expect(maxAbsDiff(matmul(a, b, m, k, n), ref)).toBeLessThan(1e-12);
      expect(maxAbsDiff(matmulTransB(a, transpose(b, k, n), m, k, n), ref)).toBeLessThan(1e-12);
    }
  });

  it('matvec, transpose, symmetrize, trace, frobenius', () => {
    const a = new Float64Array([1, 2, 3, 4, 5, 6]); // 2×3
    expect(Array.from(matvec(a, [1, 0, -1], 2, 3))).toEqual([-2, -2]);
    expect(Array.from(transpose(a, 2, 3))).toEqual([1, 4, 2, 5, 3, 6]);
    const s = new Float64Array([1, 2, 4, 3]);
    expect(Array.from(symmetrize(s, 2))).toEqual([1, 3, 3, 3]);
    expect(Array.from(s)).toEqual([1, 2, 4, 3]);
    expect(trace(s, 2)).toBe(4);
    expect(frobenius([3, 4])).toBe(5);
    expect(frobenius([1e200, 1e200])).toBeCloseTo(Math.SQRT2 * 1e200, -185); // no overflow
    expect(frobenius([0, 0])).toBe(0);
  });

  it('dimension mismatches throw LinalgError', () => {
    expect(() => matmul(new Float64Array(6), new Float64Array(6), 2, 3, 3)).toThrow(LinalgError);
    expect(() => trace(new Float64Array(5), 2)).toThrow(LinalgError);
  });
});

describe('kronecker (tests of small cases only)', () => {
  it('layout: (A⊗B)[i·nb+k][j·nb+l] = A[i][j]·B[k][l]', () => {
    const a = new Float64Array([1, 2, 3, 4]);
    const b = new Float64Array([0, 5, 6, 7]);
    expect(Array.from(kronecker(a, 2, b, 2))).toEqual([
      0, 5, 0, 10, //
      6, 7, 12, 14,
      0, 15, 0, 20,
      18, 21, 24, 28,
    ]);
  });

  it('(A⊗B)·vec(X) = vec(A·X·Bᵀ) for row-major vec, and (A⊗B)⁻¹ = A⁻¹⊗B⁻¹ (the K-FAC identity)', () => {
    const na = 5;
    const nb = 4;
    const a = randomSpd(na, 0.1, 1);
    const b = randomSpd(nb, 0.1, 2);
    const x = randomGaussian(na, nb, 3);
    const k = kronecker(a, na, b, nb);
    const lhs = matvec(k, x, na * nb, na * nb);
    const rhs = matmul(matmul(a, x, na, na, nb), transpose(b, nb, nb), na, nb, nb);
    expect(maxAbsDiff(lhs, rhs)).toBeLessThan(1e-12);
    const kinv = spdInverse(k, na * nb);
    const prod = kronecker(spdInverse(a, na), na, spdInverse(b, nb), nb);
    expect(maxAbsDiff(kinv, prod) / frobenius(prod)).toBeLessThan(1e-12);
    expect(maxAbsDiff(matmul(k, kinv, na * nb, na * nb, na * nb), identity(na * nb))).toBeLessThan(1e-11);
  });

  it('refuses sizes beyond tests', () => {
    expect(() => kronecker(new Float64Array(100 * 100), 100, new Float64Array(50 * 50), 50)).toThrow(LinalgError);
  });
});
