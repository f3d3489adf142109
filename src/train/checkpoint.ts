/**
 * Checkpoints: the whole training state (parameters, batch-norm statistics, momentum, Polyak average, step counters,
 * and the optimizer's own state — for K-FAC the factor moving averages, inverses, damping and RNG) written with
 * Node's structured-clone serialiser, so typed arrays round-trip bit for bit. Written to a temporary file and renamed.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { deserialize, serialize } from 'node:v8';
import * as tf from '@tensorflow/tfjs';

export interface TensorData {
  shape: number[];
  data: Float32Array;
}

export function tensorData(t: tf.Tensor): TensorData {
  return { shape: t.shape.slice(), data: Float32Array.from(t.dataSync() as Float32Array) };
}

export function saveTensors(m: Map<string, tf.Tensor>): Map<string, TensorData> {
  return new Map([...m].map(([k, t]) => [k, tensorData(t)]));
}

/** Assigns saved values into existing variables (names must match exactly). */
export function assignTensors(vars: Map<string, tf.Variable>, saved: Map<string, TensorData>, what: string): void {
  for (const [k, v] of vars) {
    const s = saved.get(k);
    if (!s) throw new Error(`checkpoint has no ${what} '${k}'`);
    if (s.shape.join() !== v.shape.join()) throw new Error(`checkpoint ${what} '${k}' has shape [${s.shape}], expected [${v.shape}]`);
    tf.tidy(() => v.assign(tf.tensor(s.data, s.shape)));
  }
  for (const k of saved.keys()) if (!vars.has(k)) throw new Error(`checkpoint has an unknown ${what} '${k}'`);
}

export function writeCheckpoint(path: string, state: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, serialize(state));
  renameSync(tmp, path);
}

export function readCheckpoint<T>(path: string): T {
  try {
    return deserialize(readFileSync(path)) as T;
  } catch (e) {
    throw new Error(`${path}: not a readable checkpoint (${(e as Error).message})`);
  }
}
