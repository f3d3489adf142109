/**
 * The distributed training loop: a ParameterServer stepped through the shared run session (src/train/session.ts:
 * CSV rows, evaluations, sidecar, stops, checkpoints, resume). Rows carry wall_seconds (real), sim_seconds (the
 * simulated cluster clock) and inverse_staleness (K-FAC). A worker fault under onFault 'stop' ends the run with status
 * 'failed' and the fault (role, step, error) in the sidecar; the rows written before it stay. Workers are closed
 * whatever happens.
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
    fingerprint: runFingerprint(cfg, ctx, { distributed: dist }),
    fromSidecar: (side) => ({
      simSeconds: side.summary?.simSeconds ?? 0,
      faults: ((side as { faults?: ParameterServer['faults'] }).faults ?? []) as ParameterServer['faults'],
      inverseInstalls: side.summary?.inverseInstalls ?? 0,
      meanStaleness: side.summary?.meanStaleness,
    }),
    build: () => {
      const model = buildModel(cfg.model, [data.height, data.width, data.channels], data.numClasses, cfg.seed);
      const polyakDecay = polyakDecayOf(cfg, data);
      const ps = new ParameterServer(model, cfg, dist, data, polyakDecay);
      ps.injections = injections;
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
        }),
        sidecarExtra: () => ({ faults: ps.faults }),
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
