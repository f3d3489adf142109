/**
 * The simulated cluster clock: a small discrete-event model of the paper's setup (section 6: N GPUs as gradient
 * workers, one stats worker, inverses on M CPU threads, the parameter server on the CPU), fed with the measured cost of
 * each role. It lets a 2-vCPU machine report what the step time would be with every role on its own hardware.
 *
 * One step k, starting at simulated time t_k:
 *   compute   C_k = T_k + max( max_i g_{k,i},  s_k ) the N gradient shards and the stats batch run in parallel; the
 *                                                   synchronous-SGD barrier waits for the slowest of them. s_k is
 *                                                   charged for synchronous statistics only: asynchronous (and lagged)
 *                                                   statistics run beside the steps (s_k = 0 but at the first step,
 *                                                   which waits for them), and SGD has none. T_k is the transfer
 *                                                   time of the phase's messages on the modelled network (network.ts:
 *                                                   parameters and examples down, gradients and statistics up; 0
 *                                                   without a network model)
 *   inverses  an inverse job submitted at simulated time t_sub (right after a step's compute phase) finishes at
 *             t_sub + X + makespan(block costs, M): its blocks are scheduled longest first on the M inverse threads,
 *             X being the modelled transfer of the snapshot and of the inverses (0 for inverse workers placed local).
 *             When the parameter server installs a job at the check point c_k = t_k + C_k of step k it waits
 *               W_k = max(0, finish − c_k)   for blocking schedules (sync every T: W_k = the whole makespan;
 *                                            lagged: only what is left after the lag),
 *               W_k = 0                      for the asynchronous schedule (the PS never waits; it installs whatever
 *                                            has finished).
 *   update    U_k = measured parameter-server time (statistics fold, snapshot, preconditioning, KL step, momentum,
 *             Polyak average)
 *   t_{k+1} = t_k + C_k + W_k + U_k
 * The paper gives no volumes or bandwidths: the network model is ours (network.ts; off unless DistConfig.network is
 * set). `commSeconds` is the part of the clock spent on modelled transfers on the critical path. The stats worker's
 * throughput is not modelled (async results are folded whenever they arrive in real time); costs are in milliseconds
 * (elapsed or CPU time: DistConfig.costClock), the clock in seconds.
 */

/** Longest-processing-time-first schedule of `costs` on `threads` identical threads; returns the makespan. */
export function makespan(costs: readonly number[], threads: number): number {
  const load = new Array<number>(Math.max(1, threads)).fill(0);
  for (const c of [...costs].sort((a, b) => b - a)) {
    let j = 0;
    for (let i = 1; i < load.length; i++) if (load[i] < load[j]) j = i;
    load[j] += c;
  }
  return Math.max(...load);
}

export class SimClock {
  /** simulated seconds so far */
  seconds = 0;
  /** of which modelled communication on the critical path */
  commSeconds = 0;
  private check = 0;
  private readonly submitted = new Map<number, number>();
  /** the parts of the last step, ms (for tests and the sidecar) */
  last = { compute: 0, wait: 0, update: 0, comm: 0 };

  constructor(readonly inverseThreads: number) {}

  /** For checkpoints: the clock, its last check point and the submission times of inverse jobs in flight. */
  state(): { seconds: number; commSeconds: number; check: number; submitted: [number, number][]; last: SimClock['last'] } {
    return { seconds: this.seconds, commSeconds: this.commSeconds, check: this.check, submitted: [...this.submitted], last: { ...this.last } };
  }

  restore(s: ReturnType<SimClock['state']>): void {
    this.seconds = s.seconds;
    this.commSeconds = s.commSeconds ?? 0;
    this.check = s.check;
    this.submitted.clear();
    for (const [id, t] of s.submitted) this.submitted.set(id, t);
    this.last = { ...s.last, comm: s.last.comm ?? 0 };
  }

  /**
   * The compute phase of a step: gradient shards (ms each, run in parallel), the stats batch (ms, or 0) and the
   * phase's modelled transfer time (ms, or 0).
   */
  compute(gradientMs: readonly number[], statsMs = 0, commMs = 0): void {
    const c = Math.max(0, ...gradientMs, statsMs) + commMs;
    this.last = { compute: c, wait: 0, update: 0, comm: commMs };
    this.seconds += c / 1000;
    this.commSeconds += commMs / 1000;
    this.check = this.seconds;
  }

  /** An inverse job `id` is handed to the inverse threads now (after this step's compute phase). */
  inverseSubmitted(id: number): void {
    this.submitted.set(id, this.check);
  }

  /**
   * Job `id` is installed at this step's check point; returns the simulated wait (ms) and adds it to the clock.
   * `transferMs` is the modelled transfer of its snapshot and inverses (the part of the wait it accounts for counts as
   * communication).
   */
  inverseInstalled(id: number, blockMs: readonly number[], blocking: boolean, transferMs = 0): number {
    const sub = this.submitted.get(id) ?? this.check;
    this.submitted.delete(id);
    const finish = sub + (transferMs + makespan(blockMs, this.inverseThreads)) / 1000;
    const wait = blocking ? Math.max(0, finish - this.seconds) * 1000 : 0;
    const comm = Math.min(wait, transferMs);
    this.last.wait += wait;
    this.last.comm += comm;
    this.seconds += wait / 1000;
    this.commSeconds += comm / 1000;
    return wait;
  }

  /** The parameter server's own work (ms). */
  update(ms: number): void {
    this.last.update += ms;
    this.seconds += ms / 1000;
  }
}
