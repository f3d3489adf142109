/**
 * A tfjs-layers model trained with K-FAC by `fitKfac`, then used the standard tfjs way: `model.evaluate`,
 * `model.save('file://…')` and `tf.loadLayersModel('file://…')`. Data: the embedded Fashion-MNIST subset
 * (12,000 training and 2,000 test images; `--data-dir` for another copy).
 *
 *   npx tsx examples/fashion-mnist-layers.ts [--optimizer kfac|sgd] [--epochs 2] [--batch-size 64] [--out DIR]
 *                                            [--damping λ] [--c0 c] [--lr η]
 *
 * In your own project the imports are `from 'dkfac'` instead of '../src'.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Command, InvalidArgumentError } from 'commander';
import { loadIdxDataset } from '../data-pipeline/idx';
import { DEFAULT_EMBEDDED_ROOT } from '../data-pipeline/locate';
import { fitKfac, initBackend, kfac, sgd } from '../src';
import { smallConvnet } from './convnet';

const positive = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
};

const opts = new Command()
  .name('fashion-mnist-layers')
  .description('trains a tfjs-layers convnet with fitKfac, evaluates, saves and reloads it')
  .option('--optimizer <kind>', 'kfac or sgd', 'kfac')
  .option('--lr <rate>', 'SGD learning rate', parseFloat, 0.02)
  .option('--damping <λ>', 'K-FAC damping (default: kfac()\'s)', parseFloat)
  .option('--c0 <c>', 'K-FAC KL threshold c0 (default: kfac()\'s)', parseFloat)
  .option('--epochs <n>', 'epochs', positive, 2)
  .option('--batch-size <n>', 'batch size', positive, 64)
  .option('--examples <n>', 'use the first N training examples', positive)
  .option('--data-dir <dir>', 'a folder with the Fashion-MNIST IDX files (default: the embedded subset)')
  .option('--out <dir>', 'where the model is saved', 'models/fashion-mnist-convnet')
  .parse()
  .opts<{ optimizer: string; lr: number; damping?: number; c0?: number; epochs: number; batchSize: number; examples?: number; dataDir?: string; out: string }>();
if (opts.optimizer !== 'kfac' && opts.optimizer !== 'sgd') {
  console.error(`error: --optimizer must be kfac or sgd, got '${opts.optimizer}'`);
  process.exit(2);
}

async function main(): Promise<void> {
  const backend = await initBackend(); // also registers file:// save/load for plain tfjs in Node
  console.log(`backend: ${backend.name} (${backend.detail})`);
  const data = await loadIdxDataset('fashion-mnist', { dataDir: opts.dataDir ?? join(DEFAULT_EMBEDDED_ROOT, 'fashion-mnist') });
  const n = Math.min(opts.examples ?? data.train.count, data.train.count);
  console.log(`data: ${data.source.dataset} (${data.source.origin}: ${data.source.path}), ${n} training and ${data.test.count} test images`);

  const [h, w] = [data.height, data.width];
  const xTrain = tf.tensor4d(data.train.images.subarray(0, n * h * w), [n, h, w, 1]);
  const yTrain = tf.oneHot(tf.tensor1d(data.train.labels.subarray(0, n), 'int32'), 10);
  const xTest = tf.tensor4d(data.test.images, [data.test.count, h, w, 1]);
  const yTest = tf.oneHot(tf.tensor1d(data.test.labels, 'int32'), 10);

  // A model defined the standard tfjs-layers way (see convnet.ts), compiled for evaluate() as usual.
  const model = smallConvnet();
  model.compile({ optimizer: 'sgd', loss: 'categoricalCrossentropy', metrics: ['accuracy'] });

  const t0 = performance.now();
  await fitKfac(model, xTrain, yTrain, {
    optimizer:
      opts.optimizer === 'kfac'
        ? kfac({ ...(opts.damping !== undefined && { damping: opts.damping }), ...(opts.c0 !== undefined && { stepSize: { rule: 'kl', c0: opts.c0 } }) })
        : sgd({ lr: opts.lr }),
    epochs: opts.epochs,
    batchSize: opts.batchSize,
    validationData: [xTest, yTest],
  });
  const seconds = (performance.now() - t0) / 1000;

  const [loss, acc] = (model.evaluate(xTest, yTest, { batchSize: 500 }) as tf.Scalar[]).map((t) => t.dataSync()[0]);
  console.log(`model.evaluate on the test set: loss ${loss.toFixed(4)}, accuracy ${acc.toFixed(4)} (${opts.optimizer}, ${seconds.toFixed(1)} s of training)`);

  const url = `file://${opts.out}`;
  await model.save(url);
  const reloaded = await tf.loadLayersModel(`${url}/model.json`);
  const a = model.predict(xTest) as tf.Tensor;
  const b = reloaded.predict(xTest) as tf.Tensor;
  const diff = tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
  console.log(`saved to ${url} and reloaded with tf.loadLayersModel: largest prediction difference ${diff}`);
}

main().catch((e: Error) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
