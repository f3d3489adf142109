/**
 * The piscina worker of every distributed role (gradient, stats, inverse). Each thread has its own tfjs instance:
 * it initialises the parameter server's engine (native or wasm) once and keeps one model replica (built from the task's ReplicaSpec) whose
 * parameters each task overwrites. Results go back with their buffers transferred, not copied.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { workerData } from 'node:worker_threads';
import { type BackendName, initBackend, setEngineThreads } from '../backend';
import { registerBlocks } from '../kfac/registry';
import type { FisherBlock } from '../kfac/blocks';
import type { Model } from '../nn/model';
import { buildModel } from '../nn/zoo';
import { collectBuffers, type ReplicaSpec, type Task, type TaskResult } from './messages';
import type { WorkerData } from './pool';
import { applyInject, gradientShard, invertSnapshots, loadParams, statsBatch } from './roles';

let ready: Promise<unknown> | null = null;
let replica: { key: string; model: Model; blocks: FisherBlock[] | null } | null = null;

function getReplica(spec: ReplicaSpec, withBlocks: boolean) {
  const key = JSON.stringify(spec);
  if (!replica || replica.key !== key) {
    replica?.model.dispose();
    const model = buildModel(spec.model, spec.inputShape, spec.numClasses, 0);
    replica = { key, model, blocks: null };
  }
  if (withBlocks && !replica.blocks) {
    const b: Partial<NonNullable<ReplicaSpec['blocks']>> = spec.blocks ?? {};
    replica.blocks = registerBlocks(replica.model.layers, { conv: b.conv ?? 'kfc', doublyFactored: b.doublyFactored, decay: b.emaDecay ?? 0.95 });
  }
  return replica;
}

export default async function run(task: Task): Promise<TaskResult> {
  applyInject(task.inject, true);
  let result: TaskResult;
  if (task.kind === 'inverse') {
    result = invertSnapshots(task);
  } else {
    ready ??= initBackend(((workerData as WorkerData | undefined)?.engine ?? 'auto') as BackendName).then(() =>
      setEngineThreads(Number(process.env.DKFAC_WORKER_THREADS ?? 1)),
    );
    await ready;
    if (task.kind === 'gradient') {
      const r = getReplica(task.spec, false);
      loadParams(r.model, task.params);
      result = gradientShard(r.model, task);
    } else {
      const r = getReplica(task.spec, true);
      loadParams(r.model, task.params);
      result = statsBatch(r.model, r.blocks!, task);
    }
  }
  return move({ [transferableSymbol]: collectBuffers(result), [valueSymbol]: result } as never) as unknown as TaskResult;
}
