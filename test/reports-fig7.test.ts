/**
 * The Figure 7 verdict on SYNTHETIC runs (hand-written rows, one every 10 updates): the loss at matched updates is
 * the mean of the piecewise-linear curve over the last 10 % of the common updates, worked out by hand; seconds per
 * update are read from the last row's clock.
 */
import { describe, expect, it } from 'vitest';
import { COMPETITIVE_TOL, convOf, fig7Seed, MATCH_WINDOW, TIME_SAVING_MIN } from '../reports/figures/fig7';
import type { LoadedRun } from '../reports/types';

function run(label: string, conv: 'kfc' | 'cheap' | undefined, losses: number[], simPerStep: number, wallPerStep: number): LoadedRun {
  return {
    sidecar: {
      method: 'kfac',
      label,
      run: label,
      experiment: 'fig7',
      batchSize: 128,
      status: 'finished',
      config: conv ? { optimizer: { kind: 'kfac', conv }, distributed: { inverse: { kind: 'sync', every: 10 }, costClock: 'cpu' } } : {},
    } as LoadedRun['sidecar'],
    rows: losses.map((l, i) => ({
      step: (i + 1) * 10,
      examples: (i + 1) * 1280,
      sim_seconds: (i + 1) * 10 * simPerStep,
      wall_seconds: (i + 1) * 10 * wallPerStep,
      train_loss: l,
    })),
    csvPath: 'synthetic.csv',
  };
}

// KFC: 10 rows (updates 10..100); window [90, 100] → (1.1 + 1.0)/2 = 1.05.
const KFC = [2.5, 2.2, 1.9, 1.7, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0];
// fast runs 2 rows longer: the common horizon is update 100.
const fastAt = (scale: number) => [...KFC.map((l) => l * scale), 0.9, 0.85];

describe('fig7 verdict', () => {
  it("is 'reproduced' when fast is within 10 % per update and ≥ 15 % cheaper per update on the simulated clock", () => {
    expect(MATCH_WINDOW).toBe(0.1);
    const v = fig7Seed([run('dist.K-FAC KFC bz128', 'kfc', KFC, 1.0, 2.0), run('dist.K-FAC fast bz128', 'cheap', fastAt(1.05), 0.75, 1.7)]);
    expect(v.status).toBe('reproduced');
    expect(v.numbers.horizon_updates).toBe(100);
    expect(v.numbers.kfc_loss).toBeCloseTo(1.05, 12);
    expect(v.numbers.fast_loss).toBeCloseTo(1.05 * 1.05, 12);
    expect(v.numbers.loss_gap).toBeCloseTo(0.05, 12);
    expect(v.numbers.sim_s_per_update_kfc).toBeCloseTo(1.0, 12);
    expect(v.numbers.sim_s_per_update_fast).toBeCloseTo(0.75, 12);
    expect(v.numbers.sim_time_ratio).toBeCloseTo(0.75, 12);
    expect(v.numbers.sim_time_saving).toBeCloseTo(0.25, 12);
    expect(v.numbers.wall_time_ratio).toBeCloseTo(0.85, 12);
    expect(v.text).toContain('fast 5.0 % worse');
    expect(v.text).toContain('simulated cluster clock (judged; roles in parallel, roles timed by CPU time');
    expect(v.text).toContain('ratio 0.75, i.e. 25.0 % less time per iteration');
    expect(v.text).toContain('Real seconds per update on this machine (quoted, not judged');
    expect(v.text).toContain('ratio 0.85 (15.0 % less)');
  });

  it("is 'partly' when fast is competitive but barely cheaper, or cheaper but not competitive", () => {
    const a = fig7Seed([run('KFC', 'kfc', KFC, 1.0, 1.0), run('fast', 'cheap', fastAt(0.95), 0.9, 1.0)]);
    expect(a.numbers.loss_gap).toBeCloseTo(-0.05, 12);
    expect(a.numbers.sim_time_saving).toBeCloseTo(0.1, 12);
    expect(a.numbers.sim_time_saving!).toBeLessThan(TIME_SAVING_MIN);
    expect(a.status).toBe('partly');
    expect(a.text).toContain('fast 5.0 % better');
    const b = fig7Seed([run('KFC', 'kfc', KFC, 1.0, 1.0), run('fast', 'cheap', fastAt(1.2), 0.7, 1.0)]);
    expect(b.numbers.loss_gap).toBeCloseTo(0.2, 12);
    expect(b.numbers.loss_gap!).toBeGreaterThan(COMPETITIVE_TOL);
    expect(b.status).toBe('partly');
  });

  it("is 'not reproduced' when fast is worse per update and no cheaper", () => {
    const v = fig7Seed([run('KFC', 'kfc', KFC, 1.0, 1.0), run('fast', 'cheap', fastAt(1.2), 1.0, 1.1)]);
    expect(v.numbers.sim_time_saving).toBeCloseTo(0, 12);
    expect(v.numbers.wall_time_ratio).toBeCloseTo(1.1, 12);
    expect(v.status).toBe('not reproduced');
    expect(v.text).toContain('10.0 % more');
  });

  it("tells the runs apart by config or label, and is 'no data' without both", () => {
    const k = run('dist.K-FAC KFC bz512', undefined, KFC, 1, 1);
    const f = run('dist.K-FAC fast bz512', undefined, fastAt(1), 0.8, 1);
    expect(convOf(k)).toBe('kfc');
    expect(convOf(f)).toBe('cheap');
    const v = fig7Seed([k, f]);
    expect(v.numbers.loss_gap).toBeCloseTo(0, 12);
    expect(v.text).toContain('these runs did not go through the distributed runtime');
    expect(fig7Seed([k]).status).toBe('no data');
    expect(fig7Seed([]).status).toBe('no data');
  });
});
