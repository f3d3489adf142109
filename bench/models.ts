/**
 * Training-step time of the zoo's quick models per batch size, and the effective GFLOP/s (forward FLOPs of the conv
 * and dense layers × 3 for forward + backward, divided by the measured step time).
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend';
import type { LayerInfo } from '../src/nn/layers';
import { buildModel, ModelConfig } from '../src/nn/zoo';
import { parseConfig, RunConfig } from '../src/train/config';
import { makeOptimizer, Trainer } from '../src/train/trainer';

/** Forward multiply-adds ×2 of the parameterised layers, per example. */
export function forwardFlops(layers: LayerInfo[]): number {
  let f = 0;
  for (const l of layers) {
    if (l.kind === 'dense') f += 2 * l.inUnits * l.outUnits;
    else if (l.kind === 'conv2d') f += 2 * l.outSize[0] * l.outSize[1] * l.kernel[0] * l.kernel[1] * l.inChannels * l.outChannels;
  }
  return f;
}

export const QUICK_MODELS: { name: string; model: ModelConfig; input: [number, number, number]; bnChunk?: number }[] = [
  { name: 'cifarnet (32×32×3)', model: ModelConfig.parse({ arch: 'cifarnet', bn: false }), input: [32, 32, 3] },
  { name: 'googlenet quick (28×28×1)', model: ModelConfig.parse({ arch: 'googlenet', bn: true, width: 0.25, stem: 'small', stages: [1, 1, 0] }), input: [28, 28, 1], bnChunk: 32 },
  { name: 'alexnet quick (28×28×1)', model: ModelConfig.parse({ arch: 'alexnet', bn: false, width: 0.25, fcUnits: 256, stem: 'small' }), input: [28, 28, 1] },
  { name: 'resnet quick (28×28×1)', model: ModelConfig.parse({ arch: 'resnet', bn: true, width: 0.25, blocks: [1, 1, 1], stem: 'small' }), input: [28, 28, 1], bnChunk: 32 },
];

/** One model's SGD step time at batch `bz` on the active engine (seconds, mean of `steps` after a warm-up). */
function sgdStep(m: (typeof QUICK_MODELS)[number], bz: number, steps: number): { s: number; params: number; gflops: number; heapMB: number } {
  const cfg = parseConfig(
    RunConfig,
    { label: m.name, run: 'bench', method: 'sgd', batchSize: bz, examples: bz * steps, bnChunk: m.bnChunk && Math.min(m.bnChunk, bz), model: m.model, optimizer: { kind: 'sgd', lr: 0.01 } },
    'bench run',
  );
  const model = buildModel(cfg.model, m.input, 10, 0);
  const tr = new Trainer(model, makeOptimizer(cfg, model, { epochSize: 10000 }), cfg, 0.99);
  const per = m.input[0] * m.input[1] * m.input[2];
  const batch = {
    images: new Float32Array(bz * per).map((_, i) => Math.sin(i * 0.37)),
    labels: new Int32Array(bz).map((_, i) => i % 10),
    shape: [bz, ...m.input] as [number, number, number, number],
  };
  tr.trainStep(batch); // warm-up: kernels compiled, buffers allocated
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) tr.trainStep(batch);
  const s = (performance.now() - t0) / 1000 / steps;
  // the wasm heap never shrinks: its size after the steps is the peak so far in this engine (both engines use it)
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.length ?? 0;
  const out = { s, params: model.numParams(), gflops: (3 * forwardFlops(model.layers) * bz) / s / 1e9, heapMB: heap / 2 ** 20 };
  tr.dispose();
  model.dispose();
  return out;
}

/**
 * The quick models' SGD step at the batch sizes their figures use, on the native engine and on wasm in one run, and
 * the ratio native ÷ wasm (issue 9's target: ≤ 0.3).
 */
export async function benchModels(batchSizes = [32, 128, 256], steps = 4) {
  const engines: string[] = [];
  const times = new Map<string, { s: number; params: number; gflops: number; heapMB: number }>();
  for (const engine of ['native', 'wasm'] as const) {
    try {
      await initBackend(engine);
    } catch (e) {
      console.log(`(${engine}: ${(e as Error).message})`);
      continue;
    }
    engines.push(engine);
    for (const m of QUICK_MODELS) for (const bz of batchSizes) times.set(`${engine}|${m.name}|${bz}`, sgdStep(m, bz, steps));
  }
  const rows: Record<string, string | number>[] = [];
  for (const m of QUICK_MODELS) {
    for (const bz of batchSizes) {
      const row: Record<string, string | number> = { model: m.name, batch: bz, params: times.get(`${engines[0]}|${m.name}|${bz}`)!.params };
      for (const e of engines) {
        const t = times.get(`${e}|${m.name}|${bz}`)!;
        row[`${e} s/step`] = t.s.toFixed(3);
        row[`${e} GFLOP/s`] = t.gflops.toFixed(1);
      }
      row['wasm heap peak MB'] = Math.round(times.get(`${engines[0]}|${m.name}|${bz}`)!.heapMB);
      if (engines.length === 2) row['native ÷ wasm'] = (times.get(`native|${m.name}|${bz}`)!.s / times.get(`wasm|${m.name}|${bz}`)!.s).toFixed(2);
      rows.push(row);
    }
  }
  console.log(`\n## Training step time of the quick models (SGD+momentum, ${steps} timed steps after 1 warm-up, engines ${engines.join(' and ')} in this run)`);
  console.table(rows);
  await initBackend();
  return rows;
}

if (process.argv[1]?.endsWith('models.ts')) await benchModels();
