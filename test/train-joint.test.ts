/**
 * K-FAC's statistics from the gradient's own forward pass (src/backend/tape.ts, src/kfac/statistics.ts
 * gradientsAndStatistics) against the separate computation they replace.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { gradientsOnOneTape } from '../src/backend/tape';
import { buildModel } from '../src/nn/zoo';
import { parseConfig, RunConfig } from '../src/train/config';
import { makeOptimizer, Trainer } from '../src/train/trainer';

beforeAll(async () => {
  await initBackend();
});

const H = 8;
function batch(seed: number, n = 8) {
  const images = new Float32Array(n * H * H).map((_, i) => Math.sin(i * 0.37 + seed * 1.7));
  const labels = new Int32Array(n).map((_, i) => (i * 7 + seed) % 10);
  return { images, labels, shape: [n, H, H, 1] as [number, number, number, number] };
}

const TINY = { arch: 'googlenet', bn: true, width: 0.1, stem: 'small', stages: [1, 0, 0] };

function run(optimizer: object, steps: number) {
  const cfg = parseConfig(
    RunConfig,
    { label: 't', run: 't', method: 'kfac', batchSize: 8, bnChunk: 4, examples: 800, model: TINY, optimizer: { kind: 'kfac', damping: 0.1, inverseEvery: 3, ...optimizer } },
    'run',
  );
  const model = buildModel(cfg.model, [H, H, 1], 10, 3);
  const trainer = new Trainer(model, makeOptimizer(cfg, model, { epochSize: 800 }), cfg, 0.9);
  const losses: number[] = [];
  for (let k = 0; k < steps; k++) losses.push(trainer.trainStep(batch(k)).loss);
  const params = [...model.params.values()].map((v) => Float32Array.from(v.dataSync()));
  const factors = (trainer.opt as unknown as { kfac: { snapshot(): { name: string }[] } }).kfac.snapshot();
  trainer.dispose();
  model.dispose();
  return { losses, params, factors };
}

describe('several backward passes over one forward pass', () => {
  it('equal separate tf.grads calls, leave no tensors behind, and give zeros for unconnected inputs', () => {
    const a = tf.variable(tf.tensor2d([[0.3, -1.2], [0.7, 2.0]]));
    const b = tf.variable(tf.tensor1d([0.5, -0.25]));
    const p = tf.zeros([2, 2]);
    const f1 = () => tf.sum(tf.square(tf.add(tf.matMul(a, a), p)));
    const f2 = () => tf.sum(tf.mul(tf.sigmoid(tf.add(tf.matMul(a, a), p)), b));
    const before = tf.memory().numTensors;
    const r = gradientsOnOneTape(() => {
      const s = tf.add(tf.matMul(a, a), p); // the shared forward
      return { outputs: [tf.sum(tf.square(s)), tf.sum(tf.mul(tf.sigmoid(s), b))], wrt: [[a, b], [p, b]], extra: { s } };
    });
    const g1 = tf.grads(f1)([a]);
    const g2 = tf.grads(f2)([p, b]);
    expect(Array.from(r.grads[0]![0]!.dataSync())).toEqual(Array.from(g1[0]!.dataSync()));
    expect(Array.from(r.grads[0]![1]!.dataSync())).toEqual([0, 0]); // f1 does not depend on b
    expect(Array.from(r.grads[1]![0]!.dataSync())).toEqual(Array.from(g2[0]!.dataSync()));
    expect(Array.from(r.grads[1]![1]!.dataSync())).toEqual(Array.from(g2[1]!.dataSync()));
    expect(r.values[0]!.dataSync()[0]).toBe(tf.tidy(() => f1()).dataSync()[0]);
    tf.dispose([...r.values, ...r.grads.flat(), r.extra.s, ...g1, ...g2]);
    // every tensor created above was disposed, except the scalar of the f1() value check
    expect(tf.memory().numTensors).toBe(before + 1);
    tf.dispose([a, b, p]);
  });
});

describe('K-FAC with the statistics from the gradient forward pass', () => {
  it('trains exactly as with a separate statistics pass (sampled and empirical Fisher)', () => {
    for (const fisher of ['sampled', 'empirical'] as const) {
      const shared = run({ fisher, sharedForward: true }, 7);
      const separate = run({ fisher, sharedForward: false }, 7);
      expect(shared.losses).toEqual(separate.losses);
      expect(shared.factors).toEqual(separate.factors);
      shared.params.forEach((p, i) => expect(Array.from(p), `${fisher} param ${i}`).toEqual(Array.from(separate.params[i]!)));
    }
  });

  it('keeps the separate pass where the statistics batch is a part of the batch (statsBatch), with the same results as before', () => {
    const a = run({ statsBatch: 4, sharedForward: true }, 4);
    const b = run({ statsBatch: 4, sharedForward: false }, 4);
    expect(a.losses).toEqual(b.losses);
  });
});
