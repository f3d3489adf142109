/**
 * A pool of worker threads for one role, with the failure policy. A task that throws inside its worker, or whose
 * worker thread dies, becomes a WorkerFault naming the role, the worker and the step. With onFault 'respawn' the task
 * is run again (piscina replaces a dead thread by a fresh one) up to `retries` times; with 'stop' the fault is thrown
 * to the parameter server, which ends the run cleanly (CSV rows written so far stay, the sidecar says 'failed').
 */
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { currentBackend } from '../backend';
import { collectBuffers, type Task, type TaskResult } from './messages';

export type Role = 'gradient' | 'stats' | 'inverse';

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
  worker?: number;
  message: string;
  action: 'respawned and recomputed' | 'stopped';
}

export class RolePool {
  private readonly pool: Piscina<Task, TaskResult>;
  readonly faults: FaultEvent[];
  private closed = false;

  constructor(
    readonly role: Role,
    readonly threads: number,
    readonly onFault: FaultPolicy,
    faults: FaultEvent[],
    readonly retries = 2,
  ) {
    this.faults = faults;
    this.pool = new Piscina<Task, TaskResult>({
      filename: WORKER_FILE,
      execArgv: workerExecArgv(),
      minThreads: threads,
      maxThreads: threads,
      concurrentTasksPerWorker: 1,
      idleTimeout: 60_000,
      // every thread runs the engine the parameter server runs (workers start it on their first task)
      workerData: { engine: currentBackend()?.activated ?? 'auto' } satisfies WorkerData,
    });
  }

  /**
   * Runs a task; its buffers are transferred to the worker (the caller must not use them afterwards). `retryTask`
   * rebuilds the task for a recomputation (the first one's buffers are gone); without it a retry cannot happen.
   */
  async run(task: Task, step: number, worker?: number, retryTask?: () => Task): Promise<TaskResult> {
    let attempt = 0;
    let t = task;
    for (;;) {
      try {
        return await this.pool.run(t, { transferList: collectBuffers(t) as never });
      } catch (e) {
        const err = e instanceof Error ? e : new Error(String(e));
        const fault = new WorkerFault(this.role, step, worker, err);
        if (this.closed) throw fault;
        const canRetry = this.onFault === 'respawn' && attempt < this.retries && retryTask;
        this.faults.push({ role: this.role, step, worker, message: fault.message, action: canRetry ? 'respawned and recomputed' : 'stopped' });
        if (!canRetry) throw fault;
        attempt++;
        t = retryTask!();
        // a recomputation never re-injects the fault
        delete t.inject;
      }
    }
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
