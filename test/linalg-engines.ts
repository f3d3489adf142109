/**
 * The engines the tests of src/linalg run on: the TypeScript code always, LAPACK (the native addon) when the addon
 * is built. The LAPACK runs are skipped, with the reason in their title, only when the addon was not built (or is
 * disabled by DKFAC_NATIVE=0); an addon that is built but does not load, or lacks the linear algebra, fails them.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { ADDON_PATH } from '../src/backend/native.js';
import { type LinalgEngine, setLinalgEngine } from '../src/linalg/index.js';

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
