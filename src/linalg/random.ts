/**
 * Seeded random matrices for the linear-algebra tests and benchmark (deterministic across runs and machines).
 */
import { matmulTransB } from './basic.js';
import { mirrorLowerToUpper } from './cholesky.js';

/** mulberry32: a small, fast, well-mixed 32-bit generator; returns uniforms in [0, 1). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller) from a uniform generator. */
export function gaussianSource(uniform: () => number): () => number {
  let spare = Number.NaN;
  return () => {
    if (!Number.isNaN(spare)) {
      const s = spare;
      spare = Number.NaN;
      return s;
    }
    let u = 0;
    while (u === 0) u = uniform();
    const v = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/** rows×cols matrix of independent standard normals. */
export function randomGaussian(rows: number, cols: number, seed: number): Float64Array {
  const g = gaussianSource(mulberry32(seed));
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = g();
  return out;
}

/**
 * A = B·Bᵀ/n + eps·I with B n×n standard normal: symmetric positive definite, exactly symmetric. Its spectrum
 * lies in about [eps, 4 + eps] (Marchenko–Pastur with ratio 1), so cond₂(A) ≈ 1 + 4/eps.
 */
export function randomSpd(n: number, eps: number, seed: number): Float64Array {
  const b = randomGaussian(n, n, seed);
  const a = matmulTransB(b, b, n, n, n);
  const inv = 1 / n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) a[i * n + j] *= inv;
    a[i * n + i] += eps;
  }
  mirrorLowerToUpper(a, n);
  return a;
}

/** Symmetric n×n matrix with standard normal entries on and below the diagonal. */
export function randomSymmetric(n: number, seed: number): Float64Array {
  const g = gaussianSource(mulberry32(seed));
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const x = g();
      a[i * n + j] = x;
      a[j * n + i] = x;
    }
  }
  return a;
}
