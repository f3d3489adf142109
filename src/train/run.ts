/**
 * One configured run trained to its example budget in this process (the single-process loop of every experiment):
 * the Trainer of trainer.ts driven by the run session (CSV rows, sidecar, checkpoints, resume) of session.ts.
 * Node only (files); the Trainer itself has no Node dependency and also runs in the browser demo.
 */
import { buildModel } from '../nn/zoo';
import type { RunConfig } from './config';
import { runFingerprint, runSession, TrackedStream } from './session';
import { makeOptimizer, polyakDecayOf, type RunContext, type RunSummary, Trainer, type TrainerState } from './trainer';

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
