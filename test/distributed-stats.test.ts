/**
 * The stats worker's schedules. Folded statistics are checked against an independent computation: statsBatch on a
 * separate replica loaded with the parameters of the step the statistics are tagged with, on the same batch and seed.
 *   - lagged (in-line, deterministic): step k folds the statistics of θ_{max(0, k−L)}, exactly;
 *   - async (a real stats-worker thread that loops on its own batches with the newest parameters it was sent): the
 *     parameter server folds whatever has arrived, results are tagged with older steps, every folded result equals the
 *     in-line computation at its tag, and a run trains (its loss falls);
 *   - the simulated clock charges the statistics in sync mode only.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InMemoryStream } from '../data-pipeline/stream';
import { type BackendInfo, initBackend } from '../src/backend';
import { loadParams, statsBatch, wireParams } from '../src/distributed/roles';
import type { WireTensor } from '../src/distributed/messages';
import { runDistributedTraining } from '../src/distributed/run';
import { DistConfig, ParameterServer, type StatsRecord } from '../src/distributed/server';
import { registerBlocks } from '../src/kfac/registry';
import { buildModel } from '../src/nn/zoo';
import { formatIssues, type RunConfig } from '../src/train/config';
import { CSV_COLUMNS } from '../src/train/schema';
import { batchOf, C, H, K, relDiff, runCfg, synthSplit, trainData } from './distributed-helpers';

let backend: BackendInfo;
beforeAll(async () => {
  backend = await initBackend();
});

/** Largest relative difference over every Float64Array field of every block's statistics. */
function statsDiff(a: StatsRecord['stats'], b: StatsRecord['stats']): number {
  expect(a.map(([n]) => n)).toEqual(b.map(([n]) => n));
  let worst = 0;
  a.forEach(([, sa], i) => {
    const sb = b[i][1] as unknown as Record<string, unknown>;
    for (const [key, va] of Object.entries(sa)) {
      if (!(va instanceof Float64Array)) continue;
      worst = Math.max(worst, relDiff(va, sb[key] as Float64Array, 1e-12));
    }
  });
  return worst;
}

/** The independent computation: a fresh replica (other initial weights) loaded with θ, the same batch and seed. */
function referenceStats(cfg: RunConfig, theta: WireTensor[], rec: StatsRecord) {
  const model = buildModel(cfg.model, [H, H, C], K, 99);
  loadParams(model, theta);
  const o = cfg.optimizer.kind === 'kfac' ? cfg.optimizer : null;
  const blocks = registerBlocks(model.layers, { conv: o!.conv, doublyFactored: o!.doublyFactored, decay: o!.emaDecay });
  const r = statsBatch(model, blocks, { step: rec.paramsStep, seed: rec.seed, fisher: o!.fisher, ...rec.batch });
  for (const b of blocks) b.dispose();
  model.dispose();
  return r.stats;
}

async function runPs(dist: Record<string, unknown>, steps: number) {
  const cfg = runCfg();
  const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
  const ps = new ParameterServer(model, cfg, DistConfig.parse({ gradientWorkers: 2, inverses: 'inline', inverse: { kind: 'sync', every: 2 }, ...dist }), { epochSize: 128 }, 0.9);
  ps.injections = { recordStats: true };
  const split = synthSplit(16 * steps + 8 * steps, 4);
  const own = new InMemoryStream(synthSplit(64, 9), { height: H, width: H, channels: C, numClasses: K, seed: 5 });
  ps.statsSource = () => own.next(8);
  const theta: WireTensor[][] = [];
  const results = [];
  try {
    for (let k = 0; k < steps; k++) {
      theta.push(wireParams(model));
      const r = await ps.step(batchOf(split, 16 * k, 16 * k + 16), batchOf(split, 16 * steps + 8 * k, 16 * steps + 8 * k + 8));
      results.push({ ...r, compute: ps.clock.last.compute });
    }
  } finally {
    await ps.close();
  }
  const out = { cfg, theta, results, record: ps.statsRecord.slice(), live: ps.liveThreads };
  ps.dispose();
  model.dispose();
  return out;
}

describe('stats schedules', () => {
  it('lagged (in-line): step k folds the statistics of θ_{max(0, k−2)}, equal to an independent computation', async () => {
    const { cfg, theta, results, record } = await runPs({ stats: 'inline', statsSchedule: { kind: 'lagged', lag: 2 } }, 5);
    expect(record.map((r) => [r.foldStep, r.paramsStep])).toEqual([
      [0, 0],
      [1, 0],
      [2, 0],
      [3, 1],
      [4, 2],
    ]);
    expect(results.map((r) => r.statsStaleness)).toEqual([0, 1, 2, 2, 2]);
    expect(results.map((r) => r.statsFolded)).toEqual([1, 1, 1, 1, 1]);
    for (const rec of record) expect(statsDiff(rec.stats, referenceStats(cfg, theta[rec.paramsStep], rec))).toBeLessThan(1e-6);
    // at the parameters of the fold step instead, the statistics differ (the lag is real; the test can fail)
    const last = record[4];
    expect(statsDiff(last.stats, referenceStats(cfg, theta[last.foldStep], last))).toBeGreaterThan(1e-4);
    // off the critical path: the clock's compute phase is the slowest shard only
    for (const r of results) expect(r.compute).toBeCloseTo(Math.max(...r.roleMs.shards), 9);
  });

  it('sync: the clock charges max(shards, stats)', async () => {
    const { results } = await runPs({ stats: 'inline' }, 2);
    for (const r of results) {
      expect(r.roleMs.stats).toBeGreaterThan(0);
      expect(r.compute).toBeCloseTo(Math.max(...r.roleMs.shards, r.roleMs.stats), 9);
    }
  });

  it('async on a stats-worker thread: results tagged with older steps, each equal to the in-line statistics at its tag', async () => {
    const { cfg, theta, results, record, live } = await runPs({ stats: 'thread', statsSchedule: { kind: 'async' } }, 8);
    expect(live).toBe(0);
    // the first step waited for one result; later steps fold what has arrived (0, 1 or more)
    expect(results[0].statsFolded).toBeGreaterThanOrEqual(1);
    expect(record.length).toBe(results.reduce((a, r) => a + r.statsFolded!, 0));
    expect(record.length).toBeGreaterThanOrEqual(3);
    for (const r of record) expect(r.paramsStep).toBeLessThanOrEqual(r.foldStep);
    expect(record.some((r) => r.paramsStep < r.foldStep)).toBe(true);
    // every result sampled with its own seed, on the stats worker's own batches
    expect(new Set(record.map((r) => r.seed)).size).toBe(record.length);
    for (const rec of record) expect(statsDiff(rec.stats, referenceStats(cfg, theta[rec.paramsStep], rec))).toBeLessThan(1e-5);
    // the clock does not wait for statistics after the first step
    for (const r of results.slice(1)) expect(r.compute).toBeCloseTo(Math.max(...r.roleMs.shards), 9);
  });

  it('an async run through runDistributedTraining trains (loss falls) and writes the stats columns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-astats-'));
    // damping 0.3: the stats thread folds only about every other step here (8-example batches), and with damping 0.1
    // that noisy, 1–4-step-stale curvature let the late steps overshoot in about one run in three (measured: sync
    // stats at 0.1 train smoothly; async at 0.3 trained in 5 of 5 runs, last-4 mean 0.95–1.01 vs first-4 1.42)
    const cfg = runCfg({ run: 'astats', examples: 16 * 24, logEvery: 1, evals: 1, optimizer: { kind: 'kfac', damping: 0.3, statsBatch: 8 } });
    const s = await runDistributedTraining(
      cfg,
      DistConfig.parse({ gradientWorkers: 1, stats: 'thread', statsSchedule: { kind: 'async' }, inverses: 'inline', inverse: { kind: 'sync', every: 4 } }),
      { experiment: 'test', profile: 'test', resultsDir: dir, backend, data: trainData() },
    );
    expect(s.status).toBe('finished');
    const lines = readFileSync(s.csvPath, 'utf8').trim().split('\n');
    const col = (c: string) => CSV_COLUMNS.indexOf(c as never);
    const rows = lines.slice(1).map((l) => l.split(','));
    expect(rows).toHaveLength(24);
    const folded = rows.map((r) => Number(r[col('stats_batches')]));
    const side = JSON.parse(readFileSync(s.sidecarPath, 'utf8'));
    expect(folded.reduce((a, b) => a + b, 0)).toBe(side.summary.statsBatches);
    expect(side.summary.meanStatsStaleness).toBeGreaterThan(0);
    expect(rows.some((r) => Number(r[col('stats_staleness')]) >= 1)).toBe(true);
    const loss = rows.map((r) => Number(r[col('train_loss')]));
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(loss.slice(-4))).toBeLessThan(mean(loss.slice(0, 4)) - 0.05);
  });

  it('async statistics in-line are a configuration error naming the key', () => {
    const r = DistConfig.safeParse({ stats: 'inline', statsSchedule: { kind: 'async' } });
    expect(r.success).toBe(false);
    expect(formatIssues(r.error!)).toMatch(/statsSchedule: 'async' statistics need a stats worker of their own \(stats: 'thread' or 'redis'\)/);
  });
});
