/**
 * Faults of the Redis transport, with real processes on loopback (a redis-server of this file's own on a free port,
 * three worker processes started as `npm run worker` starts them):
 *   - a worker killed with kill -9 while it computes a shard: another worker takes the task over within 5 s of the
 *     killed one's last sign of life, the step completes, the sidecar records the takeover, every shard is applied
 *     exactly once and the CSV equals the in-line run's (clocks aside);
 *   - Redis killed mid-run: the run stops (status failed, the error says so) with its checkpoint and its CSV intact;
 *     Redis started again (empty), the same workers reconnect and --resume finishes a run equal to the in-line one;
 *   - Redis unreachable at start: `exp run … --redis` exits with a clear error before any work (no data read, no
 *     result written) and never prints the URL's password;
 *   - the parameter server (`exp run fig2 … --redis`) killed with kill -9: `--resume` continues with the workers still
 *     connected, and the result equals the same experiment run in-line.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DistConfigInput, Injections } from '../src/distributed/server';
import type { RunConfig } from '../src/train/config';
import { checkpointPath } from '../src/train/session';
import { finalParams, maxRelDiff, rows, rowsClose, runCfg, trainDistributed } from './distributed-helpers';
import { clusterFixture, freePort, hasRedisServer, pendingHolder, runProcess, startWorker } from './redis-helpers';

const enabled = hasRedisServer();
const c = clusterFixture(3);
const SGD = { method: 'sgd', optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 } };
const train = (cfg: RunConfig, dist: DistConfigInput, injections: Injections = {}, dir?: string, resume = false) =>
  trainDistributed(cfg, dist, { backend: c.backend, experiment: 'redis-faults', injections, dir, resume });

describe.skipIf(!enabled)('a worker killed with kill -9 mid-task', () => {
  it('its task is taken over within 5 s of its last sign of life; no shard lost or applied twice; the CSV equals the in-line run', async () => {
    const cfg = runCfg({ ...SGD, run: 'kill9', examples: 16 * 6, keepCheckpoint: true });
    const inline = await train(cfg, { gradientWorkers: 3 });
    // step 3's shard 1 sleeps 8 s on whichever worker takes it: it is killed meanwhile
    const running = train(cfg, { gradientWorkers: 3, gradients: 'redis', redis: { url: c.redis.url } }, { gradient: { step: 3, worker: 1, inject: { delayMs: 8000 } } });
    const holder = await pendingHolder(c.client, 'gradient', 'g3.1');
    const victim = c.workers.find((w) => w.name === holder)!;
    expect(victim).toBeDefined();
    const killedAt = performance.now();
    process.kill(victim.pid, 'SIGKILL');
    const remote = await running;
    const after = (performance.now() - killedAt) / 1000;
    expect(remote.s.status, remote.side.error).toBe('finished');
    expect(rowsClose(remote.rows, inline.rows)).toBeNull();
    expect(maxRelDiff(finalParams(remote.dir, 'kill9'), finalParams(inline.dir, 'kill9'))).toBeLessThan(1e-5);
    const takeovers = remote.side.faults.filter((f: { action: string }) => f.action === 'taken over');
    expect(takeovers).toHaveLength(1);
    const ev = takeovers[0];
    expect(ev).toMatchObject({ role: 'gradient', step: 3, worker: 1, from: holder });
    expect(ev.by).not.toBe(holder);
    expect(c.workers.map((w) => w.name)).toContain(ev.by);
    // the takeover came after the worker's claim went stale (takeover-ms 2000) and within 5 s of its last sign of life
    expect(ev.silentMs).toBeGreaterThanOrEqual(2000);
    expect(ev.silentMs).toBeLessThanOrEqual(5000);
    expect(ev.message).toMatch(/gradient task g3\.1 \(step 3, shard 1\) held by \S+ was taken over by \S+ after \d\.\d s without a sign of life/);
    expect(after).toBeLessThan(15);
    // every shard applied once; the killed worker never answered
    expect(remote.side.transport.resultsApplied).toBe(6 * 3);
    expect(remote.side.transport.duplicatesIgnored).toBe(0);
    expect(remote.side.summary.redisResultsApplied).toBe(18);
    const taker = c.workers.find((w) => w.name === ev.by)!;
    expect(taker.out.text()).toMatch(new RegExp(`took over gradient task g3\\.1 of run \\S+ from ${holder.replace(/[.:]/g, '\\$&')} \\(silent for \\d\\.\\d s\\)`));
    // a new worker joins in the dead one's place
    c.workers = [...c.workers.filter((w) => w !== victim), await startWorker(c.redis.url)];
  });
});

describe.skipIf(!enabled)('Redis lost mid-run', () => {
  it('the run stops with its checkpoint and CSV intact; once Redis is back, --resume finishes it equal to the in-line run', async () => {
    const cfg = runCfg({ ...SGD, run: 'lost', examples: 16 * 10, logEvery: 1, evals: 2, checkpointEvery: 2, keepCheckpoint: true });
    const dist = { gradientWorkers: 2 };
    const inline = await train(cfg, dist);
    const remoteDist = { ...dist, gradients: 'redis', redis: { url: c.redis.url, lostAfterSeconds: 2 } } as const;
    const running = train(cfg, remoteDist, { gradient: { step: 5, worker: 0, inject: { delayMs: 3000 } } });
    await pendingHolder(c.client, 'gradient', 'g5.0');
    await c.redis.stop(true);
    const first = await running;
    expect(first.s.status).toBe('failed');
    expect(first.side.error).toMatch(/lost the connection to Redis at redis:\/\/127\.0\.0\.1:\d+ \(down for \d+\.\d s, more than 2 s\): the run stops with its last checkpoint and its CSV intact; start Redis again and rerun with --resume/);
    // the rows of steps 1–5 are there, whole; the checkpoint is the one after step 4
    expect(first.rows.map((r) => r[0])).toEqual(['step', '1', '2', '3', '4', '5']);
    expect(rowsClose(first.rows, inline.rows.slice(0, 6))).toBeNull();
    expect(existsSync(checkpointPath(first.dir, 'lost'))).toBe(true);
    await c.redis.restart();
    // the same worker processes reconnect by themselves
    for (let i = 0; i < 200 && (await c.client.keys('dkfac:worker:*').catch(() => [])).length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await c.client.keys('dkfac:worker:*')).length).toBe(3);
    const resumed = await train(cfg, remoteDist, {}, first.dir, true);
    expect(resumed.s.status, resumed.side.error).toBe('finished');
    expect(resumed.s.resumedFrom).toBe(4);
    expect(rowsClose(resumed.rows, inline.rows)).toBeNull();
    expect(maxRelDiff(finalParams(resumed.dir, 'lost'), finalParams(inline.dir, 'lost'))).toBeLessThan(1e-5);
    for (const w of c.workers) expect(w.proc.exitCode).toBeNull();
  });
});

describe.skipIf(!enabled)('the experiment command with --redis', () => {
  it('Redis unreachable at start: a clear error before any work, the password never printed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-unreach-'));
    const port = await freePort();
    const p = runProcess(['experiments/cli.ts', 'run', 'fig2', '--only', 'kfac-sync-gpu1', '--seeds', '1', '--results', dir, '--no-report', '--redis', `redis://dk:topsecret@127.0.0.1:${port}`]);
    const code = await p.done;
    expect(code).toBe(1);
    const out = p.out.text();
    expect(out).toMatch(new RegExp(`error: cannot use Redis at redis://dk@127\\.0\\.0\\.1:${port}: connect ECONNREFUSED 127\\.0\\.0\\.1:${port} \\(is redis-server running there, and is its port open to this machine\\?\\)`));
    expect(out).not.toMatch(/topsecret/);
    expect(out).not.toMatch(/^data: /m);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('the parameter server killed with kill -9: --resume continues with the workers still connected, equal to the in-line run', async () => {
    const sets = ['batchSize=32', 'examples=256', 'gpus=[2]', 'schedules=["sync"]', 'syncEvery=4', 'evals=4', 'logEvery=1', 'evalExamples=100', 'data.trainSubset=1000', 'kfac.statsBatch=8'].flatMap((s) => ['--set', s]);
    const run = 'kfac-sync-gpu2-s1';
    const args = (dir: string) => ['experiments/cli.ts', 'run', 'fig2', '--seeds', '1', '--results', dir, '--no-report', '--backend', 'wasm', ...sets];
    const inDir = mkdtempSync(join(tmpdir(), 'dkfac-ps-inline-'));
    const rDir = mkdtempSync(join(tmpdir(), 'dkfac-ps-redis-'));
    const inline = runProcess(args(inDir));
    expect(await inline.done, inline.out.text()).toBe(0);
    const csv = join(rDir, 'fig2', `${run}.csv`);
    const first = runProcess([...args(rDir), '--redis', c.redis.url]);
    // kill it once step 5 is written (the checkpoint of the evaluation at step 4 is there)
    for (let i = 0; i < 1200; i++) {
      if (existsSync(csv) && readFileSync(csv, 'utf8').trim().split('\n').length >= 6) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(existsSync(checkpointPath(join(rDir, 'fig2'), run))).toBe(true);
    first.proc.kill('SIGKILL');
    await first.done;
    const firstRun = /redis: run (fig2\.kfac-sync-gpu2-s1\.\S+) on/.exec(first.out.text())?.[1];
    expect(firstRun).toBeDefined();
    const second = runProcess([...args(rDir), '--redis', c.redis.url, '--resume']);
    expect(await second.done, second.out.text()).toBe(0);
    expect(second.out.text()).toMatch(/resuming from step [46] /);
    const secondRun = /redis: run (fig2\.kfac-sync-gpu2-s1\.\S+) on/.exec(second.out.text())?.[1];
    expect(secondRun).toBeDefined();
    expect(secondRun).not.toBe(firstRun);
    // the same worker processes served both parameter servers
    const served = c.workers.filter((w) => w.out.text().includes(`serving run ${firstRun}`) || w.out.text().includes(`serving run ${secondRun}`));
    expect(served.length).toBeGreaterThan(0);
    for (const w of c.workers) expect(w.proc.exitCode).toBeNull();
    expect(c.workers.some((w) => w.out.text().includes(`serving run ${secondRun}`))).toBe(true);
    expect(rowsClose(rows(csv), rows(join(inDir, 'fig2', `${run}.csv`)))).toBeNull();
    const side = JSON.parse(readFileSync(join(rDir, 'fig2', `${run}.json`), 'utf8'));
    expect(side.status).toBe('finished');
    expect(side.resumes).toHaveLength(1);
    expect(side.config.distributed).toMatchObject({ gradients: 'redis', stats: 'redis', inverses: 'redis' });
  });
});
