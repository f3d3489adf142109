/**
 * Figure 4's K-FAC run as configured by the experiment: the block the registry builds for AlexNet's fc6 is a
 * DoublyFactoredBlock with the factor sizes the report states (reports/figures/fig4.ts computes them from the recorded
 * model configuration; here they come from the model actually built), every other layer keeps its own block, and the
 * run's distributed configuration gives K-FAC one GPU fewer than SGD (the stats worker's).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { DoublyFactoredBlock, KroneckerBlock } from '../src/kfac/blocks';
import { registerBlocks } from '../src/kfac/registry';
import { buildModel } from '../src/nn/zoo';
import { parseConfig, RunConfig } from '../src/train/config';
import { DistConfig } from '../src/distributed/server';
import { fig4 } from '../experiments/fig4';
import { resolveProfile } from '../experiments/common';
import { alexNetFc6Factors } from '../reports/figures/fig4';

beforeAll(async () => {
  await initBackend();
});

describe('fig4 experiment', () => {
  it('builds fc6 of the quick AlexNet as a DoublyFactoredBlock with the sizes the report states', () => {
    const p = resolveProfile(fig4, 'quick') as Parameters<typeof fig4.runs>[0];
    const runs = fig4.runs(p, {}).map(({ tuning: _t, ...r }) => parseConfig(RunConfig, r, r.run));
    expect(runs.map((r) => r.label)).toEqual(['SGD bz256', 'SGD+BN bz256 rbz32', 'dist.K-FAC bz256']);
    const kfac = runs.find((r) => r.method === 'kfac')!;
    if (kfac.optimizer.kind !== 'kfac' || kfac.model.arch !== 'alexnet') throw new Error('unexpected K-FAC run');
    const model = buildModel(kfac.model, [28, 28, 1], 10);
    try {
      const blocks = registerBlocks(model.layers, { conv: kfac.optimizer.conv, doublyFactored: kfac.optimizer.doublyFactored });
      const fc6 = blocks.find((b) => b.name === 'fc6');
      expect(fc6).toBeInstanceOf(DoublyFactoredBlock);
      const df = fc6 as DoublyFactoredBlock;
      // 28 → 14 → 7 → 4 (three 3×3/2 'same' max-pools), conv5 has round(256 · 0.25) = 64 channels
      expect([df.T, df.C, df.O]).toEqual([16, 64, 256]);
      expect(df.inputShape).toEqual([4, 4, 64]);
      expect(alexNetFc6Factors(kfac.model, 28)).toEqual([df.T, df.C, df.O]);
      // every other layer: a two-factor block (cheap App. A factors for the convs)
      for (const b of blocks.filter((x) => x.name !== 'fc6')) expect(b).toBeInstanceOf(KroneckerBlock);
      expect(blocks.map((b) => b.name)).toEqual(['conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8']);
    } finally {
      model.dispose();
    }
  });

  it.each([
    [224, 25],
    [227, 36],
  ])('the ImageNet stem at %i×%i gives fc6 a map of %i positions, as the report computes', (size, T) => {
    // width 1/16 keeps the model small; the spatial arithmetic is the full network's
    const cfg = { arch: 'alexnet' as const, bn: false, width: 1 / 16, fcUnits: 32, stem: 'imagenet' as const };
    const model = buildModel(cfg, [size, size, 3], 10);
    try {
      const fc6 = registerBlocks(model.layers, { conv: 'cheap', doublyFactored: { names: ['fc6'] } }).find((b) => b.name === 'fc6');
      expect(fc6).toBeInstanceOf(DoublyFactoredBlock);
      const df = fc6 as DoublyFactoredBlock;
      expect([df.T, df.C, df.O]).toEqual([T, 16, 32]);
      expect(alexNetFc6Factors(cfg, size)).toEqual([T, 16, 32]);
    } finally {
      model.dispose();
    }
    // the paper's network at its profile's 227×227: 36, 256, 4096 (paper section 4)
    expect(alexNetFc6Factors({ arch: 'alexnet', width: 1, fcUnits: 4096, stem: 'imagenet' }, 227)).toEqual([36, 256, 4096]);
  });

  it('gives K-FAC the paper-profile settings and one gradient worker fewer than SGD', () => {
    const p = resolveProfile(fig4, 'paper') as Parameters<typeof fig4.runs>[0];
    const runs = fig4.runs(p, {});
    const { tuning: _t, ...k } = runs.find((r) => r.method === 'kfac')!;
    const kfac = parseConfig(RunConfig, k, 'kfac');
    expect(kfac.batchSize).toBe(2048);
    if (kfac.optimizer.kind !== 'kfac') throw new Error('unexpected');
    expect(kfac.optimizer.damping).toBe(1e-3);
    expect(kfac.optimizer.conv).toBe('cheap');
    expect(kfac.optimizer.stepSize).toMatchObject({ rule: 'kl', c0: 0.01, decay: { rate: 0.96, every: 'half-epoch' } });
    expect(kfac.optimizer.doublyFactored).toEqual({ names: ['fc6'] });
    const bn = runs.find((r) => r.method === 'sgd+bn')!;
    expect(bn.label).toBe('SGD+BN bz2048 rbz256');
    const d = parseConfig(DistConfig, fig4.dist!(p, runs.find((r) => r.method === 'kfac')!), 'dist');
    expect(d.gradientWorkers).toBe(7);
    expect(d.inverse).toEqual({ kind: 'async' });
    const sd = fig4.dist!(p, bn);
    if (sd) expect(parseConfig(DistConfig, sd, 'dist').gradientWorkers).toBe(8);
  });
});
