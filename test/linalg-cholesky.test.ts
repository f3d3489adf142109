import { describe, expect, it } from 'vitest';
import {
  addDiagonal,
  cholesky,
  choleskySolve,
  identity,
  matmul,
  matmulTransB,
  matvec,
  maxAbsDiff,
  randomSpd,
  spdInverse,
  spdInverseTs,
} from '../src/linalg/index.js';
import { cond2, describeEngines, linalgError, maxAsymmetry } from './linalg-helpers.js';

const U = 2 ** -53; // unit round-off

describeEngines('spdInverse on random SPD matrices A = B·Bᵀ/n + εI', () => {
  // ε = 0.01 puts the spectrum in about [0.01, 4.01]: cond₂ ≈ 400. The backward-stable bound for the residual of
  // a Cholesky-based inverse is ‖A·X − I‖ ≲ c·n·u·cond₂(A) = 1024·1.1e-16·400 ≈ 4.5e-11 at the largest n, so 1e-10
  // is attainable by any correct implementation and still a million times below what a wrong one produces.
  const eps = 0.01;
  for (const n of [1, 2, 7, 64, 257, 1024]) {
    it(`n = ${n}: max|A·A⁻¹ − I| ≤ 1e-10 and A⁻¹ exactly symmetric`, () => {
      const a = randomSpd(n, eps, 1000 + n);
      const copy = Float64Array.from(a);
      const x = spdInverse(a, n);
      expect(maxAbsDiff(a, copy)).toBe(0); // input untouched
      const resid = maxAbsDiff(matmul(a, x, n, n, n), identity(n));
      const kappa = cond2(a, x, n);
      const bound = n * U * kappa;
      console.log(
        `spdInverse n=${n}: cond2=${kappa.toFixed(1)} n·u·cond=${bound.toExponential(2)} ` +
          `max|AX−I|=${resid.toExponential(2)}`,
      );
      expect(bound).toBeLessThan(1e-10); // the chosen conditioning makes 1e-10 the right bound
      expect(resid).toBeLessThanOrEqual(1e-10);
      expect(maxAsymmetry(x, n)).toBe(0);
      expect(x.every(Number.isFinite)).toBe(true);
    });
  }

  it('TypeScript block sizes that do not divide n give the same inverse to round-off', () => {
    const n = 150;
    const a = randomSpd(n, eps, 7);
    const ref = spdInverse(a, n);
    for (const blockSize of [4, 5, 17, 64, 200]) {
      expect(maxAbsDiff(spdInverseTs(a, n, { blockSize }), ref)).toBeLessThan(1e-11);
    }
  });

  it('inPlace overwrites and returns the input', () => {
    const n = 33;
    const a = randomSpd(n, eps, 3);
    const ref = spdInverse(a, n);
    const out = spdInverse(a, n, { inPlace: true });
    expect(out).toBe(a);
    expect(maxAbsDiff(out, ref)).toBe(0);
  });

  it('reads only the lower triangle', () => {
    const n = 20;
    const a = randomSpd(n, eps, 4);
    const junk = Float64Array.from(a);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) junk[i * n + j] = 1e6 * (i - j);
    expect(maxAbsDiff(spdInverse(junk, n), spdInverse(a, n))).toBe(0);
  });

  it('n = 0 gives an empty matrix', () => {
    expect(spdInverse(new Float64Array(0), 0).length).toBe(0);
  });

  it('inverts a Kronecker-factor-like damped matrix (diagonal plus rank-1)', () => {
    const n = 50;
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = 1 + (i === j ? 1e-3 : 0);
    // (11ᵀ + δI)⁻¹ = (I − 11ᵀ/(δ + n))/δ
    const d = 1e-3;
    const x = spdInverse(a, n);
    let err = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const exact = ((i === j ? 1 : 0) - 1 / (d + n)) / d;
        err = Math.max(err, Math.abs(x[i * n + j] - exact) / (1 / d));
      }
    }
    expect(err).toBeLessThan(1e-9); // cond ≈ 5e4
  });
});

describeEngines('spdInverse / cholesky refuse what they cannot invert', () => {
  it('indefinite matrix: not-positive-definite with the pivot index and value', () => {
    // [[4, 2, 0], [2, 1, 3], [0, 3, 5]]: pivot 0 = 4, pivot 1 = 1 − 2²/4 = 0 → refused at index 1.
    const a = new Float64Array([4, 2, 0, 2, 1, 3, 0, 3, 5]);
    const e = linalgError(() => spdInverse(a, 3));
    expect(e.kind).toBe('not-positive-definite');
    expect(e.index).toBe(1);
    expect(e.value).toBe(0);
    // A clearly negative pivot.
    const b = new Float64Array([2, 0, 0, 0, 1, 2, 0, 2, 1]); // second 2×2 block has eigenvalues 3, −1
    const e2 = linalgError(() => spdInverse(b, 3));
    expect(e2.kind).toBe('not-positive-definite');
    expect(e2.index).toBe(2);
    expect(e2.value).toBeCloseTo(-3, 12);
  });

  it('negative diagonal entry is caught at its own pivot', () => {
    const n = 70;
    const a = randomSpd(n, 0.5, 11);
    a[40 * n + 40] = -1;
    const e = linalgError(() => cholesky(a, n));
    expect(e.kind).toBe('not-positive-definite');
    expect(e.index).toBe(40); // the leading 40×40 block is untouched and positive definite
    expect(e.value).toBeLessThan(0);
  });

  it('exactly singular matrix (rank 1): refused, not a garbage inverse', () => {
    const n = 6;
    const v = [1, 2, 3, 4, 5, 6];
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = v[i] * v[j];
    const e = linalgError(() => spdInverse(a, n));
    expect(e.kind).toBe('not-positive-definite');
    expect(e.index).toBe(1);
  });

  it('numerically singular matrix (B·Bᵀ of rank 40 < n = 64): refused at a pivot ≥ 40', () => {
    const n = 64;
    const r = 40;
    const b = new Float64Array(n * r);
    let s = 12345;
    for (let i = 0; i < b.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      b[i] = s / 2 ** 32 - 0.5;
    }
    const a = matmulTransB(b, b, n, r, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[j * n + i] = a[i * n + j];
    const e = linalgError(() => spdInverse(a, n));
    expect(e.kind).toBe('not-positive-definite');
    expect(e.index).toBeGreaterThanOrEqual(r);
  });

  it('pivotTol = 0 keeps LAPACK semantics (only pivots ≤ 0 refused)', () => {
    // Pivot 1 is exactly 2⁻⁵² = ε·A[1][1] (cond ≈ 2⁵⁴): below the default n·ε·A[j][j], refused; with 0 accepted.
    const a = new Float64Array([1, 1, 1, 1 + 2 ** -52]);
    expect(linalgError(() => spdInverse(a, 2)).kind).toBe('not-positive-definite');
    const x = spdInverse(a, 2, { pivotTol: 0 });
    expect(Number.isFinite(x[0])).toBe(true);
  });

  it('NaN and ±Infinity: non-finite with the first flat index', () => {
    const n = 9;
    for (const [bad, idx] of [
      [Number.NaN, 0],
      [Number.POSITIVE_INFINITY, 40],
      [Number.NEGATIVE_INFINITY, 80],
      [Number.NaN, 13], // in the strict upper triangle, which the factorisation itself never reads
    ] as const) {
      const a = randomSpd(n, 0.5, 5);
      a[idx] = bad;
      if (idx === 40) a[70] = Number.NaN; // a later bad entry must not be the one reported
      for (const f of [() => spdInverse(a, n), () => cholesky(a, n)]) {
        const e = linalgError(f);
        expect(e.kind).toBe('non-finite');
        expect(e.index).toBe(idx);
        expect(Object.is(e.value, bad)).toBe(true);
      }
    }
  });

  it('wrong length: dimension-mismatch', () => {
    expect(linalgError(() => spdInverse(new Float64Array(8), 3)).kind).toBe('dimension-mismatch');
  });
});

describe('cholesky, choleskySolve, addDiagonal', () => {
  it('L is lower triangular with positive diagonal and L·Lᵀ = A', () => {
    for (const n of [1, 3, 8, 65, 130]) {
      const a = randomSpd(n, 0.05, 20 + n);
      const l = cholesky(a, n);
      for (let i = 0; i < n; i++) {
        expect(l[i * n + i]).toBeGreaterThan(0);
        for (let j = i + 1; j < n; j++) expect(l[i * n + j]).toBe(0);
      }
      expect(maxAbsDiff(matmulTransB(l, l, n, n, n), a)).toBeLessThan(1e-13);
    }
  });

  it('choleskySolve solves A·X = B for one and several right-hand sides', () => {
    const n = 40;
    const a = randomSpd(n, 0.05, 9);
    const l = cholesky(a, n);
    const x = new Float64Array(n * 3).map((_, i) => Math.sin(i));
    const b = matmul(a, x, n, n, 3);
    expect(maxAbsDiff(choleskySolve(l, n, b, 3), x)).toBeLessThan(1e-11);
    const x1 = new Float64Array(n).map((_, i) => Math.cos(i));
    expect(maxAbsDiff(choleskySolve(l, n, matvec(a, x1, n, n)), x1)).toBeLessThan(1e-11);
  });

  it('addDiagonal adds γI without touching the input', () => {
    const a = new Float64Array([1, 2, 3, 4]);
    expect(Array.from(addDiagonal(a, 2, 0.5))).toEqual([1.5, 2, 3, 4.5]);
    expect(Array.from(a)).toEqual([1, 2, 3, 4]);
    addDiagonal(a, 2, 1, true);
    expect(Array.from(a)).toEqual([2, 2, 3, 5]);
  });
});
