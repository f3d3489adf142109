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
import type { CsvRow, RunSidecar } from '../train/schema';
import { stopRequested } from '../train/stop';
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
  const totalSteps = Math.ceil(cfg.examples / cfg.batchSize);
  const evalAt = new Set<number>();
  for (let i = 1; i <= cfg.evals; i++) evalAt.add(Math.round((i * totalSteps) / cfg.evals));
  evalAt.add(totalSteps);
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
  const bar = progressBar(cfg.label, totalSteps);
  let lossAcc = 0;
  let errAcc = 0;
  let nAcc = 0;
  let stalenessSum = 0;
  let lastTrainLoss = NaN;
  let lastTest: { loss: number; error: number } | undefined;
  let status: RunSidecar['status'] = 'finished';
  let error: string | undefined;
  try {
    for (let k = 1; k <= totalSteps; k++) {
      const batch = await stream.next(cfg.batchSize);
      const sb = await statsStream.next(statsBz);
      const r = await ps.step(batch, sb);
      stalenessSum += r.staleness;
      lossAcc += r.loss * batch.labels.length;
      errAcc += r.errors;
      nAcc += batch.labels.length;
      const isEval = evalAt.has(k);
      if (k % cfg.logEvery === 0 || isEval) {
        lastTrainLoss = lossAcc / nAcc;
        const row: CsvRow = {
          step: k,
          examples: k * cfg.batchSize,
          wall_seconds: ps.wallSeconds,
          sim_seconds: r.simSeconds,
          train_loss: lastTrainLoss,
          train_error: errAcc / nAcc,
          learning_rate: r.info.eta,
          kl_threshold: r.info.klThreshold,
          inverse_staleness: r.staleness,
        };
        if (isEval) {
          lastTest = await ps.trainer.evaluate(data.testBatches(500), cfg.evalExamples);
          row.test_loss = lastTest.loss;
          row.test_error = lastTest.error;
        }
        writer.append(row);
        lossAcc = errAcc = nAcc = 0;
      }
      bar.update(k, { loss: lastTrainLoss.toFixed(3), 's/step': (ps.wallSeconds / k).toFixed(3) });
      await new Promise((r) => setImmediate(r)); // timers (progress outside a terminal) and Ctrl-C get to run
      if (stopRequested()) {
        status = 'stopped';
        error = `stopped by ${stopRequested()} after step ${k}`;
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
    finalTrainLoss: lastTrainLoss,
    finalTestLoss: lastTest?.loss,
    finalTestError: lastTest?.error,
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
      finalTrainLoss: lastTrainLoss,
      inverseJobs: ps.refresher.stats.submitted,
      inverseInstalls: summary.inverseInstalls,
      meanStaleness: summary.meanStaleness,
      workerFaults: ps.faults.length,
      kfacEvents: ps.kfac.events.length,
      ...(lastTest ? { finalTestLoss: lastTest.loss, finalTestError: lastTest.error } : {}),
    },
    ...({ faults: ps.faults } as object),
  });
  ps.dispose();
  model.dispose();
  if (status === 'failed') console.error(`run ${cfg.run} failed: ${error}`);
  return summary;
}
