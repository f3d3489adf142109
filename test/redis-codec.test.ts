/**
 * The Redis transport's messages without a server, and the network model:
 *   - every message kind, computed by the real roles (a gradient shard of a BN model, the statistics and inverses of
 *     K-FAC's blocks, a factor snapshot), survives encodeBlob → decodeBlob bit for bit and passes its check;
 *   - a malformed blob is rejected with the problem named: bad magic, a header that overruns, extra or missing bytes,
 *     another run / kind / step / task, an unknown dtype, NaN and Inf, a dangling or reused array reference;
 *   - the checks reject wrong names, shapes, dtypes, labels out of range, unknown or repeated blocks, a missing
 *     inverse;
 *   - the network model's transfer time of a phase is the hand computation; with it, a run's comm_seconds grows at
 *     each step by exactly the transfer time of that step's bytes (θ and gradients of N shards over the shared link).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { Network, NetworkModel, parseNetworkSpec, payloadBytes } from '../src/distributed/network';
import { decodeBlob, encodeBlob } from '../src/distributed/redis/codec';
import { blockDims, checkBatch, checkGradientResult, checkInverseInput, checkInverseResult, checkStatsResult, runManifest } from '../src/distributed/redis/validate';
import { gradientShard, invertSnapshots, statsBatch } from '../src/distributed/roles';
import { runDistributedTraining } from '../src/distributed/run';
import { DistConfig } from '../src/distributed/server';
import { registerBlocks } from '../src/kfac/registry';
import { buildModel } from '../src/nn/zoo';
import { batchOf, C, H, K, runCfg, synthSplit, trainData } from './distributed-helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

const hdr = { run: 'r1', kind: 'gradient', step: 3, task: 'g3.0' };

function sameBits(a: unknown, b: unknown): boolean {
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    return a.constructor === b.constructor && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameBits(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
    const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => sameBits((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return Object.is(a, b);
}

function setup() {
  const model = buildModel({ arch: 'cifarnet', bn: true }, [H, H, C], K, 2);
  const blocks = registerBlocks(model.layers, { conv: 'kfc', decay: 0.95 });
  const manifest = runManifest(model, blocks);
  expect(manifest.bn.length).toBeGreaterThan(0);
  expect(manifest.blocks.map((b) => b.kind)).toContain('scale-shift');
  const b = batchOf(synthSplit(8, 5), 0, 8);
  return { model, manifest, blocks, b };
}

describe('blobs round-trip every message kind bit for bit', () => {
  it('gradient (with batch norm), statistics, snapshot and inverses from the real roles', () => {
    const { model, manifest, blocks, b } = setup();
    try {
      const g = gradientShard(model, { step: 3, worker: 0, ...b });
      expect(g.bnStats.length).toBeGreaterThan(0);
      const gd = decodeBlob(encodeBlob(hdr, g), hdr, 'g');
      expect(sameBits(gd, g)).toBe(true);
      expect(checkGradientResult(gd, { step: 3, worker: 0, count: 8, manifest }, 'g').grads.map((t) => t.name)).toEqual(manifest.params.map((p) => p.name));

      const st = statsBatch(model, blocks, { step: 3, seed: 's', fisher: 'sampled', ...b });
      const sh = { run: 'r1', kind: 'stats', step: 3, task: 'ss' };
      const sd = decodeBlob(encodeBlob(sh, st), sh, 's');
      expect(sameBits(sd, st)).toBe(true);
      checkStatsResult(sd, { step: 3, seed: 's', blocks: manifest.blocks }, 's');

      for (const [name, s] of st.stats) (blocks.find((x) => x.name === name)!.accumulate as (s: unknown) => void)(s);
      const snapshots = blocks.map((x) => x.factors());
      const damping = Object.fromEntries(snapshots.map((s) => [s.name, 0.1]));
      const xh = { run: 'r1', kind: 'snapshot', step: 3, task: 'i3' };
      const xd = decodeBlob<{ snapshots: unknown; damping: unknown }>(encodeBlob(xh, { snapshots, damping }), xh, 'x');
      expect(sameBits(xd.snapshots, snapshots)).toBe(true);
      const inp = checkInverseInput(xd.snapshots, xd.damping, 'factored', 'x');
      expect(blockDims(inp.snapshots)).toEqual(manifest.blocks);

      const inv = invertSnapshots({ fromStep: 3, snapshots, damping, mode: 'factored' });
      const ih = { run: 'r1', kind: 'inverse', step: 3, task: 'i3' };
      const id = decodeBlob(encodeBlob(ih, inv), ih, 'i');
      expect(sameBits(id, inv)).toBe(true);
      checkInverseResult(id, { fromStep: 3, blocks: manifest.blocks, mode: 'factored' }, 'i');
      // eigen mode too
      const ie = invertSnapshots({ fromStep: 3, snapshots, damping, mode: 'eigen' });
      checkInverseResult(decodeBlob(encodeBlob(ih, ie), ih, 'i'), { fromStep: 3, blocks: manifest.blocks, mode: 'eigen' }, 'i');
    } finally {
      model.dispose();
    }
  });
});

describe('malformed blobs are rejected with the problem named', () => {
  const good = () => encodeBlob(hdr, { a: new Float32Array([1, 2, 3]), b: [new Int32Array([4, 5]), new Float64Array([6])], n: 7 });
  const bad = (buf: Buffer | null, re: RegExp, expect_ = hdr) => expect(() => decodeBlob(buf, expect_, 'blob')).toThrow(re);

  it('framing', () => {
    expect(decodeBlob(good(), hdr, 'blob')).toMatchObject({ n: 7 });
    bad(null, /blob: missing/);
    const b1 = good();
    b1.write('XXXX', 0, 'latin1');
    bad(b1, /not a dkfac blob/);
    const b2 = good();
    b2.writeUInt32LE(1 << 30, 4);
    bad(b2, /header of \d+ bytes overruns/);
    bad(Buffer.concat([good(), Buffer.alloc(8)]), /byte length \d+, its header describes \d+/);
    bad(good().subarray(0, good().length - 8), /byte length \d+, its header describes \d+/);
    const b3 = good();
    b3.write('{', 8, 'utf8');
    b3.write('x', 9, 'utf8');
    bad(b3, /header is not JSON/);
  });

  it('header fields, dtypes, non-finite values and references', () => {
    bad(good(), /foreign blob: run "r1", expected r2/, { ...hdr, run: 'r2' });
    bad(good(), /kind "gradient", expected stats/, { ...hdr, kind: 'stats' });
    bad(good(), /step 3, expected 4/, { ...hdr, step: 4 });
    bad(good(), /task "g3.0", expected g3.1/, { ...hdr, task: 'g3.1' });
    const withHeader = (mut: (h: Record<string, unknown>) => void, tail: Buffer = Buffer.alloc(0)) => {
      const src = good();
      const H0 = src.readUInt32LE(4);
      const h = JSON.parse(src.toString('utf8', 8, 8 + H0));
      mut(h);
      const hb = Buffer.from(JSON.stringify(h));
      const start = (8 + hb.length + 7) & ~7;
      const out = Buffer.alloc(start);
      out.write('DKF1', 0, 'latin1');
      out.writeUInt32LE(hb.length, 4);
      hb.copy(out, 8);
      const oldStart = (8 + H0 + 7) & ~7;
      return Buffer.concat([out, src.subarray(oldStart), tail]);
    };
    bad(withHeader((h) => ((h.arrays as unknown[][])[0][0] = 'uint8')), /array 0: bad entry \["uint8",3\]/);
    bad(withHeader((h) => ((h.body as Record<string, unknown>).n = { $a: 0 })), /bad array reference|array \d is not referenced/);
    bad(withHeader((h) => ((h.body as Record<string, unknown>).a = { $a: 9 })), /a: bad array reference/);
    bad(withHeader((h) => ((h.body as Record<string, unknown>).a = 1)), /array 0 is not referenced/);
    bad(encodeBlob(hdr, { x: new Float32Array([1, Number.NaN]) }), /x: non-finite value NaN at index 1/);
    bad(encodeBlob(hdr, { x: new Float64Array([Number.POSITIVE_INFINITY]) }), /x: non-finite value Infinity at index 0/);
    expect(() => encodeBlob(hdr, { x: new Uint8Array(2) })).toThrow(/cannot encode a Uint8Array/);
  });
});

describe('message checks', () => {
  it('reject wrong names, shapes, dtypes, labels, blocks and a missing inverse', () => {
    const { model, manifest, blocks, b } = setup();
    try {
      const g = gradientShard(model, { step: 1, worker: 1, ...b });
      const ok = { step: 1, worker: 1, count: 8, manifest };
      expect(() => checkGradientResult({ ...g, worker: 0 }, ok, 'g')).toThrow(/g shard: 0, expected 1/);
      expect(() => checkGradientResult({ ...g, count: 7 }, ok, 'g')).toThrow(/g examples: 7, expected 8/);
      expect(() => checkGradientResult({ ...g, grads: g.grads.slice(1) }, ok, 'g')).toThrow(/tensors, expected/);
      const renamed = g.grads.map((t, i) => (i === 0 ? { ...t, name: 'evil' } : t));
      expect(() => checkGradientResult({ ...g, grads: renamed }, ok, 'g')).toThrow(/g gradient\[0\] name: "evil", expected/);
      const f64 = g.grads.map((t, i) => (i === 2 ? { ...t, data: Float64Array.from(t.data) } : t));
      expect(() => checkGradientResult({ ...g, grads: f64 }, ok, 'g')).toThrow(/dtype Float64Array, expected float32/);
      const short = g.grads.map((t, i) => (i === 2 ? { ...t, data: t.data.subarray(1) } : t));
      expect(() => checkGradientResult({ ...g, grads: short }, ok, 'g')).toThrow(/values, expected/);
      expect(() => checkGradientResult({ ...g, bnStats: g.bnStats.slice(1) }, ok, 'g')).toThrow(/batch-norm statistics: \d+ layers, expected/);
      expect(() => checkGradientResult({ ...g, errors: 9 }, ok, 'g')).toThrow(/errors: 9 is not an integer in \[0, 8\]/);

      const spec = { model: { arch: 'cifarnet', bn: true } as never, inputShape: [H, H, C] as [number, number, number], numClasses: K };
      expect(checkBatch(b, spec, 'x').shape).toEqual([8, H, H, C]);
      expect(() => checkBatch({ ...b, labels: Int32Array.from(b.labels, (l, i) => (i === 2 ? K : l)) }, spec, 'x')).toThrow(/label 4 at 2 is not in \[0, 4\)/);
      expect(() => checkBatch({ ...b, shape: [8, H, H, 3] }, spec, 'x')).toThrow(/examples of 8×8×3, the model takes 8×8×1/);

      const st = statsBatch(model, blocks, { step: 1, seed: 's', fisher: 'sampled', ...b });
      const se = { step: 1, seed: 's', blocks: manifest.blocks };
      expect(() => checkStatsResult({ ...st, stats: [...st.stats, st.stats[0]] }, se, 's')).toThrow(/blocks, expected/);
      expect(() => checkStatsResult({ ...st, stats: [st.stats[1], ...st.stats.slice(1)] }, se, 's')).toThrow(/unknown or repeated/);
      const [n0, s0] = st.stats[0] as [string, { kind: string; A: Float64Array }];
      expect(() => checkStatsResult({ ...st, stats: [[n0, { ...s0, A: s0.A.subarray(1) }], ...st.stats.slice(1)] }, se, 's')).toThrow(new RegExp(`${n0} A: \\d+ values, expected`));
      expect(() => checkStatsResult({ ...st, seed: 't' }, se, 's')).toThrow(/s seed: "t", expected "s"/);

      for (const [name, s] of st.stats) (blocks.find((x) => x.name === name)!.accumulate as (s: unknown) => void)(s);
      const snaps = blocks.map((x) => x.factors());
      const damping = Object.fromEntries(snaps.map((s) => [s.name, 0.1]));
      expect(() => checkInverseInput(snaps, { ...damping, [snaps[0].name]: -1 }, 'factored', 'x')).toThrow(/-1 is not positive/);
      expect(() => checkInverseInput([snaps[0], snaps[0]], damping, 'factored', 'x')).toThrow(/missing or repeated/);
      expect(() => checkInverseInput(snaps, damping, 'magic', 'x')).toThrow(/"magic" is not factored or eigen/);
      const inv = invertSnapshots({ fromStep: 1, snapshots: snaps, damping, mode: 'factored' });
      const ie = { fromStep: 1, blocks: manifest.blocks, mode: 'factored' as const };
      expect(() => checkInverseResult({ ...inv, inverses: inv.inverses.slice(1) }, ie, 'i')).toThrow(/no inverse for block\(s\)/);
      expect(() => checkInverseResult({ ...inv, fromStep: 2 }, ie, 'i')).toThrow(/fromStep: 2, expected 1/);
    } finally {
      model.dispose();
    }
  });
});

describe('network model', () => {
  it('a phase over the shared link, by hand; placement and the data flag; the command-line spec', () => {
    const m = NetworkModel.parse({ bandwidthGbps: 1, latencyMs: 0.5 });
    expect(m.placement).toEqual({ gradient: 'remote', stats: 'remote', inverse: 'local' });
    const n = new Network(m);
    // 2 shards: 1 MB θ down each, 0.25 MB examples (not counted: data false), 1 MB gradient up each
    const t = [
      { role: 'gradient', kind: 'params', dir: 'down', bytes: 1e6 },
      { role: 'gradient', kind: 'params', dir: 'down', bytes: 1e6 },
      { role: 'gradient', kind: 'data', dir: 'down', bytes: 2.5e5 },
      { role: 'gradient', kind: 'gradients', dir: 'up', bytes: 1e6 },
      { role: 'gradient', kind: 'gradients', dir: 'up', bytes: 1e6 },
      { role: 'inverse', kind: 'snapshots', dir: 'down', bytes: 9e9 },
    ] as const;
    // down: 0.5 + 2e6·8/1e9 s = 0.5 + 16 ms; up the same
    expect(n.phaseMs(t)).toBeCloseTo(2 * (0.5 + 16), 9);
    expect(new Network({ ...m, data: true }).phaseMs(t)).toBeCloseTo(0.5 + 18 + 0.5 + 16, 9);
    expect(new Network({ ...m, placement: { ...m.placement, gradient: 'local' } }).phaseMs(t)).toBe(0);
    expect(new Network(undefined).phaseMs(t)).toBe(0);
    expect(payloadBytes({ a: new Float32Array(3), b: [new Float64Array(2)], c: 'x' })).toBe(28);
    expect(parseNetworkSpec('default')).toEqual(NetworkModel.parse({}));
    expect(parseNetworkSpec('bandwidthGbps=1,latencyMs=0.2,inverse=remote,data=true')).toMatchObject({ bandwidthGbps: 1, latencyMs: 0.2, data: true, placement: { inverse: 'remote', gradient: 'remote' } });
    expect(() => parseNetworkSpec('bandwidth=1')).toThrow(/unknown key 'bandwidth'/);
    expect(() => parseNetworkSpec('bandwidthGbps=-1')).toThrow(/bandwidthGbps/);
    expect(() => parseNetworkSpec('gradient=moon')).toThrow(/placement\.gradient/);
  });

  it("a run's comm_seconds grows at each step by the modelled transfer of that step's θ and gradients", async () => {
    const cfg = runCfg({ method: 'sgd', optimizer: { kind: 'sgd', lr: 0.05 }, run: 'net', examples: 16 * 4 });
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-net-'));
    const net = { bandwidthGbps: 0.1, latencyMs: 2 };
    const s = await runDistributedTraining(cfg, DistConfig.parse({ gradientWorkers: 2, network: net }), { experiment: 'test', profile: 'test', resultsDir: dir, backend: (await initBackend('wasm')), data: trainData() });
    expect(s.status).toBe('finished');
    const model = buildModel(cfg.model, [H, H, C], K, cfg.seed);
    const theta = model.numParams() * 4;
    model.dispose();
    // 2 shards: 2θ down, 2θ (gradients, same shapes, float32) up, each after one latency; 0.1 Gbit/s
    const perStep = 2 * (net.latencyMs + (2 * theta * 8) / (net.bandwidthGbps * 1e9) * 1000);
    const recs = parse(readFileSync(s.csvPath, 'utf8'), { columns: true }) as Record<string, string>[];
    expect(recs).toHaveLength(4);
    recs.forEach((r, i) => {
      expect(Number(r.comm_seconds) * 1000).toBeCloseTo(perStep * (i + 1), 2);
      expect(Number(r.bytes_gradient)).toBe(4 * theta + 16 * (H * H * C * 4 + 4));
      // the transfers are on the clock
      expect(Number(r.sim_seconds)).toBeGreaterThan(Number(r.comm_seconds));
    });
  });
});
