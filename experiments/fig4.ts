/**
 * Figure 4: AlexNet with the doubly-factored Kronecker approximation on its first fully connected layer (paper
 * section 4, 6.2.2): `SGD bz2048`, `SGD+BN bz2048 rbz256` and `dist.K-FAC bz2048`, against updates and time, training
 * (dashed) and test (solid) cross-entropy and error. The claim: K-FAC speeds up training "by a factor of 1.5 over the
 * improved SGD-BN baseline" although its inverses are refreshed only as the CPU allows ("potentially extreme
 * staleness").
 *
 * Roles as in the paper: G = 8 GPUs; SGD and SGD+BN use all of them as gradient workers, K-FAC gives one to the stats
 * worker (G − 1 = 7 gradient workers). K-FAC's inverses run on an inverse-worker thread with the `async` schedule:
 * installed whenever they finish, never waited for; the CSV records the staleness. fc6 is named in
 * `doublyFactored.names`, so its block is a DoublyFactoredBlock (three factors E[KKᵀ], E[ΨΨᵀ], E[DsDsᵀ] and a full bias
 * block), or the run stops before training with an error naming the layer.
 *
 * Baselines: learning rates tuned by the grid (`npm run grid -- fig4 --method sgd` and `--method sgd+bn`); decay 0.96
 * every two epochs (plain SGD) and every half epoch (SGD+BN), as in the paper's ImageNet runs. K-FAC: damping and c0
 * tuned by the same grid with as many trials (`npm run grid -- fig4 --method kfac --damping 0.03,0.1,0.3`).
 *
 * quick: AlexNet at width 0.25 with 256-unit FC layers and the 5×5 small stem on 28×28 Fashion-MNIST (the first
 * 12,000 training examples of the copy found), batch 256 and rbz 32 (the paper's 2048 and 256 divided by 8, keeping
 * rbz = batch/8, so each of SGD+BN's 8 gradient workers normalises its own 32-example shard, as the paper's 8 GPUs
 * with rbz256 at bz2048); fc6 sees a 4×4×64 map: factors 16×16, 64×64, 256×256. paper: full AlexNet on an ImageNet
 * folder, 256×256 images cropped to 227×227 (the paper's 6×6×256 fc6 input; 224 would give 5×5), batch 2048, rbz 256,
 * damping 1e-3, cheap conv factors, KL rule c0 = 0.01, ζ = 0.96; fc6 factors 36×36, 256×256, 4096×4096.
 */
import { z } from 'zod';
import { KfacConfig } from '../src/kfac/optimizer';
import { AlexNetConfig } from '../src/nn/zoo';
import { DataConfig, type RunConfigInput } from '../src/train/config';
import { DecaySchedule } from '../src/train/update';
import { defineExperiment, type PlannedRun, type TunedSettings } from './registry';
import { kfacDist, Roles, sgdDist } from './roles';
import { type KfacTunables, tunedKfac, tunedLr, withKfacTunables } from './tuned';

const Profile = z.strictObject({
  data: DataConfig,
  model: AlexNetConfig.omit({ bn: true }),
  batchSize: z.number().int().positive(),
  /** training budget in examples, the same for every run */
  examples: z.number().int().positive(),
  /** the paper's 8 GPUs: SGD uses all as gradient workers, K-FAC all but the stats worker's (experiments/roles.ts) */
  roles: Roles,
  sgd: z.strictObject({
    /** initial learning rates where the grid has not tuned one (plain SGD, SGD+BN) */
    lr: z.number().positive(),
    bnLr: z.number().positive(),
    /** the improved BN chunk (the paper's rbz256 at bz2048) */
    rbz: z.number().int().positive(),
    momentum: z.number().min(0).lt(1).default(0.9),
    /** the paper: plain SGD decays every two epochs, SGD+BN every half epoch */
    decay: DecaySchedule.default({ rate: 0.96, every: 'two-epochs' }),
    bnDecay: DecaySchedule.default({ rate: 0.96, every: 'half-epoch' }),
  }),
  kfac: z.strictObject({
    optimizer: KfacConfig.omit({ kind: true, doublyFactored: true }).partial().default({}),
    /** dense layers on a flattened map that use the doubly-factored approximation (the paper: AlexNet's fc6) */
    doublyFactored: z.array(z.string()).min(1).default(['fc6']),
  }),
  methods: z.array(z.enum(['sgd', 'sgd+bn', 'kfac'])).min(1).default(['sgd', 'sgd+bn', 'kfac']),
  evals: z.number().int().min(0).default(6),
  logEvery: z.number().int().positive().default(2),
  evalExamples: z.number().int().positive().optional(),
  seed: z.number().int().min(0).default(1),
});
type Profile = z.infer<typeof Profile>;

function common(p: Profile) {
  return { batchSize: p.batchSize, examples: p.examples, evals: p.evals, logEvery: p.logEvery, evalExamples: p.evalExamples, seed: p.seed };
}

function baselineRun(p: Profile, method: 'sgd' | 'sgd+bn', lr: number, rbz?: number): RunConfigInput {
  const bn = method === 'sgd+bn';
  const chunk = Math.min(rbz ?? p.sgd.rbz, p.batchSize);
  return {
    ...common(p),
    label: bn ? `SGD+BN bz${p.batchSize} rbz${chunk}` : `SGD bz${p.batchSize}`,
    run: bn ? `sgd-bn-bz${p.batchSize}` : `sgd-bz${p.batchSize}`,
    method,
    bnChunk: bn ? chunk : undefined,
    model: { ...p.model, bn },
    optimizer: { kind: 'sgd', lr, momentum: p.sgd.momentum, decay: bn ? p.sgd.bnDecay : p.sgd.decay },
  };
}

/** The K-FAC line: the grid's damping and c0 when tuned (or a grid point's), else the profile's. */
function kfacRun(p: Profile, tuned: TunedSettings | undefined, pt?: KfacTunables): PlannedRun {
  const base = { kind: 'kfac' as const, ...p.kfac.optimizer, doublyFactored: { names: p.kfac.doublyFactored } };
  const t = pt ? { optimizer: withKfacTunables(base, pt, 'kfac'), tuning: undefined } : tunedKfac('kfac', tuned, p.batchSize, base);
  return {
    ...common(p),
    label: `dist.K-FAC bz${p.batchSize}`,
    run: `kfac-bz${p.batchSize}`,
    method: 'kfac',
    model: { ...p.model, bn: false },
    optimizer: t.optimizer,
    tuning: t.tuning,
  };
}

export const fig4 = defineExperiment({
  name: 'fig4',
  title: 'Figure 4: AlexNet with doubly-factored fc6, dist.K-FAC (async inverses) vs tuned SGD and SGD+BN',
  figure: 'fig4',
  schema: Profile,
  profiles: {
    quick: {
      data: { name: 'fashion-mnist', scheduleEpoch: 12000 },
      model: { arch: 'alexnet', width: 0.25, fcUnits: 256, stem: 'small' },
      batchSize: 256,
      roles: { gpus: 8, inverseThreads: 1, inverse: 'async' },
      // 60 updates per run (1.3 epochs of 12,000): the three runs × 3 seeds in about 10 min on the native engine
      examples: 256 * 60,
      sgd: { lr: 0.02, bnLr: 0.2, rbz: 32 },
      // cheap App.-A conv factors as in every ImageNet run; the stats worker's batch is one gradient worker's share
      // (bz/8); damping chosen for this scale (the paper's 1e-3 is kept in the paper profile)
      kfac: { optimizer: { conv: 'cheap', damping: 0.1, statsBatch: 32 } },
      evals: 5,
      logEvery: 2,
      evalExamples: 2000,
    },
    paper: {
      // 227×227 crops (Caffe's AlexNet): with the 11×11/4 'valid' stem, 224 would give fc6 a 5×5 map, 227 the paper's 6×6
      data: { name: 'imagenet-folder', imageSize: 227, resizeTo: 256 },
      model: { arch: 'alexnet', width: 1, fcUnits: 4096, stem: 'imagenet' },
      batchSize: 2048,
      roles: { gpus: 8, inverseThreads: 8, inverse: 'async' },
      examples: 2048 * 45_000,
      sgd: { lr: 0.01, bnLr: 0.1, rbz: 256 },
      kfac: { optimizer: { conv: 'cheap', damping: 1e-3, statsBatch: 256 } },
      evals: 50,
      logEvery: 20,
      evalExamples: 10000,
    },
  },
  data: (p) => p.data,
  // 6 seeds at quick: with 3 its verdict was decided on one copy of the data (embedded: not reproduced) and not on
  // the other (Debian's: inconclusive); its runs take about a minute per seed
  seeds: { quick: 6 },
  tunable: ['sgd', 'sgd+bn', 'kfac'],
  runs(p, t) {
    const out: PlannedRun[] = [];
    if (p.methods.includes('sgd')) {
      const s = tunedLr('sgd', t.sgd, p.batchSize, { lr: p.sgd.lr });
      out.push({ ...baselineRun(p, 'sgd', s.lr), tuning: s.tuning });
    }
    if (p.methods.includes('sgd+bn')) {
      const b = tunedLr('sgd+bn', t['sgd+bn'], p.batchSize, { lr: p.sgd.bnLr, rbz: p.sgd.rbz });
      out.push({ ...baselineRun(p, 'sgd+bn', b.lr, b.rbz), tuning: b.tuning });
    }
    if (p.methods.includes('kfac')) out.push(kfacRun(p, t.kfac));
    return out;
  },
  gridRun: (p, pt) =>
    pt.method === 'kfac'
      ? kfacRun({ ...p, batchSize: pt.batchSize }, undefined, pt)
      : baselineRun({ ...p, batchSize: pt.batchSize }, (pt.method ?? 'sgd+bn') as 'sgd' | 'sgd+bn', pt.lr!, pt.rbz),
  batchSizes: (p) => [p.batchSize],
  dist: (p, run) => (run.optimizer.kind === 'kfac' ? kfacDist(p.roles) : sgdDist(p.roles, run.batchSize, run.bnChunk)),
});
