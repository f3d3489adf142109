/**
 * The K-FAC optimizer in the training loop: memory discipline over 50 steps, bit-identical continuation from a
 * checkpoint, and the failure policy (non-finite statistics or inverses never reach the parameters). The moment pool
 * (factors.ts releaseMoments): a released matrix filled with garbage, reused by the next moment of its size, holds
 * exactly what a fresh zeroed one would (every entry written); and a NaN batch after a released one is still caught
 * (the 'skip' test below: its arrays come from the pool, which the finiteness check must not trust).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { momentFromGram, momentFromGramTs, releaseMoments } from '../src/kfac/factors';
import { KfacOptimizer, KfacStopError, KfacConfig, type KfacState } from '../src/kfac/optimizer';
import { buildModel } from '../src/nn/zoo';
import { readCheckpoint, writeCheckpoint } from '../src/train/checkpoint';
import { parseConfig, RunConfig } from '../src/train/config';
import { makeOptimizer, Trainer, type TrainerState } from '../src/train/trainer';

beforeAll(async () => {
  await initBackend();
});

const H = 8;
function batch(seed: number, n = 8) {
  const images = new Float32Array(n * H * H).map((_, i) => Math.sin(i * 0.37 + seed * 1.7));
  const labels = new Int32Array(n).map((_, i) => (i * 7 + seed) % 10);
  return { images, labels, shape: [n, H, H, 1] as [number, number, number, number] };
}

// a small inception net: dense, conv and batch-norm blocks, factors small enough that inverses are cheap
const TINY = { arch: 'googlenet', bn: true, width: 0.1, stem: 'small', stages: [1, 0, 0] };
const TINY_NOBN = { ...TINY, bn: false };

function makeTrainer(optimizer: object, model: object = TINY) {
  const cfg = parseConfig(
    RunConfig,
    { label: 't', run: 't', method: 'kfac', batchSize: 8, bnChunk: 4, examples: 800, model, optimizer: { kind: 'kfac', ...optimizer } },
    'run',
  );
  const m = buildModel(cfg.model, [H, H, 1], 10, 3);
  const opt = makeOptimizer(cfg, m, { epochSize: 800 });
  return { model: m, trainer: new Trainer(m, opt, cfg, 0.9), opt };
}

function params(model: ReturnType<typeof buildModel>): Float32Array[] {
  return [...model.params.values()].map((v) => Float32Array.from(v.dataSync()));
}

describe('the moment pool', () => {
  it('a reused matrix is overwritten entirely: the moment equals the one into a fresh zeroed array', () => {
    for (const [K, cOff] of [
      [37, 3 + 37 * 37],
      [37, -1],
      [5, 3 + 25],
    ] as const) {
      const data = Float32Array.from({ length: 3 + K * K + K }, (_, i) => Math.sin(i * 0.91) * 3);
      const d = cOff >= 0 ? K + 1 : K;
      const dirty = new Float64Array(d * d).fill(7.25);
      releaseMoments([dirty]);
      const got = momentFromGram(data, 3, cOff, 11, K);
      expect(got).toBe(dirty); // the pool served it
      const want = momentFromGramTs(data, 3, cOff, 11, K, new Float64Array(d * d));
      let differ = 0;
      for (let i = 0; i < d * d; i++) if (!Object.is(got[i], want[i])) differ++;
      expect(differ).toBe(0);
      // without a released matrix of that size: a fresh one
      expect(momentFromGram(data, 3, cOff, 11, K)).not.toBe(dirty);
    }
  });
});

describe('K-FAC in the training loop', () => {
  it('keeps tf.memory().numTensors flat over 50 K-FAC steps', () => {
    const { model, trainer } = makeTrainer({ inverseEvery: 5, damping: 0.1 });
    trainer.trainStep(batch(0));
    trainer.trainStep(batch(1));
    const before = tf.memory().numTensors;
    for (let k = 0; k < 50; k++) trainer.trainStep(batch(k));
    // inverses re-uploaded every 5 steps replace the previous ones: the count returns to the same value
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
    model.dispose();
  });

  it('continues bit-identically from a saved and restored state', () => {
    const cfg = { inverseEvery: 3, damping: 0.05, conv: 'kfc', statsBatch: 4 };
    const a = makeTrainer(cfg);
    for (let k = 0; k < 5; k++) a.trainer.trainStep(batch(k));
    const file = join(mkdtempSync(join(tmpdir(), 'dkfac-ckpt-')), 'state.bin');
    writeCheckpoint(file, a.trainer.state());
    for (let k = 5; k < 9; k++) a.trainer.trainStep(batch(k));
    const expected = params(a.model);

    const b = makeTrainer(cfg);
    b.trainer.restore(readCheckpoint<TrainerState>(file));
    expect(b.trainer.step).toBe(5);
    for (let k = 5; k < 9; k++) b.trainer.trainStep(batch(k));
    const got = params(b.model);
    expect(got.length).toBe(expected.length);
    for (let i = 0; i < got.length; i++) expect(Buffer.from(got[i].buffer).equals(Buffer.from(expected[i].buffer))).toBe(true);
    // and a restored copy that then diverges in data is really a different run (the test can fail)
    a.trainer.trainStep(batch(100));
    expect(params(a.model).some((p, i) => p.some((v, j) => v !== got[i][j]))).toBe(true);
    for (const t of [a, b]) {
      t.trainer.dispose();
      t.model.dispose();
    }
  });
});

describe('failure policy', () => {
  const cfg = (onNonFinite: 'skip' | 'stop') => KfacConfig.parse({ kind: 'kfac', damping: 0.01, inverseEvery: 1, onNonFinite });

  it("'skip': NaN statistics are not folded in, the layer is named and its damping raised", () => {
    const model = buildModel(TINY_NOBN as never, [H, H, 1], 10, 1);
    const k = new KfacOptimizer(model, cfg('skip'));
    const good = tf.tensor4d(batch(1).images, [8, H, H, 1]);
    k.observe(good, undefined, 0);
    const before = k.blocks.map((b) => b.factors());
    const bad = batch(2);
    bad.images[5] = Number.NaN;
    const x = tf.tensor4d(bad.images, [8, H, H, 1]);
    k.observe(x, undefined, 1);
    expect(k.events.length).toBeGreaterThan(0);
    expect(k.events[0]).toMatchObject({ step: 1, layer: 'conv1/3x3', what: 'statistics', action: 'skipped statistics' });
    expect(k.damping.get('conv1/3x3')).toBeCloseTo(0.1, 12);
    const after = k.blocks.map((b) => b.factors());
    for (let i = 0; i < before.length; i++) expect(after[i]).toEqual(before[i]);
    tf.dispose([good, x]);
    k.dispose();
    model.dispose();
  });

  it("'skip': a block whose inverse fails keeps its previous inverses; 'stop' stops naming the layer", () => {
    for (const policy of ['skip', 'stop'] as const) {
      const model = buildModel(TINY_NOBN as never, [H, H, 1], 10, 1);
      const k = new KfacOptimizer(model, cfg(policy));
      const target = 'inception_3a/3x3';
      const ti = k.blocks.findIndex((b) => b.name === target);
      const x = tf.tensor4d(batch(3).images, [8, H, H, 1]);
      k.observe(x, undefined, 0);
      const previous = k.inverses.get(target);
      // corrupt one block's factor averages as a bad statistic would have
      const s = k.state() as KfacState;
      const blk = s.blocks[ti] as { emas: { sum: Float64Array }[] };
      blk.emas[0].sum[0] = Number.POSITIVE_INFINITY;
      k.restore(s);
      if (policy === 'stop') {
        expect(() => k.refreshInverses()).toThrow(KfacStopError);
        expect(() => k.refreshInverses()).toThrow(/inception_3a\/3x3/);
      } else {
        k.refreshInverses();
        expect(k.inverses.get(target)).toBe(previous);
        expect(k.events.map((e) => e.layer)).toEqual([target, target, target, target]);
        expect(k.events[3].action).toBe('kept previous inverses');
        // the preconditioned direction stays finite
        const grads = new Map([...model.params].map(([n, v]) => [n, tf.onesLike(v)]));
        const r = k.precondition(grads);
        expect(Number.isFinite(r.vDotG)).toBe(true);
        tf.dispose([...grads.values(), ...r.v.values()]);
      }
      x.dispose();
      k.dispose();
      model.dispose();
    }
  });
});
