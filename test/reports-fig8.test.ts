/**
 * The Figure 8 verdict on SYNTHETIC runs (reports/synthetic.ts), one per status branch. Expected numbers are worked out
 * by hand from the curves' closed forms: rows every 5 updates up to 100, test evaluations at 25, 50, 75, 100 with
 * test error 1.05 · 0.25 · loss. Linear curves 2 − r·s: the window (80, 100] holds rows 85, 90, 95, 100, mean
 * 2 − 92.5·r; the smoothed loss over rows s − 10, s − 5, s is 2 − r·(s − 5).
 */
import { asSeeds } from './reports-helpers';
import { describe, expect, it } from 'vitest';
import { LOSS_MARGIN, WINDOW_FRACTION, fig8Seed, fig8Verdict } from '../reports/figures/fig8';
import { syntheticRows, syntheticSidecar } from '../reports/synthetic';
import type { LoadedRun } from '../reports/types';

const BZ = 32;
const E = 1.05 * 0.25;

function run(rule: 'kl' | 'lr', loss: (step: number) => number): LoadedRun {
  const o = {
    run: `kfac-bz32-decay${rule}`,
    label: `dist.K-FAC bz32 decay${rule.toUpperCase()}`,
    method: `kfac-${rule}`,
    batchSize: BZ,
    trainLoss: (e: number) => loss(e / BZ),
    steps: 100,
    logEvery: 5,
    evalEvery: 25,
  };
  const rows = syntheticRows(o);
  const sidecar = syntheticSidecar('fig8', o, rows);
  if (rule === 'lr') sidecar.config = { optimizer: { stepSize: { rule: 'lr', lr: 0.04 } } };
  return { sidecar, rows, csvPath: `${o.run}.csv` };
}

describe('fig8 verdict', () => {
  it("is 'reproduced' when decayKL is lower at matched updates and reaches the common target sooner", () => {
    expect(WINDOW_FRACTION).toBe(0.2);
    // decayKL 2 − 0.012·s, decayLR 2 − 0.008·s: window means 0.89 and 1.26, advantage 0.37/1.26.
    // Final smoothed: 2 − 0.012·95 = 0.86 and 2 − 0.008·95 = 1.24 → target 1.24: decayKL first at s = 70 (1.22; at
    // 65: 1.28), decayLR at 100.
    const v = fig8Seed([run('kl', (s) => 2 - 0.012 * s), run('lr', (s) => 2 - 0.008 * s)]);
    expect(v.status).toBe('reproduced');
    expect(v.numbers.matchedUpdates).toBe(100);
    expect(v.numbers.klLoss).toBeCloseTo(0.89, 12);
    expect(v.numbers.lrLoss).toBeCloseTo(1.26, 12);
    expect(v.numbers.lossAdvantage).toBeCloseTo(0.37 / 1.26, 12);
    expect(v.numbers.target).toBeCloseTo(1.24, 12);
    expect(v.numbers.klUpdates).toBe(70);
    expect(v.numbers.lrUpdates).toBe(100);
    expect(v.numbers.updatesRatio).toBeCloseTo(100 / 70, 12);
    // test errors at 25, 50, 75, 100: decayKL lower at all four; means over s̄ = 62.5: E·1.25 and E·1.5
    expect(v.numbers.testEvaluations).toBe(4);
    expect(v.numbers.klTestWins).toBe(4);
    expect(v.numbers.klMeanTestError).toBeCloseTo(E * 1.25, 12);
    expect(v.numbers.lrMeanTestError).toBeCloseTo(E * 1.5, 12);
    expect(v.numbers.testUpdates).toBe(100);
    expect(v.numbers.klTestError).toBeCloseTo(E * 0.8, 12);
    expect(v.numbers.lrTestError).toBeCloseTo(E * 1.2, 12);
    expect(v.text).toContain('Training loss over updates 80–100 (the last 20.0 % of the matched updates): decayKL 0.890 vs decayLR 1.260 (decayKL 29.4 % lower)');
    expect(v.text).toContain('decayKL 70 updates, decayLR 100 (1.43×)');
    expect(v.text).toContain('decayKL lower at 4 of 4 common evaluations, mean 32.8 % vs 39.4 %; at update 100 21.0 % vs 31.5 %');
    expect(v.text).toContain("decayLR's initial learning rate 0.04");
  });

  it('compares at the last update both runs logged when one run is shorter', () => {
    const short = run('lr', (s) => 2 - 0.008 * s);
    short.rows = short.rows.filter((r) => r.step <= 60);
    const v = fig8Seed([run('kl', (s) => 2 - 0.012 * s), short]);
    // window (48, 60]: rows 50, 55, 60, mean step 55: 2 − 0.012·55 = 1.34 and 2 − 0.008·55 = 1.56
    expect(v.numbers.matchedUpdates).toBe(60);
    expect(v.numbers.klLoss).toBeCloseTo(1.34, 12);
    expect(v.numbers.lrLoss).toBeCloseTo(1.56, 12);
    expect(v.numbers.testUpdates).toBe(50);
    expect(v.numbers.testEvaluations).toBe(2);
  });

  it("is 'partly' when decayKL gets to the target sooner but ends within the margin", () => {
    // decayKL 2 − 0.02·s floored at 1.25: window mean 1.25 vs decayLR 1.26, advantage 0.01/1.26 < LOSS_MARGIN.
    // Target max(1.25, 1.24) = 1.25: decayKL first at s = 50 (rows 40, 45, 50 all 1.25; at 45 the rows 35, 40, 45 give
    // (1.3 + 2·1.25)/3 = 1.267), decayLR at 100 (2 − 0.008·95 = 1.24; at 95: 1.28).
    const v = fig8Seed([run('kl', (s) => Math.max(1.25, 2 - 0.02 * s)), run('lr', (s) => 2 - 0.008 * s)]);
    expect(v.numbers.lossAdvantage).toBeCloseTo(0.01 / 1.26, 12);
    expect(v.numbers.lossAdvantage).toBeLessThan(LOSS_MARGIN);
    expect(v.numbers.klUpdates).toBe(50);
    expect(v.numbers.lrUpdates).toBe(100);
    expect(v.status).toBe('partly');
    expect(v.text).toContain('(not met) and fewer updates to the target (met)');
  });

  it("is 'partly' on test error alone only when decayKL is lower at most evaluations and by the margin on average", () => {
    // decayKL 2 − 0.0079·s is slightly behind in training loss (window 2 − 0.0079·92.5 = 1.26925 vs 1.26; final
    // smoothed 1.2495 vs 1.24, so both reach the target 1.2495 at s = 100 only)
    const behind = () => run('kl', (s) => 2 - 0.0079 * s);
    const halved = behind();
    for (const r of halved.rows) if (r.test_error !== undefined) r.test_error /= 2;
    const v = fig8Seed([halved, run('lr', (s) => 2 - 0.008 * s)]);
    expect(v.numbers.lossAdvantage).toBeCloseTo((1.26 - 1.26925) / 1.26, 12);
    expect(v.numbers.klUpdates).toBe(100);
    expect(v.numbers.lrUpdates).toBe(100);
    expect(v.numbers.klTestWins).toBe(4);
    expect(v.status).toBe('partly');
    expect(v.text).toContain("lower at most evaluations and by 2.0 % on average (met)");
    // lower at the last evaluation only (1 of 4): not enough
    const once = behind();
    once.rows.at(-1)!.test_error = 0.01;
    const w = fig8Seed([once, run('lr', (s) => 2 - 0.008 * s)]);
    expect(w.numbers.klTestWins).toBe(1);
    expect(w.numbers.klTestError).toBe(0.01);
    expect(w.status).toBe('not reproduced');
  });

  it("is 'not reproduced' when exponential learning-rate decay does better", () => {
    const v = fig8Seed([run('kl', (s) => 2 - 0.008 * s), run('lr', (s) => 2 - 0.012 * s)]);
    expect(v.status).toBe('not reproduced');
    // window means 1.26 (decayKL) and 0.89 (decayLR)
    expect(v.numbers.lossAdvantage).toBeCloseTo((0.89 - 1.26) / 0.89, 12);
    expect(v.numbers.klUpdates).toBe(100);
    expect(v.numbers.lrUpdates).toBe(70);
    expect(v.numbers.klTestWins).toBe(0);
    expect(v.text).toContain('decayKL 41.6 % higher');
  });

  it("is 'no data' without both runs", () => {
    expect(fig8Seed([]).status).toBe('no data');
    expect(fig8Seed([run('kl', (s) => 2 - 0.01 * s)]).status).toBe('no data');
  });
});

describe('fig8 verdict over seeds', () => {
  it('gives the seed\'s own status when three seeds measure the same (zero-width intervals), stating the intervals', () => {
    const runs = [run('kl', (s) => 2 - 0.012 * s), run('lr', (s) => 2 - 0.008 * s)];
    const one = fig8Seed(runs);
    const v = fig8Verdict(asSeeds(runs));
    expect(v.status).toBe('reproduced');
    expect(v.status).toBe(one.status);
    expect(v.seeds).toEqual([1, 2, 3]);
    for (const [k, x] of Object.entries(one.numbers)) if (Number.isFinite(x)) expect(v.numbers[k]).toBeCloseTo(x, 9);
    expect(v.summary).toMatch(/decayKL loss advantage .*3 seeds/);
    // one seed alone decides nothing
    expect(fig8Verdict(asSeeds(runs, [1])).status).toBe('inconclusive');
  });
});
