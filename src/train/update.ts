/**
 * The one update path shared by SGD, SGD+momentum and K-FAC (optax style: small pieces over (gradients, state)).
 *
 *   v      = P(g)                       preconditioner: identity for SGD, (F̂ + λI)⁻¹ for K-FAC
 *   η      = schedule(k)                 exponential learning-rate decay, or
 *   η      = min(η_max, sqrt(c_k / Σ⟨v, g⟩))   the paper's KL rule (section 5), c_k = c0·ζ^⌊k/every⌋
 *   u      = μ u + η v                   momentum (0.9 in every experiment of the paper)
 *   θ      = θ − u
 *   θ̄      = ξ θ̄ + (1 − ξ) θ             Polyak averaging, used for evaluation
 *
 * The ordering of momentum and η is the spec's choice (the paper does not fix it; see paper-spec §1.5).
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';

export type Grads = Map<string, tf.Tensor>;

/** Exponential decay: value · rate^⌊step / every⌋ (the paper: 0.96 every half epoch). */
export const DecaySchedule = z.strictObject({
  rate: z.number().gt(0).lte(1).default(0.96),
  /**
   * decay interval: in steps; 'half-epoch' and 'two-epochs', resolved against the training set size; or
   * { examples: n }, every n training examples whatever the set's size (so that a quick profile decays on the same
   * schedule on the embedded 12,000-image subset and on the full 60,000)
   */
  every: z
    .union([z.number().int().positive(), z.enum(['half-epoch', 'two-epochs']), z.strictObject({ examples: z.number().int().positive() })])
    .default('half-epoch'),
});
export type DecaySchedule = z.infer<typeof DecaySchedule>;

/** Updates of `batchSize` examples in `examples` examples, rounded, at least 1: how schedules in examples become steps. */
export function stepsIn(examples: number, batchSize: number): number {
  return Math.max(1, Math.round(examples / batchSize));
}

export function decayInterval(d: DecaySchedule, epochSize: number, batchSize: number): number {
  if (typeof d.every === 'number') return d.every;
  if (typeof d.every === 'object') return stepsIn(d.every.examples, batchSize);
  return stepsIn((d.every === 'half-epoch' ? 0.5 : 2) * epochSize, batchSize);
}

export function decayed(base: number, d: DecaySchedule, interval: number, step: number): number {
  return base * d.rate ** Math.floor(step / interval);
}

/** Step-size rule: a learning-rate schedule or the KL-based rule. */
export type StepSize =
  | { kind: 'lr'; lr: number; decay: DecaySchedule; interval: number }
  | { kind: 'kl'; c0: number; etaMax: number; decay: DecaySchedule; interval: number };

/** The direction a preconditioner proposes and, for the KL rule, Σ⟨v, g⟩ over all parameters. */
export interface Preconditioned {
  v: Grads;
  vDotG?: number;
}

export interface Preconditioner {
  precondition(grads: Grads, step: number): Preconditioned;
}

export const identityPreconditioner: Preconditioner = {
  precondition: (g) => ({ v: g }),
};

/** Σ over parameters of ⟨a, b⟩, computed in float32 on the backend and read back once. */
export function innerProduct(a: Grads, b: Grads): number {
  const s = tf.tidy(() => {
    let acc: tf.Tensor = tf.scalar(0);
    for (const [k, t] of a) acc = tf.add(acc, tf.sum(tf.mul(t, b.get(k)!)));
    return acc;
  });
  const v = s.dataSync()[0];
  s.dispose();
  return v;
}

export interface StepInfo {
  eta: number;
  klThreshold?: number;
  vDotG?: number;
}

/** η for step `step` (0-based count of updates already applied). */
export function stepSize(rule: StepSize, step: number, vDotG?: number): StepInfo {
  if (rule.kind === 'lr') return { eta: decayed(rule.lr, rule.decay, rule.interval, step) };
  const c = decayed(rule.c0, rule.decay, rule.interval, step);
  if (vDotG === undefined) throw new Error('the KL step-size rule needs Σ⟨v, g⟩ from the preconditioner');
  if (!Number.isFinite(vDotG)) throw new Error(`KL step size: Σ⟨v, g⟩ is ${vDotG}`);
  const eta = vDotG > 0 ? Math.min(rule.etaMax, Math.sqrt(c / vDotG)) : rule.etaMax;
  return { eta, klThreshold: c, vDotG };
}

/** Momentum buffers and the parameter update θ ← θ − (μ u + η v). */
export class MomentumUpdater {
  readonly velocity = new Map<string, tf.Variable>();

  constructor(readonly momentum: number) {}

  apply(params: Map<string, tf.Variable>, v: Grads, eta: number, weightDecay = 0): void {
    tf.tidy(() => {
      for (const [name, p] of params) {
        let d = v.get(name);
        if (!d) continue;
        if (weightDecay > 0) d = tf.add(d, tf.mul(p, weightDecay));
        let u = this.velocity.get(name);
        if (!u) {
          u = tf.variable(tf.zerosLike(p), false);
          this.velocity.set(name, u);
        }
        const next = this.momentum > 0 ? tf.add(tf.mul(u, this.momentum), tf.mul(d, eta)) : tf.mul(d, eta);
        u.assign(next);
        p.assign(tf.sub(p, next));
      }
    });
  }

  /** Replaces the momentum buffers with saved values. */
  restore(saved: Map<string, { shape: number[]; data: Float32Array }>): void {
    this.dispose();
    for (const [k, s] of saved) this.velocity.set(k, tf.variable(tf.tensor(s.data, s.shape), false));
  }

  dispose(): void {
    for (const u of this.velocity.values()) u.dispose();
    this.velocity.clear();
  }
}

/**
 * Exponentially decayed Polyak averaging of the iterates θ̄ ← ξθ̄ + (1−ξ)θ, zero-debiased so that early evaluations
 * are not pulled toward the initial value. Applied to the parameters and the batch-norm running statistics.
 */
export class PolyakAverage {
  readonly avg = new Map<string, tf.Variable>();
  private count = 0;

  constructor(readonly decay: number) {}

  update(tensors: Map<string, tf.Tensor>): void {
    this.count++;
    tf.tidy(() => {
      for (const [name, t] of tensors) {
        let a = this.avg.get(name);
        if (!a) {
          a = tf.variable(tf.zerosLike(t), false);
          this.avg.set(name, a);
        }
        a.assign(tf.add(tf.mul(a, this.decay), tf.mul(t, 1 - this.decay)));
      }
    });
  }

  /** The debiased averages (caller disposes). */
  debiased(): Map<string, tf.Tensor> {
    const corr = 1 - this.decay ** this.count;
    const out = new Map<string, tf.Tensor>();
    for (const [k, a] of this.avg) out.set(k, tf.tidy(() => (this.count ? tf.div(a, corr) : a.clone())));
    return out;
  }

  get steps(): number {
    return this.count;
  }

  /** Replaces the averages with saved values. */
  restore(saved: Map<string, { shape: number[]; data: Float32Array }>, steps: number): void {
    this.dispose();
    for (const [k, s] of saved) this.avg.set(k, tf.variable(tf.tensor(s.data, s.shape), false));
    this.count = steps;
  }

  dispose(): void {
    for (const a of this.avg.values()) a.dispose();
    this.avg.clear();
  }
}
