/**
 * A worker process of the Redis transport (`npm run worker -- --redis URL`): serves the gradient, stats and inverse
 * roles (or those named) of whichever run's parameter server publishes tasks on that Redis.
 *
 * Tasks come from the role streams through the consumer group 'workers' of each stream (XREADGROUP, Buffer variant:
 * the plain one decodes fields as strings). The process computes up to `threads` tasks at once on its own worker
 * threads (the threaded transport's RolePool, so a task runs exactly the code it runs in-line or on a thread), while
 * this thread stays free to keep its claims fresh: every 500 ms it writes its heartbeat (<p>:worker:<name>, PX 3 s)
 * and re-claims the entries it is computing (XCLAIM … JUSTID resets their idle time). An entry whose holder has been
 * silent for `takeoverMs` (a worker killed with kill -9, a machine gone) is taken over by an idle worker (XPENDING to
 * see who held it and for how long, XAUTOCLAIM to take it); its result notice says so and the parameter server
 * records the takeover in the sidecar. An entry delivered more than 5 times is given up (it kills every worker that
 * takes it) and reported as an error.
 *
 * Every task is checked before it is computed: its entry (protocol version, run id, task id, kind = the stream's role,
 * step, meta), the run descriptor (the run must be live; its manifest gives parameter names and shapes), each blob
 * (codec.ts: framing, run, kind, step, task, byte lengths, finite values; validate.ts: names, shapes, dtypes, label
 * range). A task of an unknown or ended run is dropped and logged; a malformed task is rejected, logged and reported
 * to its run as an error. The result is written as a blob, announced on the run's results stream, then the task is
 * acknowledged (XACK) and deleted (XDEL): a worker killed in between only causes a duplicate, which the parameter
 * server ignores.
 */
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { BackendName } from '../../backend';
import type { GradientTask, InverseTask, StatsTask, Task, TaskResult, WireTensor } from '../messages';
import { type Role, RolePool, WorkerFault } from '../pool';
import { decodeBlob, encodeBlob, MessageError } from './codec';
import { connectRedis, redactUrl } from './connect';
import { entryFields, GROUP, Keys, PROTOCOL_VERSION, RunDescriptor, sleep, TaskMeta, type WorkerInfo } from './protocol';
import { checkBatch, checkInverseInput, checkTensors } from './validate';

const HEARTBEAT_MS = 500;
const HEARTBEAT_TTL_MS = 3000;
const MAX_DELIVERIES = 5;
const RESULT_TTL_MS = 600_000;

export interface WorkerOptions {
  url: string;
  tlsCa?: string;
  prefix?: string;
  roles: Role[];
  threads: number;
  /** the backend the compute threads initialise (initBackend: 'auto' picks the configured engine) */
  backend: BackendName;
  /** the backend actually active, for messages */
  backendName?: string;
  name?: string;
  /** take over an entry whose holder has been silent this long (ms) */
  takeoverMs?: number;
  verbose?: boolean;
  log?: (m: string) => void;
}

interface Entry {
  role: Role;
  id: string;
  fields: Map<string, Buffer>;
  claimedFrom?: string;
  silentMs?: number;
  deliveries?: number;
}

interface Busy {
  role: Role;
  task?: string;
  run?: string;
  startedAt: number;
}

export class RedisWorker {
  readonly name: string;
  readonly keys: Keys;
  readonly roles: Role[];
  private cmd!: Redis;
  private blocking!: Redis;
  private pool!: RolePool;
  private readonly busy = new Map<string, Busy>();
  private readonly queued: Entry[] = [];
  private readonly runs = new Map<string, { desc: RunDescriptor | null; at: number; why?: string }>();
  private readonly paramsCache = new Map<string, WireTensor[]>();
  private serving: string | null = null;
  private stopping = false;
  private timer: NodeJS.Timeout | null = null;
  private wake: (() => void) | null = null;
  private lostNoted = new Set<string>();
  private readonly since = new Date().toISOString();
  readonly log: (m: string) => void;
  /** tasks completed, rejected, dropped, taken over (for the tests and the exit line) */
  readonly counts = { done: 0, rejected: 0, dropped: 0, takenOver: 0, failed: 0 };

  constructor(readonly o: WorkerOptions) {
    this.name = o.name ?? `${hostname()}:${process.pid}`;
    this.keys = new Keys(o.prefix ?? 'dkfac');
    this.roles = o.roles;
    const tag = `[worker ${this.name}]`;
    this.log = o.log ?? ((m) => console.log(`${tag} ${m}`));
  }

  private get takeoverMs(): number {
    return this.o.takeoverMs ?? 2000;
  }

  async start(): Promise<void> {
    this.cmd = await connectRedis({ url: this.o.url, tlsCa: this.o.tlsCa, name: `dkfac-worker:${this.name}` }, (m) => this.log(m));
    try {
      this.blocking = await connectRedis({ url: this.o.url, tlsCa: this.o.tlsCa, name: `dkfac-worker-blocking:${this.name}` }, () => undefined);
    } catch (e) {
      this.cmd.disconnect();
      throw e;
    }
    this.cmd.on('ready', () => void this.ensureGroups());
    await this.ensureGroups();
    this.pool = new RolePool(this.roles[0], this.o.threads, 'stop', [], 0, this.o.backend);
    await this.beat();
    this.timer = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.log(
      `ready on ${redactUrl(this.o.url)}: roles ${this.roles.join(',')}, ${this.o.threads} thread${this.o.threads === 1 ? '' : 's'}, backend ${this.o.backendName ?? this.o.backend}; waiting for a run`,
    );
  }

  private async ensureGroups(): Promise<void> {
    for (const role of this.roles) {
      await this.cmd.xgroup('CREATE', this.keys.tasks(role), GROUP, '0', 'MKSTREAM').catch((e: Error) => {
        if (!/BUSYGROUP/.test(e.message)) this.log(`cannot create the consumer group of ${role}: ${e.message}`);
      });
    }
  }

  private info(): WorkerInfo {
    return { name: this.name, host: hostname(), pid: process.pid, roles: this.roles, threads: this.o.threads, backend: this.o.backendName ?? this.o.backend, busy: this.busy.size, serving: this.serving, since: this.since };
  }

  /** Heartbeat and claim refresh of the entries this process holds (computing or queued). */
  private async beat(): Promise<void> {
    if (this.cmd.status !== 'ready') return;
    try {
      const held = new Map<Role, string[]>();
      for (const [id, b] of this.busy) held.set(b.role, [...(held.get(b.role) ?? []), id]);
      for (const e of this.queued) held.set(e.role, [...(held.get(e.role) ?? []), e.id]);
      const pl = this.cmd.pipeline();
      pl.set(this.keys.worker(this.name), JSON.stringify(this.info()), 'PX', HEARTBEAT_TTL_MS);
      const roles = [...held.keys()];
      for (const role of roles) pl.xpending(this.keys.tasks(role), GROUP, '-', '+', 1000, this.name);
      const res = await pl.exec();
      const claim = this.cmd.pipeline();
      let n = 0;
      roles.forEach((role, i) => {
        const mine = new Set(((res?.[i + 1]?.[1] as [string, string, number, number][] | undefined) ?? []).map((p) => p[0]));
        const ids = held.get(role)!.filter((id) => {
          if (mine.has(id)) return true;
          // finished (acknowledged) while the pending list was read
          if (!this.busy.has(id) && !this.queued.some((q) => q.id === id)) return false;
          if (!this.lostNoted.has(id)) {
            this.lostNoted.add(id);
            this.log(`task entry ${id} (${role}) was taken over by another worker while this one computed it (too slow to answer); finishing it anyway`);
          }
          return false;
        });
        if (ids.length) {
          claim.xclaim(this.keys.tasks(role), GROUP, this.name, 0, ...ids, 'JUSTID');
          n++;
        }
      });
      if (n) await claim.exec();
    } catch {
      // Redis down: the connection reconnects by itself
    }
  }

  /** The descriptor of a run (cached 2 s); null when the run is gone or its descriptor is malformed. */
  private async descriptor(runId: string): Promise<{ desc: RunDescriptor | null; why?: string }> {
    const c = this.runs.get(runId);
    if (c && performance.now() - c.at < 2000) return c;
    const raw = await this.cmd.get(this.keys.run(runId));
    let desc: RunDescriptor | null = null;
    let why: string | undefined;
    if (!raw) why = 'the run is gone (its parameter server stopped or the run ended)';
    else {
      try {
        desc = RunDescriptor.parse(JSON.parse(raw));
        if (desc.runId !== runId) throw new Error(`it names run ${desc.runId}`);
      } catch (e) {
        desc = null;
        why = `its run descriptor is malformed (${(e as Error).message.split('\n')[0]})`;
      }
    }
    const entry = { desc, at: performance.now(), why };
    this.runs.set(runId, entry);
    if (this.runs.size > 64) this.runs.delete(this.runs.keys().next().value!);
    return entry;
  }

  /** The main loop: take over silent entries, read new ones, compute; until stop(). */
  async serve(): Promise<void> {
    while (!this.stopping) {
      const free = this.o.threads - this.busy.size;
      if (free <= 0) {
        await new Promise<void>((r) => {
          this.wake = r;
          setTimeout(r, 500);
        });
        continue;
      }
      if (this.queued.length) {
        this.begin(this.queued.shift()!);
        continue;
      }
      let got: Entry[] = [];
      try {
        got = await this.takeOver(free);
        if (!got.length) got = await this.readNew(free);
      } catch (e) {
        const msg = (e as Error).message;
        if (/NOGROUP/.test(msg)) await this.ensureGroups();
        else if (!this.stopping) await sleep(200);
        continue;
      }
      for (const e of got) {
        if (this.busy.size < this.o.threads) this.begin(e);
        else this.queued.push(e);
      }
    }
  }

  /** Entries of this process's roles whose holder has been silent for takeoverMs, claimed for this process. */
  private async takeOver(free: number): Promise<Entry[]> {
    const out: Entry[] = [];
    for (const role of this.roles) {
      if (out.length >= free) break;
      const stream = this.keys.tasks(role);
      const stale = (await this.cmd.xpending(stream, GROUP, 'IDLE', this.takeoverMs, '-', '+', free - out.length)) as [string, string, number, number][];
      const others = stale.filter((p) => p[1] !== this.name);
      if (!others.length) continue;
      const holders = new Map(others.map((p) => [p[0], { from: p[1], idle: p[2], deliveries: p[3] }]));
      const res = (await this.cmd.callBuffer('XAUTOCLAIM', stream, GROUP, this.name, String(this.takeoverMs), '0-0', 'COUNT', String(free - out.length))) as [Buffer, [Buffer, Buffer[]][] | null];
      for (const [idBuf, raw] of res?.[1] ?? []) {
        if (!raw) continue;
        const id = idBuf.toString();
        const h = holders.get(id);
        if (h?.from === this.name || this.busy.has(id) || this.queued.some((q) => q.id === id)) continue;
        out.push({ role, id, fields: entryFields(raw), claimedFrom: h?.from ?? 'a silent worker', silentMs: h?.idle, deliveries: (h?.deliveries ?? 1) + 1 });
      }
    }
    return out;
  }

  /** New entries: without blocking from each role stream in turn, else blocking on all of them (500 ms). */
  private async readNew(free: number): Promise<Entry[]> {
    const out: Entry[] = [];
    const parse = (res: [Buffer, [Buffer, Buffer[]][]][] | null) => {
      for (const [streamBuf, entries] of res ?? []) {
        const role = this.roles.find((r) => this.keys.tasks(r) === streamBuf.toString());
        if (!role) continue;
        for (const [idBuf, raw] of entries) out.push({ role, id: idBuf.toString(), fields: entryFields(raw) });
      }
    };
    for (const role of this.roles) {
      if (out.length >= free) return out;
      parse((await this.blocking.xreadgroupBuffer('GROUP', GROUP, this.name, 'COUNT', free - out.length, 'STREAMS', this.keys.tasks(role), '>')) as never);
    }
    if (out.length) return out;
    const streams = this.roles.map((r) => this.keys.tasks(r));
    parse((await this.blocking.xreadgroupBuffer('GROUP', GROUP, this.name, 'COUNT', 1, 'BLOCK', 500, 'STREAMS', ...streams, ...streams.map(() => '>'))) as never);
    return out;
  }

  private begin(e: Entry): void {
    this.busy.set(e.id, { role: e.role, startedAt: performance.now() });
    void this.handle(e).finally(() => {
      this.busy.delete(e.id);
      this.wake?.();
    });
  }

  private async done(e: Entry): Promise<void> {
    await this.cmd.pipeline().xack(this.keys.tasks(e.role), GROUP, e.id).xdel(this.keys.tasks(e.role), e.id).exec();
    this.busy.delete(e.id);
  }

  /** A notice on the run's results stream; none if the stream is gone (the run ended, or Redis restarted empty). */
  private async notify(runId: string, fields: string[]): Promise<void> {
    const id = await this.cmd.xadd(this.keys.results(runId), 'NOMKSTREAM', '*', 'v', PROTOCOL_VERSION, 'run', runId, 'from', this.name, ...fields);
    if (id === null) this.log(`run ${runId} ended before its result arrived: dropped`);
  }

  /** Blobs of the run's namespace, in one round trip. */
  private async fetch(ns: string, wanted: [key: string, what: string][]): Promise<(Buffer | null)[]> {
    const pl = this.cmd.pipeline();
    for (const [key, what] of wanted) {
      if (!key.startsWith(`${ns}:`)) throw new MessageError(`${what} key ${JSON.stringify(key)} is outside the run's keys`);
      pl.getBuffer(key);
    }
    const res = (await pl.exec()) ?? [];
    return res.map(([err, v]) => {
      if (err) throw err;
      return (v as Buffer | null) ?? null;
    });
  }

  private async handle(e: Entry): Promise<void> {
    const s = (k: string) => e.fields.get(k)?.toString('utf8');
    const runId = s('run') ?? '';
    const id = s('task') ?? '';
    const label = `${e.role} task ${id || '?'} of run ${runId || '?'}`;
    let known = false;
    let bytesIn = 0;
    try {
      if (s('v') !== PROTOCOL_VERSION) throw new MessageError(`protocol version ${JSON.stringify(s('v'))}, this worker speaks ${PROTOCOL_VERSION}`);
      if (!/^[A-Za-z0-9_.:-]{1,200}$/.test(runId)) throw new MessageError(`run id ${JSON.stringify(runId)} is malformed`);
      if (!/^[A-Za-z0-9_.:-]{1,300}$/.test(id)) throw new MessageError(`task id ${JSON.stringify(id)} is malformed`);
      if (s('kind') !== e.role) throw new MessageError(`a ${JSON.stringify(s('kind'))} task on the ${e.role} stream`);
      const { desc, why } = await this.descriptor(runId);
      if (!desc) {
        this.counts.dropped++;
        this.log(`dropped ${label}: ${why}`);
        await this.done(e);
        return;
      }
      // from here on a problem is reported to the run's parameter server
      known = true;
      const step = Number(s('step'));
      if (!Number.isSafeInteger(step) || step < 0) throw new MessageError(`step ${JSON.stringify(s('step'))} is not a step`);
      let meta: TaskMeta;
      try {
        meta = TaskMeta.parse(JSON.parse(s('meta') ?? ''));
      } catch (err) {
        throw new MessageError(`meta is malformed (${(err as Error).message.replace(/\s+/g, ' ').slice(0, 300)})`);
      }
      if (!desc.roles.includes(e.role)) throw new MessageError(`run ${runId} has no ${e.role} role`);
      if ((e.deliveries ?? 1) > MAX_DELIVERIES) throw new Error(`delivered ${e.deliveries} times: every worker that took it stopped answering; given up`);
      if (this.serving !== runId) {
        this.serving = runId;
        const [H, W, C] = desc.spec.inputShape;
        this.log(
          `serving run ${runId}: experiment ${desc.experiment}, run '${desc.label}' (${desc.run}), model ${desc.spec.model.arch} on ${desc.data.dataset} ${H}×${W}×${C}, ${desc.spec.numClasses} classes; parameter server ${desc.ps}`,
        );
      }
      if (e.claimedFrom) {
        this.counts.takenOver++;
        this.log(`took over ${label} from ${e.claimedFrom} (silent for ${((e.silentMs ?? 0) / 1000).toFixed(1)} s)`);
      } else if (this.o.verbose) this.log(`started ${label}`);
      const ns = this.keys.ns(runId);
      const t0 = performance.now();
      const t = await this.buildTask(e, desc, meta, step, id, ns, (n) => (bytesIn += n));
      const t1 = performance.now();
      // a recomputation after a takeover never re-injects a test fault
      if (e.claimedFrom) delete t.inject;
      const r = await this.pool.run(t, step, meta.worker);
      const t2 = performance.now();
      const key = this.keys.result(runId, id, this.name);
      const blob = encodeBlob({ run: runId, kind: e.role, step, task: id }, r);
      const extra = e.claimedFrom ? ['claimedFrom', e.claimedFrom, 'silentMs', String(Math.round(e.silentMs ?? 0))] : [];
      // one round trip: the blob, its notice (none if the run's stream is gone), then the acknowledgement
      const res = await this.cmd
        .pipeline()
        .set(key, blob, 'PX', RESULT_TTL_MS)
        .xadd(this.keys.results(runId), 'NOMKSTREAM', '*', 'v', PROTOCOL_VERSION, 'run', runId, 'from', this.name, 'task', id, 'key', key, 'ms', String(resultMs(r)), 'bytesIn', String(bytesIn), ...extra)
        .xack(this.keys.tasks(e.role), GROUP, e.id)
        .xdel(this.keys.tasks(e.role), e.id)
        .exec();
      const failed = res?.find(([err]) => err)?.[0];
      if (failed) throw failed;
      // acknowledged: no longer held (before anything else runs, so the heartbeat does not look for it)
      this.busy.delete(e.id);
      if (res?.[1]?.[1] === null) {
        this.log(`run ${runId} ended before the result of ${label} arrived: dropped`);
        this.cmd.del(key).catch(() => undefined);
      }
      this.counts.done++;
      if (this.o.verbose) {
        const ms = (a: number, b: number) => (b - a).toFixed(1);
        this.log(`finished ${label}: compute ${resultMs(r).toFixed(1)} ms; fetch and check ${ms(t0, t1)} ms, on the thread ${ms(t1, t2)} ms, result out ${ms(t2, performance.now())} ms`);
      }
    } catch (err) {
      // the compute thread's failure as it happened (the parameter server names the role, shard and step itself)
      const msg = err instanceof WorkerFault ? err.cause.message : (err as Error).message;
      if (err instanceof MessageError) {
        this.counts.rejected++;
        this.log(`rejected ${label}: ${msg}`);
      } else {
        this.counts.failed++;
        this.log(`${label} failed: ${msg}`);
      }
      try {
        if (known) await this.notify(runId, ['task', id, 'error', `${err instanceof MessageError ? 'rejected the task: ' : ''}${msg}`.slice(0, 2000), 'bytesIn', String(bytesIn)]);
        await this.done(e);
      } catch {
        // Redis down: the entry stays pending and is taken over or re-read later
      }
    }
  }

  private async buildTask(e: Entry, desc: RunDescriptor, meta: TaskMeta, step: number, id: string, ns: string, count: (n: number) => void): Promise<Task> {
    const s = (k: string) => e.fields.get(k)?.toString('utf8') ?? '';
    const spec = desc.spec;
    if (e.role === 'inverse') {
      const [blob] = await this.fetch(ns, [[s('snap'), 'snapshot']]);
      count(blob?.length ?? 0);
      const body = decodeBlob<{ snapshots: unknown; damping: unknown }>(blob, { run: desc.runId, kind: 'snapshot', step, task: id }, 'snapshot');
      const inp = checkInverseInput(body?.snapshots, body?.damping, meta.mode, 'snapshot');
      return { kind: 'inverse', fromStep: step, ...inp, inject: meta.inject, costClock: meta.costClock } satisfies InverseTask;
    }
    const { params, extra: [blob] } = await this.params(s('params'), ns, desc, step, count, [[s('data'), 'examples']]);
    count(blob?.length ?? 0);
    const batch = checkBatch(decodeBlob(blob, { run: desc.runId, kind: 'data', step, task: id }, 'examples'), spec, 'examples');
    if (meta.count !== undefined && meta.count !== batch.shape[0]) throw new MessageError(`examples: ${batch.shape[0]}, the task says ${meta.count}`);
    const common = { spec, step, params, ...batch, bnChunk: meta.bnChunk, inject: meta.inject, costClock: meta.costClock };
    if (e.role === 'gradient') {
      if (meta.worker === undefined) throw new MessageError('a gradient task without its shard');
      return { kind: 'gradient', worker: meta.worker, ...common } satisfies GradientTask;
    }
    if (!meta.seed || !meta.fisher) throw new MessageError('a stats task without its seed or Fisher kind');
    if (!spec.blocks) throw new MessageError(`run ${desc.runId} has no K-FAC blocks`);
    return { kind: 'stats', seed: meta.seed, fisher: meta.fisher, ...common } satisfies StatsTask;
  }

  /**
   * θ of one version, fetched once (in the same round trip as the task's other blobs) and checked against the run's
   * manifest; each task gets its own copy.
   */
  private async params(key: string, ns: string, desc: RunDescriptor, step: number, count: (n: number) => void, also: [string, string][]) {
    let p = this.paramsCache.get(key);
    const blobs = await this.fetch(ns, p ? also : [[key, 'parameters'], ...also]);
    if (!p) {
      const blob = blobs.shift()!;
      count(blob?.length ?? 0);
      p = checkTensors(decodeBlob(blob, { run: desc.runId, kind: 'params', step }, 'parameters'), desc.manifest.params, 'parameters');
      this.paramsCache.set(key, p);
      while (this.paramsCache.size > 3) this.paramsCache.delete(this.paramsCache.keys().next().value!);
    }
    // the compute thread takes its task's buffers: hand it a copy, keep the cached one
    const params: WireTensor[] = p.map((t) => ({ name: t.name, shape: t.shape.slice(), data: t.data.slice() }));
    return { params, extra: blobs };
  }

  /** Stops taking tasks; with `drain`, finishes those in hand (at most `drainMs`); leaves the group's entries to others. */
  async stop(drain = true, drainMs = 60_000): Promise<void> {
    this.stopping = true;
    this.wake?.();
    const t0 = performance.now();
    while (drain && this.busy.size && performance.now() - t0 < drainMs) await sleep(100);
    if (this.timer) clearInterval(this.timer);
    await this.cmd
      ?.del(this.keys.worker(this.name))
      .catch(() => undefined);
    await this.pool?.close();
    this.blocking?.disconnect();
    this.cmd?.disconnect();
  }
}

function resultMs(r: TaskResult): number {
  return Number.isFinite(r.ms) ? r.ms : 0;
}
