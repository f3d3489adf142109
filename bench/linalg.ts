/**
 * Dense float64 linear algebra (src/linalg) against ml-matrix and a naive TS implementation: seconds per SPD
 * inverse (Cholesky) at the K-FAC factor sizes n = 256, 577, 1024, 2304, seconds per symmetric eigendecomposition
 * at n = 256 and 577, and the batched top singular pairs of the doubly-factored approximation (128 × 36×256).
 *
 *   npx tsx bench/linalg.ts            (about a minute; ml-matrix and naive TS skipped above n = 1024)
 *   BENCH_FULL=1 npx tsx bench/linalg.ts   (adds them at n = 2304: several minutes)
 *
 * Each figure is the best of a few runs (this machine's two vCPUs are shared, so the minimum is the figure least
 * disturbed by other work); ratios measured in the same run are what to compare.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CholeskyDecomposition, EigenvalueDecomposition, Matrix } from 'ml-matrix';
import {
  maxAbsDiff,
  randomGaussian,
  randomSpd,
  randomSymmetric,
  spdInverse,
  symEig,
  topSingularPairs,
} from '../src/linalg';

/** Plain Float64Array Cholesky inverse in TS, seconds, from /work/shared/compute-stack.md (quiet machine). */
const NAIVE_TS_SECONDS: Record<number, number> = { 256: 0.031, 577: 0.36, 1024: 1.85, 2304: 25.7 };

/** Best wall time in seconds of f over up to `maxRuns` runs, stopping once `budgetS` seconds have been spent. */
function bestOf(f: () => unknown, maxRuns: number, budgetS: number): number {
  let best = Number.POSITIVE_INFINITY;
  const start = performance.now();
  for (let r = 0; r < maxRuns; r++) {
    const t0 = performance.now();
    f();
    const t = (performance.now() - t0) / 1000;
    best = Math.min(best, t);
    if ((performance.now() - start) / 1000 > budgetS) break;
  }
  return best;
}

/**
 * Textbook unblocked Cholesky inverse on Float64Array (Cholesky–Banachiewicz, L⁻¹ by forward substitution column
 * by column, A⁻¹ = L⁻ᵀ·L⁻¹ by plain triple loops): the "plain Float64Array TS" baseline of compute-stack.md,
 * re-measured in the same run so that the ratio is not skewed by load on the machine.
 */
function naiveSpdInverse(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) throw new Error('not positive definite');
        l[i * n + i] = Math.sqrt(s);
      } else {
        l[i * n + j] = s / l[j * n + j];
      }
    }
  }
  const li = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    li[j * n + j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= l[i * n + k] * li[k * n + j];
      li[i * n + j] = s / l[i * n + i];
    }
  }
  const x = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += li[k * n + i] * li[k * n + j];
      x[i * n + j] = s;
      x[j * n + i] = s;
    }
  }
  return x;
}

/**
 * O(n²) SPD test matrix: S/√n + 3·I with S symmetric standard normal (Wigner spectrum within about [−2, 2], so the
 * eigenvalues lie in about [1, 5]). The run time of a Cholesky inverse does not depend on the values; this avoids
 * the O(n³) product of `randomSpd` at n = 2304.
 */
function benchSpd(n: number, seed: number): Float64Array {
  const a = randomSymmetric(n, seed);
  const scale = 1 / Math.sqrt(n);
  for (let i = 0; i < n * n; i++) a[i] *= scale;
  for (let i = 0; i < n; i++) a[i * n + i] += 3;
  return a;
}

function toMlMatrix(a: Float64Array, n: number): Matrix {
  const m = new Matrix(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m.set(i, j, a[i * n + j]);
  return m;
}

function fmt(x: number | undefined, digits = 3): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toPrecision(digits);
}

function printTable(title: string, cols: string[], rows: Array<[string, string[]]>): void {
  const w = Math.max(title.length, ...rows.map((r) => r[0].length));
  const cw = Math.max(8, ...cols.map((c) => c.length), ...rows.flatMap((r) => r[1].map((c) => c.length)));
  console.log(`${title.padEnd(w)}  ${cols.map((c) => c.padStart(cw)).join('  ')}`);
  for (const [name, cells] of rows) console.log(`${name.padEnd(w)}  ${cells.map((c) => c.padStart(cw)).join('  ')}`);
}

export async function benchLinalg(): Promise<Record<string, number>> {
  const full = process.env.BENCH_FULL === '1';
  const out: Record<string, number> = {};
  const notes: string[] = [];

  // Warm the JIT on a small case (the first call of each routine compiles it).
  for (let r = 0; r < 3; r++) spdInverse(randomSpd(96, 0.01, r), 96);
  naiveSpdInverse(randomSpd(96, 0.01, 9), 96);
  symEig(randomSymmetric(64, 1), 64);

  // ---- SPD inverse ----------------------------------------------------------------------------------------
  const sizes = [256, 577, 1024, 2304];
  const ours: Record<number, number> = {};
  const ml: Record<number, number> = {};
  const naive: Record<number, number> = {};
  for (const n of sizes) {
    const a = benchSpd(n, n);
    ours[n] = bestOf(() => spdInverse(a, n), n <= 577 ? 7 : 3, n <= 1024 ? 3 : 1);
    out[`spd_inverse_s_${n}`] = ours[n];
    if (n <= 1024 || full) {
      naive[n] = bestOf(() => naiveSpdInverse(a, n), n <= 256 ? 5 : 2, 1);
      out[`naive_ts_spd_inverse_s_${n}`] = naive[n];
    }
    if (n <= 1024 || full) {
      const m = toMlMatrix(a, n);
      let inv: Matrix | undefined;
      ml[n] = bestOf(() => (inv = new CholeskyDecomposition(m).solve(Matrix.eye(n, n))), n <= 256 ? 3 : 1, 1);
      out[`ml_matrix_spd_inverse_s_${n}`] = ml[n];
      // Sanity: the two inverses agree.
      const diff = maxAbsDiff(Float64Array.from(inv!.to1DArray()), spdInverse(a, n));
      if (!(diff < 1e-9)) notes.push(`WARNING: dkfac and ml-matrix inverses differ by ${diff} at n = ${n}`);
    }
  }
  const skippedMl = sizes.filter((n) => ml[n] === undefined);
  printTable(
    'SPD inverse (Cholesky), seconds',
    sizes.map((n) => `n=${n}`),
    [
      ['dkfac spdInverse', sizes.map((n) => fmt(ours[n]))],
      ['ml-matrix Cholesky.solve(I)', sizes.map((n) => (ml[n] === undefined ? 'skipped' : fmt(ml[n])))],
      ['ratio ml-matrix / dkfac', sizes.map((n) => (ml[n] === undefined ? '—' : `${fmt(ml[n] / ours[n])}×`))],
      ['naive TS, this run', sizes.map((n) => (naive[n] === undefined ? 'skipped' : fmt(naive[n])))],
      ['ratio naive TS / dkfac', sizes.map((n) => (naive[n] === undefined ? '—' : `${fmt(naive[n] / ours[n])}×`))],
      ['naive TS, compute-stack.md (quiet machine)', sizes.map((n) => fmt(NAIVE_TS_SECONDS[n]))],
      ['dkfac GFLOP/s (n³ flops)', sizes.map((n) => fmt(n ** 3 / ours[n] / 1e9))],
    ],
  );
  for (const n of sizes) out[`spd_inverse_gflops_${n}`] = n ** 3 / ours[n] / 1e9;
  if (skippedMl.length > 0) {
    notes.push(
      `ml-matrix and the naive TS inverse skipped at n = ${skippedMl.join(', ')}: they take minutes there ` +
        `(287 s and 25.7 s at 2304 in compute-stack.md); set BENCH_FULL=1 to run them`,
    );
  }

  // ---- symmetric eigendecomposition -----------------------------------------------------------------------
  const eigSizes = [256, 577];
  const eo: Record<number, number> = {};
  const em: Record<number, number> = {};
  for (const n of eigSizes) {
    const a = randomSymmetric(n, 10 + n);
    eo[n] = bestOf(() => symEig(a, n), 3, 2);
    const m = toMlMatrix(a, n);
    em[n] = bestOf(() => new EigenvalueDecomposition(m, { assumeSymmetric: true }), 2, 0.5);
    out[`sym_eig_s_${n}`] = eo[n];
    out[`ml_matrix_sym_eig_s_${n}`] = em[n];
  }
  console.log('');
  printTable(
    'symmetric eigendecomposition, seconds',
    eigSizes.map((n) => `n=${n}`),
    [
      ['dkfac symEig', eigSizes.map((n) => fmt(eo[n]))],
      ['ml-matrix EigenvalueDecomposition', eigSizes.map((n) => fmt(em[n]))],
      ['ratio ml-matrix / dkfac', eigSizes.map((n) => `${fmt(em[n] / eo[n])}×`)],
    ],
  );

  // ---- batched top singular pairs (doubly-factored statistics) --------------------------------------------
  const batch = 128;
  const rows = 36;
  const cols = 256;
  const random = Float32Array.from(randomGaussian(batch * rows, cols, 3));
  // Rank-1 plus 10 % noise: the shape of per-example activations with one dominant direction.
  const g = randomGaussian(batch * (rows + cols + rows * cols), 1, 4);
  const structured = new Float32Array(batch * rows * cols);
  for (let b = 0; b < batch; b++) {
    const base = b * (rows + cols + rows * cols);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const noise = g[base + rows + cols + i * cols + j];
        structured[(b * rows + i) * cols + j] = g[base + i] * g[base + rows + j] + 0.1 * noise;
      }
    }
  }
  topSingularPairs(random.subarray(0, 8 * rows * cols), 8, rows, cols); // warm-up
  const svdRandom = bestOf(() => topSingularPairs(random, batch, rows, cols), 3, 2);
  const svdStructured = bestOf(() => topSingularPairs(structured, batch, rows, cols), 3, 2);
  out.top_singular_pairs_ms_per_example_random = (svdRandom / batch) * 1000;
  out.top_singular_pairs_ms_per_example_rank1_noise = (svdStructured / batch) * 1000;
  console.log('');
  printTable('topSingularPairs, 128 examples of 36×256 (float32 in)', ['s/batch', 'ms/example'], [
    ['random Gaussian (small eigen-gap)', [fmt(svdRandom), fmt((svdRandom / batch) * 1000)]],
    ['rank-1 + 10 % noise', [fmt(svdStructured), fmt((svdStructured / batch) * 1000)]],
  ]);

  for (const n of notes) console.log(n);
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await benchLinalg();
}
