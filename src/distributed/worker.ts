/**
 * The piscina worker of every distributed role (gradient, stats, inverse). Each thread has its own tfjs instance:
 * it initialises its engine once (the pool's: the parameter server's own, or a Redis worker process's --backend)
 * and keeps one model replica (built from the task's ReplicaSpec) whose parameters each task overwrites. Results go
 * back with their buffers transferred, not copied. Role costs are timed with the task's cost clock.
 */
import { workerData } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { type BackendName, initBackend, setEngineThreads } from '../backend';
import { registerBlocks } from '../kfac/registry';
import type { FisherBlock } from '../kfac/blocks';
import type { Model } from '../nn/model';
import { buildModel } from '../nn/zoo';
import { collectBuffers, type ReplicaSpec, type Task, type TaskResult } from './messages';
import type { WorkerData } from './pool';
import { applyInject, cpuMs, gradientShard, invertSnapshots, loadParams, statsBatch, wallMs } from './roles';

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
  const now = task.costClock === 'cpu' ? cpuMs : wallMs;
  let result: TaskResult;
  if (task.kind === 'inverse') {
    result = invertSnapshots(task, now);
  } else {
    ready ??= initBackend(((workerData as WorkerData | undefined)?.engine ?? 'auto') as BackendName).then(() =>
      setEngineThreads(Number(process.env.DKFAC_WORKER_THREADS ?? 1)),
    );
    await ready;
    if (task.kind === 'gradient') {
      const r = getReplica(task.spec, false);
      loadParams(r.model, task.params);
      result = gradientShard(r.model, task, now);
    } else {
      const r = getReplica(task.spec, true);
      loadParams(r.model, task.params);
      result = statsBatch(r.model, r.blocks!, task, now);
    }
  }
  return move({ [transferableSymbol]: collectBuffers(result), [valueSymbol]: result } as never) as unknown as TaskResult;
}
