/**
 * Zero-debiased exponential moving averages of Float64Array matrices [P §1.4 of the spec; tensorflow/kfac ZERO_DEBIAS]:
 *
 *   F_k = ε F_{k−1} + (1 − ε) F̂_k,  F_0 = 0;   read as F_k / (1 − ε^k).
 *
 * The denominator is carried by the same recurrence (w_k = ε w_{k−1} + (1 − ε), so w_k = 1 − ε^k), which makes a
 * constant input read back as itself to round-off after any number of updates.
 */
import { nativeAddon } from '../backend/native-handle';

export class ZeroDebiasedEma {
  private sum: Float64Array | null = null;
  private weight = 0;
  private count = 0;

  /** `decay` is ε, the weight on the old value (0.95 by default, as in tensorflow/kfac). */
  constructor(readonly decay = 0.95) {
    if (!(decay >= 0 && decay < 1)) throw new Error(`EMA decay must lie in [0, 1), got ${decay}`);
  }

  /** Folds one batch estimate in: F ← ε F + (1 − ε) x. */
  update(x: Float64Array): void {
    const e = this.decay;
    if (!this.sum) this.sum = new Float64Array(x.length);
    else if (this.sum.length !== x.length) throw new Error(`EMA: got ${x.length} entries, expected ${this.sum.length}`);
    const s = this.sum;
    const c = 1 - e;
    const addon = nativeAddon(); // the same loop in C++ (native/src/kfac.cc), bit for bit
    if (addon) addon.emaUpdate(s, x, e);
    else for (let i = 0; i < s.length; i++) s[i] = e * s[i] + c * x[i];
    this.weight = e * this.weight + c;
    this.count++;
  }

  /** The debiased average (a fresh copy). Throws before the first update. */
  value(): Float64Array {
    if (!this.sum) throw new Error('EMA read before any update');
    const out = new Float64Array(this.sum.length);
    const inv = 1 / this.weight;
    for (let i = 0; i < out.length; i++) out[i] = this.sum[i] * inv;
    return out;
  }

  /** Number of updates folded in. */
  get steps(): number {
    return this.count;
  }

  /** Serialisable state (checkpoints). */
  state(): EmaState {
    return { decay: this.decay, sum: this.sum && Float64Array.from(this.sum), weight: this.weight, count: this.count };
  }

  /** Restores a state written by `state()` (the decay must match). */
  load(s: EmaState): void {
    if (s.decay !== this.decay) throw new Error(`EMA state has decay ${s.decay}, this average uses ${this.decay}`);
    this.sum = s.sum && Float64Array.from(s.sum);
    this.weight = s.weight;
    this.count = s.count;
  }
}

export interface EmaState {
  decay: number;
  sum: Float64Array | null;
  weight: number;
  count: number;
}
