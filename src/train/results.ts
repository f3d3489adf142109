/**
 * Run output: results/<experiment>/<run>.csv (one schema, rows appended atomically, one write per row) and the JSON
 * sidecar results/<experiment>/<run>.json (written to a temporary file and renamed, so it is never half-written).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { CSV_COLUMNS, type CsvRow, type RunSidecar } from './schema';

export function writeJsonAtomic(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, path);
}

/** Formats a number for the CSV: integers as is, reals with 7 significant digits, missing as empty. */
function cell(v: number | undefined): string {
  if (v === undefined || v === null) return '';
  if (!Number.isFinite(v)) return String(v);
  return Number.isInteger(v) ? String(v) : Number(v.toPrecision(7)).toString();
}

export class RunWriter {
  readonly csvPath: string;
  readonly sidecarPath: string;
  sidecar: RunSidecar;

  constructor(resultsDir: string, sidecar: RunSidecar) {
    mkdirSync(resultsDir, { recursive: true });
    this.csvPath = join(resultsDir, `${sidecar.run}.csv`);
    this.sidecarPath = join(resultsDir, `${sidecar.run}.json`);
    this.sidecar = sidecar;
    writeFileSync(this.csvPath, stringify([[...CSV_COLUMNS]]));
    writeJsonAtomic(this.sidecarPath, this.sidecar);
  }

  append(row: CsvRow): void {
    const line = stringify([CSV_COLUMNS.map((c) => cell(row[c]))]);
    appendFileSync(this.csvPath, line);
  }

  update(patch: Partial<RunSidecar>): void {
    this.sidecar = { ...this.sidecar, ...patch };
    writeJsonAtomic(this.sidecarPath, this.sidecar);
  }
}

export function readSidecar(path: string): RunSidecar | null {
  if (!existsSync(path)) return null;
  return JSON.parse(readFileSync(path, 'utf8')) as RunSidecar;
}
