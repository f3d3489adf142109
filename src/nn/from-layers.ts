/**
 * Existing tfjs model code, unchanged: turns a `tf.LayersModel` (Sequential or functional, one input, one output)
 * into a dkfac Model with the same function and the same weights, so K-FAC registers its layers automatically (the
 * paper's "applied to existing model code without modification", section 6 and Appendix C).
 *
 *  - Dense (on [N, D] inputs), Conv2D (channelsLast, no dilation) and BatchNormalization (last axis, with scale and
 *    center) run as dkfac layers: K-FAC gets a Fisher block for each.
 *  - Every other layer runs as tfjs runs it (`layer.apply`). Its trainable weights are trained with the rest but not
 *    preconditioned (the identity block: plain gradient direction), like kfac-pytorch's skip_layers; each such layer
 *    is named once in `warnings`. Layers with `trainable: false` run as they are and are not trained.
 *  - Dropout is the identity (noted in `warnings`). The final softmax, if any, is dropped: the model returns logits
 *    and the loss applies the softmax.
 *  - Inputs of any per-example rank up to 3 ([D], [T, D], [H, W, C]); the dkfac model sees them as [H, W, C]
 *    (`toModelInput`).
 *
 * `writeBackWeights` copies the trained weights (and batch-norm statistics) back into the LayersModel.
 */
import * as tf from '@tensorflow/tfjs';
import type { Layers } from './layers';
import { Model, type ModelFn } from './model';

type Cfg = Record<string, unknown>;
type TfLayer = tf.layers.Layer;

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [v[0], v[1]] : [v as number, v as number]);

/** How one layer of the LayersModel runs in the dkfac model. */
type Plan =
  | { kind: 'input' | 'identity' }
  | { kind: 'dense' | 'conv2d'; act: (x: tf.Tensor) => tf.Tensor }
  | { kind: 'batchnorm' }
  /** run by tfjs itself; `trained`: its trainable weights are trained without preconditioning */
  | { kind: 'tfjs'; trained: boolean };

export interface FromLayersResult {
  model: Model;
  /** one line per layer that is not run exactly as tfjs trains it: not preconditioned, or Dropout as identity */
  warnings: string[];
  /** the layers whose trainable weights K-FAC does not precondition (trained with the identity) */
  skipped: string[];
  /** a batch in the LayersModel's input shape [N, ...] as the dkfac model's [N, H, W, C] (a reshape, no copy) */
  toModelInput(x: tf.Tensor): tf.Tensor4D;
}

/** Per-example input shape of rank 1–3 as the [H, W, C] the dkfac model runs on. */
function imageShape(shape: number[]): [number, number, number] {
  if (shape.length === 3) return shape as [number, number, number];
  if (shape.length === 2) return [1, shape[0], shape[1]];
  return [1, 1, shape[0]];
}

/** Activations by name, as tfjs computes them (a linear activation is the identity). */
function activationFn(name: string | undefined, layer: string): (x: tf.Tensor) => tf.Tensor {
  if (!name || name === 'linear') return (x) => x;
  let a: TfLayer;
  try {
    a = tf.layers.activation({ activation: name as never });
  } catch (e) {
    throw new Error(`layer ${layer}: activation '${name}' is not supported (${(e as Error).message})`);
  }
  return (x) => a.apply(x) as tf.Tensor;
}

/** Why K-FAC cannot register this Dense/Conv2D/BatchNormalization layer as a block, or null when it can. */
function unsupported(cls: string, c: Cfg, inputRank: number): string | null {
  if (cls === 'Dense' && inputRank !== 2) return `Dense on a rank-${inputRank} input`;
  if (cls === 'Conv2D') {
    if (c.dataFormat && c.dataFormat !== 'channelsLast') return 'Conv2D with channelsFirst';
    const d = pair(c.dilationRate ?? 1);
    if (d[0] !== 1 || d[1] !== 1) return `dilated Conv2D (dilation ${d.join('x')})`;
  }
  if (cls === 'BatchNormalization') {
    if (c.axis !== -1 && c.axis !== inputRank - 1) return `BatchNormalization over axis ${c.axis}`;
    if (c.scale === false || c.center === false) return 'BatchNormalization without scale or center';
  }
  return null;
}

const OUTPUT_ACTIVATIONS = new Set(['softmax', 'linear', undefined]);

/**
 * A dkfac {@link Model} computing what `lm` computes, with `lm`'s weights copied in (layers run by tfjs share theirs),
 * for custom training loops with {@link KfacOptimizer}; {@link writeBackWeights} returns the trained weights.
 * `fitKfac` does all of this for you.
 *
 * @example
 * ```ts
 * const { model, warnings, toModelInput } = fromLayersModel(lm);
 * const logits = tf.tidy(() => model.forward(toModelInput(x), { training: false }).logits);
 * ```
 * @throws for several inputs or outputs, an input of rank above 3, or an output activation other than softmax/linear
 */
export function fromLayersModel(lm: tf.LayersModel, seed = 0): FromLayersResult {
  if (lm.inputs.length !== 1 || lm.outputs.length !== 1) throw new Error('fromLayersModel: one input and one output only');
  const inShape = lm.inputs[0].shape.slice(1);
  if (inShape.length < 1 || inShape.length > 3 || inShape.some((d) => d == null)) {
    throw new Error(`fromLayersModel: the input must have a fixed per-example shape of rank 1 to 3, got [${inShape.join(', ')}]`);
  }
  const outShape = lm.outputs[0].shape;
  if (outShape.length !== 2) throw new Error(`fromLayersModel: the output must be [N, classes], got [${outShape.join(', ')}]`);
  const outputLayer = lm.outputs[0].sourceLayer.name;
  const numClasses = outShape[1] as number;
  const warnings: string[] = [];
  const skipped: string[] = [];
  const layers = lm.layers;

  // Plan every layer once (input ranks from the symbolic shapes).
  const plans = new Map<string, Plan>();
  for (const layer of layers) {
    const cls = layer.getClassName();
    const c = layer.getConfig() as Cfg;
    const inputRank = layer.inboundNodes[0]?.inputTensors[0]?.shape.length ?? 0;
    const isOut = layer.name === outputLayer;
    if (isOut && (cls === 'Dense' || cls === 'Conv2D' || cls === 'Activation') && !OUTPUT_ACTIVATIONS.has(c.activation as string)) {
      throw new Error(
        `layer ${layer.name}: output activation '${c.activation}': K-FAC training uses the softmax cross-entropy; give the output layer a softmax (or linear) activation`,
      );
    }
    let plan: Plan;
    if (cls === 'InputLayer') plan = { kind: 'input' };
    else if (cls === 'Dropout') {
      plan = { kind: 'identity' };
      warnings.push(`${layer.name}: Dropout treated as identity`);
    } else if (isOut && (cls === 'Softmax' || (cls === 'Activation' && c.activation === 'softmax'))) plan = { kind: 'identity' };
    else if (layer.trainable && (cls === 'Dense' || cls === 'Conv2D' || cls === 'BatchNormalization')) {
      const why = unsupported(cls, c, inputRank);
      if (why) {
        plan = { kind: 'tfjs', trained: true };
      } else if (cls === 'BatchNormalization') plan = { kind: 'batchnorm' };
      else {
        const act = isOut && c.activation === 'softmax' ? undefined : (c.activation as string | undefined);
        plan = { kind: cls === 'Dense' ? 'dense' : 'conv2d', act: activationFn(act, layer.name) };
      }
      if (why) {
        skipped.push(layer.name);
        warnings.push(`${layer.name}: ${why} has no K-FAC block; trained with the identity preconditioner`);
      }
    } else {
      const trained = layer.trainable && layer.trainableWeights.length > 0;
      plan = { kind: 'tfjs', trained };
      if (trained) {
        skipped.push(layer.name);
        warnings.push(`${layer.name}: ${cls} has no K-FAC block; trained with the identity preconditioner`);
      }
    }
    if (isOut && plan.kind === 'tfjs' && c.activation === 'softmax') {
      throw new Error(`layer ${layer.name}: the output layer runs as tfjs runs it, softmax included; K-FAC training needs logits`);
    }
    plans.set(layer.name, plan);
  }

  const modelShape = imageShape(inShape as number[]);
  const perExample = inShape as number[];
  const fn: ModelFn = (L: Layers, x4) => {
    const x = inShape.length === 3 ? x4 : x4.reshape([x4.shape[0], ...perExample]);
    // Sequential models do not list their InputLayer: seed the graph with it.
    const out = new Map<string, tf.Tensor>([[lm.inputs[0].sourceLayer.name, x]]);
    for (const layer of layers) {
      const c = layer.getConfig() as Cfg;
      const name = layer.name;
      const inputs = layer.inboundNodes[0]?.inboundLayers.map((l) => out.get(l.name)!) ?? [];
      const h = inputs[0];
      const plan = plans.get(name)!;
      let y: tf.Tensor;
      switch (plan.kind) {
        case 'input':
          y = x;
          break;
        case 'identity':
          y = h;
          break;
        case 'dense':
          y = plan.act(L.dense(name, h, { units: c.units as number, bias: c.useBias as boolean }));
          break;
        case 'conv2d':
          y = plan.act(
            L.conv2d(name, h as tf.Tensor4D, {
              filters: c.filters as number,
              kernel: pair(c.kernelSize),
              strides: pair(c.strides ?? 1),
              padding: c.padding as 'same' | 'valid',
              bias: c.useBias as boolean,
            }),
          );
          break;
        case 'batchnorm':
          y = L.batchNorm(name, h, c.epsilon as number);
          break;
        case 'tfjs': {
          const r = layer.apply(inputs.length === 1 ? h : inputs, { training: L.opts.training });
          if (Array.isArray(r)) throw new Error(`layer ${name}: layers with several outputs are not supported`);
          y = r as tf.Tensor;
          break;
        }
      }
      out.set(name, y);
    }
    return out.get(outputLayer) as tf.Tensor2D;
  };

  const model = new Model(lm.name, fn, modelShape, numClasses, seed);
  // Layers run by tfjs keep their own variables: the dkfac model trains those same variables (borrowed, not owned).
  for (const layer of layers) {
    const plan = plans.get(layer.name)!;
    if (plan.kind !== 'tfjs' || !plan.trained) continue;
    for (const w of layer.trainableWeights) {
      model.store.adopt(`${layer.name}/${w.originalName.split('/').pop()}`, w.read() as tf.Variable);
    }
  }
  transferWeights(lm, model, plans, 'in');
  planCache.set(model, plans);
  return {
    model,
    warnings,
    skipped,
    toModelInput: (t) => (t.rank === 4 && inShape.length === 3 ? (t as tf.Tensor4D) : (t.reshape([t.shape[0], ...modelShape]) as tf.Tensor4D)),
  };
}

/** The dkfac parameter behind each of a dkfac-run layer's weights, in `layer.weights` order. */
function slots(layer: TfLayer, plan: Plan): { key: string; state: boolean }[] {
  const c = layer.getConfig() as Cfg;
  if (plan.kind === 'dense' || plan.kind === 'conv2d') {
    return [{ key: 'kernel', state: false }, ...(c.useBias !== false ? [{ key: 'bias', state: false }] : [])];
  }
  if (plan.kind === 'batchnorm') {
    return [
      { key: 'scale', state: false },
      { key: 'shift', state: false },
      { key: 'mean', state: true },
      { key: 'variance', state: true },
    ];
  }
  return [];
}

function transferWeights(lm: tf.LayersModel, model: Model, plans: Map<string, Plan>, dir: 'in' | 'out'): void {
  for (const layer of lm.layers) {
    const plan = plans.get(layer.name);
    if (!plan) throw new Error(`writeBackWeights: layer ${layer.name} is not part of the converted model`);
    const s = slots(layer, plan);
    if (s.length === 0) continue;
    const vars = s.map(({ key, state }) => {
      const v = (state ? model.store.state : model.store.vars).get(`${layer.name}/${key}`);
      if (!v) throw new Error(`fromLayersModel: no parameter ${layer.name}/${key}`);
      return v;
    });
    if (dir === 'out') {
      layer.setWeights(vars);
    } else {
      const w = layer.getWeights();
      if (w.length !== vars.length) throw new Error(`fromLayersModel: layer ${layer.name} has ${w.length} weights, expected ${vars.length}`);
      vars.forEach((v, i) => v.assign(w[i]));
    }
  }
}

const planCache = new WeakMap<Model, Map<string, Plan>>();

/**
 * Writes the dkfac model's parameters and batch-norm statistics back into the LayersModel it was converted from, so
 * that `lm.predict`, `lm.evaluate` and `lm.save` see the trained model. (Layers run by tfjs share their variables
 * with the dkfac model: nothing to copy.)
 */
export function writeBackWeights(model: Model, lm: tf.LayersModel): void {
  const plans = planCache.get(model);
  if (!plans) throw new Error('writeBackWeights: the model was not made by fromLayersModel');
  transferWeights(lm, model, plans, 'out');
}
