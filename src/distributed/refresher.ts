/**
 * The asynchronous inverse refresher [P §3.1]: the parameter server polls it once per step, after folding in that
 * step's statistics. It hands a factor snapshot (kfac.snapshot(), with each block's damping) to an inverse worker and,
 * when the inverses come back, installs them with `installInverses(result, fromStep)`, fromStep being the step whose
 * factors were snapshotted; the staleness of the inverses in use at step k is k − fromStep.
 *
 * Schedules:
 *   sync    {every: T}  the synchronous baseline: at steps 0, T, 2T, … a job is submitted and waited for
 *   async               whenever no job is in flight one is submitted; a finished job is installed at the next poll
 *                       (threads only: it completes when the worker thread does)
 *   lagged  {lag: L}    like async, but a job submitted at step s is installed at exactly step s + L (waiting for
 *                       it if need be): deterministic, in-line or threaded; L = 0 is a refresh every step
 * The very first job (step 0) is always waited for, so that every schedule starts from inverses.
 *
 * Transports: 'thread' (an inverse-worker pool of M threads; buffers transferred), 'redis' (inverse workers in other
 * processes) or 'inline' (computed in this thread at submission, its result held back until it is due). Each installed
 * job's snapshot and inverses are counted as inverse traffic (takeTransfers) and, on a remote inverse worker of the
 * network model, their transfer time is part of the job's simulated duration.
 */
import { type BlockInverses, type DampingMode } from '../kfac/blocks';
import type { KfacOptimizer } from '../kfac/optimizer';
import type { SimClock } from './clock';
import type { CostClockName, Inject, InverseResult, InverseTask } from './messages';
import { type Network, payloadBytes, type Transfer } from './network';
import type { RoleTransport } from './pool';
import { type CostClock, invertSnapshots, wallMs } from './roles';

export type InverseSchedule = { kind: 'sync'; every: number } | { kind: 'async' } | { kind: 'lagged'; lag: number };

interface Job {
  id: number;
  fromStep: number;
  due: number;
  /**
   * the task as submitted, where it can be kept (in-line; threaded lagged jobs keep a copy, since the pool moves the
   * buffers) so that a checkpoint carries the job in flight and a resume resubmits the very same snapshot; null for
   * threaded async jobs (a resume submits a fresh snapshot instead)
   */
  task: InverseTask | null;
  promise: Promise<InverseResult>;
  result?: InverseResult;
  error?: unknown;
  /** payload bytes of the snapshot sent */
  snapBytes: number;
}

export interface RefresherStats {
  submitted: number;
  installed: number;
  /** fromStep and install step of every installed job */
  installs: { fromStep: number; step: number; ms: number; threadId: number }[];
}

/** What a checkpoint keeps of the refresher: counters, and a job in flight as its task (resubmitted on restore). */
export interface RefresherState {
  nextId: number;
  lastSubmit: number;
  stats: RefresherStats;
  pending: { id: number; fromStep: number; due: number; task: InverseTask } | null;
}

export class AsyncInverseRefresher {
  private job: Job | null = null;
  private nextId = 0;
  private lastSubmit = -1;
  readonly stats: RefresherStats = { submitted: 0, installed: 0, installs: [] };
  /** test-only injection for the next submitted task (consumed once), or for every task */
  injectNext?: Inject;
  injectAll?: Inject;
  /** traffic of the jobs installed since the last takeTransfers */
  private transfers: Transfer[] = [];

  constructor(
    readonly kfac: KfacOptimizer,
    readonly schedule: InverseSchedule,
    readonly pool: RoleTransport | null,
    readonly mode: DampingMode,
    readonly clock?: SimClock,
    /** what in-line inversions are timed with (the simulated clock's block costs) */
    readonly now: CostClock = wallMs,
    readonly network?: Network,
    /** what a remote inverse worker times its job with */
    readonly costClock?: CostClockName,
  ) {
    if (schedule.kind === 'async' && !pool) throw new Error("inverse schedule 'async' needs inverse workers of their own (threads or Redis; use 'lagged' in-line)");
  }

  /** The snapshot and inverse traffic of the jobs installed since the last call. */
  takeTransfers(): Transfer[] {
    const t = this.transfers;
    this.transfers = [];
    return t;
  }

  private submit(step: number): void {
    const task: InverseTask = {
      kind: 'inverse',
      fromStep: step,
      snapshots: this.kfac.snapshot(),
      damping: Object.fromEntries(this.kfac.damping),
      mode: this.mode,
      inject: this.injectNext ?? this.injectAll,
      costClock: this.costClock,
    };
    this.injectNext = undefined;
    const lag = this.schedule.kind === 'lagged' ? this.schedule.lag : 0;
    this.start(this.nextId++, step, step + lag, task);
    this.lastSubmit = step;
    this.stats.submitted++;
  }

  /** Hands `task` to an inverse worker (or computes it in-line) as job `id`. */
  private start(id: number, fromStep: number, due: number, task: InverseTask): void {
    const kept = !this.pool ? task : this.schedule.kind === 'lagged' ? structuredClone(task) : null;
    // before the pool moves the buffers
    const snapBytes = payloadBytes(task.snapshots);
    const retry = () => (kept ? structuredClone(kept) : { ...task, snapshots: this.kfac.snapshot() });
    const promise: Promise<InverseResult> = this.pool
      ? (this.pool.run(task, fromStep, undefined, retry) as Promise<InverseResult>)
      : Promise.resolve().then(() => invertSnapshots(task, this.now));
    const job: Job = { id, fromStep, due, task: kept, promise, snapBytes };
    // a rejection is kept on the job and rethrown at the poll that finds it
    promise.then(
      (r) => (job.result = r),
      (e) => (job.error = e ?? new Error('inverse job failed')),
    );
    this.job = job;
    this.clock?.inverseSubmitted(id);
  }

  state(): RefresherState {
    const j = this.job;
    return {
      nextId: this.nextId,
      lastSubmit: this.lastSubmit,
      stats: structuredClone(this.stats),
      pending: j?.task ? { id: j.id, fromStep: j.fromStep, due: j.due, task: { ...j.task, inject: undefined } } : null,
    };
  }

  /**
   * Restores the counters and resubmits a job that was in flight (same snapshot, damping and due step). A threaded
   * async job in flight is not carried: the first poll after the resume submits a fresh snapshot.
   */
  restore(s: RefresherState): void {
    this.nextId = s.nextId;
    this.lastSubmit = s.pending ? s.lastSubmit : -1;
    Object.assign(this.stats, structuredClone(s.stats));
    this.job = null;
    if (s.pending) this.start(s.pending.id, s.pending.fromStep, s.pending.due, structuredClone(s.pending.task));
  }

  private install(job: Job, r: InverseResult, step: number, blocking: boolean): void {
    const map = new Map<string, BlockInverses>();
    for (const inv of r.inverses) map.set(inv.name, inv);
    if (r.failed.length) {
      // the worker could not invert these blocks: apply the optimizer's failure policy to them here
      const snap = new Map(this.kfac.snapshot().map((s) => [s.name, s]));
      for (const f of r.failed) {
        const s = snap.get(f.name);
        const inv = s ? this.kfac.invertWithPolicy(s, this.mode) : null;
        if (inv) map.set(f.name, inv);
      }
    }
    this.kfac.installInverses(map, job.fromStep);
    const t: Transfer[] = [
      { role: 'inverse', kind: 'snapshots', dir: 'down', bytes: job.snapBytes },
      { role: 'inverse', kind: 'inverses', dir: 'up', bytes: payloadBytes(r.inverses) },
    ];
    this.transfers.push(...t);
    this.clock?.inverseInstalled(job.id, Object.values(r.blockMs), blocking, this.network?.phaseMs(t) ?? 0);
    this.stats.installed++;
    this.stats.installs.push({ fromStep: job.fromStep, step, ms: r.ms, threadId: r.threadId });
    this.job = null;
  }

  private async await(job: Job, step: number, blocking: boolean): Promise<void> {
    const r = await job.promise;
    this.install(job, r, step, blocking);
  }

  /** Called once per step k, after that step's statistics were folded in; returns the staleness now in force. */
  async poll(step: number): Promise<number> {
    const s = this.schedule;
    const job = this.job;
    if (job) {
      if (s.kind === 'async') {
        // let finished workers' messages in
        await new Promise((r) => setImmediate(r));
        if (job.error) throw job.error;
        if (job.result) this.install(job, job.result, step, false);
      } else if (step >= job.due) {
        await this.await(job, step, true);
      }
    }
    if (!this.job && this.lastSubmit !== step) {
      const first = this.kfac.inverseStep < 0;
      const due = s.kind === 'sync' ? first || step % s.every === 0 : true;
      if (due && this.kfac.blocks.some((b) => b.steps > 0)) {
        this.submit(step);
        if (first || s.kind === 'sync' || (s.kind === 'lagged' && s.lag === 0)) await this.await(this.job!, step, true);
      }
    }
    return this.kfac.staleness(step);
  }

  get inFlight(): boolean {
    return this.job !== null;
  }

  /** Waits for a job in flight (its result is dropped): used before closing the pool. */
  async drain(): Promise<void> {
    if (this.job) await this.job.promise.catch(() => undefined);
    this.job = null;
  }
}
