/**
 * The transports of the roles and their shared failure policy.
 *
 * A role that does not run in-line runs through a RoleTransport: `run(task)` hands the task to a worker of the role
 * and resolves with its result. Two transports implement it:
 *   RolePool       (this file) a pool of worker threads in this process (piscina)
 *   RedisRolePool  (redis/transport.ts) worker processes on any host, through Redis streams and binary blobs
 * Both apply the same failure policy (runWithFaultPolicy): a task that throws inside its worker, or whose worker dies,
 * becomes a WorkerFault naming the role, the worker and the step. With onFault 'respawn' the task is run again (piscina
 * replaces a dead thread by a fresh one; over Redis any live worker takes it) up to `retries` times; with 'stop' the
 * fault is thrown to the parameter server, which ends the run cleanly (CSV rows written so far stay, the sidecar says
 * 'failed'). A Redis worker process that stops answering is not a fault of its task: its task is taken over by
 * another worker (recorded as a FaultEvent with action 'taken over').
 */
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { currentBackend } from '../backend';
import { collectBuffers, type Task, type TaskResult } from './messages';

export type Role = 'gradient' | 'stats' | 'inverse';
export const ROLES: readonly Role[] = ['gradient', 'stats', 'inverse'];

/** What every worker thread is started with. */
export interface WorkerData {
  engine: string;
}
export type FaultPolicy = 'respawn' | 'stop';

/** Running from compiled JavaScript, the worker is the .js next to this file; from TypeScript, tsx loads the .ts. */
const COMPILED = import.meta.url.endsWith('.js');
const WORKER_FILE = fileURLToPath(new URL(COMPILED ? './worker.js' : './worker.ts', import.meta.url));

function workerExecArgv(): string[] {
  if (COMPILED) return [];
  const loader = createRequire(import.meta.url).resolve('tsx');
  return ['--import', pathToFileURL(loader).href];
}

export class WorkerFault extends Error {
  constructor(
    readonly role: Role,
    readonly step: number,
    readonly worker: number | undefined,
    readonly cause: Error,
  ) {
    super(`${role} worker${worker !== undefined ? ` ${worker}` : ''} failed at step ${step}: ${cause.message}`);
    this.name = 'WorkerFault';
  }
}

/** One fault as recorded for the sidecar and the tests. */
export interface FaultEvent {
  role: Role;
  step: number;
  /** the gradient shard (0..N-1) */
  worker?: number;
  message: string;
  action: 'respawned and recomputed' | 'stopped' | 'taken over';
  /** Redis: the worker process that held the task, the one that took it over, and how long the first had been silent */
  from?: string;
  by?: string;
  silentMs?: number;
  /** when it happened (ISO time) */
  at?: string;
}

/** How the parameter server hands a role's tasks to its workers (threads here, processes over Redis). */
export interface RoleTransport {
  readonly role: Role;
  /**
   * Runs a task on a worker of the role. Its buffers may be moved (the caller must not use them afterwards);
   * `retryTask` rebuilds the task for a recomputation (without it a retry cannot happen).
   */
  run(task: Task, step: number, worker?: number, retryTask?: () => Task): Promise<TaskResult>;
  /** live workers this transport runs itself (threads; 0 after close) */
  readonly liveThreads: number;
  close(): Promise<void>;
}

export interface FaultPolicyOptions {
  role: Role;
  onFault: FaultPolicy;
  retries: number;
  faults: FaultEvent[];
  /** true once the transport is closing: a failure then is not recorded */
  closed: () => boolean;
}

/** Runs `attempt(task)` under the failure policy (see the top of this file). */
export async function runWithFaultPolicy(
  o: FaultPolicyOptions,
  attempt: (t: Task) => Promise<TaskResult>,
  task: Task,
  step: number,
  worker?: number,
  retryTask?: () => Task,
): Promise<TaskResult> {
  let n = 0;
  let t = task;
  for (;;) {
    try {
      return await attempt(t);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      // transport failures (Redis lost, no worker) are not a worker's fault: they end the run as they are
      if ((err as { fatal?: boolean }).fatal) throw err;
      const fault = new WorkerFault(o.role, step, worker, err);
      if (o.closed()) throw fault;
      const canRetry = o.onFault === 'respawn' && n < o.retries && retryTask;
      o.faults.push({ role: o.role, step, worker, message: fault.message, action: canRetry ? 'respawned and recomputed' : 'stopped', at: new Date().toISOString() });
      if (!canRetry) throw fault;
      n++;
      t = retryTask!();
      // a recomputation never re-injects the fault
      delete t.inject;
    }
  }
}

/** The threaded transport: a pool of worker threads for one role. */
export class RolePool implements RoleTransport {
  private readonly pool: Piscina<Task, TaskResult>;
  readonly faults: FaultEvent[];
  private closed = false;

  constructor(
    readonly role: Role,
    readonly threads: number,
    readonly onFault: FaultPolicy,
    faults: FaultEvent[],
    readonly retries = 2,
    /** the engine each thread initialises (default: the parameter server's, `currentBackend()`) */
    backend?: string,
  ) {
    this.faults = faults;
    this.pool = new Piscina<Task, TaskResult>({
      filename: WORKER_FILE,
      execArgv: workerExecArgv(),
      minThreads: threads,
      maxThreads: threads,
      concurrentTasksPerWorker: 1,
      idleTimeout: 60_000,
      // every thread runs the named engine, else the one the parameter server runs (started on the first task)
      workerData: { engine: backend ?? currentBackend()?.activated ?? 'auto' } satisfies WorkerData,
    });
  }

  run(task: Task, step: number, worker?: number, retryTask?: () => Task): Promise<TaskResult> {
    return runWithFaultPolicy(
      { role: this.role, onFault: this.onFault, retries: this.retries, faults: this.faults, closed: () => this.closed },
      (t) => this.pool.run(t, { transferList: collectBuffers(t) as never }),
      task,
      step,
      worker,
      retryTask,
    );
  }

  /** Live worker threads (0 after close). */
  get liveThreads(): number {
    return this.pool.threads.length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.close({ force: true });
  }
}
