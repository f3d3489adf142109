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
 * Each role runs on worker threads ('thread'), on worker processes on any host through Redis ('redis', see
 * redis/transport.ts) or in this thread one after the other ('inline'); threads and Redis are the two RoleTransports
 * (pool.ts). Every step records the bytes each role exchanged (network.ts) and, with a network model, their transfer
 * time on the simulated clock.
 *
 * With `optimizer.kind: 'sgd'` the same server runs synchronous data-parallel SGD (the paper's baselines): steps 2
 * and 3 do not exist (no stats worker, no inverse pool), the preconditioner is the identity and η the learning-rate
 * schedule; the gradient averaging, momentum, Polyak average and BN running statistics are the same code.
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import type { Batch } from '../../data-pipeline/types';
import { setEngineThreads } from '../backend';
import { checkStatsFinite, type FisherBlock } from '../kfac/blocks';
import { KfacError } from '../kfac/errors';
import { type KfacConfig, type KfacOptimizer, KfacStopError, type kfacParts } from '../kfac/optimizer';
import type { Model } from '../nn/model';
import type { RunConfig } from '../train/config';
import { makeOptimizer, type OptimizerParts, Trainer, type TrainerState, TrainingDivergedError } from '../train/trainer';
import { type Grads, stepSize, type StepInfo } from '../train/update';
import { CalibratedClock } from './calibration';
import { SimClock } from './clock';
import type { CostClockName, GradientResult, GradientTask, Inject, ReplicaSpec, StatsResult, StatsTask, WireTensor } from './messages';
import { Network, NetworkModel, payloadBytes, StepTraffic, type Transfer, type TrafficKind } from './network';
import { type FaultEvent, type Role, ROLES, RolePool, type RoleTransport } from './pool';
import { RedisConfig } from './redis/connect';
import { RedisRolePool, RedisRun } from './redis/transport';
import { runManifest } from './redis/validate';
import { AsyncInverseRefresher, type RefresherState } from './refresher';
import { type CostClock, cpuMs, gradientShard, loadParams, statsBatch, wallMs, wireParams } from './roles';
import { type PumpTask, StatsPump } from './stats-pump';

/** Where a role runs: this thread, worker threads of this process, or worker processes through Redis. */
const Transport = z.enum(['inline', 'thread', 'redis']);

/** The clocks role costs can be measured with (DistConfig.costClock; the experiments' roles take the same). */
export const CostClockSetting = z.enum(['wall', 'cpu', 'calibrated']);

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
   * What the simulated clock's role costs are measured with: 'wall' (elapsed time, the default), 'cpu' (this
   * process's CPU time: immune to other processes competing for the cores; only with every role in-line, where
   * nothing else in the process runs at the same time) or 'calibrated' (CPU time rescaled by a reference workload
   * timed before every step, which removes most of the machine's own speed drift: calibration.ts; every role in-line)
   */
  costClock: CostClockSetting.default('wall'),
  /** a worker that throws or dies: run its task again on a fresh worker, or stop the run cleanly */
  onFault: z.enum(['respawn', 'stop']).default('stop'),
  retries: z.number().int().min(0).max(10).default(2),
  /** the Redis transport's connection and timings (redis/connect.ts; needed when a role is 'redis') */
  redis: RedisConfig.optional(),
  /** the network model that puts transfer times on the simulated clock (network.ts); none when absent */
  network: NetworkModel.optional(),
}).superRefine((d, ctx) => {
  const remote = (t: string) => t === 'thread' || t === 'redis';
  if (d.statsSchedule.kind === 'async' && !remote(d.stats)) {
    ctx.addIssue({ code: 'custom', path: ['statsSchedule'], message: "'async' statistics need a stats worker of their own (stats: 'thread' or 'redis'); use { kind: 'lagged', lag } in-line" });
  }
  if (d.costClock === 'cpu' && (d.gradients === 'thread' || d.stats === 'thread' || d.inverses === 'thread')) {
    ctx.addIssue({
      code: 'custom',
      path: ['costClock'],
      message: "'cpu' measures role costs as a process's CPU time: no role may run on this process's threads (gradients, stats, inverses: 'inline' or 'redis')",
    });
  }
  if (d.costClock === 'calibrated' && (d.gradients !== 'inline' || d.stats !== 'inline' || d.inverses !== 'inline')) {
    ctx.addIssue({
      code: 'custom',
      path: ['costClock'],
      message: "'calibrated' rescales this process's CPU time by a reference timed in this process: every role must be 'inline' (gradients, stats, inverses)",
    });
  }
  if (d.inverse.kind === 'async' && !remote(d.inverses)) {
    ctx.addIssue({ code: 'custom', path: ['inverse'], message: "'async' inverses need inverse workers of their own (inverses: 'thread' or 'redis'); use { kind: 'lagged', lag } in-line" });
  }
  if ((d.gradients === 'redis' || d.stats === 'redis' || d.inverses === 'redis') && !d.redis) {
    ctx.addIssue({ code: 'custom', path: ['redis'], message: "a role on 'redis' needs the Redis connection (redis: { url: 'redis://host:port' })" });
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
  /** payload bytes each role exchanged with the parameter server at this step, and by kind */
  traffic: StepTraffic;
  /** simulated seconds of modelled communication on the critical path so far */
  commSeconds: number;
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
  comm?: ParameterServer['comm'];
  /** the calibrated cost clock's reference timings (costClock 'calibrated') */
  calibration?: ReturnType<CalibratedClock['state']>;
}

/** Options of a parameter server beyond its configuration: what the Redis transport tells its workers. */
export interface ServerOptions {
  experiment?: string;
  dataset?: { dataset: string; subset?: string };
  log?: (m: string) => void;
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
  readonly pools: RoleTransport[] = [];
  /** the Redis transport's run (null unless a role is on 'redis') */
  readonly redis: RedisRun | null;
  readonly network: Network;
  /**
   * communication so far: payload bytes by role and kind, and the transport's own time per step (the compute
   * phase's elapsed time beyond its slowest role, for roles off this thread)
   */
  comm = {
    steps: 0,
    byRole: { gradient: 0, stats: 0, inverse: 0 } as Record<Role, number>,
    byKind: { params: 0, data: 0, gradients: 0, stats: 0, snapshots: 0, inverses: 0 } as Record<TrafficKind, number>,
    overheadMs: 0,
    phaseMs: 0,
    measured: 0,
    /** the transport's time of each step, ms (the last 5000 steps; their median is robust to warm-up steps) */
    overheads: [] as number[],
  };
  private readonly gradPool: RoleTransport | null;
  private readonly statsPool: RoleTransport | null;
  private readonly paramBytes: number;
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
  /** the calibrated cost clock (costClock 'calibrated'), recalibrated before every step */
  readonly calibrated: CalibratedClock | null;
  /** what a remote role times its task with */
  private readonly taskClock: CostClockName;

  constructor(
    readonly model: Model,
    readonly cfg: RunConfig,
    readonly dist: DistConfig,
    data: { epochSize: number },
    polyakDecay: number,
    opts: ServerOptions = {},
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
    this.network = new Network(dist.network);
    this.calibrated = dist.costClock === 'calibrated' ? new CalibratedClock() : null;
    this.now = this.calibrated ? this.calibrated.now : dist.costClock === 'cpu' ? cpuMs : wallMs;
    this.taskClock = dist.costClock === 'wall' ? 'wall' : 'cpu';
    // CPU-time role costs are single-thread work: one native thread here (OpenMP threads waiting at barriers would
    // add their spinning to the CPU time, more so when other processes share the cores); restored by close()
    if (dist.costClock !== 'wall') this.restoreThreads = setEngineThreads(1);
    this.paramBytes = [...model.params.values()].reduce((a, v) => a + v.size * 4, 0);
    // SGD has no stats or inverse role
    const transportOf: Record<Role, 'inline' | 'thread' | 'redis'> = { gradient: dist.gradients, stats: this.kfac ? dist.stats : 'inline', inverse: this.kfac ? dist.inverses : 'inline' };
    const roles = ROLES.filter((r) => transportOf[r] === 'redis');
    this.redis = roles.length
      ? new RedisRun(
          dist.redis!,
          {
            experiment: opts.experiment ?? 'run',
            run: cfg.run,
            label: cfg.label,
            spec: this.spec,
            data: opts.dataset ?? { dataset: 'unknown' },
            manifest: runManifest(model, this.kfac?.blocks ?? []),
            roles,
          },
          this.faults,
          opts.log,
        )
      : null;
    const pool = (role: Role, n: number): RoleTransport | null => {
      if (transportOf[role] === 'inline') return null;
      const p = transportOf[role] === 'thread' ? new RolePool(role, n, dist.onFault, this.faults, dist.retries) : new RedisRolePool(role, this.redis!, dist.onFault, this.faults, dist.retries);
      this.pools.push(p);
      return p;
    };
    this.gradPool = pool('gradient', dist.gradientWorkers);
    if (this.kfac && this.kcfg) {
      this.statsPool = pool('stats', 1);
      if (dist.statsSchedule.kind === 'async') {
        if (!this.statsPool) throw new Error("'async' statistics need a stats worker of their own (stats: 'thread' or 'redis')");
        this.statsPump = new StatsPump(this.statsPool, () => this.nextAsyncStatsTask());
      }
      const invPool = pool('inverse', Math.min(dist.inverseThreads, 2));
      this.refresher = new AsyncInverseRefresher(this.kfac, dist.inverse, invPool, this.kcfg.dampingMode, this.clock, this.now, this.network, this.taskClock);
    } else {
      this.statsPool = null;
      this.refresher = null;
    }
  }

  get steps(): number {
    return this.trainer.step;
  }

  /** Connects the remote transports (Redis: a clear error before any work if it cannot be used). */
  async open(): Promise<void> {
    await this.redis?.open();
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
        const make = (): GradientTask => ({ kind: 'gradient', spec: this.spec, step: k, worker: i, params: wireParams(this.model), bnChunk, costClock: this.taskClock, ...sliceBatch(batch, lo, hi) });
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
    const make = (): StatsTask => ({ kind: 'stats', spec: this.spec, step, params: params ? structuredClone(params) : wireParams(this.model), seed, fisher, bnChunk, costClock: this.taskClock, ...part() });
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
    const make = (): StatsTask => ({ kind: 'stats', spec: this.spec, step, params: structuredClone(params), seed, fisher: this.kcfg!.fisher, bnChunk, costClock: this.taskClock, ...part() });
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
    // before the step's real time starts: the reference workload is on no clock
    this.calibrated?.calibrate();
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
    const c0 = performance.now();
    const [shards, stats] = await Promise.all([
      this.gradients(batch, k),
      this.statsPump ? Promise.resolve(null) : this.statistics(statsBatch, k, lagged),
    ]);
    const phaseMs = performance.now() - c0;
    if (stats) folded.push(stats);
    // async and lagged statistics are off the critical path (but the first step's wait)
    const statsMs = this.dist.statsSchedule.kind === 'sync' ? (stats?.ms ?? 0) : firstWaitMs;
    // communication of the phase: θ and examples down, gradients and statistics up
    const perExample = batch.shape[1] * batch.shape[2] * batch.shape[3] * 4 + 4;
    const gradT: Transfer[] = shards.flatMap((s) => [
      { role: 'gradient', kind: 'params', dir: 'down', bytes: this.paramBytes },
      { role: 'gradient', kind: 'data', dir: 'down', bytes: s.count * perExample },
      { role: 'gradient', kind: 'gradients', dir: 'up', bytes: payloadBytes(s.grads) + payloadBytes(s.bnStats) },
    ]);
    const statsExamples = this.kcfg?.statsBatch ? Math.min(this.kcfg.statsBatch, batch.shape[0]) : batch.shape[0];
    const statsT: Transfer[] = folded.flatMap((r) => [
      { role: 'stats', kind: 'params', dir: 'down', bytes: this.paramBytes },
      { role: 'stats', kind: 'data', dir: 'down', bytes: statsExamples * perExample },
      { role: 'stats', kind: 'stats', dir: 'up', bytes: payloadBytes(r.stats) },
    ]);
    const onPath = this.dist.statsSchedule.kind === 'sync' ? [...gradT, ...statsT] : gradT;
    this.clock.compute(
      shards.map((s) => s.ms),
      statsMs,
      this.network.phaseMs(onPath),
    );
    if (this.gradPool || this.statsPool) {
      // the transport's own time: the phase beyond its slowest role (queueing and transfers included)
      const over = Math.max(0, phaseMs - Math.max(...shards.map((s) => s.ms), this.dist.statsSchedule.kind === 'sync' ? (stats?.ms ?? 0) : 0));
      this.comm.overheadMs += over;
      this.comm.overheads.push(over);
      if (this.comm.overheads.length > 5000) this.comm.overheads.shift();
      this.comm.phaseMs += phaseMs;
      this.comm.measured++;
    }
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
      const traffic = new StepTraffic();
      traffic.add(gradT);
      traffic.add(statsT);
      if (this.refresher) traffic.add(this.refresher.takeTransfers());
      this.comm.steps++;
      for (const r of Object.keys(traffic.byRole) as Role[]) this.comm.byRole[r] += traffic.byRole[r];
      for (const kk of Object.keys(traffic.byKind) as TrafficKind[]) this.comm.byKind[kk] += traffic.byKind[kk];
      return { loss, errors, info, staleness, statsFolded, statsStaleness, roleMs, simSeconds: this.clock.seconds, traffic, commSeconds: this.clock.commSeconds };
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
      comm: structuredClone(this.comm),
      ...(this.calibrated ? { calibration: this.calibrated.state() } : {}),
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
    if (s.comm) this.comm = structuredClone(s.comm);
    if (s.calibration && this.calibrated) this.calibrated.restore(s.calibration);
  }

  /** Live worker threads over every pool. */
  get liveThreads(): number {
    return this.pools.reduce((a, p) => a + p.liveThreads, 0);
  }

  /** Stops every worker (a job in flight is abandoned), leaves Redis, and frees the optimizer state. Safe to call twice. */
  private restoreThreads: number | undefined;

  async close(): Promise<void> {
    if (this.restoreThreads !== undefined) setEngineThreads(this.restoreThreads);
    this.restoreThreads = undefined;
    this.statsPump?.stop();
    await Promise.all(this.pools.map((p) => p.close()));
    await this.redis?.close();
    await this.refresher?.drain();
  }

  dispose(): void {
    this.trainer.dispose();
  }
}
