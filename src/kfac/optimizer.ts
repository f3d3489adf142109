/**
 * The K-FAC optimizer as the paper runs it (sections 3, 5, 6): statistics from targets sampled from the model,
 * moving averages of the Kronecker factors, damped inverses refreshed every T steps (the asynchronous inverse workers of
 * src/distributed replace this refresh with stale inverses), the preconditioned direction v = (F̂ + λI)⁻¹ g, the KL
 * step size η = min(η_max, sqrt(c_k / Σ⟨v, g⟩)) with c_k decayed every half epoch, momentum 0.9 and Polyak averaging
 * (the last two are the trainer's, shared with SGD).
 *
 * It plugs into the training loop as an OptimizerParts: `observe` (statistics and inverse refresh) before the
 * gradient, `preconditioner`, `stepSize`, `rowFields` (inverse staleness). NaN or Inf in a block's statistics or
 * inverse never reaches the parameters: the block keeps its previous inverses and its damping is raised ('skip'), or
 * the run stops with an error naming the layer ('stop').
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { z } from 'zod';
import type { Model } from '../nn/model';
import type { OptimizerParts } from '../train/trainer';
import { decayInterval, DecaySchedule, type Grads, innerProduct, type Preconditioned, type StepSize } from '../train/update';
import { type BlockInverses, type BlockSnapshot, computeInverses, type DampingMode, type FisherBlock, releaseStats } from './blocks';
import { KfacError } from './errors';
import { registerBlocks } from './registry';
import { computeStatistics, type StatisticsOptions, type StatisticsResult } from './statistics';

export const KfacConfig = z.strictObject({
  kind: z.literal('kfac'),
  /** λ, factored Tikhonov damping (the Nov-2016 submission: 1e-3 on ImageNet) */
  damping: z.number().positive().max(1e3).default(1e-3),
  /** 'factored': the paper's π rule; 'eigen': exact damping in the Kronecker eigenbasis */
  dampingMode: z.enum(['factored', 'eigen']).default('factored'),
  /** conv factors: KFC (CIFAR) or the cheap Appendix-A factors (every ImageNet run) */
  conv: z.enum(['kfc', 'cheap']).default('kfc'),
  /** dense layers on flattened maps that use the doubly-factored approximation (paper section 4) */
  doublyFactored: z
    .strictObject({ names: z.array(z.string()).optional(), minInputUnits: z.number().int().positive().optional() })
    .optional(),
  /** ε of the factor moving averages (zero-debiased) */
  emaDecay: z.number().min(0).lt(1).default(0.95),
  /** 'sampled': targets drawn from the model (the Fisher, the paper's choice); 'empirical': the true labels */
  fisher: z.enum(['sampled', 'empirical']).default('sampled'),
  /** statistics every this many steps */
  statsEvery: z.number().int().positive().default(1),
  /** examples of the batch used for statistics (default: the whole batch) */
  statsBatch: z.number().int().positive().optional(),
  /**
   * Statistics of the whole batch are taken from the gradient's own forward pass (one forward, a second backward
   * pass for the sampled targets: src/kfac/statistics.ts gradientsAndStatistics), which gives the same numbers as a
   * separate statistics pass without its forward. false: always a separate pass.
   */
  sharedForward: z.boolean().default(true),
  /** inverses recomputed every T steps (the paper's synchronous CIFAR baseline: 20) */
  inverseEvery: z.number().int().positive().default(20),
  /** step size: the KL rule (paper section 5) or an exponentially decayed learning rate (the Figure 8 baseline) */
  stepSize: z
    .discriminatedUnion('rule', [
      z.strictObject({
        rule: z.literal('kl'),
        c0: z.number().positive().default(0.01),
        etaMax: z.number().positive().default(1),
        decay: DecaySchedule.default({ rate: 0.96, every: 'half-epoch' }),
      }),
      z.strictObject({
        rule: z.literal('lr'),
        lr: z.number().positive(),
        decay: DecaySchedule.default({ rate: 0.96, every: 'half-epoch' }),
      }),
    ])
    .default({ rule: 'kl', c0: 0.01, etaMax: 1, decay: { rate: 0.96, every: 'half-epoch' } }),
  momentum: z.number().min(0).lt(1).default(0.9),
  weightDecay: z.number().min(0).default(0),
  /** what a non-finite statistic or inverse does: skip that block's refresh with raised damping, or stop */
  onNonFinite: z.enum(['skip', 'stop']).default('skip'),
  /** factor by which a failing block's damping is raised under 'skip' */
  dampingBoost: z.number().gt(1).default(10),
});
export type KfacConfig = z.infer<typeof KfacConfig>;

/** One event of the failure policy, kept for the sidecar and the tests. */
export interface KfacEvent {
  step: number;
  layer: string;
  what: string;
  action: 'skipped statistics' | 'kept previous inverses' | 'raised damping';
  damping: number;
  message: string;
}

export class KfacStopError extends Error {
  constructor(readonly cause: KfacError) {
    super(`${cause.message} (onNonFinite: 'stop')`);
    this.name = 'KfacStopError';
  }
}

/**
 * The K-FAC state machine. Holds the Fisher blocks, their current inverses and the step they were computed from.
 * The inverse refresh is pluggable (`refreshInverses`), so the distributed runtime can install inverses computed
 * asynchronously by worker threads through `installInverses`.
 *
 * In a custom loop (kfac-pytorch style: two calls added to the loop), with `model` from `fromLayersModel`:
 * @example
 * ```ts
 * const opt = new KfacOptimizer(model, kfac());
 * for (let step = 0; step < steps; step++) {
 *   opt.observe(x, y, step);                        // curvature statistics; inverses every inverseEvery steps
 *   const { grads } = tf.variableGrads(() => crossEntropy(model.forward(x, { training: true }).logits, y));
 *   const named = new Map([...model.params].map(([k, v]) => [k, grads[v.name]]));
 *   const { v, vDotG } = opt.precondition(named);   // v = (F̂ + λI)⁻¹ g per block
 *   const eta = Math.min(1, Math.sqrt(0.001 / vDotG!)); // the KL step rule
 *   tf.tidy(() => { for (const [k, p] of model.params) p.assign(p.sub(v.get(k)!.mul(eta))); });
 *   tf.dispose([...Object.values(grads), ...v.values()]);
 * }
 * writeBackWeights(model, lm);
 * ```
 */
export class KfacOptimizer {
  readonly blocks: FisherBlock[];
  readonly inverses = new Map<string, BlockInverses>();
  /** damping per block (raised by the failure policy) */
  readonly damping = new Map<string, number>();
  /** step whose factors the inverses in use were computed from */
  inverseStep = -1;
  readonly events: KfacEvent[] = [];
  private rng: seedrandom.StatefulPRNG<seedrandom.State.Arc4>;
  private step = 0;

  constructor(
    readonly model: Model,
    readonly cfg: KfacConfig,
    readonly bnChunk?: number,
    seed = 0,
  ) {
    this.blocks = registerBlocks(model.layers, { conv: cfg.conv, doublyFactored: cfg.doublyFactored, decay: cfg.emaDecay });
    for (const b of this.blocks) this.damping.set(b.name, cfg.damping);
    this.rng = seedrandom(`kfac:${seed}`, { state: true });
  }

  private fail(e: KfacError, action: KfacEvent['action']): void {
    if (this.cfg.onNonFinite === 'stop') throw new KfacStopError(e);
    const d = this.damping.get(e.layer) ?? this.cfg.damping;
    const raised = d * this.cfg.dampingBoost;
    this.damping.set(e.layer, raised);
    this.events.push({ step: this.step, layer: e.layer, what: e.what, action, damping: raised, message: e.message });
  }

  /** A batch's statistics folded into every block's moving averages; their matrices then go back to the pool. */
  private fold(r: StatisticsResult): void {
    for (const b of this.blocks) b.accumulate(r.stats.get(b.name) as never);
    releaseStats(r.stats.values());
  }

  /** Statistics of a batch folded into every block's moving averages (targets sampled from the model). */
  accumulateStatistics(x: tf.Tensor4D, labels: tf.Tensor1D | undefined): void {
    const M = this.cfg.statsBatch ? Math.min(this.cfg.statsBatch, x.shape[0]) : x.shape[0];
    const xs = M < x.shape[0] ? tf.slice(x, 0, M) : x;
    const ys = labels && M < labels.shape[0] ? tf.slice(labels, 0, M) : labels;
    try {
      const bnChunk = this.bnChunk && M % this.bnChunk === 0 ? this.bnChunk : undefined;
      let r: ReturnType<typeof computeStatistics>;
      try {
        r = computeStatistics(this.model, xs, {
          blocks: this.blocks,
          sampled: this.cfg.fisher === 'sampled' ? true : 'empirical',
          labels: ys,
          rng: this.rng,
          bnChunk,
        });
      } catch (e) {
        if (e instanceof KfacError) {
          // statistics of the whole batch are unusable: skip this batch, raise the damping of the layer named
          this.fail(e, 'skipped statistics');
          return;
        }
        throw e;
      }
      this.fold(r);
    } finally {
      if (xs !== x) xs.dispose();
      if (ys && ys !== labels) ys.dispose();
    }
  }

  /** Debiased factor snapshots of every block (what an inverse worker takes). */
  snapshot(): BlockSnapshot[] {
    return this.blocks.filter((b) => b.steps > 0).map((b) => b.factors());
  }

  /** Computes every block's damped inverses from the current factors, in this thread. */
  refreshInverses(mode: DampingMode = this.cfg.dampingMode): void {
    const fresh = new Map<string, BlockInverses>();
    for (const s of this.snapshot()) {
      const inv = this.invertWithPolicy(s, mode);
      if (inv) fresh.set(s.name, inv);
    }
    this.installInverses(fresh, this.step);
  }

  /** Inverts one block; under 'skip', a failure raises the damping and retries (a few times) before keeping the old. */
  invertWithPolicy(s: BlockSnapshot, mode: DampingMode): BlockInverses | null {
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        return computeInverses(s, this.damping.get(s.name)!, mode);
      } catch (e) {
        if (!(e instanceof KfacError)) throw e;
        this.fail(e, attempt < 3 ? 'raised damping' : 'kept previous inverses');
      }
    }
    return null;
  }

  /** Installs inverses (computed here or by an inverse worker) as the ones in use, computed from `fromStep`. */
  installInverses(inv: Map<string, BlockInverses>, fromStep: number): void {
    for (const [k, v] of inv) this.inverses.set(k, v);
    this.inverseStep = fromStep;
  }

  /** v = (F̂ + λI)⁻¹ g block by block; parameters of blocks without inverses yet pass through unchanged (SGD). */
  precondition(grads: Grads): Preconditioned {
    const v: Grads = new Map();
    for (const b of this.blocks) {
      const inv = this.inverses.get(b.name);
      if (!inv) continue;
      for (const [k, t] of b.precondition(grads, inv)) v.set(k, t);
    }
    for (const [k, g] of grads) if (!v.has(k)) v.set(k, g.clone());
    const vDotG = innerProduct(v, grads);
    if (!Number.isFinite(vDotG)) {
      tf.dispose([...v.values()]);
      const e = new KfacError('all', 'non-finite-inverse', `Σ⟨v, g⟩ is ${vDotG}: the update would not be finite`);
      throw this.cfg.onNonFinite === 'stop' ? new KfacStopError(e) : e;
    }
    return { v, vDotG };
  }

  private jointStep = -1;

  /**
   * Whether step `step`'s statistics (batch of M) can come from the gradient's forward pass, and if so how: the
   * options for `gradientsAndStatistics` and `fold` for its result. The trainer then calls `observe` after folding.
   */
  jointStatistics(step: number, M: number): (StatisticsOptions & { fold(r: StatisticsResult | KfacError): void }) | undefined {
    if (!this.cfg.sharedForward || step % this.cfg.statsEvery !== 0) return undefined;
    if (this.cfg.statsBatch !== undefined && this.cfg.statsBatch < M) return undefined;
    // the separate pass normalises over bnChunk only when it divides the batch: keep that case separate
    if (this.bnChunk && M % this.bnChunk !== 0) return undefined;
    return {
      blocks: this.blocks,
      sampled: this.cfg.fisher === 'sampled' ? true : 'empirical',
      rng: this.rng,
      bnChunk: this.bnChunk,
      fold: (r) => {
        this.step = step;
        this.jointStep = step;
        if (r instanceof KfacError) this.fail(r, 'skipped statistics');
        else this.fold(r);
      },
    };
  }

  /** The trainer's hook: statistics every statsEvery steps, inverses every inverseEvery steps (and at the start). */
  observe(x: tf.Tensor4D, labels: tf.Tensor1D | undefined, step: number): void {
    this.step = step;
    if (step % this.cfg.statsEvery === 0 && this.jointStep !== step) this.accumulateStatistics(x, labels);
    if (this.inverseStep < 0 || step % this.cfg.inverseEvery === 0) this.refreshInverses();
  }

  /** Steps since the factors behind the inverses in use were read. */
  staleness(step = this.step): number {
    return this.inverseStep < 0 ? Number.NaN : step - this.inverseStep;
  }

  /** Checkpoint state: factor averages, inverses, damping, counters and the sampling RNG (structured-cloneable). */
  state(): KfacState {
    return {
      blocks: this.blocks.map((b) => b.state()),
      inverses: new Map(this.inverses),
      damping: new Map(this.damping),
      inverseStep: this.inverseStep,
      step: this.step,
      events: this.events.slice(),
      rng: this.rng.state(),
    };
  }

  restore(s: KfacState): void {
    if (s.blocks.length !== this.blocks.length) throw new Error(`checkpoint has ${s.blocks.length} K-FAC blocks, the model ${this.blocks.length}`);
    this.blocks.forEach((b, i) => b.restore(s.blocks[i] as never));
    this.inverses.clear();
    for (const [k, v] of s.inverses) this.inverses.set(k, v);
    for (const [k, v] of s.damping) this.damping.set(k, v);
    this.inverseStep = s.inverseStep;
    this.step = s.step;
    this.events.splice(0, this.events.length, ...s.events);
    this.rng = seedrandom('', { state: s.rng as seedrandom.State.Arc4 });
  }

  dispose(): void {
    for (const b of this.blocks) b.dispose();
  }
}

export interface KfacState {
  blocks: unknown[];
  inverses: Map<string, BlockInverses>;
  damping: Map<string, number>;
  inverseStep: number;
  step: number;
  events: KfacEvent[];
  rng: object;
}

/** The OptimizerParts the training loop uses for a `kind: 'kfac'` configuration. */
export function kfacParts(cfg: KfacConfig, model: Model, opts: { epochSize: number; batchSize: number; bnChunk?: number; seed?: number }): OptimizerParts & { kfac: KfacOptimizer } {
  const kfac = new KfacOptimizer(model, cfg, opts.bnChunk, opts.seed);
  const interval = decayInterval(cfg.stepSize.decay, opts.epochSize, opts.batchSize);
  const stepSize: StepSize =
    cfg.stepSize.rule === 'kl'
      ? { kind: 'kl', c0: cfg.stepSize.c0, etaMax: cfg.stepSize.etaMax, decay: cfg.stepSize.decay, interval }
      : { kind: 'lr', lr: cfg.stepSize.lr, decay: cfg.stepSize.decay, interval };
  let stepNow = 0;
  return {
    kfac,
    preconditioner: {
      precondition: (g, step) => {
        stepNow = step;
        const r = kfac.precondition(g);
        // the learning-rate rule ignores vDotG; keep it only for the KL rule
        return stepSize.kind === 'kl' ? r : { v: r.v };
      },
    },
    stepSize,
    momentum: cfg.momentum,
    weightDecay: cfg.weightDecay,
    observe: (_model, x, step, labels) => kfac.observe(x, labels, step),
    jointStatistics: (step, M) => kfac.jointStatistics(step, M),
    rowFields: () => ({ inverse_staleness: kfac.staleness(stepNow) }),
    summary: () => ({ kfacEvents: kfac.events.length, blocks: kfac.blocks.length }),
    state: () => ({ kfac: kfac.state(), stepNow }),
    restore: (s) => {
      const st = s as { kfac: KfacState; stepNow: number };
      kfac.restore(st.kfac);
      stepNow = st.stepNow;
    },
    dispose: () => kfac.dispose(),
  };
}
