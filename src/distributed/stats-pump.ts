/**
 * The asynchronous stats worker [P §3, Fig. 1]: "statistics as fast as the stats worker runs". The pump keeps one
 * stats task in flight on the stats worker (a thread or a Redis worker process) at all times: whenever a task finishes, the next one is built at
 * once from the stats worker's own next batch and the newest parameters the parameter server has (tagged with their
 * step), and sent. Finished results wait in a queue until the parameter server takes them (`take`, once per step);
 * it never waits for one, except when nothing was ever folded (the first step needs statistics before the first
 * inverses). A worker fault under onFault 'stop' is rethrown at the next take.
 */
import type { StatsResult, StatsTask } from './messages';
import type { RoleTransport } from './pool';

export interface PumpTask {
  task: StatsTask;
  /** a fresh copy of the same task for a recomputation (the first one's buffers were transferred) */
  retry: () => StatsTask;
}

export class StatsPump {
  private inFlight: Promise<void> | null = null;
  private arrived: StatsResult[] = [];
  private error: unknown = null;
  private stopped = false;
  /** results delivered to the parameter server so far */
  delivered = 0;

  constructor(
    private readonly pool: RoleTransport,
    private readonly next: () => Promise<PumpTask>,
  ) {}

  /** Starts a task if none is in flight (called at every step; a finished task starts the next one itself). */
  kick(): void {
    if (this.inFlight || this.stopped || this.error) return;
    this.inFlight = (async () => {
      const { task, retry } = await this.next();
      if (this.stopped) return;
      const r = (await this.pool.run(task, task.step, undefined, retry)) as StatsResult;
      if (!this.stopped) this.arrived.push(r);
    })()
      .catch((e) => {
        if (!this.stopped) this.error = e ?? new Error('stats task failed');
      })
      .finally(() => {
        this.inFlight = null;
        this.kick();
      });
  }

  /** Every result that has arrived, oldest first; with `wait`, waits until there is at least one. */
  async take(wait: boolean): Promise<StatsResult[]> {
    // let finished workers' messages in
    await new Promise((r) => setImmediate(r));
    while (wait && this.arrived.length === 0 && !this.error && !this.stopped) {
      this.kick();
      await (this.inFlight ?? new Promise((r) => setImmediate(r)));
    }
    if (this.error) throw this.error;
    const out = this.arrived;
    this.arrived = [];
    this.delivered += out.length;
    return out;
  }

  /** No new task is started; a task in flight is abandoned (the pool's close rejects it, and that is ignored). */
  stop(): void {
    this.stopped = true;
  }
}
