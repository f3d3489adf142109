/** The tuning grid's bookkeeping: the cross product, point ids, and the tuning metric read from a run's CSV. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { budgetWarnings, finalTrainLoss, gridAxes, gridPoints, planGridRuns, pointId } from '../experiments/grid';
import { applyOverrides, getExperiment, resolveProfile, tunedPath } from '../experiments/common';
import { type GridOutcome, pickBest, tunedChoice, tunedKey, withKfacTunables } from '../experiments/tuned';
import type { TunedSettings } from '../experiments/registry';
import { writeJsonAtomic } from '../src/train/results';
import { CSV_COLUMNS } from '../src/train/schema';

describe('grid', () => {
  it('crosses batch sizes, learning rates and chunk sizes, skipping chunks larger than the batch', () => {
    const pts = gridPoints('sgd+bn', [32, 128], { lr: [0.1, 0.2], rbz: [32, 128] });
    expect(pts.map(pointId)).toEqual([
      'bz32-lr0.1-rbz32',
      'bz32-lr0.2-rbz32',
      'bz128-lr0.1-rbz32',
      'bz128-lr0.1-rbz128',
      'bz128-lr0.2-rbz32',
      'bz128-lr0.2-rbz128',
    ]);
    expect(pointId({ method: 'sgd', batchSize: 64, lr: 0.05 })).toBe('sgd-bz64-lr0.05');
  });

  it('tunes on the mean training loss of the last 20 % of rows', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-grid-'));
    const f = join(dir, 'r.csv');
    const losses = [2, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7, 0.65, 0.6, 0.5];
    const rows = losses.map((l, i) => CSV_COLUMNS.map((c) => (c === 'step' ? i + 1 : c === 'examples' ? (i + 1) * 32 : c === 'train_loss' ? l : '')).join(','));
    writeFileSync(f, `${CSV_COLUMNS.join(',')}\n${rows.join('\n')}\n`);
    expect(finalTrainLoss(f)).toBeCloseTo((0.6 + 0.5) / 2, 12);
  });

  it('keys the best learning rate by batch size and by (batch size, rbz), skipping unmeasured points', () => {
    const row = (batch_size: number, lr: number, rbz: number | '', loss: number | ''): GridOutcome => ({
      batch_size,
      lr,
      rbz,
      final_train_loss: loss,
      run: pointId({ batchSize: batch_size, lr, rbz: rbz === '' ? undefined : rbz }),
    });
    const best = pickBest([
      row(128, 0.1, 32, 0.9),
      row(128, 0.2, 32, 0.7), // best at rbz32 and best at bz128 overall
      row(128, 0.4, 32, ''), // failed: never chosen
      row(128, 0.1, 8, 1.2),
      row(128, 0.2, 8, 1.0),
      row(128, 0.4, 8, 1.1),
      row(32, 0.05, '', 0.5), // a grid without --rbz: keyed by batch size only
    ]);
    expect(Object.keys(best).sort()).toEqual(['128', '128-rbz32', '128-rbz8', '32']);
    // trials: every point tried at the key, the failed one included (bz128: 6 over both chunk sizes, 3 per chunk)
    expect(best['128']).toEqual({ lr: 0.2, rbz: 32, value: 0.7, run: 'bz128-lr0.2-rbz32', trials: 6 });
    expect(best['128-rbz32']).toEqual({ ...best['128'], trials: 3 });
    expect(best['128-rbz8']).toEqual({ lr: 0.2, rbz: 8, value: 1.0, run: 'bz128-lr0.2-rbz8', trials: 3 });
    expect(best['32']).toEqual({ lr: 0.05, value: 0.5, run: 'bz32-lr0.05', trials: 1 });
    expect(tunedKey(128)).toBe('128');
    expect(tunedKey(128, 8)).toBe('128-rbz8');
    const t = { best } as TunedSettings;
    expect(tunedChoice(t, 128, 8)?.lr).toBe(0.2);
    expect(tunedChoice(t, 128)?.rbz).toBe(32);
    expect(tunedChoice(t, 128, 64)).toBeUndefined(); // a line the grid has not run: no fallback to another chunk
    expect(tunedChoice(undefined, 128, 8)).toBeUndefined();
  });

  it('applies key=value overrides as JSON, and rejects malformed ones', () => {
    const o = applyOverrides({ a: { b: 1 }, c: 'x' }, ['a.b=2', 'c=hello', 'd.e=[1,2]']) as Record<string, unknown>;
    expect(o).toEqual({ a: { b: 2 }, c: 'hello', d: { e: [1, 2] } });
    expect(() => applyOverrides({}, ['novalue'])).toThrow(/key=value/);
    expect(() => applyOverrides({ a: 1 }, ['a.b=1'])).toThrow(/a is not an object/);
  });

  it("tunes K-FAC's damping and c0 by the same rule, with as many trials per line as the default learning-rate grid", () => {
    const lrAxes = gridAxes('sgd+bn', {}, { lr: [0.01, 0.03, 0.1] });
    const kAxes = gridAxes('kfac', {}, { lr: [0.01, 0.03, 0.1] });
    expect(gridPoints('sgd+bn', [32], lrAxes)).toHaveLength(3);
    const kPts = gridPoints('kfac', [32], kAxes);
    expect(kPts.map(pointId)).toEqual(['kfac-bz32-d0.03', 'kfac-bz32-d0.1', 'kfac-bz32-d0.3']);
    const both = gridPoints('kfac', [32], gridAxes('kfac', { damping: [0.1, 0.3], c0: [0.003, 0.01] }, { lr: [] }));
    expect(both.map(pointId)).toEqual(['kfac-bz32-d0.1-c0.003', 'kfac-bz32-d0.1-c0.01', 'kfac-bz32-d0.3-c0.003', 'kfac-bz32-d0.3-c0.01']);
    // the same rule as the baselines': the lowest final training loss, every point of the key counted as a trial
    const row = (damping: number, c0: number, loss: number | ''): GridOutcome => ({ batch_size: 32, lr: '', rbz: '', damping, c0, final_train_loss: loss, run: pointId({ method: 'kfac', batchSize: 32, damping, c0 }) });
    const best = pickBest([row(0.1, 0.003, 0.61), row(0.1, 0.01, 0.55), row(0.3, 0.003, ''), row(0.3, 0.01, 0.58)]);
    expect(best['32']).toEqual({ damping: 0.1, c0: 0.01, value: 0.55, run: 'kfac-bz32-d0.1-c0.01', trials: 4 });
    // settings a method has no use for are errors naming the flag
    expect(() => gridAxes('sgd+bn', { damping: [0.1] }, { lr: [0.1] })).toThrow(/--damping: 'sgd\+bn' is a first-order baseline/);
    expect(() => gridAxes('kfac', { lr: [0.1] }, { lr: [0.1] })).toThrow(/--lr: 'kfac' takes its step size from the KL rule/);
    expect(() => gridAxes('kfac-lr', { c0: [0.01] }, { lr: [0.1] })).toThrow(/--c0: 'kfac-lr' uses a learning-rate rule/);
  });

  it('warns when a K-FAC grid would get another number of trials per line than a baseline had', () => {
    const root = mkdtempSync(join(tmpdir(), 'dkfac-grid-budget-'));
    const t: TunedSettings = { experiment: 'fig6', profile: 'quick', method: 'sgd+bn', metric: 'm', summaryCsv: 'x', best: { '32': { lr: 0.1, value: 1, run: 'bz32-lr0.1', trials: 3 } } };
    writeJsonAtomic(tunedPath(root, 'fig6', 'sgd+bn'), t);
    const three = gridPoints('kfac', [32], { damping: [0.03, 0.1, 0.3] });
    expect(budgetWarnings(root, 'fig6', 'kfac', three, ['sgd+bn', 'kfac'], false)).toEqual([]);
    const four = gridPoints('kfac', [32], { damping: [0.1, 0.3], c0: [0.003, 0.01] });
    expect(budgetWarnings(root, 'fig6', 'kfac', four, ['sgd+bn', 'kfac'], false)).toEqual([
      expect.stringMatching(/kfac gets 4 trial\(s\) per line, sgd\+bn had 3 .*the tuning budgets differ/),
    ]);
  });

  it("makes a figure's K-FAC runs use the grid's damping and c0, and records where every line's settings came from", async () => {
    const e = await getExperiment('fig6');
    const p = resolveProfile(e, 'quick');
    const kfac: TunedSettings = { experiment: 'fig6', profile: 'quick', method: 'kfac', metric: 'm', summaryCsv: 's', file: '/r/best-kfac.json', best: { '32': { damping: 0.3, c0: 0.003, value: 0.5, run: 'kfac-bz32-d0.3-c0.003', trials: 3 } } };
    const runs = e.runs(p, { kfac });
    const k32 = runs.find((r) => r.run === 'kfac-bz32')!;
    expect(k32.optimizer).toMatchObject({ kind: 'kfac', damping: 0.3, stepSize: { rule: 'kl', c0: 0.003 } });
    expect(k32.tuning).toEqual({ method: 'kfac', source: 'grid', file: '/r/best-kfac.json', key: '32', trials: 3, settings: { damping: 0.3, c0: 0.003 } });
    // a batch size the grid has not tuned keeps the profile's settings, and says so
    const k128 = runs.find((r) => r.run === 'kfac-bz128')!;
    expect(k128.optimizer).toMatchObject({ damping: 0.1 });
    expect(k128.tuning).toMatchObject({ method: 'kfac', source: 'profile', settings: { damping: 0.1, c0: 0.01 } });
    expect(runs.find((r) => r.run === 'sgd-bn-bz32')!.tuning).toMatchObject({ method: 'sgd+bn', source: 'profile', settings: { lr: 0.05 } });
    // a grid point builds the run with its own setting
    const g = e.gridRun!(p, { method: 'kfac', batchSize: 32, damping: 0.03, c0: 0.01 });
    expect(g.optimizer).toMatchObject({ damping: 0.03, stepSize: { rule: 'kl', c0: 0.01 } });
    expect(() => withKfacTunables({ stepSize: { rule: 'lr', lr: 0.1 } }, { c0: 0.01 }, 'kfac-lr')).toThrow(/c0 tunes the KL step-size rule/);
  });
  it("refuses a K-FAC line the profile's model does not have (Figure 5's ResNet with batch norm: 'kfac+bn', not 'kfac')", async () => {
    const e = await getExperiment('fig5');
    const p = resolveProfile(e, 'quick');
    const pt = (method: string) => [{ method, batchSize: 128, damping: 0.3 }];
    expect(e.gridRun!(p, pt('kfac+bn')[0]!).optimizer).toMatchObject({ damping: 0.3 });
    expect(() => planGridRuns(e, p, 'kfac+bn', pt('kfac+bn'))).not.toThrow();
    expect(() => planGridRuns(e, p, 'kfac', pt('kfac'))).toThrow(/--method kfac: experiment fig5 trains this line as 'kfac\+bn' with this profile: tune --method kfac\+bn/);
    const noBn = resolveProfile(e, 'quick', ['model.bn=false']);
    expect(() => planGridRuns(e, noBn, 'kfac+bn', pt('kfac+bn'))).toThrow(/trains this line as 'kfac' with this profile: tune --method kfac$/);
    // the same mechanism for every experiment: Figure 6's K-FAC line has no batch norm in its profile
    const f6 = await getExperiment('fig6');
    expect(() => planGridRuns(f6, resolveProfile(f6, 'quick'), 'kfac+bn', [{ method: 'kfac+bn', batchSize: 32, damping: 0.1 }])).toThrow(/tune --method kfac$/);
  });
});
