/**
 * What every experiment command shares: resolve the profile with command-line overrides (validated), initialise
 * the backend, open the data, read the tuned baselines, and run configured runs through the one training loop.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BackendInfo, type BackendName, initBackend } from '../src/backend';
import { ConfigError, DataConfig, parseConfig, RunConfig } from '../src/train/config';
import { type RunSummary, runTraining } from '../src/train/run';
import type { TrainData } from '../src/train/trainer';
import { type DistConfigInput, DistConfig } from '../src/distributed/server';
import { type DistRunSummary, runDistributedTraining } from '../src/distributed/run';
import { isDataError } from '../data-pipeline/types';
import { type NetworkModel, parseNetworkSpec } from '../src/distributed/network';
import { connectRedis, RedisConfig, takePassword } from '../src/distributed/redis/connect';
import type { DistOptions } from './cli-options';
import { openTrainData } from './data';
import { type Experiment, loadExperiments, type PlannedRun, type TunedSettings } from './registry';

export const REPO_ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

export interface CommonOptions {
  profile: string;
  backend?: BackendName;
  dataDir?: string;
  download?: boolean;
  onBadImage?: 'stop' | 'skip';
  set?: string[];
  results?: string;
}

export async function getExperiment(name: string): Promise<Experiment> {
  const all = await loadExperiments();
  const e = all.get(name);
  if (!e) throw new ConfigError(`unknown experiment '${name}' (known: ${[...all.keys()].join(', ')})`);
  return e;
}

/** Parses `key.path=value` (value as JSON when it parses, else a string) into a nested object update. */
export function applyOverrides(base: unknown, sets: string[] = []): unknown {
  const out = structuredClone(base) as Record<string, unknown>;
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new ConfigError(`override '${s}' is not key=value`);
    const path = s.slice(0, eq).split('.');
    const raw = s.slice(eq + 1);
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    let node = out;
    for (const k of path.slice(0, -1)) {
      if (node[k] === undefined) node[k] = {};
      if (typeof node[k] !== 'object' || node[k] === null) throw new ConfigError(`override '${s}': ${k} is not an object`);
      node = node[k] as Record<string, unknown>;
    }
    node[path[path.length - 1]] = value;
  }
  return out;
}

export function resolveProfile(e: Experiment, profileName: string, sets?: string[]) {
  if (profileName !== 'quick' && profileName !== 'paper') {
    throw new ConfigError(`unknown profile '${profileName}' (quick or paper)`);
  }
  const base = e.profiles[profileName];
  return parseConfig(e.schema, applyOverrides(base, sets), `${e.name} profile '${profileName}'`);
}

export function resultsRoot(opts: Pick<CommonOptions, 'results'>): string {
  return resolve(opts.results ?? process.env.DKFAC_RESULTS ?? join(REPO_ROOT, 'results'));
}

/** Where the grid writes its choice for one baseline method. */
export function tunedPath(root: string, experiment: string, method: string): string {
  return join(root, 'grid', experiment, `best-${method}.json`);
}

/** The grid's choices of baseline settings for this experiment and profile, by method, where the grid has been run. */
export function readTuned(root: string, e: Experiment, profile: string): Partial<Record<string, TunedSettings>> {
  const out: Partial<Record<string, TunedSettings>> = {};
  for (const method of e.tunable ?? ['sgd+bn']) {
    const p = tunedPath(root, e.name, method);
    if (!existsSync(p)) continue;
    const t = JSON.parse(readFileSync(p, 'utf8')) as TunedSettings;
    if (t.profile === profile) out[method] = { ...t, file: p };
  }
  return out;
}

export interface Prepared {
  experiment: Experiment;
  profileName: string;
  profile: unknown;
  backend: BackendInfo;
  data: TrainData;
  root: string;
}

export async function prepare(name: string, opts: CommonOptions): Promise<Prepared> {
  const experiment = await getExperiment(name);
  const profile = resolveProfile(experiment, opts.profile, opts.set);
  const dataCfg = parseConfig(
    DataConfig,
    {
      ...experiment.data(profile),
      ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
      ...(opts.download ? { download: true } : {}),
      ...(opts.onBadImage ? { onBadImage: opts.onBadImage } : {}),
    },
    'data configuration',
  );
  const backend = await initBackend(opts.backend ?? 'auto');
  console.log(`backend: ${backend.name} (${backend.detail})`);
  const data = await openTrainData(dataCfg);
  const s = data.source;
  console.log(
    `data: ${s.dataset} from ${s.origin} (${s.path}), ${s.trainCount ?? data.epochSize} training / ${data.testCount} test examples${s.subset ? ` (${s.subset})` : ''}` +
      (s.trainCount !== undefined && data.epochSize !== s.trainCount ? `; schedules count ${data.epochSize} examples as an epoch` : ''),
  );
  if (dataCfg.onBadImage === 'skip') {
    console.log(
      data.skipped
        ? 'data: unreadable images are skipped and counted (--on-bad-image skip; each run lists them in its sidecar)'
        : `data: --on-bad-image skip applies to image folders; ${s.dataset} was read whole and checked before training`,
    );
  }
  return { experiment, profileName: opts.profile, profile, backend, data, root: resultsRoot(opts) };
}

/** What the command line changes in every distributed run: its roles on Redis workers, the network model. */
export interface DistOverrides {
  redis?: RedisConfig;
  network?: NetworkModel;
}

/**
 * The distributed options, checked: a bad value, or a Redis that cannot be used (unreachable, refused credentials,
 * evicting keys), is a clear error before any data is read or any run starts. A password in the --redis URL moves
 * into DKFAC_REDIS_PASSWORD so that no config, sidecar or checkpoint holds it.
 */
export async function resolveDistOptions(o: DistOptions): Promise<DistOverrides> {
  const out: DistOverrides = {};
  if (o.network) out.network = parseNetworkSpec(o.network);
  if (!o.redis) {
    if (o.redisWait || o.redisPrefix || o.redisTlsCa) throw new ConfigError('--redis-wait, --redis-prefix and --redis-tls-ca need --redis');
    return out;
  }
  const url = takePassword(o.redis);
  const r = RedisConfig.safeParse({
    url,
    ...(o.redisWait ? { workerWaitSeconds: Number(o.redisWait) } : {}),
    ...(o.redisPrefix ? { prefix: o.redisPrefix } : {}),
    ...(o.redisTlsCa ? { tlsCa: o.redisTlsCa } : {}),
  });
  if (!r.success) throw new ConfigError(`--redis: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const c = await connectRedis({ url: r.data.url, tlsCa: r.data.tlsCa, name: 'dkfac-check' });
  c.disconnect();
  console.log(`redis: ${url} reachable; remote-capable roles of every distributed run go to its worker processes (npm run worker -- --redis ${url})`);
  out.redis = r.data;
  return out;
}

/** A run's distributed configuration with the command line's overrides: every role on Redis, the network model. */
export function withOverrides(d: DistConfigInput, o: DistOverrides): DistConfigInput {
  return {
    ...d,
    ...(o.redis ? { gradients: 'redis', stats: 'redis', inverses: 'redis', redis: o.redis } : {}),
    ...(o.network ? { network: o.network } : {}),
  };
}

/** The seeds of a run repeated `n` times: its own seed (the profile's) and the next n − 1. */
export function seedList(base: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => base + i);
}

/** The run id of one seed of a figure line: `<run>-s<seed>` (its CSV is <run>-s<seed>.csv). */
export function seededRunId(run: string, seed: number): string {
  return `${run}-s${seed}`;
}

/**
 * Moves the result files (CSV, sidecar, checkpoint) of every seed of these lines that is not about to be trained into
 * `<resultsDir>/superseded/`, saying so: nothing is deleted, and the report (which reads only the folder itself) sees
 * one consistent set of seeds per line.
 */
export function supersedeOtherSeeds(resultsDir: string, lines: { run: string; seeds: number[] }[]): string[] {
  if (!existsSync(resultsDir)) return [];
  const moved: string[] = [];
  const names = readdirSync(resultsDir);
  for (const { run, seeds } of lines) {
    const keep = new Set(seeds);
    const pattern = new RegExp(`^${run.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-s(\\d+)\\.(csv|json|ckpt)$`);
    const stale = names.flatMap((n) => {
      const seed = Number(pattern.exec(n)?.[1] ?? Number.NaN);
      return Number.isNaN(seed) || keep.has(seed) ? [] : [{ n, seed }];
    });
    if (!stale.length) continue;
    const dir = join(resultsDir, 'superseded');
    mkdirSync(dir, { recursive: true });
    for (const { n } of stale) renameSync(join(resultsDir, n), join(dir, n));
    moved.push(...stale.map(({ n }) => n));
    const other = [...new Set(stale.map(({ seed }) => seed))].sort((a, b) => a - b);
    console.log(`${run}: seeds ${other.join(', ')} of an earlier run are not re-run now; their files moved to ${dir}/`);
  }
  return moved;
}

/**
 * Checks `--seeds`: a whole number from 1 to 100; unset, 3 at the quick profile (the fewest that give a 95 % interval
 * any width short of the whole line) and 1 at the paper profile (one paper run takes days on a GPU cluster).
 */
export function parseSeeds(value: string | undefined, profile: string, experiment?: Pick<Experiment, 'seeds'>): number {
  if (value === undefined) return experiment?.seeds?.[profile as 'quick' | 'paper'] ?? (profile === 'paper' ? 1 : 3);
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new ConfigError(`--seeds: '${value}' is not a whole number from 1 to 100`);
  return n;
}

/**
 * Validates every run first (a bad setting stops the experiment before any training), then trains them in order:
 * through the distributed runtime where the experiment gives the run a distributed configuration, else in the
 * single-process loop. With `resume`, finished runs are skipped and unfinished ones continue from their checkpoints.
 * With `seeds` (exp run --seeds N), every run is trained once per seed (its seed and the next N − 1: the model's
 * initialisation, the data order and K-FAC's sampled targets all follow it) as `<run>-s<seed>`, seed by seed so that
 * an interrupted experiment has whole replicates; each seed's CSV, sidecar and checkpoint are its own, so --resume
 * continues per seed. A run's `tuning` (where its tuned settings came from) goes into its sidecar's notes.
 */
export async function trainRuns(
  p: Prepared,
  runs: PlannedRun[],
  resultsDir: string,
  notes?: Record<string, unknown>,
  opts: { resume?: boolean; dist?: DistOverrides; seeds?: number } = {},
): Promise<RunSummary[]> {
  const base = runs.map(({ tuning, ...r }) => {
    const d0 = p.experiment.dist?.(p.profile, r);
    const d = d0 && opts.dist ? withOverrides(d0, opts.dist) : d0;
    if (!d0 && opts.dist?.redis) console.log(`${r.label}: trained in the single-process loop (the experiment gives it no distributed roles): --redis does not apply`);
    return { r, d, tuning };
  });
  const planned =
    opts.seeds === undefined
      ? base.map((b) => ({ ...b, group: b.r.run }))
      : seedList(0, opts.seeds).flatMap((i) =>
          base.map((b) => {
            const seed = (b.r.seed ?? 0) + i;
            return { ...b, r: { ...b.r, run: seededRunId(b.r.run, seed), seed }, group: b.r.run };
          }),
        );
  const checked = planned.map(({ r, d, tuning, group }) => ({
    cfg: parseConfig(RunConfig, r, `run '${r.run}'`),
    dist: d === undefined ? undefined : parseConfig(DistConfig, d, `run '${r.run}' distributed configuration`),
    notes: tuning ? { ...notes, tuning } : notes,
    group,
  }));
  // a fresh run of a line with N seeds leaves no other seed of it beside them (e.g. seeds 4–8 of an earlier, longer
  // run, perhaps on another copy of the data), which the report would pool with the new ones
  if (opts.seeds !== undefined && !opts.resume) {
    supersedeOtherSeeds(
      resultsDir,
      base.map((b) => ({ run: b.r.run, seeds: seedList(0, opts.seeds!).map((i) => (b.r.seed ?? 0) + i) })),
    );
  }
  const out: RunSummary[] = [];
  for (const [i, { cfg, dist, notes: runNotes, group }] of checked.entries()) {
    const ctx = { experiment: p.experiment.name, profile: p.profileName, resultsDir, backend: p.backend, data: p.data, notes: runNotes, resume: opts.resume, group };
    try {
      out.push(dist ? await runDistributedTraining(cfg, dist, ctx) : await runTraining(cfg, ctx));
    } catch (e) {
      // a data error is the data's, not the run's: every later run would meet it too, so the experiment stops here
      if (isDataError(e)) {
        const rest = checked.slice(i + 1).map((c) => c.cfg.run);
        if (rest.length) console.log(`experiment stopped at the first data error; not started: ${rest.join(', ')}`);
      }
      throw e;
    }
    if (dist) {
      const s = out[out.length - 1] as DistRunSummary;
      if (s.skipped) {
        console.log(`${cfg.label}: finished earlier, skipped (--resume)\n  csv: ${s.csvPath}`);
        continue;
      }
      console.log(
        `${cfg.label}: ${s.status}, ${s.steps} steps, ${s.secondsPerStep.toFixed(3)} s/step real, ${(s.simSeconds / Math.max(1, s.steps)).toFixed(3)} s/step simulated, ` +
          (s.meanStaleness !== undefined ? `${s.inverseInstalls} inverse installs, mean staleness ${s.meanStaleness.toFixed(1)}, ` : '') +
          `final train loss ${s.finalTrainLoss.toFixed(4)}` +
          (s.finalTestError !== undefined ? `, test error ${(100 * s.finalTestError).toFixed(1)} %` : '') +
          `\n  csv: ${s.csvPath}`,
      );
    } else {
      const s = out[out.length - 1];
      if (s.skipped) {
        console.log(`${cfg.label}: finished earlier, skipped (--resume)\n  csv: ${s.csvPath}`);
        continue;
      }
      console.log(
        `${cfg.label}: ${s.status}, ${s.steps} steps, ${s.secondsPerStep.toFixed(3)} s/step, final train loss ${s.finalTrainLoss.toFixed(4)}` +
          (s.finalTestError !== undefined ? `, test error ${(100 * s.finalTestError).toFixed(1)} %` : '') +
          `\n  csv: ${s.csvPath}`,
      );
    }
    if (out[out.length - 1].status === 'stopped') break;
  }
  return out;
}
