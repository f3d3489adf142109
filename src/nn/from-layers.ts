/**
 * Existing tfjs model code, unchanged: turns a `tf.LayersModel` (Sequential or functional, one input, one output)
 * built from Dense / Conv2D / BatchNormalization / pooling / Flatten / Activation / Concatenate / Add layers into a
 * dkfac Model with the same weights, so K-FAC registers every layer automatically (the paper's "applied to existing
 * model code without modification", section 6 and Appendix C).
 *
 * The final softmax, if any, is dropped: the model returns logits and the loss applies the softmax. Dropout layers
 * are treated as identity (reported in `warnings`).
 */
import * as tf from '@tensorflow/tfjs';
import type { Layers } from './layers';
import { Model, type ModelFn } from './model';

type Cfg = Record<string, unknown>;

function activation(name: string | undefined, x: tf.Tensor, isOutput: boolean, layer: string): tf.Tensor {
  switch (name ?? 'linear') {
    case 'linear':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'tanh':
      return tf.tanh(x);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'softmax':
      if (isOutput) return x; // logits: the loss applies the softmax
      return tf.softmax(x);
    default:
      throw new Error(`layer ${layer}: activation '${name}' is not supported`);
  }
}

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [v[0], v[1]] : [v as number, v as number]);

export interface FromLayersResult {
  model: Model;
  warnings: string[];
}

export function fromLayersModel(lm: tf.LayersModel, seed = 0): FromLayersResult {
  if (lm.inputs.length !== 1 || lm.outputs.length !== 1) throw new Error('fromLayersModel: one input and one output only');
  const inShape = lm.inputs[0].shape.slice(1) as number[];
  if (inShape.length !== 3 || inShape.some((d) => d == null)) {
    throw new Error(`fromLayersModel: input must be [H, W, C] images, got [${inShape.join(', ')}]`);
  }
  const outputLayer = lm.outputs[0].sourceLayer.name;
  const numClasses = lm.outputs[0].shape[1] as number;
  const warnings: string[] = [];
  const layers = lm.layers;

  const fn: ModelFn = (L: Layers, x) => {
    // Sequential models do not list their InputLayer: seed the graph with it.
    const out = new Map<string, tf.Tensor>([[lm.inputs[0].sourceLayer.name, x]]);
    for (const layer of layers) {
      const cls = layer.getClassName();
      const c = layer.getConfig() as Cfg;
      const name = layer.name;
      const inputs = layer.inboundNodes[0]?.inboundLayers.map((l) => out.get(l.name)!) ?? [];
      const h = inputs[0];
      const isOut = name === outputLayer;
      let y: tf.Tensor;
      switch (cls) {
        case 'InputLayer':
          y = x;
          break;
        case 'Dense':
          y = activation(c.activation as string, L.dense(name, h, { units: c.units as number, bias: c.useBias as boolean }), isOut, name);
          break;
        case 'Conv2D': {
          if (c.dataFormat && c.dataFormat !== 'channelsLast') throw new Error(`layer ${name}: only channelsLast is supported`);
          const dil = pair(c.dilationRate ?? 1);
          if (dil[0] !== 1 || dil[1] !== 1) throw new Error(`layer ${name}: dilated convolutions are not supported`);
          const s = L.conv2d(name, h as tf.Tensor4D, {
            filters: c.filters as number,
            kernel: pair(c.kernelSize),
            strides: pair(c.strides ?? 1),
            padding: c.padding as 'same' | 'valid',
            bias: c.useBias as boolean,
          });
          y = activation(c.activation as string, s, isOut, name);
          break;
        }
        case 'BatchNormalization':
          if (c.axis !== -1 && c.axis !== h.rank - 1) throw new Error(`layer ${name}: batch norm over the last axis only`);
          y = L.batchNorm(name, h, c.epsilon as number);
          break;
        case 'MaxPooling2D':
          y = L.maxPool(h as tf.Tensor4D, pair(c.poolSize)[0], pair(c.strides ?? c.poolSize)[0], c.padding as 'same' | 'valid');
          break;
        case 'AveragePooling2D':
          y = L.avgPool(h as tf.Tensor4D, pair(c.poolSize)[0], pair(c.strides ?? c.poolSize)[0], c.padding as 'same' | 'valid');
          break;
        case 'GlobalAveragePooling2D':
          y = L.globalAvgPool(h as tf.Tensor4D);
          break;
        case 'Flatten':
          y = h.reshape([h.shape[0], -1]);
          break;
        case 'Activation':
          y = activation(c.activation as string, h, isOut, name);
          break;
        case 'ReLU':
          y = tf.relu(h);
          break;
        case 'Dropout':
          y = h;
          break;
        case 'Concatenate':
          y = tf.concat(inputs, (c.axis as number) ?? -1);
          break;
        case 'Add':
          y = inputs.slice(1).reduce((a, b) => tf.add(a, b), inputs[0]);
          break;
        default:
          throw new Error(`layer ${name}: ${cls} is not supported by fromLayersModel`);
      }
      out.set(name, y);
    }
    return out.get(outputLayer) as tf.Tensor2D;
  };

  for (const layer of layers) if (layer.getClassName() === 'Dropout') warnings.push(`${layer.name}: Dropout treated as identity`);
  const model = new Model(lm.name, fn, inShape as [number, number, number], numClasses, seed);
  copyWeights(lm, model);
  return { model, warnings };
}

/** Copies the LayersModel's weights into the dkfac parameter store (same names: <layer>/kernel, /bias, ...). */
function copyWeights(lm: tf.LayersModel, model: Model): void {
  for (const layer of lm.layers) {
    const cls = layer.getClassName();
    const w = layer.getWeights();
    const set = (key: string, t: tf.Tensor | undefined, state = false) => {
      if (!t) return;
      const v = (state ? model.store.state : model.store.vars).get(`${layer.name}/${key}`);
      if (!v) throw new Error(`fromLayersModel: no parameter ${layer.name}/${key}`);
      v.assign(t);
    };
    if (cls === 'Dense' || cls === 'Conv2D') {
      set('kernel', w[0]);
      set('bias', w[1]);
    } else if (cls === 'BatchNormalization') {
      const c = layer.getConfig() as Cfg;
      let i = 0;
      const gamma = c.scale !== false ? w[i++] : undefined;
      const beta = c.center !== false ? w[i++] : undefined;
      set('scale', gamma);
      set('shift', beta);
      set('mean', w[i++], true);
      set('variance', w[i++], true);
    }
  }
}
