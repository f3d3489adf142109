/**
 * npm run grid -- <experiment> [--method M] --lr 0.01,0.03,0.1 [--rbz 32,128] [--batch 32,128] [--jobs 2] [common options]
 * npm run grid -- <experiment> --method kfac --damping 0.03,0.1,0.3 [--c0 0.003,0.01,0.03] [--batch …]
 *
 * Tunes one line of an experiment: the cross product of settings, each point trained by the same runner as the
 * figures (in child processes, `--jobs` at a time), a summary CSV of every point, and the best setting per batch size
 * and per (batch size, rbz) in results/grid/<experiment>/best-<method>.json (experiments/tuned.ts), which the experiment
 * then uses for its runs of that method. Baselines are tuned by learning rate (and rbz: without --rbz the experiment's
 * own chunk sizes are tried, e.g. Figure 3's improved and standard BN, each tuned separately); K-FAC lines
 * (methods 'kfac…') by damping and c0 (a K-FAC line with a learning-rate rule, 'kfac-lr', by lr and damping), chosen by
 * the same rule, with as many trials as the baselines': the grid says when the counts differ from a baseline's.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { stringify } from 'csv-stringify/sync';
import { parse } from 'csv-parse/sync';
import { progressBar } from '../src/train/progress';
import { writeJsonAtomic } from '../src/train/results';
import type { RunSidecar } from '../src/train/schema';
import { ConfigError } from '../src/train/config';
import { addCommonOptions } from './cli-options';
import { type CommonOptions, getExperiment, REPO_ROOT, resolveProfile, resultsRoot, tunedPath } from './common';
import { exitWithError } from './errors';
import type { Experiment, TunedSettings } from './registry';
import { type GridOutcome, pickBest, type TunedChoice, tunedKey } from './tuned';

export type { GridPoint } from './registry';
import type { GridPoint } from './registry';

function numbers(flag: string, s: string | undefined): number[] | undefined {
  if (s === undefined) return undefined;
  const xs = s.split(',').map((v) => Number(v.trim()));
  const bad = s.split(',').filter((_, i) => !Number.isFinite(xs[i]) || xs[i] <= 0);
  if (bad.length) throw new ConfigError(`--${flag}: '${bad.join(',')}' is not a list of positive numbers`);
  return xs;
}

/** The settings a grid crosses (a list per setting; `[undefined]` = not a setting of this grid). */
export interface GridAxes {
  lr?: (number | undefined)[];
  rbz?: (number | undefined)[];
  damping?: (number | undefined)[];
  c0?: (number | undefined)[];
}

/** Whether a method is a K-FAC line (tuned by damping and c0, or by lr and damping for 'kfac-lr'). */
export function isKfacMethod(method: string): boolean {
  return method.startsWith('kfac');
}

/**
 * The settings `method` is tuned by, checked: a baseline takes lr (and rbz); a K-FAC line damping and c0 (defaults
 * when neither is given: damping 0.03,0.1,0.3, as many trials as the default learning-rate grid); 'kfac-lr' lr and
 * damping. A setting the method has no use for is an error naming the flag.
 */
export function gridAxes(method: string, o: { lr?: number[]; rbz?: number[]; damping?: number[]; c0?: number[] }, defaults: { lr: number[]; rbz?: (number | undefined)[] }): GridAxes {
  const reject = (flag: string, why: string) => {
    throw new ConfigError(`--${flag}: ${why}`);
  };
  if (!isKfacMethod(method)) {
    if (o.damping) reject('damping', `'${method}' is a first-order baseline (tuned by --lr and --rbz); damping and c0 tune K-FAC lines`);
    if (o.c0) reject('c0', `'${method}' is a first-order baseline (tuned by --lr and --rbz); damping and c0 tune K-FAC lines`);
    return { lr: o.lr ?? defaults.lr, rbz: o.rbz ?? defaults.rbz ?? [undefined] };
  }
  if (o.rbz) reject('rbz', `K-FAC lines are tuned by --damping and --c0, not by the batch-norm chunk`);
  if (method === 'kfac-lr') {
    if (o.c0) reject('c0', "'kfac-lr' uses a learning-rate rule, not the KL rule: tune --lr (and --damping)");
    return { lr: o.lr ?? defaults.lr, damping: o.damping ?? [undefined] };
  }
  if (o.lr) reject('lr', `'${method}' takes its step size from the KL rule: tune --damping and --c0`);
  if (!o.damping && !o.c0) return { damping: [0.03, 0.1, 0.3], c0: [undefined] };
  return { damping: o.damping ?? [undefined], c0: o.c0 ?? [undefined] };
}

export function gridPoints(method: string, batches: number[], axes: GridAxes): GridPoint[] {
  const out: GridPoint[] = [];
  const one = [undefined];
  for (const batchSize of batches)
    for (const lr of axes.lr ?? one)
      for (const rbz of axes.rbz ?? one)
        for (const damping of axes.damping ?? one)
          for (const c0 of axes.c0 ?? one) {
            if (rbz !== undefined && rbz > batchSize) continue;
            const p: GridPoint = { method, batchSize };
            if (lr !== undefined) p.lr = lr;
            if (rbz !== undefined) p.rbz = rbz;
            if (damping !== undefined) p.damping = damping;
            if (c0 !== undefined) p.c0 = c0;
            out.push(p);
          }
  return out;
}

/** Trials per key of a grid's points (the budget each line gets), e.g. { '128': 3 } or { '128-rbz32': 3, … }. */
export function trialsPerKey(points: readonly GridPoint[], byRbz: boolean): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of points) {
    const k = tunedKey(p.batchSize, byRbz ? p.rbz : undefined);
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/** Orders run files by batch size, then learning rate, then chunk size (numerically). */
function byPoint(a: string, b: string): number {
  const key = (n: string) => (n.match(/[\d.]+/g) ?? []).map(Number);
  const [x, y] = [key(a), key(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return a.localeCompare(b);
}

export function pointId(p: GridPoint): string {
  const m = p.method && p.method !== 'sgd+bn' ? `${p.method}-` : '';
  return (
    `${m}bz${p.batchSize}` +
    (p.lr !== undefined ? `-lr${p.lr}` : '') +
    (p.rbz !== undefined ? `-rbz${p.rbz}` : '') +
    (p.damping !== undefined ? `-d${p.damping}` : '') +
    (p.c0 !== undefined ? `-c${p.c0}` : '')
  );
}

/** Mean training loss over the last `frac` of a run's rows: the tuning metric (Figure 6 is about training loss). */
export function finalTrainLoss(csvPath: string, frac = 0.2): number {
  const rows = parse(readFileSync(csvPath, 'utf8'), { columns: true }) as Record<string, string>[];
  const vals = rows.map((r) => (r.train_loss === '' ? NaN : Number(r.train_loss))).filter(Number.isFinite);
  if (!vals.length) return NaN;
  const tail = vals.slice(Math.floor(vals.length * (1 - frac)));
  return tail.reduce((a, b) => a + b, 0) / tail.length;
}

function runPoint(name: string, p: GridPoint, o: CommonOptions, dir: string, jobs: number): Promise<{ code: number; stderr: string }> {
  const args = ['--import', 'tsx', join(REPO_ROOT, 'experiments', 'grid-point.ts'), name, JSON.stringify(p), dir, '--profile', o.profile];
  if (o.backend) args.push('--backend', o.backend);
  if (o.dataDir) args.push('--data-dir', o.dataDir);
  if (o.download) args.push('--download');
  if (o.onBadImage) args.push('--on-bad-image', o.onBadImage);
  for (const s of o.set ?? []) args.push('--set', s);
  return new Promise((resolvePromise) => {
    // points side by side split the cores between them (OpenMP teams sharing cores wait for each other)
    const threads = process.env.DKFAC_NATIVE_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / jobs)));
    const child = spawn(process.execPath, args, { env: { ...process.env, DKFAC_QUIET: '1', DKFAC_NATIVE_THREADS: threads }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolvePromise({ code: code ?? 1, stderr }));
  });
}

async function main(argv: string[]) {
  const program = new Command('grid').description("tune one line of an experiment: a baseline's learning rate (and rbz), K-FAC's damping and c0");
  program.exitOverride();
  addCommonOptions(
    program
      .argument('<experiment>')
      .option('--lr <list>', 'initial learning rates, comma-separated (baselines, kfac-lr; default 0.01,0.03,0.1)')
      .option('--rbz <list>', "batch-norm chunk sizes (the paper: 32 standard, 128/256 improved; default: the experiment's lines)")
      .option('--damping <list>', 'K-FAC lines: damping λ values (default 0.03,0.1,0.3 when neither --damping nor --c0 is given)')
      .option('--c0 <list>', "K-FAC lines: the KL rule's c0 values (default: the profile's)")
      .option('--method <name>', "line to tune (default: the experiment's first, sgd+bn; `npm run exp:list` … its tunable methods are listed on error)")
      .option('--batch <list>', "batch sizes (default: the profile's)")
      .option('--jobs <n>', 'grid points trained at once', String(Math.min(2, availableParallelism()))),
  ).action(async (name: string, o: CommonOptions & { lr?: string; rbz?: string; damping?: string; c0?: string; batch?: string; jobs: string; method?: string }) => {
    const e = await getExperiment(name);
    const tunable = e.tunable ?? ['sgd+bn'];
    if (!e.gridRun || !e.batchSizes || tunable.length === 0) throw new ConfigError(`experiment ${name} has no line to tune`);
    const method = o.method ?? tunable[0];
    if (!tunable.includes(method)) throw new ConfigError(`--method: experiment ${name} tunes ${tunable.join(', ')}, not '${method}'`);
    const profile = resolveProfile(e, o.profile, o.set);
    const batches = numbers('batch', o.batch) ?? e.batchSizes(profile);
    const axes = gridAxes(
      method,
      { lr: numbers('lr', o.lr), rbz: numbers('rbz', o.rbz), damping: numbers('damping', o.damping), c0: numbers('c0', o.c0) },
      { lr: [0.01, 0.03, 0.1], rbz: e.rbzs?.(profile) },
    );
    const jobs = Math.max(1, Math.floor(Number(o.jobs)));
    if (!Number.isFinite(jobs)) throw new ConfigError(`--jobs: '${o.jobs}' is not a number`);
    const points = gridPoints(method, batches, axes);
    planGridRuns(e, profile, method, points);
    const root = resultsRoot(o);
    const dir = join(root, 'grid', name);
    const runsDir = join(dir, 'runs');
    mkdirSync(runsDir, { recursive: true });
    console.log(`grid ${name} ${method} (${o.profile}): ${points.length} points, ${jobs} at a time → ${runsDir}`);
    for (const w of budgetWarnings(root, name, method, points, tunable, e.rbzs !== undefined)) console.warn(`grid: warning: ${w}`);
    const bar = progressBar(`grid ${name}`, points.length, 'points');
    let done = 0;
    const failures: string[] = [];
    const queue = [...points];
    await Promise.all(
      Array.from({ length: Math.min(jobs, points.length) }, async () => {
        for (let p = queue.shift(); p; p = queue.shift()) {
          const r = await runPoint(name, p, o, runsDir, jobs);
          if (r.code !== 0) failures.push(`${pointId(p)}: exit ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
          bar.update(++done, { last: pointId(p) });
        }
      }),
    );
    bar.stop();
    // The summary covers every point of this method and profile run so far (earlier invocations included), so the
    // grid can be extended, e.g. with a larger learning rate when the best one sits at the edge.
    const rows: Record<string, string | number>[] = [];
    for (const f of readdirSync(runsDir).filter((n) => n.endsWith('.json')).sort(byPoint)) {
      const sc = JSON.parse(readFileSync(join(runsDir, f), 'utf8')) as RunSidecar;
      const pt = (sc.config as { notes?: { gridPoint?: GridPoint } }).notes?.gridPoint;
      if (!pt || (pt.method ?? 'sgd+bn') !== method || sc.profile !== o.profile) continue;
      const csv = join(runsDir, f.replace(/\.json$/, '.csv'));
      const value = sc.status === 'finished' && existsSync(csv) ? finalTrainLoss(csv) : NaN;
      rows.push({
        batch_size: pt.batchSize,
        lr: pt.lr ?? '',
        rbz: pt.rbz ?? '',
        damping: pt.damping ?? '',
        c0: pt.c0 ?? '',
        status: sc.status,
        final_train_loss: Number.isFinite(value) ? value : '',
        final_test_error: sc.summary?.finalTestError ?? '',
        seconds_per_step: sc.summary?.secondsPerStep ?? '',
        run: pointId(pt),
      });
    }
    for (const p of points) {
      if (!rows.some((r) => r.run === pointId(p))) rows.push({ batch_size: p.batchSize, lr: p.lr ?? '', rbz: p.rbz ?? '', damping: p.damping ?? '', c0: p.c0 ?? '', status: 'missing', final_train_loss: '', final_test_error: '', seconds_per_step: '', run: pointId(p) });
    }
    const summaryCsv = join(dir, `summary-${method}.csv`);
    writeFileSync(summaryCsv, stringify(rows, { header: true }));
    const best = pickBest(rows as unknown as GridOutcome[]);
    const tuned: TunedSettings = {
      experiment: name,
      profile: o.profile,
      method,
      metric: 'final_train_loss (mean of the last 20 % of rows)',
      best,
      summaryCsv: `results/grid/${name}/summary-${method}.csv`,
    };
    writeJsonAtomic(tunedPath(root, name, method), tuned);
    console.log(stringify(rows, { header: true, delimiter: '\t' }));
    for (const [k, b] of Object.entries(best)) console.log(`best for bz${k}: ${describeChoice(b)} (train loss ${b.value.toFixed(4)}, ${b.trials} trials)`);
    console.log(`summary: ${summaryCsv}\nbest settings: ${tunedPath(root, name, method)}`);
    if (failures.length) {
      console.error(`${failures.length} grid point(s) failed:\n  ${failures.join('\n  ')}`);
      process.exitCode = 1;
    }
  });
  await program.parseAsync(argv, { from: 'user' });
}

/**
 * Plans every point's run before any training, so that a setting the experiment rejects stops the grid at once; and a
 * point must train the line it tunes: a run planned as another method (Figure 5's ResNet has batch norm, so its K-FAC
 * line is 'kfac+bn', and a 'kfac' grid would train the very same runs) is an error naming the method to tune.
 */
export function planGridRuns(e: Pick<Experiment, 'name' | 'gridRun'>, profile: unknown, method: string, points: readonly GridPoint[]): void {
  for (const p of points) {
    const run = e.gridRun!(profile, p);
    if (run.method !== method) {
      throw new ConfigError(`--method ${method}: experiment ${e.name} trains this line as '${run.method}' with this profile: tune --method ${run.method}`);
    }
  }
}

/** 'lr 0.1 rbz 32' / 'damping 0.1 c0 0.01': the settings of a tuned choice. */
export function describeChoice(b: Pick<TunedChoice, 'lr' | 'rbz' | 'damping' | 'c0'>): string {
  return (['lr', 'rbz', 'damping', 'c0'] as const)
    .filter((k) => b[k] !== undefined)
    .map((k) => `${k} ${b[k]}`)
    .join(' ');
}

/**
 * Where this grid gives its method another number of trials per line than a grid already run for another method of
 * the experiment (best-<method>.json): K-FAC and each baseline should have the same tuning budget.
 */
export function budgetWarnings(root: string, name: string, method: string, points: GridPoint[], tunable: string[], byRbz: boolean): string[] {
  const out: string[] = [];
  const mine = trialsPerKey(points, byRbz && !isKfacMethod(method));
  const per = (m: Map<string, number>) => [...new Set(m.values())];
  for (const other of tunable.filter((m) => m !== method)) {
    const p = tunedPath(root, name, other);
    if (!existsSync(p)) continue;
    const t = JSON.parse(readFileSync(p, 'utf8')) as TunedSettings;
    const theirs = Object.entries(t.best)
      .filter(([k]) => (byRbz && !isKfacMethod(other) ? k.includes('-rbz') : !k.includes('-rbz')))
      .map(([, c]) => c.trials)
      .filter((x): x is number => x !== undefined);
    const a = per(mine);
    const b = [...new Set(theirs)];
    if (b.length && (a.length !== 1 || b.length !== 1 || a[0] !== b[0])) {
      out.push(`${method} gets ${a.join('/')} trial(s) per line, ${other} had ${b.join('/')} (${p}): the tuning budgets differ`);
    }
  }
  return out;
}

if (process.argv[1] && process.argv[1].endsWith('grid.ts')) main(process.argv.slice(2)).catch(exitWithError);
