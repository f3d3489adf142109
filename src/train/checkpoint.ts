/**
 * Checkpoints: the whole training state (parameters, batch-norm statistics, momentum, Polyak average, step counters,
 * and the optimizer's own state — for K-FAC the factor moving averages, inverses, damping and RNG) written with
 * Node's structured-clone serialiser, so typed arrays round-trip bit for bit. Written to a temporary file and renamed.
 * (The tensors-as-data helpers are in tensors.ts, free of Node modules.)
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { deserialize, serialize } from 'node:v8';

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
