/**
 * Piscina worker of test/native-linalg.test.ts: LAPACK calls from worker threads at the same time. Every worker
 * waits at a barrier (a SharedArrayBuffer counter) until all have arrived, then inverts and decomposes its matrices.
 */
import { threadId } from 'node:worker_threads';
import '../src/backend/native.js'; // registers the addon's loader, as every Node entry does through src/backend
import { linalgEngine, randomSpd, spdInverseLapack, symEigLapack } from '../src/linalg/index.js';

export interface LinalgJob {
  n: number;
  seed: number;
}

export interface LinalgTask {
  jobs: LinalgJob[];
  barrier: SharedArrayBuffer;
  workers: number;
}

export default function run(task: LinalgTask) {
  const count = new Int32Array(task.barrier);
  Atomics.add(count, 0, 1);
  const deadline = Date.now() + 60_000;
  while (Atomics.load(count, 0) < task.workers && Date.now() < deadline) Atomics.wait(count, 0, Atomics.load(count, 0), 5);
  const arrivedTogether = Atomics.load(count, 0) >= task.workers;
  const out = task.jobs.map(({ n, seed }) => {
    const a = randomSpd(n, 0.01, seed);
    const eig = symEigLapack(a, n);
    return { inverse: spdInverseLapack(a, n), values: eig.values, vectors: eig.vectors };
  });
  return { threadId, engine: linalgEngine().engine, arrivedTogether, out };
}
