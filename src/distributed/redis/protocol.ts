/**
 * The Redis transport's keys, stream entries and run descriptor, shared by the parameter server (transport.ts) and
 * the worker processes (worker.ts). Every key starts with the configured prefix (default 'dkfac'):
 *
 *   <p>:tasks:<role>              stream of the role's tasks (gradient, stats, inverse), with its consumer group 'workers'
 *   <p>:run:<runId>               the run descriptor (JSON, PX 15 s, refreshed every second by the parameter server)
 *   <p>:worker:<name>             a worker process's heartbeat (JSON, PX 3 s, refreshed every 500 ms)
 *   <p>:r:<runId>:p:<step>        parameters of one step (blob), published once per version
 *   <p>:r:<runId>:d:<task>        the examples of one task (blob)
 *   <p>:r:<runId>:x:<task>        the factor snapshot of one inverse task (blob)
 *   <p>:r:<runId>:res:<task>:<w>  the result of a task computed by worker w (blob)
 *   <p>:r:<runId>:results         stream of result notices, read by the parameter server (created by it, PX 60 s
 *                                 refreshed every second; workers add with NOMKSTREAM, so a dead run's stream is never
 *                                 created again)
 * Blobs have a TTL and are deleted once consumed; stream entries are deleted once acknowledged.
 *
 * A task entry: v=1, run, task (its id: g<step>.<shard>, s<seed>, i<fromStep>), kind (the role), step, meta (small
 * JSON: shard, seed, …), and the keys of its blobs (params, data | snap). A result entry: v=1, run, task, from (the
 * worker), key (the result blob) or error (a message), ms, bytesIn (blob bytes the worker read), and after a
 * takeover `claimedFrom` and `silentMs` (the previous holder and how long it had been silent).
 */
import { z } from 'zod';
import { ModelConfig } from '../../nn/zoo';
import type { Role } from '../pool';

export const PROTOCOL_VERSION = '1';
/** The consumer group of every role stream (one group per role's stream) */
export const GROUP = 'workers';

export class Keys {
  constructor(readonly prefix: string) {}
  tasks(role: Role): string {
    return `${this.prefix}:tasks:${role}`;
  }
  run(runId: string): string {
    return `${this.prefix}:run:${runId}`;
  }
  worker(name: string): string {
    return `${this.prefix}:worker:${name}`;
  }
  get workerPattern(): string {
    return `${this.prefix}:worker:*`;
  }
  ns(runId: string): string {
    return `${this.prefix}:r:${runId}`;
  }
  params(runId: string, step: number): string {
    return `${this.ns(runId)}:p:${step}`;
  }
  data(runId: string, task: string): string {
    return `${this.ns(runId)}:d:${task}`;
  }
  snap(runId: string, task: string): string {
    return `${this.ns(runId)}:x:${task}`;
  }
  result(runId: string, task: string, worker: string): string {
    return `${this.ns(runId)}:res:${task}:${worker}`;
  }
  results(runId: string): string {
    return `${this.ns(runId)}:results`;
  }
}

const Name = z.string().min(1).max(200);
const Shape = z.array(z.number().int().min(1)).max(8);

export const BlockDimsSchema = z.discriminatedUnion('kind', [
  z.strictObject({ name: Name, kind: z.literal('kronecker'), dA: z.number().int().min(1), dG: z.number().int().min(1) }),
  z.strictObject({ name: Name, kind: z.literal('doubly-factored'), dK: z.number().int().min(1), dPsi: z.number().int().min(1), dD: z.number().int().min(1), hasBias: z.boolean() }),
  z.strictObject({ name: Name, kind: z.literal('scale-shift'), d: z.number().int().min(1) }),
]);

/** What a worker learns of the run it serves (written by the parameter server). */
export const RunDescriptor = z.strictObject({
  v: z.literal(1),
  runId: z.string().regex(/^[A-Za-z0-9_.:-]{1,200}$/),
  experiment: z.string(),
  run: z.string(),
  label: z.string(),
  createdAt: z.string(),
  /** the parameter server: host and process id */
  ps: z.string(),
  spec: z.strictObject({
    model: ModelConfig,
    inputShape: z.tuple([z.number().int().min(1), z.number().int().min(1), z.number().int().min(1)]),
    numClasses: z.number().int().min(2),
    blocks: z
      .strictObject({
        conv: z.enum(['kfc', 'cheap']),
        doublyFactored: z
          .strictObject({ names: z.array(z.string()).optional(), minInputUnits: z.number().int().positive().optional() })
          .optional(),
        emaDecay: z.number(),
      })
      .optional(),
  }),
  data: z.strictObject({ dataset: z.string(), subset: z.string().optional() }),
  manifest: z.strictObject({
    params: z.array(z.strictObject({ name: Name, shape: Shape })),
    bn: z.array(z.strictObject({ name: Name, channels: z.number().int().min(1) })),
    blocks: z.array(BlockDimsSchema),
  }),
  roles: z.array(z.enum(['gradient', 'stats', 'inverse'])),
});
export type RunDescriptor = z.infer<typeof RunDescriptor>;

/** The small JSON part of a task entry. */
export const TaskMeta = z.strictObject({
  /** gradient: the shard index */
  worker: z.number().int().min(0).max(1023).optional(),
  /** examples in the task's batch (gradient, stats) */
  count: z.number().int().min(1).optional(),
  seed: z.string().max(200).optional(),
  fisher: z.enum(['sampled', 'empirical']).optional(),
  bnChunk: z.number().int().min(1).optional(),
  mode: z.enum(['factored', 'eigen']).optional(),
  costClock: z.enum(['wall', 'cpu']).optional(),
  inject: z
    .strictObject({ delayMs: z.number().min(0).max(600_000).optional(), throw: z.string().max(500).optional(), exit: z.boolean().optional() })
    .optional(),
});
export type TaskMeta = z.infer<typeof TaskMeta>;

/** A worker process's heartbeat value. */
export const WorkerInfo = z.object({
  name: z.string(),
  host: z.string(),
  pid: z.number(),
  roles: z.array(z.enum(['gradient', 'stats', 'inverse'])),
  threads: z.number(),
  backend: z.string(),
  busy: z.number(),
  serving: z.string().nullable(),
  since: z.string(),
});
export type WorkerInfo = z.infer<typeof WorkerInfo>;

/** A stream entry's fields (alternating names and values, as Buffers) as a map of strings, at most 64 fields. */
export function entryFields(raw: unknown): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (!Array.isArray(raw) || raw.length % 2 !== 0 || raw.length > 128) return out;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    const v = raw[i + 1];
    if (Buffer.isBuffer(k) && Buffer.isBuffer(v) && k.length <= 64 && v.length <= 65_536) out.set(k.toString('utf8'), v);
  }
  return out;
}

/** The task id of (step, shard) and friends: the identity every handler is idempotent on. */
export function taskId(t: { kind: Role; step?: number; worker?: number; seed?: string; fromStep?: number }): string {
  if (t.kind === 'gradient') return `g${t.step}.${t.worker}`;
  if (t.kind === 'stats') return `s${(t.seed ?? '').replace(/[^A-Za-z0-9_.:-]/g, '_')}`;
  return `i${t.fromStep}`;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
