/**
 * The distributed runtime against independent computations: the weighted average of the gradient workers' shard
 * gradients equals the whole-batch gradient; the threaded runtime with staleness forced to zero reproduces the in-line
 * run; asynchronous inverses are computed on another thread and installed with the step their factors came from; the
 * simulated clock matches a hand computation; close() leaves no worker running.
 *
 * Model: the paper's CIFAR net without batch norm on 8×8×1 synthetic images (without BN the shard gradients average
 * exactly to the whole-batch gradient; with BN that holds only when the shard size is a multiple of the BN chunk).
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { makespan, SimClock } from '../src/distributed/clock';
import { RolePool } from '../src/distributed/pool';
import { gradientShard, wireParams } from '../src/distributed/roles';
import { DistConfig, ParameterServer, shardRanges } from '../src/distributed/server';
import type { GradientResult } from '../src/distributed/messages';
import { buildModel } from '../src/nn/zoo';
import { Trainer } from '../src/train/trainer';
import { identityPreconditioner } from '../src/train/update';
import { batchOf, C, H, K, runCfg, synthSplit } from './distributed-helpers';

beforeAll(async () => {
  await initBackend();
});

const spec = { model: { arch: 'cifarnet', bn: false } as const, inputShape: [H, H, C] as [number, number, number], numClasses: K };

function maxRelDiff(a: Float32Array | number[], b: Float32Array | number[]): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-12);
}

describe('simulated clock', () => {
  it('LPT makespan and one sync and one async step, by hand', () => {
    // blocks 5, 4, 3 ms on 2 threads: 5 | 4 then 3 on the 4 → 7
    expect(makespan([3, 5, 4], 2)).toBe(7);
    expect(makespan([3, 5, 4], 1)).toBe(12);
    const c = new SimClock(2);
    // step 0 (sync): shards 10 and 12 ms, stats 8 ms → compute 12; inverse 7 ms waited; update 3 → 22 ms
    c.compute([10, 12], 8);
    c.inverseSubmitted(0);
    expect(c.inverseInstalled(0, [3, 5, 4], true)).toBeCloseTo(7, 9);
    c.update(3);
    expect(c.seconds * 1000).toBeCloseTo(22, 9);
    // step 1: compute 20 (stats slower than the shards), submit a job of makespan 30 (async: never waited for)
    c.compute([10, 11], 20);
    c.inverseSubmitted(1);
    c.update(2);
    expect(c.seconds * 1000).toBeCloseTo(44, 9);
    // step 2: compute 10; installing job 1 blocking would wait 42+30 − 54 = 18 ms; async waits 0
    c.compute([10], 0);
    expect(c.inverseInstalled(1, [30], false)).toBe(0);
    c.update(1);
    expect(c.seconds * 1000).toBeCloseTo(55, 9);
    // a lagged job: submitted at 55+5=60 ms, makespan 10 → finishes at 70; checked at 60+5+... below
    c.compute([5]);
    c.inverseSubmitted(2);
    c.update(1);
    c.compute([2]); // check point 61+2 = 63 ms
    expect(c.inverseInstalled(2, [10], true)).toBeCloseTo(70 - 63, 9);
    expect(c.seconds * 1000).toBeCloseTo(70, 9);
  });
});

describe('gradient workers', () => {
  it('the size-weighted average of 2 threaded workers equals the whole-batch gradient (float32 tolerance)', async () => {
    const model = buildModel(spec.model, spec.inputShape, K, 5);
    const split = synthSplit(10);
    const whole = batchOf(split, 0, 10);
    // independent reference: the trainer's own whole-batch gradient
    const trainer = new Trainer(model, { preconditioner: identityPreconditioner, stepSize: { kind: 'lr', lr: 0.1, decay: { rate: 1, every: 1 }, interval: 1 }, momentum: 0, weightDecay: 0 }, { batchSize: 10 }, 0.9);
    const x = tf.tensor4d(whole.images, whole.shape);
    const y = tf.tensor1d(whole.labels, 'int32');
    const ref = trainer.gradients(x, y);
    const pool = new RolePool('gradient', 2, 'stop', []);
    try {
      // uneven shards (6 and 4) to check the weighting
      const ranges = shardRanges(10, 2).map(([a]) => a) && ([[0, 6], [6, 10]] as [number, number][]);
      const res = (await Promise.all(
        ranges.map(([lo, hi], i) => {
          const b = batchOf(split, lo, hi);
          return pool.run({ kind: 'gradient', spec, step: 0, worker: i, params: wireParams(model), images: b.images, labels: b.labels, shape: b.shape }, 0, i);
        }),
      )) as GradientResult[];
      expect(res.map((r) => r.count)).toEqual([6, 4]);
      for (const [j, [name]] of [...model.params].entries()) {
        const avg = res[0].grads[j].data.map((v, i) => (6 * v + 4 * res[1].grads[j].data[i]) / 10);
        const r = ref.grads.get(name)!.dataSync() as Float32Array;
        expect(maxRelDiff(avg, r)).toBeLessThan(1e-5);
      }
      const loss = (6 * res[0].loss + 4 * res[1].loss) / 10;
      expect(loss).toBeCloseTo(ref.loss.dataSync()[0], 5);
    } finally {
      await pool.close();
      tf.dispose([x, y, ref.loss, ref.errors, ...ref.grads.values()]);
      model.dispose();
    }
    expect(pool.liveThreads).toBe(0);
  });

  it('shards cover the batch, sizes differing by at most one', () => {
    expect(shardRanges(10, 4)).toEqual([[0, 3], [3, 6], [6, 8], [8, 10]]);
    expect(shardRanges(3, 4)).toEqual([[0, 1], [1, 2], [2, 3]]);
  });

  it('an in-line shard gradient equals the threaded one (relative 1e-6)', async () => {
    const model = buildModel(spec.model, spec.inputShape, K, 6);
    const b = batchOf(synthSplit(4), 0, 4);
    const inline = gradientShard(model, { step: 0, worker: 0, images: b.images, labels: b.labels, shape: b.shape });
    const pool = new RolePool('gradient', 1, 'stop', []);
    const t = (await pool.run({ kind: 'gradient', spec, step: 0, worker: 0, params: wireParams(model), ...batchOf(synthSplit(4), 0, 4) }, 0)) as GradientResult;
    await pool.close();
    model.dispose();
    for (let j = 0; j < t.grads.length; j++) expect(maxRelDiff(t.grads[j].data, inline.grads[j].data)).toBeLessThan(1e-6);
  });
});

async function runSteps(dist: Record<string, unknown>, steps: number, injections = {}, until?: (ps: ParameterServer) => boolean) {
  const cfg = runCfg();
  const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
  const ps = new ParameterServer(model, cfg, DistConfig.parse({ gradientWorkers: 2, ...dist }), { epochSize: 128 }, 0.9);
  ps.injections = injections;
  const split = synthSplit(16 * steps + 8 * steps, 4);
  const staleness: number[] = [];
  const sim: number[] = [];
  try {
    for (let k = 0; k < steps; k++) {
      if (until?.(ps)) break;
      const r = await ps.step(batchOf(split, 16 * k, 16 * k + 16), batchOf(split, 16 * steps + 8 * k, 16 * steps + 8 * k + 8));
      staleness.push(r.staleness!);
      sim.push(r.simSeconds);
    }
  } finally {
    await ps.close();
  }
  const params = [...model.params].map(([n, v]) => [n, Float32Array.from(v.dataSync() as Float32Array)] as const);
  const out = { params, staleness, sim, installs: ps.refresher!.stats.installs, live: ps.liveThreads, faults: ps.faults, ps };
  ps.dispose();
  model.dispose();
  return out;
}

describe('parameter server', () => {
  it('threaded roles with staleness forced to zero reproduce the in-line run (4 steps, sync every 2)', async () => {
    const inline = await runSteps({ gradients: 'inline', stats: 'inline', inverses: 'inline', inverse: { kind: 'sync', every: 2 } }, 4);
    const threaded = await runSteps({ gradients: 'thread', stats: 'thread', inverses: 'thread', inverse: { kind: 'sync', every: 2 } }, 4);
    expect(inline.staleness).toEqual([0, 1, 0, 1]);
    expect(threaded.staleness).toEqual([0, 1, 0, 1]);
    for (let i = 0; i < inline.params.length; i++) {
      expect(threaded.params[i][0]).toBe(inline.params[i][0]);
      expect(maxRelDiff(threaded.params[i][1], inline.params[i][1])).toBeLessThan(1e-5);
    }
    // the parameters moved
    const init = buildModel(runCfg().model, [H, H, C], K, runCfg().seed);
    expect(maxRelDiff(inline.params[0][1], init.params.get(inline.params[0][0])!.dataSync() as Float32Array)).toBeGreaterThan(1e-4);
    init.dispose();
    expect(threaded.installs.every((i) => i.threadId !== 0)).toBe(true);
    expect(inline.installs.every((i) => i.threadId === 0)).toBe(true);
    expect(threaded.live).toBe(0);
    // the simulated clock increases step by step
    for (let k = 1; k < 4; k++) expect(threaded.sim[k]).toBeGreaterThan(threaded.sim[k - 1]);
  });

  it('in-line lagged inverses: each job is installed exactly `lag` steps after its snapshot', async () => {
    const r = await runSteps({ inverses: 'inline', inverse: { kind: 'lagged', lag: 2 } }, 6);
    expect(r.staleness).toEqual([0, 1, 2, 2, 3, 2]);
    expect(r.installs.map((i) => [i.fromStep, i.step])).toEqual([
      [0, 0],
      [1, 3],
      [3, 5],
    ]);
  });

  it('async inverses run on another thread and, slowed down, are installed stale with the right fromStep', async () => {
    // run until three jobs were installed (at most 40 steps): each inverse job sleeps 150 ms in its worker first
    const r = await runSteps({ inverses: 'thread', inverse: { kind: 'async' } }, 40, { inverseAll: { delayMs: 150 } }, (ps) => ps.refresher!.stats.installed >= 3);
    expect(r.installs.length).toBeGreaterThanOrEqual(3);
    expect(r.installs.every((i) => i.threadId !== 0)).toBe(true);
    expect(r.installs[0]).toMatchObject({ fromStep: 0, step: 0 });
    for (const i of r.installs.slice(1)) expect(i.step).toBeGreaterThan(i.fromStep);
    expect(Math.max(...r.staleness)).toBeGreaterThan(0);
    // staleness at each step is that step minus the fromStep of the newest installed job
    for (let k = 0; k < r.staleness.length; k++) {
      const newest = r.installs.filter((i) => i.step <= k).at(-1)!;
      expect(r.staleness[k]).toBe(k - newest.fromStep);
    }
    expect(r.live).toBe(0);
  });
});
