/**
 * The messages the distributed roles exchange (paper section 3, Figure 1), as plain structured-cloneable data. Every
 * large array travels as a typed array whose buffer is *transferred* (moved, not copied) between threads; the same
 * messages are passed by reference in the in-line transport.
 *
 *   parameter server → gradient worker   GradientTask  { step, params (Float32Array per tensor), shard of the batch }
 *   gradient worker  → parameter server  GradientResult{ step, count, loss, errors, grads (Float32Array per tensor), BN batch stats }
 *   parameter server → stats worker      StatsTask     { step, params, its own batch, sampling seed }
 *   stats worker     → parameter server  StatsResult   { step, per-block statistics (Float64Array) }
 *   parameter server → inverse worker    InverseTask   { fromStep, factor snapshots (Float64Array), damping per block }
 *   inverse worker   → parameter server  InverseResult { fromStep, inverses (Float64Array) per block, failures }
 */
import type { BlockInverses, BlockSnapshot, BlockStats, DampingMode } from '../kfac/blocks';
import type { ModelConfig } from '../nn/zoo';
import type { KfacConfig } from '../kfac/optimizer';

/** How a replica is built in a worker: the same config, input shape and classes as the parameter server's model. */
export interface ReplicaSpec {
  model: ModelConfig;
  inputShape: [number, number, number];
  numClasses: number;
  /** the K-FAC block registration (stats worker only) */
  blocks?: Pick<KfacConfig, 'conv' | 'doublyFactored' | 'emaDecay'>;
}

export interface WireTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** What a worker times its task with: elapsed time ('wall') or its process's CPU time ('cpu'; see roles.ts). */
export type CostClockName = 'wall' | 'cpu';

/** Test-only fault and delay injection, carried by a task. */
export interface Inject {
  /** sleep this long before computing (slows an inverse worker down so that staleness appears) */
  delayMs?: number;
  /** throw an Error inside the worker */
  throw?: string;
  /** end the worker thread abruptly (process.exit inside a worker thread ends only that thread) */
  exit?: boolean;
}

export interface GradientTask {
  kind: 'gradient';
  spec: ReplicaSpec;
  step: number;
  /** which gradient worker (0..N-1) this shard belongs to */
  worker: number;
  params: WireTensor[];
  images: Float32Array;
  labels: Int32Array;
  shape: [number, number, number, number];
  bnChunk?: number;
  inject?: Inject;
  costClock?: CostClockName;
}

export interface GradientResult {
  kind: 'gradient';
  step: number;
  worker: number;
  /** examples in the shard */
  count: number;
  /** mean cross-entropy and error count on the shard */
  loss: number;
  errors: number;
  grads: WireTensor[];
  /** per batch-norm layer: mean and variance of this shard (training mode) */
  bnStats: { name: string; mean: Float32Array; variance: Float32Array }[];
  /** compute time inside the worker, ms */
  ms: number;
}

export interface StatsTask {
  kind: 'stats';
  spec: ReplicaSpec;
  step: number;
  params: WireTensor[];
  images: Float32Array;
  labels: Int32Array;
  shape: [number, number, number, number];
  /** seed of the target sampler for this task ('sampled' Fisher); the labels are used for 'empirical' */
  seed: string;
  fisher: 'sampled' | 'empirical';
  bnChunk?: number;
  inject?: Inject;
  costClock?: CostClockName;
}

export interface StatsResult {
  kind: 'stats';
  /** the step of the parameters the statistics were computed at */
  step: number;
  /** the task's sampling seed (identifies the task) */
  seed: string;
  stats: [string, BlockStats][];
  ms: number;
}

export interface InverseTask {
  kind: 'inverse';
  /** the step whose factors the snapshot holds */
  fromStep: number;
  snapshots: BlockSnapshot[];
  damping: Record<string, number>;
  mode: DampingMode;
  inject?: Inject;
  costClock?: CostClockName;
}

export interface InverseResult {
  kind: 'inverse';
  fromStep: number;
  inverses: BlockInverses[];
  /** blocks whose inversion failed (non-finite, not PD): the parameter server applies its failure policy to them */
  failed: { name: string; message: string }[];
  /** per-block inversion time, ms (the simulated clock schedules these over M inverse threads) */
  blockMs: Record<string, number>;
  ms: number;
  /** worker_threads threadId of the thread that computed it (0: the main thread) */
  threadId: number;
}

export type Task = GradientTask | StatsTask | InverseTask;
export type TaskResult = GradientResult | StatsResult | InverseResult;

/** Every ArrayBuffer reachable from `v` (typed arrays inside objects, arrays and Map values), each once. */
export function collectBuffers(v: unknown, out = new Set<ArrayBuffer>()): ArrayBuffer[] {
  if (v === null || typeof v !== 'object') return [...out];
  if (ArrayBuffer.isView(v)) {
    if (v.buffer instanceof ArrayBuffer) out.add(v.buffer);
  } else if (v instanceof ArrayBuffer) {
    out.add(v);
  } else if (Array.isArray(v)) {
    for (const x of v) collectBuffers(x, out);
  } else if (v instanceof Map) {
    for (const x of v.values()) collectBuffers(x, out);
  } else {
    for (const x of Object.values(v)) collectBuffers(x, out);
  }
  return [...out];
}
