/** The tuning grid's bookkeeping: the cross product, point ids, and the tuning metric read from a run's CSV. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { finalTrainLoss, gridPoints, pointId } from '../experiments/grid';
import { applyOverrides } from '../experiments/common';
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

  it('applies key=value overrides as JSON, and rejects malformed ones', () => {
    const o = applyOverrides({ a: { b: 1 }, c: 'x' }, ['a.b=2', 'c=hello', 'd.e=[1,2]']) as Record<string, unknown>;
    expect(o).toEqual({ a: { b: 2 }, c: 'hello', d: { e: [1, 2] } });
    expect(() => applyOverrides({}, ['novalue'])).toThrow(/key=value/);
    expect(() => applyOverrides({ a: 1 }, ['a.b=1'])).toThrow(/a is not an object/);
  });
});
