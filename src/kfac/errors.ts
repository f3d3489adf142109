/**
 * The one error K-FAC's curvature code raises on bad numbers. It names the block (layer) and what went wrong and
 * decides nothing: the optimizer chooses whether to skip the step with raised damping or to stop.
 */
import { nativeAddon } from '../backend/native-handle';

/** What was found non-finite or could not be inverted. */
export type KfacErrorWhat =
  /** a batch's factor statistics (or per-example quantities behind them) contain NaN/±Infinity */
  | 'statistics'
  /** a damped factor (or full block) could not be inverted: non-finite, not positive definite, no convergence */
  | 'inverse'
  /** an inverse (or eigendecomposition) came out with NaN/±Infinity entries */
  | 'non-finite-inverse';

export class KfacError extends Error {
  /** the block's (layer's) name */
  readonly layer: string;
  readonly what: KfacErrorWhat;

  constructor(layer: string, what: KfacErrorWhat, message: string, options?: { cause?: unknown }) {
    super(`K-FAC block ${layer}: ${message}`, options);
    this.name = 'KfacError';
    this.layer = layer;
    this.what = what;
  }
}

/** Index of the first NaN/±Infinity entry of `a`, or -1. */
export function firstNonFinite(a: ArrayLike<number>): number {
  if (a instanceof Float64Array && allFinite64(a)) return -1;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (x - x !== 0) return i;
  }
  return -1;
}

/**
 * Whether every entry is finite, branch-free on one monomorphic array type (the factor statistics are large and
 * checked every step): x·0 is 0 for finite x and NaN otherwise, so the sum stays 0 exactly when all are finite.
 */
function allFinite64(a: Float64Array): boolean {
  const addon = nativeAddon();
  if (addon) return addon.allFinite(a);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * 0;
  return s === 0;
}

/** Throws KfacError(layer, what) if `a` has a non-finite entry. */
export function assertFinite(a: ArrayLike<number>, layer: string, what: KfacErrorWhat, label: string): void {
  const i = firstNonFinite(a);
  if (i >= 0) throw new KfacError(layer, what, `${label} has a non-finite entry ${a[i]} at index ${i}`);
}
