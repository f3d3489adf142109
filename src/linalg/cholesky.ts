/**
 * Cholesky factorisation, solves and the inverse of symmetric positive definite matrices (row-major Float64Array,
 * explicit n). Only the LOWER triangle (diagonal included) of a symmetric input is read.
 *
 * spdInverse does n³ flops in three blocked phases, each written as C ± A·Bᵀ on row blocks so that the register-
 * tiled `gemmNT` kernel does nearly all of the work on contiguous rows, and it needs no n×n workspace beyond its
 * result (which may be the input itself with `inPlace`):
 *   1. A = L·Lᵀ, left-looking by column blocks: A[j0:, J] −= L[j0:, :j0]·L[J, :j0]ᵀ, then the panel.   (n³/3)
 *   2. U = L⁻ᵀ, row by row into the upper triangle: U[i][j] = (δᵢⱼ − Σ_{i≤k<j} U[i][k]·L[j][k]) / L[j][j]
 *      (row i of U is column i of L⁻¹); by column blocks, the part k < j0 is a gemmNT.               (n³/3)
 *   3. A⁻¹ = U·Uᵀ, lower triangle: A⁻¹[i][j] = Σ_{k≥i} U[i][k]·U[j][k] for j ≤ i; then mirrored.          (n³/3)
 * Storage during phase 2: L in the strict lower triangle, U in the upper triangle with its diagonal, L's diagonal
 * in a separate vector; rows of L that are no longer needed are zeroed so that phases 2 and 3 can run full
 * rectangles over them.
 *
 * `spdInverse` itself runs on LAPACK where the native addon is built (src/linalg/lapack.ts); the blocked TypeScript
 * above is its fallback and the tests' reference (`spdInverseTs`).
 */
import { checkFinite, checkLength, LinalgError } from './errors.js';
import type { NativeAddon } from '../backend/native-handle.js';
import { gemmNT } from './kernel.js';
import { activeLapack, requireLapack } from './lapack.js';

/** Options of `cholesky` and `spdInverse`. */
export interface CholeskyOptions {
  /** Overwrite and return the input array instead of a copy (after a thrown error it holds garbage). Default false. */
  inPlace?: boolean;
  /**
   * Relative pivot threshold: pivot j (the Schur complement dⱼ = L[j][j]²) must exceed `pivotTol · A[j][j]`,
   * else 'not-positive-definite' is thrown. dⱼ ≤ ε·A[j][j] proves cond₂(A) ≥ 1/ε, i.e. the matrix is singular to
   * working precision. Default n·2⁻⁵² (rejects matrices whose condition number is provably ≥ 1/(n·2⁻⁵²));
   * 0 gives LAPACK dpotrf's test (pivot ≤ 0 only).
   */
  pivotTol?: number;
  /** Column-block width of the blocked algorithms (tuning knob; default 32, the best of 16–128 measured here). */
  blockSize?: number;
}

const EPS = 2 ** -52;
const DEFAULT_BLOCK = 32;

/**
 * rows [r0, r1) of w, columns J = [j0, j1):  w[i][j] ← (w[i][j] − Σ_{j0≤k<j} w[i][k]·w[j][k]) · invd[j], j ascending.
 * The triangle w[j][k] (j ∈ J, j0 ≤ k < j) is read from rows J, which must not be among the rows solved.
 * This is the triangular solve X·L_JJᵀ = B of both the Cholesky panel (phase 1) and the inverse (phase 2).
 */
function solvePanelRows(
  w: Float64Array,
  n: number,
  r0: number,
  r1: number,
  j0: number,
  j1: number,
  invd: Float64Array,
): void {
  let i = r0;
  for (; i + 4 <= r1; i += 4) {
    const p0 = i * n;
    const p1 = p0 + n;
    const p2 = p1 + n;
    const p3 = p2 + n;
    for (let j = j0; j < j1; j++) {
      const pj = j * n;
      let s0 = w[p0 + j];
      let s1 = w[p1 + j];
      let s2 = w[p2 + j];
      let s3 = w[p3 + j];
      for (let k = j0; k < j; k++) {
        const y = w[pj + k];
        s0 -= w[p0 + k] * y;
        s1 -= w[p1 + k] * y;
        s2 -= w[p2 + k] * y;
        s3 -= w[p3 + k] * y;
      }
      const d = invd[j];
      w[p0 + j] = s0 * d;
      w[p1 + j] = s1 * d;
      w[p2 + j] = s2 * d;
      w[p3 + j] = s3 * d;
    }
  }
  for (; i < r1; i++) {
    const p0 = i * n;
    for (let j = j0; j < j1; j++) {
      const pj = j * n;
      let s0 = w[p0 + j];
      for (let k = j0; k < j; k++) s0 -= w[p0 + k] * w[pj + k];
      w[p0 + j] = s0 * invd[j];
    }
  }
}

/**
 * The error of a failed pivot test (dⱼ ≤ 0, or dⱼ ≤ pivotTol·A[j][j]), worded the same for both engines.
 * `ajj` is the original diagonal entry A[j][j].
 */
function notPositiveDefinite(j: number, d: number, pivotTol: number, ajj: number): LinalgError {
  const limit = (pivotTol * ajj).toExponential(3);
  const why = d > 0 ? ` (≤ ${pivotTol.toExponential(2)}·A[j][j] = ${limit}: singular to working precision)` : '';
  return new LinalgError('not-positive-definite', `matrix is not positive definite: Cholesky pivot ${j} is ${d}${why}`, j, d);
}

/**
 * Phase 1: overwrites the lower triangle (with diagonal) of w by L, A = L·Lᵀ. The strict upper triangle is used
 * as scratch (left holding garbage). Writes 1/L[j][j] into invd. Throws 'not-positive-definite'.
 */
function factorLowerInPlace(w: Float64Array, n: number, nb: number, pivotTol: number, invd: Float64Array): void {
  // The original diagonal, for the relative pivot test (w's diagonal is updated before each pivot is formed).
  const orig = new Float64Array(n);
  for (let j = 0; j < n; j++) orig[j] = w[j * n + j];
  for (let j0 = 0; j0 < n; j0 += nb) {
    const j1 = Math.min(n, j0 + nb);
    const bw = j1 - j0;
    // Left-looking update of the block column by everything to its left (also touches the unused strict upper
    // triangle of the diagonal block, harmlessly).
    if (j0 > 0) gemmNT(w, j0 * n + j0, n, w, j0 * n, n, w, j0 * n, n, n - j0, bw, j0, -1, true);
    // Unblocked factorisation of the diagonal block.
    for (let j = j0; j < j1; j++) {
      const pj = j * n;
      let d = w[pj + j];
      for (let k = j0; k < j; k++) d -= w[pj + k] * w[pj + k];
      if (!(d > 0 && d > pivotTol * orig[j])) throw notPositiveDefinite(j, d, pivotTol, orig[j]);
      const ljj = Math.sqrt(d);
      w[pj + j] = ljj;
      invd[j] = 1 / ljj;
      const inv = invd[j];
      for (let i = j + 1; i < j1; i++) {
        const pi = i * n;
        let s = w[pi + j];
        for (let k = j0; k < j; k++) s -= w[pi + k] * w[pj + k];
        w[pi + j] = s * inv;
      }
    }
    // Rows below the diagonal block: L[i][J] = B·L_JJ⁻ᵀ.
    solvePanelRows(w, n, j1, n, j0, j1, invd);
  }
}

/**
 * Phase 2: with L in the lower triangle of w (its diagonal also in 1/invd), writes U = L⁻ᵀ into the upper
 * triangle (diagonal included) and zeroes the strict lower triangle.
 */
function invertToUpperInPlace(w: Float64Array, n: number, nb: number, invd: Float64Array): void {
  for (let j0 = 0; j0 < n; j0 += nb) {
    const j1 = Math.min(n, j0 + nb);
    const bw = j1 - j0;
    // Rows i < j0: T[i][J] = −Σ_{i≤k<j0} U[i][k]·L[J][k], by 4-row strips (U[i][k] for k < i is zero: those rows of
    // L were cleared). The strip's k range starts at its first row.
    for (let i0 = 0; i0 < j0; i0 += 4) {
      const rows = Math.min(4, j0 - i0);
      gemmNT(w, i0 * n + j0, n, w, i0 * n + i0, n, w, j0 * n + i0, n, rows, bw, j0 - i0, -1, false);
    }
    // ... then the part j0 ≤ k < j against the diagonal block of L.
    solvePanelRows(w, n, 0, j0, j0, j1, invd);
    // Rows i ∈ J: the small triangle U[J][J] = L_JJ⁻ᵀ.
    for (let i = j0; i < j1; i++) {
      const pi = i * n;
      w[pi + i] = invd[i];
      for (let j = i + 1; j < j1; j++) {
        const pj = j * n;
        let s = 0;
        for (let k = i; k < j; k++) s -= w[pi + k] * w[pj + k];
        w[pi + j] = s * invd[j];
      }
    }
    // Rows J of L are no longer needed: clear them so later strips may read them as U's zero lower triangle.
    for (let i = j0; i < j1; i++) w.fill(0, i * n, i * n + i);
  }
}

/**
 * Phase 3: with U = L⁻ᵀ in the upper triangle of w and zeros below, overwrites w by U·Uᵀ (full, symmetric).
 * `tmp` is nb·nb scratch.
 */
function gramUpperInPlace(w: Float64Array, n: number, nb: number, tmp: Float64Array): void {
  for (let i0 = 0; i0 < n; i0 += nb) {
    const i1 = Math.min(n, i0 + nb);
    const bw = i1 - i0;
    // Off-diagonal block row: C[I][0:i0] = U[I][i0:]·U[0:i0][i0:]ᵀ (U[I] is zero left of its diagonal).
    if (i0 > 0) gemmNT(w, i0 * n, n, w, i0 * n + i0, n, w, i0, n, bw, i0, n - i0, 1, false);
    // Diagonal block into scratch (it overwrites U[I][I], which it reads): the part k ≥ i1 ...
    if (i1 < n) gemmNT(tmp, 0, bw, w, i0 * n + i1, n, w, i0 * n + i1, n, bw, bw, n - i1, 1, false);
    else tmp.fill(0, 0, bw * bw);
    // ... plus the triangle i ≤ k < i1 (for j ≤ i).
    for (let i = i0; i < i1; i++) {
      const pi = i * n;
      for (let j = i0; j <= i; j++) {
        const pj = j * n;
        let s = 0;
        for (let k = i; k < i1; k++) s += w[pi + k] * w[pj + k];
        tmp[(i - i0) * bw + (j - i0)] += s;
      }
    }
    for (let i = i0; i < i1; i++) {
      for (let j = i0; j <= i; j++) w[i * n + j] = tmp[(i - i0) * bw + (j - i0)];
    }
  }
  mirrorLowerToUpper(w, n);
}

/** Copies the strict lower triangle onto the strict upper one, in cache-sized tiles. */
export function mirrorLowerToUpper(w: Float64Array, n: number): void {
  const t = 32;
  for (let i0 = 0; i0 < n; i0 += t) {
    const i1 = Math.min(n, i0 + t);
    for (let j0 = 0; j0 <= i0; j0 += t) {
      const j1 = Math.min(n, j0 + t);
      for (let i = i0; i < i1; i++) {
        const pi = i * n;
        const jEnd = Math.min(j1, i);
        for (let j = j0; j < jEnd; j++) w[j * n + i] = w[pi + j];
      }
    }
  }
}

function resolve(
  a: Float64Array,
  n: number,
  opts: CholeskyOptions,
  what: string,
): { w: Float64Array; nb: number; tol: number } {
  if (!Number.isInteger(n) || n < 0) throw new LinalgError('dimension-mismatch', `${what}: bad order n = ${n}`, -1, n);
  checkLength(a, n * n, what);
  checkFinite(a, what, n);
  const w = opts.inPlace ? a : Float64Array.from(a);
  const nb = Math.max(4, Math.floor(opts.blockSize ?? DEFAULT_BLOCK));
  const tol = opts.pivotTol ?? n * EPS;
  return { w, nb, tol };
}

/**
 * Cholesky factor L (lower triangular, upper triangle zeroed) with A = L·Lᵀ.
 * Reads only the lower triangle of `a`. Throws LinalgError 'non-finite' (first bad index) or
 * 'not-positive-definite' (pivot row and value).
 */
export function cholesky(a: Float64Array, n: number, opts: CholeskyOptions = {}): Float64Array {
  const { w, nb, tol } = resolve(a, n, opts, 'cholesky');
  factorLowerInPlace(w, n, nb, tol, new Float64Array(n));
  for (let i = 0; i < n; i++) w.fill(0, i * n + i + 1, (i + 1) * n);
  return w;
}

/**
 * Solves A·X = B given the Cholesky factor L of A (from `cholesky`): B is n×nrhs row-major (a vector when
 * nrhs = 1). Returns a new array unless `inPlace`. O(n²·nrhs).
 */
export function choleskySolve(l: Float64Array, n: number, b: Float64Array, nrhs = 1, inPlace = false): Float64Array {
  checkLength(l, n * n, 'choleskySolve(L)');
  checkLength(b, n * nrhs, 'choleskySolve(B)');
  const x = inPlace ? b : Float64Array.from(b);
  // Forward: L·Y = B, row i of Y = (B[i] − Σ_{k<i} L[i][k]·Y[k]) / L[i][i].
  for (let i = 0; i < n; i++) {
    const xi = i * nrhs;
    for (let k = 0; k < i; k++) {
      const lik = l[i * n + k];
      if (lik === 0) continue;
      const xk = k * nrhs;
      for (let c = 0; c < nrhs; c++) x[xi + c] -= lik * x[xk + c];
    }
    const inv = 1 / l[i * n + i];
    for (let c = 0; c < nrhs; c++) x[xi + c] *= inv;
  }
  // Backward: Lᵀ·X = Y, row i of X = (Y[i] − Σ_{k>i} L[k][i]·X[k]) / L[i][i], i descending (axpy form:
  // once row i is final, subtract its contribution from every row above).
  for (let i = n - 1; i >= 0; i--) {
    const xi = i * nrhs;
    const inv = 1 / l[i * n + i];
    for (let c = 0; c < nrhs; c++) x[xi + c] *= inv;
    const pi = i * n;
    for (let k = 0; k < i; k++) {
      const lik = l[pi + k];
      if (lik === 0) continue;
      const xk = k * nrhs;
      for (let c = 0; c < nrhs; c++) x[xk + c] -= lik * x[xi + c];
    }
  }
  return x;
}

/**
 * Inverse of a symmetric positive definite matrix via Cholesky: A⁻¹ = L⁻ᵀ·L⁻¹, exactly symmetric.
 * Reads only the lower triangle of `a`; does not modify `a` unless `opts.inPlace` (then the result is `a`).
 * Throws LinalgError 'non-finite' (first bad input index, or the first overflowed output entry),
 * 'not-positive-definite' (pivot row and value), 'dimension-mismatch'. n³ flops.
 *
 * Runs on LAPACK (dpotrf + dpotri through the native addon) when it is available, else in TypeScript
 * (`linalgEngine()`, src/linalg/lapack.ts); both apply the same relative pivot test and raise the same errors.
 */
export function spdInverse(a: Float64Array, n: number, opts: CholeskyOptions = {}): Float64Array {
  return invert(activeLapack(), a, n, opts);
}

/** `spdInverse` in TypeScript, whatever the engine choice (the reference of the tests and the fallback). */
export function spdInverseTs(a: Float64Array, n: number, opts: CholeskyOptions = {}): Float64Array {
  return invert(undefined, a, n, opts);
}

/** `spdInverse` on LAPACK (float64 dpotrf + dpotri); throws when the native addon is not available. */
export function spdInverseLapack(a: Float64Array, n: number, opts: CholeskyOptions = {}): Float64Array {
  return invert(requireLapack('spdInverseLapack'), a, n, opts);
}

function invert(lib: NativeAddon | undefined, a: Float64Array, n: number, opts: CholeskyOptions): Float64Array {
  const { w, nb, tol } = resolve(a, n, opts, 'spdInverse');
  if (n === 0) return w;
  if (lib) {
    // The pivot test needs the original diagonal, which the factorisation overwrites.
    const diag = new Float64Array(n);
    for (let j = 0; j < n; j++) diag[j] = w[j * n + j];
    const failed = lib.spdInverseF64(w, n, tol);
    if (failed) throw notPositiveDefinite(failed.pivot, failed.value, tol, diag[failed.pivot]);
  } else {
    const invd = new Float64Array(n);
    factorLowerInPlace(w, n, nb, tol, invd);
    invertToUpperInPlace(w, n, nb, invd);
    gramUpperInPlace(w, n, nb, new Float64Array(nb * nb));
  }
  // Tiny (but accepted) pivots can overflow the inverse: never hand back Infinity/NaN silently.
  checkFinite(w, 'spdInverse result (overflow: matrix too close to singular)', n);
  return w;
}

/** A + value·I (a new array unless `inPlace`). */
export function addDiagonal(a: Float64Array, n: number, value: number, inPlace = false): Float64Array {
  checkLength(a, n * n, 'addDiagonal');
  const w = inPlace ? a : Float64Array.from(a);
  for (let i = 0; i < n; i++) w[i * n + i] += value;
  return w;
}
