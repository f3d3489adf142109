/**
 * The distributed training loop: a ParameterServer stepped through the shared run session (src/train/session.ts:
 * CSV rows, evaluations, sidecar, stops, checkpoints, resume). Rows carry wall_seconds (real), sim_seconds (the
 * simulated cluster clock), inverse_staleness (K-FAC), the bytes each role exchanged and the modelled communication
 * time. A worker fault under onFault 'stop' ends the run with status 'failed' and the fault (role, step, error) in the
 * sidecar; the rows written before it stay; so does a transport failure (Redis lost, no worker left). Over Redis the
 * sidecar also has the transport's record (run id, workers seen, takeovers among the faults, messages rejected,
 * duplicates ignored, bytes through Redis). Workers are closed whatever happens.
 */
import type { RunConfig } from '../train/config';
import { runFingerprint, runSession, TrackedStream } from '../train/session';
import type { RunContext, RunSummary } from '../train/run';
import { polyakDecayOf } from '../train/trainer';
import { buildModel } from '../nn/zoo';
import { type DistConfig, type Injections, ParameterServer, type ParameterServerState } from './server';

export interface DistRunSummary extends RunSummary {
  simSeconds: number;
  faults: ParameterServer['faults'];
  inverseInstalls: number;
  /** mean inverse staleness over the steps (undefined for SGD) */
  meanStaleness?: number;
}

interface DistLoopState {
  ps: ParameterServerState;
  stream: ReturnType<TrackedStream['position']>;
  statsStream?: ReturnType<TrackedStream['position']>;
  stalenessSum: number;
}

export function runDistributedTraining(cfg: RunConfig, dist: DistConfig, ctx: RunContext, injections: Injections = {}): Promise<DistRunSummary> {
  const { data } = ctx;
  return runSession(cfg, ctx, {
    // where Redis is (and its timeouts) does not change what a run computes: a run may resume on another server
    fingerprint: runFingerprint(cfg, ctx, { distributed: { ...dist, redis: undefined } }),
    fromSidecar: (side) => ({
      simSeconds: side.summary?.simSeconds ?? 0,
      faults: ((side as { faults?: ParameterServer['faults'] }).faults ?? []) as ParameterServer['faults'],
      inverseInstalls: side.summary?.inverseInstalls ?? 0,
      meanStaleness: side.summary?.meanStaleness,
    }),
    build: async () => {
      const model = buildModel(cfg.model, [data.height, data.width, data.channels], data.numClasses, cfg.seed);
      const polyakDecay = polyakDecayOf(cfg, data);
      const ps = new ParameterServer(model, cfg, dist, data, polyakDecay, {
        experiment: ctx.experiment,
        dataset: { dataset: data.source.dataset, subset: data.source.subset },
      });
      ps.injections = injections;
      try {
        await ps.open();
      } catch (e) {
        await ps.close();
        ps.dispose();
        model.dispose();
        throw e;
      }
      // the stats worker reads its own stream (a different shuffle of the training set)
      const stream = new TrackedStream(data.train(cfg.seed));
      const statsStream = ps.kfac ? new TrackedStream(data.train(cfg.seed + 7919)) : null;
      const statsBz = cfg.optimizer.kind === 'kfac' ? (cfg.optimizer.statsBatch ?? cfg.batchSize) : cfg.batchSize;
      // async statistics: the stats worker draws its own batches when it is ready for the next one
      const asyncStats = dist.statsSchedule.kind === 'async';
      if (asyncStats && statsStream) ps.statsSource = () => statsStream.next(statsBz);
      let stalenessSum = 0;
      const meanStaleness = () => (ps.refresher ? stalenessSum / Math.max(1, ps.steps) : undefined);
      return {
        get steps() {
          return ps.steps;
        },
        get wallSeconds() {
          return ps.wallSeconds;
        },
        sidecarConfig: { polyakDecay, numParams: model.numParams(), distributed: dist },
        async step() {
          const batch = await stream.next(cfg.batchSize);
          const sb = statsStream && !asyncStats ? await statsStream.next(statsBz) : null;
          const r = await ps.step(batch, sb);
          stalenessSum += r.staleness ?? 0;
          const fields = {
            wall_seconds: ps.wallSeconds,
            sim_seconds: r.simSeconds,
            learning_rate: r.info.eta,
            kl_threshold: r.info.klThreshold,
            inverse_staleness: r.staleness,
            stats_batches: r.statsFolded,
            stats_staleness: r.statsStaleness,
            bytes_gradient: r.traffic.byRole.gradient,
            bytes_stats: ps.kfac ? r.traffic.byRole.stats : undefined,
            bytes_inverse: ps.kfac ? r.traffic.byRole.inverse : undefined,
            comm_seconds: r.commSeconds,
          };
          return { loss: r.loss, errors: r.errors, examples: batch.labels.length, fields };
        },
        evaluate: () => ps.trainer.evaluate(data.testBatches(500), cfg.evalExamples),
        state: (): DistLoopState => ({ ps: ps.state(), stream: stream.position(), statsStream: statsStream?.position(), stalenessSum }),
        async restore(saved) {
          const s = saved as DistLoopState;
          ps.restore(s.ps);
          await stream.seek(s.stream);
          if (statsStream && s.statsStream) await statsStream.seek(s.statsStream);
          stalenessSum = s.stalenessSum;
        },
        summary: () => ({
          simSeconds: ps.clock.seconds,
          simSecondsPerStep: ps.clock.seconds / Math.max(1, ps.steps),
          ...(ps.refresher && ps.kfac
            ? {
                inverseJobs: ps.refresher.stats.submitted,
                inverseInstalls: ps.refresher.stats.installed,
                meanStaleness: meanStaleness()!,
                kfacEvents: ps.kfac.events.length,
                statsBatches: ps.statsFolded,
                ...(ps.statsFolded ? { meanStatsStaleness: ps.statsStalenessSum / ps.statsFolded } : {}),
              }
            : {}),
          workerFaults: ps.faults.length,
          ...commSummary(ps),
        }),
        sidecarExtra: () => ({ faults: ps.faults, ...(ps.redis ? { transport: ps.redis.report() } : {}), ...(ps.calibrated ? { costCalibration: ps.calibrated.summary() } : {}) }),
        result: () => ({
          simSeconds: ps.clock.seconds,
          faults: ps.faults,
          inverseInstalls: ps.refresher?.stats.installed ?? 0,
          meanStaleness: meanStaleness(),
        }),
        async close() {
          await ps.close();
          await stream.close();
          await statsStream?.close();
        },
        dispose() {
          ps.dispose();
          model.dispose();
        },
      };
    },
  });
}

/** Mean bytes per step by role and kind, and the transport's own time per step (roles off this thread). */
function commSummary(ps: ParameterServer): Record<string, number> {
  const c = ps.comm;
  const n = Math.max(1, c.steps);
  const out: Record<string, number> = {};
  for (const [r, b] of Object.entries(c.byRole)) out[`bytesPerStep_${r}`] = b / n;
  for (const [k, b] of Object.entries(c.byKind)) out[`bytesPerStep_${k}`] = b / n;
  out.commSeconds = ps.clock.commSeconds;
  if (c.measured) {
    out.transportOverheadMsPerStep = c.overheadMs / c.measured;
    const sorted = [...(c.overheads ?? [])].sort((a, b) => a - b);
    if (sorted.length) out.transportOverheadMsMedian = sorted[Math.floor(sorted.length / 2)];
    out.computePhaseMsPerStep = c.phaseMs / c.measured;
  }
  if (ps.redis) {
    out.redisResultsApplied = ps.redis.applied;
    out.redisDuplicatesIgnored = ps.redis.duplicates;
    out.redisRejected = ps.redis.rejected.length;
  }
  return out;
}
