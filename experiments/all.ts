/**
 * npm run exp:all -- [--profile quick|paper] [--only fig2,fig6] [--with-extras] [--seeds N] [--backend B] [--data-dir D]
 *                    [--on-bad-image stop|skip] [--results DIR] [--resume] [--set key=value ...] [--redis URL …]
 *                    [--network SPEC]
 *
 * Runs every figure's experiment in paper order, each in its own process (`exp run <name> --no-report`, so one
 * figure's memory is gone before the next starts and a failure does not take the others down), prints the overall
 * progress with an ETA between figures, then regenerates every report once and prints the claims table. The wall
 * time of each figure goes to <results>/exp-all-<profile>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import { generateReports } from '../reports/cli';
import { takePassword } from '../src/distributed/redis/connect';
import { addDistOptions, type DistOptions, distOptionArgs } from './cli-options';
import { parseSeeds, REPO_ROOT, resultsRoot } from './common';
import { exitWithError } from './errors';
import { type Experiment, loadExperiments } from './registry';

interface AllOptions extends DistOptions {
  profile: string;
  only?: string;
  withExtras?: boolean;
  backend?: string;
  dataDir?: string;
  download?: boolean;
  onBadImage?: string;
  results?: string;
  resume?: boolean;
  seeds?: string;
  set?: string[];
}

/** The figure experiments in paper order (fig2 < fig6 < fig10), then the extras (not a paper figure) when asked. */
export function figureOrder(all: Iterable<Experiment>, withExtras = false): Experiment[] {
  const num = (e: Experiment) => {
    const m = /^fig(\d+)$/.exec(e.name);
    return m ? Number(m[1]) : Number.POSITIVE_INFINITY;
  };
  return [...all].filter((e) => withExtras || Number.isFinite(num(e))).sort((a, b) => num(a) - num(b) || a.name.localeCompare(b.name));
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

function runChild(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'experiments', 'cli.ts'), ...args], {
      stdio: 'inherit',
      cwd: REPO_ROOT,
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 130 : 1)));
  });
}

async function main(argv: string[]) {
  const program = addDistOptions(new Command('exp:all'))
    .description("run every figure's experiment, then regenerate the reports")
    .addOption(new Option('--profile <name>', 'quick (this machine) or paper').default('quick'))
    .option('--only <names>', 'comma-separated experiments (default: every figure)')
    .option('--with-extras', 'also run the experiments that are not paper figures (e.g. updates)')
    .addOption(new Option('--backend <name>', 'tfjs backend').choices(['auto', 'tfjs-node-gpu', 'tfjs-node', 'webgpu', 'wasm', 'cpu']))
    .option('--data-dir <dir>', 'directory holding the dataset files')
    .option('--download', 'allow downloading datasets into the user cache')
    .addOption(new Option('--on-bad-image <policy>', 'image folders: stop at an unreadable image (default) or skip and count it').choices(['stop', 'skip']))
    .option('--results <dir>', 'results root (default ./results)')
    .option('--resume', 'continue unfinished runs from their checkpoints')
    .option('--seeds <n>', "seeds per run of every figure (default: each experiment's own, 3 at quick unless it asks for more, 1 at paper)")
    .option('--set <key=value...>', "override a setting in every experiment's profile (each validates it)")
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const o = program.opts<AllOptions>();
  if (o.profile !== 'quick' && o.profile !== 'paper') throw new Error(`unknown profile '${o.profile}' (quick or paper)`);

  const registry = await loadExperiments();
  let list = figureOrder(registry.values(), o.withExtras);
  if (o.only) {
    const want = o.only.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = want.filter((n) => !registry.has(n));
    if (unknown.length) throw new Error(`unknown experiment(s) ${unknown.join(', ')} (known: ${[...registry.keys()].join(', ')})`);
    list = figureOrder(want.map((n) => registry.get(n)!), true);
  }
  const pass: string[] = ['--profile', o.profile, '--no-report'];
  if (o.backend) pass.push('--backend', o.backend);
  if (o.dataDir) pass.push('--data-dir', o.dataDir);
  if (o.download) pass.push('--download');
  if (o.onBadImage) pass.push('--on-bad-image', o.onBadImage);
  if (o.results) pass.push('--results', o.results);
  if (o.resume) pass.push('--resume');
  // without --seeds each experiment takes its own default (3 at quick unless it asks for more)
  if (o.seeds !== undefined) pass.push('--seeds', String(parseSeeds(o.seeds, o.profile)));
  for (const s of o.set ?? []) pass.push('--set', s);
  // a password in --redis goes to the children in DKFAC_REDIS_PASSWORD, not on their command lines
  if (o.redis) o.redis = takePassword(o.redis);
  pass.push(...distOptionArgs(o));

  const root = resultsRoot(o);
  mkdirSync(root, { recursive: true });
  const logPath = join(root, `exp-all-${o.profile}.json`);
  const record: { name: string; seconds: number; exitCode: number }[] = [];
  const writeLog = () => {
    const tmp = `${logPath}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ profile: o.profile, startedAt: new Date(t0).toISOString(), totalSeconds: (Date.now() - t0) / 1000, experiments: record }, null, 2)}\n`);
    renameSync(tmp, logPath);
  };
  const t0 = Date.now();
  console.log(`exp:all (${o.profile}): ${list.map((e) => e.name).join(', ')}`);
  for (const [i, e] of list.entries()) {
    const elapsed = (Date.now() - t0) / 1000;
    const eta = i > 0 ? `, ETA ${formatDuration((elapsed / i) * (list.length - i))} (mean per experiment so far)` : '';
    console.log(`\n=== exp:all [${i + 1}/${list.length}] ${e.name}: ${e.title}\n=== elapsed ${formatDuration(elapsed)}${eta}`);
    const s0 = Date.now();
    const code = await runChild(['run', e.name, ...pass]);
    record.push({ name: e.name, seconds: (Date.now() - s0) / 1000, exitCode: code });
    writeLog();
    console.log(`=== ${e.name}: ${code === 0 ? 'done' : `exit ${code}`} in ${formatDuration((Date.now() - s0) / 1000)}`);
    if (code === 130) {
      console.log('=== stopped on request; the remaining experiments were not run');
      break;
    }
  }

  const outDir = o.results ? join(root, 'report') : undefined;
  const r = await generateReports({ resultsRoot: root, outDir, log: () => {} });
  console.log(`\nexp:all finished in ${formatDuration((Date.now() - t0) / 1000)} (times in ${logPath})`);
  console.log('\nclaims:');
  for (const f of r.figures) console.log(`  ${f.spec.id.padEnd(8)} ${f.verdict.status.padEnd(15)} ${f.files.png}`);
  console.log(`results: ${root}/\nreport index: ${r.indexPath}`);
  const failed = record.filter((x) => x.exitCode !== 0);
  if (failed.length) {
    console.error(`failed: ${failed.map((x) => `${x.name} (exit ${x.exitCode})`).join(', ')}`);
    process.exitCode = failed.some((x) => x.exitCode === 130) ? 130 : 1;
  }
}

const invokedDirectly = (() => {
  try {
    return !!process.argv[1] && pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url;
  } catch {
    return false;
  }
})();
if (invokedDirectly) main(process.argv.slice(2)).catch(exitWithError);
