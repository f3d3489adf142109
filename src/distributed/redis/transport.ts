/**
 * The parameter server's side of the Redis transport: one RedisRun per run, and a RedisRolePool (a RoleTransport,
 * like the threaded RolePool) per role on top of it.
 *
 * Submitting a task: its tensors go into blobs under their own keys (SET … PX ttl; the parameters once per step and
 * version, shared by every task that needs them), then one entry with the keys goes onto the role's stream (XADD).
 * Any worker process of the role reads it through the role's consumer group (see worker.ts), writes its result blob
 * and a notice onto this run's results stream, and acknowledges the task. A reader loop here takes the notices
 * (XREAD BLOCK, Buffer variant), fetches each result blob (getBuffer), deletes it, checks it (codec.ts, validate.ts)
 * and resolves the task. Every handler is idempotent on the task id (g<step>.<shard>, …): the first valid result is
 * kept, later ones are counted as duplicates and ignored; a result for a task never issued, or of another run, is
 * foreign: rejected and logged; a malformed one is rejected, logged, and its task republished (at most `retries`
 * times). Blobs of a task are deleted once its result is in; every blob has a TTL, refreshed while its task waits.
 *
 * Waiting: while a role has tasks queued and no live worker serves it, the parameter server prints what it waits for
 * every 10 s and gives up after `workerWaitSeconds` (a TransportError: the run stops with its checkpoint and CSV).
 * Redis lost: when the connection stays down for `lostAfterSeconds`, or Redis comes back without this run's keys (a
 * restart), every task in flight fails with a TransportError and the run stops; `--resume` continues it.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { GradientTask, InverseTask, ReplicaSpec, StatsTask, Task, TaskResult, WireTensor } from '../messages';
import { type FaultEvent, type FaultPolicy, type Role, type RoleTransport, runWithFaultPolicy } from '../pool';
import { decodeBlob, encodeBlob, MessageError } from './codec';
import { connectRedis, type RedisConfig, redactUrl } from './connect';
import { entryFields, GROUP, Keys, PROTOCOL_VERSION, type RunDescriptor, sleep, taskId, WorkerInfo } from './protocol';
import { blockDims, checkGradientResult, checkInverseResult, checkStatsResult, type RunManifest } from './validate';

/** A failure of the transport itself (Redis lost, no worker): it ends the run as it is, whatever onFault says. */
export class TransportError extends Error {
  readonly fatal = true;
  constructor(message: string) {
    super(message);
    this.name = 'TransportError';
  }
}

/** A message the parameter server rejected. */
export interface Rejection {
  at: string;
  task?: string;
  from?: string;
  reason: string;
}

interface Pending {
  id: string;
  role: Role;
  step: number;
  worker?: number;
  fields: string[];
  blobKeys: string[];
  paramsStep?: number;
  entryIds: string[];
  submittedAt: number;
  rejections: number;
  check: (body: unknown, what: string) => TaskResult;
  resolve: (r: TaskResult) => void;
  reject: (e: Error) => void;
}

/** Bytes through Redis, by role: blobs and entries the parameter server wrote, blobs workers read, results. */
export type WireBytes = Record<Role, { published: number; fetched: number; results: number }>;

export interface RunInfo {
  experiment: string;
  run: string;
  label: string;
  spec: ReplicaSpec;
  data: { dataset: string; subset?: string };
  manifest: RunManifest;
  roles: Role[];
}

const DESCRIPTOR_TTL_MS = 15_000;
const RESULTS_TTL_MS = 60_000;
const NOTICE_AFTER_MS = 5_000;
const NOTICE_EVERY_MS = 10_000;

export class RedisRun {
  readonly runId: string;
  readonly keys: Keys;
  readonly url: string;
  /** messages rejected, duplicates ignored, takeovers seen, worker processes seen */
  readonly rejected: Rejection[] = [];
  duplicates = 0;
  applied = 0;
  readonly wire: WireBytes = { gradient: { published: 0, fetched: 0, results: 0 }, stats: { published: 0, fetched: 0, results: 0 }, inverse: { published: 0, fetched: 0, results: 0 } };
  readonly workersSeen = new Map<string, { host: string; pid: number; roles: Role[]; firstSeen: string; lastSeen: string; left?: string }>();
  private cmd!: Redis;
  private reader!: Redis;
  private readonly pending = new Map<string, Pending>();
  private readonly issued = new Set<string>();
  private readonly params = new Map<number, { key: string; refs: number }>();
  private lost: TransportError | null = null;
  private closed = false;
  private downSince: number | null = null;
  private timers: NodeJS.Timeout[] = [];
  private readerDone: Promise<void> = Promise.resolve();
  private lastNotice = new Map<Role, number>();
  private noWorkerSince = new Map<Role, number>();
  private live = new Map<string, WorkerInfo>();
  private readonly ps = `${hostname()}:${process.pid}`;

  constructor(
    readonly cfg: RedisConfig,
    readonly info: RunInfo,
    readonly faults: FaultEvent[],
    readonly log: (m: string) => void = (m) => console.log(m),
  ) {
    this.keys = new Keys(cfg.prefix);
    this.url = redactUrl(cfg.url);
    const safe = `${info.experiment}.${info.run}`.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 120);
    this.runId = `${safe}.${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  }

  /** Connects (a clear error if Redis cannot be used), creates the role groups, publishes the run descriptor. */
  async open(): Promise<void> {
    this.cmd = await connectRedis({ url: this.cfg.url, tlsCa: this.cfg.tlsCa, name: `dkfac-ps:${this.ps}` });
    try {
      this.reader = await connectRedis({ url: this.cfg.url, tlsCa: this.cfg.tlsCa, name: `dkfac-ps-reader:${this.ps}` }, () => undefined);
    } catch (e) {
      this.cmd.disconnect();
      throw e;
    }
    for (const role of this.info.roles) {
      await this.cmd.xgroup('CREATE', this.keys.tasks(role), GROUP, '0', 'MKSTREAM').catch((e: Error) => {
        if (!/BUSYGROUP/.test(e.message)) throw e;
      });
    }
    const d: RunDescriptor = {
      v: 1,
      runId: this.runId,
      experiment: this.info.experiment,
      run: this.info.run,
      label: this.info.label,
      createdAt: new Date().toISOString(),
      ps: this.ps,
      spec: this.info.spec as RunDescriptor['spec'],
      data: this.info.data,
      manifest: this.info.manifest,
      roles: this.info.roles,
    };
    await this.cmd.set(this.keys.run(this.runId), JSON.stringify(d), 'PX', DESCRIPTOR_TTL_MS);
    // the results stream exists from the start (workers never create one: XADD NOMKSTREAM) and lives while we do
    await this.cmd.xgroup('CREATE', this.keys.results(this.runId), 'ps', '$', 'MKSTREAM');
    await this.cmd.pexpire(this.keys.results(this.runId), RESULTS_TTL_MS);
    this.log(`redis: run ${this.runId} on ${this.url} (roles ${this.info.roles.join(', ')} on worker processes: npm run worker -- --redis ${this.url})`);
    this.timers.push(setInterval(() => this.watchConnection(), 250));
    this.timers.push(setInterval(() => void this.heartbeat(), 1000));
    this.readerDone = this.readResults();
    await this.refreshWorkers();
  }

  private fail(e: TransportError): void {
    if (this.lost || this.closed) return;
    this.lost = e;
    this.log(`redis: ${e.message}`);
    // the tasks stay listed so that close() can delete their keys where Redis is still there
    for (const p of this.pending.values()) p.reject(e);
  }

  private watchConnection(): void {
    if (this.closed || this.lost) return;
    const up = this.cmd.status === 'ready' && this.reader.status === 'ready';
    if (up) {
      if (this.downSince !== null) this.log(`redis: connection to ${this.url} back after ${((performance.now() - this.downSince) / 1000).toFixed(1)} s`);
      this.downSince = null;
      return;
    }
    this.downSince ??= performance.now();
    const s = (performance.now() - this.downSince) / 1000;
    if (s > this.cfg.lostAfterSeconds) {
      this.fail(
        new TransportError(
          `lost the connection to Redis at ${this.url} (down for ${s.toFixed(1)} s, more than ${this.cfg.lostAfterSeconds} s): the run stops with its last checkpoint and its CSV intact; start Redis again and rerun with --resume`,
        ),
      );
    }
  }

  private async heartbeat(): Promise<void> {
    if (this.closed || this.lost || this.downSince !== null) return;
    try {
      const pl = this.cmd.pipeline();
      pl.pexpire(this.keys.run(this.runId), DESCRIPTOR_TTL_MS);
      pl.pexpire(this.keys.results(this.runId), RESULTS_TTL_MS);
      for (const p of this.pending.values()) for (const k of p.blobKeys) pl.pexpire(k, this.cfg.blobTtlMs);
      for (const p of this.params.values()) pl.pexpire(p.key, this.cfg.blobTtlMs);
      const res = await pl.exec();
      if (res && res[0] && !res[0][0] && res[0][1] === 0) {
        this.fail(new TransportError(`Redis at ${this.url} no longer has this run's keys (restarted or flushed): the run stops with its last checkpoint and CSV intact; rerun with --resume`));
        return;
      }
      await this.refreshWorkers();
      this.noticeWaits();
    } catch {
      // a failed heartbeat is the connection watchdog's business
    }
  }

  /** The worker processes whose heartbeat is alive, logging joins and departures. */
  private async refreshWorkers(): Promise<void> {
    const names: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.cmd.scan(cursor, 'MATCH', this.keys.workerPattern, 'COUNT', 200);
      cursor = next;
      names.push(...batch);
    } while (cursor !== '0' && names.length < 10_000);
    const values = names.length ? await this.cmd.mget(...names) : [];
    const now = new Map<string, WorkerInfo>();
    for (const v of values) {
      if (!v) continue;
      try {
        const w = WorkerInfo.parse(JSON.parse(v));
        now.set(w.name, w);
      } catch {
        // not a worker heartbeat of this version: ignored
      }
    }
    const at = new Date().toISOString();
    for (const [name, w] of now) {
      const seen = this.workersSeen.get(name);
      if (!this.live.has(name)) this.log(`redis: worker ${name} connected (roles ${w.roles.join(',')}, ${w.threads} thread${w.threads === 1 ? '' : 's'}, ${w.backend})`);
      if (seen) Object.assign(seen, { lastSeen: at, left: undefined });
      else this.workersSeen.set(name, { host: w.host, pid: w.pid, roles: w.roles, firstSeen: at, lastSeen: at });
    }
    for (const name of this.live.keys()) {
      if (!now.has(name)) {
        this.log(`redis: worker ${name} left (no heartbeat)`);
        const seen = this.workersSeen.get(name);
        if (seen) seen.left = at;
      }
    }
    this.live = now;
  }

  private noticeWaits(): void {
    const t = performance.now();
    for (const role of this.info.roles) {
      const waiting = [...this.pending.values()].filter((p) => p.role === role);
      const serving = [...this.live.values()].filter((w) => w.roles.includes(role));
      if (!waiting.length || serving.length) this.noWorkerSince.delete(role);
      if (!waiting.length) continue;
      const oldest = Math.min(...waiting.map((p) => p.submittedAt));
      if (t - oldest < Math.min(NOTICE_AFTER_MS, (this.cfg.workerWaitSeconds * 1000) / 2)) continue;
      if (!serving.length) this.noWorkerSince.set(role, this.noWorkerSince.get(role) ?? oldest);
      const notice = () => {
        this.lastNotice.set(role, t);
        const what = `${waiting.length} ${role} task${waiting.length > 1 ? 's' : ''} (${waiting.map((p) => p.id).join(', ')}) for ${((t - oldest) / 1000).toFixed(0)} s`;
        this.log(
          serving.length
            ? `redis: waiting for ${what}; ${serving.length} worker${serving.length > 1 ? 's' : ''} serving '${role}' connected (${serving.map((w) => `${w.name} busy ${w.busy}/${w.threads}`).join(', ')})`
            : `redis: waiting for ${what}: no worker serving '${role}' is connected to ${this.url} (start one: npm run worker -- --redis ${this.url} --roles ${role}); giving up after ${this.cfg.workerWaitSeconds} s`,
        );
      };
      const since = this.noWorkerSince.get(role);
      if (since !== undefined && (t - since) / 1000 > this.cfg.workerWaitSeconds) {
        // a late check (a busy machine) may pass the notice's time and the give-up's at once: the wait is still said first
        if (!this.lastNotice.has(role)) notice();
        this.fail(
          new TransportError(
            `no worker serving '${role}' for ${((t - since) / 1000).toFixed(0)} s (more than ${this.cfg.workerWaitSeconds} s) while task${waiting.length > 1 ? 's' : ''} ${waiting.map((p) => p.id).join(', ')} waited: giving up; the checkpoint and CSV are intact, rerun with --resume once workers are connected`,
          ),
        );
        return;
      }
      if (t - (this.lastNotice.get(role) ?? -Infinity) < NOTICE_EVERY_MS) continue;
      notice();
    }
  }

  /** Publishes θ of `step` once (shared by every task that needs this version) and returns its key. */
  private publishParams(step: number, params: WireTensor[], role: Role, pl: ReturnType<Redis['pipeline']>): string {
    const have = this.params.get(step);
    if (have) {
      have.refs++;
      return have.key;
    }
    const key = this.keys.params(this.runId, step);
    const blob = encodeBlob({ run: this.runId, kind: 'params', step }, params);
    pl.set(key, blob, 'PX', this.cfg.blobTtlMs);
    this.wire[role].published += blob.length;
    this.params.set(step, { key, refs: 1 });
    return key;
  }

  private releaseParams(step: number | undefined): string[] {
    if (step === undefined) return [];
    const p = this.params.get(step);
    if (!p) return [];
    if (--p.refs > 0) return [];
    this.params.delete(step);
    return [p.key];
  }

  /** Hands one task to the role's workers; resolves with its checked result. */
  submit(task: Task): Promise<TaskResult> {
    if (this.lost) return Promise.reject(this.lost);
    if (this.closed) return Promise.reject(new TransportError('the Redis transport is closed'));
    const role: Role = task.kind;
    const id = taskId(task);
    const pl = this.cmd.pipeline();
    const blobKeys: string[] = [];
    let paramsStep: number | undefined;
    let step: number;
    let meta: Record<string, unknown>;
    const fields: string[] = [];
    let check: Pending['check'];
    const m = this.info.manifest;
    const putBlob = (key: string, kind: string, s: number, body: unknown) => {
      const blob = encodeBlob({ run: this.runId, kind, step: s, task: id }, body);
      pl.set(key, blob, 'PX', this.cfg.blobTtlMs);
      this.wire[role].published += blob.length;
      blobKeys.push(key);
    };
    if (task.kind === 'gradient' || task.kind === 'stats') {
      const t = task as GradientTask | StatsTask;
      step = t.step;
      paramsStep = t.step;
      const pk = this.publishParams(t.step, t.params, role, pl);
      const dk = this.keys.data(this.runId, id);
      putBlob(dk, 'data', t.step, { images: t.images, labels: t.labels, shape: t.shape });
      const count = t.shape[0];
      if (t.kind === 'gradient') {
        meta = { worker: t.worker, count, bnChunk: t.bnChunk, costClock: t.costClock, inject: t.inject };
        const w = t.worker;
        check = (b, what) => checkGradientResult(b, { step: t.step, worker: w, count, manifest: m }, what);
      } else {
        meta = { count, seed: t.seed, fisher: t.fisher, bnChunk: t.bnChunk, costClock: t.costClock, inject: t.inject };
        const seed = t.seed;
        check = (b, what) => checkStatsResult(b, { step: t.step, seed, blocks: m.blocks }, what);
      }
      fields.push('params', pk, 'data', dk);
    } else {
      const t = task as InverseTask;
      step = t.fromStep;
      const xk = this.keys.snap(this.runId, id);
      putBlob(xk, 'snapshot', t.fromStep, { snapshots: t.snapshots, damping: t.damping });
      meta = { mode: t.mode, costClock: t.costClock, inject: t.inject };
      const dims = blockDims(t.snapshots);
      const mode = t.mode;
      check = (b, what) => checkInverseResult(b, { fromStep: t.fromStep, blocks: dims, mode }, what);
      fields.push('snap', xk);
    }
    const entry = ['v', PROTOCOL_VERSION, 'run', this.runId, 'task', id, 'kind', role, 'step', String(step), 'meta', JSON.stringify(meta), 'ps', this.ps, ...fields];
    this.wire[role].published += entry.reduce((a, f) => a + Buffer.byteLength(f), 0);
    pl.xadd(this.keys.tasks(role), '*', ...entry);
    this.issued.add(id);
    const p = new Promise<TaskResult>((resolve, reject) => {
      const pend: Pending = {
        id,
        role,
        step,
        worker: task.kind === 'gradient' ? task.worker : undefined,
        fields: entry,
        blobKeys,
        paramsStep,
        entryIds: [],
        submittedAt: performance.now(),
        rejections: 0,
        check,
        resolve,
        reject,
      };
      this.pending.set(id, pend);
      pl.exec()
        .then((res) => {
          const last = res?.at(-1);
          if (last && !last[0] && typeof last[1] === 'string') pend.entryIds.push(last[1]);
          const err = res?.find((r) => r[0])?.[0];
          if (err) this.settleError(pend, new TransportError(`publishing task ${id} on ${this.url}: ${err.message}`));
        })
        .catch((e: Error) => this.settleError(pend, new TransportError(`publishing task ${id} on ${this.url}: ${e.message}`)));
    });
    return p;
  }

  private settleError(p: Pending, e: Error): void {
    if (this.pending.get(p.id) !== p) return;
    this.pending.delete(p.id);
    this.dropKeys([...p.blobKeys, ...this.releaseParams(p.paramsStep)]);
    p.reject(e);
  }

  private dropKeys(keys: string[]): void {
    if (keys.length && !this.lost) this.cmd.del(...keys).catch(() => undefined);
  }

  private reject(r: Omit<Rejection, 'at'>): void {
    const rec = { at: new Date().toISOString(), ...r };
    this.rejected.push(rec);
    if (this.rejected.length > 1000) this.rejected.splice(0, this.rejected.length - 1000);
    this.log(`redis: rejected a message${r.task ? ` for task ${r.task}` : ''}${r.from ? ` from ${r.from}` : ''}: ${r.reason}`);
  }

  private async readResults(): Promise<void> {
    const stream = this.keys.results(this.runId);
    let last = '0';
    while (!this.closed && !this.lost) {
      let res: [Buffer, [Buffer, Buffer[]][]][] | null;
      try {
        res = (await this.reader.xreadBuffer('COUNT', 64, 'BLOCK', 1000, 'STREAMS', stream, last)) as typeof res;
      } catch {
        if (this.closed || this.lost) break;
        await sleep(200);
        continue;
      }
      if (!res) continue;
      for (const [, entries] of res) {
        const ids = entries.map(([idBuf]) => idBuf.toString());
        last = ids.at(-1) ?? last;
        // the notices of a batch are handled at once (their blobs fetched in parallel); each is idempotent
        await Promise.all(
          entries.map(([, raw], i) =>
            this.onResult(entryFields(raw)).catch((e: Error) => this.reject({ reason: `result notice ${ids[i]}: ${e.message}` })),
          ),
        );
        if (ids.length && !this.closed && !this.lost) this.cmd.xdel(stream, ...ids).catch(() => undefined);
      }
    }
  }

  private async onResult(f: Map<string, Buffer>): Promise<void> {
    const s = (k: string) => f.get(k)?.toString('utf8');
    const id = s('task');
    const from = s('from');
    const key = s('key');
    if (s('v') !== PROTOCOL_VERSION) return this.reject({ task: id, from, reason: `protocol version ${JSON.stringify(s('v'))}, expected ${PROTOCOL_VERSION}` });
    if (s('run') !== this.runId) return this.reject({ task: id, from, reason: `foreign: a result of run ${JSON.stringify(s('run'))} on this run's stream` });
    if (!id || !from) return this.reject({ task: id, from, reason: 'malformed notice: no task or no sender' });
    if (key !== undefined && !key.startsWith(`${this.keys.ns(this.runId)}:res:`)) {
      return this.reject({ task: id, from, reason: `foreign: result key ${JSON.stringify(key)} is outside this run's keys` });
    }
    const p = this.pending.get(id);
    if (!p) {
      if (key) this.dropKeys([key]);
      if (this.issued.has(id)) {
        this.duplicates++;
        return;
      }
      return this.reject({ task: id, from, reason: `foreign: no task ${id} was issued by this run` });
    }
    const fetched = Number(s('bytesIn') ?? 0);
    if (Number.isFinite(fetched) && fetched >= 0) this.wire[p.role].fetched += fetched;
    const error = s('error');
    if (error !== undefined) {
      this.settleError(p, new Error(`${from}: ${error}`));
      return;
    }
    if (!key) return this.reject({ task: id, from, reason: 'malformed notice: neither a result key nor an error' });
    const blob = await this.cmd.getBuffer(key);
    this.dropKeys([key]);
    if (blob) this.wire[p.role].results += blob.length;
    let result: TaskResult;
    try {
      const body = decodeBlob(blob, { run: this.runId, kind: p.role, step: p.step, task: id }, `${p.role} result ${id} from ${from}`);
      result = p.check(body, `${p.role} result ${id} from ${from}`);
    } catch (e) {
      if (!(e instanceof MessageError)) throw e;
      this.reject({ task: id, from, reason: e.message });
      if (this.pending.get(id) !== p) return;
      p.rejections++;
      if (p.rejections > 3) {
        this.settleError(p, new TransportError(`${p.rejections} results for task ${id} rejected; the last: ${e.message}`));
        return;
      }
      // the task's blobs are still there: hand it out again
      this.cmd.xadd(this.keys.tasks(p.role), '*', ...p.fields).then((eid) => eid && p.entryIds.push(eid), () => undefined);
      return;
    }
    if (this.pending.get(id) !== p) return;
    this.pending.delete(id);
    this.applied++;
    const claimedFrom = s('claimedFrom');
    const silentMs = Number(s('silentMs'));
    if (claimedFrom) {
      const ev: FaultEvent = {
        role: p.role,
        step: p.step,
        worker: p.worker,
        message: `${p.role} task ${id} (step ${p.step}${p.worker !== undefined ? `, shard ${p.worker}` : ''}) held by ${claimedFrom} was taken over by ${from} after ${Number.isFinite(silentMs) ? (silentMs / 1000).toFixed(1) : '?'} s without a sign of life`,
        action: 'taken over',
        from: claimedFrom,
        by: from,
        silentMs: Number.isFinite(silentMs) ? silentMs : undefined,
        at: new Date().toISOString(),
      };
      this.faults.push(ev);
      this.log(`redis: ${ev.message}`);
    }
    this.dropKeys([...p.blobKeys, ...this.releaseParams(p.paramsStep)]);
    p.resolve(result);
  }

  /** The transport's record for the sidecar. */
  report() {
    return {
      kind: 'redis' as const,
      url: this.url,
      runId: this.runId,
      resultsApplied: this.applied,
      duplicatesIgnored: this.duplicates,
      rejected: this.rejected.slice(),
      wireBytes: structuredClone(this.wire),
      workers: Object.fromEntries(this.workersSeen),
    };
  }

  /** Stops the loops, deletes this run's keys (unless Redis is lost) and disconnects. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    const pend = [...this.pending.values()];
    this.pending.clear();
    for (const p of pend) p.reject(new TransportError('the run stopped: task abandoned'));
    if (this.cmd?.status === 'ready') {
      const pl = this.cmd.pipeline();
      pl.del(this.keys.run(this.runId), this.keys.results(this.runId));
      for (const p of pend) {
        if (p.blobKeys.length) pl.del(...p.blobKeys);
        if (p.entryIds.length) pl.xdel(this.keys.tasks(p.role), ...p.entryIds);
      }
      for (const p of this.params.values()) pl.del(p.key);
      await Promise.race([pl.exec().catch(() => undefined), sleep(2000)]);
    }
    this.params.clear();
    this.reader?.disconnect();
    this.cmd?.disconnect();
    await Promise.race([this.readerDone, sleep(2000)]);
  }
}

/** The Redis transport of one role: the same RoleTransport as the threaded RolePool, tasks going to RedisRun. */
export class RedisRolePool implements RoleTransport {
  private closed = false;
  constructor(
    readonly role: Role,
    readonly redis: RedisRun,
    readonly onFault: FaultPolicy,
    readonly faults: FaultEvent[],
    readonly retries = 2,
  ) {}

  run(task: Task, step: number, worker?: number, retryTask?: () => Task): Promise<TaskResult> {
    return runWithFaultPolicy(
      { role: this.role, onFault: this.onFault, retries: this.retries, faults: this.faults, closed: () => this.closed },
      (t) => this.redis.submit(t),
      task,
      step,
      worker,
      retryTask,
    );
  }

  /** worker processes are not this process's threads */
  get liveThreads(): number {
    return 0;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
