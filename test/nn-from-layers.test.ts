/**
 * An existing tf.LayersModel, unchanged, becomes a dkfac Model with the same function: its predictions equal the
 * LayersModel's own, and every Dense/Conv2D/BatchNormalization layer is registered for K-FAC.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { fromLayersModel } from '../src/nn/from-layers';
import { crossEntropy } from '../src/nn/model';
import { KfacConfig, KfacOptimizer } from '../src/kfac/optimizer';

beforeAll(async () => {
  await initBackend();
});

describe('fromLayersModel', () => {
  it('reproduces a Sequential convnet and registers its layers', () => {
    const lm = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [10, 10, 2], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tf.layers.batchNormalization(),
        tf.layers.maxPooling2d({ poolSize: 2 }),
        tf.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'valid', useBias: false }),
        tf.layers.activation({ activation: 'relu' }),
        tf.layers.flatten(),
        tf.layers.dropout({ rate: 0.5 }),
        tf.layers.dense({ units: 5, activation: 'softmax' }),
      ],
    });
    // non-trivial BN statistics so that inference mode is really checked
    const bn = lm.layers[1];
    bn.setWeights([tf.fill([4], 1.5), tf.fill([4], -0.2), tf.fill([4], 0.3), tf.fill([4], 2)]);
    const { model, warnings } = fromLayersModel(lm);
    expect(model.layers.map((l) => `${l.kind}`)).toEqual(['conv2d', 'batchnorm', 'conv2d', 'dense']);
    expect(warnings.join()).toMatch(/Dropout/);
    const x = tf.randomNormal([3, 10, 10, 2], 0, 1, 'float32', 4);
    const expected = (lm.predict(x) as tf.Tensor).arraySync() as number[][];
    const got = tf.tidy(() => tf.softmax(model.forward(x as tf.Tensor4D, { training: false }).logits).arraySync()) as number[][];
    for (let i = 0; i < 3; i++) for (let k = 0; k < 5; k++) expect(got[i][k]).toBeCloseTo(expected[i][k], 5);
    x.dispose();
    model.dispose();
  });

  it('K-FAC registers every layer of the converted model and trains it', () => {
    const lm = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 3, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tf.layers.batchNormalization(),
        tf.layers.flatten(),
        tf.layers.dense({ units: 4, activation: 'softmax' }),
      ],
    });
    const { model } = fromLayersModel(lm);
    const k = new KfacOptimizer(model, KfacConfig.parse({ kind: 'kfac', damping: 0.1, inverseEvery: 1 }));
    expect(k.blocks.map((b) => `${b.kind}:${b.name}`)).toEqual(model.layers.map((l) => `${l.kind === 'batchnorm' ? 'scale-shift' : 'kronecker'}:${l.name}`));
    const x = tf.randomNormal([8, 8, 8, 1], 0, 1, 'float32', 2) as tf.Tensor4D;
    const y = tf.tensor1d([0, 1, 2, 3, 0, 1, 2, 3], 'int32');
    const loss = () => tf.tidy(() => crossEntropy(model.forward(x, { training: false }).logits, y).dataSync()[0]);
    const before = loss();
    for (let i = 0; i < 5; i++) {
      k.observe(x, undefined, i);
      const grads = tf.variableGrads(() => crossEntropy(model.forward(x, { training: false }).logits, y), [...model.params.values()]);
      const named = new Map([...model.params].map(([n, v]) => [n, grads.grads[v.name]]));
      const r = k.precondition(named);
      tf.tidy(() => {
        for (const [n, p] of model.params) p.assign(tf.sub(p, tf.mul(r.v.get(n)!, Math.min(1, Math.sqrt(0.01 / r.vDotG!)))));
      });
      tf.dispose([grads.value, ...named.values(), ...r.v.values()]);
    }
    expect(loss()).toBeLessThan(before);
    tf.dispose([x, y]);
    k.dispose();
    model.dispose();
  });

  it('runs a layer it cannot register as tfjs does, and names it', () => {
    const lm = tf.sequential({
      layers: [tf.layers.conv2d({ name: 'dil', inputShape: [6, 6, 1], filters: 2, kernelSize: 3, dilationRate: 2 }), tf.layers.flatten(), tf.layers.dense({ units: 2 })],
    });
    const { model, warnings, skipped } = fromLayersModel(lm);
    expect(skipped).toEqual(['dil']);
    expect(warnings.join()).toMatch(/dil: dilated Conv2D \(dilation 2x2\) has no K-FAC block/);
    expect(model.layers.map((l) => l.kind)).toEqual(['dense']);
    const x = tf.randomNormal([3, 6, 6, 1], 0, 1, 'float32', 5);
    const want = (lm.predict(x) as tf.Tensor).dataSync();
    const got = tf.tidy(() => model.forward(x as tf.Tensor4D, { training: false }).logits.dataSync());
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 5);
    // an output activation the softmax cross-entropy cannot train is an error naming the layer
    const sig = tf.sequential({ layers: [tf.layers.dense({ name: 'sig', inputShape: [4], units: 3, activation: 'sigmoid' })] });
    expect(() => fromLayersModel(sig)).toThrow(/layer sig: output activation 'sigmoid'/);
    tf.dispose(x);
    model.dispose();
  });
});
