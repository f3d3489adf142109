/**
 * npm run grid -- <experiment> --lr 0.01,0.03,0.1 [--rbz 32,128] [--batch 32,128] [--jobs 2] [common options]
 *
 * Tunes the SGD+BN baseline of an experiment: the cross product of settings, each point trained by the same runner
 * as the figures (in child processes, `--jobs` at a time), a summary CSV of every point, and the best setting per
 * batch size and per (batch size, rbz) in results/grid/<experiment>/best-<method>.json (experiments/tuned.ts), which
 * the experiment then uses for its baseline runs. Without --rbz the experiment's own chunk sizes are tried (Figure 3:
 * improved and standard BN, each tuned separately).
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
import type { TunedSettings } from './registry';
import { type GridOutcome, pickBest } from './tuned';

export type { GridPoint } from './registry';
import type { GridPoint } from './registry';

function numbers(flag: string, s: string | undefined): number[] | undefined {
  if (s === undefined) return undefined;
  const xs = s.split(',').map((v) => Number(v.trim()));
  const bad = s.split(',').filter((_, i) => !Number.isFinite(xs[i]) || xs[i] <= 0);
  if (bad.length) throw new ConfigError(`--${flag}: '${bad.join(',')}' is not a list of positive numbers`);
  return xs;
}

export function gridPoints(method: string, batches: number[], lrs: number[], rbzs: (number | undefined)[]): GridPoint[] {
  const out: GridPoint[] = [];
  for (const batchSize of batches)
    for (const lr of lrs)
      for (const rbz of rbzs) {
        if (rbz !== undefined && rbz > batchSize) continue;
        out.push({ method, batchSize, lr, rbz });
      }
  return out;
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
  return `${m}bz${p.batchSize}-lr${p.lr}${p.rbz !== undefined ? `-rbz${p.rbz}` : ''}`;
}

/** Mean training loss over the last `frac` of a run's rows: the tuning metric (Figure 6 is about training loss). */
export function finalTrainLoss(csvPath: string, frac = 0.2): number {
  const rows = parse(readFileSync(csvPath, 'utf8'), { columns: true }) as Record<string, string>[];
  const vals = rows.map((r) => (r.train_loss === '' ? NaN : Number(r.train_loss))).filter(Number.isFinite);
  if (!vals.length) return NaN;
  const tail = vals.slice(Math.floor(vals.length * (1 - frac)));
  return tail.reduce((a, b) => a + b, 0) / tail.length;
}

function runPoint(name: string, p: GridPoint, o: CommonOptions, dir: string): Promise<{ code: number; stderr: string }> {
  const args = ['--import', 'tsx', join(REPO_ROOT, 'experiments', 'grid-point.ts'), name, JSON.stringify(p), dir, '--profile', o.profile];
  if (o.backend) args.push('--backend', o.backend);
  if (o.dataDir) args.push('--data-dir', o.dataDir);
  if (o.download) args.push('--download');
  if (o.onBadImage) args.push('--on-bad-image', o.onBadImage);
  for (const s of o.set ?? []) args.push('--set', s);
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, DKFAC_QUIET: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolvePromise({ code: code ?? 1, stderr }));
  });
}

async function main(argv: string[]) {
  const program = new Command('grid').description('tune the SGD+BN baseline of an experiment');
  program.exitOverride();
  addCommonOptions(
    program
      .argument('<experiment>')
      .option('--lr <list>', 'initial learning rates, comma-separated', '0.01,0.03,0.1')
      .option('--rbz <list>', "batch-norm chunk sizes (the paper: 32 standard, 128/256 improved; default: the experiment's lines)")
      .option('--method <name>', "baseline to tune (default: the experiment's first, sgd+bn)")
      .option('--batch <list>', "batch sizes (default: the profile's)")
      .option('--jobs <n>', 'grid points trained at once', String(Math.min(2, availableParallelism()))),
  ).action(async (name: string, o: CommonOptions & { lr: string; rbz?: string; batch?: string; jobs: string; method?: string }) => {
    const e = await getExperiment(name);
    const tunable = e.tunable ?? ['sgd+bn'];
    if (!e.baseline || !e.batchSizes) throw new ConfigError(`experiment ${name} has no baseline to tune`);
    const method = o.method ?? tunable[0];
    if (!tunable.includes(method)) throw new ConfigError(`--method: experiment ${name} tunes ${tunable.join(', ')}, not '${method}'`);
    const profile = resolveProfile(e, o.profile, o.set);
    const batches = numbers('batch', o.batch) ?? e.batchSizes(profile);
    const lrs = numbers('lr', o.lr)!;
    const rbzs: (number | undefined)[] = numbers('rbz', o.rbz) ?? e.rbzs?.(profile) ?? [undefined];
    const jobs = Math.max(1, Math.floor(Number(o.jobs)));
    if (!Number.isFinite(jobs)) throw new ConfigError(`--jobs: '${o.jobs}' is not a number`);
    const points = gridPoints(method, batches, lrs, rbzs);
    const root = resultsRoot(o);
    const dir = join(root, 'grid', name);
    const runsDir = join(dir, 'runs');
    mkdirSync(runsDir, { recursive: true });
    console.log(`grid ${name} ${method} (${o.profile}): ${points.length} points, ${jobs} at a time → ${runsDir}`);
    const bar = progressBar(`grid ${name}`, points.length, 'points');
    let done = 0;
    const failures: string[] = [];
    const queue = [...points];
    await Promise.all(
      Array.from({ length: Math.min(jobs, points.length) }, async () => {
        for (let p = queue.shift(); p; p = queue.shift()) {
          const r = await runPoint(name, p, o, runsDir);
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
        lr: pt.lr,
        rbz: pt.rbz ?? '',
        status: sc.status,
        final_train_loss: Number.isFinite(value) ? value : '',
        final_test_error: sc.summary?.finalTestError ?? '',
        seconds_per_step: sc.summary?.secondsPerStep ?? '',
        run: pointId(pt),
      });
    }
    for (const p of points) {
      if (!rows.some((r) => r.run === pointId(p))) rows.push({ batch_size: p.batchSize, lr: p.lr, rbz: p.rbz ?? '', status: 'missing', final_train_loss: '', final_test_error: '', seconds_per_step: '', run: pointId(p) });
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
    for (const [k, b] of Object.entries(best)) console.log(`best for bz${k}: lr ${b.lr}${b.rbz ? ` rbz ${b.rbz}` : ''} (train loss ${b.value.toFixed(4)})`);
    console.log(`summary: ${summaryCsv}\nbest settings: ${tunedPath(root, name, method)}`);
    if (failures.length) {
      console.error(`${failures.length} grid point(s) failed:\n  ${failures.join('\n  ')}`);
      process.exitCode = 1;
    }
  });
  await program.parseAsync(argv, { from: 'user' });
}

if (process.argv[1] && process.argv[1].endsWith('grid.ts')) main(process.argv.slice(2)).catch(exitWithError);
