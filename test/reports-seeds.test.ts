/**
 * Verdicts over seeds on SYNTHETIC multi-seed results written as CSV + sidecar files (reports/synthetic.ts' format,
 * every sidecar marked synthetic) and read back by the loader: each status branch of the interval rule, with the 95 %
 * intervals computed here independently (the t quantile for 2 degrees of freedom in closed form, from its CDF
 * F(t) = 1/2 + t / (2√(t² + 2))); censored seeds; and results written before seeds were recorded (no `-s<seed>`
 * suffix, no seed in the sidecar) still load as one seed and render.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateReports } from '../reports/cli';
import { fig2Seed, fig2Verdict } from '../reports/figures/fig2';
import { fig7Figure, fig7Verdict } from '../reports/figures/fig7';
import type { LoadedRun } from '../reports/types';
import { asSeeds } from './reports-helpers';
import { updatesVerdict } from '../reports/figures/updates';
import { loadRuns } from '../reports/load';
import { lineOf, replicates, seedOf } from '../reports/seeds';
import { clampInterval, decide, possibleLevels, tInterval, tQuantile } from '../reports/stats';
import { rowsToCsv, syntheticSidecar } from '../reports/synthetic';
import type { CsvRow } from '../src/train/schema';

/** t(0.975, 2) from the closed-form CDF of Student's t with 2 degrees of freedom. */
const T2 = 0.95 * Math.sqrt(2 / (1 - 0.95 ** 2));

/** The 95 % interval of three values, by hand (linear scale). */
function hand(xs: number[]): [number, number] {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
  const h = (T2 * sd) / Math.sqrt(xs.length);
  return [m - h, m + h];
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'dkfac-reports-seeds-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

// KFC's training loss, one row every 10 updates (updates 10 … 100)
const KFC = [2.5, 2.2, 1.9, 1.7, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0];

interface RunSpec {
  line: string;
  label: string;
  method?: string;
  seed?: number;
  losses: number[];
  simPerStep: number;
  /** write the sidecar as results did before seeds were recorded: no seed, no group, no suffix */
  old?: boolean;
}

async function writeRun(dir: string, r: RunSpec): Promise<void> {
  const rows: CsvRow[] = r.losses.map((l, i) => ({
    step: (i + 1) * 10,
    examples: (i + 1) * 1280,
    sim_seconds: (i + 1) * 10 * r.simPerStep,
    wall_seconds: (i + 1) * 10 * r.simPerStep * 2,
    train_loss: l,
  }));
  const run = r.old ? r.line : `${r.line}-s${r.seed}`;
  const o = { run, label: r.label, method: r.method ?? 'kfac', batchSize: 128, trainLoss: () => 0, steps: 100, ...(r.old ? {} : { seed: r.seed, group: r.line }) };
  await writeFile(path.join(dir, `${run}.csv`), rowsToCsv(rows));
  const sidecar = syntheticSidecar('fig7', o, rows);
  // as if through the distributed runtime: the simulated clocks compare
  sidecar.config = { ...(sidecar.config as object), distributed: { costClock: 'cpu' } };
  await writeFile(path.join(dir, `${run}.json`), JSON.stringify(sidecar));
}

/** A fig7 results folder: per seed, KFC and fast with fast's loss × (1 + gap) and its time per update × ratio. */
async function fig7Dir(name: string, gaps: number[], ratios: number[]): Promise<string> {
  const dir = path.join(root, name, 'fig7');
  await import('node:fs/promises').then((f) => f.mkdir(dir, { recursive: true }));
  for (const [i, seed] of [1, 2, 3].slice(0, gaps.length).entries()) {
    await writeRun(dir, { line: 'kfac-kfc-bz128', label: 'dist.K-FAC KFC bz128', seed, losses: KFC, simPerStep: 1 });
    // fast is worse by `gap` at every common update and runs 3 rows longer, below KFC's final loss (so it reaches it)
    const fast = [...KFC.map((l) => l * (1 + gaps[i]!)), 0.9, 0.85, 0.8];
    await writeRun(dir, { line: 'kfac-fast-bz128', label: 'dist.K-FAC fast bz128', seed, losses: fast, simPerStep: ratios[i]! });
  }
  return dir;
}

describe('intervals', () => {
  it('is the t interval of the values (jstat quantile = the closed form for 2 dof), ratios on the log scale', () => {
    expect(tQuantile(0.975, 2)).toBeCloseTo(T2, 8);
    const i = tInterval([0.02, 0.03, 0.04]);
    const [lo, hi] = hand([0.02, 0.03, 0.04]);
    expect(i.mean).toBeCloseTo(0.03, 12);
    // jstat's quantile agrees with the closed form to ~1e-10 (relative)
    expect(i.lo).toBeCloseTo(lo, 9);
    expect(i.hi).toBeCloseTo(hi, 9);
    const r = tInterval([0.7, 0.72, 0.74], 'log');
    const [llo, lhi] = hand([0.7, 0.72, 0.74].map(Math.log));
    expect(r.mean).toBeCloseTo(Math.cbrt(0.7 * 0.72 * 0.74), 12);
    expect(r.lo).toBeCloseTo(Math.exp(llo), 9);
    expect(r.hi).toBeCloseTo(Math.exp(lhi), 9);
    const one = tInterval([1.5]);
    expect([one.lo, one.hi]).toEqual([Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY]);
  });

  it("clips a fraction's interval to [0, 1] for display, keeping its mean and seeds", () => {
    const i = tInterval([0.8, 1, 1], 'linear');
    expect(i.hi).toBeGreaterThan(1);
    const c = clampInterval(i, 0, 1)!;
    expect([c.mean, c.n, c.lo, c.hi]).toEqual([i.mean, 3, i.lo, 1]);
    expect(clampInterval(undefined, 0, 1)).toBeUndefined();
  });
  it('decides a part only where the interval clears a bar, and a claim only where every combination agrees', () => {
    const iv = (lo: number, hi: number) => ({ n: 3, mean: (lo + hi) / 2, lo, hi, scale: 'linear' as const, values: [], censored: 0 });
    expect(possibleLevels(iv(1.6, 2.0), [1.1, 1.5])).toEqual([2]);
    expect(possibleLevels(iv(1.2, 1.4), [1.1, 1.5])).toEqual([1]);
    expect(possibleLevels(iv(1.0, 1.6), [1.1, 1.5])).toEqual([0, 1, 2]);
    expect(possibleLevels(iv(0.05, 0.08), [0.1], 'lower')).toEqual([1]);
    expect(possibleLevels({ ...iv(1.6, 2.0), censored: 1 }, [1.1, 1.5])).toEqual([0, 1, 2]);
    const rule = (l: Record<string, number>) => (l.a === 1 && l.b === 1 ? 'reproduced' : l.a === 1 || l.b === 1 ? 'partly' : 'not reproduced');
    expect(decide({ a: [1], b: [1] }, rule).status).toBe('reproduced');
    expect(decide({ a: [1], b: [0] }, rule).status).toBe('partly');
    expect(decide({ a: [0], b: [0] }, rule).status).toBe('not reproduced');
    expect(decide({ a: [0, 1], b: [1] }, rule)).toEqual({ status: 'inconclusive', outcomes: ['partly', 'reproduced'] });
  });
});

describe('fig7 verdict over seeds (synthetic CSVs)', () => {
  it("is 'reproduced' when every value of both intervals clears the bars, and states them", async () => {
    const gaps = [0.02, 0.03, 0.04];
    const ratios = [0.7, 0.72, 0.74];
    const runs = await loadRuns(await fig7Dir('rep', gaps, ratios));
    expect(replicates(runs).map((r) => [r.seed, r.runs.length])).toEqual([
      [1, 2],
      [2, 2],
      [3, 2],
    ]);
    const v = fig7Verdict(runs);
    expect(v.status).toBe('reproduced');
    expect(v.seeds).toEqual([1, 2, 3]);
    const [lo, hi] = hand(gaps);
    expect(v.intervals!.loss_gap!.lo).toBeCloseTo(lo, 9);
    expect(v.intervals!.loss_gap!.hi).toBeCloseTo(hi, 9);
    const [llo, lhi] = hand(ratios.map(Math.log));
    expect(v.intervals!.sim_time_ratio!.lo).toBeCloseTo(Math.exp(llo), 9);
    expect(v.intervals!.sim_time_ratio!.hi).toBeCloseTo(Math.exp(lhi), 9);
    expect(v.intervals!.sim_time_ratio!.hi).toBeLessThan(0.85);
    expect(v.text).toContain(`3.0 % (95 % CI ${(100 * lo).toFixed(1)} % to ${(100 * hi).toFixed(1)} %, 3 seeds)`);
    expect(v.text).toContain('Numbers: means over 3 seeds (1, 2, 3) with 95 % t intervals');
    // the update ratio and the wall-clock ratio to the same target are stated beside each other, with intervals
    expect(v.text).toMatch(/To the same target \(KFC's final training loss\), fast is faster by: in updates .*95 % CI.*on the simulated cluster clock .*in real time on this machine/);
    expect(v.summary).toMatch(/loss gap 3\.0 % \(95 % CI .* time per update fast ÷ KFC 0\.72× \(95 % CI/);
    expect(v.perSeed!.map((p) => p.status)).toEqual(['reproduced', 'reproduced', 'reproduced']);
  });

  it("is 'not reproduced' when the intervals lie wholly on the other side of every bar", async () => {
    const v = fig7Verdict(await loadRuns(await fig7Dir('not', [0.2, 0.22, 0.24], [1.05, 1.06, 1.07])));
    expect(hand([0.2, 0.22, 0.24])[0]).toBeGreaterThan(0.1);
    expect(v.status).toBe('not reproduced');
  });

  it("is 'partly' when every allowed value meets one part and misses the other", async () => {
    const v = fig7Verdict(await loadRuns(await fig7Dir('partly', [0.02, 0.03, 0.04], [1.05, 1.06, 1.07])));
    expect(v.status).toBe('partly');
  });

  it("is 'inconclusive' when an interval straddles a bar, though each seed alone would decide", async () => {
    const gaps = [0.02, 0.09, 0.16];
    const [lo, hi] = hand(gaps);
    expect(lo).toBeLessThan(0.1);
    expect(hi).toBeGreaterThan(0.1);
    const v = fig7Verdict(await loadRuns(await fig7Dir('unsure', gaps, [0.7, 0.72, 0.74])));
    expect(v.status).toBe('inconclusive');
    expect(v.perSeed!.map((p) => p.status)).toEqual(['reproduced', 'reproduced', 'partly']);
  });

  it("is 'inconclusive' with one seed: no interval", async () => {
    const v = fig7Verdict(await loadRuns(await fig7Dir('one', [0.02], [0.7])));
    expect(v.status).toBe('inconclusive');
    expect(v.perSeed![0]!.status).toBe('reproduced');
    expect(v.text).toContain('One seed (1): no interval');
  });
});

describe('censored seeds', () => {
  it("never calls a claim 'reproduced' on a seed where K-FAC never reached the target (a bound from above)", async () => {
    const dir = path.join(root, 'updates-censored', 'updates');
    await import('node:fs/promises').then((f) => f.mkdir(dir, { recursive: true }));
    const sgd = [2.5, 2.2, 1.9, 1.7, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0];
    for (const seed of [1, 2, 3]) {
      await writeRun(dir, { line: 'sgd-bn-bz128', label: 'SGD+BN bz128', method: 'sgd+bn', seed, losses: sgd, simPerStep: 1 });
      // seeds 1, 2: K-FAC reaches SGD+BN's final loss (1.1, the mean of its last 3 rows) at update 30 (smoothed 1.033);
      // seed 3: never
      const k = seed < 3 ? [1.4, 1.1, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5] : sgd.map((l) => l + 1);
      await writeRun(dir, { line: 'kfac-bz128', label: 'K-FAC bz128', seed, losses: k, simPerStep: 1 });
    }
    const v = updatesVerdict(await loadRuns(dir));
    expect(v.intervals!.bestBaselineRatio!.censored).toBe(1);
    // seeds 1, 2: 100 / 30; seed 3's bound: 100 / 100
    expect(v.intervals!.bestBaselineRatio!.values).toEqual([100 / 30, 100 / 30, 1].map((x) => expect.closeTo(x, 12)));
    expect(v.status).not.toBe('reproduced');
    expect(v.text).toContain('1 seed only a bound from above');
  });
});

describe('results written before seeds were recorded', () => {
  it('load as one seed per line, judge as inconclusive and render into the page', async () => {
    const results = path.join(root, 'old');
    const dir = path.join(results, 'fig7');
    await import('node:fs/promises').then((f) => f.mkdir(dir, { recursive: true }));
    await writeRun(dir, { line: 'kfac-kfc-bz128', label: 'dist.K-FAC KFC bz128', losses: KFC, simPerStep: 1, old: true });
    await writeRun(dir, { line: 'kfac-fast-bz128', label: 'dist.K-FAC fast bz128', losses: KFC.map((l) => l * 1.02), simPerStep: 0.7, old: true });
    const runs = await loadRuns(dir);
    expect(runs.map(lineOf).sort()).toEqual(['kfac-fast-bz128', 'kfac-kfc-bz128']);
    expect(runs.map(seedOf)).toEqual([0, 0]);
    const out = path.join(root, 'old-report');
    const gen = await generateReports({ resultsRoot: results, outDir: out, figures: [fig7Figure], log: () => {} });
    const v = gen.figures[0]!.verdict;
    expect(v.status).toBe('inconclusive');
    expect(v.perSeed![0]!.status).toBe('reproduced');
    const html = await import('node:fs/promises').then((f) => f.readFile(gen.indexPath, 'utf8'));
    expect(html).toContain('<span class="badge unsure">inconclusive</span>');
    expect(html).toContain('1 seed: no interval');
    expect(html).toContain('src="fig7.png"');
  });
});

describe('fig2 verdict over seeds', () => {
  // async iterates 1.5× faster on the simulated clock (1.0 vs 1.5 s per update) with the same test NLL: reproduced
  const run = (kind: 'async' | 'sync', simPerStep: number, nll: (s: number) => number): LoadedRun => ({
    sidecar: { method: 'kfac', label: `dist.K-FAC ${kind} gpu1`, run: `kfac-${kind}-gpu1`, experiment: 'fig2', batchSize: 128, status: 'finished', config: { distributed: { gradientWorkers: 1, inverse: { kind } } } } as LoadedRun['sidecar'],
    rows: Array.from({ length: 10 }, (_, i) => ({ step: (i + 1) * 5, examples: (i + 1) * 640, sim_seconds: (i + 1) * 5 * simPerStep, wall_seconds: (i + 1) * 10, train_loss: 2 - 0.1 * i, ...((i + 1) % 5 === 0 ? { test_loss: nll(i) } : {}) })),
    csvPath: 'synthetic.csv',
  });
  it("judges each gpu count's NLL gap and simulated speed-up on their intervals", () => {
    const runs = [run('async', 1.0, (i) => 2 - 0.1 * i), run('sync', 1.5, (i) => 2 - 0.1 * i)];
    expect(fig2Seed(runs).status).toBe('reproduced');
    const v = fig2Verdict(asSeeds(runs));
    expect(v.status).toBe('reproduced');
    expect(v.intervals!.gpu1SimSpeedup!.mean).toBeCloseTo(1.5, 12);
    expect(v.summary).toMatch(/gpu1 speed-up 1\.50× \(95 % CI 1\.50× to 1\.50×, 3 seeds\)/);
    expect(v.text).toMatch(/to sync's final training loss, async is faster in updates .*on the simulated cluster clock .*in real time/);
    expect(fig2Verdict(asSeeds(runs, [1])).status).toBe('inconclusive');
  });
});
