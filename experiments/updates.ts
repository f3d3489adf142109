/**
 * K-FAC against tuned first-order baselines on the paper's CIFAR net (three 5×5 conv layers of 32, 32, 64 filters and
 * a softmax layer, section 6.1): updates needed to reach a training-loss target at the same batch size.
 *   - SGD+momentum (no batch norm), learning rate tuned by the grid (`npm run grid -- updates --method sgd`)
 *   - SGD+BN (batch norm after every conv, rbz 32), learning rate tuned by the grid
 *   - K-FAC (KFC conv factors as in the paper's CIFAR runs, inverses every 20 steps, KL step rule)
 * quick: Fashion-MNIST 28×28 (or CIFAR-10 with --set data.name=\"cifar10\" when present), batch 128.
 */
import { z } from 'zod';
import { KfacConfig } from '../src/kfac/optimizer';
import { DataConfig } from '../src/train/config';
import { DecaySchedule } from '../src/train/update';
import { defineExperiment, type PlannedRun, type TunedSettings } from './registry';
import { type KfacTunables, tunedKfac, tunedLr, withKfacTunables } from './tuned';

const Profile = z.strictObject({
  data: DataConfig,
  batchSize: z.number().int().positive(),
  examples: z.number().int().positive(),
  sgd: z.strictObject({
    /** initial learning rates where the grid has not tuned one */
    lr: z.number().positive(),
    bnLr: z.number().positive(),
    rbz: z.number().int().positive().default(32),
    momentum: z.number().min(0).lt(1).default(0.9),
    decay: DecaySchedule.default({ rate: 0.96, every: 'half-epoch' }),
  }),
  kfac: KfacConfig.omit({ kind: true }).partial().default({}),
  evals: z.number().int().min(0).default(6),
  logEvery: z.number().int().positive().default(5),
  evalExamples: z.number().int().positive().optional(),
  seed: z.number().int().min(0).default(1),
});
type Profile = z.infer<typeof Profile>;

function common(p: Profile) {
  return { batchSize: p.batchSize, examples: p.examples, evals: p.evals, logEvery: p.logEvery, evalExamples: p.evalExamples, seed: p.seed };
}

function baselineRun(p: Profile, method: 'sgd' | 'sgd+bn', lr: number, rbz?: number) {
  const bn = method === 'sgd+bn';
  const chunk = Math.min(rbz ?? p.sgd.rbz, p.batchSize);
  return {
    ...common(p),
    label: bn ? `SGD+BN bz${p.batchSize} rbz${chunk}` : `SGD+momentum bz${p.batchSize}`,
    run: bn ? `sgd-bn-bz${p.batchSize}` : `sgd-bz${p.batchSize}`,
    method,
    bnChunk: bn ? chunk : undefined,
    model: { arch: 'cifarnet' as const, bn },
    optimizer: { kind: 'sgd' as const, lr, momentum: p.sgd.momentum, decay: p.sgd.decay },
  };
}

function kfacRun(p: Profile, tuned: TunedSettings | undefined, pt?: KfacTunables): PlannedRun {
  const base = { kind: 'kfac' as const, ...p.kfac };
  const t = pt ? { optimizer: withKfacTunables(base, pt, 'kfac'), tuning: undefined } : tunedKfac('kfac', tuned, p.batchSize, base);
  return {
    ...common(p),
    label: `K-FAC bz${p.batchSize}`,
    run: `kfac-bz${p.batchSize}`,
    method: 'kfac',
    model: { arch: 'cifarnet' as const, bn: false },
    optimizer: t.optimizer,
    tuning: t.tuning,
  };
}

export const updates = defineExperiment({
  name: 'updates',
  title: "K-FAC vs tuned SGD+momentum and SGD+BN on the paper's CIFAR net: updates to a training-loss target",
  figure: 'updates',
  schema: Profile,
  profiles: {
    quick: {
      data: { name: 'fashion-mnist', scheduleEpoch: 12000 },
      batchSize: 128,
      examples: 24000,
      sgd: { lr: 0.05, bnLr: 0.1 },
      kfac: { conv: 'kfc', damping: 0.1, inverseEvery: 20, statsBatch: 32 },
      evalExamples: 2000,
    },
    paper: {
      data: { name: 'cifar10' },
      batchSize: 512,
      examples: 1_500_000,
      sgd: { lr: 0.05, bnLr: 0.1 },
      kfac: { conv: 'kfc', damping: 1e-3, inverseEvery: 20 },
      evals: 30,
      logEvery: 10,
    },
  },
  data: (p) => p.data,
  tunable: ['sgd+bn', 'sgd', 'kfac'],
  runs(p, tuned) {
    const s = tunedLr('sgd', tuned.sgd, p.batchSize, { lr: p.sgd.lr });
    const b = tunedLr('sgd+bn', tuned['sgd+bn'], p.batchSize, { lr: p.sgd.bnLr, rbz: p.sgd.rbz });
    return [
      { ...baselineRun(p, 'sgd', s.lr), tuning: s.tuning },
      { ...baselineRun(p, 'sgd+bn', b.lr, b.rbz), tuning: b.tuning },
      kfacRun(p, tuned.kfac),
    ];
  },
  gridRun: (p, pt) =>
    pt.method === 'kfac' ? kfacRun({ ...p, batchSize: pt.batchSize }, undefined, pt) : baselineRun({ ...p, batchSize: pt.batchSize }, (pt.method ?? 'sgd+bn') as 'sgd' | 'sgd+bn', pt.lr!, pt.rbz),
  batchSizes: (p) => [p.batchSize],
});
