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

/**
 * Cuts a run's CSV back to its header and first `rows` data rows (what a checkpoint had written), atomically. A row
 * half-written by a killed process is never kept; a header from another version of the schema is an error.
 */
export function truncateCsv(path: string, rows: number): void {
  if (!existsSync(path)) throw new Error(`${path}: missing (the checkpoint expects ${rows} rows in it)`);
  const lines = readFileSync(path, 'utf8').split('\n');
  // the last element is '' after a final newline, or a partial line: neither is a complete row
  const complete = lines.slice(0, -1);
  const header = stringify([[...CSV_COLUMNS]]).trimEnd();
  if (complete[0] !== header) throw new Error(`${path}: its header differs from this version's columns (${header})`);
  if (complete.length - 1 < rows) throw new Error(`${path}: has ${complete.length - 1} complete rows, the checkpoint was taken after ${rows}`);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${complete.slice(0, rows + 1).join('\n')}\n`);
  renameSync(tmp, path);
}

export class RunWriter {
  readonly csvPath: string;
  readonly sidecarPath: string;
  sidecar: RunSidecar;
  private readonly resultsDir: string;
  private opened = false;

  /**
   * A fresh run writes the CSV header; a resumed one (`resumeRows`) keeps the first rows of the CSV already there.
   * With `defer`, nothing is written until `open()` (or the first append or update): a run that stops before it
   * trains anything can leave no files, and the files of an earlier run of the same id stay as they were.
   */
  constructor(resultsDir: string, sidecar: RunSidecar, resumeRows?: number, opts: { defer?: boolean } = {}) {
    this.resultsDir = resultsDir;
    this.csvPath = join(resultsDir, `${sidecar.run}.csv`);
    this.sidecarPath = join(resultsDir, `${sidecar.run}.json`);
    this.sidecar = sidecar;
    if (resumeRows !== undefined) {
      truncateCsv(this.csvPath, resumeRows);
      this.opened = true;
      writeJsonAtomic(this.sidecarPath, this.sidecar);
    } else if (!opts.defer) this.open();
  }

  /** Whether the run's files have been written (always, unless deferred and not opened yet). */
  get isOpen(): boolean {
    return this.opened;
  }

  /** Writes the CSV header and the sidecar of a fresh run, once. */
  open(): void {
    if (this.opened) return;
    this.opened = true;
    mkdirSync(this.resultsDir, { recursive: true });
    writeFileSync(this.csvPath, stringify([[...CSV_COLUMNS]]));
    writeJsonAtomic(this.sidecarPath, this.sidecar);
  }

  append(row: CsvRow): void {
    this.open();
    const line = stringify([CSV_COLUMNS.map((c) => cell(row[c]))]);
    appendFileSync(this.csvPath, line);
  }

  update(patch: Partial<RunSidecar>): void {
    this.sidecar = { ...this.sidecar, ...patch };
    if (!this.opened) this.open();
    else writeJsonAtomic(this.sidecarPath, this.sidecar);
  }
}

export function readSidecar(path: string): RunSidecar | null {
  if (!existsSync(path)) return null;
  return JSON.parse(readFileSync(path, 'utf8')) as RunSidecar;
}
