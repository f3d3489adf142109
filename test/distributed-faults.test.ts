/**
 * Worker faults: a worker that throws or whose thread dies is reported with its role, step and error; under
 * onFault 'respawn' its task is recomputed on a fresh worker and training goes on; under 'stop' the run ends cleanly
 * with its CSV rows intact and the fault in the sidecar. No worker outlives close().
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, type BackendInfo } from '../src/backend';
import { runDistributedTraining } from '../src/distributed/run';
import { DistConfig, ParameterServer } from '../src/distributed/server';
import { buildModel } from '../src/nn/zoo';
import { batchOf, C, H, K, runCfg, synthSplit, trainData } from './distributed-helpers';

let backend: BackendInfo;
beforeAll(async () => {
  backend = await initBackend();
});

describe('respawn', () => {
  it('a gradient worker that throws and a stats worker that dies are recomputed; training goes on', async () => {
    const cfg = runCfg();
    const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
    const ps = new ParameterServer(
      model,
      cfg,
      DistConfig.parse({ gradientWorkers: 2, gradients: 'thread', stats: 'thread', inverses: 'inline', onFault: 'respawn' }),
      { epochSize: 128 },
      0.9,
    );
    ps.injections = { gradient: { step: 1, worker: 1, inject: { throw: 'injected gradient failure' } }, stats: { step: 2, inject: { exit: true } } };
    const split = synthSplit(96, 4);
    try {
      for (let k = 0; k < 4; k++) {
        const r = await ps.step(batchOf(split, 16 * k, 16 * k + 16), batchOf(split, 64 + 8 * k, 72 + 8 * k));
        expect(Number.isFinite(r.loss)).toBe(true);
      }
      expect(ps.steps).toBe(4);
      expect(ps.faults).toHaveLength(2);
      expect(ps.faults[0]).toMatchObject({ role: 'gradient', step: 1, worker: 1, action: 'respawned and recomputed' });
      expect(ps.faults[0].message).toMatch(/gradient worker 1 failed at step 1: injected gradient failure/);
      expect(ps.faults[1]).toMatchObject({ role: 'stats', step: 2, action: 'respawned and recomputed' });
      expect(ps.faults[1].message).toMatch(/stats worker failed at step 2/);
    } finally {
      await ps.close();
      ps.dispose();
      model.dispose();
    }
    expect(ps.liveThreads).toBe(0);
  });
});

describe('stop', () => {
  it('an inverse worker that throws stops the run cleanly: CSV rows up to the fault, sidecar failed with the role', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-dist-'));
    const s = await runDistributedTraining(
      runCfg({ run: 'inv-stop', examples: 16 * 6 }),
      DistConfig.parse({ gradientWorkers: 1, inverses: 'thread', inverse: { kind: 'sync', every: 2 }, onFault: 'stop' }),
      { experiment: 'test', profile: 'test', resultsDir: dir, backend, data: trainData() },
      { inverse: { step: 2, inject: { throw: 'injected inverse failure' } } },
    );
    expect(s.status).toBe('failed');
    expect(s.steps).toBe(2);
    expect(s.faults).toEqual([expect.objectContaining({ role: 'inverse', step: 2, action: 'stopped' })]);
    const side = JSON.parse(readFileSync(s.sidecarPath, 'utf8'));
    expect(side.status).toBe('failed');
    expect(side.error).toMatch(/inverse worker failed at step 2: injected inverse failure/);
    const lines = readFileSync(s.csvPath, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(3); // header + steps 1 and 2
    expect(lines[0]).toContain('sim_seconds');
    expect(lines[2].split(',')[0]).toBe('2');
  });

  it('a gradient worker thread that dies under stop ends the run with the fault named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-dist-'));
    const s = await runDistributedTraining(
      runCfg({ run: 'grad-stop', examples: 16 * 4 }),
      DistConfig.parse({ gradientWorkers: 2, gradients: 'thread', inverses: 'inline', onFault: 'stop' }),
      { experiment: 'test', profile: 'test', resultsDir: dir, backend, data: trainData() },
      { gradient: { step: 1, worker: 0, inject: { exit: true } } },
    );
    expect(s.status).toBe('failed');
    expect(s.steps).toBe(1);
    expect(s.faults[0]).toMatchObject({ role: 'gradient', step: 1, worker: 0, action: 'stopped' });
    expect(readFileSync(s.csvPath, 'utf8').trim().split('\n')).toHaveLength(2);
  });
});
