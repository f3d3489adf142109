/**
 * The compute engines' own figures, side by side in one run (run alone: `npx tsx bench/backend.ts`, or via
 * bench/index.ts):
 *
 * 1. SGD step time of conv3x3x32-pool-conv3x3x64-pool-dense256-dense10 on 32×32×3 at batch 32 and 128 on the native
 *    engine, on wasm, and in PyTorch (bench/torch_step.py, the same net and batch, where Debian's python3-torch is
 *    installed; skipped with a note otherwise), the effective GFLOP/s (forward FLOPs × 3 for forward + backward,
 *    divided by the step time) next to this machine's sgemm peak measured through the same engine in the same run;
 * 2. where a batch-128 step spends its time: top-level kernels by self time (composite kernels such as
 *    Conv2DBackpropFilter include the kernels they call);
 * 3. matMul GFLOP/s at 1024² for every transpose combination on wasm, with the fixes and with the stock kernel.
 *
 * This machine is shared and noisy (±15 % and more when other processes run): the load average is printed with the
 * figures, steps are repeated and the median and minimum are reported, and the process's CPU time per step (close
 * to the wall time on an idle machine; much smaller than it when other processes compete for the two vCPUs).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { type BackendInfo, initBackend } from '../src/backend';
import { originalWasmKernels } from '../src/backend/wasm-fixes';

export interface BackendBench {
  backend: BackendInfo;
  loadAverage: number[];
  steps: { batch: number; medianS: number; minS: number; cpuS: number; gflops: number }[];
  topKernels: { kernel: string; calls: number; selfMs: number; cpuMs: number; share: number }[];
  matmul: { variant: string; fixedGflops: number; stockGflops?: number }[];
}

/** The benchmark CNN: parameters and a loss function. */
function makeCnn(batch: number) {
  const he = (shape: number[], fanIn: number, seed: number) =>
    tf.variable(tf.randomNormal(shape, 0, Math.sqrt(2 / fanIn), 'float32', seed));
  const p = {
    w1: he([3, 3, 3, 32], 27, 1),
    b1: tf.variable(tf.zeros([32])),
    w2: he([3, 3, 32, 64], 288, 2),
    b2: tf.variable(tf.zeros([64])),
    w3: he([4096, 256], 4096, 3),
    b3: tf.variable(tf.zeros([256])),
    w4: he([256, 10], 256, 4),
    b4: tf.variable(tf.zeros([10])),
  };
  const x = tf.randomUniform([batch, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
  const y = tf.oneHot(tf.tensor1d(Int32Array.from({ length: batch }, (_, i) => i % 10), 'int32'), 10);
  const loss = () =>
    tf.tidy(() => {
      let h = tf.relu(tf.add(tf.conv2d(x, p.w1 as tf.Tensor4D, 1, 'same'), p.b1)) as tf.Tensor4D;
      h = tf.maxPool(h, 2, 2, 'valid');
      h = tf.relu(tf.add(tf.conv2d(h, p.w2 as tf.Tensor4D, 1, 'same'), p.b2)) as tf.Tensor4D;
      h = tf.maxPool(h, 2, 2, 'valid');
      const f = tf.relu(tf.add(tf.matMul(h.reshape([batch, 4096]), p.w3 as tf.Tensor2D), p.b3));
      return tf.losses.softmaxCrossEntropy(y, tf.add(tf.matMul(f, p.w4 as tf.Tensor2D), p.b4)) as tf.Scalar;
    });
  const opt = tf.train.sgd(0.01);
  const step = () => {
    const l = opt.minimize(loss, true)!;
    l.dataSync();
    l.dispose();
  };
  const forwardFlops = 2 * batch * (32 * 32 * 27 * 32 + 16 * 16 * 288 * 64 + 4096 * 256 + 256 * 10);
  const dispose = () => {
    tf.dispose([...Object.values(p), x, y]);
    opt.dispose();
  };
  return { step, forwardFlops, dispose };
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

/** Time `fn` after `warm` untimed calls; returns all wall-clock timings in seconds. */
function timeRuns(fn: () => void, warm: number, runs: number, cpuOut?: number[]): number[] {
  for (let i = 0; i < warm; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    cpuOut?.push((c.user + c.system) / 1e6);
  }
  return ts;
}

/**
 * Self time per kernel over `fn`, counting only kernels called at the top level
 * (kernels called from inside composite kernels are part of their caller's time).
 * Wraps every kernel of the active backend for the duration of the call.
 */
export function profileTopLevelKernels(fn: () => void): Map<string, { calls: number; ms: number; cpuMs: number }> {
  const backendName = tf.getBackend();
  const configs = tf.getKernelsForBackend(backendName);
  const stats = new Map<string, { calls: number; ms: number; cpuMs: number }>();
  let depth = 0;
  for (const k of configs) {
    tf.unregisterKernel(k.kernelName, backendName);
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        if (depth > 0) return k.kernelFunc(args);
        depth++;
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        try {
          return k.kernelFunc(args);
        } finally {
          const s = stats.get(k.kernelName) ?? { calls: 0, ms: 0, cpuMs: 0 };
          s.calls++;
          s.ms += performance.now() - t0;
          const c = process.cpuUsage(c0);
          s.cpuMs += (c.user + c.system) / 1000;
          stats.set(k.kernelName, s);
          depth--;
        }
      },
    });
  }
  try {
    fn();
  } finally {
    for (const k of configs) {
      tf.unregisterKernel(k.kernelName, backendName);
      tf.registerKernel(k);
    }
  }
  return stats;
}

/** GFLOP/s of a 1024² product, with the registered (fixed) kernel and with the stock wasm kernel. */
function benchMatmul(n = 1024): BackendBench['matmul'] {
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 7);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 8);
  const flops = 2 * n ** 3;
  const stock = originalWasmKernels.get('BatchMatMul')?.kernelFunc;
  const rows: BackendBench['matmul'] = [];
  for (const [ta, tb] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    const fixed = median(
      timeRuns(
        () => {
          const c = tf.matMul(a, b, ta, tb);
          c.dataSync();
          c.dispose();
        },
        1,
        5,
      ),
    );
    let stockS: number | undefined;
    if (stock && tf.getBackend() === 'wasm') {
      const be = tf.backend() as unknown as { disposeData(id: object): void };
      // The stock transposed products take seconds each: one run.
      stockS = median(
        timeRuns(
          () => {
            const out = stock({ inputs: { a, b }, backend: be, attrs: { transposeA: ta, transposeB: tb } }) as tf.TensorInfo;
            be.disposeData(out.dataId);
          },
          ta || tb ? 0 : 1,
          ta || tb ? 1 : 3,
        ),
      );
    }
    rows.push({
      variant: `${ta ? 'Aᵀ' : 'A'}·${tb ? 'Bᵀ' : 'B'}`,
      fixedGflops: flops / fixed / 1e9,
      stockGflops: stockS === undefined ? undefined : flops / stockS / 1e9,
    });
  }
  tf.dispose([a, b]);
  return rows;
}

/**
 * A PyTorch reference (bench/torch_step.py, or another script of bench/ with the same output) where Debian's
 * python3-torch is installed, else the reason it is not.
 */
export function torchReference(batches: number[], scriptName = 'torch_step.py'): { rows: { format: string; batch: number; median_s: number; min_s: number }[]; torch: string; threads: number } | string {
  const script = fileURLToPath(new URL(`./${scriptName}`, import.meta.url));
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const r = spawnSync(python, [script, ...batches.map(String)], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) {
    const why = /No module named 'torch'/.test(r.stderr ?? '') ? "python3-torch is not installed (apt-get install python3-torch)" : (r.stderr || r.error?.message || 'failed').trim().split('\n').pop();
    return `PyTorch reference skipped: ${why}`;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** GFLOP/s of a float32 GEMM (n³, n = 2048) through the active engine's matMul: on the native engine, the machine's peak. */
function sgemmPeak(n = 2048): number {
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 11);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 12);
  const ts = timeRuns(() => {
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
  }, 1, 5);
  tf.dispose([a, b]);
  return (2 * n ** 3) / Math.min(...ts) / 1e9;
}

/** The CNN's SGD step at `batches` on the active engine. */
function stepTimes(batches: readonly number[]): BackendBench['steps'] {
  const steps: BackendBench['steps'] = [];
  for (const batch of batches) {
    const cnn = makeCnn(batch);
    const cpu: number[] = [];
    const ts = timeRuns(cnn.step, 3, batch <= 32 ? 12 : 8, cpu);
    const med = median(ts);
    steps.push({ batch, medianS: med, minS: Math.min(...ts), cpuS: median(cpu), gflops: (3 * cnn.forwardFlops) / med / 1e9 });
    cnn.dispose();
  }
  return steps;
}

export async function benchBackend(): Promise<BackendBench> {
  const load = loadavg().map((v) => Math.round(v * 100) / 100);
  const batches = [32, 128] as const;
  const engines: { info: BackendInfo; steps: BackendBench['steps'] }[] = [];
  // the machine's float32 GEMM peak, measured on the native engine (oneDNN) when it is there, else on wasm
  let peak = 0;
  for (const name of ['native', 'wasm'] as const) {
    let info: BackendInfo;
    try {
      info = await initBackend(name);
    } catch (e) {
      console.log(`(${name}: ${(e as Error).message})`);
      continue;
    }
    engines.push({ info, steps: stepTimes(batches) });
    if (!peak) peak = sgemmPeak();
  }
  const torch = torchReference([...batches]);
  const backend = engines[0]!.info;
  console.log(`\n## Engines: ${engines.map((e) => `${e.info.name} (${e.info.version})`).join('; ')}`);
  console.log(`load average ${load.join(' ')} on ${availableParallelism()} CPUs (figures are unreliable when it exceeds the CPU count)`);
  console.log('\n### SGD step of conv3x3x32-pool-conv3x3x64-pool-dense256-dense10 on 32×32×3, each engine and PyTorch in this run');
  const torchBest = (b: number) => (typeof torch === 'string' ? undefined : Math.min(...torch.rows.filter((r) => r.batch === b).map((r) => r.median_s)));
  const native = engines.find((e) => e.info.name === 'native');
  const wasm = engines.find((e) => e.info.name === 'wasm');
  console.table(
    batches.flatMap((b) =>
      engines.map((e) => {
        const s = e.steps.find((x) => x.batch === b)!;
        const t = torchBest(b);
        return {
          engine: e.info.name,
          batch: b,
          's/step (median)': s.medianS.toFixed(4),
          'CPU s/step': s.cpuS.toFixed(4),
          'effective GFLOP/s': s.gflops.toFixed(1),
          'sgemm peak GFLOP/s (same run)': peak.toFixed(0),
          'effective ÷ peak': `${((100 * s.gflops) / peak).toFixed(0)} %`,
          '÷ PyTorch step': t === undefined ? '-' : (s.medianS / t).toFixed(2),
          '÷ wasm step': wasm ? (s.medianS / wasm.steps.find((x) => x.batch === b)!.medianS).toFixed(2) : '-',
        };
      }),
    ),
  );
  if (typeof torch === 'string') console.log(torch);
  else {
    console.log(`PyTorch ${torch.torch} (${torch.threads} threads), same net and batch (bench/torch_step.py):`);
    console.table(torch.rows.map((r) => ({ format: r.format, batch: r.batch, 's/step (median)': r.median_s.toFixed(4), 's/step (min)': r.min_s.toFixed(4) })));
  }

  let topKernels: BackendBench['topKernels'] = [];
  await initBackend(native ? 'native' : 'wasm');
  const cnn = makeCnn(128);
  cnn.step();
  const stats = profileTopLevelKernels(cnn.step);
  cnn.dispose();
  const total = [...stats.values()].reduce((s, v) => s + v.ms, 0);
  topKernels = [...stats]
    .map(([kernel, v]) => ({ kernel, calls: v.calls, selfMs: v.ms, cpuMs: v.cpuMs, share: v.ms / total }))
    .sort((x, y) => y.selfMs - x.selfMs)
    .slice(0, 12);
  console.log(`### Where a batch-128 step spends its time on ${native ? 'native' : 'wasm'} (top-level kernels, self time of one profiled step)`);
  console.table(
    topKernels.map((k) => ({
      kernel: k.kernel,
      calls: k.calls,
      ms: k.selfMs.toFixed(1),
      'CPU ms': k.cpuMs.toFixed(1),
      share: `${(100 * k.share).toFixed(1)} %`,
    })),
  );

  await initBackend('wasm');
  const matmul = benchMatmul();
  console.log('### matMul 1024×1024×1024 on wasm (GFLOP/s): the wasm training fixes against the stock kernel');
  console.table(
    matmul.map((m) => ({
      product: m.variant,
      'with fixes': m.fixedGflops.toFixed(2),
      'stock wasm kernel': m.stockGflops === undefined ? '-' : m.stockGflops.toFixed(2),
    })),
  );
  await initBackend();
  const steps = (native ?? engines[0]!).steps;
  return { backend, loadAverage: load, steps, topKernels, matmul };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await benchBackend();
}
