/**
 * SYNTHETIC results for tests of the report generator only: writes a run CSV and sidecar with known curves, in the
 * same schema the trainer writes. Nothing here is a measurement; every sidecar says so (data origin 'synthetic',
 * backend 'synthetic', profile 'synthetic-test').
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { CSV_COLUMNS, type CsvRow, type RunSidecar } from '../src/train/schema';

export interface SyntheticRunOptions {
  run: string;
  label: string;
  method: string;
  batchSize: number;
  /** training loss as a function of examples consumed */
  trainLoss: (examples: number) => number;
  /** training error as a function of examples consumed (default: derived from the loss) */
  trainError?: (examples: number) => number;
  /** total steps written */
  steps: number;
  /** a row every this many steps (default 1) */
  logEvery?: number;
  /** test metrics every this many steps (default 5 × logEvery) */
  evalEvery?: number;
  status?: RunSidecar['status'];
  /** the seed this run is of its line (sidecar seed and config.seed; absent: an old single-seed sidecar) */
  seed?: number;
  /** the line (sidecar group) this run is one seed of */
  group?: string;
}

/** The rows a synthetic run writes (also used by tests to compute expectations independently). */
export function syntheticRows(o: SyntheticRunOptions): CsvRow[] {
  const logEvery = o.logEvery ?? 1;
  const evalEvery = o.evalEvery ?? logEvery * 5;
  const trainError = o.trainError ?? ((e: number) => Math.min(0.9, 0.25 * o.trainLoss(e)));
  const rows: CsvRow[] = [];
  for (let step = logEvery; step <= o.steps; step += logEvery) {
    const examples = step * o.batchSize;
    const row: CsvRow = {
      step,
      examples,
      wall_seconds: step * 0.01 * Math.sqrt(o.batchSize),
      sim_seconds: step * 0.01 * Math.sqrt(o.batchSize),
      train_loss: o.trainLoss(examples),
      train_error: trainError(examples),
      learning_rate: 0.1,
    };
    if (step % evalEvery === 0) {
      row.test_loss = o.trainLoss(examples) * 1.05;
      row.test_error = trainError(examples) * 1.05;
    }
    if (o.method.startsWith('kfac')) {
      row.kl_threshold = 0.01;
      row.inverse_staleness = step % 20;
    }
    rows.push(row);
  }
  return rows;
}

/** The CSV text of rows, header = CSV_COLUMNS, empty cells for unmeasured values. */
export function rowsToCsv(rows: CsvRow[]): string {
  return stringify(
    rows.map((r) => CSV_COLUMNS.map((c) => (r[c] === undefined ? '' : String(r[c])))),
    { header: true, columns: [...CSV_COLUMNS] },
  );
}

/** A sidecar for a synthetic run, clearly marked as such. */
export function syntheticSidecar(experiment: string, o: SyntheticRunOptions, rows: CsvRow[]): RunSidecar {
  return {
    experiment,
    run: o.run,
    label: o.label,
    method: o.method,
    batchSize: o.batchSize,
    ...(o.group !== undefined ? { group: o.group } : {}),
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
    profile: 'synthetic-test',
    config: { synthetic: true, ...(o.seed !== undefined ? { seed: o.seed } : {}) },
    git: { commit: '0000000000000000000000000000000000000000', dirty: true },
    backend: { name: 'synthetic', version: '0', detail: 'test data written by reports/synthetic.ts' },
    data: { dataset: 'synthetic', origin: 'synthetic', path: '-', trainCount: 0, testCount: 0 },
    machine: { cpus: 1, cpuModel: 'synthetic', memoryGiB: 0, node: process.version, platform: process.platform },
    startedAt: '2017-01-01T00:00:00.000Z',
    finishedAt: '2017-01-01T01:00:00.000Z',
    status: o.status ?? 'finished',
    summary: { steps: rows.length ? rows[rows.length - 1]!.step : 0 },
  };
}

/** Writes <dir>/<run>.csv and <dir>/<run>.json for a synthetic run; returns the rows written. */
export async function writeSyntheticRun(dir: string, o: SyntheticRunOptions): Promise<CsvRow[]> {
  await mkdir(dir, { recursive: true });
  const rows = syntheticRows(o);
  await writeFile(path.join(dir, `${o.run}.csv`), rowsToCsv(rows));
  await writeFile(
    path.join(dir, `${o.run}.json`),
    `${JSON.stringify(syntheticSidecar(path.basename(dir), o, rows), null, 2)}\n`,
  );
  return rows;
}
