/**
 * Factored Tikhonov damping: the π rule for a Kronecker product of k factors [P §2.2 eq 3, §4.1 eqs 10–12;
 * KFC eqs 7–8].
 *
 * To approximate F₁ ⊗ … ⊗ F_k + λI by a Kronecker product, each factor gets π_i λ^{1/k} I added, with Π π_i = 1 and
 *
 *   n_i = tr(F_i) / d_i,   π_i = n_i / (Π_j n_j)^{1/k}                                         (P eq 12, general k)
 *
 * (each factor's mean eigenvalue over the geometric mean of all of them). For k = 2 this is π_A = sqrt(n_A / n_G),
 * π_G = 1/π_A. If any trace is 0 or non-finite every π_i falls back to 1 (as tensorflow/kfac does).
 */

/** Trace of a row-major n×n matrix. */
export function trace(a: Float64Array, n: number): number {
  let t = 0;
  for (let i = 0; i < n; i++) t += a[i * n + i];
  return t;
}

/** π_i for factors with traces `traces` and dimensions `dims` (P eq 12 generalised to k factors). */
export function piAdjustments(traces: readonly number[], dims: readonly number[]): number[] {
  const k = traces.length;
  if (dims.length !== k) throw new Error(`piAdjustments: ${k} traces but ${dims.length} dimensions`);
  const n = traces.map((t, i) => t / dims[i]);
  if (n.some((x) => !(Number.isFinite(x) && x > 0))) return n.map(() => 1);
  // geometric mean in logs (products of k traces can overflow or underflow)
  const logMean = n.reduce((s, x) => s + Math.log(x), 0) / k;
  const pis = n.map((x) => Math.exp(Math.log(x) - logMean));
  return pis.every((p) => Number.isFinite(p) && p > 0) ? pis : n.map(() => 1);
}

/** π_i for k row-major square factors. */
export function piForFactors(factors: readonly { data: Float64Array; n: number }[]): number[] {
  return piAdjustments(
    factors.map((f) => trace(f.data, f.n)),
    factors.map((f) => f.n),
  );
}

/** A copy of `a` (n×n) plus `v` on the diagonal. */
export function addToDiagonal(a: Float64Array, n: number, v: number): Float64Array {
  const out = Float64Array.from(a);
  for (let i = 0; i < n; i++) out[i * n + i] += v;
  return out;
}

/**
 * The factored-damping terms π_i λ^{1/k} to add to each of k factors so that their Kronecker product approximates
 * F₁ ⊗ … ⊗ F_k + λI (P eqs 3 and 10).
 */
export function factoredDampingTerms(factors: readonly { data: Float64Array; n: number }[], damping: number): { pis: number[]; terms: number[] } {
  const pis = piForFactors(factors);
  const root = damping ** (1 / factors.length);
  return { pis, terms: pis.map((p) => p * root) };
}
