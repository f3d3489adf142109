/**
 * Resume: a run stopped at step k (the Ctrl-C mechanism) and continued with ctx.resume gives the same CSV rows (every
 * column but the clocks) and bit-identical final parameters as the same run left uninterrupted, for the
 * single-process loop (SGD with BN, K-FAC) and the distributed runtime (in-line, K-FAC with lagged inverses, so that an
 * inverse job is in flight across the stop; and SGD on 2 gradient workers). The uninterrupted run is the independent
 * computation; both keep their final checkpoint (keepCheckpoint) so that the final state can be read back.
 * Also: a finished run is skipped on resume; a checkpoint that does not match the run's config is an error naming the
 * key; a CSV cut mid-row by a killed process is cut back to the checkpoint's rows.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type BackendInfo, initBackend } from '../src/backend';
import { runDistributedTraining } from '../src/distributed/run';
import { DistConfig } from '../src/distributed/server';
import { readCheckpoint } from '../src/train/checkpoint';
import type { RunConfig } from '../src/train/config';
import { checkpointPath, type RunCheckpoint } from '../src/train/session';
import { clearStop, requestStop } from '../src/train/stop';
import { type RunContext, type RunSummary, runTraining } from '../src/train/run';
import type { TrainData } from '../src/train/trainer';
import { bitIdentical, finalParams, rows, runCfg, trainData } from './distributed-helpers';

let backend: BackendInfo;
beforeAll(async () => {
  backend = await initBackend();
});
afterEach(() => clearStop());

/** Training data whose main stream (seed `cfg.seed`) asks for a stop while its `stopAt`-th batch is fetched. */
function stoppingData(seed: number, stopAt: number): TrainData {
  const d = trainData();
  return {
    ...d,
    train: (s, shard) => {
      const stream = d.train(s, shard);
      if (s !== seed) return stream;
      const next = stream.next.bind(stream);
      let calls = 0;
      stream.next = (n: number) => {
        if (++calls === stopAt) requestStop('test');
        return next(n);
      };
      return stream;
    },
  };
}

type Runner = (cfg: RunConfig, ctx: RunContext) => Promise<RunSummary>;

/**
 * The uninterrupted run and the stopped-then-resumed one; 8 steps, a row every 2, evaluations at 4 and 8, the stop
 * after step 5 (neither a row nor an evaluation step: the stop's own interval-closing row must go on resume).
 */
async function stopAndResume(run: Runner, over: Record<string, unknown>) {
  const cfg = runCfg({ examples: 16 * 8, logEvery: 2, evals: 2, keepCheckpoint: true, ...over });
  const ctx = (dir: string, data: TrainData, resume = false): RunContext => ({ experiment: 'test', profile: 'test', resultsDir: dir, backend, data, resume });
  const full = mkdtempSync(join(tmpdir(), 'dkfac-full-'));
  const a = await run(cfg, ctx(full, trainData()));
  expect(a.status).toBe('finished');

  const part = mkdtempSync(join(tmpdir(), 'dkfac-part-'));
  const b1 = await run(cfg, ctx(part, stoppingData(cfg.seed, 5)));
  clearStop();
  expect(b1.status).toBe('stopped');
  expect(b1.steps).toBe(5);
  const stopped = rows(b1.csvPath);
  expect(stopped.map((r) => r[0])).toEqual(['step', '2', '4', '5']);
  expect(existsSync(checkpointPath(part, cfg.run))).toBe(true);

  const b2 = await run(cfg, ctx(part, trainData(), true));
  expect(b2.status).toBe('finished');
  expect(b2.resumedFrom).toBe(5);
  expect(b2.steps).toBe(8);
  const want = rows(a.csvPath);
  expect(want.map((r) => r[0])).toEqual(['step', '2', '4', '6', '8']);
  expect(rows(b2.csvPath)).toEqual(want);
  expect(b2.finalTestLoss).toBe(a.finalTestLoss);
  expect(bitIdentical(finalParams(part, cfg.run), finalParams(full, cfg.run))).toBe(true);
  const side = JSON.parse(readFileSync(b2.sidecarPath, 'utf8'));
  expect(side.status).toBe('finished');
  expect(side.resumes).toEqual([expect.objectContaining({ fromStep: 5 })]);
  return { cfg, full, part, a, b2 };
}

describe('resume after a stop gives the uninterrupted run', () => {
  it('runTraining, SGD with batch norm (rbz 8)', async () => {
    await stopAndResume(runTraining, {
      method: 'sgd',
      model: { arch: 'cifarnet', bn: true },
      bnChunk: 8,
      optimizer: { kind: 'sgd', lr: 0.05, decay: { rate: 0.5, every: 3 } },
    });
  });

  it('runTraining, K-FAC (sampled targets: the sampler RNG is restored)', async () => {
    await stopAndResume(runTraining, {});
  });

  it('runDistributedTraining in-line, K-FAC with lagged inverses (a job in flight across the stop), 2 gradient workers', async () => {
    const dist = DistConfig.parse({ gradientWorkers: 2, gradients: 'inline', stats: 'inline', inverses: 'inline', inverse: { kind: 'lagged', lag: 2 } });
    await stopAndResume((c, x) => runDistributedTraining(c, dist, x), {});
  });

  it('runDistributedTraining in-line, synchronous SGD on 2 gradient workers', async () => {
    const dist = DistConfig.parse({ gradientWorkers: 2, gradients: 'inline' });
    await stopAndResume((c, x) => runDistributedTraining(c, dist, x), { method: 'sgd', optimizer: { kind: 'sgd', lr: 0.05 } });
  });
});

describe('resume bookkeeping', () => {
  it('the stop checkpoint of a lagged run carries the inverse job in flight', async () => {
    const cfg = runCfg({ examples: 16 * 6, logEvery: 2, evals: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-lag-'));
    const dist = DistConfig.parse({ gradientWorkers: 1, inverses: 'inline', inverse: { kind: 'lagged', lag: 2 } });
    const s = await runDistributedTraining(cfg, dist, { experiment: 'test', profile: 'test', resultsDir: dir, backend, data: stoppingData(cfg.seed, 5) });
    expect(s.status).toBe('stopped');
    const c = readCheckpoint<RunCheckpoint>(checkpointPath(dir, cfg.run));
    expect(c.step).toBe(5);
    const pending = (c.loop as { ps: { refresher: { pending: { fromStep: number; due: number; task: { snapshots: unknown[] } } } } }).ps.refresher.pending;
    expect(pending).toMatchObject({ fromStep: 3, due: 5 });
    expect(pending.task.snapshots.length).toBeGreaterThan(0);
  });

  it('a finished run is skipped on resume; a changed config is an error naming the key; a CSV cut mid-row is repaired', async () => {
    const cfg = runCfg({ run: 'bk', method: 'sgd', optimizer: { kind: 'sgd', lr: 0.05 }, examples: 16 * 6, logEvery: 1, evals: 2 });
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-bk-'));
    const ctx = (data: TrainData, resume = false): RunContext => ({ experiment: 'test', profile: 'test', resultsDir: dir, backend, data, resume });
    const done = await runTraining(cfg, ctx(trainData()));
    expect(existsSync(checkpointPath(dir, cfg.run))).toBe(false); // removed once finished (keepCheckpoint false)
    const csv = readFileSync(done.csvPath, 'utf8');
    const skipped = await runTraining(cfg, ctx(trainData(), true));
    expect(skipped.skipped).toBe(true);
    expect(skipped.steps).toBe(6);
    expect(readFileSync(done.csvPath, 'utf8')).toBe(csv);
    await expect(runTraining({ ...cfg, optimizer: { ...cfg.optimizer, lr: 0.1 } } as RunConfig, ctx(trainData(), true))).rejects.toThrow(
      /finished with another configuration[\s\S]*config\.optimizer\.lr: 0\.05 in the checkpoint, 0\.1 in this run/,
    );

    // stopped after step 4 (its checkpoint: 4 rows), then a kill left a half-written row behind
    const stopped = await runTraining(cfg, ctx(stoppingData(cfg.seed, 4)));
    clearStop();
    expect(stopped.status).toBe('stopped');
    writeFileSync(stopped.csvPath, `${readFileSync(stopped.csvPath, 'utf8')}5,80,0.1,0.1,1.2`);
    await expect(runTraining({ ...cfg, seed: 4 }, ctx(trainData(), true))).rejects.toThrow(/does not match run 'bk':\n\s+config\.seed: 3 in the checkpoint, 4 in this run/);
    const resumed = await runTraining(cfg, ctx(trainData(), true));
    expect(resumed.status).toBe('finished');
    expect(rows(resumed.csvPath)).toEqual(rows(done.csvPath));
    // the fragment is gone: step 5 appears once
    expect(readFileSync(resumed.csvPath, 'utf8').split('\n').filter((l) => l.startsWith('5,')).length).toBe(1);
  });
});
