/** The tuning grid's bookkeeping: the cross product, point ids, and the tuning metric read from a run's CSV. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { finalTrainLoss, gridPoints, pointId } from '../experiments/grid';
import { applyOverrides } from '../experiments/common';
import { type GridOutcome, pickBest, tunedChoice, tunedKey } from '../experiments/tuned';
import type { TunedSettings } from '../experiments/registry';
import { CSV_COLUMNS } from '../src/train/schema';

describe('grid', () => {
  it('crosses batch sizes, learning rates and chunk sizes, skipping chunks larger than the batch', () => {
    const pts = gridPoints('sgd+bn', [32, 128], [0.1, 0.2], [32, 128]);
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
    expect(best['128']).toEqual({ lr: 0.2, rbz: 32, value: 0.7, run: 'bz128-lr0.2-rbz32' });
    expect(best['128-rbz32']).toEqual(best['128']);
    expect(best['128-rbz8']).toEqual({ lr: 0.2, rbz: 8, value: 1.0, run: 'bz128-lr0.2-rbz8' });
    expect(best['32']).toEqual({ lr: 0.05, rbz: undefined, value: 0.5, run: 'bz32-lr0.05' });
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
});
