/**
 * Seeds in the reports: which line and which seed a run is, the replicates of a figure (its runs, one seed at a
 * time), and the verdict over seeds: each figure measures one replicate with its single-seed rule (the numbers its
 * verdict quotes), the numbers are gathered into 95 % intervals over the seeds (reports/stats.ts), and the figure
 * judges the intervals against its bars.
 *
 * Results written before seeds were recorded (results/figN/<run>.csv without a `-s<seed>` suffix) load as one seed:
 * the run id is the line, config.seed the seed.
 */
import { type Interval, tInterval } from './stats';
import type { LoadedRun, Verdict, VerdictStatus } from './types';

/** The seed of a run: the sidecar's, else its config's, else 0. */
export function seedOf(run: LoadedRun): number {
  const s = run.sidecar.seed ?? (run.sidecar.config as { seed?: unknown } | undefined)?.seed;
  return typeof s === 'number' ? s : 0;
}

/** The figure line a run is one seed of: the sidecar's group, else the run id. */
export function lineOf(run: LoadedRun): string {
  return run.sidecar.group ?? run.sidecar.run;
}

/** The runs by seed, in seed order: each replicate holds one run per line (that seed's). */
export function replicates(runs: readonly LoadedRun[]): { seed: number; runs: LoadedRun[] }[] {
  const by = new Map<number, LoadedRun[]>();
  for (const r of runs) by.set(seedOf(r), [...(by.get(seedOf(r)) ?? []), r]);
  return [...by.entries()].sort((a, b) => a[0] - b[0]).map(([seed, rs]) => ({ seed, runs: rs }));
}

/** The runs by line (label, then run id order), each line's runs in seed order. */
export function linesOf(runs: readonly LoadedRun[]): { line: string; label: string; runs: LoadedRun[] }[] {
  const by = new Map<string, LoadedRun[]>();
  for (const r of runs) by.set(lineOf(r), [...(by.get(lineOf(r)) ?? []), r]);
  return [...by.entries()].map(([line, rs]) => ({ line, label: rs[0]!.sidecar.label, runs: rs.sort((a, b) => seedOf(a) - seedOf(b)) }));
}

/** Ratios are averaged on the log scale: number keys naming a speed-up or a ratio. */
export const isRatioKey = (key: string): boolean => /speedup|ratio|_over_/i.test(key);

/** The 95 % interval of every number the seeds measured (over the seeds that measured it). */
export function gatherIntervals(perSeed: readonly Verdict[], logScale: (key: string) => boolean = isRatioKey): Record<string, Interval> {
  const keys = [...new Set(perSeed.flatMap((v) => Object.keys(v.numbers)))];
  const out: Record<string, Interval> = {};
  for (const k of keys) {
    const measured = perSeed.filter((v) => v.numbers[k] !== undefined && Number.isFinite(v.numbers[k]));
    const censored = measured.filter((v) => v.censored?.includes(k)).length;
    out[k] = tInterval(
      measured.map((v) => v.numbers[k]!),
      logScale(k) ? 'log' : 'linear',
      censored,
    );
  }
  return out;
}

/** What a figure's verdict over seeds is made of. */
export interface SeededRule {
  /** one replicate's measurement: the figure's single-seed verdict (its numbers are what the intervals are built of) */
  measure(runs: LoadedRun[]): Verdict;
  /** which numbers are ratios (log scale; default: keys naming a speed-up or ratio) */
  logScale?(key: string): boolean;
  /** the status, the text and the claims-table summary from the intervals */
  judge(iv: Record<string, Interval>, measured: Verdict[]): { status: VerdictStatus; text: string; summary: string };
}

/** 'fashion-mnist (embedded; first 12000 of 12000 training examples)' for every data source the runs used. */
export function dataText(runs: readonly LoadedRun[]): string {
  const ds = new Set(
    runs
      .map((r) => r.sidecar.data)
      .filter((d) => d !== undefined)
      .map((d) => `${d.dataset} (${d.origin}${d.subset ? `, ${d.subset}` : `, ${d.trainCount} training examples`}${d.std ? `; inputs normalised by the training mean ${fmtList(d.mean)} and std ${fmtList(d.std)}` : d.mean ? '; only the training mean subtracted' : ''})`),
  );
  return ds.size ? `Data: ${[...ds].join('; ')}.` : '';
}

function fmtList(xs: number[] | undefined): string {
  return xs ? `[${xs.map((x) => x.toFixed(4)).join(', ')}]` : '?';
}

/**
 * The verdict over seeds: each replicate measured, the numbers gathered into intervals, the intervals judged. Seeds
 * whose runs cannot be measured (a line missing in that seed) are left out and named; with none measurable, the
 * first replicate's 'no data' verdict is the answer.
 */
export function seededVerdict(runs: readonly LoadedRun[], rule: SeededRule): Verdict {
  const reps = replicates(runs);
  const per = reps.map((r) => ({ seed: r.seed, v: rule.measure(r.runs) }));
  const measured = per.filter((p) => p.v.status !== 'no data');
  if (!measured.length) return per[0]?.v ?? rule.measure([]);
  const iv = gatherIntervals(
    measured.map((m) => m.v),
    rule.logScale ?? isRatioKey,
  );
  const j = rule.judge(iv, measured.map((m) => m.v));
  const seeds = measured.map((m) => m.seed);
  const skipped = per.filter((p) => p.v.status === 'no data').map((p) => p.seed);
  const how =
    seeds.length > 1
      ? `Numbers: means over ${seeds.length} seeds (${seeds.join(', ')}) with 95 % t intervals (ratios on the log scale); a part of the claim is decided only where its interval clears this suite's bar.`
      : `One seed (${seeds[0]}): no interval, so no part of the claim can be decided (run with --seeds 3).`;
  const parts = [j.text, how];
  if (skipped.length) parts.push(`Seed(s) ${skipped.join(', ')} left out: not every line has data there.`);
  const data = dataText(runs);
  if (data) parts.push(data);
  return {
    status: j.status,
    text: parts.join(' '),
    numbers: Object.fromEntries(Object.entries(iv).map(([k, i]) => [k, i.mean])),
    intervals: iv,
    summary: j.summary,
    seeds,
    perSeed: measured.map((m) => ({ seed: m.seed, status: m.v.status, text: m.v.text })),
  };
}
