/**
 * The parameter server (main thread) and the distributed training loop.
 *
 * One step k:
 *   1. compute phase: the N gradient workers each get the parameters θ_k and their shard of the batch and return the
 *      gradient of the mean loss on the shard; at the same time the stats worker gets θ_k and its own batch (from its
 *      own data stream) and returns per-block statistics with targets sampled from the model
 *   2. the statistics are folded into the factors' moving averages (block.accumulate)
 *   3. the inverse refresher is polled (it may install inverses computed asynchronously from an older snapshot)
 *   4. g = Σ_i (n_i / n) g_i; v = K-FAC preconditioning with the newest inverses; η by the KL rule; momentum; Polyak
 * Steps 4's pieces are the trainer's (OptimizerParts from kfacParts, Trainer's MomentumUpdater and PolyakAverage).
 * Each role runs on worker threads ('thread') or in this thread one after the other ('inline').
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import type { Batch } from '../../data-pipeline/types';
import { checkStatsFinite, type FisherBlock } from '../kfac/blocks';
import { KfacError } from '../kfac/errors';
import { type KfacConfig, KfacStopError, kfacParts } from '../kfac/optimizer';
import type { Model } from '../nn/model';
import type { RunConfig } from '../train/config';
import { type OptimizerParts, Trainer, TrainingDivergedError } from '../train/trainer';
import { type Grads, stepSize, type StepInfo } from '../train/update';
import { SimClock } from './clock';
import type { GradientResult, GradientTask, Inject, ReplicaSpec, StatsResult, StatsTask } from './messages';
import { type FaultEvent, RolePool } from './pool';
import { AsyncInverseRefresher } from './refresher';
import { gradientShard, statsBatch, wireParams } from './roles';

const Transport = z.enum(['inline', 'thread']);

export const DistConfig = z.strictObject({
  /** N: gradient workers (the paper's "gpu1" / "gpu4") */
  gradientWorkers: z.number().int().min(1).max(16).default(1),
  gradients: Transport.default('inline'),
  stats: Transport.default('inline'),
  inverses: Transport.default('thread'),
  /** M: inverse threads (the simulated clock schedules blocks on M threads; the pool has min(M, 2) real threads) */
  inverseThreads: z.number().int().min(1).max(64).default(1),
  inverse: z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('sync'), every: z.number().int().positive().default(20) }),
      z.strictObject({ kind: z.literal('async') }),
      z.strictObject({ kind: z.literal('lagged'), lag: z.number().int().min(0) }),
    ])
    .default({ kind: 'sync', every: 20 }),
  /** a worker that throws or dies: run its task again on a fresh worker, or stop the run cleanly */
  onFault: z.enum(['respawn', 'stop']).default('stop'),
  retries: z.number().int().min(0).max(10).default(2),
});
export type DistConfig = z.infer<typeof DistConfig>;
export type DistConfigInput = z.input<typeof DistConfig>;

/** Test-only injections, by role: applied to the task of the given step (and gradient worker). */
export interface Injections {
  gradient?: { step: number; worker: number; inject: Inject };
  stats?: { step: number; inject: Inject };
  /** applied to every inverse task (e.g. a delay that makes staleness appear) */
  inverseAll?: Inject;
  /** applied to the first inverse task submitted at or after this step */
  inverse?: { step: number; inject: Inject };
}

export interface DistStepResult {
  loss: number;
  errors: number;
  info: StepInfo;
  staleness: number;
  simSeconds: number;
}

/** Contiguous shards of n examples over N workers, sizes differing by at most one. */
export function shardRanges(n: number, N: number): [number, number][] {
  const out: [number, number][] = [];
  let a = 0;
  for (let i = 0; i < N; i++) {
    const m = Math.floor(n / N) + (i < n % N ? 1 : 0);
    if (m > 0) out.push([a, a + m]);
    a += m;
  }
  return out;
}

function sliceBatch(b: Batch, lo: number, hi: number) {
  const per = b.shape[1] * b.shape[2] * b.shape[3];
  return {
    images: b.images.slice(lo * per, hi * per),
    labels: b.labels.slice(lo, hi),
    shape: [hi - lo, b.shape[1], b.shape[2], b.shape[3]] as [number, number, number, number],
  };
}

export class ParameterServer {
  readonly trainer: Trainer;
  readonly parts: OptimizerParts & { kfac: import('../kfac/optimizer').KfacOptimizer };
  readonly refresher: AsyncInverseRefresher;
  readonly clock: SimClock;
  readonly faults: FaultEvent[] = [];
  readonly pools: RolePool[] = [];
  private readonly gradPool: RolePool | null;
  private readonly statsPool: RolePool | null;
  private readonly spec: ReplicaSpec;
  private readonly kcfg: KfacConfig;
  injections: Injections = {};
  /** wall seconds spent in step() */
  wallSeconds = 0;

  constructor(
    readonly model: Model,
    readonly cfg: RunConfig,
    readonly dist: DistConfig,
    data: { epochSize: number },
    polyakDecay: number,
  ) {
    if (cfg.optimizer.kind !== 'kfac') throw new Error('the distributed runtime runs K-FAC (optimizer.kind: kfac)');
    this.kcfg = cfg.optimizer;
    this.parts = kfacParts(this.kcfg, model, { epochSize: data.epochSize, batchSize: cfg.batchSize, bnChunk: cfg.bnChunk, seed: cfg.seed });
    this.trainer = new Trainer(model, this.parts, cfg, polyakDecay);
    this.spec = {
      model: cfg.model,
      inputShape: model.inputShape,
      numClasses: model.numClasses,
      blocks: { conv: this.kcfg.conv, doublyFactored: this.kcfg.doublyFactored, emaDecay: this.kcfg.emaDecay },
    };
    this.clock = new SimClock(dist.inverseThreads);
    const pool = (role: 'gradient' | 'stats' | 'inverse', n: number) => {
      const p = new RolePool(role, n, dist.onFault, this.faults, dist.retries);
      this.pools.push(p);
      return p;
    };
    this.gradPool = dist.gradients === 'thread' ? pool('gradient', dist.gradientWorkers) : null;
    this.statsPool = dist.stats === 'thread' ? pool('stats', 1) : null;
    const invPool = dist.inverses === 'thread' ? pool('inverse', Math.min(dist.inverseThreads, 2)) : null;
    this.refresher = new AsyncInverseRefresher(this.parts.kfac, dist.inverse, invPool, this.kcfg.dampingMode, this.clock);
  }

  get kfac() {
    return this.parts.kfac;
  }

  get steps(): number {
    return this.trainer.step;
  }

  private gradients(batch: Batch, k: number): Promise<GradientResult[]> {
    const ranges = shardRanges(batch.shape[0], this.dist.gradientWorkers);
    const inj = this.injections.gradient;
    const bnChunk = this.cfg.bnChunk;
    if (!this.gradPool) {
      return Promise.resolve(ranges.map(([lo, hi], i) => gradientShard(this.model, { step: k, worker: i, bnChunk, ...sliceBatch(batch, lo, hi) })));
    }
    const pool = this.gradPool;
    return Promise.all(
      ranges.map(([lo, hi], i) => {
        const make = (): GradientTask => ({ kind: 'gradient', spec: this.spec, step: k, worker: i, params: wireParams(this.model), bnChunk, ...sliceBatch(batch, lo, hi) });
        const t = make();
        if (inj && inj.step === k && inj.worker === i) t.inject = inj.inject;
        return pool.run(t, k, i, make) as Promise<GradientResult>;
      }),
    );
  }

  private statistics(batch: Batch | null, k: number): Promise<StatsResult | null> {
    if (!batch || k % this.kcfg.statsEvery !== 0) return Promise.resolve(null);
    const M = this.kcfg.statsBatch ? Math.min(this.kcfg.statsBatch, batch.shape[0]) : batch.shape[0];
    const part = sliceBatch(batch, 0, M);
    const bnChunk = this.cfg.bnChunk && M % this.cfg.bnChunk === 0 ? this.cfg.bnChunk : undefined;
    const seed = `stats:${this.cfg.seed}:${k}`;
    const fisher = this.kcfg.fisher;
    if (!this.statsPool) return Promise.resolve(statsBatch(this.model, this.kfac.blocks, { step: k, seed, fisher, bnChunk, ...part }));
    const make = (): StatsTask => ({ kind: 'stats', spec: this.spec, step: k, params: wireParams(this.model), seed, fisher, bnChunk, ...sliceBatch(batch, 0, M) });
    const t = make();
    const inj = this.injections.stats;
    if (inj && inj.step === k) t.inject = inj.inject;
    return this.statsPool.run(t, k, undefined, make) as Promise<StatsResult>;
  }

  /** Folds a stats worker's result into the factors; a non-finite batch is skipped under the optimizer's policy. */
  private fold(r: StatsResult, k: number): void {
    const blocks = new Map<string, FisherBlock>(this.kfac.blocks.map((b) => [b.name, b]));
    try {
      for (const [name, s] of r.stats) checkStatsFinite(name, s);
    } catch (e) {
      if (!(e instanceof KfacError)) throw e;
      if (this.kcfg.onNonFinite === 'stop') throw new KfacStopError(e);
      const d = (this.kfac.damping.get(e.layer) ?? this.kcfg.damping) * this.kcfg.dampingBoost;
      this.kfac.damping.set(e.layer, d);
      this.kfac.events.push({ step: k, layer: e.layer, what: e.what, action: 'skipped statistics', damping: d, message: e.message });
      return;
    }
    for (const [name, s] of r.stats) {
      const b = blocks.get(name);
      if (!b) throw new Error(`stats worker returned statistics for unknown block ${name}`);
      (b.accumulate as (s: unknown) => void)(s);
    }
  }

  /** One update from a gradient batch and (when statistics are due) the stats worker's own batch. */
  async step(batch: Batch, statsBatch: Batch | null): Promise<DistStepResult> {
    const t0 = performance.now();
    const k = this.trainer.step;
    const ii = this.injections.inverse;
    if (ii && k >= ii.step && !this.refresher.inFlight) {
      this.refresher.injectNext = ii.inject;
      this.injections.inverse = undefined;
    }
    this.refresher.injectAll = this.injections.inverseAll;
    // 1. compute phase: gradient shards and stats batch, concurrently where threaded
    const [shards, stats] = await Promise.all([this.gradients(batch, k), this.statistics(statsBatch, k)]);
    this.clock.compute(
      shards.map((s) => s.ms),
      stats?.ms ?? 0,
    );
    const u0 = performance.now();
    let waitMs = 0;
    // 2. statistics; 3. inverses
    if (stats) this.fold(stats, k);
    const w0 = performance.now();
    const staleness = await this.refresher.poll(k);
    waitMs = performance.now() - w0;
    // 4. average the gradients, precondition, step
    const n = shards.reduce((a, s) => a + s.count, 0);
    const loss = shards.reduce((a, s) => a + s.loss * s.count, 0) / n;
    const errors = shards.reduce((a, s) => a + s.errors, 0);
    if (!Number.isFinite(loss)) throw new TrainingDivergedError(`training diverged at step ${k}: loss is ${loss}`);
    const grads: Grads = new Map();
    for (let j = 0; j < shards[0].grads.length; j++) {
      const { name, shape } = shards[0].grads[j];
      const acc = new Float64Array(shards[0].grads[j].data.length);
      for (const s of shards) {
        const w = s.count / n;
        const d = s.grads[j].data;
        for (let i = 0; i < acc.length; i++) acc[i] += w * d[i];
      }
      grads.set(name, tf.tensor(Float32Array.from(acc), shape));
    }
    try {
      const pre = this.parts.preconditioner.precondition(grads, k);
      const info = stepSize(this.parts.stepSize, k, pre.vDotG);
      this.trainer.momentum.apply(this.model.params, pre.v, info.eta, this.parts.weightDecay);
      if (pre.v !== grads) tf.dispose([...pre.v.values()]);
      this.updateBn(shards, n);
      this.trainer.polyak.update(new Map<string, tf.Tensor>([...this.model.params, ...this.model.store.state]));
      this.trainer.step++;
      // the PS's own time, not counting the inverse poll (an in-line inversion or a wait for a worker: the clock
      // models that from the inverse job's measured block costs)
      this.clock.update(performance.now() - u0 - waitMs);
      this.wallSeconds += (performance.now() - t0) / 1000;
      return { loss, errors, info, staleness, simSeconds: this.clock.seconds };
    } finally {
      tf.dispose([...grads.values()]);
    }
  }

  /** BN running statistics from the shards' batch statistics, pooled (mean of means, within + between variance). */
  private updateBn(shards: GradientResult[], n: number): void {
    if (!shards[0].bnStats.length) return;
    const stats = new Map<string, { mean: tf.Tensor1D; variance: tf.Tensor1D }>();
    shards[0].bnStats.forEach((b0, j) => {
      const C = b0.mean.length;
      const mean = new Float64Array(C);
      const v = new Float64Array(C);
      for (const s of shards) for (let c = 0; c < C; c++) mean[c] += (s.count / n) * s.bnStats[j].mean[c];
      for (const s of shards) {
        for (let c = 0; c < C; c++) v[c] += (s.count / n) * (s.bnStats[j].variance[c] + (s.bnStats[j].mean[c] - mean[c]) ** 2);
      }
      stats.set(b0.name, { mean: tf.tensor1d(Float32Array.from(mean)), variance: tf.tensor1d(Float32Array.from(v)) });
    });
    this.model.updateBnState(stats);
    for (const s of stats.values()) tf.dispose([s.mean, s.variance]);
  }

  /** Live worker threads over every pool. */
  get liveThreads(): number {
    return this.pools.reduce((a, p) => a + p.liveThreads, 0);
  }

  /** Stops every worker (a job in flight is abandoned) and frees the optimizer state. Safe to call twice. */
  async close(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.close()));
    await this.refresher.drain();
  }

  dispose(): void {
    this.trainer.dispose();
  }
}
