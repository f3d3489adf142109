/**
 * A plain tf.layers CNN as a tfjs user writes it (not one of the suite's models): conv 3×3 'valid' ×2 with ReLU,
 * max pool, tf.layers.batchNormalization, dropout, a stride-2 'same' conv, average pool, dense 128, dropout, dense 10,
 * compiled with tf.train.momentum(0.01, 0.9) and trained by model.trainOnBatch at batch 256 on 28×28×1 inputs. Its
 * step on the native engine and on plain wasm, and in PyTorch (bench/torch_layers.py, the same net, where Debian's
 * python3-torch is installed), in alternating rounds so that each ratio is taken minutes apart at most; and where a
 * native step's time goes, by kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend';
import { median } from '../src/distributed/calibration';
import { torchReference } from './backend';

const BATCH = 256;

function model(): tf.LayersModel {
  const m = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, activation: 'relu' }),
      tf.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.batchNormalization(),
      tf.layers.dropout({ rate: 0.25 }),
      tf.layers.conv2d({ filters: 64, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }),
      tf.layers.averagePooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 128, activation: 'relu' }),
      tf.layers.dropout({ rate: 0.5 }),
      tf.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  m.compile({ optimizer: tf.train.momentum(0.01, 0.9), loss: 'categoricalCrossentropy' });
  return m;
}

/** Median seconds per model.trainOnBatch step over `steps` after 3 warm-up steps, on the active engine. */
async function stepTime(steps: number, profile = false): Promise<{ s: number; kernels?: [string, number][] }> {
  const m = model();
  const x = tf.randomUniform([BATCH, 28, 28, 1], 0, 1, 'float32', 3);
  const y = tf.oneHot(tf.tensor1d(Int32Array.from({ length: BATCH }, (_, i) => i % 10), 'int32'), 10);
  const ts: number[] = [];
  for (let i = 0; i < steps + 3; i++) {
    const t0 = performance.now();
    await m.trainOnBatch(x, y);
    if (i >= 3) ts.push((performance.now() - t0) / 1000);
  }
  let kernels: [string, number][] | undefined;
  if (profile) {
    const p = await tf.profile(async () => void (await m.trainOnBatch(x, y)));
    const by = new Map<string, number>();
    for (const k of p.kernels) by.set(k.name, (by.get(k.name) ?? 0) + (k.kernelTimeMs as number));
    kernels = [...by.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
  }
  tf.dispose([x, y]);
  m.dispose();
  return { s: median(ts), kernels };
}

export async function benchLayers(rounds = 2) {
  console.log(`tf.layers CNN (bench/layers.ts), model.trainOnBatch at batch ${BATCH}, median seconds per step, ${rounds} alternating rounds:`);
  const rows: { native?: number; wasm?: number; torchNchw?: number; torchCl?: number }[] = [];
  let kernels: [string, number][] | undefined;
  for (let r = 0; r < rounds; r++) {
    const row: (typeof rows)[number] = {};
    const info = await initBackend('auto');
    if (info.name === 'native') {
      const t = await stepTime(10, r === rounds - 1);
      row.native = t.s;
      kernels = t.kernels ?? kernels;
    }
    if (r === 0) {
      await initBackend('wasm');
      row.wasm = (await stepTime(3)).s;
    }
    const torch = torchReference([BATCH], 'torch_layers.py');
    if (typeof torch === 'string') {
      if (r === 0) console.log(`  ${torch}`);
    } else {
      row.torchNchw = torch.rows.find((q) => q.format === 'nchw')?.median_s;
      row.torchCl = torch.rows.find((q) => q.format === 'channels_last')?.median_s;
    }
    rows.push(row);
    const f = (v?: number) => (v === undefined ? '—' : `${(v * 1000).toFixed(0)} ms`);
    const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}×` : '—');
    const torchFaster = row.torchNchw === undefined || row.torchCl === undefined ? (row.torchNchw ?? row.torchCl) : Math.min(row.torchNchw, row.torchCl);
    console.log(
      `  round ${r + 1}: native ${f(row.native)}${row.wasm ? `, wasm ${f(row.wasm)} (native ÷ wasm ${ratio(row.native, row.wasm)})` : ''}; PyTorch NCHW ${f(row.torchNchw)}, channels_last ${f(row.torchCl)}; native ÷ PyTorch's faster ${ratio(row.native, torchFaster)}`,
    );
  }
  await initBackend('auto');
  if (kernels) console.log(`  a native step by kernel (ms): ${kernels.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await benchLayers();
