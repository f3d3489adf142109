/**
 * The calibrated cost clock (src/distributed/calibration.ts):
 *   - with a hand-driven raw clock and reference, a reading's difference is the raw difference × nominal ÷ the median
 *     of the recent reference timings (each the faster of two), the scale changes only at calibrate(), the reference's
 *     own time is on no clock, one slow timing does not move the median, and state/restore keeps the scale;
 *   - the real reference workload runs on the engine, takes a positive time and leaves no tensor behind;
 *   - a parameter server with costClock 'calibrated' calibrates once per step, its role costs are its CPU time × the
 *     step's scale, its sidecar records the calibration, and the configuration refuses roles off this thread.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { CalibratedClock, NOMINAL_REFERENCE_MS, timeReference } from '../src/distributed/calibration';
import { DistConfig, ParameterServer } from '../src/distributed/server';
import { buildModel } from '../src/nn/zoo';
import { formatIssues } from '../src/train/config';
import { batchOf, C, H, K, runCfg, synthSplit } from './distributed-helpers';

beforeAll(async () => {
  await initBackend();
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A raw clock that moves only when told, and a reference that takes the listed times on it. */
function fake(refTimes: number[]) {
  let t = 1000;
  const clock = () => t;
  const advance = (ms: number) => (t += ms);
  let i = 0;
  const reference = () => {
    const ms = refTimes[i++ % refTimes.length];
    t += ms;
    return ms;
  };
  return { clock, advance, reference };
}

describe('CalibratedClock', () => {
  it('scales raw time by nominal ÷ the median reference (faster of two), from the calibration on, and excludes the reference', () => {
    // pairs: (5, 4) → 4; (8, 9) → 8; (2, 30) → 2; (40, 50) → 40 (a slow outlier)
    const f = fake([5, 4, 8, 9, 2, 30, 40, 50]);
    const c = new CalibratedClock({ clock: f.clock, reference: f.reference, nominalMs: 2 });
    const r0 = c.now();
    f.advance(10);
    expect(c.now() - r0).toBeCloseTo(10, 12); // before any calibration: scale 1
    expect(c.calibrate()).toBeCloseTo(2 / 4, 12);
    // the reference's own 9 ms are on no clock
    const r1 = c.now();
    expect(r1 - r0).toBeCloseTo(10, 12);
    f.advance(8);
    expect(c.now() - r1).toBeCloseTo(8 * 0.5, 12);
    expect(c.calibrate()).toBeCloseTo(2 / 6, 12); // median of 4, 8
    expect(c.calibrate()).toBeCloseTo(2 / 4, 12); // median of 4, 8, 2
    const r2 = c.now();
    f.advance(12);
    const s = c.state();
    expect(c.now() - r2).toBeCloseTo(12 * 0.5, 12);
    expect(c.calibrate()).toBeCloseTo(2 / 6, 12); // median of 2, 4, 8, 40: the outlier moves it to (4 + 8) / 2 only
    const sum = c.summary()!;
    expect(sum).toMatchObject({ count: 4, nominalMs: 2, minMs: 2, maxMs: 40, medianMs: 6 });
    // a restored clock continues with the saved scale
    const g = fake([1]);
    const d = new CalibratedClock({ clock: g.clock, reference: g.reference, nominalMs: 2 });
    d.restore(s);
    const q = d.now();
    g.advance(10);
    expect(d.now() - q).toBeCloseTo(5, 12);
    expect(d.summary()!.count).toBe(3);
  });

  it('keeps only the last `window` timings and refuses a reference that takes no time', () => {
    const f = fake([10, 10, 10, 10, 1, 1, 1, 1, 1, 1]);
    const c = new CalibratedClock({ clock: f.clock, reference: f.reference, nominalMs: 1, window: 3 });
    expect(c.calibrate()).toBeCloseTo(0.1, 12);
    expect(c.calibrate()).toBeCloseTo(0.1, 12);
    expect(c.calibrate()).toBeCloseTo(0.1, 12); // (10, 10, 1)
    expect(c.calibrate()).toBeCloseTo(1, 12); // (10, 1, 1): the first 10 has left the window
    expect(c.summary()!.count).toBe(4);
    const z = fake([0]);
    expect(() => new CalibratedClock({ clock: z.clock, reference: z.reference }).calibrate()).toThrow(/reference workload timed 0 ms/);
    expect(() => new CalibratedClock({ clock: z.clock, reference: z.reference, nominalMs: -1 })).toThrow(/nominal reference time must be positive/);
  });

  it('the reference workload runs on the engine, takes a positive time and leaves no tensor', () => {
    timeReference(); // warm-up (kernel setup)
    const n0 = tf.memory().numTensors;
    const ms = timeReference();
    expect(ms).toBeGreaterThan(0);
    expect(Number.isFinite(ms)).toBe(true);
    expect(tf.memory().numTensors).toBe(n0);
    // on the elapsed clock too: the CPU time of a single-threaded workload does not exceed its elapsed time by much
    const wall = timeReference(() => performance.now());
    expect(wall).toBeGreaterThan(0);
  });
});

describe("ParameterServer with costClock 'calibrated'", () => {
  it('refuses roles off this thread', () => {
    for (const roles of [{ gradients: 'thread' }, { stats: 'thread' }, { inverses: 'thread' }]) {
      const bad = DistConfig.safeParse({ ...roles, costClock: 'calibrated' });
      expect(bad.success).toBe(false);
      expect(formatIssues(bad.error!)).toMatch(/'calibrated' rescales this process's CPU time by a reference timed in this process: every role must be 'inline'/);
    }
  });

  it("calibrates before every step, and its role costs are the step's CPU time × the step's scale", async () => {
    const cfg = runCfg({ method: 'sgd', optimizer: { kind: 'sgd', lr: 0.05 } });
    const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
    const ps = new ParameterServer(model, cfg, DistConfig.parse({ gradientWorkers: 2, inverses: 'inline', costClock: 'calibrated' }), { epochSize: 128 }, 0.9);
    const split = synthSplit(64, 6);
    try {
      expect(ps.calibrated).not.toBeNull();
      for (let k = 0; k < 4; k++) {
        const c0 = process.cpuUsage();
        const r = await ps.step(batchOf(split, 16 * k, 16 * k + 16));
        const d = process.cpuUsage(c0);
        const cpu = (d.user + d.system) / 1000;
        const sum = ps.calibrated!.summary()!;
        expect(sum.count).toBe(k + 1);
        expect(sum.nominalMs).toBe(NOMINAL_REFERENCE_MS[sum.engine] ?? NOMINAL_REFERENCE_MS.native);
        expect(sum.lastScale).toBeCloseTo(sum.nominalMs / median(ps.calibrated!.recent), 9);
        const { compute, update } = ps.clock.last;
        expect(compute).toBe(Math.max(...r.roleMs.shards));
        expect(compute).toBeGreaterThan(0);
        // the shards and the update ran one after the other on this thread, after the reference: in raw CPU time they
        // fit in the step's CPU time less at least the reference's faster run
        const raw = (r.roleMs.shards.reduce((a, b) => a + b, 0) + update) / sum.lastScale;
        expect(raw).toBeLessThanOrEqual(cpu - ps.calibrated!.recent.at(-1)! + 0.5);
      }
      const st = ps.state();
      expect(st.calibration?.all.length).toBe(4);
    } finally {
      await ps.close();
      ps.dispose();
      model.dispose();
    }
  });
});
