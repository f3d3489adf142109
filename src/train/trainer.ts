/**
 * The training loop: readable top to bottom. One step = gradient of the mean cross-entropy on a batch →
 * preconditioner (identity for SGD) → step size (schedule or KL rule) → momentum update → Polyak average.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch, BatchStream, DataSource, Shard, SkipCounter, Split } from '../../data-pipeline/types';
import type { Model } from '../nn/model';
import { crossEntropy, errorCount } from '../nn/model';
import type { KfacError } from '../kfac/errors';
import { kfacParts } from '../kfac/optimizer';
import { gradientsAndStatistics, type StatisticsOptions, type StatisticsResult } from '../kfac/statistics';
import type { RunConfig } from './config';
import { assignTensors, saveTensors, type TensorData } from './tensors';
import type { CsvRow } from './schema';
import {
  decayInterval,
  type Grads,
  identityPreconditioner,
  MomentumUpdater,
  PolyakAverage,
  type Preconditioner,
  type StepInfo,
  stepsIn,
  type StepSize,
  stepSize,
} from './update';

/** What the trainer needs from the data pipeline. */
export interface TrainData {
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  /** training examples in one epoch (after any subset) */
  epochSize: number;
  /** a shuffled training stream; `shard` gives a disjoint part (e.g. the stats worker's own data) */
  train(seed: number, shard?: Shard): BatchStream;
  /** one in-order pass over the test set */
  testBatches(batchSize: number): AsyncIterable<Batch>;
  testCount: number;
  source: DataSource;
  /** image folders read with onBadImage 'skip': the unreadable images skipped (each run records its own in its sidecar) */
  skipped?: SkipCounter;
  close(): Promise<void>;
}

/** Test data held in memory, as an evaluation source (tests, small splits). */
export async function* splitBatches(split: Split, batchSize: number, dims: [number, number, number]): AsyncGenerator<Batch> {
  const per = dims[0] * dims[1] * dims[2];
  for (let i = 0; i < split.count; i += batchSize) {
    const m = Math.min(batchSize, split.count - i);
    yield { images: split.images.subarray(i * per, (i + m) * per), labels: split.labels.subarray(i, i + m), shape: [m, ...dims] };
  }
}

/**
 * How an optimizer plugs into the loop. SGD is `{ preconditioner: identity, stepSize: lr schedule }`; K-FAC supplies
 * its own preconditioner (which also sees each batch to update its curvature statistics) and the KL rule.
 */
export interface OptimizerParts {
  preconditioner: Preconditioner;
  stepSize: StepSize;
  momentum: number;
  weightDecay: number;
  /** called at each step with the batch, before the update (K-FAC: statistics, inverse refresh) */
  observe?(model: Model, x: tf.Tensor4D, step: number, labels?: tf.Tensor1D): void;
  /**
   * K-FAC: the statistics this step can take from the gradient's own forward pass (then folded with `fold` before
   * `observe`), or undefined.
   */
  jointStatistics?(step: number, batchSize: number): JointStatistics | undefined;
  /** extra per-row CSV fields, e.g. inverse staleness */
  rowFields?(): Partial<CsvRow>;
  /** numbers for the sidecar's summary at the end of the run */
  summary?(): Record<string, number>;
  /** the optimizer's own state for checkpoints (structured-cloneable), and its restore */
  state?(): unknown;
  restore?(state: unknown): void;
  dispose?(): void;
}

export type JointStatistics = StatisticsOptions & { fold(r: StatisticsResult | KfacError): void };

/** What an optimizer factory reads of a run's configuration (fitKfac builds one without the rest of a RunConfig). */
export type OptimizerRunConfig = Pick<RunConfig, 'optimizer' | 'batchSize' | 'bnChunk' | 'seed'>;

export type OptimizerFactory = (cfg: OptimizerRunConfig, model: Model, data: { epochSize: number }) => OptimizerParts;

const factories = new Map<string, OptimizerFactory>();

/** Optimizers register a factory for their config kind (sgd here, kfac in src/kfac). */
export function registerOptimizer(kind: string, f: OptimizerFactory): void {
  factories.set(kind, f);
}

registerOptimizer('sgd', (cfg, _model, data) => {
  const o = cfg.optimizer;
  if (o.kind !== 'sgd') throw new Error('unreachable');
  return {
    preconditioner: identityPreconditioner,
    stepSize: { kind: 'lr', lr: o.lr, decay: o.decay, interval: decayInterval(o.decay, data.epochSize, cfg.batchSize) },
    momentum: o.momentum,
    weightDecay: o.weightDecay,
  };
});

registerOptimizer('kfac', (cfg, model, data) => {
  const o = cfg.optimizer;
  if (o.kind !== 'kfac') throw new Error('unreachable');
  return kfacParts(o, model, { epochSize: data.epochSize, batchSize: cfg.batchSize, bnChunk: cfg.bnChunk, seed: cfg.seed });
});

export function makeOptimizer(cfg: OptimizerRunConfig, model: Model, data: { epochSize: number }): OptimizerParts {
  const f = factories.get(cfg.optimizer.kind);
  if (!f) throw new Error(`no optimizer registered for kind '${cfg.optimizer.kind}'`);
  return f(cfg, model, data);
}

export interface StepResult {
  loss: number;
  errors: number;
  info: StepInfo;
}

export class TrainingDivergedError extends Error {}

/** One model, its optimizer state and Polyak average; `step` is the whole update. */
export class Trainer {
  readonly momentum: MomentumUpdater;
  readonly polyak: PolyakAverage;
  step = 0;

  constructor(
    readonly model: Model,
    readonly opt: OptimizerParts,
    readonly cfg: Pick<RunConfig, 'bnChunk' | 'batchSize'>,
    polyakDecay: number,
  ) {
    this.momentum = new MomentumUpdater(opt.momentum);
    this.polyak = new PolyakAverage(polyakDecay);
  }

  /** Gradient of the mean cross-entropy (training mode, BN chunks of bnChunk) w.r.t. every trainable parameter. */
  gradients(x: tf.Tensor4D, y: tf.Tensor1D) {
    const named = [...this.model.params];
    const vars = named.map(([, v]) => v);
    let err: tf.Scalar | null = null;
    let bn = new Map<string, { mean: tf.Tensor1D; variance: tf.Tensor1D }>();
    const { value, grads } = tf.variableGrads(() => {
      const r = this.model.forward(x, { training: true, bnChunk: this.cfg.bnChunk });
      err = tf.keep(errorCount(r.logits, y));
      for (const s of r.bnStats.values()) {
        tf.keep(s.mean);
        tf.keep(s.variance);
      }
      bn = r.bnStats;
      return crossEntropy(r.logits, y);
    }, vars);
    const g: Grads = new Map();
    for (const [name, v] of named) g.set(name, grads[v.name]);
    return { loss: value, errors: err! as tf.Scalar, grads: g, bnStats: bn };
  }

  trainStep(batch: Batch): StepResult {
    const x = tf.tensor4d(batch.images, batch.shape);
    const y = tf.tensor1d(batch.labels, 'int32');
    try {
      return this.trainStepOn(x, y);
    } finally {
      x.dispose();
      y.dispose();
    }
  }

  /** One update on a batch already on the backend: images [N, H, W, C], integer labels [N] (not disposed). */
  trainStepOn(x: tf.Tensor4D, y: tf.Tensor1D): StepResult {
    const joint = this.opt.jointStatistics?.(this.step, x.shape[0]);
    const { loss, errors, grads, bnStats } = joint ? this.gradientsWithStatistics(x, y, joint) : this.gradients(x, y);
    try {
      this.opt.observe?.(this.model, x, this.step, y);
    } catch (e) {
      tf.dispose([loss, errors, ...grads.values(), ...[...bnStats.values()].flatMap((b) => [b.mean, b.variance])]);
      throw e;
    }
    const lossV = loss.dataSync()[0];
    const errV = errors.dataSync()[0];
    loss.dispose();
    errors.dispose();
    if (!Number.isFinite(lossV)) {
      tf.dispose([...grads.values()]);
      for (const s of bnStats.values()) tf.dispose([s.mean, s.variance]);
      throw new TrainingDivergedError(`training diverged at step ${this.step}: loss is ${lossV}`);
    }
    const pre = this.opt.preconditioner.precondition(grads, this.step);
    const info = stepSize(this.opt.stepSize, this.step, pre.vDotG);
    this.momentum.apply(this.model.params, pre.v, info.eta, this.opt.weightDecay);
    if (pre.v !== grads) tf.dispose([...pre.v.values()]);
    tf.dispose([...grads.values()]);
    this.model.updateBnState(bnStats);
    for (const s of bnStats.values()) tf.dispose([s.mean, s.variance]);
    this.polyak.update(this.averagedTensors());
    this.step++;
    return { loss: lossV, errors: errV, info };
  }

  /** `gradients` and, from the same forward pass, the statistics `joint` asks for (folded in here). */
  private gradientsWithStatistics(x: tf.Tensor4D, y: tf.Tensor1D, joint: JointStatistics) {
    const named = [...this.model.params];
    const r = gradientsAndStatistics(this.model, x, y, named.map(([, v]) => v), errorCount, { ...joint, bnChunk: this.cfg.bnChunk });
    joint.fold(r.statistics);
    const g: Grads = new Map();
    named.forEach(([name], i) => g.set(name, r.grads[i]!));
    return { loss: r.loss, errors: r.errors, grads: g, bnStats: r.bnStats };
  }

  /** Parameters and BN running statistics: what Polyak averaging covers. */
  private averagedTensors(): Map<string, tf.Tensor> {
    const m = new Map<string, tf.Tensor>(this.model.params);
    for (const [k, v] of this.model.store.state) m.set(k, v);
    return m;
  }

  /** Test loss and error at the Polyak-averaged parameters, over at most `limit` examples of `batches`. */
  async evaluate(batches: AsyncIterable<Batch>, limit = Infinity): Promise<{ loss: number; error: number }> {
    async function* tensors(): AsyncGenerator<{ x: tf.Tensor4D; y: tf.Tensor1D }> {
      let n = 0;
      for await (const b of batches) {
        const m = Math.min(b.shape[0], limit - n);
        if (m <= 0) break;
        const per = b.shape[1] * b.shape[2] * b.shape[3];
        yield {
          x: tf.tensor4d(b.images.subarray(0, m * per), [m, b.shape[1], b.shape[2], b.shape[3]]),
          y: tf.tensor1d(b.labels.subarray(0, m), 'int32'),
        };
        n += m;
        if (n >= limit) break;
      }
    }
    return this.evaluateTensors(tensors(), { averaged: true, dispose: true });
  }

  /**
   * Mean loss and error over batches of tensors (images [N, H, W, C], integer labels [N]) in inference mode, at the
   * Polyak-averaged parameters (`averaged`, the paper's evaluation) or at the live ones (what a tfjs user's
   * model.evaluate sees after training). `dispose`: the batches are disposed once used.
   */
  async evaluateTensors(
    batches: AsyncIterable<{ x: tf.Tensor4D; y: tf.Tensor1D }> | Iterable<{ x: tf.Tensor4D; y: tf.Tensor1D }>,
    opts: { averaged: boolean; dispose?: boolean },
  ): Promise<{ loss: number; error: number }> {
    const avg = opts.averaged && this.polyak.steps > 0 ? this.polyak.debiased() : null;
    const override = new Map<string, tf.Tensor>();
    const overrideState = new Map<string, tf.Tensor>();
    if (avg) {
      for (const [k, t] of avg) (this.model.store.state.has(k) ? overrideState : override).set(k, t);
    }
    let lossSum = 0;
    let errSum = 0;
    let n = 0;
    try {
      for await (const { x, y } of batches) {
        const m = x.shape[0];
        try {
          const [l, e] = tf.tidy(() => {
            const { logits } = this.model.forward(x, { training: false, override, overrideState });
            return [tf.mul(crossEntropy(logits, y), m), errorCount(logits, y)];
          });
          lossSum += l.dataSync()[0];
          errSum += e.dataSync()[0];
          tf.dispose([l, e]);
        } finally {
          if (opts.dispose) tf.dispose([x, y]);
        }
        n += m;
      }
    } finally {
      if (avg) tf.dispose([...avg.values()]);
    }
    return { loss: lossSum / n, error: errSum / n };
  }

  /** Everything needed to continue this run bit for bit (see checkpoint.ts). */
  state(): TrainerState {
    return {
      step: this.step,
      params: saveTensors(this.model.params),
      bnState: saveTensors(this.model.store.state),
      velocity: saveTensors(this.momentum.velocity),
      polyak: { avg: saveTensors(this.polyak.avg), steps: this.polyak.steps },
      optimizer: this.opt.state?.(),
    };
  }

  restore(s: TrainerState): void {
    assignTensors(this.model.params, s.params, 'parameter');
    assignTensors(this.model.store.state, s.bnState, 'batch-norm statistic');
    this.momentum.restore(s.velocity);
    this.polyak.restore(s.polyak.avg, s.polyak.steps);
    if (s.optimizer !== undefined) {
      if (!this.opt.restore) throw new Error('checkpoint has optimizer state but this optimizer keeps none');
      this.opt.restore(s.optimizer);
    }
    this.step = s.step;
  }

  dispose(): void {
    this.momentum.dispose();
    this.polyak.dispose();
    this.opt.dispose?.();
  }
}

export interface TrainerState {
  step: number;
  params: Map<string, TensorData>;
  bnState: Map<string, TensorData>;
  velocity: Map<string, TensorData>;
  polyak: { avg: Map<string, TensorData>; steps: number };
  optimizer?: unknown;
}

/** Polyak decay ξ of a run: the configured value, or exp(−1/steps per epoch) for 'epoch'. */
export function polyakDecayOf(cfg: RunConfig, data: { epochSize: number }): number {
  if (typeof cfg.polyak === 'number') return cfg.polyak;
  const examples = cfg.polyak === 'epoch' ? data.epochSize : cfg.polyak.examples;
  return Math.exp(-1 / stepsIn(examples, cfg.batchSize));
}
