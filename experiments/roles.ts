/**
 * The paper's GPU roles (section 6: "the GPUs were used as gradient workers ... with the CPUs acting as a parameter
 * server"; in Figures 3–5 one GPU of K-FAC's is its stats worker) as distributed configurations, shared by the
 * ImageNet figures (3, 5, 7):
 *   - SGD / SGD+BN: every GPU is a gradient worker (synchronous SGD);
 *   - dist.K-FAC:   GPUs − 1 gradient workers and one stats worker (the split is inferred from the paper's "K-FAC uses
 *                   GPU 4 as stats worker", not stated), inverses on CPU threads.
 * Both go through the distributed runtime (src/distributed), so their simulated cluster clocks compare. On a 2-vCPU
 * machine the gradient shards run in-line one after another and the stats batch in-line too; their measured costs
 * feed the simulated clock (src/distributed/clock.ts), which runs them in parallel.
 */
import { z } from 'zod';
import { CostClockSetting, type DistConfigInput } from '../src/distributed/server';

export const Roles = z.strictObject({
  /** GPUs of the paper's setup for this figure */
  gpus: z.number().int().min(2).max(16),
  /** inverse threads (the simulated clock schedules inverse blocks on this many; the real pool has at most 2) */
  inverseThreads: z.number().int().min(1).max(64).default(2),
  /**
   * K-FAC's inverses: 'async' (the distributed K-FAC: inverse threads, installed whenever they finish), 'lagged' (its
   * deterministic in-line stand-in: computed in-line from step s's factors and installed at step s + lag; the
   * simulated clock still runs them on the inverse threads, beside the steps) or 'sync' every `syncEvery` steps,
   * waited for
   */
  inverse: z.enum(['async', 'lagged', 'sync']).default('async'),
  syncEvery: z.number().int().positive().default(20),
  lag: z.number().int().min(0).default(5),
  /** gradient shards and the stats batch: one after another in this thread ('inline', the 2-vCPU default) or on threads */
  transport: z.enum(['inline', 'thread']).default('inline'),
  /**
   * what the simulated clock times the roles with: elapsed time ('wall'), this process's CPU time ('cpu', which
   * other processes sharing the cores do not inflate; every role in-line, so K-FAC's inverses are computed in-line
   * too and the inverse schedule must be 'lagged' or 'sync'), or CPU time calibrated against a reference workload
   * timed before every step ('calibrated': the machine's own speed drift removed as well; in-line like 'cpu')
   */
  costClock: CostClockSetting.default('wall'),
});
export type Roles = z.infer<typeof Roles>;

/**
 * SGD's configuration: every GPU a gradient worker. A gradient worker normalises over its own shard only, so with
 * a BN chunk (rbz) larger than batch/GPUs fewer, larger shards are used (one per chunk): batch-norm statistics across
 * workers are not modelled.
 */
export function sgdDist(r: Roles, batchSize: number, rbz?: number): DistConfigInput {
  const workers = rbz ? Math.max(1, Math.min(r.gpus, Math.floor(batchSize / rbz))) : r.gpus;
  return { gradientWorkers: workers, gradients: r.transport, stats: 'inline', inverses: 'inline', costClock: r.costClock, onFault: 'stop' };
}

/** dist.K-FAC's configuration: GPUs − 1 gradient workers, one stats worker, inverses on threads (in-line under 'cpu' and 'calibrated'). */
export function kfacDist(r: Roles): DistConfigInput {
  return {
    gradientWorkers: r.gpus - 1,
    gradients: r.transport,
    stats: r.transport,
    inverses: r.costClock === 'wall' ? 'thread' : 'inline',
    inverseThreads: r.inverseThreads,
    costClock: r.costClock,
    inverse: r.inverse === 'sync' ? { kind: 'sync', every: r.syncEvery } : r.inverse === 'lagged' ? { kind: 'lagged', lag: r.lag } : { kind: 'async' },
    onFault: 'stop',
  };
}
