/**
 * Layers as functions of explicit parameters.
 *
 * A model is a plain function `(L: Layers, x) => logits` that calls `L.dense`, `L.conv2d`, `L.batchNorm`, pooling and
 * concatenation. Parameters live in a `ParamStore` keyed by layer name; they are created lazily, with shapes inferred
 * from the first call (define-by-run, like Haiku/Flax), and looked up by name on every later call, so the same model
 * function runs on the live variables, on a Polyak average, or on any other set of tensors.
 *
 * Every weight layer (dense, conv2d) and every batch-norm scale/shift reports what K-FAC needs when a `Capture` is
 * attached to the forward pass: the layer's input activations and its pre-activations. A zero "probe" tensor can be
 * added to each pre-activation: the gradient of a loss with respect to that probe is exactly the back-propagated
 * derivative Ds = dL/ds of the pre-activation, which is how K-FAC's G factors are formed.
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { chunkedBatchNorm } from '../backend/fused-ops';

export type Padding = 'same' | 'valid';

/** What K-FAC needs to know about each parameterised layer. */
export type LayerInfo =
  | {
      kind: 'dense';
      name: string;
      weight: string;
      bias?: string;
      inUnits: number;
      outUnits: number;
      /** per-example shape of the input before it was flattened, e.g. [6, 6, 256] (doubly-factored layers) */
      inputShape: number[];
    }
  | {
      kind: 'conv2d';
      name: string;
      weight: string;
      bias?: string;
      kernel: [number, number];
      strides: [number, number];
      padding: Padding;
      inChannels: number;
      outChannels: number;
      /** input spatial size [H, W] and output spatial size [Ho, Wo] for the model's input resolution */
      inSize: [number, number];
      outSize: [number, number];
    }
  | {
      kind: 'batchnorm';
      name: string;
      scale: string;
      shift: string;
      channels: number;
      /** true when the normalised tensor is NHWC (after a conv), false for [N, C] */
      spatial: boolean;
    };

/**
 * Records, per layer name, the tensors K-FAC uses. `inputs`: the activations entering a dense/conv layer (for conv,
 * the unpadded NHWC input), or the normalised x̂ of a batch-norm layer. `preacts`: the layer's output before any
 * nonlinearity (after the probe was added). `probes`: optional zero tensors, same shape as the pre-activation,
 * added to it so that d loss / d probe = Ds.
 */
export interface Capture {
  inputs: Map<string, tf.Tensor>;
  preacts: Map<string, tf.Tensor>;
  probes?: Map<string, tf.Tensor>;
}

/** Trainable parameters and non-trainable state (batch-norm running statistics), by name. */
export class ParamStore {
  /** trainable parameters by layer-qualified name, e.g. 'conv1/kernel' */
  readonly vars = new Map<string, tf.Variable>();
  /** non-trainable state by name, e.g. 'conv1_bn/mean' */
  readonly state = new Map<string, tf.Variable>();
  /** trainable parameters owned elsewhere (a tfjs layer's own variables, see from-layers.ts): never disposed here */
  private readonly borrowed = new Set<string>();
  private static instances = 0;
  /** tfjs variable names are global: each store prefixes its own so several models can live in one process */
  readonly prefix = `m${ParamStore.instances++}`;

  constructor(readonly seed = 0) {}

  /** The tfjs variable name of a parameter. */
  tfName(name: string): string {
    return `${this.prefix}/${name}`;
  }

  /** A seeded RNG per parameter so initialisation does not depend on creation order elsewhere. */
  rng(name: string): () => number {
    return seedrandom(`${this.seed}:${name}`);
  }

  /** Trains a variable owned elsewhere as parameter `name` (it is not disposed with the store). */
  adopt(name: string, v: tf.Variable): void {
    if (this.vars.has(name)) throw new Error(`parameter ${name} exists already`);
    if (!v.trainable) throw new Error(`parameter ${name}: the variable is not trainable`);
    this.vars.set(name, v);
    this.borrowed.add(name);
  }

  trainable(): tf.Variable[] {
    return [...this.vars.values()];
  }

  dispose(): void {
    for (const [k, v] of this.vars) if (!this.borrowed.has(k)) v.dispose();
    for (const v of this.state.values()) v.dispose();
    this.vars.clear();
    this.state.clear();
    this.borrowed.clear();
  }

  numParams(): number {
    let n = 0;
    for (const v of this.vars.values()) n += v.size;
    return n;
  }
}

/** He-normal initialisation from a seeded RNG (Box–Muller), independent of tfjs's global RNG. */
export function heNormal(shape: number[], fanIn: number, rng: () => number): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(size);
  const std = Math.sqrt(2 / fanIn);
  for (let i = 0; i < size; i += 2) {
    const u1 = Math.max(rng(), 1e-12);
    const u2 = rng();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2) * std;
    if (i + 1 < size) out[i + 1] = r * Math.sin(2 * Math.PI * u2) * std;
  }
  return tf.tensor(out, shape);
}

export interface ForwardOptions {
  /** training mode: batch norm uses batch statistics (per chunk of `bnChunk` examples) */
  training: boolean;
  /** the paper's "rbz": batch-norm statistics over chunks of this many examples (default: the whole batch) */
  bnChunk?: number;
  capture?: Capture;
  /** parameters to use instead of the live variables (e.g. the Polyak average), by name */
  override?: Map<string, tf.Tensor>;
  /** batch-norm running statistics to use instead of the live state, by name */
  overrideState?: Map<string, tf.Tensor>;
}

export interface DenseOptions {
  units: number;
  bias?: boolean;
}

export interface ConvOptions {
  filters: number;
  kernel: number | [number, number];
  strides?: number | [number, number];
  padding?: Padding;
  bias?: boolean;
}

function pair(v: number | [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}

function outSize(inSize: number, k: number, s: number, padding: Padding): number {
  return padding === 'same' ? Math.ceil(inSize / s) : Math.floor((inSize - k) / s) + 1;
}

/** Batch statistics of one forward pass, folded into the running averages after the step. */
export interface BnBatchStats {
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
}

/**
 * The layer functions bound to a parameter store and the options of one forward pass. Create one per forward pass
 * (it is cheap); `layers` lists every parameterised layer in call order once the model has run.
 */
export class Layers {
  /** batch statistics computed in this forward pass (training mode), by batch-norm layer name */
  readonly bnStats = new Map<string, BnBatchStats>();

  constructor(
    readonly store: ParamStore,
    readonly opts: ForwardOptions,
    /** filled on the initialising pass only */
    readonly layers: LayerInfo[] | null = null,
  ) {}

  private param(name: string, init: () => tf.Tensor): tf.Tensor {
    const o = this.opts.override?.get(name);
    if (o) return o;
    let v = this.store.vars.get(name);
    if (!v) {
      if (!this.layers) throw new Error(`parameter ${name} does not exist: the model was not initialised with this layer`);
      v = tf.variable(init(), true, this.store.tfName(name));
      this.store.vars.set(name, v);
    }
    return v;
  }

  private stateVar(name: string, init: () => tf.Tensor): tf.Tensor {
    const o = this.opts.overrideState?.get(name);
    if (o) return o;
    let v = this.store.state.get(name);
    if (!v) {
      if (!this.layers) throw new Error(`state ${name} does not exist: the model was not initialised with this layer`);
      v = tf.variable(init(), false, this.store.tfName(name));
      this.store.state.set(name, v);
    }
    return v;
  }

  private record(name: string, input: tf.Tensor, preact: tf.Tensor): tf.Tensor {
    const cap = this.opts.capture;
    if (!cap) return preact;
    const probe = cap.probes?.get(name);
    const s = probe ? tf.add(preact, probe) : preact;
    cap.inputs.set(name, input);
    cap.preacts.set(name, s);
    return s;
  }

  /** y = x W + b with W of shape [in, out] (the tfjs kernel layout). Returns the pre-activation. */
  dense(name: string, x: tf.Tensor, o: DenseOptions): tf.Tensor2D {
    const x2 = x.rank === 2 ? (x as tf.Tensor2D) : (x.reshape([x.shape[0], -1]) as tf.Tensor2D);
    const inputShape = x.shape.slice(1);
    const inUnits = x2.shape[1];
    const useBias = o.bias ?? true;
    const w = this.param(`${name}/kernel`, () => heNormal([inUnits, o.units], inUnits, this.store.rng(`${name}/kernel`)));
    let s = tf.matMul(x2, w as tf.Tensor2D);
    if (useBias) s = tf.add(s, this.param(`${name}/bias`, () => tf.zeros([o.units])));
    this.layers?.push({
      kind: 'dense',
      name,
      weight: `${name}/kernel`,
      bias: useBias ? `${name}/bias` : undefined,
      inUnits,
      outUnits: o.units,
      inputShape,
    });
    return this.record(name, x2, s) as tf.Tensor2D;
  }

  /** NHWC convolution with a [kh, kw, in, out] kernel. Returns the pre-activation. */
  conv2d(name: string, x: tf.Tensor4D, o: ConvOptions): tf.Tensor4D {
    const [kh, kw] = pair(o.kernel);
    const strides = pair(o.strides ?? 1);
    const padding = o.padding ?? 'same';
    const inC = x.shape[3];
    const useBias = o.bias ?? true;
    const w = this.param(`${name}/kernel`, () =>
      heNormal([kh, kw, inC, o.filters], kh * kw * inC, this.store.rng(`${name}/kernel`)),
    );
    let s: tf.Tensor4D = tf.conv2d(x, w as tf.Tensor4D, strides, padding);
    if (useBias) s = tf.add(s, this.param(`${name}/bias`, () => tf.zeros([o.filters])));
    if (this.layers) {
      const [H, W] = [x.shape[1], x.shape[2]];
      this.layers.push({
        kind: 'conv2d',
        name,
        weight: `${name}/kernel`,
        bias: useBias ? `${name}/bias` : undefined,
        kernel: [kh, kw],
        strides,
        padding,
        inChannels: inC,
        outChannels: o.filters,
        inSize: [H, W],
        outSize: [outSize(H, kh, strides[0], padding), outSize(W, kw, strides[1], padding)],
      });
    }
    return this.record(name, x, s) as tf.Tensor4D;
  }

  /**
   * Batch normalisation with learned scale and shift. In training mode the statistics are those of chunks of
   * `bnChunk` consecutive examples (the paper's rbz); the average of the chunk statistics is kept for the running
   * averages. In inference mode the running averages are used.
   */
  batchNorm<T extends tf.Tensor>(name: string, x: T, eps = 1e-3): T {
    const C = x.shape[x.rank - 1];
    const spatial = x.rank === 4;
    const axes = spatial ? [0, 1, 2] : [0];
    const gamma = this.param(`${name}/scale`, () => tf.ones([C]));
    const beta = this.param(`${name}/shift`, () => tf.zeros([C]));
    const runMean = this.stateVar(`${name}/mean`, () => tf.zeros([C]));
    const runVar = this.stateVar(`${name}/variance`, () => tf.ones([C]));
    let xhat: tf.Tensor;
    const N = x.shape[0];
    const chunk = Math.min(this.opts.bnChunk ?? N, N);
    if (this.opts.training && N % chunk === 0) {
      // Equal chunks (or the whole batch): one op, closed-form gradient (src/backend/fused-ops.ts).
      const bn = chunkedBatchNorm(x, gamma, beta, N / chunk, eps);
      this.bnStats.set(name, {
        mean: (N === chunk ? bn.mean.reshape([C]) : tf.mean(bn.mean, 0)) as tf.Tensor1D,
        variance: (N === chunk ? bn.variance.reshape([C]) : tf.mean(bn.variance, 0)) as tf.Tensor1D,
      });
      this.layers?.push({ kind: 'batchnorm', name, scale: `${name}/scale`, shift: `${name}/shift`, channels: C, spatial });
      return this.record(name, bn.xhat, bn.y) as T;
    } else if (this.opts.training) {
      const parts = chunk >= N ? [x] : tf.split(x, chunkSizes(N, chunk), 0);
      const normed: tf.Tensor[] = [];
      const means: tf.Tensor[] = [];
      const vars: tf.Tensor[] = [];
      for (const p of parts) {
        const { mean, variance } = tf.moments(p, axes);
        normed.push(tf.mul(tf.sub(p, mean), tf.rsqrt(tf.add(variance, eps))));
        means.push(mean);
        vars.push(variance);
      }
      xhat = normed.length === 1 ? normed[0] : tf.concat(normed, 0);
      this.bnStats.set(name, {
        mean: (means.length === 1 ? means[0] : tf.mean(tf.stack(means), 0)) as tf.Tensor1D,
        variance: (vars.length === 1 ? vars[0] : tf.mean(tf.stack(vars), 0)) as tf.Tensor1D,
      });
    } else {
      xhat = tf.mul(tf.sub(x, runMean), tf.rsqrt(tf.add(runVar, eps)));
    }
    const y = tf.add(tf.mul(xhat, gamma), beta);
    this.layers?.push({ kind: 'batchnorm', name, scale: `${name}/scale`, shift: `${name}/shift`, channels: C, spatial });
    return this.record(name, xhat, y) as T;
  }

  maxPool(x: tf.Tensor4D, size: number, stride = size, padding: Padding = 'valid'): tf.Tensor4D {
    return tf.maxPool(x, size, stride, padding);
  }

  avgPool(x: tf.Tensor4D, size: number, stride = size, padding: Padding = 'valid'): tf.Tensor4D {
    return tf.avgPool(x, size, stride, padding);
  }

  /** Mean over the spatial dimensions: [N,H,W,C] → [N,C]. */
  globalAvgPool(x: tf.Tensor4D): tf.Tensor2D {
    return tf.mean(x, [1, 2]) as tf.Tensor2D;
  }

  /** Channel concatenation (inception blocks). */
  concat(xs: tf.Tensor4D[]): tf.Tensor4D {
    return tf.concat(xs, 3);
  }

  /** Residual add. */
  add<T extends tf.Tensor>(a: T, b: T): T {
    return tf.add(a, b);
  }
}

/** Sizes of consecutive chunks of `chunk` examples covering N (the last chunk may be smaller). */
export function chunkSizes(N: number, chunk: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < N; i += chunk) out.push(Math.min(chunk, N - i));
  return out;
}
