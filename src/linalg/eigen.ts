/**
 * Symmetric eigendecomposition A = V·diag(λ)·Vᵀ (row-major Float64Array, explicit n), by Householder reduction to
 * tridiagonal form and the implicit QL algorithm with Wilkinson-type shifts: the classic tred2/tql2 pair (Bowdler,
 * Martin, Reinsch, Wilkinson; EISPACK; JAMA), rewritten on one flat array.
 *
 * Layout: the algorithms are textbook-written on V[k][j] with k the row; here the working array holds Vᵀ (row j =
 * column j of V = the j-th eigenvector), which makes every O(n³) inner loop — the symmetric rank-2 updates, the
 * back-accumulation of the Householder reflectors and every Givens rotation of the QL sweeps — run over two
 * contiguous rows instead of two strided columns. The result is transposed once at the end.
 */
import { checkFinite, checkLength, LinalgError } from './errors.js';

/** Eigenvalues in ascending order; `vectors` is row-major n×n with column j the unit eigenvector of `values[j]`. */
export interface SymEigResult {
  values: Float64Array;
  vectors: Float64Array;
}

const EPS = 2 ** -52;
/** QL iterations allowed per eigenvalue before giving up (typical: 1–3). */
const MAX_QL_ITER = 60;

/**
 * Householder tridiagonalisation with accumulation (tred2). On entry the upper triangle of z holds the lower
 * triangle of the symmetric matrix transposed (textbook V[k][j], k ≥ j, is z[j][k]); on exit z holds Qᵀ (row j =
 * column j of the orthogonal Q with Qᵀ·A·Q = T), d the diagonal of T and e[1..n-1] its sub-diagonal (e[0] = 0).
 */
function tred2(z: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  // Textbook V[r][c] is z[c*n + r] throughout.
  for (let j = 0; j < n; j++) d[j] = z[j * n + n - 1];

  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = z[j * n + i - 1];
        z[j * n + i] = 0;
        z[i * n + j] = 0;
      }
    } else {
      // Householder vector (in d, scaled).
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;

      // e = A·u over the leading i×i block (symmetric, lower triangle V[k][j], k ≥ j = row j of z).
      for (let j = 0; j < i; j++) {
        const zj = j * n;
        f = d[j];
        z[i * n + j] = f;
        g = e[j] + z[zj + j] * f;
        for (let k = j + 1; k < i; k++) {
          const v = z[zj + k];
          g += v * d[k];
          e[k] += v * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      // Rank-2 update A ← A − u·pᵀ − p·uᵀ of the lower triangle (row j of z, columns j..i-1).
      for (let j = 0; j < i; j++) {
        const zj = j * n;
        f = d[j];
        g = e[j];
        for (let k = j; k < i; k++) z[zj + k] -= f * e[k] + g * d[k];
        d[j] = z[zj + i - 1];
        z[zj + i] = 0;
      }
    }
    d[i] = h;
  }

  // Accumulate the reflectors into Q (rows of z are Q's columns).
  for (let i = 0; i < n - 1; i++) {
    const zi = i * n;
    const zi1 = (i + 1) * n;
    z[zi + n - 1] = z[zi + i];
    z[zi + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = z[zi1 + k] / h;
      for (let j = 0; j <= i; j++) {
        const zj = j * n;
        let g = 0;
        for (let k = 0; k <= i; k++) g += z[zi1 + k] * z[zj + k];
        for (let k = 0; k <= i; k++) z[zj + k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) z[zi1 + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = z[j * n + n - 1];
    z[j * n + n - 1] = 0;
  }
  z[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/**
 * Implicit QL iterations on the tridiagonal (d, e from tred2), applying every rotation to the rows of z (the
 * eigenvectors so far). On exit d holds the eigenvalues (unsorted) and row j of z the eigenvector of d[j].
 */
function tql2(z: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;

  let f = 0;
  let tst1 = 0;
  for (let l = 0; l < n; l++) {
    // Find a small sub-diagonal element.
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= EPS * tst1) break;
      m++;
    }
    // (m < n always: e[n-1] = 0.) If m > l, iterate until e[l] is negligible.
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > MAX_QL_ITER) {
          throw new LinalgError('no-convergence', `symEig: QL iteration did not converge for eigenvalue ${l}`, l);
        }
        // Implicit shift.
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;

        // Implicit QL transformation.
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          // Rotate eigenvector rows i and i+1 (contiguous).
          rotateRows(z, i * n, (i + 1) * n, n, c, s);
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > EPS * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

/** (x, y) ← (c·x − s·y, s·x + c·y) for rows x = z[px..px+n), y = z[py..py+n). */
function rotateRows(z: Float64Array, px: number, py: number, n: number, c: number, s: number): void {
  let k = 0;
  for (; k + 2 <= n; k += 2) {
    const x0 = z[px + k];
    const y0 = z[py + k];
    const x1 = z[px + k + 1];
    const y1 = z[py + k + 1];
    z[py + k] = s * x0 + c * y0;
    z[px + k] = c * x0 - s * y0;
    z[py + k + 1] = s * x1 + c * y1;
    z[px + k + 1] = c * x1 - s * y1;
  }
  if (k < n) {
    const x0 = z[px + k];
    const y0 = z[py + k];
    z[py + k] = s * x0 + c * y0;
    z[px + k] = c * x0 - s * y0;
  }
}

/**
 * Eigendecomposition of a symmetric matrix: A·V = V·diag(values), VᵀV = I, values ascending.
 * Reads only the lower triangle of `a` (never modifies it). Throws LinalgError 'non-finite' (first bad index),
 * 'no-convergence' (practically never), 'dimension-mismatch'. About 9n³ flops.
 */
export function symEig(a: Float64Array, n: number): SymEigResult {
  if (!Number.isInteger(n) || n < 0) throw new LinalgError('dimension-mismatch', `symEig: bad order n = ${n}`, -1, n);
  checkLength(a, n * n, 'symEig');
  checkFinite(a, 'symEig', n);
  const values = new Float64Array(n);
  if (n === 0) return { values, vectors: new Float64Array(0) };
  // z[j][k] = A[k][j]: textbook V = A stored transposed (only V's lower triangle, i.e. A's lower triangle, is used).
  const z = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) z[j * n + i] = a[i * n + j];
  }
  const e = new Float64Array(n);
  tred2(z, n, values, e);
  tql2(z, n, values, e);

  // Sort ascending (stable order of equal values by index), transposing rows of z into columns of the result.
  const order = Array.from({ length: n }, (_, i) => i).sort((p, q) => values[p] - values[q] || p - q);
  const sorted = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const src = order[j];
    sorted[j] = values[src];
    const zs = src * n;
    for (let k = 0; k < n; k++) vectors[k * n + j] = z[zs + k];
  }
  return { values: sorted, vectors };
}
