/**
 * The model zoo: the paper's CIFAR-10 net, and GoogLeNet (Inception v1), AlexNet and ResNet families with a width /
 * depth / resolution scale. The `paper` configurations build the full-size ImageNet networks; the `quick` ones run on
 * 28×28 or 32×32 inputs on a 2-core CPU. Every conv/dense layer can be followed by batch norm (`bn: true`).
 */
import type * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import * as tfm from '@tensorflow/tfjs';
import type { Layers } from './layers';
import { Model, type ModelFn } from './model';

/** conv → (BN) → ReLU. With BN the conv has no bias (BN's shift replaces it). */
function convUnit(
  L: Layers,
  name: string,
  x: tf.Tensor4D,
  filters: number,
  kernel: number,
  bn: boolean,
  strides = 1,
  padding: 'same' | 'valid' = 'same',
): tf.Tensor4D {
  let h = L.conv2d(name, x, { filters, kernel, strides, padding, bias: !bn });
  if (bn) h = L.batchNorm(`${name}_bn`, h);
  return tfm.relu(h);
}

/** dense → (BN) → ReLU; a 4-D input is flattened by the dense layer itself, which records its [H, W, C] shape. */
function denseUnit(L: Layers, name: string, x: tf.Tensor, units: number, bn: boolean): tf.Tensor2D {
  let h = L.dense(name, x, { units, bias: !bn });
  if (bn) h = L.batchNorm(`${name}_bn`, h);
  return tfm.relu(h);
}

const w = (c: number, width: number) => Math.max(4, Math.round(c * width));

// ---------------------------------------------------------------------------------------------------------------
// The paper's CIFAR-10 net (section 6.1): three 5×5 conv layers of 32, 32, 64 filters and a softmax layer, "similar
// but not identical" to the KFC CIFAR net (cuda-convnet's 18 % layout: conv-pool(max) conv-pool(avg) conv-pool(avg)).

export const CifarNetConfig = z.strictObject({
  arch: z.literal('cifarnet'),
  bn: z.boolean().default(false),
});

export function cifarNet(cfg: z.infer<typeof CifarNetConfig>, numClasses: number): ModelFn {
  return (L, x) => {
    let h = convUnit(L, 'conv1', x, 32, 5, cfg.bn);
    h = L.maxPool(h, 3, 2, 'same');
    h = convUnit(L, 'conv2', h, 32, 5, cfg.bn);
    h = L.avgPool(h, 3, 2, 'same');
    h = convUnit(L, 'conv3', h, 64, 5, cfg.bn);
    h = L.avgPool(h, 3, 2, 'same');
    return L.dense('fc', h, { units: numClasses });
  };
}

// ---------------------------------------------------------------------------------------------------------------
// GoogLeNet (Szegedy et al. 2015, Table 1). Inception module: 1×1 | 1×1→3×3 | 1×1→5×5 | 3×3 max-pool→1×1.

/** [#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj] for each inception module of the paper's Table 1. */
const INCEPTION: Record<string, [number, number, number, number, number, number]> = {
  '3a': [64, 96, 128, 16, 32, 32],
  '3b': [128, 128, 192, 32, 96, 64],
  '4a': [192, 96, 208, 16, 48, 64],
  '4b': [160, 112, 224, 24, 64, 64],
  '4c': [128, 128, 256, 24, 64, 64],
  '4d': [112, 144, 288, 32, 64, 64],
  '4e': [256, 160, 320, 32, 128, 128],
  '5a': [256, 160, 320, 32, 128, 128],
  '5b': [384, 192, 384, 48, 128, 128],
};

export const GoogLeNetConfig = z.strictObject({
  arch: z.literal('googlenet'),
  bn: z.boolean().default(true),
  /** channel multiplier on every layer (1 = the paper's network) */
  width: z.number().positive().max(4).default(1),
  /** 'imagenet': 7×7/2 stem, max-pool, 1×1, 3×3, max-pool (224×224 inputs); 'small': one 3×3 conv (28–64 px inputs) */
  stem: z.enum(['imagenet', 'small']).default('imagenet'),
  /** inception modules per stage, taken from the front of the paper's list (3: a,b; 4: a–e; 5: a,b) */
  stages: z.tuple([z.number().int().min(0).max(2), z.number().int().min(0).max(5), z.number().int().min(0).max(2)]).default([2, 5, 2]),
});

function inception(L: Layers, name: string, x: tf.Tensor4D, spec: number[], width: number, bn: boolean): tf.Tensor4D {
  const [c1, r3, c3, r5, c5, pp] = spec.map((c) => w(c, width));
  const b1 = convUnit(L, `${name}/1x1`, x, c1, 1, bn);
  const b3 = convUnit(L, `${name}/3x3`, convUnit(L, `${name}/3x3_reduce`, x, r3, 1, bn), c3, 3, bn);
  const b5 = convUnit(L, `${name}/5x5`, convUnit(L, `${name}/5x5_reduce`, x, r5, 1, bn), c5, 5, bn);
  const bp = convUnit(L, `${name}/pool_proj`, L.maxPool(x, 3, 1, 'same'), pp, 1, bn);
  return L.concat([b1, b3, b5, bp]);
}

export function googLeNet(cfg: z.infer<typeof GoogLeNetConfig>, numClasses: number): ModelFn {
  const stage3 = ['3a', '3b'].slice(0, cfg.stages[0]);
  const stage4 = ['4a', '4b', '4c', '4d', '4e'].slice(0, cfg.stages[1]);
  const stage5 = ['5a', '5b'].slice(0, cfg.stages[2]);
  return (L, x) => {
    let h = x;
    if (cfg.stem === 'imagenet') {
      h = convUnit(L, 'conv1/7x7_s2', h, w(64, cfg.width), 7, cfg.bn, 2);
      h = L.maxPool(h, 3, 2, 'same');
      h = convUnit(L, 'conv2/3x3_reduce', h, w(64, cfg.width), 1, cfg.bn);
      h = convUnit(L, 'conv2/3x3', h, w(192, cfg.width), 3, cfg.bn);
      h = L.maxPool(h, 3, 2, 'same');
    } else {
      h = convUnit(L, 'conv1/3x3', h, w(64, cfg.width), 3, cfg.bn);
      h = L.maxPool(h, 2, 2, 'same');
    }
    for (const m of stage3) h = inception(L, `inception_${m}`, h, INCEPTION[m], cfg.width, cfg.bn);
    if (stage4.length) {
      h = L.maxPool(h, cfg.stem === 'imagenet' ? 3 : 2, 2, 'same');
      for (const m of stage4) h = inception(L, `inception_${m}`, h, INCEPTION[m], cfg.width, cfg.bn);
    }
    if (stage5.length) {
      h = L.maxPool(h, cfg.stem === 'imagenet' ? 3 : 2, 2, 'same');
      for (const m of stage5) h = inception(L, `inception_${m}`, h, INCEPTION[m], cfg.width, cfg.bn);
    }
    return L.dense('loss3/classifier', L.globalAvgPool(h), { units: numClasses });
  };
}

// ---------------------------------------------------------------------------------------------------------------
// AlexNet (Krizhevsky et al. 2012, the single-tower form without LRN). The first fully connected layer is the
// paper's doubly-factored layer: 6×6×256 → 4096 at 227×227 (the 11×11/4 'valid' stem gives 5×5×256 at 224×224).

export const AlexNetConfig = z.strictObject({
  arch: z.literal('alexnet'),
  bn: z.boolean().default(false),
  width: z.number().positive().max(4).default(1),
  /** hidden units of the two fully connected layers (4096 in the paper) */
  fcUnits: z.number().int().positive().default(4096),
  /** 'imagenet': 11×11/4 stem (224 px); 'small': 5×5/1 stem for 28–64 px inputs */
  stem: z.enum(['imagenet', 'small']).default('imagenet'),
});

export function alexNet(cfg: z.infer<typeof AlexNetConfig>, numClasses: number): ModelFn {
  return (L, x) => {
    let h =
      cfg.stem === 'imagenet'
        ? convUnit(L, 'conv1', x, w(96, cfg.width), 11, cfg.bn, 4, 'valid')
        : convUnit(L, 'conv1', x, w(96, cfg.width), 5, cfg.bn);
    h = L.maxPool(h, 3, 2, cfg.stem === 'imagenet' ? 'valid' : 'same');
    h = convUnit(L, 'conv2', h, w(256, cfg.width), 5, cfg.bn);
    h = L.maxPool(h, 3, 2, cfg.stem === 'imagenet' ? 'valid' : 'same');
    h = convUnit(L, 'conv3', h, w(384, cfg.width), 3, cfg.bn);
    h = convUnit(L, 'conv4', h, w(384, cfg.width), 3, cfg.bn);
    h = convUnit(L, 'conv5', h, w(256, cfg.width), 3, cfg.bn);
    h = L.maxPool(h, 3, 2, cfg.stem === 'imagenet' ? 'valid' : 'same');
    // the 4-D map goes to fc6 unflattened, so the layer records its [H, W, C] input (the doubly-factored block needs it)
    let f = denseUnit(L, 'fc6', h, cfg.fcUnits, cfg.bn);
    f = denseUnit(L, 'fc7', f, cfg.fcUnits, cfg.bn);
    return L.dense('fc8', f, { units: numClasses });
  };
}

// ---------------------------------------------------------------------------------------------------------------
// ResNet (He et al. 2016) with bottleneck blocks; [3, 4, 6, 3] blocks at widths 64..512 is ResNet-50.

export const ResNetConfig = z.strictObject({
  arch: z.literal('resnet'),
  bn: z.boolean().default(true),
  width: z.number().positive().max(4).default(1),
  blocks: z.array(z.number().int().min(1).max(64)).min(1).max(4).default([3, 4, 6, 3]),
  stem: z.enum(['imagenet', 'small']).default('imagenet'),
  /**
   * The classifier's input: 'gap' (global average pooling, ResNet's own) or 'flatten' (the last stage's map, a
   * large dense layer on an [H, W, C] map, which the doubly-factored approximation of paper section 4 applies to).
   */
  head: z.enum(['gap', 'flatten']).default('gap'),
  /** with the 'flatten' head: the map is first average-pooled to headMap × headMap (default: kept as it is) */
  headMap: z.number().int().positive().optional(),
});

function bottleneck(L: Layers, name: string, x: tf.Tensor4D, mid: number, stride: number, bn: boolean): tf.Tensor4D {
  const out = mid * 4;
  const inC = x.shape[3];
  let h = convUnit(L, `${name}/a`, x, mid, 1, bn);
  h = convUnit(L, `${name}/b`, h, mid, 3, bn, stride);
  let y = L.conv2d(`${name}/c`, h, { filters: out, kernel: 1, bias: !bn });
  if (bn) y = L.batchNorm(`${name}/c_bn`, y);
  let shortcut = x;
  if (stride !== 1 || inC !== out) {
    shortcut = L.conv2d(`${name}/proj`, x, { filters: out, kernel: 1, strides: stride, bias: !bn });
    if (bn) shortcut = L.batchNorm(`${name}/proj_bn`, shortcut);
  }
  return tfm.relu(L.add(y, shortcut));
}

export function resNet(cfg: z.infer<typeof ResNetConfig>, numClasses: number): ModelFn {
  return (L, x) => {
    let h: tf.Tensor4D;
    if (cfg.stem === 'imagenet') {
      h = convUnit(L, 'conv1', x, w(64, cfg.width), 7, cfg.bn, 2);
      h = L.maxPool(h, 3, 2, 'same');
    } else {
      // small inputs: 3×3 conv and a 2×2 max-pool (28 → 14), so the first stage's activations fit the wasm heap
      h = convUnit(L, 'conv1', x, w(64, cfg.width), 3, cfg.bn);
      h = L.maxPool(h, 2, 2, 'same');
    }
    cfg.blocks.forEach((n, stage) => {
      for (let i = 0; i < n; i++) {
        const stride = i === 0 && stage > 0 ? 2 : 1;
        h = bottleneck(L, `res${stage + 2}${String.fromCharCode(97 + i)}`, h, w(64 * 2 ** stage, cfg.width), stride, cfg.bn);
      }
    });
    if (cfg.head === 'gap') return L.dense('fc', L.globalAvgPool(h), { units: numClasses });
    const k = cfg.headMap ? Math.max(1, Math.floor(h.shape[1] / cfg.headMap)) : 1;
    return L.dense('fc', k > 1 ? L.avgPool(h, k) : h, { units: numClasses });
  };
}

// ---------------------------------------------------------------------------------------------------------------

export const ModelConfig = z.discriminatedUnion('arch', [CifarNetConfig, GoogLeNetConfig, AlexNetConfig, ResNetConfig]);
export type ModelConfig = z.infer<typeof ModelConfig>;

/** Builds a zoo model for inputs of `inputShape` ([H, W, C]) and `numClasses` outputs. */
export function buildModel(cfg: ModelConfig, inputShape: [number, number, number], numClasses: number, seed = 0): Model {
  const fn =
    cfg.arch === 'cifarnet'
      ? cifarNet(cfg, numClasses)
      : cfg.arch === 'googlenet'
        ? googLeNet(cfg, numClasses)
        : cfg.arch === 'alexnet'
          ? alexNet(cfg, numClasses)
          : resNet(cfg, numClasses);
  return new Model(cfg.arch, fn, inputShape, numClasses, seed);
}
