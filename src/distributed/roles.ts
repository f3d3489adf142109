/**
 * What each role computes, as functions of a message: the same code runs inside a worker thread (worker.ts, on a
 * replica) and in-line on the parameter server's thread (on its own model), so the two transports agree.
 */
import { threadId } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { type BlockInverses, computeInverses, type FisherBlock } from '../kfac/blocks';
import { KfacError } from '../kfac/errors';
import { computeStatistics } from '../kfac/statistics';
import { crossEntropy, errorCount, type Model } from '../nn/model';
import type { GradientResult, GradientTask, Inject, InverseResult, InverseTask, StatsResult, StatsTask, WireTensor } from './messages';

/** A clock in milliseconds that role costs are measured with. */
export type CostClock = () => number;
/** Elapsed real time (the default: what a role costs on this machine, competition included). */
export const wallMs: CostClock = () => performance.now();
/**
 * CPU time of this process: what a role costs when nothing else in the process runs at the same time (every role
 * in-line; the wasm backend is single-threaded), unaffected by other processes competing for the cores.
 */
export const cpuMs: CostClock = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Fresh copies of the model's parameters, ready to be transferred. */
export function wireParams(model: Model): WireTensor[] {
  const out: WireTensor[] = [];
  for (const [name, v] of model.params) out.push({ name, shape: v.shape.slice(), data: Float32Array.from(v.dataSync() as Float32Array) });
  return out;
}

/** Sets a replica's parameters from the wire. */
export function loadParams(model: Model, params: WireTensor[]): void {
  for (const p of params) {
    const v = model.params.get(p.name);
    if (!v) throw new Error(`replica has no parameter ${p.name}`);
    const t = tf.tensor(p.data, p.shape);
    v.assign(t);
    t.dispose();
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Applies a task's test-only injection (delay, throw, exit). */
export function applyInject(inject: Inject | undefined, inWorker: boolean): void {
  if (!inject) return;
  if (inject.delayMs) sleepSync(inject.delayMs);
  if (inject.throw) throw new Error(inject.throw);
  if (inject.exit) {
    if (inWorker) process.exit(1);
    throw new Error('injected exit (in-line)');
  }
}

/** Gradient of the mean cross-entropy on one shard at the model's current parameters (training mode). */
export function gradientShard(model: Model, t: Pick<GradientTask, 'step' | 'worker' | 'images' | 'labels' | 'shape' | 'bnChunk'>, now: CostClock = wallMs): GradientResult {
  const t0 = now();
  const named = [...model.params];
  const vars = named.map(([, v]) => v);
  const x = tf.tensor4d(t.images, t.shape);
  const y = tf.tensor1d(t.labels, 'int32');
  let err: tf.Scalar | null = null;
  const bn: { name: string; mean: tf.Tensor; variance: tf.Tensor }[] = [];
  const keep: tf.Tensor[] = [];
  try {
    const { value, grads } = tf.variableGrads(() => {
      const r = model.forward(x, { training: true, bnChunk: t.bnChunk });
      err = tf.keep(errorCount(r.logits, y));
      for (const [name, s] of r.bnStats) {
        keep.push(tf.keep(s.mean), tf.keep(s.variance));
        bn.push({ name, mean: s.mean, variance: s.variance });
      }
      return crossEntropy(r.logits, y);
    }, vars);
    const loss = value.dataSync()[0];
    const errors = (err as unknown as tf.Scalar).dataSync()[0];
    const out: WireTensor[] = named.map(([name, v]) => ({ name, shape: v.shape.slice(), data: Float32Array.from(grads[v.name].dataSync() as Float32Array) }));
    const bnStats = bn.map((b) => ({
      name: b.name,
      mean: Float32Array.from(b.mean.dataSync() as Float32Array),
      variance: Float32Array.from(b.variance.dataSync() as Float32Array),
    }));
    tf.dispose([value, ...Object.values(grads)]);
    return { kind: 'gradient', step: t.step, worker: t.worker, count: t.shape[0], loss, errors, grads: out, bnStats, ms: now() - t0 };
  } finally {
    tf.dispose([x, y, ...keep]);
    if (err) (err as tf.Scalar).dispose();
  }
}

/** Per-block statistics of the stats worker's own batch, targets sampled from the model (seeded per task). */
export function statsBatch(
  model: Model,
  blocks: readonly FisherBlock[],
  t: Pick<StatsTask, 'step' | 'images' | 'labels' | 'shape' | 'seed' | 'fisher' | 'bnChunk'>,
  now: CostClock = wallMs,
): StatsResult {
  const t0 = now();
  const x = tf.tensor4d(t.images, t.shape);
  try {
    const r = computeStatistics(model, x, {
      blocks,
      sampled: t.fisher === 'sampled' ? true : 'empirical',
      labels: t.labels,
      rng: seedrandom(t.seed),
      bnChunk: t.bnChunk,
    });
    return { kind: 'stats', step: t.step, seed: t.seed, stats: [...r.stats], ms: now() - t0 };
  } finally {
    x.dispose();
  }
}

/** Damped inverses of every snapshot (pure CPU float64). A block that fails is reported, not thrown. */
export function invertSnapshots(t: Pick<InverseTask, 'fromStep' | 'snapshots' | 'damping' | 'mode'>, now: CostClock = wallMs): InverseResult {
  const t0 = now();
  const inverses: BlockInverses[] = [];
  const failed: InverseResult['failed'] = [];
  const blockMs: Record<string, number> = {};
  for (const s of t.snapshots) {
    const b0 = now();
    try {
      inverses.push(computeInverses(s, t.damping[s.name], t.mode));
    } catch (e) {
      if (!(e instanceof KfacError)) throw e;
      failed.push({ name: s.name, message: e.message });
    }
    blockMs[s.name] = now() - b0;
  }
  return { kind: 'inverse', fromStep: t.fromStep, inverses, failed, blockMs, ms: now() - t0, threadId };
}
