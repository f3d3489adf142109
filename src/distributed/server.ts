/**
 * The parameter server (main thread) and the distributed training loop.
 *
 * One step k:
 *   0. (async statistics) every result the stats worker has finished since the last step is taken (statsSchedule)
 *   1. compute phase: the N gradient workers each get the parameters θ_k and their shard of the batch and return the
 *      gradient of the mean loss on the shard; at the same time (sync statistics) the stats worker gets θ_k — lagged:
 *      θ_{k−L} — and its own batch (from its own data stream) and returns per-block statistics with targets sampled
 *      from the model
 *   2. the statistics are folded into the factors' moving averages (block.accumulate), with their parameter staleness
 *   3. the inverse refresher is polled (it may install inverses computed asynchronously from an older snapshot)
 *   4. g = Σ_i (n_i / n) g_i; v = K-FAC preconditioning with the newest inverses; η by the KL rule; momentum; Polyak
 * Steps 4's pieces are the trainer's (the OptimizerParts of makeOptimizer, Trainer's MomentumUpdater and PolyakAverage).
 * Each role runs on worker threads ('thread') or in this thread one after the other ('inline').
 *
 * With `optimizer.kind: 'sgd'` the same server runs synchronous data-parallel SGD (the paper's baselines): steps 2
 * and 3 do not exist (no stats worker, no inverse pool), the preconditioner is the identity and η the learning-rate
 * schedule; the gradient averaging, momentum, Polyak average and BN running statistics are the same code.
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import type { Batch } from '../../data-pipeline/types';
import { checkStatsFinite, type FisherBlock } from '../kfac/blocks';
import { KfacError } from '../kfac/errors';
import { type KfacConfig, type KfacOptimizer, KfacStopError, type kfacParts } from '../kfac/optimizer';
import type { Model } from '../nn/model';
import type { RunConfig } from '../train/config';
import { makeOptimizer, type OptimizerParts, Trainer, type TrainerState, TrainingDivergedError } from '../train/trainer';
import { type Grads, stepSize, type StepInfo } from '../train/update';
import { SimClock } from './clock';
import type { GradientResult, GradientTask, Inject, ReplicaSpec, StatsResult, StatsTask, WireTensor } from './messages';
import { type FaultEvent, RolePool } from './pool';
import { AsyncInverseRefresher, type RefresherState } from './refresher';
import { type CostClock, cpuMs, gradientShard, loadParams, statsBatch, wallMs, wireParams } from './roles';
import { type PumpTask, StatsPump } from './stats-pump';

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
  /**
   * When the stats worker's statistics are computed (K-FAC):
   *   sync          at each step's parameters, alongside the gradients, waited for (every optimizer.statsEvery steps)
   *   async         the paper's: the stats worker loops on its own batches as fast as it can with the newest parameters
   *                 it was sent; the parameter server folds whatever has arrived at the start of each step and never
   *                 waits (but at the first step); statsEvery does not apply (threads only)
   *   lagged {lag}  the deterministic in-line stand-in for async: step k's statistics are computed at the parameters
   *                 of step max(0, k − lag) (every statsEvery steps)
   * In async and lagged modes the simulated clock does not charge the statistics on the critical path.
   */
  statsSchedule: z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('sync') }),
      z.strictObject({ kind: z.literal('async') }),
      z.strictObject({ kind: z.literal('lagged'), lag: z.number().int().min(0).max(1000) }),
    ])
    .default({ kind: 'sync' }),
  /**
   * What the simulated clock's role costs are measured with: 'wall' (elapsed time, the default) or 'cpu' (this
   * process's CPU time: immune to other processes competing for the cores; only with every role in-line, where
   * nothing else in the process runs at the same time)
   */
  costClock: z.enum(['wall', 'cpu']).default('wall'),
  /** a worker that throws or dies: run its task again on a fresh worker, or stop the run cleanly */
  onFault: z.enum(['respawn', 'stop']).default('stop'),
  retries: z.number().int().min(0).max(10).default(2),
}).superRefine((d, ctx) => {
  if (d.statsSchedule.kind === 'async' && d.stats !== 'thread') {
    ctx.addIssue({ code: 'custom', path: ['statsSchedule'], message: "'async' statistics need the threaded stats worker (stats: 'thread'); use { kind: 'lagged', lag } in-line" });
  }
  if (d.costClock === 'cpu' && (d.gradients !== 'inline' || d.stats !== 'inline' || d.inverses !== 'inline')) {
    ctx.addIssue({ code: 'custom', path: ['costClock'], message: "'cpu' measures role costs as this process's CPU time: every role must be in-line (gradients, stats, inverses: 'inline')" });
  }
  if (d.inverse.kind === 'async' && d.inverses !== 'thread') {
    ctx.addIssue({ code: 'custom', path: ['inverse'], message: "'async' inverses need the threaded inverse workers (inverses: 'thread'); use { kind: 'lagged', lag } in-line" });
  }
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
  /** keep every folded stats batch with its parameters' step, batch and seed in ps.statsRecord */
  recordStats?: boolean;
}

export interface DistStepResult {
  loss: number;
  errors: number;
  info: StepInfo;
  /** steps since the inverses in use were computed (undefined for SGD: no inverses) */
  staleness: number | undefined;
  /** stats batches folded into the factors at this step (undefined for SGD) */
  statsFolded: number | undefined;
  /** their mean parameter staleness: this step minus the step of the parameters they were computed at */
  statsStaleness: number | undefined;
  /** measured compute of this step's roles, ms: each gradient shard, and the statistics folded (0 if none) */
  roleMs: { shards: number[]; stats: number };
  simSeconds: number;
}

/** One folded stats batch, as recorded for tests (Injections.recordStats). */
export interface StatsRecord {
  foldStep: number;
  paramsStep: number;
  seed: string;
  batch: { images: Float32Array; labels: Int32Array; shape: [number, number, number, number] };
  stats: StatsResult['stats'];
}

export interface ParameterServerState {
  trainer: TrainerState;
  /** stats tasks started (async sampling seeds) and the parameters of the last lag + 1 steps (lagged) */
  stats: { tasks: number; history: WireTensor[][]; folded: number; stalenessSum: number };
  refresher?: RefresherState;
  clock: ReturnType<SimClock['state']>;
  wallSeconds: number;
  faults: FaultEvent[];
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
  readonly parts: OptimizerParts;
  /** K-FAC's curvature state; null for SGD */
  readonly kfac: KfacOptimizer | null;
  /** the inverse workers' schedule; null for SGD */
  readonly refresher: AsyncInverseRefresher | null;
  readonly clock: SimClock;
  readonly faults: FaultEvent[] = [];
  readonly pools: RolePool[] = [];
  private readonly gradPool: RolePool | null;
  private readonly statsPool: RolePool | null;
  private readonly spec: ReplicaSpec;
  private readonly kcfg: KfacConfig | null;
  injections: Injections = {};
  /** wall seconds spent in step() */
  wallSeconds = 0;
  /** async statistics: where the stats worker's own batches come from (its stream) */
  statsSource?: () => Promise<Batch>;
  /** folded stats batches (with Injections.recordStats) */
  readonly statsRecord: StatsRecord[] = [];
  /** stats batches folded so far and the sum of their parameter staleness */
  statsFolded = 0;
  statsStalenessSum = 0;
  private statsPump: StatsPump | null = null;
  private statsTasks = 0;
  /** lagged statistics: the parameters of the last lag + 1 steps, oldest first */
  private paramHistory: WireTensor[][] = [];
  private readonly recordBatches = new Map<string, StatsRecord['batch']>();
  /** the clock role costs are measured with (DistConfig.costClock) */
  private readonly now: CostClock;

  constructor(
    readonly model: Model,
    readonly cfg: RunConfig,
    readonly dist: DistConfig,
    data: { epochSize: number },
    polyakDecay: number,
  ) {
    // the single-process trainer's optimizer pieces (K-FAC: kfacParts, whose observe hook is replaced by steps 2–3)
    this.parts = makeOptimizer(cfg, model, data);
    this.kcfg = cfg.optimizer.kind === 'kfac' ? cfg.optimizer : null;
    this.kfac = this.kcfg ? (this.parts as ReturnType<typeof kfacParts>).kfac : null;
    this.trainer = new Trainer(model, this.parts, cfg, polyakDecay);
    this.spec = {
      model: cfg.model,
      inputShape: model.inputShape,
      numClasses: model.numClasses,
      ...(this.kcfg ? { blocks: { conv: this.kcfg.conv, doublyFactored: this.kcfg.doublyFactored, emaDecay: this.kcfg.emaDecay } } : {}),
    };
    this.clock = new SimClock(dist.inverseThreads);
    this.now = dist.costClock === 'cpu' ? cpuMs : wallMs;
    const pool = (role: 'gradient' | 'stats' | 'inverse', n: number) => {
      const p = new RolePool(role, n, dist.onFault, this.faults, dist.retries);
      this.pools.push(p);
      return p;
    };
    this.gradPool = dist.gradients === 'thread' ? pool('gradient', dist.gradientWorkers) : null;
    if (this.kfac && this.kcfg) {
      this.statsPool = dist.stats === 'thread' ? pool('stats', 1) : null;
      if (dist.statsSchedule.kind === 'async') {
        if (!this.statsPool) throw new Error("'async' statistics need the threaded stats worker (stats: 'thread')");
        this.statsPump = new StatsPump(this.statsPool, () => this.nextAsyncStatsTask());
      }
      const invPool = dist.inverses === 'thread' ? pool('inverse', Math.min(dist.inverseThreads, 2)) : null;
      this.refresher = new AsyncInverseRefresher(this.kfac, dist.inverse, invPool, this.kcfg.dampingMode, this.clock, this.now);
    } else {
      this.statsPool = null;
      this.refresher = null;
    }
  }

  get steps(): number {
    return this.trainer.step;
  }

  private gradients(batch: Batch, k: number): Promise<GradientResult[]> {
    const ranges = shardRanges(batch.shape[0], this.dist.gradientWorkers);
    const inj = this.injections.gradient;
    const bnChunk = this.cfg.bnChunk;
    if (!this.gradPool) {
      return Promise.resolve(ranges.map(([lo, hi], i) => gradientShard(this.model, { step: k, worker: i, bnChunk, ...sliceBatch(batch, lo, hi) }, this.now)));
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

  /** The stats worker's part of a batch (statsBatch examples) and its BN chunk. */
  private statsPart(batch: Batch) {
    const M = this.kcfg?.statsBatch ? Math.min(this.kcfg.statsBatch, batch.shape[0]) : batch.shape[0];
    const bnChunk = this.cfg.bnChunk && M % this.cfg.bnChunk === 0 ? this.cfg.bnChunk : undefined;
    return { part: () => sliceBatch(batch, 0, M), bnChunk };
  }

  /**
   * Synchronous and lagged statistics of step k on the stats worker's batch, at the current parameters or at
   * `lagged` (the parameters of step `lagged.step`).
   */
  private async statistics(batch: Batch | null, k: number, lagged?: { step: number; params: WireTensor[] }): Promise<StatsResult | null> {
    if (!batch || !this.kfac || !this.kcfg || k % this.kcfg.statsEvery !== 0) return null;
    const { part, bnChunk } = this.statsPart(batch);
    const seed = `stats:${this.cfg.seed}:${k}`;
    const fisher = this.kcfg.fisher;
    const step = lagged?.step ?? k;
    if (this.injections.recordStats) this.recordBatches.set(seed, part());
    if (!this.statsPool) {
      if (!lagged || lagged.step === k) return statsBatch(this.model, this.kfac.blocks, { step, seed, fisher, bnChunk, ...part() }, this.now);
      // in-line at older parameters: swap them in for the statistics, then back (float32 copies: exact)
      const now = wireParams(this.model);
      loadParams(this.model, lagged.params);
      try {
        return statsBatch(this.model, this.kfac.blocks, { step, seed, fisher, bnChunk, ...part() }, this.now);
      } finally {
        loadParams(this.model, now);
      }
    }
    const params = lagged?.params;
    const make = (): StatsTask => ({ kind: 'stats', spec: this.spec, step, params: params ? structuredClone(params) : wireParams(this.model), seed, fisher, bnChunk, ...part() });
    const t = make();
    const inj = this.injections.stats;
    if (inj && inj.step === k) t.inject = inj.inject;
    return (await this.statsPool.run(t, k, undefined, make)) as StatsResult;
  }

  /** The asynchronous stats worker's next task: its own next batch at the newest parameters (of step trainer.step). */
  private async nextAsyncStatsTask(): Promise<PumpTask> {
    if (!this.statsSource) throw new Error("'async' statistics need a source of stats batches (ParameterServer.statsSource)");
    if (!this.kcfg) throw new Error('statistics without K-FAC');
    const batch = await this.statsSource();
    const { part, bnChunk } = this.statsPart(batch);
    const seed = `stats:${this.cfg.seed}:async:${this.statsTasks++}`;
    // read after the await: the newest parameters, consistent (an update never awaits halfway)
    const step = this.trainer.step;
    const params = wireParams(this.model);
    if (this.injections.recordStats) this.recordBatches.set(seed, part());
    const make = (): StatsTask => ({ kind: 'stats', spec: this.spec, step, params: structuredClone(params), seed, fisher: this.kcfg!.fisher, bnChunk, ...part() });
    return { task: make(), retry: make };
  }

  /** Folds a stats worker's result into the factors; a non-finite batch is skipped under the optimizer's policy. */
  private fold(r: StatsResult, k: number): void {
    if (!this.kfac || !this.kcfg) throw new Error('statistics folded without K-FAC');
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
    const batch = this.recordBatches.get(r.seed);
    if (batch) {
      this.recordBatches.delete(r.seed);
      this.statsRecord.push({ foldStep: k, paramsStep: r.step, seed: r.seed, batch, stats: r.stats });
    }
  }

  /**
   * One update from a gradient batch and (K-FAC, sync and lagged statistics, when due) the stats worker's own batch;
   * async statistics come from `statsSource` instead.
   */
  async step(batch: Batch, statsBatch: Batch | null = null): Promise<DistStepResult> {
    const t0 = performance.now();
    const k = this.trainer.step;
    // async statistics: take whatever the stats worker has finished (the very first step waits for one)
    let folded: StatsResult[] = [];
    let firstWaitMs = 0;
    if (this.statsPump && this.kfac) {
      this.statsPump.kick();
      const first = !this.kfac.blocks.some((b) => b.steps > 0);
      folded = await this.statsPump.take(first);
      if (first) firstWaitMs = Math.max(0, ...folded.map((r) => r.ms));
    }
    let lagged: { step: number; params: WireTensor[] } | undefined;
    if (this.dist.statsSchedule.kind === 'lagged' && this.kfac) {
      this.paramHistory.push(wireParams(this.model));
      while (this.paramHistory.length > this.dist.statsSchedule.lag + 1) this.paramHistory.shift();
      lagged = { step: k - (this.paramHistory.length - 1), params: this.paramHistory[0] };
    }
    const ii = this.injections.inverse;
    if (this.refresher) {
      if (ii && k >= ii.step && !this.refresher.inFlight) {
        this.refresher.injectNext = ii.inject;
        this.injections.inverse = undefined;
      }
      this.refresher.injectAll = this.injections.inverseAll;
    }
    // 1. compute phase: gradient shards and (sync, lagged) the stats batch, concurrently where threaded
    const [shards, stats] = await Promise.all([
      this.gradients(batch, k),
      this.statsPump ? Promise.resolve(null) : this.statistics(statsBatch, k, lagged),
    ]);
    if (stats) folded.push(stats);
    // async and lagged statistics are off the critical path (but the first step's wait)
    const statsMs = this.dist.statsSchedule.kind === 'sync' ? (stats?.ms ?? 0) : firstWaitMs;
    this.clock.compute(
      shards.map((s) => s.ms),
      statsMs,
    );
    const u0 = this.now();
    let waitMs = 0;
    // 2. statistics; 3. inverses
    for (const r of folded) this.fold(r, k);
    const statsStaleness = folded.length ? folded.reduce((a, r) => a + (k - r.step), 0) / folded.length : undefined;
    this.statsFolded += folded.length;
    this.statsStalenessSum += folded.reduce((a, r) => a + (k - r.step), 0);
    const w0 = this.now();
    const staleness = this.refresher ? await this.refresher.poll(k) : undefined;
    waitMs = this.now() - w0;
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
      this.clock.update(this.now() - u0 - waitMs);
      this.wallSeconds += (performance.now() - t0) / 1000;
      const statsFolded = this.kfac ? folded.length : undefined;
      const roleMs = { shards: shards.map((s) => s.ms), stats: folded.reduce((a, r) => a + r.ms, 0) };
      return { loss, errors, info, staleness, statsFolded, statsStaleness, roleMs, simSeconds: this.clock.seconds };
    } finally {
      tf.dispose([...grads.values()]);
    }
  }

  /**
   * BN running statistics from the shards' batch statistics, merged as the single-process trainer would record them
   * for the whole batch: with chunks (bnChunk < batch) the trainer keeps the mean of the chunk statistics, and each
   * shard's statistics are already the mean over its own chunks, so the merge is their size-weighted mean (exact when
   * the shards are whole numbers of chunks); without chunks the trainer keeps the whole batch's statistics, and the
   * merge pools the shards (mean of means; variance = within + between).
   */
  private updateBn(shards: GradientResult[], n: number): void {
    if (!shards[0].bnStats.length) return;
    const chunked = this.cfg.bnChunk !== undefined && this.cfg.bnChunk < n;
    const stats = new Map<string, { mean: tf.Tensor1D; variance: tf.Tensor1D }>();
    shards[0].bnStats.forEach((b0, j) => {
      const C = b0.mean.length;
      const mean = new Float64Array(C);
      const v = new Float64Array(C);
      for (const s of shards) for (let c = 0; c < C; c++) mean[c] += (s.count / n) * s.bnStats[j].mean[c];
      for (const s of shards) {
        const between = (c: number) => (chunked ? 0 : (s.bnStats[j].mean[c] - mean[c]) ** 2);
        for (let c = 0; c < C; c++) v[c] += (s.count / n) * (s.bnStats[j].variance[c] + between(c));
      }
      stats.set(b0.name, { mean: tf.tensor1d(Float32Array.from(mean)), variance: tf.tensor1d(Float32Array.from(v)) });
    });
    this.model.updateBnState(stats);
    for (const s of stats.values()) tf.dispose([s.mean, s.variance]);
  }

  /** Everything a checkpoint needs of the server: trainer (and optimizer), inverse schedule, clocks, faults so far. */
  state(): ParameterServerState {
    return {
      trainer: this.trainer.state(),
      stats: { tasks: this.statsTasks, history: structuredClone(this.paramHistory), folded: this.statsFolded, stalenessSum: this.statsStalenessSum },
      refresher: this.refresher?.state(),
      clock: this.clock.state(),
      wallSeconds: this.wallSeconds,
      faults: this.faults.slice(),
    };
  }

  restore(s: ParameterServerState): void {
    this.trainer.restore(s.trainer);
    this.statsTasks = s.stats.tasks;
    this.paramHistory = structuredClone(s.stats.history);
    this.statsFolded = s.stats.folded;
    this.statsStalenessSum = s.stats.stalenessSum;
    if (s.refresher && this.refresher) this.refresher.restore(s.refresher);
    // after the refresher: a resubmitted job keeps its original simulated submission time
    this.clock.restore(s.clock);
    this.wallSeconds = s.wallSeconds;
    this.faults.splice(0, this.faults.length, ...s.faults);
  }

  /** Live worker threads over every pool. */
  get liveThreads(): number {
    return this.pools.reduce((a, p) => a + p.liveThreads, 0);
  }

  /** Stops every worker (a job in flight is abandoned) and frees the optimizer state. Safe to call twice. */
  async close(): Promise<void> {
    this.statsPump?.stop();
    await Promise.all(this.pools.map((p) => p.close()));
    await this.refresher?.drain();
  }

  dispose(): void {
    this.trainer.dispose();
  }
}
