/**
 * npm run bench -- --only profile
 *
 * Where a training step's time goes, SGD beside K-FAC on the same model and batch: the step split by phase (the
 * optimizer's hooks timed around their calls: gradient + joint statistics, statistics folding, preconditioning, the
 * rest of the update) and by tfjs kernel (top-level kernels' self time, bench/backend.ts, over the profiled steps). Work
 * outside tfjs kernels (the addon's K-FAC calls on data read back, JavaScript) shows as the row 'outside kernels'.
 * This is the table to read before moving a kernel to the native engine.
 */
import { initBackend } from '../src/backend';
import type { OptimizerParts, Trainer } from '../src/train/trainer';
import { profileTopLevelKernels } from './backend';
import { type batchOf, benchTrainer } from './kfac';
import { QUICK_MODELS } from './models';

/** Wraps `obj[key]` so that its calls' wall time adds to `into[label]` (returned functions' calls too, via `wrapResult`). */
function timeMethod<T extends object>(obj: T, key: keyof T, label: string, into: Map<string, number>, wrapResult?: (r: unknown) => void) {
  const f = obj[key] as unknown as (...a: unknown[]) => unknown;
  if (typeof f !== 'function') return;
  (obj as Record<string, unknown>)[key as string] = (...a: unknown[]) => {
    const t0 = performance.now();
    try {
      const r = f.apply(obj, a);
      if (wrapResult && r) wrapResult(r);
      return r;
    } finally {
      into.set(label, (into.get(label) ?? 0) + performance.now() - t0);
    }
  };
}

interface Profile {
  stepMs: number;
  phases: Map<string, number>;
  kernels: Map<string, { ms: number; calls: number }>;
}

function profileSteps(parts: OptimizerParts, tr: Trainer, b: ReturnType<typeof batchOf>, steps: number): Profile {
  const phases = new Map<string, number>();
  timeMethod(parts.preconditioner, 'precondition', 'precondition', phases);
  timeMethod(parts, 'observe', 'observe (stats pass, inverse refresh)', phases);
  timeMethod(parts, 'jointStatistics', 'joint statistics: plan', phases, (j) => timeMethod(j as { fold: () => void }, 'fold', 'joint statistics: fold (Gram, EMA)', phases));
  let stepMs = 0;
  const stats = profileTopLevelKernels(() => {
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) tr.trainStep(b);
    stepMs = (performance.now() - t0) / steps;
  });
  const kernels = new Map<string, { ms: number; calls: number }>();
  for (const [k, e] of stats) kernels.set(k, { ms: e.ms / steps, calls: e.calls / steps });
  for (const [k, v] of phases) phases.set(k, v / steps);
  return { stepMs, phases, kernels };
}

export async function benchProfile(steps = 10) {
  const backend = await initBackend();
  const bz = 128;
  const m = QUICK_MODELS[0];
  const variants: [string, object][] = [
    ['sgd', { kind: 'sgd', lr: 0.01 }],
    ['kfac cheap, whole batch', { kind: 'kfac', conv: 'cheap', inverseEvery: 20, damping: 0.1 }],
    ['kfac kfc, ¼ batch', { kind: 'kfac', conv: 'kfc', inverseEvery: 20, damping: 0.1, statsBatch: bz / 4 }],
  ];
  const profiles: [string, Profile][] = [];
  for (const [name, opt] of variants) {
    const { model, parts, trainer: tr, batch: b } = benchTrainer(m, bz, steps, name, opt);
    tr.trainStep(b);
    tr.trainStep(b); // warm-up: primitives, first inverses
    profiles.push([name, profileSteps(parts, tr, b, steps)]);
    tr.dispose();
    model.dispose();
  }
  const base = profiles[0]![1].stepMs;
  console.log(`\n## Step profile: ${m.name}, batch ${bz}, backend ${backend.name}, mean of ${steps} profiled steps (ms per step)`);
  console.table(profiles.map(([n, p]) => ({ optimizer: n, 'ms/step': p.stepMs.toFixed(1), 'ratio to SGD': (p.stepMs / base).toFixed(2), ...Object.fromEntries([...p.phases].map(([k, v]) => [k, v.toFixed(1)])) })));
  const names = new Set(profiles.flatMap(([, p]) => [...p.kernels.keys()]));
  const rows = [...names].map((k) => {
    const r: Record<string, string> = { kernel: k };
    for (const [n, p] of profiles) {
      const e = p.kernels.get(k);
      r[`${n} ms`] = e ? e.ms.toFixed(2) : '';
      r[`${n} calls`] = e ? e.calls.toFixed(0) : '';
    }
    return r;
  });
  const total = (p: Profile) => [...p.kernels.values()].reduce((a, e) => a + e.ms, 0);
  // by the larger of the K-FAC columns, so that a kernel only one K-FAC variant calls (KFC's patch Gram) shows too
  const kfacCols = profiles.slice(1).map(([n]) => `${n} ms`);
  const weight = (r: Record<string, string>) => Math.max(...kfacCols.map((c) => Number(r[c] || 0)));
  rows.sort((a, b) => weight(b) - weight(a));
  const outside: Record<string, string> = { kernel: 'outside kernels' };
  for (const [n, p] of profiles) outside[`${n} ms`] = (p.stepMs - total(p)).toFixed(2);
  console.log('\n### by kernel (sorted by the larger K-FAC column; top 25)');
  console.table([...rows.slice(0, 25), outside]);
}
