/**
 * What the speed figures (3, 5, 7) measure from a run's CSV: the smoothed training loss along the three clocks of the
 * CSV (updates, simulated cluster seconds, real seconds), when a run first reaches a loss, its seconds per update,
 * and which clocks two runs can be compared on.
 *
 * The simulated clock (sim_seconds) is only comparable between runs that both went through the distributed runtime:
 * a run trained in the single-process loop writes its real seconds there (one process computing the whole batch),
 * not the time of the paper's N parallel gradient workers.
 */
import type { CsvRow } from '../../src/train/schema';
import type { LoadedRun } from '../types';
import { formatInterval, type Interval, times } from '../stats';
import { windowMean } from './fig6';

/** Training loss is smoothed over this many consecutive rows before a target is checked (this suite's choice). */
export const SMOOTH_ROWS = 3;

export type Clock = 'step' | 'sim_seconds' | 'wall_seconds';

/** One row of a run with its smoothed training loss (mean of this row's and the previous SMOOTH_ROWS − 1 rows'). */
export interface SmoothedPoint {
  step: number;
  sim_seconds?: number;
  wall_seconds?: number;
  loss: number;
}

function finite(x: number | undefined): x is number {
  return x !== undefined && Number.isFinite(x);
}

/**
 * The rows with a finite training loss, in step order, each with its smoothed loss (the mean over it and the
 * SMOOTH_ROWS − 1 rows before). Every figure that checks a training-loss target smooths through this.
 */
export function smoothedRows(run: LoadedRun): { row: CsvRow; loss: number }[] {
  const rows = run.rows.filter((r) => finite(r.train_loss)).sort((a, b) => a.step - b.step);
  return rows.map((row, i) => {
    const w = rows.slice(Math.max(0, i - SMOOTH_ROWS + 1), i + 1);
    return { row, loss: w.reduce((a, b) => a + b.train_loss!, 0) / w.length };
  });
}

/** The rows with a finite training loss, in step order, with the smoothed loss and the row's clocks. */
export function smoothedTrainLoss(run: LoadedRun): SmoothedPoint[] {
  return smoothedRows(run).map(({ row: r, loss }) => ({
    step: r.step,
    ...(finite(r.sim_seconds) ? { sim_seconds: r.sim_seconds } : {}),
    ...(finite(r.wall_seconds) ? { wall_seconds: r.wall_seconds } : {}),
    loss,
  }));
}

/** The run's final smoothed training loss (undefined without training-loss rows). */
export function finalSmoothedLoss(run: LoadedRun): number | undefined {
  return smoothedTrainLoss(run).at(-1)?.loss;
}

/** The first row at which the smoothed training loss is at or below `target` (undefined if never). */
export function reach(run: LoadedRun, target: number): SmoothedPoint | undefined {
  return smoothedTrainLoss(run).find((p) => p.loss <= target);
}

/** The smoothed training loss at the first row at or after `step` (or the last row). */
export function smoothedAt(run: LoadedRun, step: number): SmoothedPoint | undefined {
  const s = smoothedTrainLoss(run);
  return s.find((p) => p.step >= step) ?? s.at(-1);
}

/** The distributed configuration a run went through (absent: the single-process loop). */
export function distributedOf(run: LoadedRun): Record<string, unknown> | undefined {
  const d = (run.sidecar.config as { distributed?: Record<string, unknown> } | undefined)?.distributed;
  return d && typeof d === 'object' ? d : undefined;
}

/** Whether the simulated clocks of these runs can be compared: every one went through the distributed runtime. */
export function simComparable(runs: LoadedRun[]): boolean {
  return runs.every((r) => distributedOf(r) !== undefined);
}

/**
 * How the simulated clocks of these runs timed their roles (DistConfig.costClock; elapsed time by default), as a
 * phrase for a verdict: CPU time is immune to other processes sharing the cores, elapsed time is not; calibrated CPU
 * time also removes most of the machine's own speed drift (src/distributed/calibration.ts).
 */
export function costClockText(runs: LoadedRun[]): string {
  const kindOf = (r: LoadedRun) => {
    const c = distributedOf(r)?.costClock;
    return c === 'cpu' || c === 'calibrated' ? c : 'wall';
  };
  const kinds = new Set(runs.map(kindOf));
  if (kinds.size > 1) return `roles timed by different clocks in different runs (${[...kinds].sort().join(', ')})`;
  if (kinds.has('calibrated')) {
    const refs = runs.map((r) => (r.sidecar as { costCalibration?: { medianMs?: number; nominalMs?: number } }).costCalibration).filter((c) => c?.medianMs);
    const range = refs.length ? `; the reference took ${Math.min(...refs.map((c) => c!.medianMs!)).toFixed(2)}–${Math.max(...refs.map((c) => c!.medianMs!)).toFixed(2)} ms (median per run) against its nominal ${refs[0]!.nominalMs} ms` : '';
    return `roles timed by CPU time calibrated against a reference workload timed before every step (other processes do not inflate it, and the machine's own speed drift is divided out${range})`;
  }
  return kinds.has('cpu')
    ? 'roles timed by CPU time, which other processes sharing the cores do not inflate'
    : 'roles timed by elapsed time, inflated wherever other processes (or the run\'s own inverse threads) compete for the cores';
}

/** Seconds per update of a run on one clock, from its last row carrying that clock. */
export function secondsPerUpdate(run: LoadedRun, col: 'sim_seconds' | 'wall_seconds'): number | undefined {
  const r = run.rows.filter((x) => finite(x[col]) && x.step > 0).at(-1);
  return r ? r[col]! / r.step : undefined;
}

/** The run's batch-norm chunk (rbz): the config's bnChunk, else the `rbzN` of its label. */
export function rbzOf(run: LoadedRun): number | undefined {
  const c = (run.sidecar.config as { bnChunk?: unknown } | undefined)?.bnChunk;
  if (typeof c === 'number') return c;
  const m = run.sidecar.label.match(/rbz(\d+)/);
  return m ? Number(m[1]) : undefined;
}

/**
 * Mean training loss over the last `fraction` of updates up to `horizon` (the piecewise-linear curve through the
 * rows, integrated), i.e. the loss "at matched updates", independent of how densely each run logged.
 */
export function lossAtUpdates(run: LoadedRun, horizon: number, fraction: number): number | undefined {
  const pts = run.rows.filter((r) => finite(r.train_loss)).map((r) => ({ x: r.step, y: r.train_loss! })).sort((a, b) => a.x - b.x);
  if (!pts.length) return undefined;
  return windowMean(pts, horizon * (1 - fraction), horizon);
}

/** The last row with a test error at or before `step`. */
export function testErrorAt(run: LoadedRun, step = Number.POSITIVE_INFINITY): CsvRow | undefined {
  return run.rows.filter((r) => finite(r.test_error) && r.step <= step).at(-1);
}

/** The last step a run logged (0 without rows). */
export function lastStep(run: LoadedRun): number {
  return run.rows.reduce((m, r) => Math.max(m, r.step), 0);
}

/** '12 updates / 3.4 simulated s / 10.2 real s' for a point, with whatever clocks it carries. */
export function describePoint(p: SmoothedPoint, withSim: boolean): string {
  const parts = [`${p.step} updates`];
  if (withSim && p.sim_seconds !== undefined) parts.push(`${p.sim_seconds.toFixed(1)} simulated s`);
  if (p.wall_seconds !== undefined) parts.push(`${p.wall_seconds.toFixed(1)} real s`);
  return parts.join(' / ');
}

/** Ratio of a baseline's clock reading to K-FAC's (how many times faster K-FAC is); undefined where not measured. */
export function speedup(baseline: SmoothedPoint, kfac: SmoothedPoint, clock: Clock): number | undefined {
  const b = baseline[clock];
  const k = kfac[clock];
  if (b === undefined || k === undefined || !(k > 0)) return undefined;
  return b / k;
}

/**
 * How many times faster `other` reaches a training-loss `target` than `base` does, on each clock: updates, real
 * seconds on this machine, and the simulated cluster clock where both went through the distributed runtime. Where
 * `other` never reaches it, each ratio is only a bound from above (base's time ÷ other's whole run): `reached` false.
 */
export interface TargetRatios {
  reached: boolean;
  baseAt?: SmoothedPoint;
  otherAt?: SmoothedPoint;
  updates?: number;
  wall?: number;
  sim?: number;
}

export function ratiosToTarget(base: LoadedRun, other: LoadedRun, target: number): TargetRatios {
  const baseAt = reach(base, target);
  if (!baseAt) return { reached: false };
  const withSim = simComparable([base, other]);
  const otherAt = reach(other, target);
  const at = otherAt ?? smoothedTrainLoss(other).at(-1);
  if (!at) return { reached: false, baseAt };
  return {
    reached: otherAt !== undefined,
    baseAt,
    otherAt,
    updates: speedup(baseAt, at, 'step'),
    wall: speedup(baseAt, at, 'wall_seconds'),
    ...(withSim ? { sim: speedup(baseAt, at, 'sim_seconds') } : {}),
  };
}

/**
 * Puts a TargetRatios into a seed's numbers as `<prefix>updates_ratio`, `<prefix>wall_ratio`, `<prefix>sim_ratio`,
 * and returns the keys that are only bounds (the other run never reached the target).
 */
export function recordRatios(numbers: Record<string, number>, prefix: string, r: TargetRatios): string[] {
  const keys: string[] = [];
  for (const [k, v] of [
    ['updates_ratio', r.updates],
    ['wall_ratio', r.wall],
    ['sim_ratio', r.sim],
  ] as const) {
    if (v === undefined || !Number.isFinite(v)) continue;
    numbers[`${prefix}${k}`] = v;
    keys.push(`${prefix}${k}`);
  }
  return r.reached ? [] : keys;
}

/**
 * 'in updates 1.80× (95 % CI …), in real time on this machine 1.20× (…), on the simulated cluster clock 1.50× (…)'
 * for the ratios recordRatios stored under `prefix` (those measured).
 */
export function ratiosText(iv: Record<string, Interval>, prefix: string): string {
  const parts: string[] = [];
  if (iv[`${prefix}updates_ratio`]) parts.push(`in updates ${formatInterval(iv[`${prefix}updates_ratio`], times)}`);
  if (iv[`${prefix}sim_ratio`]) parts.push(`on the simulated cluster clock ${formatInterval(iv[`${prefix}sim_ratio`], times)}`);
  if (iv[`${prefix}wall_ratio`]) parts.push(`in real time on this machine ${formatInterval(iv[`${prefix}wall_ratio`], times)}`);
  return parts.join(', ');
}
