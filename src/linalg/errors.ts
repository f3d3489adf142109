/**
 * Errors raised by the dense linear algebra in `src/linalg/`.
 *
 * Every routine either returns a result that is correct to working precision for its input or throws a
 * `LinalgError`; none returns a silently wrong answer (for instance the "inverse" of an indefinite matrix).
 */

/** Why a linear-algebra routine refused its input. */
export type LinalgErrorKind =
  /** An input entry (or an intermediate that overflowed) is NaN or ±Infinity; `index` is the first flat index. */
  | 'non-finite'
  /** A Cholesky pivot was ≤ 0 (or numerically zero); `index` is the pivot's row, `value` the pivot. */
  | 'not-positive-definite'
  /** An iterative method (QL iteration) exceeded its iteration limit; `index` is the eigenvalue it worked on. */
  | 'no-convergence'
  /** Array lengths that do not match the stated dimensions. */
  | 'dimension-mismatch';

/** Error thrown by `src/linalg/`. `index`/`value` carry the offending position and number where that makes sense. */
export class LinalgError extends Error {
  readonly kind: LinalgErrorKind;
  /** Flat index (for 'non-finite'), pivot row (for 'not-positive-definite'), or -1 where not applicable. */
  readonly index: number;
  /** The offending value (NaN, ±Infinity, or the pivot), or NaN where not applicable. */
  readonly value: number;

  constructor(kind: LinalgErrorKind, message: string, index = -1, value = Number.NaN) {
    super(message);
    this.name = 'LinalgError';
    this.kind = kind;
    this.index = index;
    this.value = value;
  }
}

/** Throws 'dimension-mismatch' unless `a.length === expected`. */
export function checkLength(a: ArrayLike<number>, expected: number, what: string): void {
  if (a.length !== expected) {
    throw new LinalgError(
      'dimension-mismatch',
      `${what}: expected ${expected} entries, got ${a.length}`,
      -1,
      a.length,
    );
  }
}

/**
 * Throws 'non-finite' at the first NaN/±Infinity entry of `a` (flat index; for an n×n matrix row = ⌊index/n⌋).
 * `cols` is only used to word the message.
 */
export function checkFinite(a: ArrayLike<number>, what: string, cols = 0): void {
  const len = a.length;
  for (let i = 0; i < len; i++) {
    const x = a[i];
    // x - x is 0 for finite x and NaN for NaN/±Infinity: one comparison per entry.
    if (x - x !== 0) {
      const where = cols > 0 ? ` (row ${Math.floor(i / cols)}, col ${i % cols})` : '';
      throw new LinalgError('non-finite', `${what}: non-finite entry ${x} at index ${i}${where}`, i, x);
    }
  }
}
