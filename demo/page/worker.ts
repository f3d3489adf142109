/**
 * One training run in a web worker: dkfac's own fitDatasetKfac (src/, through the browser entry) on a tfjs-layers
 * convnet (examples/convnet.ts), K-FAC or SGD, with the embedded Fashion-MNIST subset fetched from the page's server
 * and read by the data pipeline's own IDX code. Every step and every test evaluation is posted to the page.
 */
import * as tf from '@tensorflow/tfjs';
import { fetchIdxDataset } from '../../data-pipeline/idx-fetch';
import { InMemoryStream } from '../../data-pipeline/stream';
import { smallConvnet } from '../../examples/convnet';
import { fitDatasetKfac, initBackend, kfac, sgd } from '../../src/browser';
import type { FromWorker, StartMessage, ToWorker } from './protocol';

interface WorkerScope {
  location: Location;
  postMessage(m: FromWorker): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
}
const scope = self as unknown as WorkerScope;
const post = (m: FromWorker) => scope.postMessage(m);

let model: tf.LayersModel | null = null;
let stop = false;

scope.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'stop') {
    stop = true;
    if (model) model.stopTraining = true;
  } else if (m.type === 'start') {
    run(m).catch((err: Error) => post({ type: 'error', message: err?.message ?? String(err) }));
  }
};

async function run(p: StartMessage): Promise<void> {
  const here = scope.location.href;
  const wasmPaths = new URL('./wasm/', here).href;
  const info = await initBackend(p.backend as 'auto', { wasmPaths });
  post({ type: 'backend', name: info.name, detail: info.detail });
  post({ type: 'status', text: 'loading Fashion-MNIST' });
  const ds = await fetchIdxDataset('fashion-mnist', new URL('./data/', here).href);
  try {
    await train(p, ds);
  } catch (e) {
    // WebGPU chosen automatically but failing to train (e.g. a driver without a needed feature): wasm instead
    if (info.name === 'wasm' || p.backend !== 'auto' || stop) throw e;
    const wasm = await initBackend('wasm', { wasmPaths });
    post({ type: 'backend', name: wasm.name, detail: `${wasm.detail}; ${info.name} failed to train: ${(e as Error).message}` });
    await train(p, ds);
  }
}

async function train(p: StartMessage, ds: Awaited<ReturnType<typeof fetchIdxDataset>>): Promise<void> {
  const xTest = tf.tensor4d(ds.test.images, [ds.test.count, ds.height, ds.width, 1]);
  const yTest = tf.tensor1d(ds.test.labels, 'int32');
  // the schedules' half epoch in steps of the real epoch (an "epoch" of fitDatasetKfac here is one evaluation period)
  const decay = { rate: 0.96, every: Math.max(1, Math.round(ds.train.count / p.batchSize / 2)) };
  const optimizer = p.method === 'kfac' ? kfac({ stepSize: { rule: 'kl', decay } }) : sgd({ lr: p.sgdLr, decay });
  const stream = new InMemoryStream(ds.train, { height: ds.height, width: ds.width, channels: 1, numClasses: ds.numClasses, seed: p.seed });
  const batches = tf.data.generator(() => ({
    next: async () => {
      const b = await stream.next(p.batchSize);
      return { value: { xs: tf.tensor4d(b.images, b.shape), ys: tf.tensor1d(b.labels, 'int32') }, done: false };
    },
  }) as unknown as Iterator<tf.TensorContainer>);

  model = smallConvnet(p.seed);
  model.compile({ optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy' }); // makes model.stopTraining settable
  if (stop) model.stopTraining = true;
  let step = 0;
  let seconds = 0;
  let t0 = 0;
  post({ type: 'status', text: 'training' });
  await fitDatasetKfac(model, batches, {
    optimizer,
    epochs: Math.ceil(p.steps / p.evalEvery),
    batchesPerEpoch: p.evalEvery,
    validationData: [xTest, yTest],
    validationBatchSize: 500,
    verbose: 0,
    seed: p.seed,
    callbacks: {
      onBatchBegin: () => void (t0 = performance.now()),
      onBatchEnd: (_b, logs) => {
        seconds += (performance.now() - t0) / 1000;
        step++;
        post({ type: 'step', step, loss: logs!.loss!, acc: logs!.acc!, seconds });
      },
      onEpochEnd: (_e, logs) => post({ type: 'eval', step, loss: logs!.val_loss!, acc: logs!.val_acc!, seconds }),
    },
  });
  tf.dispose([xTest, yTest]);
  post({ type: 'done', stopped: stop, steps: step, seconds });
}
