/**
 * The tuning behind a figure, for its report section: the grids run for it (results/grid/<figure>/summary-<method>.csv
 * and best-<method>.json, experiments/grid.ts), and where each line's settings came from (its sidecar's
 * config.notes.tuning), with the statement of whether K-FAC and each baseline had the same number of trials.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import type { TunedSettings, TuningNote } from '../experiments/registry';
import { lineOf } from './seeds';
import type { LoadedRun } from './types';

/** One grid: its points as the summary CSV has them and the choice per key. */
export interface GridTable {
  method: string;
  summaryPath: string;
  rows: Record<string, string>[];
  best?: TunedSettings;
}

/** The grids of one figure (none when the folder does not exist). */
export async function loadGrids(gridDir: string): Promise<GridTable[]> {
  let names: string[];
  try {
    names = await readdir(gridDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: GridTable[] = [];
  for (const n of names.filter((x) => /^summary-.+\.csv$/.test(x)).sort()) {
    const method = n.slice('summary-'.length, -'.csv'.length);
    const summaryPath = path.join(gridDir, n);
    const rows = parse(await readFile(summaryPath, 'utf8'), { columns: true, skip_empty_lines: true }) as Record<string, string>[];
    let best: TunedSettings | undefined;
    try {
      best = JSON.parse(await readFile(path.join(gridDir, `best-${method}.json`), 'utf8')) as TunedSettings;
    } catch {
      best = undefined;
    }
    out.push({ method, summaryPath, rows, best });
  }
  return out;
}

/** Where a run's settings came from (undefined in sidecars written before it was recorded). */
export function tuningOf(run: LoadedRun): TuningNote | undefined {
  return (run.sidecar.config as { notes?: { tuning?: TuningNote } } | undefined)?.notes?.tuning;
}

/** The lines of a figure with their tuning (their first seed's note). */
export function lineTunings(runs: readonly LoadedRun[]): { line: string; label: string; method: string; note?: TuningNote }[] {
  const seen = new Map<string, { line: string; label: string; method: string; note?: TuningNote }>();
  for (const r of runs) {
    const l = lineOf(r);
    if (!seen.has(l)) seen.set(l, { line: l, label: r.sidecar.label, method: r.sidecar.method, note: tuningOf(r) });
  }
  return [...seen.values()];
}

/**
 * Whether every line had the same tuning budget: 'same' (every line tuned by the grid, each with the same number of
 * trials), 'differs' (a line untuned or with another trial count), 'unknown' (sidecars that do not record it), or
 * 'none' (nothing in the figure is tuned: it compares K-FAC variants at one setting).
 */
export function budgetStatement(lines: ReturnType<typeof lineTunings>, tunable: boolean): { kind: 'same' | 'differs' | 'unknown' | 'none'; text: string } {
  if (!lines.length) return { kind: 'unknown', text: 'No runs yet.' };
  if (lines.every((l) => !l.note)) {
    return tunable
      ? { kind: 'unknown', text: 'These runs do not record where their settings came from (written before the tuning notes): the tuning budgets cannot be compared.' }
      : { kind: 'none', text: 'Nothing is tuned in this figure.' };
  }
  const untuned = lines.filter((l) => l.note?.source !== 'grid');
  const trials = new Set(lines.filter((l) => l.note?.source === 'grid').map((l) => l.note!.trials));
  if (untuned.length === 0 && trials.size === 1 && !trials.has(undefined)) {
    const [n] = [...trials];
    return { kind: 'same', text: `Every line (K-FAC and each baseline) was tuned by the grid with the same number of trials: ${n} per line, chosen by the same rule (lowest final training loss).` };
  }
  const parts = lines.map((l) => `${l.label}: ${l.note?.source === 'grid' ? `${l.note.trials ?? '?'} trials` : l.note ? 'profile defaults (untuned)' : 'not recorded'}`);
  return { kind: 'differs', text: `The tuning budgets are NOT the same: ${parts.join('; ')}.` };
}
