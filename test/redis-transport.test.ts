/**
 * The Redis transport with real processes on loopback: a redis-server of this file's own on a free port and three
 * worker processes started as a user starts them (`npm run worker`), the parameter server in this process.
 *   - synchronous SGD on 3 gradient workers and K-FAC (gradients, stats and inverses on the workers, sync schedules)
 *     equal the in-line run (the independent computation: every role in this thread) to float32 rounding: CSV rows
 *     (clocks aside) and final parameters; every shard applied exactly once; the bytes each role exchanged equal the
 *     payload computed from the model's parameter count and the batch;
 *   - a task that throws inside a worker process is reported with its role and step and, under onFault 'respawn',
 *     computed again;
 *   - forged messages are rejected and logged, never applied: a result for a task in flight with a wrong shape and
 *     one with a NaN, a result of another run, an error notice for a task never issued, a task of an unknown run and
 *     a malformed task; the run still equals the in-line one;
 *   - no worker for a role: the parameter server says what it waits for and gives up after the configured time with
 *     its CSV intact;
 *   - security: an ACL user with a password over TLS (rediss://, the test's own CA) works for workers and the
 *     parameter server; a wrong password and a missing CA are clear errors before any work.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { encodeBlob } from '../src/distributed/redis/codec';
import { connectRedis } from '../src/distributed/redis/connect';
import { Keys } from '../src/distributed/redis/protocol';
import type { DistConfigInput, Injections } from '../src/distributed/server';
import type { RunConfig } from '../src/train/config';
import { buildModel } from '../src/nn/zoo';
import { C, finalParams, H, K, maxRelDiff, rowsClose, runCfg, trainDistributed } from './distributed-helpers';
import { clusterFixture, freePort, hasRedisServer, pendingHolder, startRedis, startWorker } from './redis-helpers';

const enabled = hasRedisServer();
const c = clusterFixture(3);
const keys = new Keys('dkfac');
const SGD = { method: 'sgd', optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 } };
const train = (cfg: RunConfig, dist: DistConfigInput, injections: Injections = {}) => trainDistributed(cfg, dist, { backend: c.backend, experiment: 'redis-test', injections });

/** The same run with every role in this thread, and over Redis. */
async function both(cfg: RunConfig, dist: DistConfigInput, injections: Injections = {}) {
  const inline = await train(cfg, { ...dist, gradients: 'inline', stats: 'inline', inverses: 'inline' });
  const remote = await train(cfg, { ...dist, gradients: 'redis', stats: 'redis', inverses: 'redis', redis: { url: c.redis.url } }, injections);
  return { inline, remote };
}

function expectSame(a: Awaited<ReturnType<typeof train>>, b: Awaited<ReturnType<typeof train>>, run: string) {
  expect(b.s.status, b.side.error).toBe('finished');
  expect(rowsClose(b.rows, a.rows)).toBeNull();
  const pa = finalParams(a.dir, run);
  const pb = finalParams(b.dir, run);
  expect(maxRelDiff(pb, pa)).toBeLessThan(1e-5);
  return { pa, pb };
}

/** Waits until a task with this id sits in a role stream's pending list; returns the holder. */
async function currentRunId(): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const ks = await c.client.keys('dkfac:run:*');
    if (ks.length === 1) return ks[0].slice('dkfac:run:'.length);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no single run descriptor');
}

describe.skipIf(!enabled)('Redis transport: 3 worker processes equal the in-line run', () => {
  it('synchronous SGD on 3 gradient workers: rows, final parameters, shards applied once, bytes per step', async () => {
    const cfg = runCfg({ ...SGD, run: 'sgd3', examples: 16 * 6, keepCheckpoint: true });
    // one shard computes for 3.5 s, longer than the 2 s after which a silent worker's task is taken over: its worker
    // keeps its claim fresh, so nobody takes it over
    const { inline, remote } = await both(cfg, { gradientWorkers: 3 }, { gradient: { step: 1, worker: 2, inject: { delayMs: 3500 } } });
    expectSame(inline, remote, 'sgd3');
    const t = remote.side.transport;
    expect(t.kind).toBe('redis');
    expect(remote.side.faults).toEqual([]);
    expect(t.resultsApplied).toBe(6 * 3);
    expect(t.duplicatesIgnored).toBe(0);
    expect(t.rejected).toEqual([]);
    expect(Object.keys(t.workers).length).toBe(3);
    // bytes per step: 3 × (θ down + gradient up) + the 16 examples (8×8×1 float32 + an int32 label each)
    const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
    const theta = model.numParams() * 4;
    model.dispose();
    const col = remote.rows[0].indexOf('bytes_gradient');
    for (const r of remote.rows.slice(1)) expect(Number(r[col])).toBe(3 * 2 * theta + 16 * (H * H * C * 4 + 4));
    // what went through Redis: θ once per step and read by each worker, plus the examples and the results
    expect(t.wireBytes.gradient.published).toBeGreaterThan(6 * theta);
    expect(t.wireBytes.gradient.fetched).toBeGreaterThanOrEqual(6 * theta);
    expect(t.wireBytes.gradient.results).toBeGreaterThan(6 * 3 * theta);
    // nothing of the run is left in Redis
    expect(await c.client.keys('dkfac:r:*')).toEqual([]);
    expect(await c.client.keys('dkfac:run:*')).toEqual([]);
    for (const w of c.workers) expect(w.out.text()).toMatch(/serving run redis-test\.sgd3\.\S+: experiment redis-test, run 'dist test' \(sgd3\), model cifarnet on synthetic 8×8×1, 4 classes/);
  });

  it('K-FAC with gradients, statistics and inverses on the workers (sync schedules): rows and final parameters', async () => {
    const cfg = runCfg({ run: 'kfac2', examples: 16 * 5, keepCheckpoint: true });
    const { inline, remote } = await both(cfg, { gradientWorkers: 2, inverse: { kind: 'sync', every: 2 } });
    expectSame(inline, remote, 'kfac2');
    const t = remote.side.transport;
    // 5 steps × (2 shards + 1 stats batch) + inverse jobs at steps 0, 2, 4
    expect(t.resultsApplied).toBe(5 * 3 + 3);
    expect(t.duplicatesIgnored).toBe(0);
    expect(remote.side.summary.inverseInstalls).toBe(3);
    // the stats and inverse columns are there and equal the in-line run's (compared above); the statistics are
    // float64 factors, larger than the float32 gradient of the same layers
    const col = (c: string) => remote.rows[0].indexOf(c);
    expect(Number(remote.rows[1][col('bytes_stats')])).toBeGreaterThan(0);
    expect(remote.side.summary.bytesPerStep_stats).toBeGreaterThan(remote.side.summary.bytesPerStep_gradients / 2);
  });
});

describe.skipIf(!enabled)('Redis transport: malformed and foreign messages', () => {
  it('are rejected and logged, never applied; the run equals the in-line run', async () => {
    const cfg = runCfg({ ...SGD, run: 'forged', examples: 16 * 5, keepCheckpoint: true });
    const dist = { gradientWorkers: 2 };
    const inline = await train(cfg, { ...dist });
    const log = vi.spyOn(console, 'log');
    // step 2's shard 0 waits 2.5 s on its worker: the window in which the forgeries arrive
    const injections: Injections = { gradient: { step: 2, worker: 0, inject: { delayMs: 2500 } } };
    const running = train(cfg, { ...dist, gradients: 'redis', redis: { url: c.redis.url } }, injections);
    const runId = await currentRunId();
    await pendingHolder(c.client, 'gradient', 'g2.0');
    const ns = keys.ns(runId);
    const results = keys.results(runId);
    const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
    const grads = [...model.params].map(([name, v]) => ({ name, shape: v.shape.slice(), data: new Float32Array(v.size).fill(0.5) }));
    const count = 8;
    const forged = (over: Record<string, unknown>) => encodeBlob({ run: runId, kind: 'gradient', step: 2, task: 'g2.0' }, { kind: 'gradient', step: 2, worker: 0, count, loss: 1, errors: 0, grads, bnStats: [], ms: 1, ...over });
    // 1. a result for the task in flight whose first gradient has the wrong shape
    const wrongShape = grads.map((g, i) => (i === 0 ? { ...g, shape: [g.data.length], data: g.data } : g));
    await c.client.set(`${ns}:res:g2.0:forger1`, forged({ grads: wrongShape }));
    await c.client.xadd(results, '*', 'v', '1', 'run', runId, 'task', 'g2.0', 'from', 'forger1', 'key', `${ns}:res:g2.0:forger1`, 'ms', '1');
    // 2. one with a NaN in it
    const nan = grads.map((g, i) => (i === 1 ? { ...g, data: Float32Array.from(g.data, (x, j) => (j === 3 ? Number.NaN : x)) } : g));
    await c.client.set(`${ns}:res:g2.0:forger2`, forged({ grads: nan }));
    await c.client.xadd(results, '*', 'v', '1', 'run', runId, 'task', 'g2.0', 'from', 'forger2', 'key', `${ns}:res:g2.0:forger2`, 'ms', '1');
    // 3. a result of another run on this run's stream
    await c.client.xadd(results, '*', 'v', '1', 'run', 'other-run.x', 'task', 'g2.0', 'from', 'stranger', 'key', `dkfac:r:other-run.x:res:g2.0:s`, 'ms', '1');
    // 4. a task of an unknown run, and a malformed task (garbage meta) of this run, on the gradient stream
    await c.client.xadd(keys.tasks('gradient'), '*', 'v', '1', 'run', 'no-such-run.1', 'task', 'g0.0', 'kind', 'gradient', 'step', '0', 'meta', '{}');
    await c.client.xadd(keys.tasks('gradient'), '*', 'v', '1', 'run', runId, 'task', 'g99.9', 'kind', 'gradient', 'step', '99', 'meta', '{"worker":"x"}');
    model.dispose();
    const remote = await running;
    const logged = log.mock.calls.map((c) => String(c[0])).join('\n');
    log.mockRestore();
    expectSame(inline, remote, 'forged');
    const t = remote.side.transport;
    const reasons = t.rejected.map((r: { reason: string }) => r.reason).join('\n');
    expect(reasons).toMatch(/gradient result g2\.0 from forger1 gradient .*shape \[\d+\], expected \[/);
    expect(reasons).toMatch(/gradient result g2\.0 from forger2: grads\[1\]\.data: non-finite value NaN at index 3/);
    expect(reasons).toMatch(/foreign: a result of run "other-run\.x"/);
    expect(reasons).toMatch(/foreign: no task g99\.9 was issued by this run/);
    // every shard applied once: the genuine result of g2.0 (and, maybe, that of its republished copy, ignored)
    expect(t.resultsApplied).toBe(5 * 2);
    expect(logged).toMatch(/redis: rejected a message for task g2\.0 from forger1/);
    const wlog = c.workers.map((w) => w.out.text()).join('\n');
    expect(wlog).toMatch(/dropped gradient task g0\.0 of run no-such-run\.1: the run is gone/);
    expect(wlog).toMatch(/rejected gradient task g99\.9 of run \S+: meta is malformed/);
  });
});

describe.skipIf(!enabled)('Redis transport: a task that throws in its worker process', () => {
  it("is reported with its role and step; under onFault 'respawn' it is computed again and the run equals the in-line one", async () => {
    const cfg = runCfg({ ...SGD, run: 'throws', examples: 16 * 4, keepCheckpoint: true });
    const inline = await train(cfg, { gradientWorkers: 2 });
    const remote = await train(cfg, { gradientWorkers: 2, gradients: 'redis', onFault: 'respawn', redis: { url: c.redis.url } }, { gradient: { step: 1, worker: 0, inject: { throw: 'injected failure' } } });
    expectSame(inline, remote, 'throws');
    expect(remote.side.faults).toEqual([expect.objectContaining({ role: 'gradient', step: 1, worker: 0, action: 'respawned and recomputed' })]);
    expect(remote.side.faults[0].message).toMatch(/^gradient worker 0 failed at step 1: \S+: injected failure$/);
    expect(remote.side.transport.resultsApplied).toBe(4 * 2);
  });
});

describe.skipIf(!enabled)('Redis transport: no worker', () => {
  it('the parameter server says what it waits for and gives up after the configured time; the CSV is intact', async () => {
    const log = vi.spyOn(console, 'log');
    const t0 = performance.now();
    // no worker listens under this prefix
    const { s, side } = await train(runCfg({ ...SGD, run: 'lonely', examples: 16 * 3 }), { gradientWorkers: 2, gradients: 'redis', redis: { url: c.redis.url, prefix: 'lonely', workerWaitSeconds: 2 } });
    const took = (performance.now() - t0) / 1000;
    const logged = log.mock.calls.map((c) => String(c[0])).join('\n');
    log.mockRestore();
    expect(s.status).toBe('failed');
    expect(side.error).toMatch(/no worker serving 'gradient' for \d+ s \(more than 2 s\) while tasks g0\.0, g0\.1 waited: giving up; the checkpoint and CSV are intact/);
    expect(took).toBeLessThan(30);
    expect(logged).toMatch(/redis: waiting for 2 gradient tasks \(g0\.0, g0\.1\) for \d+ s: no worker serving 'gradient' is connected to redis:\/\/127\.0\.0\.1:\d+ \(start one: npm run worker -- --redis/);
    expect(readFileSync(s.csvPath, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(await c.client.keys('lonely:r:*')).toEqual([]);
  });
});

describe.skipIf(!enabled)('Redis transport: security', () => {
  it('an ACL user with a password over TLS works; a wrong password and a missing CA are clear errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-tls-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    expect(existsSync(cert)).toBe(true);
    const acl = join(dir, 'users.acl');
    // the default user is off; 'dkfac' may touch only dkfac:* keys and no dangerous command (CONFIG, FLUSHALL, …)
    writeFileSync(acl, 'user default off\nuser dkfac on >s3cret-pw ~dkfac:* &* +@all -@dangerous\n');
    // TLS only (the plain port closed), on a free port of its own
    const port = await freePort();
    const tls = await startRedis(['--port', '0', '--tls-port', String(port), '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no', '--aclfile', acl]);
    const url = `rediss://dkfac@127.0.0.1:${port}`;
    try {
      await expect(connectRedis({ url, tlsCa: cert }, () => undefined)).rejects.toThrow(/cannot use Redis at rediss:\/\/dkfac@127\.0\.0\.1:\d+: .*(WRONGPASS|NOAUTH|invalid username-password).*check the user/);
      process.env.DKFAC_REDIS_PASSWORD = 'wrong';
      await expect(connectRedis({ url, tlsCa: cert }, () => undefined)).rejects.toThrow(/WRONGPASS|invalid username-password/);
      process.env.DKFAC_REDIS_PASSWORD = 's3cret-pw';
      await expect(connectRedis({ url }, () => undefined)).rejects.toThrow(/cannot use Redis at .*(certificate|self.signed).*TLS/i);
      const w = await startWorker(url, ['--tls-ca', cert, '--roles', 'gradient'], { DKFAC_REDIS_PASSWORD: 's3cret-pw' });
      const cfg = runCfg({ ...SGD, run: 'tls', examples: 16 * 3, keepCheckpoint: true });
      const inline = await train(cfg, { gradientWorkers: 2 });
      const remote = await train(cfg, { gradientWorkers: 2, gradients: 'redis', redis: { url, tlsCa: cert } });
      expectSame(inline, remote, 'tls');
      expect(remote.side.transport.url).toBe(url);
      expect(JSON.stringify(remote.side)).not.toMatch(/s3cret/);
      expect(w.out.text()).toMatch(/serving run redis-test\.tls\./);
      await w.kill();
    } finally {
      delete process.env.DKFAC_REDIS_PASSWORD;
      await tls.stop();
    }
  });
});
