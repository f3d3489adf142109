/**
 * Small dense helpers on row-major Float64Arrays: products, transpose, symmetrisation, norms, identity and the
 * Kronecker product (the latter for tests only: see `kronecker`).
 */
import { checkLength, LinalgError } from './errors.js';
import { gemmNT } from './kernel.js';

/** n×n identity. */
export function identity(n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = 1;
  return out;
}

/** Transpose of a rows×cols matrix (cols×rows result), in 32×32 tiles. */
export function transpose(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
  checkLength(a, rows * cols, 'transpose');
  const out = new Float64Array(rows * cols);
  const t = 32;
  for (let i0 = 0; i0 < rows; i0 += t) {
    const i1 = Math.min(rows, i0 + t);
    for (let j0 = 0; j0 < cols; j0 += t) {
      const j1 = Math.min(cols, j0 + t);
      for (let i = i0; i < i1; i++) {
        for (let j = j0; j < j1; j++) out[j * rows + i] = a[i * cols + j];
      }
    }
  }
  return out;
}

/** C = A·B for A m×k and B k×n (row-major); register-tiled (B is transposed once, then C = A·(Bᵀ)ᵀ). */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  checkLength(a, m * k, 'matmul(A)');
  checkLength(b, k * n, 'matmul(B)');
  const c = new Float64Array(m * n);
  if (k === 0) return c;
  gemmNT(c, 0, n, a, 0, k, transpose(b, k, n), 0, k, m, n, k, 1, false);
  return c;
}

/** C = A·Bᵀ for A m×k and B n×k (row-major). */
export function matmulTransB(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  checkLength(a, m * k, 'matmulTransB(A)');
  checkLength(b, n * k, 'matmulTransB(B)');
  const c = new Float64Array(m * n);
  if (k === 0) return c;
  gemmNT(c, 0, n, a, 0, k, b, 0, k, m, n, k, 1, false);
  return c;
}

/** y = A·x for A rows×cols. */
export function matvec(a: ArrayLike<number>, x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  checkLength(a, rows * cols, 'matvec(A)');
  checkLength(x, cols, 'matvec(x)');
  const y = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const p = i * cols;
    let s = 0;
    for (let j = 0; j < cols; j++) s += a[p + j] * x[j];
    y[i] = s;
  }
  return y;
}

/** (A + Aᵀ)/2 for square A (a new array unless `inPlace`). */
export function symmetrize(a: Float64Array, n: number, inPlace = false): Float64Array {
  checkLength(a, n * n, 'symmetrize');
  const w = inPlace ? a : Float64Array.from(a);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const v = 0.5 * (w[i * n + j] + w[j * n + i]);
      w[i * n + j] = v;
      w[j * n + i] = v;
    }
  }
  return w;
}

/** Frobenius norm √(Σ aᵢ²), scaled so that it neither overflows nor underflows. */
export function frobenius(a: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]));
  if (scale === 0 || !Number.isFinite(scale)) return scale;
  let s = 0;
  const inv = 1 / scale;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] * inv;
    s += x * x;
  }
  return scale * Math.sqrt(s);
}

/** Σ A[i][i] of an n×n matrix. */
export function trace(a: ArrayLike<number>, n: number): number {
  checkLength(a, n * n, 'trace');
  let s = 0;
  for (let i = 0; i < n; i++) s += a[i * n + i];
  return s;
}

/** max |A − B| entrywise (both of the same length). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new LinalgError('dimension-mismatch', `maxAbsDiff: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN propagates
  }
  return m;
}

/**
 * Kronecker product A ⊗ B of square A (na×na) and B (nb×nb): the (na·nb)×(na·nb) matrix with
 * (A⊗B)[i·nb + k][j·nb + l] = A[i][j]·B[k][l].
 *
 * FOR TESTS OF SMALL CASES ONLY. K-FAC's whole point is never to form this matrix: production code applies
 * (A⊗B)⁻¹·vec(V) as B⁻¹·V·A⁻¹ (or its transpose) with the two small factors and never materialises a Kronecker
 * product. Refuses results above 2²⁴ entries.
 */
export function kronecker(a: Float64Array, na: number, b: Float64Array, nb: number): Float64Array {
  checkLength(a, na * na, 'kronecker(A)');
  checkLength(b, nb * nb, 'kronecker(B)');
  const n = na * nb;
  if (n * n > 1 << 24) {
    throw new LinalgError('dimension-mismatch', `kronecker: ${n}×${n} is too large (tests only)`, -1, n);
  }
  const out = new Float64Array(n * n);
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < na; j++) {
      const aij = a[i * na + j];
      for (let k = 0; k < nb; k++) {
        const row = (i * nb + k) * n + j * nb;
        const brow = k * nb;
        for (let l = 0; l < nb; l++) out[row + l] = aij * b[brow + l];
      }
    }
  }
  return out;
}
