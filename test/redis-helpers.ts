/**
 * Real processes for the Redis tests: a redis-server of the test's own on a free loopback port (never a fixed one),
 * stopped afterwards, and worker processes started exactly as a user starts them (`experiments/worker.ts`, the
 * script behind `npm run worker`). Everything started here is stopped by `stopAll()`.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { type BackendInfo, initBackend } from '../src/backend';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const started = new Set<ChildProcess>();

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? res(a.port) : rej(new Error('no port'))));
    });
  });
}

/** Lines a child process printed (stdout and stderr), and a wait for one that matches. */
export class Output {
  lines: string[] = [];
  private waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  constructor(p: ChildProcess) {
    let buf = '';
    const on = (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const l of parts) {
        this.lines.push(l);
        if (process.env.DKFAC_TEST_ECHO) console.log(`  | ${l}`);
        this.waiters = this.waiters.filter((w) => (w.re.test(l) ? (w.resolve(l), false) : true));
      }
    };
    p.stdout?.on('data', on);
    p.stderr?.on('data', on);
  }
  text(): string {
    return this.lines.join('\n');
  }
  waitFor(re: RegExp, timeoutMs = 60_000, what = String(re)): Promise<string> {
    const have = this.lines.find((l) => re.test(l));
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; output:\n${this.text().slice(-3000)}`)), timeoutMs);
      this.waiters.push({ re, resolve: (l) => (clearTimeout(t), resolve(l)) });
    });
  }
}

export interface RedisServer {
  port: number;
  url: string;
  proc: ChildProcess;
  out: Output;
  /** stops it (SIGTERM, or SIGKILL with `hard`) and waits for the exit */
  stop(hard?: boolean): Promise<void>;
  /** starts it again on the same port (empty: no persistence) */
  restart(): Promise<void>;
}

async function waitExit(p: ChildProcess, ms = 10_000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((res) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
    }, ms);
    p.once('exit', () => {
      clearTimeout(t);
      res();
    });
  });
}

/** redis-server on a free loopback port, no persistence, noeviction; `args` are extra server options. */
export async function startRedis(args: string[] = [], port?: number): Promise<RedisServer> {
  const p = port ?? (await freePort());
  const base = ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', ...args];
  const launch = async () => {
    const proc = spawn('redis-server', base, { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(proc);
    proc.once('exit', () => started.delete(proc));
    const out = new Output(proc);
    await out.waitFor(/Ready to accept connections/, 20_000, 'redis-server to start');
    return { proc, out };
  };
  let cur = await launch();
  const server: RedisServer = {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    get proc() {
      return cur.proc;
    },
    get out() {
      return cur.out;
    },
    async stop(hard = false) {
      cur.proc.kill(hard ? 'SIGKILL' : 'SIGTERM');
      await waitExit(cur.proc);
    },
    async restart() {
      cur = await launch();
    },
  };
  return server;
}

export interface WorkerProc {
  proc: ChildProcess;
  out: Output;
  pid: number;
  name: string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** One worker process (`npm run worker -- --redis URL …`), once it says it is ready. */
export async function startWorker(url: string, args: string[] = [], env: Record<string, string> = {}): Promise<WorkerProc> {
  const proc = spawn(process.execPath, ['--import', TSX, join(ROOT, 'experiments', 'worker.ts'), '--redis', url, '--backend', 'wasm', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DKFAC_QUIET: '1', ...env },
  });
  started.add(proc);
  proc.once('exit', () => started.delete(proc));
  const out = new Output(proc);
  const ready = await Promise.race([
    out.waitFor(/ ready on /, 120_000, 'the worker to be ready'),
    new Promise<never>((_, rej) => proc.once('exit', (c) => rej(new Error(`worker exited (${c}) before it was ready:\n${out.text()}`)))),
  ]);
  const name = /\[worker ([^\]]+)\]/.exec(ready)![1];
  return {
    proc,
    out,
    pid: proc.pid!,
    name,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      proc.kill(signal);
      await waitExit(proc, 70_000);
    },
  };
}

/** A process run to its end: its exit code and output. */
export function runProcess(args: string[], env: Record<string, string> = {}, timeoutMs = 300_000): { proc: ChildProcess; out: Output; done: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', TSX, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DKFAC_QUIET: '1', ...env } });
  started.add(proc);
  const out = new Output(proc);
  const done = new Promise<number | null>((res) => {
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(t);
      started.delete(proc);
      res(code);
    });
  });
  return { proc, out, done };
}

/** Stops every process this file started that still runs. */
export async function stopAll(): Promise<void> {
  const ps = [...started];
  for (const p of ps) p.kill('SIGKILL');
  await Promise.all(ps.map((p) => waitExit(p, 5000)));
}

/** A redis-server with `n` worker processes, and a plain client of the test's own to look inside. */
export async function startCluster(n: number): Promise<{ redis: RedisServer; workers: WorkerProc[]; client: Redis }> {
  const redis = await startRedis();
  const workers = await Promise.all(Array.from({ length: n }, () => startWorker(redis.url)));
  const client = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true, retryStrategy: () => 200 });
  client.on('error', () => undefined);
  await client.connect();
  return { redis, workers, client };
}

/** Waits until the task with this id sits in a role stream's pending list (a worker took it); returns the worker. */
export async function pendingHolder(client: Redis, role: string, task: string, timeoutMs = 30_000): Promise<string> {
  const stream = `dkfac:tasks:${role}`;
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    const pend = (await client.xpending(stream, 'workers', '-', '+', 100)) as [string, string, number, number][];
    for (const [id, consumer] of pend) {
      const f = ((await client.xrange(stream, id, id)) as [string, string[]][])[0]?.[1];
      if (f && f[f.indexOf('task') + 1] === task) return consumer;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`task ${task} never became pending`);
}

/**
 * The fixture of a Redis test file: before its tests a redis-server, `n` worker processes, a client and the wasm
 * backend (nothing where redis-server is missing); after them everything stopped.
 */
export function clusterFixture(n: number): { redis: RedisServer; workers: WorkerProc[]; client: Redis; backend: BackendInfo } {
  const c = {} as { redis: RedisServer; workers: WorkerProc[]; client: Redis; backend: BackendInfo };
  beforeAll(async () => {
    if (!hasRedisServer()) return;
    c.backend = await initBackend('wasm');
    Object.assign(c, await startCluster(n));
  }, 180_000);
  afterAll(async () => {
    c.client?.disconnect();
    await stopAll();
  });
  return c;
}
