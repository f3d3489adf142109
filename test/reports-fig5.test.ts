/**
 * The Figure 5 verdict on SYNTHETIC runs (hand-written loss rows, one every 10 updates). Expected numbers are worked
 * out by hand in the comments: the 3-row smoothing, the early target at 25 % of SGD+BN's updates, and the final
 * window mean of the piecewise-linear curve over the last 10 % of the common updates.
 */
import { asSeeds } from './reports-helpers';
import { describe, expect, it } from 'vitest';
import { CONVERGE_TOL, EARLY_FRACTION, EARLY_MIN, fig5Figure, fig5Seed, fig5Verdict } from '../reports/figures/fig5';
import { fig5dfFigure, fig5dfSeed, fig5dfVerdict } from '../reports/figures/fig5df';
import type { LoadedRun } from '../reports/types';

function run(method: string, label: string, losses: number[], o: { dist?: boolean; simPerStep?: number; testError?: number } = {}): LoadedRun {
  return {
    sidecar: {
      method,
      label,
      run: label,
      experiment: 'fig5',
      batchSize: 128,
      status: 'finished',
      config: o.dist ? { distributed: { gradientWorkers: 7 } } : {},
    } as LoadedRun['sidecar'],
    rows: losses.map((l, i) => ({
      step: (i + 1) * 10,
      examples: (i + 1) * 1280,
      sim_seconds: (i + 1) * 10 * (o.simPerStep ?? 1),
      wall_seconds: (i + 1) * 20,
      train_loss: l,
      ...(i === losses.length - 1 && o.testError !== undefined ? { test_error: o.testError } : {}),
    })),
    csvPath: 'synthetic.csv',
  };
}

// SGD+BN, 200 updates. 25 % of 200 = update 50: smoothed there (2.3+2.1+1.9)/3 = 2.1, first reached at update 50
// (update 40: (2.6+2.3+2.1)/3 = 2.333). Final window [180, 200]: (1.05 + 2·1.0 + 0.95)/4 = 1.0.
const SGD = [3.0, 2.6, 2.3, 2.1, 1.9, 1.8, 1.7, 1.6, 1.5, 1.45, 1.4, 1.35, 1.3, 1.25, 1.2, 1.15, 1.1, 1.05, 1.0, 0.95];
// K-FAC: smoothed 2.2, (2.2+1.9)/2 = 2.05 → reaches 2.1 at update 20 (2.5× fewer). Final: (0.98 + 1.92 + 0.94)/4 = 0.96.
const KFAC = [2.2, 1.9, 1.6, 1.45, 1.35, 1.3, 1.25, 1.2, 1.17, 1.14, 1.11, 1.08, 1.06, 1.04, 1.02, 1.01, 1.0, 0.98, 0.96, 0.94];

describe('fig5 verdict', () => {
  it("is 'reproduced' with a large early speed-up and final losses within 10 %", () => {
    expect(EARLY_FRACTION).toBe(0.25);
    const v = fig5Seed([
      run('sgd+bn', 'SGD+BN bz128 rbz16', SGD, { dist: true, testError: 0.2 }),
      run('kfac+bn', 'dist.K-FAC bz128', KFAC, { dist: true, simPerStep: 1.25, testError: 0.19 }),
    ]);
    expect(v.status).toBe('reproduced');
    expect(v.numbers.early_target).toBeCloseTo(2.1, 12);
    expect(v.numbers.sgd_early_updates).toBe(50);
    expect(v.numbers.kfac_early_updates).toBe(20);
    expect(v.numbers.early_speedup_updates).toBeCloseTo(2.5, 12);
    // simulated: 50 × 1 s vs 20 × 1.25 s
    expect(v.numbers.early_speedup_sim).toBeCloseTo(2, 12);
    expect(v.numbers.early_speedup).toBeCloseTo(2, 12);
    expect(v.numbers.early_speedup_wall).toBeCloseTo(2.5, 12);
    expect(v.numbers.horizon_updates).toBe(200);
    expect(v.numbers.final_sgd_loss).toBeCloseTo(1.0, 12);
    expect(v.numbers.final_kfac_loss).toBeCloseTo(0.96, 12);
    expect(v.numbers.final_gap).toBeCloseTo(-0.04, 12);
    expect(v.text).toContain('2.00× faster in simulated time (2.50× in updates)');
    expect(v.text).toContain('K-FAC 4.0 % better');
    expect(v.text).toContain('the curves have met');
    expect(v.text).toContain('Final test error: K-FAC 0.190, SGD+BN 0.200');
  });

  it("is 'partly' when K-FAC is still far ahead at the end (the curves have not met)", () => {
    const ahead = [...KFAC.slice(0, 17), 0.7, 0.7, 0.7];
    const v = fig5Seed([run('sgd+bn', 'SGD+BN', SGD), run('kfac', 'dist.K-FAC', ahead, { dist: true })]);
    // not comparable on the simulated clock (SGD single-process): judged in updates
    expect(v.text).toContain('Clock: updates');
    expect(v.numbers.early_speedup).toBeCloseTo(2.5, 12);
    expect(v.numbers.early_speedup).toBeGreaterThanOrEqual(EARLY_MIN);
    expect(v.numbers.final_gap).toBeCloseTo(-0.3, 12);
    expect(Math.abs(v.numbers.final_gap!)).toBeGreaterThan(CONVERGE_TOL);
    expect(v.status).toBe('partly');
    expect(v.text).toContain('K-FAC still ahead');
  });

  it("is 'partly' when the curves meet without an early speed-up", () => {
    const v = fig5Seed([run('sgd+bn', 'SGD+BN', SGD), run('kfac', 'dist.K-FAC', SGD)]);
    expect(v.numbers.early_speedup).toBeCloseTo(1, 12);
    expect(v.numbers.final_gap).toBeCloseTo(0, 12);
    expect(v.status).toBe('partly');
  });

  it("is 'not reproduced' when K-FAC is slower early and still behind at the end", () => {
    // SGD + 0.45: smoothed 2.15 at update 80, 2.05 at 90: first ≤ 2.1 at update 90 → 50/90; final gap 0.45/1.0
    const v = fig5Seed([run('sgd+bn', 'SGD+BN', SGD), run('kfac', 'dist.K-FAC', SGD.map((l) => l + 0.45))]);
    expect(v.numbers.kfac_early_updates).toBe(90);
    expect(v.numbers.early_speedup).toBeCloseTo(50 / 90, 12);
    expect(v.numbers.final_gap).toBeCloseTo(0.45, 12);
    expect(v.status).toBe('not reproduced');
  });

  it("is 'no data' without both runs", () => {
    expect(fig5Seed([run('sgd+bn', 'SGD+BN', SGD)]).status).toBe('no data');
    expect(fig5Seed([run('kfac', 'dist.K-FAC', KFAC)]).status).toBe('no data');
  });
});

describe('fig5 verdict over seeds', () => {
  it('gives the seed\'s own status when three seeds measure the same (zero-width intervals), stating the intervals', () => {
    const runs = [
      run('sgd+bn', 'SGD+BN bz128 rbz16', SGD, { dist: true, testError: 0.2 }),
      run('kfac+bn', 'dist.K-FAC bz128', KFAC, { dist: true, simPerStep: 1.25, testError: 0.19 }),
    ];
    const one = fig5Seed(runs);
    const v = fig5Verdict(asSeeds(runs));
    expect(v.status).toBe('reproduced');
    expect(v.status).toBe(one.status);
    expect(v.seeds).toEqual([1, 2, 3]);
    for (const [k, x] of Object.entries(one.numbers)) if (Number.isFinite(x)) expect(v.numbers[k]).toBeCloseTo(x, 9);
    expect(v.summary).toMatch(/early speed-up .*3 seeds.*final gap/);
    // one seed alone decides nothing
    expect(fig5Verdict(asSeeds(runs, [1])).status).toBe('inconclusive');
  });
});

describe('fig5df: the doubly-factored classifier against its Kronecker block (the flatten-head runs)', () => {
  const flat = (label: string, losses: number[], doublyFactored: boolean, seed: number): LoadedRun => {
    const r = run('kfac+bn', label, losses, { dist: true });
    const config = { distributed: { gradientWorkers: 7 }, model: { head: 'flatten' }, optimizer: doublyFactored ? { doublyFactored: { names: ['fc'] } } : {} };
    return { ...r, sidecar: { ...r.sidecar, config, run: `${label}-s${seed}`, group: label, seed } as LoadedRun['sidecar'] };
  };
  // Kronecker: KFAC's curve, final window mean 0.96 (see above); the doubly-factored run scaled per seed
  const seeds = (scales: number[]) =>
    scales.flatMap((s, i) => [flat('dist.K-FAC flatten head', KFAC, false, i + 1), flat('dist.K-FAC doubly-factored', KFAC.map((l) => l * s), true, i + 1)]);
  it('reproduced when every seed is within the bar (2–4 % worse: the interval stays below 10 %)', () => {
    const v = fig5dfVerdict(seeds([1.02, 1.03, 1.04]));
    expect(v.status).toBe('reproduced');
    // the gap is exactly the scale − 1 (a constant factor on every row); mean 3 %, t(0.975, 2)·0.01/√3 = 2.48 %
    expect(v.numbers.loss_gap).toBeCloseTo(0.03, 9);
    expect(v.text).toMatch(/3\.0 %.*0\.5 %.*5\.5 %/);
  });
  it('not reproduced when every seed is far worse, inconclusive when the interval straddles the bar', () => {
    expect(fig5dfVerdict(seeds([1.3, 1.31, 1.32])).status).toBe('not reproduced');
    expect(fig5dfVerdict(seeds([1.0, 1.1, 1.2])).status).toBe('inconclusive');
  });
  it("the main fig5 figure leaves the flatten-head runs out, and the pair needs both runs", () => {
    const runs = seeds([1.02, 1.03, 1.04]);
    expect(fig5Figure.select!(runs)).toEqual([]);
    expect(fig5dfFigure.select!(runs)).toHaveLength(6);
    expect(fig5dfSeed(runs.filter((r) => r.sidecar.group === 'dist.K-FAC flatten head')).status).toBe('no data');
  });
});
