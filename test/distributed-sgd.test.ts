/**
 * Synchronous data-parallel SGD through the parameter server, against the single-process trainer (the independent
 * computation: one whole-batch gradient, no sharding, no averaging) fed the same batches:
 *   - without batch norm, 2 in-line gradient workers reproduce the trainer's parameters, momentum and Polyak average
 *     to float32 tolerance;
 *   - with batch norm and shards that are whole numbers of BN chunks (rbz), every chunk sees the same examples as in
 *     the whole batch, so parameters and BN running statistics agree too;
 *   - with batch norm on whole shards (no rbz), each worker normalises by its own shard: the parameters differ from
 *     the whole-batch trainer (that is what data-parallel BN is), while the merged running statistics of the first BN
 *     layer after one step equal the whole batch's (pooled mean and within + between variance); with one worker the
 *     shard is the batch and everything agrees.
 * And the loop: an SGD run through runDistributedTraining writes rows with no staleness and no KL threshold, starts
 * no stats or inverse workers, and its simulated clock is Σ_k max(shard costs) + PS time.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BackendInfo, initBackend } from '../src/backend';
import { runDistributedTraining } from '../src/distributed/run';
import { DistConfig, ParameterServer } from '../src/distributed/server';
import type { Model } from '../src/nn/model';
import { buildModel } from '../src/nn/zoo';
import { formatIssues } from '../src/train/config';
import { CSV_COLUMNS } from '../src/train/schema';
import { makeOptimizer, Trainer } from '../src/train/trainer';
import { batchOf, C, H, K, maxRelDiff, runCfg, synthSplit, trainData } from './distributed-helpers';

let backend: BackendInfo;
beforeAll(async () => {
  backend = await initBackend();
});

const SGD = { kind: 'sgd', lr: 0.05, momentum: 0.9, decay: { rate: 0.5, every: 2 } };

function snapshot(m: Map<string, tf.Tensor>): Map<string, Float32Array> {
  return new Map([...m].map(([k, v]) => [k, Float32Array.from(v.dataSync() as Float32Array)]));
}

interface Final {
  params: Map<string, Float32Array>;
  bn: Map<string, Float32Array>;
  velocity: Map<string, Float32Array>;
  polyak: Map<string, Float32Array>;
  losses: number[];
}

function final(model: Model, tr: Trainer, losses: number[]): Final {
  return { params: snapshot(model.params), bn: snapshot(model.store.state), velocity: snapshot(tr.momentum.velocity), polyak: snapshot(tr.polyak.avg), losses };
}

/** `steps` steps of the single-process trainer and of the PS with `workers` in-line gradient workers, same batches. */
async function both(over: Record<string, unknown>, steps: number, workers = 2): Promise<[Final, Final]> {
  const cfg = runCfg({ method: 'sgd', optimizer: SGD, ...over });
  const split = synthSplit(cfg.batchSize * steps, 4);
  const batches = Array.from({ length: steps }, (_, k) => batchOf(split, cfg.batchSize * k, cfg.batchSize * (k + 1)));

  const m1 = buildModel(cfg.model, [H, H, C], K, cfg.seed);
  const tr = new Trainer(m1, makeOptimizer(cfg, m1, { epochSize: 128 }), cfg, 0.9);
  const l1 = batches.map((b) => tr.trainStep(b).loss);
  const ref = final(m1, tr, l1);
  tr.dispose();
  m1.dispose();

  const m2 = buildModel(cfg.model, [H, H, C], K, cfg.seed);
  const ps = new ParameterServer(m2, cfg, DistConfig.parse({ gradientWorkers: workers, gradients: 'inline' }), { epochSize: 128 }, 0.9);
  const l2: number[] = [];
  try {
    for (const b of batches) {
      const r = await ps.step(b);
      expect(r.staleness).toBeUndefined();
      expect(r.info.klThreshold).toBeUndefined();
      l2.push(r.loss);
    }
  } finally {
    await ps.close();
  }
  expect(ps.kfac).toBeNull();
  expect(ps.refresher).toBeNull();
  expect(ps.pools).toHaveLength(0);
  const got = final(m2, ps.trainer, l2);
  ps.dispose();
  m2.dispose();
  return [ref, got];
}

describe('synchronous data-parallel SGD through the parameter server', () => {
  it('2 in-line gradient workers reproduce the single-process trainer without batch norm (float32 tolerance)', async () => {
    const [ref, got] = await both({}, 4);
    expect(maxRelDiff(got.params, ref.params)).toBeLessThan(2e-5);
    expect(maxRelDiff(got.velocity, ref.velocity)).toBeLessThan(2e-4);
    expect(maxRelDiff(got.polyak, ref.polyak)).toBeLessThan(2e-5);
    for (let k = 0; k < 4; k++) expect(got.losses[k]).toBeCloseTo(ref.losses[k], 5);
    // the parameters moved (so the comparison means something): the trainer's first-step update is not tiny
    const init = buildModel(runCfg().model, [H, H, C], K, runCfg().seed);
    expect(maxRelDiff(ref.params, snapshot(init.params))).toBeGreaterThan(1e-3);
    init.dispose();
  });

  it('with batch norm and shards that are whole numbers of BN chunks (rbz 4, shards 8), parameters and running statistics agree', async () => {
    const [ref, got] = await both({ model: { arch: 'cifarnet', bn: true }, bnChunk: 4 }, 4);
    expect(ref.bn.size).toBeGreaterThan(0);
    expect(maxRelDiff(got.params, ref.params)).toBeLessThan(1e-4);
    expect(maxRelDiff(got.bn, ref.bn)).toBeLessThan(1e-4);
    expect(maxRelDiff(got.polyak, ref.polyak)).toBeLessThan(1e-4);
  });

  it('with batch norm on whole shards (no rbz) each worker normalises by its shard: parameters differ, first-step running statistics are the whole batch', async () => {
    const [ref1, got1] = await both({ model: { arch: 'cifarnet', bn: true } }, 1);
    // BN in training mode normalised each shard by its own statistics: a different gradient than the whole batch's
    expect(maxRelDiff(got1.params, ref1.params)).toBeGreaterThan(1e-4);
    // the first BN layer sees the same inputs (the same initial parameters) either way: its merged running statistics
    // (pooled) are the whole batch's; deeper layers see inputs normalised per shard, so theirs differ
    const first = (m: Map<string, Float32Array>) => new Map([...m].filter(([k]) => k.startsWith('conv1_bn/')));
    expect(first(ref1.bn).size).toBe(2);
    expect(maxRelDiff(first(got1.bn), first(ref1.bn))).toBeLessThan(1e-5);
    expect(maxRelDiff(got1.bn, ref1.bn)).toBeGreaterThan(1e-4);
    // and with one gradient worker the shard is the batch: identical
    const [ref, got] = await both({ model: { arch: 'cifarnet', bn: true } }, 3, 1);
    expect(maxRelDiff(got.params, ref.params)).toBeLessThan(1e-5);
    expect(maxRelDiff(got.bn, ref.bn)).toBeLessThan(1e-5);
  });

  it('runDistributedTraining with SGD on 2 gradient threads: no stats or inverse workers, empty staleness, clock = Σ max(shards) + PS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-dsgd-'));
    const cfg = runCfg({ run: 'dsgd', method: 'sgd', optimizer: SGD, examples: 16 * 4 });
    const s = await runDistributedTraining(cfg, DistConfig.parse({ gradientWorkers: 2, gradients: 'thread' }), {
      experiment: 'test',
      profile: 'test',
      resultsDir: dir,
      backend,
      data: trainData(),
    });
    expect(s.status).toBe('finished');
    expect(s.steps).toBe(4);
    expect(s.meanStaleness).toBeUndefined();
    expect(s.inverseInstalls).toBe(0);
    const lines = readFileSync(s.csvPath, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(5);
    const col = (c: string) => CSV_COLUMNS.indexOf(c as never);
    const rows = lines.slice(1).map((l) => l.split(','));
    expect(rows.map((r) => r[col('inverse_staleness')])).toEqual(['', '', '', '']);
    expect(rows.map((r) => r[col('kl_threshold')])).toEqual(['', '', '', '']);
    // the learning-rate schedule of the config: 0.05 · 0.5^⌊k/2⌋ at steps 0..3
    expect(rows.map((r) => Number(r[col('learning_rate')]))).toEqual([0.05, 0.05, 0.025, 0.025]);
    const sim = rows.map((r) => Number(r[col('sim_seconds')]));
    for (let k = 1; k < 4; k++) expect(sim[k]).toBeGreaterThan(sim[k - 1]);
    const side = JSON.parse(readFileSync(s.sidecarPath, 'utf8'));
    expect(side.summary.inverseJobs).toBeUndefined();
    expect(side.summary.simSeconds).toBeCloseTo(s.simSeconds, 9);
  });

  it('the simulated clock charges max(shard costs) + PS time per SGD step (no stats, no inverse wait)', async () => {
    const cfg = runCfg({ method: 'sgd', optimizer: SGD });
    const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
    const ps = new ParameterServer(model, cfg, DistConfig.parse({ gradientWorkers: 2 }), { epochSize: 128 }, 0.9);
    const split = synthSplit(32, 5);
    try {
      let before = 0;
      for (let k = 0; k < 2; k++) {
        const r = await ps.step(batchOf(split, 16 * k, 16 * k + 16));
        const { compute, wait, update } = ps.clock.last;
        expect(wait).toBe(0);
        expect(compute).toBeGreaterThan(0);
        expect(update).toBeGreaterThan(0);
        expect((r.simSeconds - before) * 1000).toBeCloseTo(compute + update, 6);
        before = r.simSeconds;
      }
    } finally {
      await ps.close();
      ps.dispose();
      model.dispose();
    }
  });

  it("costClock 'cpu': role costs are this process's CPU time (at most the step's CPU time), never with roles on this process's threads", async () => {
    const bad = DistConfig.safeParse({ gradients: 'thread', costClock: 'cpu' });
    expect(bad.success).toBe(false);
    expect(formatIssues(bad.error!)).toMatch(/costClock: 'cpu' measures role costs as a process's CPU time: no role may run on this process's threads/);
    const cfg = runCfg({ method: 'sgd', optimizer: SGD });
    const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
    const ps = new ParameterServer(model, cfg, DistConfig.parse({ gradientWorkers: 2, inverses: 'inline', costClock: 'cpu' }), { epochSize: 128 }, 0.9);
    const split = synthSplit(48, 6);
    try {
      for (let k = 0; k < 3; k++) {
        const c0 = process.cpuUsage();
        const r = await ps.step(batchOf(split, 16 * k, 16 * k + 16));
        const d = process.cpuUsage(c0);
        const cpu = (d.user + d.system) / 1000;
        const { compute, update } = ps.clock.last;
        expect(compute).toBe(Math.max(...r.roleMs.shards));
        // the two shards ran one after the other: their CPU times, plus the update's, fit in the step's CPU time
        expect(r.roleMs.shards.reduce((a, b) => a + b, 0) + update).toBeLessThanOrEqual(cpu + 0.5);
        expect(compute).toBeGreaterThan(0);
      }
    } finally {
      await ps.close();
      ps.dispose();
      model.dispose();
    }
  });
});
