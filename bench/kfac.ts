/**
 * K-FAC's cost against SGD's, same model and batch, measured in one run:
 *  - step time of SGD+momentum and of K-FAC (KFC and cheap conv factors) with inverses refreshed every 20 steps,
 *    averaged over 20 steps so that one refresh is included, and the ratio K-FAC / SGD (median of interleaved rounds);
 *  - the time to refresh every inverse of each quick model (float64 Cholesky on the CPU, this thread).
 */
import { initBackend } from '../src/backend';
import { median } from '../src/distributed/calibration';
import { KfacOptimizer } from '../src/kfac/optimizer';
import { KfacConfig } from '../src/kfac/optimizer';
import { linalgEngine } from '../src/linalg';
import { buildModel } from '../src/nn/zoo';
import { parseConfig, RunConfig } from '../src/train/config';
import { makeOptimizer, Trainer } from '../src/train/trainer';
import { QUICK_MODELS } from './models';
import * as tf from '@tensorflow/tfjs';

export function batchOf(bz: number, input: [number, number, number]) {
  const per = input[0] * input[1] * input[2];
  return {
    images: new Float32Array(bz * per).map((_, i) => Math.sin(i * 0.37)),
    labels: new Int32Array(bz).map((_, i) => i % 10),
    shape: [bz, ...input] as [number, number, number, number],
  };
}

/** A Trainer of one quick model with the optimizer `opt` (a RunConfig optimizer), as the K-FAC benches time it. */
export function benchTrainer(m: (typeof QUICK_MODELS)[number], bz: number, steps: number, name: string, opt: object) {
  const cfg = parseConfig(
    RunConfig,
    { label: name, run: 'bench', method: name, batchSize: bz, examples: bz * steps, bnChunk: m.bnChunk, model: m.model, optimizer: opt },
    'bench run',
  );
  const model = buildModel(cfg.model, m.input, 10, 0);
  const parts = makeOptimizer(cfg, model, { epochSize: 60000 });
  return { model, parts, trainer: new Trainer(model, parts, cfg, 0.99), batch: batchOf(bz, m.input) };
}

/**
 * Each optimizer's mean step time over `steps` steps (one inverse refresh included), measured in `rounds` interleaved
 * rounds: every round times each optimizer's `steps` steps in turn, so that the machine's drift over a minute (±20 %
 * on these VMs) reaches every optimizer of a round alike. A ratio to SGD is taken within each round and the median
 * over rounds is reported with its range.
 */
export async function benchKfac(steps = 20, rounds = 3) {
  const backend = await initBackend();
  const bz = 128;
  const rows: Record<string, string | number>[] = [];
  const cases = [QUICK_MODELS[0], QUICK_MODELS[1]];
  for (const m of cases) {
    // issue 9's targets: cheap factors with whole-batch statistics ≤ 1.2× SGD, KFC with a quarter of the batch ≤ 1.5×
    const optimizers: [string, object][] = [
      ['sgd', { kind: 'sgd', lr: 0.01 }],
      ['kfac-cheap (stats: whole batch)', { kind: 'kfac', conv: 'cheap', inverseEvery: 20, damping: 0.1 }],
      ['kfac-kfc (stats: ¼ batch)', { kind: 'kfac', conv: 'kfc', inverseEvery: 20, damping: 0.1, statsBatch: bz / 4 }],
      ['kfac-kfc (stats: whole batch)', { kind: 'kfac', conv: 'kfc', inverseEvery: 20, damping: 0.1 }],
      ['kfac-cheap (stats: separate forward)', { kind: 'kfac', conv: 'cheap', inverseEvery: 20, damping: 0.1, sharedForward: false }],
    ];
    const runs = optimizers.map(([name, opt]) => {
      const r = benchTrainer(m, bz, steps * rounds, name, opt);
      r.trainer.trainStep(r.batch); // warm-up (and K-FAC's first inverses)
      return { name, ...r, times: [] as number[] };
    });
    for (let round = 0; round < rounds; round++) {
      for (const r of runs) {
        const t0 = performance.now();
        for (let i = 0; i < steps; i++) r.trainer.trainStep(r.batch);
        r.times.push((performance.now() - t0) / 1000 / steps);
      }
    }
    const sgd = runs[0].times;
    for (const r of runs) {
      const ratios = r.times.map((t, i) => t / sgd[i]);
      rows.push({
        model: m.name,
        batch: bz,
        optimizer: r.name,
        's/step': median(r.times).toFixed(3),
        'ratio to SGD': median(ratios).toFixed(2),
        'range over rounds': `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`,
      });
      r.trainer.dispose();
      r.model.dispose();
    }
  }
  console.log(
    `\n## K-FAC step time vs SGD (backend ${backend.name}, batch ${bz}, inverses every 20 steps; median over ${rounds} interleaved rounds of ${steps} steps each, ratio taken within a round)`,
  );
  console.table(rows);

  const inv: Record<string, string | number>[] = [];
  for (const m of QUICK_MODELS) {
    for (const conv of ['kfc', 'cheap'] as const) {
      const model = buildModel(m.model, m.input, 10, 0);
      const k = new KfacOptimizer(model, KfacConfig.parse({ kind: 'kfac', conv, damping: 0.1 }), m.bnChunk);
      const x = tf.tensor4d(batchOf(32, m.input).images, [32, ...m.input]);
      k.accumulateStatistics(x, undefined);
      x.dispose();
      const dims = k.snapshot().map((s) => ('dA' in s ? Math.max(s.dA, s.dG) : 0));
      const t0 = performance.now();
      k.refreshInverses();
      const s = (performance.now() - t0) / 1000;
      inv.push({ model: m.name, conv, blocks: k.blocks.length, 'largest factor': Math.max(...dims), 'refresh all inverses (s)': s.toFixed(3) });
      k.dispose();
      model.dispose();
    }
  }
  console.log(`\n## Time to refresh every inverse of each quick model (float64, ${linalgEngine().engine}, this thread)`);
  console.table(inv);
  return { rows, inv };
}

if (process.argv[1]?.endsWith('kfac.ts')) await benchKfac();
