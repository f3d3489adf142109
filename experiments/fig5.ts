/**
 * Figure 5: ResNet-50, `SGD+BN bz512 rbz64` vs `dist.K-FAC bz512`, against updates and time. The claim: K-FAC gives
 * a "significant speed-up during the early stages of training compared to SGD+BN", the curves converging by the end
 * (both about 0.3 validation error).
 *
 * Roles (experiments/roles.ts): the paper's 8 GPUs; SGD uses all 8 as gradient workers, K-FAC 7 gradient workers and
 * the stats worker ("GPU 8 = stats worker"), inverses asynchronously on CPU threads (paper profile; quick: the lagged
 * in-line stand-in, every role timed by CPU time). K-FAC keeps the network's batch
 * norm (a ResNet without it is not the paper's ResNet-50), each gradient worker normalising over its own shard (7
 * shards of a batch do not split into SGD's chunks). The SGD+BN learning rate comes
 * from the grid: `npm run grid -- fig5 --lr 0.05,0.1,0.2,0.4`; K-FAC's damping and c0 from the same grid with as many
 * trials: `npm run grid -- fig5 --method kfac+bn --damping 0.03,0.1,0.3,1`.
 *
 * quick: ResNet with bottleneck blocks [1, 1, 1] at width 0.25 and a small stem on 28×28 Fashion-MNIST (the first
 * 12,000 examples), batch 128 with rbz 16 (the paper's 512 and 64 scaled by 1/4; 16 divides each worker's shard).
 * paper: ResNet-50 at 224×224 on an ImageNet folder, batch 512, rbz 64, damping 1e-3, cheap conv factors.
 */
import { z } from 'zod';
import { KfacConfig } from '../src/kfac/optimizer';
import { ResNetConfig } from '../src/nn/zoo';
import { DataConfig, type RunConfigInput } from '../src/train/config';
import { DecaySchedule } from '../src/train/update';
import { defineExperiment, type PlannedRun, type TunedSettings } from './registry';
import { kfacDist, Roles, sgdDist } from './roles';
import { type KfacTunables, tunedKfac, tunedLr, withKfacTunables } from './tuned';

const Profile = z
  .strictObject({
    data: DataConfig,
    model: ResNetConfig,
    batchSize: z.number().int().positive(),
    examples: z.number().int().positive(),
    roles: Roles,
    sgd: z.strictObject({
      rbz: z.number().int().positive(),
      /** initial learning rate where the grid has not tuned one */
      lr: z.number().positive(),
      momentum: z.number().min(0).lt(1).default(0.9),
      decay: DecaySchedule.default({ rate: 0.96, every: 'half-epoch' }),
    }),
    kfac: KfacConfig.omit({ kind: true }).partial().default({}),
    evals: z.number().int().min(0).default(8),
    logEvery: z.number().int().positive().default(5),
    evalExamples: z.number().int().positive().optional(),
    seed: z.number().int().min(0).default(1),
  })
  .superRefine((p, ctx) => {
    if (p.sgd.rbz > p.batchSize) ctx.addIssue({ code: 'custom', path: ['sgd', 'rbz'], message: `rbz ${p.sgd.rbz} exceeds batchSize ${p.batchSize}` });
  });
type Profile = z.infer<typeof Profile>;

function common(p: Profile) {
  return { examples: p.examples, evals: p.evals, logEvery: p.logEvery, evalExamples: p.evalExamples, seed: p.seed };
}

function sgdRun(p: Profile, lr: number, rbz = p.sgd.rbz, batchSize = p.batchSize): RunConfigInput {
  return {
    ...common(p),
    batchSize,
    label: `SGD+BN bz${batchSize} rbz${rbz}`,
    run: `sgd-bn-bz${batchSize}-rbz${rbz}`,
    method: 'sgd+bn',
    bnChunk: rbz,
    model: { ...p.model, bn: true },
    optimizer: { kind: 'sgd', lr, momentum: p.sgd.momentum, decay: p.sgd.decay },
  };
}

/** The K-FAC line: the grid's damping and c0 for its method when tuned (or a grid point's), else the profile's. */
function kfacRun(p: Profile, tuned: Partial<Record<string, TunedSettings>>, pt?: KfacTunables, batchSize = p.batchSize): PlannedRun {
  const method = p.model.bn ? 'kfac+bn' : 'kfac';
  const base = { kind: 'kfac' as const, ...p.kfac };
  const t = pt ? { optimizer: withKfacTunables(base, pt, method), tuning: undefined } : tunedKfac(method, tuned[method], batchSize, base);
  return {
    ...common(p),
    batchSize,
    label: `dist.K-FAC bz${batchSize}`,
    run: `kfac-bz${batchSize}`,
    method,
    model: p.model,
    optimizer: t.optimizer,
    tuning: t.tuning,
  };
}

export const fig5 = defineExperiment({
  name: 'fig5',
  title: 'Figure 5: ResNet, dist.K-FAC vs SGD+BN, against updates and time (early speed-up, converging by the end)',
  figure: 'fig5',
  schema: Profile,
  profiles: {
    quick: {
      data: { name: 'fashion-mnist', trainSubset: 12000 },
      model: { arch: 'resnet', bn: true, width: 0.25, blocks: [1, 1, 1], stem: 'small' },
      batchSize: 128,
      // sized from measured steps on 2 vCPUs (README): about 10 minutes for the two runs (120 updates took 12.3 min:
      // SGD+BN 2.0 s/update real, K-FAC 2.7–3.8); a multiple of logEvery, so the last CSV row is a full interval
      examples: 128 * 100,
      // every role in-line, timed by CPU time; inverses with the lagged stand-in for async (installed 5 steps later)
      roles: { gpus: 8, inverseThreads: 2, inverse: 'lagged', lag: 5, costClock: 'cpu' },
      sgd: { rbz: 16, lr: 0.2 },
      kfac: { conv: 'cheap', damping: 0.1, statsBatch: 16 },
      evals: 5,
      evalExamples: 1000,
    },
    paper: {
      data: { name: 'imagenet-folder', imageSize: 224, resizeTo: 256 },
      model: { arch: 'resnet', bn: true, width: 1, blocks: [3, 4, 6, 3], stem: 'imagenet' },
      batchSize: 512,
      // 12 × 10⁴ updates, the x-range of the paper's figure
      examples: 512 * 120_000,
      roles: { gpus: 8, inverseThreads: 8, inverse: 'async' },
      sgd: { rbz: 64, lr: 0.1 },
      kfac: { conv: 'cheap', damping: 1e-3, statsBatch: 64 },
      evals: 60,
      logEvery: 50,
      evalExamples: 10000,
    },
  },
  data: (p) => p.data,
  tunable: ['sgd+bn', 'kfac+bn', 'kfac'],
  runs(p, tuned) {
    const s = tunedLr('sgd+bn', tuned['sgd+bn'], p.batchSize, { lr: p.sgd.lr }, p.sgd.rbz);
    return [{ ...sgdRun(p, s.lr), tuning: s.tuning }, kfacRun(p, tuned)];
  },
  gridRun: (p, pt) => (pt.method?.startsWith('kfac') ? kfacRun(p, {}, pt, pt.batchSize) : sgdRun(p, pt.lr!, pt.rbz ?? p.sgd.rbz, pt.batchSize)),
  batchSizes: (p) => [p.batchSize],
  rbzs: (p) => [p.sgd.rbz],
  dist: (p, run) => (run.optimizer.kind === 'kfac' ? kfacDist(p.roles) : sgdDist(p.roles, run.batchSize, run.bnChunk)),
});
