/**
 * A model: a forward function over a parameter store, plus the list of its parameterised layers (what K-FAC
 * registers) and the bookkeeping of batch-norm running statistics.
 */
import * as tf from '@tensorflow/tfjs';
import { type BnBatchStats, type Capture, type ForwardOptions, type LayerInfo, Layers, ParamStore } from './layers';

export type ModelFn = (L: Layers, x: tf.Tensor4D) => tf.Tensor2D;

export interface ForwardResult {
  logits: tf.Tensor2D;
  /** batch statistics of every batch-norm layer (training mode only) */
  bnStats: Map<string, BnBatchStats>;
}

export class Model {
  readonly store: ParamStore;
  /** parameterised layers in call order, known after construction */
  readonly layers: LayerInfo[];

  constructor(
    readonly name: string,
    private readonly fn: ModelFn,
    readonly inputShape: [number, number, number],
    readonly numClasses: number,
    seed = 0,
  ) {
    this.store = new ParamStore(seed);
    const layers: LayerInfo[] = [];
    // Initialising pass on a tiny batch creates every parameter with its inferred shape.
    tf.tidy(() => {
      const x = tf.zeros([2, ...inputShape]) as tf.Tensor4D;
      const L = new Layers(this.store, { training: true }, layers);
      const logits = this.fn(L, x);
      if (logits.shape[1] !== numClasses) {
        throw new Error(`model ${name} produces ${logits.shape[1]} outputs, expected ${numClasses}`);
      }
    });
    this.layers = layers;
  }

  /** Runs the model. Call inside tf.tidy / tf.variableGrads: the result tensors are not tracked otherwise. */
  forward(x: tf.Tensor4D, opts: ForwardOptions): ForwardResult {
    const L = new Layers(this.store, opts);
    const logits = this.fn(L, x);
    return { logits, bnStats: L.bnStats };
  }

  /** Folds one step's batch statistics into the running averages used at inference. */
  updateBnState(stats: Map<string, BnBatchStats>, momentum = 0.9): void {
    tf.tidy(() => {
      for (const [name, s] of stats) {
        const m = this.store.state.get(`${name}/mean`)!;
        const v = this.store.state.get(`${name}/variance`)!;
        m.assign(tf.add(tf.mul(m, momentum), tf.mul(s.mean, 1 - momentum)));
        v.assign(tf.add(tf.mul(v, momentum), tf.mul(s.variance, 1 - momentum)));
      }
    });
  }

  /** Trainable parameters by name. */
  get params(): Map<string, tf.Variable> {
    return this.store.vars;
  }

  numParams(): number {
    return this.store.numParams();
  }

  /** Forward pass with zero probes added to every layer's pre-activation (see Capture). */
  forwardWithCapture(x: tf.Tensor4D, probes: Map<string, tf.Tensor>, opts: Omit<ForwardOptions, 'capture'>) {
    const capture: Capture = { inputs: new Map(), preacts: new Map(), probes };
    const r = this.forward(x, { ...opts, capture });
    return { ...r, capture };
  }

  /** The shapes of every layer's pre-activation for a batch of N (the probe shapes). */
  preactShapes(N: number): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const l of this.layers) {
      if (l.kind === 'dense') out.set(l.name, [N, l.outUnits]);
      else if (l.kind === 'conv2d') out.set(l.name, [N, l.outSize[0], l.outSize[1], l.outChannels]);
      else out.set(l.name, l.spatial ? this.bnSpatialShape(l.name, N) : [N, l.channels]);
    }
    return out;
  }

  private bnShapes: Map<string, number[]> | null = null;

  /** Spatial batch-norm shapes come from one traced pass (they follow whatever layer precedes them). */
  private bnSpatialShape(name: string, N: number): number[] {
    if (!this.bnShapes) {
      const shapes = new Map<string, number[]>();
      tf.tidy(() => {
        const x = tf.zeros([1, ...this.inputShape]) as tf.Tensor4D;
        const cap: Capture = { inputs: new Map(), preacts: new Map() };
        this.forward(x, { training: false, capture: cap });
        for (const [k, t] of cap.preacts) shapes.set(k, t.shape.slice(1));
      });
      this.bnShapes = shapes;
    }
    return [N, ...this.bnShapes.get(name)!];
  }

  dispose(): void {
    this.store.dispose();
  }
}

/** Mean softmax cross-entropy for integer labels (one-hot form: the gather gradient is missing on wasm). */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    const oh = tf.oneHot(labels, logits.shape[1]);
    return tf.neg(tf.mean(tf.sum(tf.mul(oh, logp), 1))) as tf.Scalar;
  });
}

/** Number of misclassified examples. */
export function errorCount(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => tf.sum(tf.cast(tf.notEqual(tf.argMax(logits, 1), labels), 'float32')));
}
