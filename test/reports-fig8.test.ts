/**
 * The Figure 8 verdict on SYNTHETIC runs (reports/synthetic.ts), one per status branch. Expected numbers are worked out
 * by hand from the curves' closed forms (rows every 5 updates up to 100, test evaluations every 25).
 */
import { describe, expect, it } from 'vitest';
import { LOSS_MARGIN, fig8Verdict } from '../reports/figures/fig8';
import { syntheticRows, syntheticSidecar } from '../reports/synthetic';
import type { LoadedRun } from '../reports/types';

const BZ = 32;

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
    // decayKL 2 − 0.012·s, decayLR 2 − 0.008·s. Smoothed over rows s − 10, s − 5, s: 2 − r·(s − 5).
    // At s = 100: decayKL 2 − 0.012·95 = 0.86, decayLR 2 − 0.008·95 = 1.24; advantage (1.24 − 0.86)/1.24.
    // Target 1.24 (the worse final): decayKL first at s = 70 (1.22; at 65: 1.28), decayLR at 100.
    const v = fig8Verdict([run('kl', (s) => 2 - 0.012 * s), run('lr', (s) => 2 - 0.008 * s)]);
    expect(v.status).toBe('reproduced');
    expect(v.numbers.matchedUpdates).toBe(100);
    expect(v.numbers.klLoss).toBeCloseTo(0.86, 12);
    expect(v.numbers.lrLoss).toBeCloseTo(1.24, 12);
    expect(v.numbers.lossAdvantage).toBeCloseTo(0.38 / 1.24, 12);
    expect(v.numbers.target).toBeCloseTo(1.24, 12);
    expect(v.numbers.klUpdates).toBe(70);
    expect(v.numbers.lrUpdates).toBe(100);
    expect(v.numbers.updatesRatio).toBeCloseTo(100 / 70, 12);
    // test error at update 100: 1.05 · 0.25 · loss(100) = 1.05 · 0.25 · 0.8 and 1.05 · 0.25 · 1.2
    expect(v.numbers.testUpdates).toBe(100);
    expect(v.numbers.klTestError).toBeCloseTo(0.21, 12);
    expect(v.numbers.lrTestError).toBeCloseTo(0.315, 12);
    expect(v.text).toContain('At update 100: training loss decayKL 0.860 vs decayLR 1.240 (decayKL 30.6 % lower');
    expect(v.text).toContain('decayKL 70 updates, decayLR 100 (1.43×)');
    expect(v.text).toContain('Test error at update 100: decayKL 21.0 % vs decayLR 31.5 %');
    expect(v.text).toContain("decayLR's initial learning rate 0.04");
  });

  it('compares at the last update both runs logged when one run is shorter', () => {
    const short = run('lr', (s) => 2 - 0.008 * s);
    short.rows = short.rows.filter((r) => r.step <= 60);
    const v = fig8Verdict([run('kl', (s) => 2 - 0.012 * s), short]);
    // at s = 60: decayKL 2 − 0.012·55 = 1.34, decayLR 2 − 0.008·55 = 1.56
    expect(v.numbers.matchedUpdates).toBe(60);
    expect(v.numbers.klLoss).toBeCloseTo(1.34, 12);
    expect(v.numbers.lrLoss).toBeCloseTo(1.56, 12);
    expect(v.numbers.testUpdates).toBe(50);
  });

  it("is 'partly' when decayKL gets to the target sooner but ends within the margin", () => {
    // decayKL 2 − 0.02·s floored at 1.23: its final smoothed loss 1.23 is 0.8 % below decayLR's 1.24 (< LOSS_MARGIN);
    // it reaches 1.24 first at s = 50 (rows 40, 45, 50 all 1.23; at s = 45 rows 35, 40, 45 give (1.3 + 2·1.23)/3 = 1.2533).
    const v = fig8Verdict([run('kl', (s) => Math.max(1.23, 2 - 0.02 * s)), run('lr', (s) => 2 - 0.008 * s)]);
    expect(v.numbers.lossAdvantage).toBeCloseTo(0.01 / 1.24, 12);
    expect(v.numbers.lossAdvantage).toBeLessThan(LOSS_MARGIN);
    expect(v.numbers.klUpdates).toBe(50);
    expect(v.numbers.lrUpdates).toBe(100);
    expect(v.status).toBe('partly');
    expect(v.text).toContain('(not met) and fewer updates to the target (met)');
  });

  it("is 'not reproduced' when exponential learning-rate decay does better", () => {
    const v = fig8Verdict([run('kl', (s) => 2 - 0.008 * s), run('lr', (s) => 2 - 0.012 * s)]);
    expect(v.status).toBe('not reproduced');
    expect(v.numbers.lossAdvantage).toBeCloseTo((0.86 - 1.24) / 0.86, 12);
    expect(v.numbers.klUpdates).toBe(100);
    expect(v.numbers.lrUpdates).toBe(70);
    expect(v.text).toContain('decayKL 44.2 % higher');
  });

  it("is 'no data' without both runs", () => {
    expect(fig8Verdict([]).status).toBe('no data');
    expect(fig8Verdict([run('kl', (s) => 2 - 0.01 * s)]).status).toBe('no data');
  });
});
