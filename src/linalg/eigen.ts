/**
 * Symmetric eigendecomposition A = V·diag(λ)·Vᵀ (row-major Float64Array, explicit n), by Householder reduction to
 * tridiagonal form and the implicit QL algorithm with Wilkinson-type shifts: the classic tred2/tql2 pair (Bowdler,
 * Martin, Reinsch, Wilkinson; EISPACK; JAMA), rewritten on flat arrays with the memory access of each phase made
 * contiguous:
 *   - tred2 works on Vᵀ (textbook V[k][j] is z[j][k]), so the symmetric matrix-vector products, the rank-2 updates
 *     and the back-accumulation of the reflectors all run along rows, two rows per pass;
 *   - tql2 works on V itself: the rotations of each QL sweep are recorded, then applied along each row of V with
 *     the running entry carried in a register (one load and one store per entry and sweep).
 * `symEig` itself runs on LAPACK's dsyevd where the native addon is built (src/linalg/lapack.ts); this code is its
 * fallback and the tests' reference (`symEigTs`).
 */
import type { NativeAddon } from '../backend/native-handle.js';
import { checkFinite, checkLength, LinalgError } from './errors.js';
import { activeLapack, requireLapack } from './lapack.js';

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

      // e = A·u over the leading i×i block (symmetric, lower triangle V[k][j], k ≥ j = row j of z), two rows of z
      // per pass so that each load of d[k] and each update of e[k] serves both.
      let j = 0;
      for (; j + 2 <= i; j += 2) {
        const z0 = j * n;
        const z1 = z0 + n;
        const f0 = d[j];
        const f1 = d[j + 1];
        z[i * n + j] = f0;
        z[i * n + j + 1] = f1;
        let g0 = e[j] + z[z0 + j] * f0;
        const v01 = z[z0 + j + 1];
        g0 += v01 * f1;
        e[j + 1] += v01 * f0;
        let g1 = e[j + 1] + z[z1 + j + 1] * f1;
        for (let k = j + 2; k < i; k++) {
          const v0 = z[z0 + k];
          const v1 = z[z1 + k];
          const dk = d[k];
          g0 += v0 * dk;
          g1 += v1 * dk;
          e[k] += v0 * f0 + v1 * f1;
        }
        e[j] = g0;
        e[j + 1] = g1;
      }
      for (; j < i; j++) {
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
      // Rank-2 update A ← A − u·pᵀ − p·uᵀ of the lower triangle (row j of z, columns j..i-1), two rows per pass.
      // d[j] is replaced by the next step's vector only after every row that reads it is done.
      j = 0;
      for (; j + 2 <= i; j += 2) {
        const z0 = j * n;
        const z1 = z0 + n;
        const f0 = d[j];
        const g0 = e[j];
        const f1 = d[j + 1];
        const g1 = e[j + 1];
        z[z0 + j] -= f0 * e[j] + g0 * d[j];
        for (let k = j + 1; k < i; k++) {
          const ek = e[k];
          const dk = d[k];
          z[z0 + k] -= f0 * ek + g0 * dk;
          z[z1 + k] -= f1 * ek + g1 * dk;
        }
        d[j] = z[z0 + i - 1];
        z[z0 + i] = 0;
        d[j + 1] = z[z1 + i - 1];
        z[z1 + i] = 0;
      }
      for (; j < i; j++) {
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
      // Apply the reflector to rows 0..i of z: row j −= (w·row j)·w/h, with w = row i+1; two rows per pass.
      for (let k = 0; k <= i; k++) d[k] = z[zi1 + k] / h;
      let j = 0;
      for (; j + 2 <= i + 1; j += 2) {
        const z0 = j * n;
        const z1 = z0 + n;
        let g0 = 0;
        let g1 = 0;
        for (let k = 0; k <= i; k++) {
          const wk = z[zi1 + k];
          g0 += wk * z[z0 + k];
          g1 += wk * z[z1 + k];
        }
        for (let k = 0; k <= i; k++) {
          const dk = d[k];
          z[z0 + k] -= g0 * dk;
          z[z1 + k] -= g1 * dk;
        }
      }
      for (; j <= i; j++) {
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
 * Implicit QL iterations on the tridiagonal (d, e from tred2), accumulating the rotations into v (row-major,
 * column j = the j-th vector). On exit d holds the eigenvalues (unsorted) and column j of v the eigenvector of d[j].
 * The rotations of one QL sweep are recorded first and then applied row by row (`applySweep`).
 */
function tql2(v: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  const cs = new Float64Array(n);
  const sn = new Float64Array(n);

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
          cs[i] = c;
          sn[i] = s;
        }
        applySweep(v, n, l, m, cs, sn);
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > EPS * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

/**
 * Applies the rotations i = m−1, …, l of one QL sweep to columns l..m of every row of v: rotation i maps
 * (v[k][i], v[k][i+1]) to (c·v[k][i] − s·v[k][i+1], s·v[k][i] + c·v[k][i+1]). Along a row the updated v[k][i+1]
 * is carried in a register to the next rotation, so each entry is loaded and stored once (instead of twice per
 * rotation pair), contiguously; four rows share each load of (c, s).
 */
function applySweep(v: Float64Array, n: number, l: number, m: number, cs: Float64Array, sn: Float64Array): void {
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    const r0 = k * n;
    const r1 = r0 + n;
    const r2 = r1 + n;
    const r3 = r2 + n;
    let t0 = v[r0 + m];
    let t1 = v[r1 + m];
    let t2 = v[r2 + m];
    let t3 = v[r3 + m];
    for (let i = m - 1; i >= l; i--) {
      const c = cs[i];
      const s = sn[i];
      const x0 = v[r0 + i];
      const x1 = v[r1 + i];
      const x2 = v[r2 + i];
      const x3 = v[r3 + i];
      v[r0 + i + 1] = s * x0 + c * t0;
      v[r1 + i + 1] = s * x1 + c * t1;
      v[r2 + i + 1] = s * x2 + c * t2;
      v[r3 + i + 1] = s * x3 + c * t3;
      t0 = c * x0 - s * t0;
      t1 = c * x1 - s * t1;
      t2 = c * x2 - s * t2;
      t3 = c * x3 - s * t3;
    }
    v[r0 + l] = t0;
    v[r1 + l] = t1;
    v[r2 + l] = t2;
    v[r3 + l] = t3;
  }
  for (; k < n; k++) {
    const r0 = k * n;
    let t0 = v[r0 + m];
    for (let i = m - 1; i >= l; i--) {
      const c = cs[i];
      const s = sn[i];
      const x0 = v[r0 + i];
      v[r0 + i + 1] = s * x0 + c * t0;
      t0 = c * x0 - s * t0;
    }
    v[r0 + l] = t0;
  }
}

/** Transpose of an n×n matrix in 32×32 tiles. */
function transposeSquare(z: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i0 = 0; i0 < n; i0 += 32) {
    const i1 = Math.min(n, i0 + 32);
    for (let j0 = 0; j0 < n; j0 += 32) {
      const j1 = Math.min(n, j0 + 32);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * n + i] = z[i * n + j];
    }
  }
  return out;
}

/**
 * Eigendecomposition of a symmetric matrix: A·V = V·diag(values), VᵀV = I, values ascending.
 * Reads only the lower triangle of `a` (never modifies it). Throws LinalgError 'non-finite' (first bad index),
 * 'no-convergence' (practically never), 'dimension-mismatch'. About 9n³ flops.
 *
 * Runs on LAPACK (dsyevd, divide and conquer, through the native addon) when it is available, else in TypeScript
 * (`linalgEngine()`, src/linalg/lapack.ts). The two agree to round-off on the values; each eigenvector is defined
 * up to its sign (and within a repeated eigenvalue, up to a rotation), which the engines may choose differently.
 */
export function symEig(a: Float64Array, n: number): SymEigResult {
  return decompose(activeLapack(), a, n);
}

/** `symEig` in TypeScript (tred2 + tql2), whatever the engine choice: the tests' reference and the fallback. */
export function symEigTs(a: Float64Array, n: number): SymEigResult {
  return decompose(undefined, a, n);
}

/** `symEig` on LAPACK (float64 dsyevd); throws when the native addon is not available. */
export function symEigLapack(a: Float64Array, n: number): SymEigResult {
  return decompose(requireLapack('symEigLapack'), a, n);
}

function decompose(lib: NativeAddon | undefined, a: Float64Array, n: number): SymEigResult {
  if (!Number.isInteger(n) || n < 0) throw new LinalgError('dimension-mismatch', `symEig: bad order n = ${n}`, -1, n);
  checkLength(a, n * n, 'symEig');
  checkFinite(a, 'symEig', n);
  const values = new Float64Array(n);
  if (n === 0) return { values, vectors: new Float64Array(0) };
  if (lib) {
    const vectors = new Float64Array(n * n);
    const info = lib.symEigF64(a, n, values, vectors);
    if (info !== 0) {
      // dsyevd's info = i > 0: it failed on the submatrix in rows and columns i/(n+1) .. i mod (n+1).
      const at = Math.floor(info / (n + 1));
      throw new LinalgError('no-convergence', `symEig: LAPACK dsyevd did not converge (info ${info}, rows ${at}..${info % (n + 1)})`, at);
    }
    return { values, vectors };
  }
  // z[j][k] = A[k][j]: textbook V = A stored transposed (only V's lower triangle, i.e. A's lower triangle, is used).
  const z = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) z[j * n + i] = a[i * n + j];
  }
  const e = new Float64Array(n);
  tred2(z, n, values, e);
  // Q from z (rows = Q's columns) into textbook row-major layout for the QL sweeps.
  const v = transposeSquare(z, n);
  tql2(v, n, values, e);

  // Sort ascending (ties by index), permuting the columns.
  const order = Array.from({ length: n }, (_, i) => i).sort((p, q) => values[p] - values[q] || p - q);
  const sorted = new Float64Array(n);
  for (let j = 0; j < n; j++) sorted[j] = values[order[j]];
  const vectors = z; // reuse: z is no longer needed
  for (let k = 0; k < n; k++) {
    const r = k * n;
    for (let j = 0; j < n; j++) vectors[r + j] = v[r + order[j]];
  }
  return { values: sorted, vectors };
}
