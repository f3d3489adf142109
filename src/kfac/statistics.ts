/**
 * The stats worker's computation [P §3.2, Fig. 1]: one forward pass with zero probes added to every registered
 * layer's pre-activation, targets sampled from the model's own predictive distribution [P §2.1: "expectations are
 * taken with respect to P (and not the training distribution over y)"], and tf.grads of the mean cross-entropy
 * with respect to the probes, which gives Ds/M for every layer at once. Each block turns its layer's captured
 * input and Ds into its batch statistics.
 */
import * as tf from '@tensorflow/tfjs';
import { crossEntropy, type Model } from '../nn/model';
import { type BlockStats, checkStatsFinite, type FisherBlock } from './blocks';
import { gradientsOnOneTape } from '../backend/tape';
import { assertFinite, KfacError } from './errors';

/**
 * One categorical sample per example from softmax(logits), by inverse CDF on the probabilities read back, with the
 * JS RNG `rng` (uniform in [0, 1)); deterministic for a seeded rng. (tf.multinomial is not used: missing on wasm.)
 */
export function sampleTargets(logits: tf.Tensor2D, rng: () => number): Int32Array {
  const [N, K] = logits.shape;
  const p = tf.softmax(logits);
  const probs = p.dataSync();
  p.dispose();
  const out = new Int32Array(N);
  for (let n = 0; n < N; n++) {
    const u = rng();
    let acc = 0;
    let k = 0;
    for (; k < K - 1; k++) {
      const pk = probs[n * K + k];
      if (Number.isNaN(pk)) throw new KfacError('output', 'statistics', `softmax probability of example ${n} is NaN`);
      acc += pk;
      if (u < acc) break;
    }
    out[n] = k;
  }
  return out;
}

/**
 * `sampleTargets`, naming the layer where a non-finite value came from when the output distribution is NaN: the first
 * block (in the model's order) whose captured input has a NaN or ±Infinity entry (read back only on this failure
 * path), as the statistics check would have named it; else the output.
 */
function sampleTargetsOf(logits: tf.Tensor2D, rng: () => number, names: string[], inputs: tf.Tensor[]): Int32Array {
  try {
    return sampleTargets(logits, rng);
  } catch (e) {
    if (!(e instanceof KfacError)) throw e;
    names.forEach((n, i) => assertFinite(inputs[i]!.dataSync(), n, 'statistics', "input (and so the model's output distribution, NaN)"));
    throw e;
  }
}

export interface StatisticsOptions {
  /** the blocks whose statistics to compute (from registerBlocks) */
  blocks: readonly FisherBlock[];
  /** true: targets sampled from the model (the true Fisher, the paper's choice); 'empirical': the given labels */
  sampled: true | 'empirical';
  /** true labels, required for 'empirical' */
  labels?: tf.Tensor1D | Int32Array | number[];
  /** uniform [0, 1) generator for the sampled targets (seeded for reproducibility) */
  rng?: () => number;
  /** batch-norm chunk size (rbz) of the forward pass */
  bnChunk?: number;
  /** batch norm in training mode (batch statistics), default true */
  training?: boolean;
}

export interface StatisticsResult {
  /** per block name, the batch's statistics, to be folded in with block.accumulate */
  stats: Map<string, BlockStats>;
  /** mean cross-entropy against the targets used */
  loss: number;
  /** the targets the derivatives were taken against (sampled or the labels) */
  targets: Int32Array;
}

/** Zero probes for every block's pre-activation (batch M), on the backend; checks the model has the layers. */
function zeroProbes(model: Model, M: number, names: string[], caller: string): tf.Tensor[] {
  const shapes = model.preactShapes(M);
  for (const n of names) if (!shapes.has(n)) throw new Error(`${caller}: the model has no layer ${n}`);
  return names.map((n) => tf.fill(shapes.get(n)!, 0)); // Fill runs on the backend (tf.zeros builds the zeros in JS)
}

/** The captured input of every named layer. */
function capturedInputs(capture: { inputs: Map<string, tf.Tensor> }, names: string[], caller: string): tf.Tensor[] {
  return names.map((n) => {
    const t = capture.inputs.get(n);
    if (!t) throw new Error(`${caller}: layer ${n} captured no input`);
    return t;
  });
}

/** Every block's statistics from its layer's captured input and Ds; throws KfacError when one is not finite. */
function blockStatistics(blocks: readonly FisherBlock[], inputs: tf.Tensor[], ds: tf.Tensor[]): Map<string, BlockStats> {
  const stats = new Map<string, BlockStats>();
  blocks.forEach((b, i) => {
    const s = b.batchStatistics(inputs[i]!, ds[i]!);
    checkStatsFinite(b.name, s);
    stats.set(b.name, s);
  });
  return stats;
}

/**
 * Batch statistics of every block for the inputs `x` at the model's current parameters. Leaves no tensors behind.
 * Throws KfacError(layer, 'statistics') if a block's statistics are not finite.
 */
export function computeStatistics(model: Model, x: tf.Tensor4D, opts: StatisticsOptions): StatisticsResult {
  const M = x.shape[0];
  let fixedTargets: Int32Array | null = null;
  if (opts.sampled === 'empirical') {
    if (!opts.labels) throw new Error("computeStatistics: sampled = 'empirical' needs labels");
    fixedTargets = opts.labels instanceof tf.Tensor ? Int32Array.from(opts.labels.dataSync()) : Int32Array.from(opts.labels);
    if (fixedTargets.length !== M) throw new Error(`computeStatistics: ${fixedTargets.length} labels for ${M} examples`);
  } else if (!opts.rng) {
    throw new Error('computeStatistics: sampled targets need an rng');
  }
  const names = opts.blocks.map((b) => b.name);
  const probes = zeroProbes(model, M, names, 'computeStatistics');
  const kept = new Map<string, tf.Tensor>();
  let targets: Int32Array = new Int32Array(0);
  let loss = Number.NaN;
  let grads: tf.Tensor[] = [];
  try {
    const f = (...ps: tf.Tensor[]): tf.Scalar => {
      const r = model.forwardWithCapture(x, new Map(names.map((n, i) => [n, ps[i]])), {
        training: opts.training ?? true,
        bnChunk: opts.bnChunk,
      });
      // the captured inputs must outlive the gradient scope
      const inputs = capturedInputs(r.capture, names, 'computeStatistics');
      inputs.forEach((t, i) => kept.set(names[i]!, tf.keep(t)));
      targets = fixedTargets ?? sampleTargetsOf(r.logits, opts.rng!, names, inputs);
      return crossEntropy(r.logits, tf.tensor1d(targets, 'int32'));
    };
    const vg = tf.valueAndGrads(f)(probes);
    grads = vg.grads;
    loss = vg.value.dataSync()[0];
    vg.value.dispose();
    const stats = blockStatistics(opts.blocks, names.map((n) => kept.get(n)!), grads);
    return { stats, loss, targets };
  } finally {
    const owned = new Set<tf.Tensor>();
    for (const t of kept.values()) if (t !== x) owned.add(t);
    tf.dispose([...owned, ...probes, ...grads]);
  }
}

/** The gradient-step half of `gradientsAndStatistics`: what a training step needs besides the statistics. */
export interface StepGradients {
  /** mean cross-entropy against the true labels */
  loss: tf.Scalar;
  /** misclassified examples */
  errors: tf.Scalar;
  /** d loss / d var, in the order of `vars` */
  grads: tf.Tensor[];
  /** batch-norm batch statistics of the forward pass, by layer */
  bnStats: Map<string, { mean: tf.Tensor1D; variance: tf.Tensor1D }>;
}

/**
 * A training step's gradient and the statistics of every block from ONE forward pass (src/backend/tape.ts): one
 * backward pass gives d loss / d vars (true labels) and a second one d loss_targets / d s for every layer's
 * pre-activation s (targets sampled from the same logits; with the empirical Fisher the two losses are one and so is
 * the backward pass). No probes are needed: the second pass reads the gradient at the pre-activations themselves,
 * which is exactly what the probes of `computeStatistics` measure (d/dp of s + p is d/ds). Numerically this is the
 * separate computation (`computeStatistics` then the gradient). Saves a forward pass per K-FAC step. The statistics
 * come back as a KfacError instead when they are not finite (the gradient is still valid). `errorCount` counts the
 * errors.
 */
export function gradientsAndStatistics(
  model: Model,
  x: tf.Tensor4D,
  labels: tf.Tensor1D,
  vars: tf.Variable[],
  errorCount: (logits: tf.Tensor2D, labels: tf.Tensor1D) => tf.Scalar,
  opts: StatisticsOptions,
): StepGradients & { statistics: StatisticsResult | KfacError } {
  if (opts.sampled !== 'empirical' && !opts.rng) throw new Error('gradientsAndStatistics: sampled targets need an rng');
  const names = opts.blocks.map((b) => b.name);
  const empirical = opts.sampled === 'empirical';
  let targets: Int32Array = new Int32Array(0);
  let bnNames: string[] = [];
  const run = gradientsOnOneTape(() => {
    const r = model.forwardWithCapture(x, new Map(), { training: true, bnChunk: opts.bnChunk });
    const inputs = capturedInputs(r.capture, names, 'gradientsAndStatistics');
    const preacts = names.map((n) => {
      const t = r.capture.preacts.get(n);
      if (!t) throw new Error(`gradientsAndStatistics: the model has no layer ${n}`);
      return t;
    });
    const loss = crossEntropy(r.logits, labels);
    const bn = [...r.bnStats].map(([k, s]) => [k, s.mean, s.variance] as const);
    const extra = { errors: errorCount(r.logits, labels), inputs, bnMeans: bn.map((b) => b[1]), bnVars: bn.map((b) => b[2]) };
    bnNames = bn.map((b) => b[0]);
    if (empirical) return { outputs: [loss], wrt: [[...vars, ...preacts]], extra };
    targets = sampleTargetsOf(r.logits, opts.rng!, names, inputs);
    return { outputs: [loss, crossEntropy(r.logits, tf.tensor1d(targets, 'int32'))], wrt: [vars, preacts], extra };
  });
  const [loss, statsLoss] = run.values;
  const grads = run.grads[0]!.slice(0, vars.length);
  const ds = empirical ? run.grads[0]!.slice(vars.length) : run.grads[1]!;
  const bnStats = new Map(bnNames.map((k, i) => [k, { mean: run.extra.bnMeans[i] as tf.Tensor1D, variance: run.extra.bnVars[i] as tf.Tensor1D }]));
  let statistics: StatisticsResult | KfacError;
  try {
    const stats = blockStatistics(opts.blocks, run.extra.inputs, ds);
    statistics = { stats, loss: (statsLoss ?? loss!).dataSync()[0]!, targets: empirical ? Int32Array.from(labels.dataSync()) : targets };
  } catch (e) {
    if (!(e instanceof KfacError)) throw e;
    statistics = e;
  } finally {
    const owned = new Set<tf.Tensor>(run.extra.inputs.filter((t) => t !== x));
    tf.dispose([...owned, ...ds, ...(statsLoss ? [statsLoss] : [])]);
  }
  return { loss: loss!, errors: run.extra.errors, grads, bnStats, statistics };
}
