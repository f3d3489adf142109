/**
 * The distributed training loop: runTraining's loop (CSV rows, evaluations, sidecar) around a ParameterServer. Rows
 * carry wall_seconds (real), sim_seconds (the simulated cluster clock) and inverse_staleness. A worker fault under
 * onFault 'stop' ends the run with status 'failed' and the fault (role, step, error) in the sidecar; the rows written
 * before it stay. Workers are closed whatever happens.
 */
import type { RunConfig } from '../train/config';
import { gitInfo, machineInfo } from '../train/provenance';
import { progressBar } from '../train/progress';
import { RunWriter } from '../train/results';
import type { RunSidecar } from '../train/schema';
import { IntervalLog } from '../train/interval-log';
import { stopRequested, yieldAndCheckStop } from '../train/stop';
import type { RunContext, RunSummary } from '../train/trainer';
import { buildModel } from '../nn/zoo';
import { type DistConfig, type Injections, ParameterServer } from './server';

export interface DistRunSummary extends RunSummary {
  simSeconds: number;
  faults: ParameterServer['faults'];
  inverseInstalls: number;
  meanStaleness: number;
}

export async function runDistributedTraining(cfg: RunConfig, dist: DistConfig, ctx: RunContext, injections: Injections = {}): Promise<DistRunSummary> {
  const { data } = ctx;
  const model = buildModel(cfg.model, [data.height, data.width, data.channels], data.numClasses, cfg.seed);
  const stepsPerEpoch = Math.max(1, Math.round(data.epochSize / cfg.batchSize));
  const polyakDecay = cfg.polyak === 'epoch' ? Math.exp(-1 / stepsPerEpoch) : cfg.polyak;
  const ps = new ParameterServer(model, cfg, dist, data, polyakDecay);
  ps.injections = injections;
  const writer = new RunWriter(ctx.resultsDir, {
    experiment: ctx.experiment,
    run: cfg.run,
    label: cfg.label,
    method: cfg.method,
    batchSize: cfg.batchSize,
    profile: ctx.profile,
    config: { ...cfg, polyakDecay, numParams: model.numParams(), distributed: dist, ...(ctx.notes ? { notes: ctx.notes } : {}) },
    git: gitInfo(),
    backend: { name: ctx.backend.name, version: ctx.backend.version, detail: ctx.backend.detail },
    data: data.source,
    machine: machineInfo(),
    startedAt: new Date().toISOString(),
    status: 'running',
  });
  // the stats worker reads its own stream (a different shuffle of the training set)
  const stream = data.train(cfg.seed);
  const statsStream = data.train(cfg.seed + 7919);
  const statsBz = cfg.optimizer.kind === 'kfac' ? (cfg.optimizer.statsBatch ?? cfg.batchSize) : cfg.batchSize;
  const log = new IntervalLog(cfg, writer, () => ps.trainer.evaluate(data.testBatches(500), cfg.evalExamples));
  const totalSteps = log.totalSteps;
  const bar = progressBar(cfg.label, totalSteps);
  let stalenessSum = 0;
  let status: RunSidecar['status'] = 'finished';
  let error: string | undefined;
  try {
    for (let k = 1; k <= totalSteps; k++) {
      const batch = await stream.next(cfg.batchSize);
      const sb = await statsStream.next(statsBz);
      const r = await ps.step(batch, sb);
      stalenessSum += r.staleness;
      log.add(r.loss, r.errors, batch.labels.length);
      await log.endStep(
        k,
        {
          wall_seconds: ps.wallSeconds,
          sim_seconds: r.simSeconds,
          learning_rate: r.info.eta,
          kl_threshold: r.info.klThreshold,
          inverse_staleness: r.staleness,
        },
        stopRequested() !== null,
      );
      bar.update(k, { loss: log.lastTrainLoss.toFixed(3), 's/step': (ps.wallSeconds / k).toFixed(3) });
      const stop = await yieldAndCheckStop(k);
      if (stop) {
        status = 'stopped';
        error = stop;
        break;
      }
    }
  } catch (e) {
    status = 'failed';
    error = (e as Error).message;
  } finally {
    bar.stop();
    await ps.close();
    await stream.close();
    await statsStream.close();
  }
  const steps = ps.trainer.step;
  const summary = {
    run: cfg.run,
    csvPath: writer.csvPath,
    sidecarPath: writer.sidecarPath,
    status,
    steps,
    finalTrainLoss: log.lastTrainLoss,
    finalTestLoss: log.lastTest?.loss,
    finalTestError: log.lastTest?.error,
    wallSeconds: ps.wallSeconds,
    secondsPerStep: ps.wallSeconds / Math.max(1, steps),
    simSeconds: ps.clock.seconds,
    faults: ps.faults,
    inverseInstalls: ps.refresher.stats.installed,
    meanStaleness: stalenessSum / Math.max(1, steps),
  };
  writer.update({
    status,
    error,
    finishedAt: new Date().toISOString(),
    summary: {
      steps,
      wallSeconds: summary.wallSeconds,
      secondsPerStep: summary.secondsPerStep,
      simSeconds: summary.simSeconds,
      simSecondsPerStep: summary.simSeconds / Math.max(1, steps),
      finalTrainLoss: log.lastTrainLoss,
      inverseJobs: ps.refresher.stats.submitted,
      inverseInstalls: summary.inverseInstalls,
      meanStaleness: summary.meanStaleness,
      workerFaults: ps.faults.length,
      kfacEvents: ps.kfac.events.length,
      ...(log.lastTest ? { finalTestLoss: log.lastTest.loss, finalTestError: log.lastTest.error } : {}),
    },
    ...({ faults: ps.faults } as object),
  });
  ps.dispose();
  model.dispose();
  if (status === 'failed') console.error(`run ${cfg.run} failed: ${error}`);
  return summary;
}
