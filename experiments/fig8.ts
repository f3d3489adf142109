/**
 * Figure 8 (Appendix B): GoogLeNet trained by distributed K-FAC with two step-size rules, against updates:
 *   - `dist.K-FAC bz256 decayKL`: the KL rule η = min(η_max, sqrt(c_k / Σ⟨v, g⟩)), c0 = 0.01, c_k decayed ×0.96
 *   - `dist.K-FAC bz256 decayLR`: a fixed learning rate decayed ×0.96 (no KL clipping)
 * both decayed at the same interval (the paper: every 3200 iterations). The claim: "KL-based step-size selection
 * outperforms exponential LR decay".
 *
 * The decayLR run's initial learning rate is tuned by the grid like a baseline (method 'kfac-lr', same budget as the
 * figure's runs, chosen by final training loss): `npm run grid -- fig8 --method kfac-lr --lr 0.01,0.03,0.1 --jobs 1`
 * writes results/grid/fig8/summary-kfac-lr.csv and best-kfac-lr.json, which the figure then uses. The bracket is
 * centred on the step sizes the KL rule itself picks on this model (η ≈ 0.02–0.06 in the fig6 quick K-FAC runs).
 * decayKL's c0 (and damping) is tuned by the same grid with as many trials: `npm run grid -- fig8 --method kfac-kl
 * --c0 0.003,0.01,0.03`.
 *
 * Both runs go through the distributed runtime with the same deterministic inverse schedule (sync, every
 * `inverseEvery` updates): the comparison isolates the step-size rule. No batch norm (as fig6's K-FAC), so the
 * number of gradient workers does not change the update; the quick profile uses one.
 *
 * quick: GoogLeNet at width 0.25 with the small stem on 28×28 Fashion-MNIST (the first 12,000 training examples),
 * batch 32 (the paper's 256 / 8), one epoch (375 updates), decay every 40 updates (≈ 9 decays over the run, as the
 * paper's 3200 over its 30,000 plotted updates). paper: full GoogLeNet on an ImageNet folder at 224×224, batch 256,
 * decay every 3200 updates, 30,000 updates.
 */
import { z } from 'zod';
import type { DistConfigInput } from '../src/distributed/server';
import { KfacConfig } from '../src/kfac/optimizer';
import { GoogLeNetConfig } from '../src/nn/zoo';
import { DataConfig, type RunConfigInput } from '../src/train/config';
import { defineExperiment } from './registry';
import { type KfacTunables, tunedKfac, withKfacTunables } from './tuned';

const Profile = z.strictObject({
  data: DataConfig,
  model: GoogLeNetConfig.omit({ bn: true }),
  batchSize: z.number().int().positive(),
  examples: z.number().int().positive(),
  /** ×rate every this many updates, for both c (decayKL) and the learning rate (decayLR) */
  decay: z.strictObject({ rate: z.number().gt(0).lte(1).default(0.96), every: z.number().int().positive() }),
  /** KL rule: c0 and η_max */
  kl: z.strictObject({ c0: z.number().positive().default(0.01), etaMax: z.number().positive().default(1) }).default({ c0: 0.01, etaMax: 1 }),
  /** decayLR: initial learning rate where the grid has not tuned one */
  lr: z.number().positive(),
  kfac: KfacConfig.omit({ kind: true, stepSize: true }).partial().default({}),
  gradientWorkers: z.number().int().min(1).max(16).default(1),
  evals: z.number().int().min(0).default(6),
  logEvery: z.number().int().positive().default(5),
  evalExamples: z.number().int().positive().optional(),
  seed: z.number().int().min(0).default(1),
});
type Profile = z.infer<typeof Profile>;

function run(p: Profile, rule: 'kl' | 'lr', t: KfacTunables = {}): RunConfigInput {
  const decay = { rate: p.decay.rate, every: p.decay.every };
  return {
    label: `dist.K-FAC bz${p.batchSize} decay${rule.toUpperCase()}`,
    run: `kfac-bz${p.batchSize}-decay${rule}`,
    method: `kfac-${rule}`,
    batchSize: p.batchSize,
    examples: p.examples,
    model: { ...p.model, bn: false },
    optimizer: withKfacTunables(
      {
        kind: 'kfac' as const,
        ...p.kfac,
        stepSize: rule === 'kl' ? { rule: 'kl' as const, c0: p.kl.c0, etaMax: p.kl.etaMax, decay } : { rule: 'lr' as const, lr: p.lr, decay },
      },
      t,
      `kfac-${rule}`,
    ),
    evals: p.evals,
    logEvery: p.logEvery,
    evalExamples: p.evalExamples,
    seed: p.seed,
  };
}

/** Every fig8 run (and grid point) through the distributed runtime, inverses every inverseEvery updates (sync). */
export function fig8Dist(p: Profile): DistConfigInput {
  return {
    gradientWorkers: p.gradientWorkers,
    gradients: 'inline',
    stats: 'inline',
    inverses: 'inline',
    inverse: { kind: 'sync', every: p.kfac.inverseEvery ?? 20 },
    onFault: 'stop',
  };
}

export const fig8 = defineExperiment({
  name: 'fig8',
  title: 'Figure 8: dist.K-FAC on GoogLeNet, KL-based step size (decayKL) vs exponentially decayed learning rate (decayLR)',
  figure: 'fig8',
  schema: Profile,
  profiles: {
    quick: {
      data: { name: 'fashion-mnist', scheduleEpoch: 12000 },
      model: { arch: 'googlenet', width: 0.25, stem: 'small', stages: [1, 1, 0] },
      batchSize: 32,
      // two epochs of 12,000, 750 updates (≈ 18 decays of c or the learning rate, every 40 updates): both runs × 3 seeds
      // in about 10 min on the native engine
      examples: 24000,
      decay: { rate: 0.96, every: 40 },
      lr: 0.03,
      // as fig6's quick K-FAC: cheap App.-A conv factors, damping for this scale, inverses every 20 updates
      kfac: { conv: 'cheap', damping: 0.1, inverseEvery: 20 },
      evals: 6,
      logEvery: 5,
      evalExamples: 2000,
    },
    paper: {
      data: { name: 'imagenet-folder', imageSize: 224, resizeTo: 256 },
      model: { arch: 'googlenet', width: 1, stem: 'imagenet', stages: [2, 5, 2] },
      batchSize: 256,
      examples: 256 * 30_000,
      decay: { rate: 0.96, every: 3200 },
      lr: 0.03,
      kfac: { conv: 'cheap', damping: 1e-3, inverseEvery: 20 },
      gradientWorkers: 3,
      evals: 30,
      logEvery: 20,
      evalExamples: 10000,
    },
  },
  data: (p) => p.data,
  // 6 seeds at quick: with 3 its verdict was decided on Debian's copy (partly) and not on the embedded one
  seeds: { quick: 6 },
  tunable: ['kfac-lr', 'kfac-kl'],
  runs: (p, tuned) =>
    (['kl', 'lr'] as const).map((rule) => {
      const method = `kfac-${rule}`;
      const r = run(p, rule);
      const t = tunedKfac(method, tuned[method], p.batchSize, r.optimizer as Parameters<typeof tunedKfac>[3]);
      return { ...r, optimizer: t.optimizer as RunConfigInput['optimizer'], tuning: t.tuning };
    }),
  gridRun: (p, pt) => run({ ...p, batchSize: pt.batchSize }, pt.method === 'kfac-kl' ? 'kl' : 'lr', pt),
  batchSizes: (p) => [p.batchSize],
  dist: (p) => fig8Dist(p),
});
