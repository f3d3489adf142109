/**
 * Loading the native engine's addon (`native/`, C++ on oneDNN and OpenBLAS/LAPACK, built by node-gyp during
 * `npm ci`; see native/README.md).
 *
 * The addon is optional: where it was not built (no compiler, no oneDNN, another OS) `loadNative()` returns
 * undefined and `nativeUnavailableReason()` says why in one line, and every caller falls back to the wasm kernels
 * and the TypeScript linear algebra.
 *
 * OpenBLAS (used for LAPACK) picks its kernels when the library is loaded: Debian's 0.3.21 misdetects AVX-512 Xeons
 * as 'Prescott' (SSE3, ~7× slower, ../shared/compute-stack.md), so `OPENBLAS_CORETYPE` is set from the CPU flags
 * before the addon (which links it) is loaded, unless the user set it. OMP_WAIT_POLICY=PASSIVE likewise (below).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NativeAddon, registerNativeLoader } from './native-handle';

export type { NativeAddon } from './native-handle';

/** Where node-gyp puts the addon, relative to the package root. */
export const ADDON_PATH = 'native/build/Release/dkfac_native.node';

let loaded: NativeAddon | undefined;
let reason: string | undefined;
let coreNote: string | undefined;

/** The package root: the nearest folder above this file holding native/binding.gyp. */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'native', 'binding.gyp'))) return dir;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** The OpenBLAS core type for this CPU (Linux /proc/cpuinfo flags), or undefined to let OpenBLAS detect it. */
export function openblasCoreType(cpuinfo?: string): string | undefined {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(text)?.[1] ?? '').trim().split(/\s+/));
  if (flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl') && flags.has('avx512dq')) return 'SkylakeX';
  if (flags.has('avx2') && flags.has('fma')) return 'Haswell';
  return undefined;
}

/**
 * The addon, loaded once per thread (Node loads an N-API addon separately in each worker thread), or undefined
 * when it is unavailable. `DKFAC_NATIVE=0` disables it.
 */
export function loadNative(): NativeAddon | undefined {
  if (loaded || reason) return loaded;
  if (process.env.DKFAC_NATIVE === '0') {
    reason = 'disabled by DKFAC_NATIVE=0';
    return undefined;
  }
  const root = packageRoot();
  const path = root ? join(root, ADDON_PATH) : undefined;
  if (!path || !existsSync(path)) {
    const log = root ? join(root, 'native', 'build.log') : undefined;
    const why = log && existsSync(log) ? firstErrorLine(readFileSync(log, 'utf8')) : undefined;
    reason = `the native addon was not built${why ? ` (${why}; see native/build.log)` : ''}: run \`npm run build:native\``;
    return undefined;
  }
  const best = openblasCoreType();
  const given = process.env.OPENBLAS_CORETYPE;
  if (!given) {
    if (best) process.env.OPENBLAS_CORETYPE = best;
  } else if (best && given.toLowerCase() !== best.toLowerCase()) {
    // the user's (or the platform's) choice wins, but a run says so: a sandbox seen here sets Haswell on an AVX-512
    // CPU, where SkylakeX's sgemm measured 1.8× faster (104 vs 181–196 GFLOP/s, one thread)
    coreNote = `OPENBLAS_CORETYPE=${given} from the environment; this CPU's best is ${best}: unset it for faster BLAS`;
  }
  // OpenMP threads that wait at a barrier sleep instead of spinning (libgomp reads this when it loads, with the
  // addon): spinning threads took the cores the others needed whenever anything else ran on the machine, measured
  // 3–8× slower steps under load (README "Engines"); OMP_WAIT_POLICY set by the user wins
  if (!process.env.OMP_WAIT_POLICY) process.env.OMP_WAIT_POLICY = 'PASSIVE';
  try {
    loaded = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    reason = `the native addon failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  return loaded;
}

/**
 * Where OPENBLAS_CORETYPE came from the environment and names another kernel family than this CPU's best (the one
 * dkfac would have set), a one-line note saying so; undefined otherwise.
 */
export function openblasCoreNote(): string | undefined {
  return coreNote;
}

/** Why `loadNative()` returned undefined (one line), or undefined when it loaded. */
export function nativeUnavailableReason(): string | undefined {
  loadNative();
  return reason;
}

/** The most telling line of a failed build log (the first compiler/linker error or missing package). */
export function firstErrorLine(log: string): string | undefined {
  const lines = log.split('\n').map((l) => l.trim());
  const pick =
    lines.find((l) => /fatal error|cannot find -l|No such file/.test(l)) ??
    lines.find((l) => /\berror\b/i.test(l) && !/gyp ERR! (stack|System|command|cwd|node -v|node-gyp -v|not ok)/.test(l));
  return pick?.slice(0, 200);
}

// Code shared with the browser (src/kfac, src/linalg) reaches the addon through the handle, which has no Node imports.
registerNativeLoader(() => ({ addon: loadNative(), reason: nativeUnavailableReason() }));
