/**
 * `model.fit` with K-FAC: `fitKfac(model, x, y, options)` and `fitDatasetKfac(model, dataset, options)` train an
 * unchanged `tf.LayersModel` with the project's own training step (src/train/trainer.ts: K-FAC statistics, inverses,
 * preconditioning, KL step size, momentum; SGD through the same path) and write the trained weights back into the
 * LayersModel after every epoch, so `model.predict`, `model.evaluate` and `model.save` work as after `model.fit`.
 *
 * The loop, readable top to bottom: convert the LayersModel (fromLayersModel) → per epoch: batches (shuffled) →
 * Trainer.trainStepOn → batch logs {loss, acc} → write back → validation (val_loss, val_acc) → epoch logs → History.
 * Optimizer state (momentum, K-FAC factors and inverses) lives for one call: train with one call of N epochs.
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { shardIndices, shuffleInPlace } from '../../data-pipeline/stream';
import { registerAvgPoolGradFix } from '../backend/avgpool-grad';
import { registerWasmTrainingFixes } from '../backend/wasm-fixes';
import { fromLayersModel, writeBackWeights } from '../nn/from-layers';
import { type OptimizerConfig, parseConfig } from '../train/config';
import { makeOptimizer, Trainer } from '../train/trainer';
import { DatasetFitOptions, type FitCallbacks, FitOptions, isTensor, kfac, type Logs } from './options';

/** What `fitKfac` returns: the shape of tfjs's `History`. */
export interface KfacHistory {
  /** epoch numbers (from initialEpoch) */
  epoch: number[];
  /** per epoch: loss, acc and, with validation, val_loss, val_acc */
  history: Record<string, number[]>;
  params: Record<string, unknown>;
}

/** A training batch as the user gave it: x in the LayersModel's input shape, y integer labels or one-hot rows. */
interface UserBatch {
  x: tf.Tensor;
  y: tf.Tensor;
  /** dispose x and y after the step (slices and dataset elements; never the user's own tensors) */
  owned: boolean;
  /** x was checked and y is integer labels already (fitKfac checks everything before it starts) */
  checked?: boolean;
}

interface Source {
  /** training examples per epoch (the K-FAC/SGD decay interval 'half-epoch' is resolved against it) */
  epochSize(firstBatch: number): number;
  /** the batches of one epoch */
  epoch(epoch: number): AsyncIterable<UserBatch>;
  /** validation batches, if any, already as user batches */
  validation?(): AsyncIterable<UserBatch>;
  samples?: number;
  batchSize?: number;
  close(): void;
}

const warned = new WeakSet<tf.LayersModel>();

/** Integer labels [N] from integer labels ([N] or [N, 1]) or one-hot rows [N, K]; errors name the problem. */
function labelsOf(y: tf.Tensor, n: number, numClasses: number, where: string): tf.Tensor1D {
  if (y.shape[0] !== n) throw new Error(`${where}: ${y.shape[0]} labels for ${n} examples`);
  const isOneHot = y.rank === 2 && y.shape[1] === numClasses && numClasses > 1;
  if (isOneHot) {
    const v = y.dataSync();
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (let k = 0; k < numClasses; k++) {
        const e = v[i * numClasses + k];
        if (e !== 0 && e !== 1) throw new Error(`${where}: row ${i} of the labels is not one-hot (entry ${e}); give one-hot rows or class indices`);
        sum += e;
      }
      if (sum !== 1) throw new Error(`${where}: row ${i} of the labels is not one-hot (it sums to ${sum})`);
    }
    return tf.tidy(() => tf.argMax(y, 1).toInt() as tf.Tensor1D);
  }
  if (!(y.rank === 1 || (y.rank === 2 && y.shape[1] === 1))) {
    throw new Error(`${where}: labels must be class indices [N] or one-hot rows [N, ${numClasses}], got shape [${y.shape.join(', ')}]`);
  }
  const v = y.dataSync();
  for (let i = 0; i < n; i++) {
    if (!Number.isInteger(v[i]) || v[i] < 0 || v[i] >= numClasses) {
      throw new Error(`${where}: label ${v[i]} at index ${i} is not a class index in [0, ${numClasses})`);
    }
  }
  return tf.tidy(() => y.reshape([n]).toInt() as tf.Tensor1D);
}

function checkInputs(x: tf.Tensor, lm: tf.LayersModel, where: string): void {
  const want = lm.inputs[0].shape.slice(1);
  const got = x.shape.slice(1);
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new Error(`${where}: inputs have shape [${x.shape.join(', ')}], the model expects [N, ${want.join(', ')}]`);
  }
  const s = tf.tidy(() => tf.sum(x));
  const total = s.dataSync()[0];
  s.dispose();
  if (!Number.isFinite(total)) throw new Error(`${where}: the inputs contain NaN or Infinity`);
}

function callbackList(cbs: FitCallbacks | FitCallbacks[] | undefined): FitCallbacks[] {
  return cbs === undefined ? [] : Array.isArray(cbs) ? cbs : [cbs];
}

/**
 * `model.stopTraining`, as tfjs callbacks set it. An uncompiled Sequential model throws on this property (tfjs's
 * rule): it then cannot be stopped from a callback, as with model.fit.
 */
function stopRequested(lm: tf.LayersModel): boolean {
  try {
    return lm.stopTraining;
  } catch {
    return false;
  }
}

function clearStop(lm: tf.LayersModel): void {
  try {
    lm.stopTraining = false;
  } catch {
    // uncompiled Sequential: nothing can have set it
  }
}

const nextTask = () => new Promise<void>((r) => setTimeout(r, 0));

function describe(o: OptimizerConfig): string {
  return o.kind === 'kfac' ? 'K-FAC' : `SGD (lr ${o.lr}, momentum ${o.momentum})`;
}

interface LoopOptions {
  optimizer: OptimizerConfig;
  epochs: number;
  initialEpoch: number;
  callbacks: FitCallbacks[];
  verbose: number;
  seed: number;
  validationBatchSize?: number;
  what: string;
}

/** The training loop shared by fitKfac and fitDatasetKfac. */
async function train(lm: tf.LayersModel, source: Source, o: LoopOptions): Promise<KfacHistory> {
  registerAvgPoolGradFix();
  registerWasmTrainingFixes();
  const conv = fromLayersModel(lm, o.seed);
  const { model } = conv;
  if (conv.warnings.length && !warned.has(lm)) {
    warned.add(lm);
    console.warn(`${o.what}: ${conv.warnings.length} layer(s) trained without K-FAC preconditioning:\n  ${conv.warnings.join('\n  ')}`);
  }
  const numClasses = model.numClasses;
  let trainer: Trainer | null = null;
  const history: KfacHistory = { epoch: [], history: {}, params: {} };
  const params = {
    epochs: o.epochs,
    initialEpoch: o.initialEpoch,
    samples: source.samples,
    batchSize: source.batchSize,
    verbose: o.verbose,
    doValidation: !!source.validation,
    metrics: source.validation ? ['loss', 'acc', 'val_loss', 'val_acc'] : ['loss', 'acc'],
    optimizer: o.optimizer,
  };
  history.params = params;
  for (const cb of o.callbacks) {
    cb.setParams?.(params);
    cb.setModel?.(lm);
  }
  const call = async (f: (cb: FitCallbacks) => void | Promise<void> | undefined) => {
    for (const cb of o.callbacks) await f(cb);
  };
  const push = (k: string, v: number) => (history.history[k] ??= []).push(v);
  clearStop(lm);
  if (o.verbose) {
    const blocks = model.layers.length;
    console.log(`${o.what}: ${describe(o.optimizer)}${o.optimizer.kind === 'kfac' ? ` on ${blocks} layer block(s)` : ''}, backend ${tf.getBackend()}`);
  }
  try {
    await call((cb) => cb.onTrainBegin?.({}));
    for (let epoch = o.initialEpoch; epoch < o.epochs && !stopRequested(lm); epoch++) {
      const t0 = performance.now();
      await call((cb) => cb.onEpochBegin?.(epoch, {}));
      let lossSum = 0;
      let errSum = 0;
      let seen = 0;
      let batch = 0;
      for await (const b of source.epoch(epoch)) {
        const size = b.x.shape[0];
        try {
          await call((cb) => cb.onBatchBegin?.(batch, { batch, size }));
          if (!b.checked) checkInputs(b.x, lm, `${o.what}: batch ${batch}`);
          const y = b.checked ? (b.y.clone() as tf.Tensor1D) : labelsOf(b.y, size, numClasses, `${o.what}: batch ${batch}`);
          const x = conv.toModelInput(b.x);
          try {
            if (!trainer) {
              const cfg = { optimizer: o.optimizer, batchSize: size, bnChunk: undefined, seed: o.seed };
              trainer = new Trainer(model, makeOptimizer(cfg, model, { epochSize: source.epochSize(size) }), cfg, 0.99);
            }
            const r = trainer.trainStepOn(x, y);
            lossSum += r.loss * size;
            errSum += r.errors;
            seen += size;
            const logs: Logs = { batch, size, loss: r.loss, acc: 1 - r.errors / size };
            await call((cb) => cb.onBatchEnd?.(batch, logs));
          } finally {
            if (x !== b.x) x.dispose();
            y.dispose();
          }
        } finally {
          if (b.owned) tf.dispose([b.x, b.y]);
        }
        batch++;
        await nextTask();
        if (stopRequested(lm)) break;
      }
      if (seen === 0) throw new Error(`${o.what}: epoch ${epoch} had no training batches`);
      writeBackWeights(model, lm);
      const logs: Logs = { loss: lossSum / seen, acc: 1 - errSum / seen };
      if (source.validation && trainer) {
        const v = await trainer.evaluateTensors(validationTensors(source.validation(), conv.toModelInput, lm, numClasses, o.what), {
          averaged: false,
          dispose: true,
        });
        logs.val_loss = v.loss;
        logs.val_acc = 1 - v.error;
      }
      history.epoch.push(epoch);
      for (const [k, v] of Object.entries(logs)) push(k, v);
      if (o.verbose) {
        const parts = Object.entries(logs).map(([k, v]) => `${k}=${v.toFixed(4)}`);
        console.log(`Epoch ${epoch + 1}/${o.epochs}  ${parts.join(' ')}  ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
      await call((cb) => cb.onEpochEnd?.(epoch, logs));
    }
    await call((cb) => cb.onTrainEnd?.({}));
    return history;
  } finally {
    // the weights of the last completed epoch (or of the batch a stop came after) are in the LayersModel already;
    // an error mid-epoch leaves it at the previous epoch's
    (trainer as Trainer | null)?.dispose();
    model.dispose();
    source.close();
  }
}

async function* validationTensors(
  batches: AsyncIterable<UserBatch>,
  toModelInput: (x: tf.Tensor) => tf.Tensor4D,
  lm: tf.LayersModel,
  numClasses: number,
  what: string,
): AsyncGenerator<{ x: tf.Tensor4D; y: tf.Tensor1D }> {
  for await (const b of batches) {
    try {
      if (!b.checked) checkInputs(b.x, lm, `${what} (validation)`);
      const y = b.checked ? (b.y.clone() as tf.Tensor1D) : labelsOf(b.y, b.x.shape[0], numClasses, `${what} (validation)`);
      const x = toModelInput(b.x);
      // the evaluation disposes what it is given: hand it tensors of its own
      yield { x: x === b.x ? x.clone() : x, y };
    } finally {
      if (b.owned) tf.dispose([b.x, b.y]);
    }
  }
}

/** Consecutive slices of [x, y] of `batchSize` (owned: disposed after use). */
async function* slices(x: tf.Tensor, y: tf.Tensor, batchSize: number, checked = false): AsyncGenerator<UserBatch> {
  const n = x.shape[0];
  for (let i = 0; i < n; i += batchSize) {
    const m = Math.min(batchSize, n - i);
    yield { x: tf.slice(x, i, m), y: tf.slice(y, i, m), owned: true, checked };
  }
}

/** Checks x and turns y into integer labels, once, before any training (errors cite the example's index). */
function checkedPair(lm: tf.LayersModel, x: tf.Tensor, y: tf.Tensor, what: string): tf.Tensor1D {
  checkInputs(x, lm, what);
  return labelsOf(y, x.shape[0], lm.outputs[0].shape[1] as number, what);
}

/**
 * Trains `model` (a `tf.LayersModel`, Sequential or functional, unchanged and not necessarily compiled) on `x`, `y`
 * with K-FAC (default) or SGD, like `model.fit`. Labels are class indices `[N]` or one-hot rows `[N, classes]`; the
 * output layer has a softmax (or linear) activation and the loss is the softmax cross-entropy. After every epoch the
 * trained weights are in `model`, so `model.predict`, `model.evaluate` and `model.save` see them.
 *
 * Dense, Conv2D and BatchNormalization layers get K-FAC blocks; other layers with weights are trained with the
 * identity preconditioner, and are listed once in a console warning. Set `model.stopTraining = true` in a callback to
 * stop after the current batch.
 *
 * @returns the per-epoch `loss`, `acc` (and `val_loss`, `val_acc`), shaped as tfjs's `History`
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { initBackend, fitKfac, kfac } from 'dkfac';
 * await initBackend();
 * const h = await fitKfac(model, xs, ys, { optimizer: kfac(), epochs: 3, batchSize: 64, validationSplit: 0.1 });
 * await model.save('file://./my-model');
 * ```
 */
export async function fitKfac(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor, options: FitOptions = {}): Promise<KfacHistory> {
  const o = parseConfig(FitOptions, options ?? {}, 'fitKfac options');
  if (!isTensor(x) || !isTensor(y)) throw new Error('fitKfac: x and y must be tensors');
  if (x.shape[0] !== y.shape[0]) throw new Error(`fitKfac: x has ${x.shape[0]} examples, y ${y.shape[0]}`);
  const labels = checkedPair(model, x, y, 'fitKfac');
  const owned: tf.Tensor[] = [labels];
  let trainX = x;
  let trainY: tf.Tensor = labels;
  let val: [tf.Tensor, tf.Tensor] | undefined;
  try {
    if (o.validationData) {
      const [vx, vy] = o.validationData;
      val = [vx, checkedPair(model, vx, vy, 'fitKfac: validationData')];
      owned.push(val[1]);
    }
    if (o.validationSplit !== undefined) {
      const n = x.shape[0];
      const split = Math.floor(n * (1 - o.validationSplit));
      if (split <= 0 || split >= n) throw new Error(`fitKfac: validationSplit ${o.validationSplit} leaves no training or no validation examples of ${n}`);
      trainX = tf.slice(x, 0, split);
      trainY = tf.slice(labels, 0, split);
      val = [tf.slice(x, split), tf.slice(labels, split)];
      owned.push(trainX, trainY, ...val);
    }
  } catch (e) {
    tf.dispose(owned);
    throw e;
  }
  const n = trainX.shape[0];
  if (n === 0) throw new Error('fitKfac: no training examples');
  const batchSize = Math.min(o.batchSize, n);
  const valBatch = o.validationBatchSize ?? batchSize;
  const source: Source = {
    samples: n,
    batchSize,
    epochSize: () => n,
    async *epoch(epoch) {
      if (!o.shuffle) {
        yield* slices(trainX, trainY, batchSize, true);
        return;
      }
      const order = shuffleInPlace(shardIndices(n), seedrandom(`fitKfac:${o.seed}:${epoch}`));
      for (let i = 0; i < n; i += batchSize) {
        const idx = tf.tensor1d(order.subarray(i, Math.min(n, i + batchSize)), 'int32');
        const b = { x: tf.gather(trainX, idx), y: tf.gather(trainY, idx), owned: true, checked: true };
        idx.dispose();
        yield b;
      }
    },
    validation: val ? () => slices(val![0], val![1], valBatch, true) : undefined,
    close: () => tf.dispose(owned),
  };
  return train(model, source, { ...o, optimizer: o.optimizer ?? kfac(), callbacks: callbackList(o.callbacks), what: 'fitKfac' });
}

/** A dataset element as a batch: `{xs, ys}` or `[xs, ys]`. */
function elementBatch(e: unknown, what: string): UserBatch {
  const pair = Array.isArray(e) ? { xs: e[0], ys: e[1] } : (e as { xs?: unknown; ys?: unknown });
  if (!pair || !isTensor(pair.xs) || !isTensor(pair.ys)) {
    throw new Error(`${what}: dataset elements must be {xs, ys} or [xs, ys] batches of tensors (use dataset.batch(n))`);
  }
  return { x: pair.xs, y: pair.ys, owned: true };
}

/**
 * Trains `model` on a `tf.data.Dataset` of batches (`{xs, ys}` or `[xs, ys]`, e.g. `tf.data.zip({xs, ys}).batch(64)`),
 * like `model.fitDataset`: an epoch is one pass over the dataset, or `batchesPerEpoch` batches of a (possibly endless)
 * one. Everything else is as {@link fitKfac}.
 */
export async function fitDatasetKfac(model: tf.LayersModel, dataset: tf.data.Dataset<tf.TensorContainer>, options: DatasetFitOptions = {}): Promise<KfacHistory> {
  const o = parseConfig(DatasetFitOptions, options ?? {}, 'fitDatasetKfac options');
  const what = 'fitDatasetKfac';
  if (!dataset || typeof dataset.iterator !== 'function') throw new Error(`${what}: expected a tf.data.Dataset`);
  let shared: Awaited<ReturnType<tf.data.Dataset<tf.TensorContainer>["iterator"]>> | null = null;
  const size = dataset.size;
  const source: Source = {
    epochSize(first) {
      if (o.batchesPerEpoch) return o.batchesPerEpoch * first;
      if (typeof size === 'number' && Number.isFinite(size) && size > 0) return size * first;
      throw new Error(`${what}: the dataset's size is unknown or infinite: pass batchesPerEpoch`);
    },
    async *epoch() {
      if (o.batchesPerEpoch) {
        shared ??= await dataset.iterator();
        for (let i = 0; i < o.batchesPerEpoch; i++) {
          const r = await shared.next();
          if (r.done) {
            if (i === 0) throw new Error(`${what}: the dataset ran out of batches; make it longer (dataset.repeat()) or lower batchesPerEpoch`);
            console.warn(`${what}: the dataset ran out after ${i} of ${o.batchesPerEpoch} batches of this epoch`);
            return;
          }
          yield elementBatch(r.value, what);
        }
        return;
      }
      const it = await dataset.iterator();
      for (let r = await it.next(); !r.done; r = await it.next()) yield elementBatch(r.value, what);
    },
    validation: o.validationData
      ? async function* () {
          const v = o.validationData!;
          if (Array.isArray(v)) {
            const vb = o.validationBatchSize ?? 256;
            yield* slices(v[0], v[1], vb);
            return;
          }
          const it = await (v as tf.data.Dataset<tf.TensorContainer>).iterator();
          for (let i = 0; o.validationBatches === undefined || i < o.validationBatches; i++) {
            const r = await it.next();
            if (r.done) break;
            yield elementBatch(r.value, `${what} (validation)`);
          }
        }
      : undefined,
    close: () => {},
  };
  return train(model, source, { ...o, optimizer: o.optimizer ?? kfac(), callbacks: callbackList(o.callbacks), what });
}
