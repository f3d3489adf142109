/**
 * Which engine runs the O(n³) routines of src/linalg (spdInverse, symEig): LAPACK through the native addon
 * (native/src/linalg.cc: dpotrf + dpotri, dsyevd, float64) when it is built, else the TypeScript code of this folder,
 * which stays the fallback and the tests' reference (`spdInverseTs`, `symEigTs`). Both engines take the same
 * inputs, validate them with the same code and throw the same LinalgError kinds, indices and messages, so callers
 * (the K-FAC failure policy) see no difference but speed and round-off.
 *
 * Choice, per thread (each worker thread loads the addon itself, see src/backend/native.ts):
 *   - `setLinalgEngine('ts' | 'lapack' | 'auto')`, else
 *   - the environment: DKFAC_LINALG=ts|lapack|auto (default auto); DKFAC_NATIVE=0 disables the whole addon.
 * 'auto' takes LAPACK when the addon loads; 'lapack' throws when it does not (an explicit request never falls back
 * silently).
 */
import { type NativeAddon, nativeAddon, nativeAddonReason } from '../backend/native-handle.js';

export type LinalgEngine = 'lapack' | 'ts';
export type LinalgEngineChoice = 'auto' | LinalgEngine;

const CHOICES: readonly LinalgEngineChoice[] = ['auto', 'lapack', 'ts'];
let override: LinalgEngineChoice | undefined;

/** Sets this thread's engine choice (undefined: back to DKFAC_LINALG). */
export function setLinalgEngine(choice: LinalgEngineChoice | undefined): void {
  if (choice !== undefined && !CHOICES.includes(choice)) {
    throw new Error(`linalg engine must be one of ${CHOICES.join(', ')}, got '${choice}'`);
  }
  override = choice;
}

function currentChoice(): LinalgEngineChoice {
  if (override) return override;
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.DKFAC_LINALG;
  if (env === undefined || env === '') return 'auto';
  if (!CHOICES.includes(env as LinalgEngineChoice)) {
    throw new Error(`DKFAC_LINALG must be one of ${CHOICES.join(', ')}, got '${env}'`);
  }
  return env as LinalgEngineChoice;
}

/** The addon when it is loaded and carries the linear algebra, else why not (one line). */
function addonWithLinalg(): { addon?: NativeAddon; reason?: string } {
  const addon = nativeAddon();
  if (!addon) return { reason: nativeAddonReason() };
  if (typeof addon.spdInverseF64 !== 'function' || typeof addon.symEigF64 !== 'function') {
    return { reason: 'the native addon was built without linalg.cc: run `npm run build:native`' };
  }
  return { addon };
}

function resolveEngine(): { engine: LinalgEngine; addon?: NativeAddon; reason?: string } {
  const choice = currentChoice();
  if (choice === 'ts') return { engine: 'ts', reason: 'TypeScript linear algebra chosen (DKFAC_LINALG=ts or setLinalgEngine)' };
  const { addon, reason } = addonWithLinalg();
  if (addon) return { engine: 'lapack', addon };
  if (choice === 'lapack') throw new Error(`LAPACK linear algebra requested but unavailable: ${reason}`);
  return { engine: 'ts', reason };
}

/** The engine spdInverse and symEig use now in this thread, and why not LAPACK where it is not. */
export function linalgEngine(): { engine: LinalgEngine; reason?: string } {
  const { engine, reason } = resolveEngine();
  return reason === undefined ? { engine } : { engine, reason };
}

/** The addon when the current choice is LAPACK, else undefined (the TypeScript path). */
export function activeLapack(): NativeAddon | undefined {
  return resolveEngine().addon;
}

/** The addon for an explicit LAPACK call (`spdInverseLapack`, `symEigLapack`); throws when it is not available. */
export function requireLapack(what: string): NativeAddon {
  const { addon, reason } = addonWithLinalg();
  if (!addon) throw new Error(`${what}: LAPACK unavailable: ${reason}`);
  return addon;
}

/**
 * OpenBLAS threads per LAPACK call (process-wide; default 1, see native/src/linalg.cc for why), after setting it
 * to k when given. Undefined when the addon is not available.
 */
export function lapackThreads(k?: number): number | undefined {
  return addonWithLinalg().addon?.linalgThreads(k);
}
