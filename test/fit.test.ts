/**
 * fitKfac / fitDatasetKfac on unchanged tf.LayersModels, checked against tfjs's own computations: after training,
 * the LayersModel's predict/evaluate (tfjs layers, the written-back weights) agree with the dkfac model's own numbers;
 * one SGD step equals the update computed from tfjs's own gradient of the LayersModel; the epoch logs are the
 * size-weighted means of the batch logs; integer and one-hot labels train identically; layers without a K-FAC block
 * are trained with the identity and named once; bad input is an error naming the problem.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadIdxDataset } from '../data-pipeline/idx';
import { DEFAULT_EMBEDDED_ROOT } from '../data-pipeline/locate';
import { fitDatasetKfac, fitKfac, fromLayersModel, initBackend, kfac, KfacOptimizer, sgd, writeBackWeights } from '../src/index';
import { makeOptimizer, Trainer } from '../src/train/trainer';

let x: tf.Tensor4D;
let yInt: tf.Tensor1D;
let xVal: tf.Tensor4D;
let yVal: tf.Tensor1D;

beforeAll(async () => {
  await initBackend('wasm');
  // real data: the first 384 training and 200 test images of the embedded Fashion-MNIST subset
  const ds = await loadIdxDataset('fashion-mnist', { dataDir: DEFAULT_EMBEDDED_ROOT });
  const per = 28 * 28;
  x = tf.tensor4d(ds.train.images.subarray(0, 384 * per), [384, 28, 28, 1]);
  yInt = tf.tensor1d(ds.train.labels.subarray(0, 384), 'int32');
  xVal = tf.tensor4d(ds.test.images.subarray(0, 200 * per), [200, 28, 28, 1]);
  yVal = tf.tensor1d(ds.test.labels.subarray(0, 200), 'int32');
});
afterAll(() => tf.dispose([x, yInt, xVal, yVal]));

/** A small Sequential convnet, seeded. */
function convnet(seed = 1): tf.Sequential {
  const k = (i: number) => tf.initializers.glorotUniform({ seed: seed * 10 + i });
  return tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: k(1) }),
      tf.layers.batchNormalization(),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: k(2) }),
    ],
  });
}

const weightsOf = (m: tf.LayersModel) => m.getWeights().map((w) => Array.from(w.dataSync()));

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('fitKfac on a Sequential convnet', () => {
  it('trains with K-FAC, calls the callbacks in tfjs order, and writes the weights back (evaluate = its own val_loss)', async () => {
    const lm = convnet();
    const before = weightsOf(lm);
    const events: string[] = [];
    const batchLogs: { loss: number; acc: number; size: number }[] = [];
    const epochLogs: Record<string, number>[] = [];
    const tensors = tf.memory().numTensors;
    const h = await fitKfac(lm, x, yInt, {
      optimizer: kfac({ inverseEvery: 5 }),
      epochs: 2,
      batchSize: 100,
      validationData: [xVal, yVal],
      verbose: 0,
      callbacks: {
        onTrainBegin: () => void events.push('trainBegin'),
        onEpochBegin: (e) => void events.push(`epochBegin${e}`),
        onBatchBegin: (b) => void events.push(`batchBegin${b}`),
        onBatchEnd: (b, l) => {
          events.push(`batchEnd${b}`);
          batchLogs.push({ loss: l!.loss, acc: l!.acc, size: l!.size });
        },
        onEpochEnd: async (e, l) => {
          events.push(`epochEnd${e}`);
          epochLogs.push({ ...l });
        },
        onTrainEnd: () => void events.push('trainEnd'),
      },
    });
    // 384 examples at batch 100: batches of 100, 100, 100, 84
    const epoch = ['batchBegin0', 'batchEnd0', 'batchBegin1', 'batchEnd1', 'batchBegin2', 'batchEnd2', 'batchBegin3', 'batchEnd3'];
    expect(events).toEqual(['trainBegin', 'epochBegin0', ...epoch, 'epochEnd0', 'epochBegin1', ...epoch, 'epochEnd1', 'trainEnd']);
    expect(batchLogs.map((b) => b.size)).toEqual([100, 100, 100, 84, 100, 100, 100, 84]);
    // epoch logs: the size-weighted means of the batch logs
    for (const e of [0, 1]) {
      const bs = batchLogs.slice(4 * e, 4 * e + 4);
      const mean = (f: (b: (typeof bs)[number]) => number) => bs.reduce((s, b) => s + f(b) * b.size, 0) / 384;
      expect(epochLogs[e]!.loss).toBeCloseTo(mean((b) => b.loss), 6);
      expect(epochLogs[e]!.acc).toBeCloseTo(mean((b) => b.acc), 6);
    }
    expect(h.epoch).toEqual([0, 1]);
    expect(Object.keys(h.history).sort()).toEqual(['acc', 'loss', 'val_acc', 'val_loss']);
    expect(h.history.loss).toEqual(epochLogs.map((l) => l.loss));
    // it learned: the second epoch's loss is below the first batch's (ln 10 ≈ 2.3 at the start)
    expect(h.history.loss[1]).toBeLessThan(batchLogs[0]!.loss * 0.8);
    expect(weightsOf(lm).some((w, i) => maxAbsDiff(w, before[i]!) > 1e-3)).toBe(true);
    // nothing leaked (the user's tensors and the LayersModel's variables are all that remain)
    expect(tf.memory().numTensors).toBe(tensors);
    // tfjs's own evaluate of the written-back LayersModel gives the dkfac model's validation numbers
    lm.compile({ optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] });
    const [vl, va] = lm.evaluate(xVal, yVal.toFloat().reshape([-1, 1])) as tf.Scalar[];
    expect(vl!.dataSync()[0]).toBeCloseTo(h.history.val_loss[1]!, 5);
    expect(va!.dataSync()[0]).toBeCloseTo(h.history.val_acc[1]!, 5);
    tf.dispose([vl!, va!]);
    lm.dispose();
  });

  it('integer labels and one-hot labels train identically', async () => {
    const run = async (y: tf.Tensor) => {
      const lm = convnet(2);
      const h = await fitKfac(lm, x, y, { optimizer: kfac({ damping: 0.1, inverseEvery: 2 }), batchSize: 128, verbose: 0, seed: 3 });
      const w = weightsOf(lm);
      lm.dispose();
      return { loss: h.history.loss[0]!, w };
    };
    const oneHot = tf.oneHot(yInt, 10);
    const a = await run(yInt);
    const b = await run(oneHot);
    oneHot.dispose();
    expect(b.loss).toBe(a.loss);
    a.w.forEach((w, i) => expect(maxAbsDiff(w, b.w[i]!)).toBe(0));
  });

  it('SGD through the same call: one full-batch step is w − lr·∇L, with ∇L from tfjs on the LayersModel itself', async () => {
    const make = () =>
      tf.sequential({
        layers: [
          tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 3, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 7 }) }),
          tf.layers.flatten(),
          tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 8 }) }),
        ],
      });
    const ref = make();
    const xs = x.slice(0, 64);
    const ys = yInt.slice(0, 64);
    const lr = 0.1;
    // the reference: tfjs's own forward (lm.apply) and gradient, no dkfac code
    const vars = ref.trainableWeights.map((w) => w.read() as tf.Variable);
    const { value, grads } = tf.variableGrads(
      () => tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(ys, 10), tf.log(ref.apply(xs) as tf.Tensor)), 1))) as tf.Scalar,
      vars,
    );
    value.dispose();
    const expected = ref.trainableWeights.map((w) => tf.tidy(() => tf.sub(w.read(), tf.mul(grads[(w.read() as tf.Variable).name]!, lr)).dataSync()));
    const lm = make();
    await fitKfac(lm, xs, ys, { optimizer: sgd({ lr }), batchSize: 64, shuffle: false, verbose: 0 });
    lm.trainableWeights.forEach((w, i) => expect(maxAbsDiff(w.read().dataSync(), expected[i]!)).toBeLessThan(1e-5));
    tf.dispose([xs, ys, ...Object.values(grads)]);
    ref.dispose();
    lm.dispose();
  });

  it('validationSplit holds out the last examples, as tfjs does; stopTraining from a callback stops after the batch', async () => {
    const lm = convnet(4);
    lm.compile({ optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy' });
    const before = weightsOf(lm);
    let batches = 0;
    const h = await fitKfac(lm, x, yInt, {
      optimizer: sgd({ lr: 0.05 }),
      epochs: 5,
      batchSize: 32,
      validationSplit: 0.25,
      verbose: 0,
      callbacks: {
        onBatchEnd: (b) => {
          batches++;
          if (b === 2) lm.stopTraining = true;
        },
      },
    });
    expect(batches).toBe(3);
    expect(h.epoch).toEqual([0]);
    expect(h.params.samples).toBe(288);
    // the held-out quarter is what val_loss measured: tfjs's evaluate on x[288:] gives the same number
    const [vl] = [lm.evaluate(x.slice(288), yInt.slice(288).toFloat().reshape([-1, 1]))].flat() as tf.Scalar[];
    expect(vl!.dataSync()[0]).toBeCloseTo(h.history.val_loss[0]!, 5);
    expect(weightsOf(lm).some((w, i) => maxAbsDiff(w, before[i]!) > 1e-4)).toBe(true);
    // the next call starts afresh: the stop request of the last one is cleared
    const again = await fitKfac(lm, x, yInt, { optimizer: sgd({ lr: 0.05 }), epochs: 2, batchSize: 128, verbose: 0 });
    expect(again.epoch).toEqual([0, 1]);
    lm.dispose();
  });
});

describe('tfjs callbacks', () => {
  it("tf.callbacks.earlyStopping stops fitKfac as it stops model.fit", async () => {
    const lm = convnet(8);
    lm.compile({ optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy' });
    // an improvement of more than 10 nats per epoch is never seen: the second epoch ends the training
    const h = await fitKfac(lm, x, yInt, {
      epochs: 6,
      batchSize: 128,
      verbose: 0,
      callbacks: [tf.callbacks.earlyStopping({ monitor: 'loss', minDelta: 10, patience: 0 })],
    });
    expect(h.epoch).toEqual([0, 1]);
    lm.dispose();
  });
});

describe('fitKfac on a functional model with a layer K-FAC cannot precondition', () => {
  it('trains it with the identity, names it once, leaves frozen layers alone', async () => {
    const input = tf.input({ shape: [28, 28, 1] });
    const a = tf.layers.conv2d({ name: 'c1', filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }).apply(input) as tf.SymbolicTensor;
    // a Dense on a 4-D map (applied per position) and a PReLU (learned slopes): no K-FAC block for either
    const pw = tf.layers.dense({ name: 'pointwise', units: 4 }).apply(a) as tf.SymbolicTensor;
    const pr = tf.layers.prelu({ name: 'prelu' }).apply(pw) as tf.SymbolicTensor;
    const sum = tf.layers.add().apply([a, pr]) as tf.SymbolicTensor;
    const frozen = tf.layers.conv2d({ name: 'frozen', filters: 2, kernelSize: 1, trainable: false }).apply(sum) as tf.SymbolicTensor;
    const cat = tf.layers.concatenate().apply([sum, frozen]) as tf.SymbolicTensor;
    const pooled = tf.layers.globalAveragePooling2d({}).apply(cat) as tf.SymbolicTensor;
    const out = tf.layers.dense({ name: 'out', units: 10, activation: 'softmax' }).apply(pooled) as tf.SymbolicTensor;
    const lm = tf.model({ inputs: input, outputs: out });

    const conv = fromLayersModel(lm);
    expect(conv.model.layers.map((l) => l.name)).toEqual(['c1', 'out']);
    expect([...conv.skipped].sort()).toEqual(['pointwise', 'prelu']);
    const k = new KfacOptimizer(conv.model, kfac());
    expect(k.blocks.map((b) => b.name)).toEqual(['c1', 'out']);
    k.dispose();
    // the converted model computes what tfjs computes
    const probe = x.slice(0, 8);
    const want = (lm.predict(probe) as tf.Tensor).dataSync();
    const got = tf.tidy(() => tf.softmax(conv.model.forward(probe, { training: false }).logits).dataSync());
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
    conv.model.dispose();
    // disposing the dkfac model left the borrowed tfjs variables alive
    expect(() => lm.predict(probe)).not.toThrow();

    const w0 = Object.fromEntries(lm.layers.map((l) => [l.name, l.getWeights().map((t) => Array.from(t.dataSync()))]));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      for (let i = 0; i < 2; i++) await fitKfac(lm, x, yInt, { optimizer: kfac({ damping: 0.1 }), batchSize: 128, verbose: 0 });
      expect(warn).toHaveBeenCalledTimes(1);
      const text = String(warn.mock.calls[0]![0]);
      expect(text).toMatch(/pointwise: Dense on a rank-4 input has no K-FAC block; trained with the identity/);
      expect(text).toMatch(/prelu: PReLU has no K-FAC block; trained with the identity/);
    } finally {
      warn.mockRestore();
    }
    const changed = (name: string) => lm.getLayer(name).getWeights().some((t, i) => maxAbsDiff(t.dataSync(), w0[name]![i]!) > 1e-6);
    expect(changed('pointwise')).toBe(true);
    expect(changed('prelu')).toBe(true);
    expect(changed('c1')).toBe(true);
    expect(changed('frozen')).toBe(false);
    probe.dispose();
    lm.dispose();
  });

  it('takes flat [N, D] inputs (an MLP)', async () => {
    const lm = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [784], units: 32, activation: 'tanh' }), tf.layers.dense({ units: 10, activation: 'softmax' })],
    });
    const flat = x.reshape([384, 784]);
    const h = await fitKfac(lm, flat, yInt, { optimizer: kfac({ damping: 0.1 }), epochs: 3, batchSize: 64, verbose: 0 });
    expect(h.history.loss[2]).toBeLessThan(h.history.loss[0]!);
    flat.dispose();
    lm.dispose();
  });
});

describe('writeBackWeights in a custom loop', () => {
  it('after Trainer steps on the converted model, lm.predict equals the dkfac model to 1e-5', () => {
    const lm = convnet(5);
    const { model, toModelInput } = fromLayersModel(lm);
    const cfg = { optimizer: kfac({ damping: 0.1, inverseEvery: 2 }), batchSize: 64, bnChunk: undefined, seed: 0 };
    const tr = new Trainer(model, makeOptimizer(cfg, model, { epochSize: 384 }), cfg, 0.99);
    for (let i = 0; i < 4; i++) {
      const xs = x.slice(i * 64, 64);
      const ys = yInt.slice(i * 64, 64);
      tr.trainStepOn(toModelInput(xs), ys);
      tf.dispose([xs, ys]);
    }
    writeBackWeights(model, lm);
    const mine = tf.tidy(() => tf.softmax(model.forward(xVal, { training: false }).logits).dataSync());
    const theirs = (lm.predict(xVal) as tf.Tensor).dataSync();
    expect(maxAbsDiff(mine, theirs)).toBeLessThan(1e-5);
    // and the batch-norm running statistics went back too (they moved away from 0 / 1)
    const [, , mean, variance] = lm.layers[1]!.getWeights();
    expect(maxAbsDiff(mean!.dataSync(), model.store.state.get(`${lm.layers[1]!.name}/mean`)!.dataSync())).toBe(0);
    expect(Math.max(...variance!.dataSync())).not.toBe(1);
    tr.dispose();
    model.dispose();
    lm.dispose();
  });
});

describe('fitDatasetKfac', () => {
  it('trains on a tf.data.Dataset of batches, with batchesPerEpoch and a validation dataset', async () => {
    const lm = convnet(6);
    const train = tf.data.zip({ xs: tf.data.array(tf.unstack(x)), ys: tf.data.array(tf.unstack(yInt)) }).batch(64);
    const val = tf.data.zip({ xs: tf.data.array(tf.unstack(xVal)), ys: tf.data.array(tf.unstack(yVal)) }).batch(100);
    const batches: number[] = [];
    const h = await fitDatasetKfac(lm, train.repeat(), {
      optimizer: kfac({ damping: 0.1, inverseEvery: 5 }),
      epochs: 3,
      batchesPerEpoch: 4,
      validationData: val,
      verbose: 0,
      callbacks: { onBatchEnd: (b) => void batches.push(b) },
    });
    expect(batches).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
    expect(h.history.val_loss).toHaveLength(3);
    lm.compile({ optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy' });
    const vl = lm.evaluate(xVal, yVal.toFloat().reshape([-1, 1])) as tf.Scalar;
    expect(vl.dataSync()[0]).toBeCloseTo(h.history.val_loss[2]!, 5);
    // one pass per epoch over a finite dataset
    const h2 = await fitDatasetKfac(lm, train, { optimizer: sgd({ lr: 0.05 }), epochs: 1, verbose: 0 });
    expect(h2.history.loss).toHaveLength(1);
    // an endless dataset without batchesPerEpoch is refused, naming the fix
    await expect(fitDatasetKfac(lm, train.repeat(), { verbose: 0 })).rejects.toThrow(/batchesPerEpoch/);
    lm.dispose();
  });
});

describe('bad input', () => {
  it('names unknown option keys, impossible values and bad labels', async () => {
    expect(() => kfac({ dampnig: 0.1 } as never)).toThrow(/dampnig/);
    expect(() => kfac({ damping: -1 })).toThrow(/damping/);
    expect(() => sgd({} as never)).toThrow(/lr/);
    const lm = convnet(7);
    const xs = x.slice(0, 16);
    const ys = yInt.slice(0, 16);
    await expect(fitKfac(lm, xs, ys, { epoch: 2 } as never)).rejects.toThrow(/epoch/);
    await expect(fitKfac(lm, xs, ys, { batchSize: 0 })).rejects.toThrow(/batchSize/);
    await expect(fitKfac(lm, xs, ys, { validationSplit: 0.2, validationData: [xs, ys] })).rejects.toThrow(/validationSplit/);
    const bad = tf.tensor1d([...Array(15).fill(0), 12], 'int32');
    await expect(fitKfac(lm, xs, bad, { verbose: 0 })).rejects.toThrow(/label 12 at index 15/);
    const soft = tf.fill([16, 10], 0.1);
    await expect(fitKfac(lm, xs, soft, { verbose: 0 })).rejects.toThrow(/not one-hot/);
    const nan = tf.tidy(() => xs.add(tf.scalar(Number.NaN)));
    await expect(fitKfac(lm, nan, ys, { verbose: 0 })).rejects.toThrow(/NaN or Infinity/);
    const wrong = tf.zeros([16, 14, 14, 1]);
    await expect(fitKfac(lm, wrong, ys, { verbose: 0 })).rejects.toThrow(/shape \[16, 14, 14, 1\].*\[N, 28, 28, 1\]/);
    const sigmoid = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 3, activation: 'sigmoid' })] });
    await expect(fitKfac(sigmoid, tf.zeros([2, 4]), tf.tensor1d([0, 1], 'int32'), { verbose: 0 })).rejects.toThrow(/softmax/);
    tf.dispose([xs, ys, bad, soft, nan, wrong]);
    sigmoid.dispose();
    lm.dispose();
  });
});
