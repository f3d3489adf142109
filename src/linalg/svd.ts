/**
 * Top singular triple (σ₁, u₁, v₁) of small dense matrices, A ≈ σ₁·u₁·v₁ᵀ, for the doubly-factored (rank-1 per
 * example) approximation of K-FAC. Power iteration on the smaller Gram matrix G (AᵀA when cols ≤ rows, else AAᵀ),
 * formed once in float64, so each iteration costs d² with d = min(rows, cols); when the top eigen-gap is small
 * the iterated matrix is repeatedly squared (see `topPairAt`). Convergence test: ‖G·x − λ·x‖ ≤ tol·λ.
 *
 * Deterministic: the start vector is `init` if given (a guess for u or v, mapped to the iterated side), else the
 * Gram column of largest diagonal entry (usually already close to the top singular vector); in both cases a small
 * fixed pseudo-random part is added, so that it is never exactly orthogonal to the answer. The sign is normalised
 * so that the largest-magnitude entry of v is positive.
 */
import { checkFinite, checkLength, LinalgError } from './errors.js';
import { gemmNT } from './kernel.js';

/** Options of `topSingularPair(s)`. */
export interface TopSingularOptions {
  /** Maximum power steps (default 500; with the squarings below one step may stand for up to 2²⁰ plain ones). */
  iters?: number;
  /**
   * Stop when ‖G·x − λ·x‖ ≤ tol·λ for the Gram matrix G and unit x (default 1e-10). The singular value is then
   * accurate to about tol²·σ₁/gap relative, the vectors to about tol·λ₁/(λ₁ − λ₂).
   */
  tol?: number;
  /**
   * Start vector: a guess for v (length cols) or for u (length rows), e.g. the previous step's result. For the
   * batched variant: batch guesses stored contiguously (batch·cols or batch·rows). With rows = cols it is v.
   */
  init?: ArrayLike<number>;
}

/** One top singular triple with the iteration count and whether the tolerance was met. */
export interface SingularPair {
  sigma: number;
  /** Unit left singular vector (length rows). */
  u: Float64Array;
  /** Unit right singular vector (length cols). */
  v: Float64Array;
  iterations: number;
  converged: boolean;
}

/** Batched results: entry b's vectors are u[b·rows ..], v[b·cols ..]. */
export interface SingularPairs {
  sigma: Float64Array;
  u: Float64Array;
  v: Float64Array;
  iterations: Int32Array;
  converged: Uint8Array;
}

type Mat = Float64Array | Float32Array;

/** Workspace shared by the per-example calls of the batched variant. */
interface Work {
  /** The matrix as d×o float64 X with G = X·Xᵀ (X = A if rows < cols, else X = Aᵀ). */
  xm: Float64Array;
  /** Gram matrix, then two buffers for its repeated squares. */
  g: Float64Array;
  p: Float64Array;
  q: Float64Array;
  x: Float64Array;
  y: Float64Array;
}

/** Squarings allowed: G^(2^20) separates any eigen-gap above about 1e-5 relative. */
const MAX_SQUARINGS = 20;

function makeWork(rows: number, cols: number): Work {
  const d = Math.min(rows, cols);
  return {
    xm: new Float64Array(rows * cols),
    g: new Float64Array(d * d),
    p: new Float64Array(d * d),
    q: new Float64Array(d * d),
    x: new Float64Array(d),
    y: new Float64Array(d),
  };
}

/** y = M·x for a d×d matrix M (row-major). */
function symMatVec(m: Float64Array, x: Float64Array, y: Float64Array, d: number): void {
  for (let i = 0; i < d; i++) {
    const mi = i * d;
    let s0 = 0;
    let s1 = 0;
    let j = 0;
    for (; j + 2 <= d; j += 2) {
      s0 += m[mi + j] * x[j];
      s1 += m[mi + j + 1] * x[j + 1];
    }
    if (j < d) s0 += m[mi + j] * x[j];
    y[i] = s0 + s1;
  }
}

/** dst ← src/‖src‖ over d entries; returns ‖src‖ (dst untouched when it is 0). */
function normalizeInto(src: Float64Array, dst: Float64Array, d: number): number {
  let s = 0;
  for (let i = 0; i < d; i++) s += src[i] * src[i];
  const nrm = Math.sqrt(s);
  if (nrm > 0) {
    const inv = 1 / nrm;
    for (let i = 0; i < d; i++) dst[i] = src[i] * inv;
  }
  return nrm;
}

/** Fixed pseudo-random numbers in [-1, 1) (xorshift32 from a constant seed). */
function fillPseudoRandom(x: Float64Array): void {
  let s = 0x9e3779b9 | 0;
  for (let i = 0; i < x.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    x[i] = (s >>> 0) / 2147483648 - 1;
  }
}

/**
 * Core: the matrix is data[off .. off + rows·cols). Writes u, v into the given outputs at uOff / vOff and returns
 * σ, the step count and convergence. `initVec`/`initOff`/`initLen` describe an optional start guess (initLen is
 * cols for a guess of v, rows for a guess of u).
 */
function topPairAt(
  data: Mat,
  off: number,
  rows: number,
  cols: number,
  iters: number,
  tol: number,
  initVec: ArrayLike<number> | undefined,
  initOff: number,
  initLen: number,
  w: Work,
  u: Float64Array,
  uOff: number,
  v: Float64Array,
  vOff: number,
): { sigma: number; iterations: number; converged: boolean } {
  // Iterate on the d-vector x of the smaller side: x is v (right = true, G = AᵀA) or u (G = AAᵀ).
  const right = cols <= rows;
  const d = right ? cols : rows;
  const o = right ? rows : cols;
  const { xm, g, x, y } = w;

  // X (d×o, float64): A itself or its transpose, so that G = X·Xᵀ and the partner vector is Xᵀ·x.
  if (right) {
    for (let r = 0; r < rows; r++) {
      const p = off + r * cols;
      for (let c = 0; c < cols; c++) xm[c * rows + r] = data[p + c];
    }
  } else {
    for (let i = 0; i < rows * cols; i++) xm[i] = data[off + i];
  }
  gemmNT(g, 0, d, xm, 0, o, xm, 0, o, d, d, o, 1, false);
  let jmax = 0;
  for (let i = 1; i < d; i++) if (g[i * d + i] > g[jmax * d + jmax]) jmax = i;

  // Zero matrix: σ = 0 with the first unit vectors.
  if (!(g[jmax * d + jmax] > 0)) {
    u.fill(0, uOff, uOff + rows);
    v.fill(0, vOff, vOff + cols);
    u[uOff] = 1;
    v[vOff] = 1;
    return { sigma: 0, iterations: 0, converged: true };
  }

  // Start vector x (unit, in the iteration's space): the guess, or the Gram column of largest diagonal entry; plus
  // a small fixed pseudo-random part so that x is never exactly orthogonal to the top eigenvector (a start that
  // is exactly another eigenvector would otherwise pass the residual test at once).
  let haveInit = false;
  if (initVec !== undefined) {
    x.fill(0, 0, d);
    if (initLen === (right ? cols : rows)) {
      // A guess for the iterated vector itself.
      for (let i = 0; i < d; i++) x[i] = initVec[initOff + i];
    } else {
      // A guess for the partner vector (length o): x = X·guess.
      for (let i = 0; i < d; i++) {
        const p = i * o;
        let s = 0;
        for (let j = 0; j < o; j++) s += xm[p + j] * initVec[initOff + j];
        x[i] = s;
      }
    }
    haveInit = normalize(x, d) > 0;
  }
  if (!haveInit) {
    const gcol = jmax * d;
    for (let i = 0; i < d; i++) x[i] = g[gcol + i];
    normalize(x, d);
  }
  fillPseudoRandom(y);
  if (normalize(y, d) > 0) {
    const eps = haveInit ? 1e-6 : 1e-3;
    for (let i = 0; i < d; i++) x[i] += eps * y[i];
    normalize(x, d);
  }

  // Power iteration with the residual test on G. Plain steps x ← G·x/‖G·x‖ first; every `squareEvery` steps
  // without convergence the iterated matrix P is squared (P ← P²/tr(P²), so P = G^(2^s) up to scale): one more
  // step then advances as far as 2^s plain ones, at the price of one d³ product. This keeps small eigen-gaps
  // (random matrices: λ₂/λ₁ close to 1) cheap while a dominant direction converges in a few plain steps.
  const squareEvery = Math.max(6, Math.ceil(d / 4));
  let p = g; // the iterated matrix, G itself until the first squaring
  let sinceSquare = 0;
  let squarings = 0;
  let it = 0;
  let converged = false;
  while (it < iters) {
    it++;
    if (p !== g) {
      // x ← P·x/‖P·x‖, then the test below on G.
      symMatVec(p, x, y, d);
      if (!(normalizeInto(y, x, d) > 0)) break;
    }
    symMatVec(g, x, y, d);
    let lambda = 0;
    for (let i = 0; i < d; i++) lambda += y[i] * x[i];
    let res = 0;
    for (let i = 0; i < d; i++) {
      const r = y[i] - lambda * x[i];
      res += r * r;
    }
    if (p === g && !(normalizeInto(y, x, d) > 0)) break; // x in G's null space: cannot happen from a start in its range
    if (Math.sqrt(res) <= tol * lambda) {
      converged = true;
      break;
    }
    if (++sinceSquare >= squareEvery && squarings < MAX_SQUARINGS) {
      const src = p;
      const dst = p === w.p ? w.q : w.p;
      gemmNT(dst, 0, d, src, 0, d, src, 0, d, d, d, d, 1, false);
      let tr = 0;
      for (let i = 0; i < d; i++) tr += dst[i * d + i];
      if (!(tr > 0)) break;
      const inv = 1 / tr;
      for (let i = 0; i < d * d; i++) dst[i] *= inv;
      p = dst;
      squarings++;
      sinceSquare = 0;
    }
  }

  // Partner vector Xᵀ·x (A·v or Aᵀ·u), σ its norm.
  const xs = right ? u : v;
  const xsOff = right ? uOff : vOff;
  xs.fill(0, xsOff, xsOff + o);
  for (let i = 0; i < d; i++) {
    const p = i * o;
    const xi = x[i];
    for (let j = 0; j < o; j++) xs[xsOff + j] += xm[p + j] * xi;
  }
  let nn = 0;
  for (let j = 0; j < o; j++) nn += xs[xsOff + j] * xs[xsOff + j];
  const sigma = Math.sqrt(nn);
  scaleOrUnit(xs, xsOff, o, sigma);
  const xd = right ? v : u;
  const xdOff = right ? vOff : uOff;
  for (let i = 0; i < d; i++) xd[xdOff + i] = x[i];

  // Sign: largest-magnitude entry of v positive.
  let jm = vOff;
  for (let j = vOff + 1; j < vOff + cols; j++) if (Math.abs(v[j]) > Math.abs(v[jm])) jm = j;
  if (v[jm] < 0) {
    for (let j = vOff; j < vOff + cols; j++) v[j] = -v[j];
    for (let i = uOff; i < uOff + rows; i++) u[i] = -u[i];
  }
  return { sigma, iterations: it, converged };
}

/** x ← x/‖x‖ over its first d entries; returns the old norm (0 leaves x unchanged). */
function normalize(x: Float64Array, d: number): number {
  let s = 0;
  for (let i = 0; i < d; i++) s += x[i] * x[i];
  const nrm = Math.sqrt(s);
  if (nrm > 0) {
    const inv = 1 / nrm;
    for (let i = 0; i < d; i++) x[i] *= inv;
  }
  return nrm;
}

/** z[off..off+len) /= nrm, or the first unit vector when nrm is 0. */
function scaleOrUnit(z: Float64Array, off: number, len: number, nrm: number): void {
  if (nrm > 0) {
    const inv = 1 / nrm;
    for (let i = off; i < off + len; i++) z[i] *= inv;
  } else {
    z.fill(0, off, off + len);
    z[off] = 1;
  }
}

function checkDims(rows: number, cols: number, what: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new LinalgError('dimension-mismatch', `${what}: bad shape ${rows}×${cols}`);
  }
}

/**
 * Top singular triple of a rows×cols matrix (row-major, float32 or float64): A·v = σ·u, Aᵀ·u = σ·v, σ maximal.
 * The zero matrix gives σ = 0 and u, v the first unit vectors. Throws LinalgError 'non-finite' (first bad index)
 * or 'dimension-mismatch'.
 */
export function topSingularPair(a: Mat, rows: number, cols: number, opts: TopSingularOptions = {}): SingularPair {
  checkDims(rows, cols, 'topSingularPair');
  checkLength(a, rows * cols, 'topSingularPair');
  checkFinite(a, 'topSingularPair', cols);
  const init = opts.init;
  if (init !== undefined && init.length !== rows && init.length !== cols) {
    throw new LinalgError(
      'dimension-mismatch',
      `topSingularPair: init has length ${init.length}, expected ${cols} (v) or ${rows} (u)`,
    );
  }
  const u = new Float64Array(rows);
  const v = new Float64Array(cols);
  const r = topPairAt(
    a, 0, rows, cols, opts.iters ?? 500, opts.tol ?? 1e-10,
    init, 0, init === undefined ? 0 : initLengthFor(init.length, rows, cols),
    makeWork(rows, cols), u, 0, v, 0,
  );
  return { sigma: r.sigma, u, v, iterations: r.iterations, converged: r.converged };
}

/** Normalises which side a guess of length len is for: cols (v) wins when rows = cols. */
function initLengthFor(len: number, rows: number, cols: number): number {
  return len === cols ? cols : rows;
}

/**
 * `topSingularPair` for `batch` matrices of shape rows×cols stored contiguously in `data` (example b at
 * data[b·rows·cols ..]), with one shared workspace. Results are stored contiguously too.
 */
export function topSingularPairs(
  data: Mat,
  batch: number,
  rows: number,
  cols: number,
  opts: TopSingularOptions = {},
): SingularPairs {
  checkDims(rows, cols, 'topSingularPairs');
  if (!Number.isInteger(batch) || batch < 0) {
    throw new LinalgError('dimension-mismatch', `topSingularPairs: bad batch ${batch}`);
  }
  checkLength(data, batch * rows * cols, 'topSingularPairs');
  checkFinite(data, 'topSingularPairs', cols);
  const init = opts.init;
  let initLen = 0;
  if (init !== undefined) {
    if (init.length === batch * cols) initLen = cols;
    else if (init.length === batch * rows) initLen = rows;
    else {
      throw new LinalgError(
        'dimension-mismatch',
        `topSingularPairs: init has length ${init.length}, expected ${batch * cols} (v) or ${batch * rows} (u)`,
      );
    }
  }
  const out: SingularPairs = {
    sigma: new Float64Array(batch),
    u: new Float64Array(batch * rows),
    v: new Float64Array(batch * cols),
    iterations: new Int32Array(batch),
    converged: new Uint8Array(batch),
  };
  const w = makeWork(rows, cols);
  const iters = opts.iters ?? 500;
  const tol = opts.tol ?? 1e-10;
  for (let b = 0; b < batch; b++) {
    const r = topPairAt(
      data, b * rows * cols, rows, cols, iters, tol, init, b * initLen, initLen, w, out.u, b * rows, out.v, b * cols,
    );
    out.sigma[b] = r.sigma;
    out.iterations[b] = r.iterations;
    out.converged[b] = r.converged ? 1 : 0;
  }
  return out;
}
