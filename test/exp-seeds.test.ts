/**
 * Seeds and K-FAC's tuning in real runs.
 *   - What a run's seed changes, through the runner's own factories: the model's initialisation (buildModel), the
 *     order of the training stream (openTrainData on the embedded Fashion-MNIST), and K-FAC's sampled targets (the
 *     optimizer's statistics on one batch: the activation factors A do not depend on the targets, the gradient factors
 *     G do). The same seed gives the same numbers, another seed other numbers.
 *   - End to end on the CLI, into a temporary results root: `npm run grid -- updates --method kfac --damping …` (two
 *     real grid points) writes a summary whose best point is chosen by the lowest final training loss (checked here
 *     against the summary's own numbers) with its trial count; `exp run updates --seeds 2` trains one CSV and sidecar
 *     per seed with the grid's damping (the sidecar says where it came from); `--resume --seeds 3` skips the two
 *     finished seeds and trains the third; a fresh `--seeds 1` then moves seeds 2 and 3 aside into superseded/ (so
 *     the report never pools an earlier run's extra seeds with new ones), touching no other line's files.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { parse } from 'csv-parse/sync';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseSeeds, supersedeOtherSeeds } from '../experiments/common';
import { openTrainData } from '../experiments/data';
import { loadExperiments } from '../experiments/registry';
import { initBackend } from '../src/backend';
import type { KfacOptimizer } from '../src/kfac/optimizer';
import { buildModel } from '../src/nn/zoo';
import { parseConfig, RunConfig } from '../src/train/config';
import type { RunSidecar } from '../src/train/schema';
import { makeOptimizer } from '../src/train/trainer';

const root = join(import.meta.dirname, '..');
const EMBEDDED = join(root, 'data-pipeline', 'embedded', 'fashion-mnist');

beforeAll(async () => {
  await initBackend();
});

function params(seed: number): Float32Array[] {
  const m = buildModel({ arch: 'cifarnet', bn: false }, [28, 28, 1], 10, seed);
  const out = [...m.params.values()].map((v) => v.dataSync() as Float32Array).map((a) => Float32Array.from(a));
  m.dispose();
  return out;
}

const same = (a: ArrayLike<number>[], b: ArrayLike<number>[]) => a.every((x, i) => x.length === b[i]!.length && Array.from(x).every((v, j) => v === b[i]![j]));

describe('a seed changes', () => {
  it("the model's initialisation", () => {
    expect(same(params(1), params(1))).toBe(true);
    expect(same(params(1), params(2))).toBe(false);
  });

  it('the order of the training data', async () => {
    const data = await openTrainData({ name: 'fashion-mnist', download: false, dataDir: EMBEDDED });
    try {
      const first = async (seed: number) => Array.from((await data.train(seed).next(64)).labels);
      expect(await first(1)).toEqual(await first(1));
      expect(await first(1)).not.toEqual(await first(2));
    } finally {
      await data.close();
    }
  });

  it("K-FAC's sampled targets: the gradient factors of one batch differ, the activation factors do not", async () => {
    const data = await openTrainData({ name: 'fashion-mnist', download: false, dataDir: EMBEDDED });
    const batch = await data.train(1).next(32);
    await data.close();
    const factors = (seed: number) => {
      const cfg = parseConfig(RunConfig, { label: 's', run: 's', method: 'kfac', batchSize: 32, examples: 32, model: { arch: 'cifarnet', bn: false }, optimizer: { kind: 'kfac', damping: 0.1 }, seed }, 'run');
      const model = buildModel(cfg.model, [28, 28, 1], 10, 1); // one initialisation for both: only the targets differ
      // the factory the runner uses (it hands the optimizer cfg.seed)
      const opt = makeOptimizer(cfg, model, { epochSize: 12000 }) as ReturnType<typeof makeOptimizer> & { kfac: KfacOptimizer };
      const x = tf.tensor4d(batch.images, batch.shape);
      const y = tf.tensor1d(batch.labels, 'int32');
      opt.kfac.accumulateStatistics(x, y);
      const snap = opt.kfac.snapshot() as unknown as { A?: Float64Array; G?: Float64Array }[];
      tf.dispose([x, y]);
      opt.dispose?.();
      model.dispose();
      return { A: snap.map((s) => s.A!), G: snap.map((s) => s.G!) };
    };
    const s1 = factors(1);
    const again = factors(1);
    const s2 = factors(2);
    expect(s1.A.length).toBeGreaterThan(0);
    expect(same(s1.G, again.G)).toBe(true);
    expect(same(s1.A, s2.A)).toBe(true);
    expect(same(s1.G, s2.G)).toBe(false);
  });
});

function cli(script: string, args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'experiments', script), ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, DKFAC_QUIET: '1' },
    timeout: 200_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

// the CIFAR net at batch 32, two updates, on the embedded subset
const TINY = ['--data-dir', EMBEDDED, '--set', 'batchSize=32', '--set', 'examples=64', '--set', 'evals=1', '--set', 'evalExamples=100', '--set', 'logEvery=1'];

describe('exp run --seeds and the K-FAC grid, end to end', () => {
  it('tunes K-FAC by the grid, trains one CSV per seed with the chosen damping, and resumes per seed', () => {
    const results = mkdtempSync(join(tmpdir(), 'dkfac-seeds-'));
    const g = cli('grid.ts', ['updates', '--method', 'kfac', '--damping', '0.1,1', '--jobs', '2', '--results', results, ...TINY]);
    expect(g.stderr).toBe('');
    expect(g.code).toBe(0);
    const summary = parse(readFileSync(join(results, 'grid', 'updates', 'summary-kfac.csv'), 'utf8'), { columns: true }) as Record<string, string>[];
    expect(summary.map((r) => [r.damping, r.status])).toEqual([
      ['0.1', 'finished'],
      ['1', 'finished'],
    ]);
    const best = JSON.parse(readFileSync(join(results, 'grid', 'updates', 'best-kfac.json'), 'utf8'));
    const argmin = summary.reduce((a, b) => (Number(b.final_train_loss) < Number(a.final_train_loss) ? b : a));
    expect(best.best['32']).toMatchObject({ damping: Number(argmin.damping), run: argmin.run, trials: 2 });
    // each point's sidecar records the damping it trained with
    const pointSide = JSON.parse(readFileSync(join(results, 'grid', 'updates', 'runs', 'kfac-bz32-d1.json'), 'utf8')) as RunSidecar;
    expect((pointSide.config as { optimizer: { damping: number } }).optimizer.damping).toBe(1);

    const run = (extra: string[]) => cli('cli.ts', ['run', 'updates', '--only', 'kfac-bz32', '--no-report', '--results', results, ...TINY, ...extra]);
    const a = run(['--seeds', '2']);
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    expect(a.stdout).toContain('seeds: 2 per run (1, 2)');
    const dir = join(results, 'updates');
    const side = (s: number) => JSON.parse(readFileSync(join(dir, `kfac-bz32-s${s}.json`), 'utf8')) as RunSidecar & { config: { seed: number; optimizer: { damping: number }; notes: { tuning: Record<string, unknown> } } };
    for (const s of [1, 2]) {
      const sc = side(s);
      expect([sc.group, sc.seed, sc.config.seed]).toEqual(['kfac-bz32', s, s]);
      expect(sc.config.optimizer.damping).toBe(best.best['32'].damping);
      expect(sc.config.notes.tuning).toMatchObject({ method: 'kfac', source: 'grid', key: '32', trials: 2, settings: { damping: best.best['32'].damping } });
      expect(sc.data.std?.[0]).toBeGreaterThan(0.3);
    }
    const firstLoss = (s: number) => readFileSync(join(dir, `kfac-bz32-s${s}.csv`), 'utf8').split('\n')[1]!.split(',')[4];
    expect(firstLoss(1)).not.toBe(firstLoss(2));

    const b = run(['--seeds', '3', '--resume']);
    expect(b.code).toBe(0);
    expect(b.stdout.match(/finished earlier, skipped \(--resume\)/g)).toHaveLength(2);
    expect(b.stdout).toContain('kfac-bz32-s3.csv');
    expect(side(3).seed).toBe(3);
    expect(existsSync(join(dir, 'kfac-bz32-s3.csv'))).toBe(true);

    // a fresh run with fewer seeds moves the other seeds' files aside (nothing deleted), so the report pools one set
    const c = run(['--seeds', '1']);
    expect(c.code).toBe(0);
    expect(c.stdout).toContain(`kfac-bz32: seeds 2, 3 of an earlier run are not re-run now; their files moved to ${join(dir, 'superseded')}/`);
    expect(readdirSync(dir).filter((n) => n.startsWith('kfac-bz32-s')).sort()).toEqual(['kfac-bz32-s1.csv', 'kfac-bz32-s1.json']);
    expect(readdirSync(join(dir, 'superseded')).sort()).toEqual(['kfac-bz32-s2.csv', 'kfac-bz32-s2.json', 'kfac-bz32-s3.csv', 'kfac-bz32-s3.json']);
  });

  it("moving other seeds aside touches only the line's own files", () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-supersede-'));
    const names = ['a-s1.csv', 'a-s4.csv', 'a-s4.json', 'a-s4.ckpt', 'a-s4.csv.tmp', 'a-rbz8-s4.csv', 'ab-s4.csv', 'xa-s4.csv', 'a.b-s4.csv'];
    for (const n of names) writeFileSync(join(dir, n), '');
    expect(supersedeOtherSeeds(dir, [{ run: 'a', seeds: [1, 2, 3] }]).sort()).toEqual(['a-s4.ckpt', 'a-s4.csv', 'a-s4.json']);
    expect(readdirSync(dir).sort()).toEqual(['a-rbz8-s4.csv', 'a-s1.csv', 'a-s4.csv.tmp', 'a.b-s4.csv', 'ab-s4.csv', 'superseded', 'xa-s4.csv']);
    // a dot in a run id is a dot, not any character
    expect(supersedeOtherSeeds(dir, [{ run: 'a.b', seeds: [1] }])).toEqual(['a.b-s4.csv']);
    expect(supersedeOtherSeeds(join(dir, 'missing'), [{ run: 'a', seeds: [1] }])).toEqual([]);
  });
});

describe('seeds per run by default', () => {
  it('3 at quick and 1 at paper, unless the experiment asks for more; --seeds always wins; bad values are errors', async () => {
    expect(parseSeeds(undefined, 'quick')).toBe(3);
    expect(parseSeeds(undefined, 'paper')).toBe(1);
    const fig7 = (await loadExperiments()).get('fig7')!;
    expect(parseSeeds(undefined, 'quick', fig7)).toBe(15);
    expect(parseSeeds(undefined, 'paper', fig7)).toBe(1);
    expect(parseSeeds('2', 'quick', fig7)).toBe(2);
    expect(() => parseSeeds('0', 'quick', fig7)).toThrow(/--seeds: '0' is not a whole number/);
  });
});
