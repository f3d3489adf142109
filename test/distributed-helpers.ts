/**
 * Shared fixtures of the distributed tests: a tiny CIFAR-net configuration and synthetic data (no files), and the
 * comparisons of two runs (CSV rows without the clocks, final parameters from the kept checkpoint).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InMemoryStream } from '../data-pipeline/stream';
import type { Batch, Split } from '../data-pipeline/types';
import type { BackendInfo } from '../src/backend';
import { runDistributedTraining } from '../src/distributed/run';
import { DistConfig, type DistConfigInput, type Injections } from '../src/distributed/server';
import { readCheckpoint } from '../src/train/checkpoint';
import { parseConfig, RunConfig } from '../src/train/config';
import { CSV_COLUMNS } from '../src/train/schema';
import { checkpointPath, type RunCheckpoint } from '../src/train/session';
import { splitBatches, type TrainData } from '../src/train/trainer';
import type { RunConfig as RunConfigT } from '../src/train/config';

export const H = 8;
export const C = 1;
export const K = 4;

/** Deterministic synthetic images (class-dependent mean) and labels. */
export function synthSplit(n: number, seed = 1): Split {
  const images = new Float32Array(n * H * H * C);
  const labels = new Int32Array(n);
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let i = 0; i < n; i++) {
    labels[i] = i % K;
    for (let j = 0; j < H * H * C; j++) images[i * H * H * C + j] = rnd() - 0.5 + 0.3 * Math.sin(labels[i] + j);
  }
  return { images, labels, count: n };
}

export function batchOf(split: Split, lo: number, hi: number): Batch {
  const per = H * H * C;
  return { images: split.images.slice(lo * per, hi * per), labels: split.labels.slice(lo, hi), shape: [hi - lo, H, H, C] };
}

export function runCfg(over: Record<string, unknown> = {}) {
  return parseConfig(
    RunConfig,
    {
      label: 'dist test',
      run: 'dist-test',
      method: 'kfac',
      batchSize: 16,
      examples: 16 * 6,
      model: { arch: 'cifarnet', bn: false },
      optimizer: { kind: 'kfac', damping: 0.1, inverseEvery: 2, statsBatch: 8 },
      polyak: 0.9,
      logEvery: 1,
      evals: 1,
      seed: 3,
      ...over,
    },
    'test run',
  );
}

export function trainData(n = 128): TrainData {
  const train = synthSplit(n, 1);
  const test = synthSplit(32, 2);
  const dims = { height: H, width: H, channels: C, numClasses: K };
  return {
    ...dims,
    epochSize: n,
    train: (seed, shard) => new InMemoryStream(train, { ...dims, seed: String(seed), shard } as never),
    testBatches: (bs) => splitBatches(test, bs, [H, H, C]),
    testCount: 32,
    source: { dataset: 'synthetic', origin: 'test', path: '-', trainCount: n, testCount: 32 },
    close: async () => undefined,
  };
}

/** CSV rows without the clocks (real and simulated time differ between any two runs). */
export function rows(csv: string): string[][] {
  const clocks = new Set([CSV_COLUMNS.indexOf('wall_seconds'), CSV_COLUMNS.indexOf('sim_seconds')]);
  return readFileSync(csv, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(',').filter((_, i) => !clocks.has(i)));
}

/** The final parameters of a run that kept its checkpoint (keepCheckpoint). */
export function finalParams(dir: string, run: string): Map<string, Float32Array> {
  const c = readCheckpoint<RunCheckpoint>(checkpointPath(dir, run));
  const loop = c.loop as { trainer?: { params: Map<string, { data: Float32Array }> }; ps?: { trainer: { params: Map<string, { data: Float32Array }> } } };
  const params = (loop.trainer ?? loop.ps!.trainer).params;
  return new Map([...params].map(([k, v]) => [k, v.data]));
}

export function bitIdentical(a: Map<string, Float32Array>, b: Map<string, Float32Array>): boolean {
  if ([...a.keys()].join() !== [...b.keys()].join()) return false;
  return [...a].every(([k, x]) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(b.get(k)!.buffer, b.get(k)!.byteOffset, b.get(k)!.byteLength)));
}

/** The largest relative difference between same-named tensors of two maps (names must match). */
export function maxRelDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  if ([...a.keys()].join() !== [...b.keys()].join()) throw new Error(`different tensors: ${[...a.keys()]} vs ${[...b.keys()]}`);
  let worst = 0;
  for (const [k, x] of a) worst = Math.max(worst, relDiff(x, b.get(k)!));
  return worst;
}

/** max |x − y| / max |y| (the denominator at least `floor`). */
export function relDiff(x: ArrayLike<number>, y: ArrayLike<number>, floor = 1e-6): number {
  let num = 0;
  let den = floor;
  for (let i = 0; i < x.length; i++) {
    num = Math.max(num, Math.abs(x[i] - y[i]));
    den = Math.max(den, Math.abs(y[i]));
  }
  return num / den;
}

/** Whether two runs' CSV rows (without the clocks) agree cell by cell to `rel` relative (float32 rounding). */
export function rowsClose(a: string[][], b: string[][], rel = 1e-5): string | null {
  if (a.length !== b.length) return `${a.length} rows vs ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    if (a[i].length !== b[i].length) return `row ${i}: ${a[i].length} cells vs ${b[i].length}`;
    for (let j = 0; j < a[i].length; j++) {
      const [x, y] = [a[i][j], b[i][j]];
      if (x === y) continue;
      const [u, v] = [Number(x), Number(y)];
      if (x === '' || y === '' || !Number.isFinite(u) || !Number.isFinite(v) || Math.abs(u - v) > rel * Math.max(Math.abs(u), Math.abs(v), 1e-12)) {
        return `row ${i} (${a[0][j]}): ${x} vs ${y}`;
      }
    }
  }
  return null;
}

/** One run through the distributed runtime on the synthetic data: its summary, folder, sidecar and CSV rows. */
export async function trainDistributed(
  cfg: RunConfigT,
  dist: DistConfigInput,
  o: { backend: BackendInfo; experiment: string; injections?: Injections; dir?: string; resume?: boolean },
) {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), `dkfac-${o.experiment}-`));
  const s = await runDistributedTraining(cfg, DistConfig.parse(dist), { experiment: o.experiment, profile: 'test', resultsDir: dir, backend: o.backend, data: trainData(), resume: o.resume }, o.injections ?? {});
  const side = JSON.parse(readFileSync(s.sidecarPath, 'utf8'));
  return { s, dir, side, rows: rows(s.csvPath) };
}
