/**
 * What every received message must be, checked before any of it is used (codec.ts has already checked the framing,
 * the run id, kind and step in the blob's header, the byte lengths and that float arrays are finite). The receiver
 * compares against what it expects: the run's manifest (parameter names and shapes, batch-norm layers, K-FAC blocks
 * with their factor dimensions: written by the parameter server from its own model into the run descriptor), the
 * task it issued (step, shard, size, seed, the snapshot it sent). A mismatch throws MessageError naming the first
 * problem; nothing of a rejected message is applied.
 */
import type { BlockSnapshot, FisherBlock } from '../../kfac/blocks';
import type { Model } from '../../nn/model';
import type { GradientResult, InverseResult, ReplicaSpec, StatsResult, WireTensor } from '../messages';
import { MessageError } from './codec';

export interface TensorSpec {
  name: string;
  shape: number[];
}

export type BlockDims =
  | { name: string; kind: 'kronecker'; dA: number; dG: number }
  | { name: string; kind: 'doubly-factored'; dK: number; dPsi: number; dD: number; hasBias: boolean }
  | { name: string; kind: 'scale-shift'; d: number };

/** The shapes of a run's messages, from the parameter server's model. */
export interface RunManifest {
  params: TensorSpec[];
  bn: { name: string; channels: number }[];
  /** the K-FAC blocks (empty for SGD) */
  blocks: BlockDims[];
}

type Obj = Record<string, unknown>;

function fail(what: string, msg: string): never {
  throw new MessageError(`${what}: ${msg}`);
}

function obj(v: unknown, what: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(what, 'not an object');
  return v as Obj;
}

function arr(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) fail(what, 'not a list');
  return v;
}

function eq(v: unknown, want: unknown, what: string): void {
  if (v !== want) fail(what, `${JSON.stringify(v)}, expected ${JSON.stringify(want)}`);
}

function finite(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(what, `${JSON.stringify(v)} is not a finite number`);
  return v;
}

function int(v: unknown, what: string, lo = 0, hi = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(v) || (v as number) < lo || (v as number) > hi) fail(what, `${JSON.stringify(v)} is not an integer in [${lo}, ${hi}]`);
  return v as number;
}

function f32(v: unknown, length: number, what: string): Float32Array {
  if (!(v instanceof Float32Array)) fail(what, `dtype ${v?.constructor?.name ?? typeof v}, expected float32`);
  if (v.length !== length) fail(what, `${v.length} values, expected ${length}`);
  return v;
}

function f64(v: unknown, length: number, what: string): Float64Array {
  if (!(v instanceof Float64Array)) fail(what, `dtype ${v?.constructor?.name ?? typeof v}, expected float64`);
  if (v.length !== length) fail(what, `${v.length} values, expected ${length}`);
  return v;
}

function i32(v: unknown, length: number, what: string): Int32Array {
  if (!(v instanceof Int32Array)) fail(what, `dtype ${v?.constructor?.name ?? typeof v}, expected int32`);
  if (v.length !== length) fail(what, `${v.length} values, expected ${length}`);
  return v;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** A list of named float32 tensors with exactly the names (in order) and shapes of `expected`. */
export function checkTensors(v: unknown, expected: readonly TensorSpec[], what: string): WireTensor[] {
  const list = arr(v, what);
  if (list.length !== expected.length) fail(what, `${list.length} tensors, expected ${expected.length}`);
  return list.map((x, i) => {
    const t = obj(x, `${what}[${i}]`);
    const e = expected[i];
    eq(t.name, e.name, `${what}[${i}] name`);
    const shape = arr(t.shape, `${what} ${e.name} shape`);
    if (shape.length !== e.shape.length || shape.some((d, j) => d !== e.shape[j])) fail(`${what} ${e.name}`, `shape [${shape}], expected [${e.shape}]`);
    return { name: e.name, shape: e.shape.slice(), data: f32(t.data, numel(e.shape), `${what} ${e.name}`) };
  });
}

/** A batch of examples for the replica `spec`: [n, H, W, C] float32 images and n int32 labels in range. */
export function checkBatch(v: unknown, spec: ReplicaSpec, what: string, maxExamples = 1 << 20) {
  const b = obj(v, what);
  const shape = arr(b.shape, `${what} shape`);
  if (shape.length !== 4) fail(what, `shape [${shape}] is not [n, H, W, C]`);
  const n = int(shape[0], `${what} examples`, 1, maxExamples);
  const [H, W, C] = spec.inputShape;
  if (shape[1] !== H || shape[2] !== W || shape[3] !== C) fail(what, `examples of ${shape.slice(1).join('×')}, the model takes ${H}×${W}×${C}`);
  const images = f32(b.images, n * H * W * C, `${what} images`);
  const labels = i32(b.labels, n, `${what} labels`);
  for (let i = 0; i < n; i++) if (labels[i] < 0 || labels[i] >= spec.numClasses) fail(`${what} labels`, `label ${labels[i]} at ${i} is not in [0, ${spec.numClasses})`);
  return { images, labels, shape: [n, H, W, C] as [number, number, number, number] };
}

function checkBlockArrays(s: Obj, d: BlockDims, what: string): void {
  eq(s.kind, d.kind, `${what} kind`);
  if (d.kind === 'kronecker') {
    eq(s.dA, d.dA, `${what} dA`);
    eq(s.dG, d.dG, `${what} dG`);
    f64(s.A, d.dA * d.dA, `${what} A`);
    f64(s.G, d.dG * d.dG, `${what} G`);
    finite(s.scale, `${what} scale`);
  } else if (d.kind === 'doubly-factored') {
    eq(s.dK, d.dK, `${what} dK`);
    eq(s.dPsi, d.dPsi, `${what} dPsi`);
    eq(s.dD, d.dD, `${what} dD`);
    f64(s.K, d.dK * d.dK, `${what} K`);
    f64(s.Psi, d.dPsi * d.dPsi, `${what} Psi`);
    f64(s.D, d.dD * d.dD, `${what} D`);
  } else {
    eq(s.d, d.d, `${what} d`);
    f64(s.F, d.d * d.d, `${what} F`);
  }
}

/** The dimensions of each block of a factor snapshot. */
export function blockDims(snaps: readonly BlockSnapshot[]): BlockDims[] {
  return snaps.map((s) =>
    s.kind === 'kronecker'
      ? { name: s.name, kind: s.kind, dA: s.dA, dG: s.dG }
      : s.kind === 'doubly-factored'
        ? { name: s.name, kind: s.kind, dK: s.dK, dPsi: s.dPsi, dD: s.dD, hasBias: s.hasBias }
        : { name: s.name, kind: s.kind, d: s.d },
  );
}

/** The dimensions of each registered block's factors (before any statistics). */
export function registeredBlockDims(blocks: readonly FisherBlock[]): BlockDims[] {
  return blocks.map((b) =>
    b.kind === 'kronecker'
      ? { name: b.name, kind: b.kind, dA: b.dA, dG: b.dG }
      : b.kind === 'doubly-factored'
        ? { name: b.name, kind: b.kind, dK: b.T, dPsi: b.C, dD: b.O, hasBias: b.bias !== undefined }
        : { name: b.name, kind: b.kind, d: 2 * b.C },
  );
}

/** The manifest of a run: the model's parameters and batch-norm layers, the K-FAC blocks' dimensions. */
export function runManifest(model: Model, blocks: readonly FisherBlock[]): RunManifest {
  return {
    params: [...model.params].map(([name, v]) => ({ name, shape: v.shape.slice() })),
    bn: model.layers.flatMap((l) => (l.kind === 'batchnorm' ? [{ name: l.name, channels: l.channels }] : [])),
    blocks: registeredBlockDims(blocks),
  };
}

const MAX_DIM = 1 << 16;

/** An inverse task's snapshots, damping and mode, consistent in themselves (the inverse worker has no model). */
export function checkInverseInput(snapshots: unknown, damping: unknown, mode: unknown, what: string): { snapshots: BlockSnapshot[]; damping: Record<string, number>; mode: 'factored' | 'eigen' } {
  if (mode !== 'factored' && mode !== 'eigen') fail(`${what} mode`, `${JSON.stringify(mode)} is not factored or eigen`);
  const dmp = obj(damping, `${what} damping`);
  const names = new Set<string>();
  const snaps = arr(snapshots, `${what} snapshots`).map((x, i) => {
    const s = obj(x, `${what} snapshot ${i}`);
    if (typeof s.name !== 'string' || names.has(s.name)) fail(`${what} snapshot ${i}`, `name ${JSON.stringify(s.name)} missing or repeated`);
    names.add(s.name);
    const w = `${what} snapshot ${s.name}`;
    const d: BlockDims =
      s.kind === 'kronecker'
        ? { name: s.name, kind: s.kind, dA: int(s.dA, `${w} dA`, 1, MAX_DIM), dG: int(s.dG, `${w} dG`, 1, MAX_DIM) }
        : s.kind === 'doubly-factored'
          ? { name: s.name, kind: s.kind, dK: int(s.dK, `${w} dK`, 1, MAX_DIM), dPsi: int(s.dPsi, `${w} dPsi`, 1, MAX_DIM), dD: int(s.dD, `${w} dD`, 1, MAX_DIM), hasBias: s.hasBias === true }
          : s.kind === 'scale-shift'
            ? { name: s.name, kind: s.kind, d: int(s.d, `${w} d`, 1, MAX_DIM) }
            : fail(`${w} kind`, `${JSON.stringify(s.kind)} is not a block kind`);
    checkBlockArrays(s, d, w);
    int(s.steps, `${w} steps`);
    const lam = finite(dmp[s.name], `${what} damping of ${s.name}`);
    if (!(lam > 0)) fail(`${what} damping of ${s.name}`, `${lam} is not positive`);
    return s as unknown as BlockSnapshot;
  });
  return { snapshots: snaps, damping: dmp as Record<string, number>, mode };
}

/** A gradient worker's result for shard `worker` of step `step` (`count` examples). */
export function checkGradientResult(v: unknown, e: { step: number; worker: number; count: number; manifest: RunManifest }, what: string): GradientResult {
  const r = obj(v, what);
  eq(r.kind, 'gradient', `${what} kind`);
  eq(r.step, e.step, `${what} step`);
  eq(r.worker, e.worker, `${what} shard`);
  eq(r.count, e.count, `${what} examples`);
  finite(r.loss, `${what} loss`);
  int(r.errors, `${what} errors`, 0, e.count);
  finite(r.ms, `${what} ms`);
  const grads = checkTensors(r.grads, e.manifest.params, `${what} gradient`);
  const bn = arr(r.bnStats, `${what} batch-norm statistics`);
  if (bn.length !== e.manifest.bn.length) fail(`${what} batch-norm statistics`, `${bn.length} layers, expected ${e.manifest.bn.length}`);
  const bnStats = bn.map((x, i) => {
    const b = obj(x, `${what} batch-norm ${i}`);
    const m = e.manifest.bn[i];
    eq(b.name, m.name, `${what} batch-norm ${i} name`);
    return { name: m.name, mean: f32(b.mean, m.channels, `${what} ${m.name} mean`), variance: f32(b.variance, m.channels, `${what} ${m.name} variance`) };
  });
  return { kind: 'gradient', step: e.step, worker: e.worker, count: e.count, loss: r.loss as number, errors: r.errors as number, grads, bnStats, ms: r.ms as number };
}

/** A stats worker's result: statistics of every K-FAC block, each once, with the block's dimensions. */
export function checkStatsResult(v: unknown, e: { step: number; seed: string; blocks: readonly BlockDims[] }, what: string): StatsResult {
  const r = obj(v, what);
  eq(r.kind, 'stats', `${what} kind`);
  eq(r.step, e.step, `${what} step`);
  eq(r.seed, e.seed, `${what} seed`);
  finite(r.ms, `${what} ms`);
  const stats = arr(r.stats, `${what} statistics`);
  if (stats.length !== e.blocks.length) fail(`${what} statistics`, `${stats.length} blocks, expected ${e.blocks.length}`);
  const byName = new Map(e.blocks.map((b) => [b.name, b]));
  const seen = new Set<string>();
  for (const [i, x] of stats.entries()) {
    const pair = arr(x, `${what} statistics ${i}`);
    const name = pair[0];
    const d = typeof name === 'string' ? byName.get(name) : undefined;
    if (!d || seen.has(name as string) || pair.length !== 2) fail(`${what} statistics ${i}`, `block ${JSON.stringify(name)} unknown or repeated`);
    seen.add(d.name);
    checkBlockArrays(obj(pair[1], `${what} ${d.name}`), d, `${what} ${d.name}`);
  }
  return r as unknown as StatsResult;
}

/** An inverse worker's result for the snapshot of step `fromStep`: each block inverted or reported failed, once. */
export function checkInverseResult(v: unknown, e: { fromStep: number; blocks: readonly BlockDims[]; mode: 'factored' | 'eigen' }, what: string): InverseResult {
  const r = obj(v, what);
  eq(r.kind, 'inverse', `${what} kind`);
  eq(r.fromStep, e.fromStep, `${what} fromStep`);
  finite(r.ms, `${what} ms`);
  int(r.threadId, `${what} threadId`);
  const byName = new Map(e.blocks.map((b) => [b.name, b]));
  const seen = new Set<string>();
  const claim = (name: unknown, w: string): BlockDims => {
    const d = typeof name === 'string' ? byName.get(name) : undefined;
    if (!d || seen.has(name as string)) fail(w, `block ${JSON.stringify(name)} unknown or repeated`);
    seen.add(d.name);
    return d;
  };
  for (const [i, x] of arr(r.inverses, `${what} inverses`).entries()) {
    const inv = obj(x, `${what} inverse ${i}`);
    const d = claim(inv.name, `${what} inverse ${i}`);
    const w = `${what} inverse ${d.name}`;
    eq(inv.kind, d.kind, `${w} kind`);
    finite(inv.damping, `${w} damping`);
    if (d.kind === 'kronecker') {
      eq(inv.dA, d.dA, `${w} dA`);
      eq(inv.dG, d.dG, `${w} dG`);
      eq(inv.mode, e.mode, `${w} mode`);
      if (e.mode === 'factored') {
        f64(inv.left, d.dA * d.dA, `${w} left`);
        f64(inv.right, d.dG * d.dG, `${w} right`);
        arr(inv.pis, `${w} pis`).forEach((p, j) => finite(p, `${w} pis[${j}]`));
      } else {
        f64(inv.QA, d.dA * d.dA, `${w} QA`);
        f64(inv.QG, d.dG * d.dG, `${w} QG`);
        f64(inv.weights, d.dA * d.dG, `${w} weights`);
      }
    } else if (d.kind === 'doubly-factored') {
      eq(inv.mode, 'factored', `${w} mode`);
      eq(inv.dK, d.dK, `${w} dK`);
      eq(inv.dPsi, d.dPsi, `${w} dPsi`);
      eq(inv.dD, d.dD, `${w} dD`);
      f64(inv.PK, d.dK * d.dK, `${w} PK`);
      f64(inv.PPsi, d.dPsi * d.dPsi, `${w} PPsi`);
      f64(inv.PD, d.dD * d.dD, `${w} PD`);
      if (d.hasBias) f64(inv.biasInv, d.dD * d.dD, `${w} biasInv`);
      else eq(inv.biasInv, null, `${w} biasInv`);
      arr(inv.pis, `${w} pis`).forEach((p, j) => finite(p, `${w} pis[${j}]`));
    } else {
      eq(inv.mode, 'full', `${w} mode`);
      eq(inv.d, d.d, `${w} d`);
      f64(inv.Finv, d.d * d.d, `${w} Finv`);
    }
  }
  for (const [i, x] of arr(r.failed, `${what} failures`).entries()) {
    const f = obj(x, `${what} failure ${i}`);
    claim(f.name, `${what} failure ${i}`);
    if (typeof f.message !== 'string') fail(`${what} failure ${i}`, 'no message');
  }
  const missing = e.blocks.filter((b) => !seen.has(b.name)).map((b) => b.name);
  if (missing.length) fail(what, `no inverse for block(s) ${missing.join(', ')}`);
  const blockMs = obj(r.blockMs, `${what} blockMs`);
  for (const b of e.blocks) finite(blockMs[b.name], `${what} blockMs of ${b.name}`);
  return r as unknown as InverseResult;
}
