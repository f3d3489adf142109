/**
 * Reads the runs of one results directory back: results/<experiment>/<run>.csv plus its sidecar <run>.json.
 *
 * - A CSV without a sidecar is skipped with a warning (it cannot be labelled).
 * - A sidecar without a CSV is kept with no rows (a run that failed or has not logged yet still shows in the tables).
 * - Anything malformed (bad JSON, a sidecar missing the fields reports need, a CSV with an unknown column, a ragged
 *   row, a cell that is not a number) is a ReportDataError naming the file, and the line where there is one.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { z } from 'zod';
import { CSV_COLUMNS, type CsvColumn, type CsvRow, type RunSidecar } from '../src/train/schema';
import type { LoadedRun } from './types';

/** A results file that cannot be read; the message starts with the file's path. */
export class ReportDataError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'ReportDataError';
  }
}

export interface LoadOptions {
  /** where warnings go (default console.warn) */
  warn?: (message: string) => void;
}

/** The sidecar fields the reports rely on; the rest of RunSidecar is shown where present. */
const SidecarCore = z.looseObject({
  experiment: z.string(),
  run: z.string(),
  label: z.string(),
  method: z.string(),
  batchSize: z.number().positive(),
  status: z.string(),
});

const KNOWN_COLUMNS: ReadonlySet<string> = new Set(CSV_COLUMNS);

/** Parses one CSV cell: '' is "not measured" (undefined); anything else must be a finite number. */
function parseCell(cell: string, file: string, line: number, column: string): number | undefined {
  const text = cell.trim();
  if (text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) {
    // NaN / Infinity written by a diverged run are kept as such only when spelled out; garbage is an error.
    if (text === 'NaN') return Number.NaN;
    if (text === 'Infinity' || text === '-Infinity') return value;
    throw new ReportDataError(file, `line ${line}: column '${column}' holds '${cell}', which is not a number`);
  }
  return value;
}

/**
 * Parses a run CSV into rows. The header must name only CSV_COLUMNS and include 'step' and 'examples', which every
 * row must fill. If a resumed run rewound (a step not above the previous one), the rows it superseded are dropped.
 */
export function parseRunCsv(text: string, file: string): CsvRow[] {
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { info: true, skip_empty_lines: true, relax_column_count: false }) as unknown as typeof records;
  } catch (err) {
    throw new ReportDataError(file, `not a well-formed CSV (${(err as Error).message})`);
  }
  if (records.length === 0) throw new ReportDataError(file, 'empty file (no header row)');
  const header = records[0]!.record.map((h) => h.trim());
  for (const name of header) {
    if (!KNOWN_COLUMNS.has(name)) {
      throw new ReportDataError(file, `unknown column '${name}' in the header (expected a subset of: ${CSV_COLUMNS.join(', ')})`);
    }
  }
  if (new Set(header).size !== header.length) throw new ReportDataError(file, 'a column appears twice in the header');
  for (const required of ['step', 'examples'] as const) {
    if (!header.includes(required)) throw new ReportDataError(file, `the header has no '${required}' column`);
  }

  const rows: CsvRow[] = [];
  for (const { record, info } of records.slice(1)) {
    const line = info.lines;
    const row: Partial<Record<CsvColumn, number>> = {};
    header.forEach((name, i) => {
      const value = parseCell(record[i] ?? '', file, line, name);
      if (value !== undefined) row[name as CsvColumn] = value;
    });
    if (row.step === undefined || row.examples === undefined) {
      throw new ReportDataError(file, `line ${line}: 'step' and 'examples' must be filled on every row`);
    }
    // A resumed run that restarted from an earlier checkpoint rewrites steps it already logged: keep the newest.
    while (rows.length > 0 && rows[rows.length - 1]!.step >= row.step) rows.pop();
    rows.push(row as CsvRow);
  }
  return rows;
}

/** Reads and checks one sidecar. */
export async function readSidecar(file: string): Promise<RunSidecar> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new ReportDataError(file, `not valid JSON (${(err as Error).message})`);
  }
  const checked = SidecarCore.safeParse(json);
  if (!checked.success) {
    const issues = checked.error.issues.map((i) => `'${i.path.join('.')}': ${i.message}`).join('; ');
    throw new ReportDataError(file, `sidecar is missing fields the reports need (${issues})`);
  }
  return checked.data as unknown as RunSidecar;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Loads every run of a results directory, sorted by method, batch size, then label. A directory that does not exist
 * yet holds no runs.
 */
export async function loadRuns(resultsDir: string, opts: LoadOptions = {}): Promise<LoadedRun[]> {
  const warn = opts.warn ?? ((m: string) => console.warn(m));
  let names: string[];
  try {
    names = await readdir(resultsDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const bases = new Set<string>();
  for (const name of names) {
    if (name.endsWith('.csv')) bases.add(name.slice(0, -4));
    else if (name.endsWith('.json')) bases.add(name.slice(0, -5));
  }

  const runs: LoadedRun[] = [];
  for (const base of [...bases].sort()) {
    const csvPath = path.join(resultsDir, `${base}.csv`);
    const jsonPath = path.join(resultsDir, `${base}.json`);
    const [hasCsv, hasJson] = await Promise.all([exists(csvPath), exists(jsonPath)]);
    if (!hasJson) {
      warn(`reports: skipping ${csvPath}: it has no sidecar ${path.basename(jsonPath)}, so it cannot be labelled`);
      continue;
    }
    const sidecar = await readSidecar(jsonPath);
    const rows = hasCsv ? parseRunCsv(await readFile(csvPath, 'utf8'), csvPath) : [];
    runs.push({ sidecar, rows, csvPath });
  }
  return sortRuns(runs);
}

/** Stable display order: method, then batch size, then label. */
export function sortRuns(runs: LoadedRun[]): LoadedRun[] {
  return [...runs].sort(
    (a, b) =>
      a.sidecar.method.localeCompare(b.sidecar.method) ||
      a.sidecar.batchSize - b.sidecar.batchSize ||
      a.sidecar.label.localeCompare(b.sidecar.label) ||
      a.sidecar.run.localeCompare(b.sidecar.run),
  );
}

/** The last value a run recorded for a column (undefined when never measured). */
export function lastValue(run: LoadedRun, column: CsvColumn): number | undefined {
  for (let i = run.rows.length - 1; i >= 0; i--) {
    const v = run.rows[i]![column];
    if (v !== undefined) return v;
  }
  return undefined;
}
