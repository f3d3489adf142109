/**
 * The Figure 4 verdict on SYNTHETIC runs (reports/synthetic.ts) built to land in each status branch. Expected numbers
 * are worked out by hand in the comments from the curves' closed forms, not from the implementation.
 *
 * Curves: rows every 2 updates up to 40 at batch 256; synthetic clocks are 0.01·√256 = 0.16 s per update.
 *   SGD+BN  loss 3 − 0.05·s  → last three rows (s = 36, 38, 40): 1.2, 1.1, 1.0 → target 1.1; its own smoothed loss
 *           3 − 0.05·(s − 2) reaches 1.1 first at s = 40.
 */
import { asSeeds } from './reports-helpers';
import { describe, expect, it } from 'vitest';
import { SPEEDUP_MIN, fig4Seed, fig4Verdict } from '../reports/figures/fig4';
import { syntheticRows, syntheticSidecar, type SyntheticRunOptions } from '../reports/synthetic';
import type { LoadedRun } from '../reports/types';

const BZ = 256;

function run(method: string, label: string, loss: (step: number) => number, edit?: (r: LoadedRun) => void): LoadedRun {
  const o: SyntheticRunOptions = { run: label.replace(/[^A-Za-z0-9]+/g, '-'), label, method, batchSize: BZ, trainLoss: (e) => loss(e / BZ), steps: 40, logEvery: 2 };
  const rows = syntheticRows(o);
  const r: LoadedRun = { sidecar: syntheticSidecar('fig4', o, rows), rows, csvPath: `${o.run}.csv` };
  edit?.(r);
  return r;
}

const bn = () => run('sgd+bn', 'SGD+BN bz256 rbz32', (s) => 3 - 0.05 * s);
const sgd = () => run('sgd', 'SGD bz256', (s) => 3 - 0.02 * s);
/** K-FAC at `rate` per update, floored at 0.2 (the floor is never reached before the target) */
const kfac = (rate: number, edit?: (r: LoadedRun) => void) => run('kfac', 'dist.K-FAC bz256', (s) => Math.max(0.2, 3 - rate * s), edit);

describe('fig4 verdict', () => {
  it("is 'reproduced' when K-FAC reaches SGD+BN's final loss 1.5× sooner, and quotes every number", () => {
    // K-FAC 3 − 0.1·s: smoothed 3 − 0.1·(s − 2) ≤ 1.1 first at s = 22 (1.0; at s = 20 it is 1.2)
    const k = kfac(0.1, (r) => {
      r.sidecar.config = { model: { arch: 'alexnet', width: 0.25, fcUnits: 256, stem: 'small' }, optimizer: { doublyFactored: { names: ['fc6'] } } };
      r.sidecar.data = { ...r.sidecar.data, dataset: 'fashion-mnist' };
    });
    const v = fig4Seed([sgd(), bn(), k]);
    expect(v.status).toBe('reproduced');
    expect(v.numbers.target).toBeCloseTo(1.1, 12);
    expect(v.numbers.kfacUpdates).toBe(22);
    expect(v.numbers.sgdBnUpdates).toBe(40);
    expect(v.numbers.updatesSpeedup).toBeCloseTo(40 / 22, 12);
    // single-process synthetic runs (no config.distributed): real seconds, 0.16 s per update
    expect(v.numbers.simulatedClock).toBe(0);
    expect(v.numbers.kfacSeconds).toBeCloseTo(22 * 0.16, 9);
    expect(v.numbers.sgdBnSeconds).toBeCloseTo(40 * 0.16, 9);
    expect(v.numbers.timeSpeedup).toBeCloseTo(40 / 22, 9);
    // SGD 3 − 0.02·s never gets to 1.1 in 40 updates (its smoothed loss ends at 3 − 0.02·38 = 2.24)
    expect(v.numbers.sgdUpdates).toBeUndefined();
    expect(v.text).toContain('SGD did not reach it in 40 updates');
    expect(v.text).toContain('K-FAC is 1.82× faster in time and 1.82× in updates');
    expect(v.text).toContain('real seconds on this machine');
    // test error at update 40 (evaluations every 10): 1.05 · 0.25 · loss(40); K-FAC's loss is floored at 0.2
    expect(v.numbers['testError.sgd+bn']).toBeCloseTo(1.05 * 0.25 * 1.0, 12);
    expect(v.numbers['testError.kfac']).toBeCloseTo(1.05 * 0.25 * 0.2, 12);
    expect(v.numbers['testError.sgd']).toBeCloseTo(1.05 * 0.25 * 2.2, 12);
    expect(v.text).toContain('Test error at update 40: ');
    // synthetic staleness = step mod 20 on steps 2, 4, …, 40: twice 2 + 4 + … + 18 (= 90) and twice 0 over 20 rows
    expect(v.numbers.meanStaleness).toBeCloseTo(9, 12);
    expect(v.numbers.maxStaleness).toBe(18);
    // fc6 on 28×28 with the small stem at width 0.25: 4×4 map of 64 channels, 256 units
    expect([v.numbers.fc6T, v.numbers.fc6C, v.numbers.fc6O]).toEqual([16, 64, 256]);
    expect(v.text).toContain('fc6 factors E[KKᵀ] 16×16, E[ΨΨᵀ] 64×64, E[DsDsᵀ] 256×256');
  });

  it('uses the simulated cluster clock only when both runs went through the distributed runtime', () => {
    const distributed = (r: LoadedRun) => {
      r.sidecar.config = { distributed: { gradientWorkers: r.sidecar.method === 'kfac' ? 7 : 8 } };
    };
    // K-FAC's simulated clock runs at a quarter of its real one: 0.04 s per update
    const k = kfac(0.1, (r) => {
      distributed(r);
      for (const row of r.rows) row.sim_seconds = row.step * 0.04;
    });
    const b = bn();
    distributed(b);
    const v = fig4Seed([b, k]);
    expect(v.numbers.simulatedClock).toBe(1);
    expect(v.numbers.kfacSeconds).toBeCloseTo(22 * 0.04, 9);
    expect(v.numbers.timeSpeedup).toBeCloseTo((40 * 0.16) / (22 * 0.04), 9);
    expect(v.text).toContain('simulated cluster seconds');
    // one of them single-process: real seconds again
    expect(fig4Seed([bn(), k]).numbers.simulatedClock).toBe(0);
    expect(v.text).toContain('names no doubly-factored layer');
  });

  it("is 'partly' when K-FAC needs 1.82× fewer updates but is slower in time", () => {
    // K-FAC's clock three times slower per update: 22 · 0.48 = 10.56 s vs SGD+BN's 6.4 s
    const k = kfac(0.1, (r) => {
      for (const row of r.rows) row.wall_seconds = row.step * 0.48;
    });
    const v = fig4Seed([bn(), k]);
    expect(v.numbers.timeSpeedup).toBeCloseTo(6.4 / 10.56, 9);
    expect(v.numbers.updatesSpeedup).toBeGreaterThanOrEqual(SPEEDUP_MIN);
    expect(v.status).toBe('partly');
  });

  it("is 'partly' when K-FAC is faster by less than the bar", () => {
    // K-FAC 3 − 0.06·s: smoothed 3 − 0.06·(s − 2) ≤ 1.1 first at s = 34 (1.08; at 32 it is 1.2): 40/34 = 1.18×
    const v = fig4Seed([bn(), kfac(0.06)]);
    expect(v.numbers.kfacUpdates).toBe(34);
    expect(v.numbers.timeSpeedup).toBeCloseTo(40 / 34, 9);
    expect(v.status).toBe('partly');
  });

  it("is 'not reproduced' when K-FAC is no faster, or never reaches the target", () => {
    const same = fig4Seed([bn(), kfac(0.05)]);
    expect(same.numbers.kfacUpdates).toBe(40);
    expect(same.numbers.timeSpeedup).toBeCloseTo(1, 9);
    expect(same.status).toBe('not reproduced');
    const slow = fig4Seed([bn(), kfac(0.02)]);
    expect(slow.status).toBe('not reproduced');
    expect(slow.numbers.kfacUpdates).toBeUndefined();
    expect(slow.text).toContain('dist.K-FAC did not reach it in 40 updates');
  });

  it("is 'no data' without a K-FAC or an SGD+BN run", () => {
    expect(fig4Seed([]).status).toBe('no data');
    expect(fig4Seed([sgd(), kfac(0.1)]).status).toBe('no data');
    expect(fig4Seed([bn()]).status).toBe('no data');
  });
});

describe('fig4 verdict over seeds', () => {
  it('gives the seed\'s own status when three seeds measure the same (zero-width intervals), stating the intervals', () => {
    const runs = [sgd(), bn(), kfac(0.1)];
    const one = fig4Seed(runs);
    const v = fig4Verdict(asSeeds(runs));
    expect(v.status).toBe(one.status);
    expect(v.status).toBe(one.status);
    expect(v.seeds).toEqual([1, 2, 3]);
    for (const [k, x] of Object.entries(one.numbers)) if (Number.isFinite(x)) expect(v.numbers[k]).toBeCloseTo(x, 9);
    expect(v.summary).toMatch(/K-FAC speed-up over SGD\+BN .*3 seeds/);
    // one seed alone decides nothing
    expect(fig4Verdict(asSeeds(runs, [1])).status).toBe('inconclusive');
  });
});
