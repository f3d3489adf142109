/** Shared fixtures of the distributed tests: a tiny CIFAR-net configuration and synthetic data (no files). */
import { InMemoryStream } from '../data-pipeline/stream';
import type { Batch, Split } from '../data-pipeline/types';
import { parseConfig, RunConfig } from '../src/train/config';
import { splitBatches, type TrainData } from '../src/train/trainer';

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
