/**
 * The training loop's pieces against hand computations (momentum, Polyak debiasing, learning-rate decay), its memory
 * discipline (no tensor leak across steps), configuration validation, and an end-to-end run on the embedded
 * Fashion-MNIST subset writing its CSV and sidecar.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { buildModel } from '../src/nn/zoo';
import { ConfigError, parseConfig, RunConfig } from '../src/train/config';
import { CSV_COLUMNS } from '../src/train/schema';
import { runTraining } from '../src/train/run';
import { makeOptimizer, splitBatches, Trainer } from '../src/train/trainer';
import { decayed, decayInterval, MomentumUpdater, PolyakAverage, stepSize } from '../src/train/update';
import { openTrainData } from '../experiments/data';

beforeAll(async () => {
  await initBackend();
});

const base = {
  label: 'test',
  run: 'test',
  method: 'sgd+bn',
  batchSize: 16,
  examples: 160,
  bnChunk: 8,
  model: { arch: 'googlenet', width: 0.1, stem: 'small', stages: [1, 1, 0], bn: true },
  optimizer: { kind: 'sgd', lr: 0.05 },
} as const;

describe('configuration', () => {
  it('rejects an unknown key, naming it', () => {
    expect(() => parseConfig(RunConfig, { ...base, lerning_rate: 0.1 }, 'run')).toThrow(/lerning_rate/);
    expect(() => parseConfig(RunConfig, { ...base, optimizer: { kind: 'sgd', lr: 0.1, mom: 0.9 } }, 'run')).toThrow(/optimizer.*mom/s);
  });
  it('rejects impossible values, naming the key', () => {
    expect(() => parseConfig(RunConfig, { ...base, batchSize: -4 }, 'run')).toThrow(/batchSize/);
    expect(() => parseConfig(RunConfig, { ...base, bnChunk: 64 }, 'run')).toThrow(/bnChunk 64 exceeds batchSize 16/);
    expect(() => parseConfig(RunConfig, { ...base, optimizer: { kind: 'sgd', lr: 0.1, momentum: 1.5 } }, 'run')).toThrow(/momentum/);
    expect(() => parseConfig(RunConfig, { ...base, model: { arch: 'vgg' } }, 'run')).toThrow(ConfigError);
  });
});

describe('update pieces', () => {
  it('momentum: u ← μu + ηv, θ ← θ − u, as computed by hand over three steps', () => {
    const p = new Map([['w', tf.variable(tf.tensor1d([1, -2]))]]);
    const mu = new MomentumUpdater(0.9);
    const gs = [
      [0.5, 1],
      [-1, 0.25],
      [2, -3],
    ];
    let u = [0, 0];
    let th = [1, -2];
    for (const [i, g] of gs.entries()) {
      const eta = 0.1 / (i + 1);
      const v = new Map([['w', tf.tensor1d(g)]]);
      mu.apply(p, v, eta);
      u = u.map((ui, j) => 0.9 * ui + eta * g[j]);
      th = th.map((t, j) => t - u[j]);
      tf.dispose([...v.values()]);
    }
    const got = p.get('w')!.dataSync();
    expect(got[0]).toBeCloseTo(th[0], 6);
    expect(got[1]).toBeCloseTo(th[1], 6);
    mu.dispose();
    p.get('w')!.dispose();
  });

  it('Polyak averaging is zero-debiased: the exponentially weighted mean of the iterates', () => {
    const pa = new PolyakAverage(0.8);
    const xs = [3, -1, 4, 1.5];
    for (const x of xs) {
      const t = tf.scalar(x);
      pa.update(new Map([['a', t]]));
      t.dispose();
    }
    // independent: Σ ξ^(k−i) (1−ξ) x_i / (1 − ξ^k)
    let num = 0;
    for (let i = 0; i < xs.length; i++) num += 0.8 ** (xs.length - 1 - i) * 0.2 * xs[i];
    const expected = num / (1 - 0.8 ** xs.length);
    const d = pa.debiased();
    expect(d.get('a')!.dataSync()[0]).toBeCloseTo(expected, 5);
    tf.dispose([...d.values()]);
    pa.dispose();
  });

  it('exponential decay: 0.96 every half epoch', () => {
    const every = decayInterval({ rate: 0.96, every: 'half-epoch' }, 12000, 32);
    expect(every).toBe(188);
    expect(decayed(0.1, { rate: 0.96, every: 'half-epoch' }, every, 187)).toBeCloseTo(0.1, 12);
    expect(decayed(0.1, { rate: 0.96, every: 'half-epoch' }, every, 188)).toBeCloseTo(0.096, 12);
    expect(decayed(0.1, { rate: 0.96, every: 'half-epoch' }, every, 3 * 188 + 5)).toBeCloseTo(0.1 * 0.96 ** 3, 12);
  });

  it('KL rule: η = min(η_max, sqrt(c_k / vᵀg))', () => {
    const rule = { kind: 'kl' as const, c0: 0.01, etaMax: 1, decay: { rate: 0.96, every: 10 }, interval: 10 };
    expect(stepSize(rule, 0, 4).eta).toBeCloseTo(Math.sqrt(0.01 / 4), 12);
    expect(stepSize(rule, 25, 4).eta).toBeCloseTo(Math.sqrt((0.01 * 0.96 ** 2) / 4), 12);
    expect(stepSize(rule, 0, 1e-6).eta).toBe(1);
    expect(() => stepSize(rule, 0, Number.NaN)).toThrow(/NaN/);
  });
});

describe('trainer', () => {
  it('keeps tf.memory().numTensors flat across SGD+BN steps', async () => {
    const cfg = parseConfig(RunConfig, base, 'run');
    const model = buildModel(cfg.model, [12, 12, 1], 10, 0);
    const tr = new Trainer(model, makeOptimizer(cfg, model, { epochSize: 1000 }), cfg, 0.9);
    const images = new Float32Array(16 * 144).map((_, i) => Math.sin(i));
    const labels = new Int32Array(16).map((_, i) => i % 10);
    const batch = { images, labels, shape: [16, 12, 12, 1] as [number, number, number, number] };
    tr.trainStep(batch);
    tr.trainStep(batch);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 8; i++) tr.trainStep(batch);
    await tr.evaluate(splitBatches({ images, labels, count: 16 }, 8, [12, 12, 1]));
    expect(tf.memory().numTensors).toBe(before);
    tr.dispose();
    model.dispose();
  });

  it('trains on the embedded Fashion-MNIST subset and writes the CSV and sidecar', async () => {
    const data = await openTrainData({ name: 'fashion-mnist', dataDir: undefined, download: false, trainSubset: 2000 });
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-train-'));
    const cfg = parseConfig(
      RunConfig,
      { ...base, examples: 1600, batchSize: 32, bnChunk: 16, logEvery: 10, evals: 2, evalExamples: 500, optimizer: { kind: 'sgd', lr: 0.1 } },
      'run',
    );
    const s = await runTraining(cfg, {
      experiment: 'test',
      profile: 'test',
      resultsDir: dir,
      backend: { name: 'wasm', tfBackend: 'wasm', requested: 'wasm', activated: 'wasm', version: tf.version_core, detail: 'test' },
      data,
    });
    expect(s.status).toBe('finished');
    expect(s.steps).toBe(50);
    const lines = readFileSync(s.csvPath, 'utf8').trim().split('\n');
    expect(lines[0]).toBe(CSV_COLUMNS.join(','));
    // a row every 10 steps, plus the evaluation rows at steps 25 and 50 (evals: 2)
    expect(lines.length).toBe(1 + 6);
    const rows = lines.slice(1).map((l) => l.split(','));
    const col = (name: string) => CSV_COLUMNS.indexOf(name as never);
    expect(rows.map((r) => Number(r[col('examples')]))).toEqual([320, 640, 800, 960, 1280, 1600]);
    expect(rows.map((r) => r[col('test_error')] !== '')).toEqual([false, false, true, false, false, true]);
    // learning from real data: the last interval's training loss is well below ln(10)
    expect(Number(rows[5][col('train_loss')])).toBeLessThan(1.6);
    expect(Number(rows[5][col('test_error')])).toBeLessThan(0.6);
    const side = JSON.parse(readFileSync(s.sidecarPath, 'utf8'));
    expect(side.status).toBe('finished');
    expect(side.backend.name).toBe('wasm');
    expect(side.data.dataset).toBe('fashion-mnist');
    expect(side.summary.steps).toBe(50);
  });
});

describe('clean stop', () => {
  it('a stop request ends the run after the current step with its last row written and status stopped', async () => {
    const { requestStop, clearStop } = await import('../src/train/stop');
    const data = await openTrainData({ name: 'fashion-mnist', dataDir: undefined, download: false, trainSubset: 500 });
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-stop-'));
    const cfg = parseConfig(RunConfig, { ...base, run: 'stopped', examples: 1600, batchSize: 16, logEvery: 100, evals: 0 }, 'run');
    const real = data.train.bind(data);
    let calls = 0;
    // ask for the stop while the 3rd batch is being fetched, as a Ctrl-C would arrive mid-run
    const wrapped = { ...data, train: (seed: number) => {
      const s = real(seed);
      return { ...s, epochSize: s.epochSize, height: s.height, width: s.width, channels: s.channels, numClasses: s.numClasses,
        next: async (n: number) => { if (++calls === 3) requestStop('test'); return s.next(n); }, close: () => s.close() };
    } };
    try {
      const s = await runTraining(cfg, { experiment: 'test', profile: 'test', resultsDir: dir, backend: { name: 'wasm', tfBackend: 'wasm', requested: 'wasm', activated: 'wasm', version: '', detail: '' }, data: wrapped });
      expect(s.status).toBe('stopped');
      expect(s.steps).toBe(3);
      const lines = readFileSync(s.csvPath, 'utf8').trim().split('\n');
      expect(lines.length).toBe(2);
      expect(lines[1].split(',')[0]).toBe('3');
      expect(JSON.parse(readFileSync(s.sidecarPath, 'utf8')).status).toBe('stopped');
    } finally {
      clearStop();
    }
  });
});
