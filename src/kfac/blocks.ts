/**
 * Fisher blocks: one class per curvature block kind, all with the same small life-cycle (kfac-jax style).
 *
 *   batchStatistics(input, ds)        a batch's factor statistics, on the backend (factors.ts)
 *   accumulate(stats)                 fold them into zero-debiased moving averages          [spec §1.4]
 *   factors()                         debiased snapshot: plain Float64Arrays + metadata (structured-cloneable,
 *                                     so an inverse worker thread can take it)
 *   computeInverses(snapshot, λ, mode)  PURE, CPU only, float64: the damped inverses        [P eq 3, §4.1, §3.1]
 *   precondition(grads, inverses)     v = (F̂ + λI)⁻¹ g on the backend (float32 matrix products)
 *
 * Kinds:
 *  - KroneckerBlock      dense, conv KFC (F̂ = |T|·A⊗G) or conv cheap App. A (F̂ = A⊗G); the weight and bias of a
 *                        layer form one [(in+1), out] matrix G_W, bias as the LAST row; v = Ainv·G_W·Ginv.
 *                        Vec convention: with vec = ROW-MAJOR flatten of the [(in+1), out] matrix,
 *                        vec(DW) = ā ⊗ g and F̂ = A ⊗ G, (A⊗G)·vec(X) = vec(A·X·G).
 *  - DoublyFactoredBlock dense layer on a flattened [H, W, C] map: F̂ = E[KKᵀ] ⊗ E[ΨΨᵀ] ⊗ E[DsDsᵀ] on the
 *                        row-major vec of the [T, C, out] weight; the bias gets its own full block E[DsDsᵀ].  [P §4]
 *  - ScaleShiftBlock     batch norm [γ; β]: one full 2C×2C block E[g gᵀ].                       [P §6.2.1, App. C]
 *
 * Damping modes: 'factored' (the paper's π-split factored Tikhonov damping, eq 3 / eqs 10–12) or 'eigen' (exact
 * damping in the Kronecker eigenbasis, KFC supp. eqs 33–38). 'eigen' applies to two-factor blocks; the three-factor
 * block always uses factored damping (as in P §4.1) and full blocks are always damped exactly.
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerInfo } from '../nn/layers';
import { LinalgError, spdInverse, symEig } from '../linalg';
import { type EmaState, ZeroDebiasedEma } from './ema';
import { assertFinite, KfacError } from './errors';
import {
  type ConvGeometry,
  convCheapFactors,
  convKfcFactors,
  denseFactors,
  doublyFactoredFactors,
  type DoublyFactoredStats,
  isKnownFinite,
  type KroneckerStats,
  noteFinite,
  releaseMoments,
  scaleShiftFactors,
  type ScaleShiftStats,
} from './factors';
import { addToDiagonal, factoredDampingTerms } from './pi';

export type DampingMode = 'factored' | 'eigen';
export type ConvApprox = 'kfc' | 'cheap';
export type Grads = Map<string, tf.Tensor>;

// -------------------------------------------------------------------------------------------------------------
// Snapshots and inverses: plain data

export interface KroneckerSnapshot {
  kind: 'kronecker';
  name: string;
  A: Float64Array;
  dA: number;
  G: Float64Array;
  dG: number;
  /** F̂ = scale · A⊗G */
  scale: number;
  /** batches folded into the averages */
  steps: number;
}

export interface DoublyFactoredSnapshot {
  kind: 'doubly-factored';
  name: string;
  K: Float64Array;
  dK: number;
  Psi: Float64Array;
  dPsi: number;
  D: Float64Array;
  dD: number;
  hasBias: boolean;
  steps: number;
}

export interface ScaleShiftSnapshot {
  kind: 'scale-shift';
  name: string;
  F: Float64Array;
  d: number;
  steps: number;
}

export type BlockSnapshot = KroneckerSnapshot | DoublyFactoredSnapshot | ScaleShiftSnapshot;

/** v = left · G_W · right (the 1/scale of conv KFC is folded into `right`). */
export interface KroneckerFactoredInverses {
  kind: 'kronecker';
  mode: 'factored';
  name: string;
  dA: number;
  dG: number;
  /** (A + π_A √(λ/s) I)⁻¹ */
  left: Float64Array;
  /** (G + √(λ/s)/π_A I)⁻¹ / s */
  right: Float64Array;
  /** [π_A, π_G] */
  pis: number[];
  damping: number;
}

/** v = Q_A [ (Q_Aᵀ G_W Q_G) ⊙ W ] Q_Gᵀ with W_ij = 1 / (s·a_i·g_j + λ). */
export interface KroneckerEigenInverses {
  kind: 'kronecker';
  mode: 'eigen';
  name: string;
  dA: number;
  dG: number;
  /** eigenvectors (columns) of A and G, row-major */
  QA: Float64Array;
  QG: Float64Array;
  /** dA × dG reciprocal damped eigenvalues of the block */
  weights: Float64Array;
  damping: number;
}

export type KroneckerInverses = KroneckerFactoredInverses | KroneckerEigenInverses;

export interface DoublyFactoredInverses {
  kind: 'doubly-factored';
  mode: 'factored';
  name: string;
  dK: number;
  dPsi: number;
  dD: number;
  /** (E[KKᵀ] + π_K λ^{1/3} I)⁻¹, (E[ΨΨᵀ] + π_Ψ λ^{1/3} I)⁻¹, (E[DsDsᵀ] + π_D λ^{1/3} I)⁻¹ */
  PK: Float64Array;
  PPsi: Float64Array;
  PD: Float64Array;
  /** (E[DsDsᵀ] + λI)⁻¹, the bias's full block; null without bias */
  biasInv: Float64Array | null;
  pis: number[];
  damping: number;
}

export interface ScaleShiftInverses {
  kind: 'scale-shift';
  mode: 'full';
  name: string;
  d: number;
  /** (F̂ + λI)⁻¹ */
  Finv: Float64Array;
  damping: number;
}

export type BlockInverses = KroneckerInverses | DoublyFactoredInverses | ScaleShiftInverses;

// -------------------------------------------------------------------------------------------------------------
// CPU helpers (float64)

/** (a + diag)⁻¹ via Cholesky; failures become KfacError(name, 'inverse'). */
function dampedInverse(name: string, label: string, a: Float64Array, n: number, diag: number): Float64Array {
  try {
    return spdInverse(addToDiagonal(a, n, diag), n, { inPlace: true });
  } catch (e) {
    if (e instanceof LinalgError) throw new KfacError(name, 'inverse', `${label}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** Symmetric eigendecomposition with eigenvalues clamped at 0 (the factors are PSD up to round-off). */
function psdEig(name: string, label: string, a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  let r: { values: Float64Array; vectors: Float64Array };
  try {
    r = symEig(a, n);
  } catch (e) {
    if (e instanceof LinalgError) throw new KfacError(name, 'inverse', `${label} eigendecomposition: ${e.message}`, { cause: e });
    throw e;
  }
  assertFinite(r.values, name, 'non-finite-inverse', `${label} eigenvalues`);
  assertFinite(r.vectors, name, 'non-finite-inverse', `${label} eigenvectors`);
  const values = Float64Array.from(r.values, (v) => Math.max(v, 0));
  return { values, vectors: r.vectors };
}

function checkDamping(damping: number): void {
  if (!(damping > 0 && Number.isFinite(damping))) throw new Error(`damping must be a positive finite number, got ${damping}`);
}

// -------------------------------------------------------------------------------------------------------------
// Backend helpers: uploaded inverses cached per block

/**
 * Holds the float32 tensors uploaded for the most recent inverses object handed to `precondition`, so inverses
 * (which change only when an inverse worker publishes) are uploaded once, not every step. `tf.keep` makes the cache
 * survive a caller's tf.tidy.
 */
class DeviceCache {
  private src: object | null = null;
  private ts: tf.Tensor[] = [];

  get(src: object, upload: () => tf.Tensor[]): tf.Tensor[] {
    if (this.src !== src) {
      this.dispose();
      this.ts = tf.tidy(upload).map((t) => tf.keep(t));
      this.src = src;
    }
    return this.ts;
  }

  dispose(): void {
    tf.dispose(this.ts);
    this.ts = [];
    this.src = null;
  }
}

/** A float32 [rows, cols] tensor from a float64 row-major matrix. */
function mat(a: Float64Array, shape: [number, number]): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from(a), shape);
}

function grad(grads: Grads, name: string, block: string): tf.Tensor {
  const g = grads.get(name);
  if (!g) throw new Error(`K-FAC block ${block}: no gradient for parameter ${name}`);
  return g;
}

/** A block's moving averages (checkpoint form). */
export interface BlockState {
  name: string;
  emas: EmaState[];
  /** the Kronecker block's F̂ = scale·A⊗G factor */
  scale?: number;
}

function restoreEmas(name: string, emas: ZeroDebiasedEma[], s: BlockState): void {
  if (s.name !== name || s.emas.length !== emas.length) throw new Error(`K-FAC block ${name}: cannot restore the state of ${s.name}`);
  emas.forEach((e, i) => e.load(s.emas[i]));
}

/** A batch's statistics arrays, each with what it is. */
function statsArrays(s: BlockStats): [Float64Array, string][] {
  return s.kind === 'kronecker'
    ? [
        [s.A, 'A factor'],
        [s.G, 'G factor'],
      ]
    : s.kind === 'doubly-factored'
      ? [
          [s.K, 'E[KKᵀ]'],
          [s.Psi, 'E[ΨΨᵀ]'],
          [s.D, 'E[DsDsᵀ]'],
        ]
      : [[s.F, 'scale/shift block']];
}

/** Throws KfacError(name, 'statistics') at the first non-finite entry of a batch's statistics. */
export function checkStatsFinite(name: string, s: BlockStats): void {
  for (const [a, label] of statsArrays(s)) {
    if (isKnownFinite(a)) continue;
    assertFinite(a, name, 'statistics', label);
    noteFinite(a);
  }
}

/**
 * A batch's statistics, once folded into every block, handed back for the next batch's moments (factors.ts
 * `releaseMoments`, which also forgets that they were found finite: a reused array holds a new batch).
 * Only for statistics nothing else holds (the optimizer's own batches, not a message's).
 */
export function releaseStats(stats: Iterable<BlockStats>): void {
  const arrays = [...stats].flatMap((s) => statsArrays(s).map(([a]) => a));
  releaseMoments(arrays);
}

// -------------------------------------------------------------------------------------------------------------
// Two-factor Kronecker block: dense, conv KFC, conv cheap

type DenseInfo = Extract<LayerInfo, { kind: 'dense' }>;
type ConvInfo = Extract<LayerInfo, { kind: 'conv2d' }>;

export class KroneckerBlock {
  readonly kind = 'kronecker' as const;
  readonly name: string;
  readonly variant: 'dense' | 'conv-kfc' | 'conv-cheap';
  /** parameter names: the weight, then the bias if any */
  readonly params: readonly string[];
  readonly weight: string;
  readonly bias?: string;
  /** the weight's shape ([in, out] or [kh, kw, Cin, Cout]) and its rows when flattened to [rows, out] */
  readonly weightShape: number[];
  readonly rows: number;
  readonly dA: number;
  readonly dG: number;
  private readonly geometry?: ConvGeometry;
  private readonly emaA: ZeroDebiasedEma;
  private readonly emaG: ZeroDebiasedEma;
  private scale = 1;
  private readonly cache = new DeviceCache();

  constructor(layer: DenseInfo | ConvInfo, opts: { conv?: ConvApprox; decay?: number } = {}) {
    this.name = layer.name;
    this.weight = layer.weight;
    this.bias = layer.bias;
    this.params = layer.bias ? [layer.weight, layer.bias] : [layer.weight];
    if (layer.kind === 'dense') {
      this.variant = 'dense';
      this.weightShape = [layer.inUnits, layer.outUnits];
      this.rows = layer.inUnits;
      this.dG = layer.outUnits;
    } else {
      this.variant = (opts.conv ?? 'kfc') === 'kfc' ? 'conv-kfc' : 'conv-cheap';
      const [kh, kw] = layer.kernel;
      this.weightShape = [kh, kw, layer.inChannels, layer.outChannels];
      this.rows = kh * kw * layer.inChannels;
      this.dG = layer.outChannels;
      this.geometry = { kernel: layer.kernel, strides: layer.strides, padding: layer.padding };
      if (this.variant === 'conv-kfc') this.scale = layer.outSize[0] * layer.outSize[1];
    }
    this.dA = this.rows + (layer.bias ? 1 : 0);
    this.emaA = new ZeroDebiasedEma(opts.decay);
    this.emaG = new ZeroDebiasedEma(opts.decay);
  }

  /** A batch's statistics from the layer's captured input and its probe gradient (of the batch-mean loss). */
  batchStatistics(input: tf.Tensor, ds: tf.Tensor): KroneckerStats {
    const bias = this.bias !== undefined;
    if (this.variant === 'dense') return denseFactors(input, ds, bias);
    if (this.variant === 'conv-kfc') return convKfcFactors(input as tf.Tensor4D, ds as tf.Tensor4D, this.geometry!, bias);
    return convCheapFactors(input as tf.Tensor4D, ds as tf.Tensor4D, this.geometry!, bias);
  }

  /** Folds a batch into the moving averages: F_k = ε F_{k−1} + (1 − ε) F̂. Throws KfacError on non-finite input. */
  accumulate(stats: KroneckerStats): void {
    if (stats.kind !== 'kronecker' || stats.dA !== this.dA || stats.dG !== this.dG) {
      throw new Error(`K-FAC block ${this.name}: statistics of the wrong shape (${stats.kind} ${'dA' in stats ? `${stats.dA}/${stats.dG}` : ''})`);
    }
    checkStatsFinite(this.name, stats);
    this.emaA.update(stats.A);
    this.emaG.update(stats.G);
    this.scale = stats.scale;
  }

  get steps(): number {
    return this.emaA.steps;
  }

  /** The moving averages, for checkpoints (structured-cloneable). */
  state(): BlockState {
    return { name: this.name, emas: [this.emaA.state(), this.emaG.state()], scale: this.scale };
  }

  restore(s: BlockState): void {
    restoreEmas(this.name, [this.emaA, this.emaG], s);
    this.scale = s.scale ?? this.scale;
  }

  /** The debiased factors. */
  factors(): KroneckerSnapshot {
    return {
      kind: 'kronecker',
      name: this.name,
      A: this.emaA.value(),
      dA: this.dA,
      G: this.emaG.value(),
      dG: this.dG,
      scale: this.scale,
      steps: this.steps,
    };
  }

  /**
   * (s·A⊗G + λI)⁻¹, CPU, float64. 'factored' [P eq 3 with the conv normalisation of the spec §1.3]:
   * (1/s)·(A + π√(λ/s) I)⁻¹ ⊗ (G + √(λ/s)/π I)⁻¹ with π = sqrt(n_A/n_G); 'eigen': the exact inverse in the
   * Kronecker eigenbasis, weights 1/(s·a_i·g_j + λ).
   */
  static computeInverses(s: KroneckerSnapshot, damping: number, mode: DampingMode = 'factored'): KroneckerInverses {
    checkDamping(damping);
    if (mode === 'eigen') {
      const ea = psdEig(s.name, 'A factor', s.A, s.dA);
      const eg = psdEig(s.name, 'G factor', s.G, s.dG);
      const weights = new Float64Array(s.dA * s.dG);
      for (let i = 0; i < s.dA; i++) {
        for (let j = 0; j < s.dG; j++) weights[i * s.dG + j] = 1 / (s.scale * ea.values[i] * eg.values[j] + damping);
      }
      return { kind: 'kronecker', mode: 'eigen', name: s.name, dA: s.dA, dG: s.dG, QA: ea.vectors, QG: eg.vectors, weights, damping };
    }
    const lam = damping / s.scale;
    const { pis, terms } = factoredDampingTerms(
      [
        { data: s.A, n: s.dA },
        { data: s.G, n: s.dG },
      ],
      lam,
    );
    const left = dampedInverse(s.name, 'damped A factor', s.A, s.dA, terms[0]);
    const right = dampedInverse(s.name, 'damped G factor', s.G, s.dG, terms[1]);
    if (s.scale !== 1) for (let i = 0; i < right.length; i++) right[i] /= s.scale;
    return { kind: 'kronecker', mode: 'factored', name: s.name, dA: s.dA, dG: s.dG, left, right, pis, damping };
  }

  /** v = (F̂ + λI)⁻¹ g for this layer's weight (and bias), on the backend. Returns new tensors by parameter name. */
  precondition(grads: Grads, inv: BlockInverses): Grads {
    if (inv.kind !== 'kronecker' || inv.dA !== this.dA || inv.dG !== this.dG) {
      throw new Error(`K-FAC block ${this.name}: inverses of the wrong kind or shape`);
    }
    const { dA, dG } = this;
    const mats = this.cache.get(inv, () =>
      inv.mode === 'factored'
        ? [mat(inv.left, [dA, dA]), mat(inv.right, [dG, dG])]
        : [mat(inv.QA, [dA, dA]), mat(inv.QG, [dG, dG]), mat(inv.weights, [dA, dG])],
    );
    const out = tf.tidy(() => {
      let gw = tf.reshape(grad(grads, this.weight, this.name), [this.rows, dG]) as tf.Tensor2D;
      if (this.bias) gw = tf.concat([gw, tf.reshape(grad(grads, this.bias, this.name), [1, dG])], 0);
      let v: tf.Tensor2D;
      if (inv.mode === 'factored') {
        v = tf.matMul(tf.matMul(mats[0] as tf.Tensor2D, gw), mats[1] as tf.Tensor2D);
      } else {
        const [qa, qg, w] = mats as tf.Tensor2D[];
        const rotated = tf.matMul(tf.matMul(qa, gw, true, false), qg);
        v = tf.matMul(tf.matMul(qa, tf.mul(rotated, w) as tf.Tensor2D), qg, false, true);
      }
      const res: tf.Tensor[] = [tf.reshape(this.bias ? tf.slice(v, [0, 0], [this.rows, dG]) : v, this.weightShape)];
      if (this.bias) res.push(tf.reshape(tf.slice(v, [this.rows, 0], [1, dG]), [dG]));
      return res;
    });
    const m: Grads = new Map([[this.weight, out[0]]]);
    if (this.bias) m.set(this.bias, out[1]);
    return m;
  }

  /** Frees the cached uploaded inverses. */
  dispose(): void {
    this.cache.dispose();
  }
}

// -------------------------------------------------------------------------------------------------------------
// Three-factor doubly-factored block

export class DoublyFactoredBlock {
  readonly kind = 'doubly-factored' as const;
  readonly name: string;
  readonly params: readonly string[];
  readonly weight: string;
  readonly bias?: string;
  readonly inputShape: number[];
  /** T = H·W spatial positions, C channels, O outputs: the weight is [T·C, O] ≡ [T, C, O] */
  readonly T: number;
  readonly C: number;
  readonly O: number;
  private readonly emas: [ZeroDebiasedEma, ZeroDebiasedEma, ZeroDebiasedEma];
  private readonly cache = new DeviceCache();

  constructor(layer: DenseInfo, opts: { decay?: number } = {}) {
    if (layer.inputShape.length !== 3) {
      throw new Error(`doubly-factored block ${layer.name}: the input must be a flattened [H, W, C] map, got [${layer.inputShape}]`);
    }
    this.name = layer.name;
    this.weight = layer.weight;
    this.bias = layer.bias;
    this.params = layer.bias ? [layer.weight, layer.bias] : [layer.weight];
    this.inputShape = [...layer.inputShape];
    this.T = layer.inputShape[0] * layer.inputShape[1];
    this.C = layer.inputShape[2];
    this.O = layer.outUnits;
    this.emas = [new ZeroDebiasedEma(opts.decay), new ZeroDebiasedEma(opts.decay), new ZeroDebiasedEma(opts.decay)];
  }

  /** A batch's E[KKᵀ], E[ΨΨᵀ], E[DsDsᵀ] [P eqs 5–8]; per-example SVD failures become KfacError 'statistics'. */
  batchStatistics(input: tf.Tensor, ds: tf.Tensor): DoublyFactoredStats {
    try {
      return doublyFactoredFactors(input, ds, this.inputShape);
    } catch (e) {
      if (e instanceof LinalgError) throw new KfacError(this.name, 'statistics', `per-example SVD: ${e.message}`, { cause: e });
      throw e;
    }
  }

  accumulate(stats: DoublyFactoredStats): void {
    if (stats.kind !== 'doubly-factored' || stats.dK !== this.T || stats.dPsi !== this.C || stats.dD !== this.O) {
      throw new Error(`K-FAC block ${this.name}: statistics of the wrong kind or shape`);
    }
    checkStatsFinite(this.name, stats);
    this.emas[0].update(stats.K);
    this.emas[1].update(stats.Psi);
    this.emas[2].update(stats.D);
  }

  get steps(): number {
    return this.emas[0].steps;
  }

  state(): BlockState {
    return { name: this.name, emas: this.emas.map((e) => e.state()) };
  }

  restore(s: BlockState): void {
    restoreEmas(this.name, this.emas, s);
  }

  factors(): DoublyFactoredSnapshot {
    return {
      kind: 'doubly-factored',
      name: this.name,
      K: this.emas[0].value(),
      dK: this.T,
      Psi: this.emas[1].value(),
      dPsi: this.C,
      D: this.emas[2].value(),
      dD: this.O,
      hasBias: this.bias !== undefined,
      steps: this.steps,
    };
  }

  /**
   * Three-factor factored Tikhonov damping [P §4.1 eqs 10–12]: each factor gets π_i λ^{1/3} I, π_i = n_i/(Π n_j)^{1/3};
   * the bias's full block E[DsDsᵀ] gets λI. `mode` is accepted for a uniform call and ignored (always factored).
   */
  static computeInverses(s: DoublyFactoredSnapshot, damping: number, _mode: DampingMode = 'factored'): DoublyFactoredInverses {
    checkDamping(damping);
    const { pis, terms } = factoredDampingTerms(
      [
        { data: s.K, n: s.dK },
        { data: s.Psi, n: s.dPsi },
        { data: s.D, n: s.dD },
      ],
      damping,
    );
    return {
      kind: 'doubly-factored',
      mode: 'factored',
      name: s.name,
      dK: s.dK,
      dPsi: s.dPsi,
      dD: s.dD,
      PK: dampedInverse(s.name, 'damped E[KKᵀ]', s.K, s.dK, terms[0]),
      PPsi: dampedInverse(s.name, 'damped E[ΨΨᵀ]', s.Psi, s.dPsi, terms[1]),
      PD: dampedInverse(s.name, 'damped E[DsDsᵀ]', s.D, s.dD, terms[2]),
      biasInv: s.hasBias ? dampedInverse(s.name, 'bias block E[DsDsᵀ] + λI', s.D, s.dD, damping) : null,
      pis,
      damping,
    };
  }

  /**
   * The three-mode product [P eq 9] V[t,c,o] = Σ P_K[t,t'] P_Ψ[c,c'] P_D[o,o'] G[t',c',o'] on the [T, C, O] view
   * of the weight gradient, and v_b = (E[DsDsᵀ] + λI)⁻¹ g_b for the bias.
   */
  precondition(grads: Grads, inv: BlockInverses): Grads {
    if (inv.kind !== 'doubly-factored' || inv.dK !== this.T || inv.dPsi !== this.C || inv.dD !== this.O) {
      throw new Error(`K-FAC block ${this.name}: inverses of the wrong kind or shape`);
    }
    const { T, C, O } = this;
    const mats = this.cache.get(inv, () => {
      const ts = [mat(inv.PK, [T, T]), mat(inv.PPsi, [C, C]), mat(inv.PD, [O, O])];
      if (inv.biasInv) ts.push(mat(inv.biasInv, [O, O]));
      return ts;
    });
    const out = tf.tidy(() => {
      const [pk, ppsi, pd] = mats as tf.Tensor2D[];
      const g = tf.reshape(grad(grads, this.weight, this.name), [T * C, O]) as tf.Tensor2D;
      // mode 3 (outputs): right-multiply the [T·C, O] view
      let x = tf.matMul(g, pd);
      // mode 1 (space): left-multiply the [T, C·O] view
      x = tf.matMul(pk, tf.reshape(x, [T, C * O]) as tf.Tensor2D);
      // mode 2 (channels): bring C to the front, left-multiply the [C, T·O] view, and back
      const xc = tf.reshape(tf.transpose(tf.reshape(x, [T, C, O]), [1, 0, 2]), [C, T * O]) as tf.Tensor2D;
      const v = tf.transpose(tf.reshape(tf.matMul(ppsi, xc), [C, T, O]), [1, 0, 2]);
      const res: tf.Tensor[] = [tf.reshape(v, [T * C, O])];
      if (this.bias) {
        if (!mats[3]) throw new Error(`K-FAC block ${this.name}: inverses carry no bias block`);
        res.push(tf.reshape(tf.matMul(tf.reshape(grad(grads, this.bias, this.name), [1, O]) as tf.Tensor2D, mats[3] as tf.Tensor2D), [O]));
      }
      return res;
    });
    const m: Grads = new Map([[this.weight, out[0]]]);
    if (this.bias) m.set(this.bias, out[1]);
    return m;
  }

  dispose(): void {
    this.cache.dispose();
  }
}

// -------------------------------------------------------------------------------------------------------------
// Full block: batch-norm scale and shift

type BnInfo = Extract<LayerInfo, { kind: 'batchnorm' }>;

export class ScaleShiftBlock {
  readonly kind = 'scale-shift' as const;
  readonly name: string;
  /** [scale (γ), shift (β)] */
  readonly params: readonly string[];
  readonly scaleParam: string;
  readonly shiftParam: string;
  readonly C: number;
  private readonly ema: ZeroDebiasedEma;
  private readonly cache = new DeviceCache();

  constructor(layer: BnInfo, opts: { decay?: number } = {}) {
    this.name = layer.name;
    this.scaleParam = layer.scale;
    this.shiftParam = layer.shift;
    this.params = [layer.scale, layer.shift];
    this.C = layer.channels;
    this.ema = new ZeroDebiasedEma(opts.decay);
  }

  /** F̂ = E_n[g gᵀ], g = [Σ_sp ds·x̂; Σ_sp ds] from the captured x̂ and the probe gradient. */
  batchStatistics(input: tf.Tensor, ds: tf.Tensor): ScaleShiftStats {
    return scaleShiftFactors(input, ds);
  }

  accumulate(stats: ScaleShiftStats): void {
    if (stats.kind !== 'scale-shift' || stats.d !== 2 * this.C) throw new Error(`K-FAC block ${this.name}: statistics of the wrong kind or shape`);
    checkStatsFinite(this.name, stats);
    this.ema.update(stats.F);
  }

  get steps(): number {
    return this.ema.steps;
  }

  state(): BlockState {
    return { name: this.name, emas: [this.ema.state()] };
  }

  restore(s: BlockState): void {
    restoreEmas(this.name, [this.ema], s);
  }

  factors(): ScaleShiftSnapshot {
    return { kind: 'scale-shift', name: this.name, F: this.ema.value(), d: 2 * this.C, steps: this.steps };
  }

  /** (F̂ + λI)⁻¹ exactly (the block is only 2C × 2C). `mode` is ignored. */
  static computeInverses(s: ScaleShiftSnapshot, damping: number, _mode: DampingMode = 'factored'): ScaleShiftInverses {
    checkDamping(damping);
    return { kind: 'scale-shift', mode: 'full', name: s.name, d: s.d, Finv: dampedInverse(s.name, 'F̂ + λI', s.F, s.d, damping), damping };
  }

  precondition(grads: Grads, inv: BlockInverses): Grads {
    if (inv.kind !== 'scale-shift' || inv.d !== 2 * this.C) throw new Error(`K-FAC block ${this.name}: inverses of the wrong kind or shape`);
    const C = this.C;
    const [finv] = this.cache.get(inv, () => [mat(inv.Finv, [2 * C, 2 * C])]);
    const out = tf.tidy(() => {
      const g = tf.concat([tf.reshape(grad(grads, this.scaleParam, this.name), [1, C]), tf.reshape(grad(grads, this.shiftParam, this.name), [1, C])], 1);
      const v = tf.matMul(g as tf.Tensor2D, finv as tf.Tensor2D);
      return [tf.reshape(tf.slice(v, [0, 0], [1, C]), [C]), tf.reshape(tf.slice(v, [0, C], [1, C]), [C])];
    });
    return new Map([
      [this.scaleParam, out[0]],
      [this.shiftParam, out[1]],
    ]);
  }

  dispose(): void {
    this.cache.dispose();
  }
}

// -------------------------------------------------------------------------------------------------------------

export type FisherBlock = KroneckerBlock | DoublyFactoredBlock | ScaleShiftBlock;
export type BlockStats = KroneckerStats | DoublyFactoredStats | ScaleShiftStats;

/**
 * The pure inverse computation for any snapshot (what an inverse worker thread calls): CPU only, float64, no tfjs.
 * Throws KfacError(name, 'inverse' | 'non-finite-inverse') on failure.
 */
export function computeInverses(s: BlockSnapshot, damping: number, mode: DampingMode = 'factored'): BlockInverses {
  switch (s.kind) {
    case 'kronecker':
      return KroneckerBlock.computeInverses(s, damping, mode);
    case 'doubly-factored':
      return DoublyFactoredBlock.computeInverses(s, damping, mode);
    case 'scale-shift':
      return ScaleShiftBlock.computeInverses(s, damping, mode);
  }
}

/** Folds statistics into a block (type-checked dispatch on the block's kind). */
export function accumulate(block: FisherBlock, stats: BlockStats): void {
  if (block.kind !== stats.kind) throw new Error(`K-FAC block ${block.name}: got ${stats.kind} statistics for a ${block.kind} block`);
  (block.accumulate as (s: BlockStats) => void)(stats);
}
