/**
 * Shared pieces of the tests of src/linalg: the engines they run on (the TypeScript code always, LAPACK through the
 * native addon when the addon is built: the LAPACK runs are skipped, with the reason in their title, only when the
 * addon was not built or is disabled by DKFAC_NATIVE=0; an addon that is built but does not load, or lacks the
 * linear algebra, fails them), the LinalgError catcher and the condition-number estimate the tolerances are stated
 * with.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ADDON_PATH } from '../src/backend/native.js';
import { type LinalgEngine, LinalgError, matvec, setLinalgEngine, symEig } from '../src/linalg/index.js';

const ROOT = join(import.meta.dirname, '..');

/** Why the LAPACK tests are skipped, or undefined when they run. */
export const LAPACK_SKIP_REASON: string | undefined =
  process.env.DKFAC_NATIVE === '0'
    ? 'native addon disabled by DKFAC_NATIVE=0'
    : existsSync(join(ROOT, ADDON_PATH))
      ? undefined
      : `native addon not built (${ADDON_PATH} missing: npm run build:native)`;

/** `describe(name, body)` once per engine, with spdInverse / symEig switched to it for the block's tests. */
export function describeEngines(name: string, body: (engine: LinalgEngine) => void): void {
  for (const engine of ['ts', 'lapack'] as const) {
    const skip = engine === 'lapack' ? LAPACK_SKIP_REASON : undefined;
    (skip ? describe.skip : describe)(`${name} [${engine}${skip ? `: skipped, ${skip}` : ''}]`, () => {
      beforeAll(() => setLinalgEngine(engine));
      afterAll(() => setLinalgEngine(undefined));
      body(engine);
    });
  }
}

/** Runs f and returns the LinalgError it throws (fails the test if it throws nothing or something else). */
export function linalgError(f: () => unknown): LinalgError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(LinalgError);
    return e as LinalgError;
  }
  throw new Error('expected a LinalgError');
}

/** Largest eigenvalue of a symmetric PSD matrix by power iteration (a lower bound, tight after enough steps). */
export function lambdaMax(a: Float64Array, n: number, steps = 150): number {
  let x = new Float64Array(n).fill(1 / Math.sqrt(n));
  let lambda = 0;
  for (let s = 0; s < steps; s++) {
    const y = matvec(a, x, n, n);
    lambda = 0;
    let nn = 0;
    for (let i = 0; i < n; i++) {
      lambda += y[i] * x[i];
      nn += y[i] * y[i];
    }
    const inv = 1 / Math.sqrt(nn);
    x = y.map((v) => v * inv);
  }
  return lambda;
}

/**
 * 2-norm condition number of an SPD matrix: exact (symEig) for n ≤ 300, else estimated by power iterations on A
 * and A⁻¹ (Rayleigh quotients: slight under-estimates).
 */
export function cond2(a: Float64Array, inv: Float64Array, n: number): number {
  if (n <= 300) {
    const { values } = symEig(a, n);
    return values[n - 1] / values[0];
  }
  return lambdaMax(a, n) * lambdaMax(inv, n);
}

export function maxAsymmetry(x: Float64Array, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) m = Math.max(m, Math.abs(x[i * n + j] - x[j * n + i]));
  return m;
}
