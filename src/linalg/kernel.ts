/**
 * The one compute kernel behind the O(n³) work of `src/linalg/`: a register-tiled "C ← (C) + α·A·Bᵀ" on row-major
 * sub-matrices of Float64Arrays.
 *
 * Why A·Bᵀ: with row-major storage both operands are then read along rows, i.e. contiguously, and every entry of C
 * is a dot product. Cholesky (left-looking), the triangular inverse (computed as the rows of L⁻ᵀ) and the final
 * product L⁻ᵀ·L⁻¹ are all written in this form (see `cholesky.ts`).
 *
 * Why 4×4 tiles: each k step loads 4 values of A and 4 of B and does 16 multiply-adds on scalar accumulators
 * held in registers, 2 multiply-adds per load instead of 1 for a plain dot product. V8 emits scalar SSE/AVX
 * code without FMA or SIMD and with a bounds check per typed-array load, so the instruction count per flop (not
 * memory bandwidth) is the limit: this kernel runs at about 1.5–2 GFLOP/s on the reference machine, against
 * 0.3–0.6 GFLOP/s for a naive triple loop.
 */

/**
 * C[r][c] ← (accumulate ? C[r][c] : 0) + alpha · Σ_{k<kLen} A[r][k]·B[c][k] for r < m, c < nc.
 *
 * Each operand is given as (array, offset of its [0][0] entry, leading dimension = distance between rows).
 * A, B and C may be regions of the same array, but the region written (C) must not overlap the regions read
 * (A, B). With `accumulate = false` the old contents of C are never read (they may be garbage or NaN).
 */
export function gemmNT(
  c: Float64Array,
  cOff: number,
  ldc: number,
  a: Float64Array,
  aOff: number,
  lda: number,
  b: Float64Array,
  bOff: number,
  ldb: number,
  m: number,
  nc: number,
  kLen: number,
  alpha: number,
  accumulate: boolean,
): void {
  const beta = accumulate ? 1 : 0;
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    const a0 = aOff + i * lda;
    const a1 = a0 + lda;
    const a2 = a1 + lda;
    const a3 = a2 + lda;
    const c0 = cOff + i * ldc;
    const c1 = c0 + ldc;
    const c2 = c1 + ldc;
    const c3 = c2 + ldc;
    let j = 0;
    for (; j + 4 <= nc; j += 4) {
      const b0 = bOff + j * ldb;
      const b1 = b0 + ldb;
      const b2 = b1 + ldb;
      const b3 = b2 + ldb;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0;
      let s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0;
      let s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let k = 0; k < kLen; k++) {
        const y0 = b[b0 + k];
        const y1 = b[b1 + k];
        const y2 = b[b2 + k];
        const y3 = b[b3 + k];
        let x = a[a0 + k];
        s00 += x * y0; s01 += x * y1; s02 += x * y2; s03 += x * y3;
        x = a[a1 + k];
        s10 += x * y0; s11 += x * y1; s12 += x * y2; s13 += x * y3;
        x = a[a2 + k];
        s20 += x * y0; s21 += x * y1; s22 += x * y2; s23 += x * y3;
        x = a[a3 + k];
        s30 += x * y0; s31 += x * y1; s32 += x * y2; s33 += x * y3;
      }
      let p = c0 + j;
      if (beta === 0) {
        c[p] = alpha * s00; c[p + 1] = alpha * s01; c[p + 2] = alpha * s02; c[p + 3] = alpha * s03;
        p = c1 + j;
        c[p] = alpha * s10; c[p + 1] = alpha * s11; c[p + 2] = alpha * s12; c[p + 3] = alpha * s13;
        p = c2 + j;
        c[p] = alpha * s20; c[p + 1] = alpha * s21; c[p + 2] = alpha * s22; c[p + 3] = alpha * s23;
        p = c3 + j;
        c[p] = alpha * s30; c[p + 1] = alpha * s31; c[p + 2] = alpha * s32; c[p + 3] = alpha * s33;
      } else {
        c[p] += alpha * s00; c[p + 1] += alpha * s01; c[p + 2] += alpha * s02; c[p + 3] += alpha * s03;
        p = c1 + j;
        c[p] += alpha * s10; c[p + 1] += alpha * s11; c[p + 2] += alpha * s12; c[p + 3] += alpha * s13;
        p = c2 + j;
        c[p] += alpha * s20; c[p + 1] += alpha * s21; c[p + 2] += alpha * s22; c[p + 3] += alpha * s23;
        p = c3 + j;
        c[p] += alpha * s30; c[p + 1] += alpha * s31; c[p + 2] += alpha * s32; c[p + 3] += alpha * s33;
      }
    }
    // Leftover columns: 4×1 tiles.
    for (; j < nc; j++) {
      const b0 = bOff + j * ldb;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < kLen; k++) {
        const y = b[b0 + k];
        s0 += a[a0 + k] * y;
        s1 += a[a1 + k] * y;
        s2 += a[a2 + k] * y;
        s3 += a[a3 + k] * y;
      }
      if (beta === 0) {
        c[c0 + j] = alpha * s0; c[c1 + j] = alpha * s1; c[c2 + j] = alpha * s2; c[c3 + j] = alpha * s3;
      } else {
        c[c0 + j] += alpha * s0; c[c1 + j] += alpha * s1; c[c2 + j] += alpha * s2; c[c3 + j] += alpha * s3;
      }
    }
  }
  // Leftover rows: 1×4 tiles, then single dot products.
  for (; i < m; i++) {
    const a0 = aOff + i * lda;
    const c0 = cOff + i * ldc;
    let j = 0;
    for (; j + 4 <= nc; j += 4) {
      const b0 = bOff + j * ldb;
      const b1 = b0 + ldb;
      const b2 = b1 + ldb;
      const b3 = b2 + ldb;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < kLen; k++) {
        const x = a[a0 + k];
        s0 += x * b[b0 + k];
        s1 += x * b[b1 + k];
        s2 += x * b[b2 + k];
        s3 += x * b[b3 + k];
      }
      const p = c0 + j;
      if (beta === 0) {
        c[p] = alpha * s0; c[p + 1] = alpha * s1; c[p + 2] = alpha * s2; c[p + 3] = alpha * s3;
      } else {
        c[p] += alpha * s0; c[p + 1] += alpha * s1; c[p + 2] += alpha * s2; c[p + 3] += alpha * s3;
      }
    }
    for (; j < nc; j++) {
      const b0 = bOff + j * ldb;
      let s0 = 0, s1 = 0;
      let k = 0;
      for (; k + 2 <= kLen; k += 2) {
        s0 += a[a0 + k] * b[b0 + k];
        s1 += a[a0 + k + 1] * b[b0 + k + 1];
      }
      if (k < kLen) s0 += a[a0 + k] * b[b0 + k];
      if (beta === 0) c[c0 + j] = alpha * (s0 + s1);
      else c[c0 + j] += alpha * (s0 + s1);
    }
  }
}
