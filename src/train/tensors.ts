/**
 * Tensors as plain data (shape + Float32Array) and back: what checkpoints and the trainer's state are made of.
 * No Node dependency (checkpoint.ts writes these to files; the trainer and the browser demo use them as they are).
 */
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
