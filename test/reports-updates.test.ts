/** The updates-to-target verdict against counts made by hand on synthetic curves (clearly synthetic). */
import { describe, expect, it } from 'vitest';
import { smoothedLoss, updatesTo, updatesSeed, SMOOTH_ROWS } from '../reports/figures/updates';
import type { LoadedRun } from '../reports/types';

function run(method: string, label: string, losses: number[]): LoadedRun {
  return {
    sidecar: { method, label, run: label, experiment: 'synthetic', batchSize: 128 } as LoadedRun['sidecar'],
    rows: losses.map((l, i) => ({ step: (i + 1) * 10, examples: (i + 1) * 1280, train_loss: l })),
    csvPath: 'synthetic.csv',
  };
}

describe('updates verdict', () => {
  it('smooths over the last rows and finds the first step at the target', () => {
    expect(SMOOTH_ROWS).toBe(3);
    const r = run('kfac', 'k', [3, 2, 1, 0.5]);
    expect(smoothedLoss(r).map((p) => p.loss)).toEqual([3, 2.5, 2, 3.5 / 3]);
    expect(updatesTo(r, 2)).toBe(30);
    expect(updatesTo(r, 0.1)).toBeUndefined();
  });

  it('counts updates to the best baseline final loss and states the ratio', () => {
    const sgd = run('sgd', 'SGD', [2.3, 2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2]);
    const bn = run('sgd+bn', 'SGD+BN', [2.3, 1.8, 1.5, 1.3, 1.1, 1.0, 0.9, 0.8]);
    const kfac = run('kfac', 'K-FAC', [2.0, 1.2, 0.8, 0.6, 0.5, 0.5, 0.4, 0.4]);
    const v = updatesSeed([sgd, bn, kfac]);
    // by hand: SGD+BN smoothed final = (1.0+0.9+0.8)/3 = 0.9; K-FAC smoothed ≤ 0.9 first at row 4 ((1.2+0.8+0.6)/3=0.867)
    expect(v.numbers.target).toBeCloseTo(0.9, 12);
    expect(v.numbers.kfacUpdates).toBe(40);
    expect(v.numbers.sgdBnUpdates).toBe(80);
    expect(v.numbers.sgdUpdates).toBeUndefined();
    expect(v.numbers.bestBaselineRatio).toBeCloseTo(2, 12);
    expect(v.status).toBe('reproduced');
    expect(v.text).toMatch(/SGD did not reach it in 80 updates/);
  });

  it('reports a K-FAC that does not reach the target as not reproduced', () => {
    const bn = run('sgd+bn', 'SGD+BN', [2, 1, 0.5, 0.4]);
    const kfac = run('kfac', 'K-FAC', [2, 1.5, 1.2, 1.1]);
    expect(updatesSeed([bn, kfac]).status).toBe('not reproduced');
    expect(updatesSeed([bn]).status).toBe('no data');
  });
});
