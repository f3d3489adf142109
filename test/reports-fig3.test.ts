/**
 * The Figure 3 verdict on SYNTHETIC runs (clearly synthetic: hand-written loss rows). Every expected number is worked
 * out by hand in the comments from the rows, the 3-row smoothing and the clocks (updates × seconds per update).
 */
import { asSeeds } from './reports-helpers';
import { describe, expect, it } from 'vitest';
import { FASTER_MIN, fig3Seed, fig3Verdict, IMPROVED_MIN, STANDARD_MIN } from '../reports/figures/fig3';
import { rbzOf } from '../reports/figures/speed';
import type { LoadedRun } from '../reports/types';

interface Opts {
  rbz?: number;
  /** went through the distributed runtime (has config.distributed) */
  dist?: boolean;
  simPerStep?: number;
  wallPerStep?: number;
  /** CSV test error on the last row */
  testError?: number;
}

/** A synthetic run: one row every 10 updates with the given training losses. */
function run(method: string, label: string, losses: number[], o: Opts = {}): LoadedRun {
  const sim = o.simPerStep ?? 1;
  const wall = o.wallPerStep ?? 2;
  return {
    sidecar: {
      method,
      label,
      run: label.replace(/[^A-Za-z0-9]+/g, '-'),
      experiment: 'fig3',
      batchSize: 128,
      status: 'finished',
      config: { ...(o.rbz ? { bnChunk: o.rbz } : {}), ...(o.dist ? { distributed: { gradientWorkers: 3 } } : {}) },
    } as LoadedRun['sidecar'],
    rows: losses.map((l, i) => ({
      step: (i + 1) * 10,
      examples: (i + 1) * 1280,
      sim_seconds: (i + 1) * 10 * sim,
      wall_seconds: (i + 1) * 10 * wall,
      train_loss: l,
      ...(i === losses.length - 1 && o.testError !== undefined ? { test_error: o.testError } : {}),
    })),
    csvPath: 'synthetic.csv',
  };
}

// Standard BN: smoothed (3 rows) … 2.0333, 1.9, 1.8, 1.7; final = (1.8+1.7+1.6)/3 = 1.7, first reached at update 100.
const STANDARD = [3.0, 2.8, 2.6, 2.4, 2.2, 2.0, 1.9, 1.8, 1.7, 1.6];
// Improved BN: smoothed 2.8, 2.65, 2.5, 2.2, 1.9333, 1.6833, 1.5167, 1.3833, 1.3167, 1.25; final 1.25 at update
// 100; it reaches standard's 1.7 at update 60 (100/60 = 1.667× fewer).
const IMPROVED = [2.8, 2.5, 2.2, 1.9, 1.7, 1.45, 1.4, 1.3, 1.25, 1.2];
// K-FAC: smoothed 2.0, 1.8, 1.6, 1.2667, 1.0333, …: ≤ 1.7 first at update 30, ≤ 1.25 first at update 50.
const KFAC = [2.0, 1.6, 1.2, 1.0, 0.9, 0.8, 0.75, 0.7, 0.65, 0.6];
// K-FAC+BN: smoothed 2.2, 2.05, 1.9, 1.6333, 1.4, 1.2333: ≤ 1.7 at update 40, ≤ 1.25 at update 60.
const KFAC_BN = [2.2, 1.9, 1.6, 1.4, 1.2, 1.1, 1.0, 0.95, 0.9, 0.85];

function baselines(dist: boolean) {
  return [
    run('sgd+bn', 'SGD+BN bz128 rbz32', IMPROVED, { rbz: 32, dist, testError: 0.2 }),
    run('sgd+bn', 'SGD+BN bz128 rbz8', STANDARD, { rbz: 8, dist, testError: 0.25 }),
  ];
}

describe('fig3 verdict', () => {
  it("is 'reproduced' on the simulated clock when K-FAC beats standard BN by ≥ 2.5× and improved BN by ≥ 1.3×", () => {
    const v = fig3Seed([
      ...baselines(true),
      run('kfac', 'dist.K-FAC bz128', KFAC, { dist: true, simPerStep: 1.1, testError: 0.18 }),
      run('kfac+bn', 'dist.K-FAC+BN bz128', KFAC_BN, { rbz: undefined, dist: true, simPerStep: 1.2 }),
    ]);
    expect(v.status).toBe('reproduced');
    expect(v.numbers['standard.target']).toBeCloseTo(1.7, 12);
    expect(v.numbers['standard.sgd_updates']).toBe(100);
    expect(v.numbers['standard.kfac_updates']).toBe(30);
    expect(v.numbers['standard.kfac+bn_updates']).toBe(40);
    // simulated: SGD 100 updates × 1.0 s; K-FAC 30 × 1.1 s → 100/33; K-FAC+BN 40 × 1.2 s → 100/48
    expect(v.numbers['standard.kfac_speedup_sim']).toBeCloseTo(100 / 33, 12);
    expect(v.numbers['standard.kfac+bn_speedup_sim']).toBeCloseTo(100 / 48, 12);
    expect(v.numbers['standard.kfac_speedup_updates']).toBeCloseTo(100 / 30, 12);
    // real: 2 s per update for everyone → the updates ratio
    expect(v.numbers['standard.kfac_speedup_wall']).toBeCloseTo(100 / 30, 12);
    expect(v.numbers['standard.speedup']).toBeCloseTo(100 / 33, 12);
    expect(v.numbers['improved.target']).toBeCloseTo(1.25, 12);
    expect(v.numbers['improved.kfac_updates']).toBe(50);
    expect(v.numbers['improved.kfac+bn_updates']).toBe(60);
    expect(v.numbers['improved.speedup']).toBeCloseTo(100 / 55, 12);
    expect(v.numbers['improved_over_standard_updates']).toBeCloseTo(100 / 60, 12);
    expect(v.numbers['standard.speedup']).toBeGreaterThanOrEqual(STANDARD_MIN);
    expect(v.numbers['improved.speedup']).toBeGreaterThanOrEqual(IMPROVED_MIN);
    expect(v.text).toContain('judged on the simulated cluster clock');
    expect(v.text).toContain('roles timed by elapsed time, inflated wherever other processes');
    expect(v.text).toContain('Standard BN (SGD+BN bz128 rbz8): its final training loss 1.700');
    expect(v.text).toContain('first reached after 100 updates / 100.0 simulated s / 200.0 real s');
    expect(v.text).toContain('dist.K-FAC bz128 reached it after 30 updates / 33.0 simulated s / 60.0 real s');
    expect(v.text).toContain('K-FAC (dist.K-FAC bz128) is 3.03× faster in simulated s (paper: 3.5×');
    expect(v.text).toContain('K-FAC (dist.K-FAC bz128) is 1.82× faster in simulated s (paper: 1.5–2×');
    expect(v.text).toContain('dist.K-FAC bz128 0.180');
    expect(v.text).toContain('SGD+BN bz128 rbz8 0.250');
  });

  it("judges in updates when the SGD runs did not go through the distributed runtime, and is 'partly' below the bars", () => {
    // K-FAC+BN alone: 40 and 60 updates → 2.5× vs standard (meets 2.5) but only 100/60 = 1.667 vs improved (meets 1.3):
    // reproduced in updates; make K-FAC+BN slower so the standard bar fails: losses delayed by one row.
    const slower = [2.4, ...KFAC_BN.slice(0, 9)]; // smoothed ≤ 1.7 first at update 50, ≤ 1.25 at update 70
    const v = fig3Seed([...baselines(false), run('kfac+bn', 'dist.K-FAC+BN bz128', slower, { dist: true, simPerStep: 0.1 })]);
    expect(v.text).toContain('judged in updates');
    expect(v.numbers['standard.speedup']).toBeCloseTo(2, 12);
    expect(v.numbers['improved.speedup']).toBeCloseTo(100 / 70, 12);
    expect(v.numbers['standard.kfac+bn_speedup_sim']).toBeUndefined();
    expect(v.numbers['standard.speedup']).toBeLessThan(STANDARD_MIN);
    expect(v.status).toBe('partly');
    expect(v.text).toContain('is 2.00× faster in updates');
  });

  it("is 'not reproduced' when K-FAC never reaches the baselines' losses", () => {
    const v = fig3Seed([...baselines(true), run('kfac', 'dist.K-FAC bz128', [3.2, 3.1, 3.0, 2.95, 2.9, 2.85, 2.8, 2.8, 2.8, 2.8], { dist: true })]);
    expect(v.status).toBe('not reproduced');
    // only bounds from above: each baseline first reached its target at update 100 (simulated 100 s), K-FAC's whole
    // run is 100 updates (100 s): its speed-up is below 100 / 100 = 1
    expect(v.numbers['standard.speedup']).toBeCloseTo(1, 12);
    expect(v.numbers['improved.speedup']).toBeCloseTo(1, 12);
    expect(v.censored).toEqual(expect.arrayContaining(['standard.speedup', 'improved.speedup']));
    expect(v.text).toContain('dist.K-FAC bz128 did not reach it in 100 updates');
    expect(v.text).toContain('no K-FAC line reached it');
  });

  it("is at most 'partly' with one SGD+BN chunk size, and 'no data' without K-FAC or SGD+BN", () => {
    const one = fig3Seed([baselines(true)[1]!, run('kfac', 'dist.K-FAC bz128', KFAC, { dist: true })]);
    expect(one.status).toBe('partly');
    expect(one.numbers['baseline.speedup']).toBeCloseTo(100 / 30, 12);
    expect(one.text).toContain('Only one SGD+BN chunk size');
    expect(one.numbers['baseline.speedup']).toBeGreaterThan(FASTER_MIN);
    expect(fig3Seed(baselines(true)).status).toBe('no data');
    expect(fig3Seed([run('kfac', 'dist.K-FAC bz128', KFAC, { dist: true })]).status).toBe('no data');
    expect(fig3Seed([]).status).toBe('no data');
  });

  it('tells improved from standard BN by the chunk size, from the config or else the label', () => {
    const a = run('sgd+bn', 'SGD+BN bz256 rbz128', IMPROVED);
    expect(rbzOf(a)).toBe(128);
    const b = run('sgd+bn', 'SGD+BN bz256 rbz32', STANDARD, { rbz: 32 });
    expect(rbzOf(b)).toBe(32);
    const v = fig3Seed([a, b, run('kfac', 'dist.K-FAC bz256', KFAC)]);
    expect(v.text).toContain('Standard BN (SGD+BN bz256 rbz32)');
    expect(v.text).toContain('Improved BN (SGD+BN bz256 rbz128)');
  });
});

describe('fig3 verdict over seeds', () => {
  it('gives the seed\'s own status when three seeds measure the same (zero-width intervals), stating the intervals', () => {
    const runs = [
      ...baselines(true),
      run('kfac', 'dist.K-FAC bz128', KFAC, { dist: true, simPerStep: 1.1, testError: 0.18 }),
      run('kfac+bn', 'dist.K-FAC+BN bz128', KFAC_BN, { rbz: undefined, dist: true, simPerStep: 1.2 }),
    ];
    const one = fig3Seed(runs);
    const v = fig3Verdict(asSeeds(runs));
    expect(v.status).toBe('reproduced');
    expect(v.status).toBe(one.status);
    expect(v.seeds).toEqual([1, 2, 3]);
    for (const [k, x] of Object.entries(one.numbers)) if (Number.isFinite(x)) expect(v.numbers[k]).toBeCloseTo(x, 9);
    expect(v.summary).toMatch(/K-FAC speed-up vs standard BN .*3 seeds.*vs improved BN/);
    // one seed alone decides nothing
    expect(fig3Verdict(asSeeds(runs, [1])).status).toBe('inconclusive');
  });
});
