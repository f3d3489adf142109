/**
 * Reading results back: numbers parsed, empty cells absent, CSVs without sidecars skipped with a warning, corrupt
 * files rejected with an error naming the file. All data here is synthetic.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSV_COLUMNS } from '../src/train/schema';
import { ReportDataError, lastValue, loadRuns, parseRunCsv } from '../reports/load';
import { syntheticRows, writeSyntheticRun } from '../reports/synthetic';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'dkfac-reports-load-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

// the first eleven columns of the schema (the rows below have eleven cells; later columns are optional: a reader
// takes any subset of CSV_COLUMNS by name)
const header = CSV_COLUMNS.slice(0, 11).join(',');

describe('parseRunCsv', () => {
  it('parses numbers and leaves empty cells undefined', () => {
    const text = `${header}\n1,256,0.5,0.5,2.3,0.9,,,0.1,,\n2,512,1.0,1.0,2.1,0.8,2.2,0.85,0.1,,\n`;
    const rows = parseRunCsv(text, 'x.csv');
    expect(rows).toHaveLength(2);
    expect(rows[0]).toEqual({ step: 1, examples: 256, wall_seconds: 0.5, sim_seconds: 0.5, train_loss: 2.3, train_error: 0.9, learning_rate: 0.1 });
    expect(rows[0]!.test_loss).toBeUndefined();
    expect(rows[1]!.test_error).toBe(0.85);
  });

  it('accepts a header that is a subset of the schema, in any order', () => {
    const rows = parseRunCsv('examples,step,train_loss\n256,1,2.5\n', 'x.csv');
    expect(rows).toEqual([{ step: 1, examples: 256, train_loss: 2.5 }]);
  });

  it('keeps the newest rows when a resumed run rewound to an earlier step', () => {
    const rows = parseRunCsv('step,examples,train_loss\n1,10,3\n2,20,2.9\n3,30,2.8\n2,20,2.7\n3,30,2.6\n', 'x.csv');
    expect(rows.map((r) => [r.step, r.train_loss])).toEqual([
      [1, 3],
      [2, 2.7],
      [3, 2.6],
    ]);
  });

  it.each([
    ['a ragged row', `${header}\n1,256,0.5\n`, /x\.csv: not a well-formed CSV/],
    ['a non-numeric cell', 'step,examples,train_loss\n1,256,abc\n', /x\.csv: line 2: column 'train_loss' holds 'abc'/],
    ['an unknown column', 'step,examples,loss\n1,256,2\n', /x\.csv: unknown column 'loss'/],
    ['a missing examples column', 'step,train_loss\n1,2\n', /x\.csv: the header has no 'examples' column/],
    ['an empty step', 'step,examples,train_loss\n,256,2\n', /x\.csv: line 2: 'step' and 'examples' must be filled/],
    ['an empty file', '', /x\.csv: empty file/],
  ])('rejects %s, naming the file', (_, text, message) => {
    expect(() => parseRunCsv(text, 'x.csv')).toThrowError(message);
    expect(() => parseRunCsv(text, 'x.csv')).toThrowError(ReportDataError);
  });
});

describe('loadRuns', () => {
  it('loads every run with a sidecar, skips a CSV without one with a warning, keeps sidecar-only runs', async () => {
    const dir = path.join(root, 'results', 'figx');
    const opts = { label: 'synthetic A', method: 'sgd+bn', batchSize: 64, trainLoss: (e: number) => 2 - e / 1e5, steps: 20, logEvery: 2 };
    await writeSyntheticRun(dir, { ...opts, run: 'a' });
    await writeSyntheticRun(dir, { ...opts, run: 'b', label: 'synthetic B', method: 'kfac', batchSize: 32 });
    await writeFile(path.join(dir, 'orphan.csv'), 'step,examples\n1,1\n');
    await writeSyntheticRun(dir, { ...opts, run: 'c', label: 'synthetic C (failed)', steps: 0, status: 'failed' });
    await rm(path.join(dir, 'c.csv'));

    const warnings: string[] = [];
    const runs = await loadRuns(dir, { warn: (m) => warnings.push(m) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('orphan.csv');
    // sorted by method, then batch size
    expect(runs.map((r) => r.sidecar.run)).toEqual(['b', 'a', 'c']);
    const a = runs.find((r) => r.sidecar.run === 'a')!;
    expect(a.rows).toEqual(syntheticRows({ ...opts, run: 'a' }));
    expect(lastValue(a, 'train_loss')).toBeCloseTo(2 - (20 * 64) / 1e5, 12);
    expect(runs.find((r) => r.sidecar.run === 'c')!.rows).toEqual([]);
  });

  it('returns no runs for a results directory that does not exist yet', async () => {
    expect(await loadRuns(path.join(root, 'nope'))).toEqual([]);
  });

  it('rejects a corrupt CSV and a corrupt sidecar, naming the file', async () => {
    const dir = path.join(root, 'results', 'corrupt');
    const opts = { run: 'r', label: 'synthetic', method: 'kfac', batchSize: 8, trainLoss: () => 1, steps: 4 };
    await writeSyntheticRun(dir, opts);
    await writeFile(path.join(dir, 'r.csv'), `${header}\n1,8,0.1,0.1,1,0.5,,,0.1,0.01,0\n2,16,oops\n`);
    await expect(loadRuns(dir)).rejects.toThrowError(path.join(dir, 'r.csv'));

    const dir2 = path.join(root, 'results', 'corrupt-json');
    await writeSyntheticRun(dir2, opts);
    await writeFile(path.join(dir2, 'r.json'), '{ "label": ');
    await expect(loadRuns(dir2)).rejects.toThrowError(`${path.join(dir2, 'r.json')}: not valid JSON`);
    await writeFile(path.join(dir2, 'r.json'), JSON.stringify({ run: 'r', label: 'x' }));
    await expect(loadRuns(dir2)).rejects.toThrowError(/r\.json: sidecar is missing fields .*batchSize/);
  });
});
