/**
 * npm run exp:<name> -- [--profile quick|paper] [--backend B] [--data-dir D] [--download] [--set key=value ...]
 *                       [--on-bad-image stop|skip] [--only run1,run2] [--seeds N] [--results DIR] [--no-report]
 *                       [--resume] [--redis URL [--redis-wait S] [--redis-prefix P] [--redis-tls-ca FILE]] [--network SPEC]
 *
 * Runs every run of one paper figure once per seed (--seeds N: the profile's seed and the next N − 1; default 3 at
 * quick, 1 at paper), writes results/<name>/<run>-s<seed>.csv + .json, then regenerates the report. A data error (an
 * unreadable file) stops the experiment at once with `error: <file>: <problem>` (exit 1): a run that never trained
 * leaves no files; --on-bad-image skip leaves unreadable images of a folder out instead (each run's sidecar counts and
 * lists them). With --resume, runs whose sidecar says finished are skipped and the others continue from their
 * checkpoint (results/<name>/<run>.ckpt, written at every evaluation and on Ctrl-C), or start over where there is none.
 * With --redis, every role of the distributed runs (gradient, stats, inverse workers) runs on the worker processes
 * connected to that Redis (`npm run worker -- --redis URL`, on any machine); this process is the parameter server.
 */
import { join } from 'node:path';
import { Command } from 'commander';
import { addCommonOptions, addDistOptions, type DistOptions } from './cli-options';
import { generateReports } from '../reports/cli';
import { installStopHandlers } from '../src/train/stop';
import { type CommonOptions, parseSeeds, prepare, readTuned, resolveDistOptions, seedList, trainRuns, tunedPath } from './common';
import { loadExperiments } from './registry';
import { exitWithError } from './errors';

async function main(argv: string[]) {
  const program = new Command('exp').description('dkfac experiments: one per figure of Ba, Grosse & Martens (2017)');
  program.exitOverride();
  program
    .command('list')
    .description('list the experiments')
    .action(async () => {
      for (const e of (await loadExperiments()).values()) console.log(`${e.name.padEnd(8)} ${e.title}`);
    });
  addDistOptions(
    addCommonOptions(
      program
        .command('run <experiment>')
        .description('run one experiment')
        .option('--only <runs>', 'comma-separated run ids to train (default all)')
        .option('--seeds <n>', 'train every run with this many seeds (init, data order, sampled targets): default 3 at quick (an experiment may ask for more), 1 at paper')
        .option('--no-report', 'skip regenerating the report')
        .option('--resume', 'skip finished runs; continue unfinished ones from their checkpoints'),
    ),
  ).action(async (name: string, o: CommonOptions & DistOptions & { only?: string; seeds?: string; report: boolean; resume?: boolean }) => {
    installStopHandlers();
    // before any work: a Redis that cannot be used is a clear error here
    const dist = await resolveDistOptions(o);
    const p = await prepare(name, o);
    const seeds = parseSeeds(o.seeds, o.profile, p.experiment);
    const tuned = readTuned(p.root, p.experiment, p.profileName);
    for (const method of p.experiment.tunable ?? ['sgd+bn']) {
      const t = tuned[method];
      console.log(
        t
          ? `${method}: tuned settings from ${tunedPath(p.root, name, method)}`
          : `${method}: profile defaults (run \`npm run grid -- ${name} --method ${method}\` to tune them)`,
      );
    }
    let runs = p.experiment.runs(p.profile, tuned);
    if (o.only) {
      const want = new Set(o.only.split(','));
      const unknown = [...want].filter((r) => !runs.some((x) => x.run === r));
      if (unknown.length) throw new Error(`unknown run(s) ${unknown.join(', ')} (known: ${runs.map((r) => r.run).join(', ')})`);
      runs = runs.filter((r) => want.has(r.run));
    }
    const dir = join(p.root, name);
    const tunedFrom = Object.fromEntries(Object.entries(tuned).map(([m, t]) => [m, t?.summaryCsv]));
    console.log(`seeds: ${seeds} per run (${seedList(runs[0]?.seed ?? 0, seeds).join(', ')})`);
    const summaries = await trainRuns(p, runs, dir, { tunedFrom }, { resume: o.resume, dist, seeds });
    await p.data.close();
    console.log(`\nresults: ${dir}/ (${summaries.map((s) => `${s.run}.csv`).join(', ')})`);
    if (o.report) {
      // a custom results root gets its own report folder, so it never overwrites the repository's reports/
      const outDir = o.results ? join(p.root, 'report') : undefined;
      const ids = [p.experiment.figure, ...(p.experiment.alsoFigures ?? [])];
      const r = await generateReports({ resultsRoot: p.root, outDir, only: ids, log: () => {} });
      for (const f of r.figures) {
        if (ids.includes(f.spec.id) && f.files) console.log(`report: ${f.files.svg}, ${f.files.png}`);
      }
      console.log(`report index: ${r.indexPath}`);
    }
    if (summaries.some((s) => s.status === 'failed')) process.exitCode = 1;
    if (summaries.some((s) => s.status === 'stopped')) process.exitCode = 130;
  });
  await program.parseAsync(argv, { from: 'user' });
}

main(process.argv.slice(2)).catch(exitWithError);
