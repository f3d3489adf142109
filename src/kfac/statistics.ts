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
import { KfacError } from './errors';

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
  const shapes = model.preactShapes(M);
  const names = opts.blocks.map((b) => b.name);
  for (const n of names) if (!shapes.has(n)) throw new Error(`computeStatistics: the model has no layer ${n}`);
  const probes = names.map((n) => tf.zeros(shapes.get(n)!));
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
      for (const n of names) {
        const t = r.capture.inputs.get(n);
        if (!t) throw new Error(`computeStatistics: layer ${n} captured no input`);
        kept.set(n, tf.keep(t));
      }
      targets = fixedTargets ?? sampleTargets(r.logits, opts.rng!);
      return crossEntropy(r.logits, tf.tensor1d(targets, 'int32'));
    };
    const vg = tf.valueAndGrads(f)(probes);
    grads = vg.grads;
    loss = vg.value.dataSync()[0];
    vg.value.dispose();
    const stats = new Map<string, BlockStats>();
    opts.blocks.forEach((b, i) => {
      const s = b.batchStatistics(kept.get(b.name)!, grads[i]);
      checkStatsFinite(b.name, s);
      stats.set(b.name, s);
    });
    return { stats, loss, targets };
  } finally {
    const owned = new Set<tf.Tensor>();
    for (const t of kept.values()) if (t !== x) owned.add(t);
    tf.dispose([...owned, ...probes, ...grads]);
  }
}
