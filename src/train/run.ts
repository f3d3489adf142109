/**
 * One configured run trained to its example budget in this process (the single-process loop of every experiment):
 * the Trainer of trainer.ts driven by the run session (CSV rows, sidecar, checkpoints, resume) of session.ts.
 * Node only (files); the Trainer itself has no Node dependency and also runs in the browser demo.
 */
import type { BackendInfo } from '../backend';
import { buildModel } from '../nn/zoo';
import type { RunConfig } from './config';
import type { RunSidecar } from './schema';
import { runFingerprint, runSession, TrackedStream } from './session';
import { makeOptimizer, polyakDecayOf, type TrainData, Trainer, type TrainerState } from './trainer';

export interface RunContext {
  experiment: string;
  profile: string;
  resultsDir: string;
  backend: BackendInfo;
  data: TrainData;
  /** extra fields for the sidecar (e.g. where tuned settings came from) */
  notes?: Record<string, unknown>;
  /** continue from the run's checkpoint where there is one; skip the run when its sidecar says it finished */
  resume?: boolean;
  /**
   * the figure line this run is one seed of (its run id without the `-s<seed>` suffix); recorded in the sidecar with
   * the seed, so reports average the seeds of a line (default: the run id)
   */
  group?: string;
}

export interface RunSummary {
  run: string;
  csvPath: string;
  sidecarPath: string;
  status: RunSidecar['status'];
  steps: number;
  finalTrainLoss: number;
  finalTestLoss?: number;
  finalTestError?: number;
  wallSeconds: number;
  secondsPerStep: number;
  /** the run had finished before and was skipped (resume) */
  skipped?: boolean;
  /** the step of the checkpoint this run was continued from (resume) */
  resumedFrom?: number;
}


/**
 * Trains one configured run to its example budget in this process, writing its CSV and sidecar (and checkpoints;
 * with ctx.resume it continues from the last one: see session.ts).
 */
export function runTraining(cfg: RunConfig, ctx: RunContext): Promise<RunSummary> {
  const { data } = ctx;
  return runSession(cfg, ctx, {
    fingerprint: runFingerprint(cfg, ctx),
    fromSidecar: () => ({}),
    build: () => {
      const model = buildModel(cfg.model, [data.height, data.width, data.channels], data.numClasses, cfg.seed);
      const opt = makeOptimizer(cfg, model, data);
      const polyakDecay = polyakDecayOf(cfg, data);
      const trainer = new Trainer(model, opt, cfg, polyakDecay);
      const stream = new TrackedStream(data.train(cfg.seed));
      let wall = 0;
      return {
        get steps() {
          return trainer.step;
        },
        get wallSeconds() {
          return wall;
        },
        sidecarConfig: { polyakDecay, numParams: model.numParams() },
        async step() {
          const batch = await stream.next(cfg.batchSize);
          const t0 = performance.now();
          const r = trainer.trainStep(batch);
          wall += (performance.now() - t0) / 1000;
          const fields = { wall_seconds: wall, sim_seconds: wall, learning_rate: r.info.eta, kl_threshold: r.info.klThreshold, ...opt.rowFields?.() };
          return { loss: r.loss, errors: r.errors, examples: batch.labels.length, fields };
        },
        evaluate: () => trainer.evaluate(data.testBatches(500), cfg.evalExamples),
        state: (): SingleProcessState => ({ trainer: trainer.state(), stream: stream.position(), wall }),
        async restore(saved) {
          const s = saved as SingleProcessState;
          trainer.restore(s.trainer);
          await stream.seek(s.stream);
          wall = s.wall;
        },
        summary: () => opt.summary?.() ?? {},
        result: () => ({}),
        close: () => stream.close(),
        dispose() {
          trainer.dispose();
          model.dispose();
        },
      };
    },
  });
}

interface SingleProcessState {
  trainer: TrainerState;
  stream: ReturnType<TrackedStream['position']>;
  wall: number;
}
