/**
 * Intervals over seeds: what every verdict states its numbers with, and how an interval decides a claim.
 *
 * The interval is Student's t interval at 95 %: mean ± t(0.975, n − 1) · s / √n over the n seeds' values (s the sample
 * standard deviation). With 3 seeds, t(0.975, 2) = 4.30: the interval is wide, and that is honest. A bootstrap
 * interval is not used: with 3 values it has only 10 distinct resamples and its percentile interval is far narrower
 * than the t interval, i.e. it overstates what 3 seeds know. Ratios (speed-ups, time ratios) are averaged on the log
 * scale (the interval of the mean log ratio, exponentiated: a geometric mean), so that "A is 2× faster than B" and
 * "B is 0.5× as fast as A" get the same interval; differences and relative gaps on the linear scale.
 *
 * A claim's part is judged by where the interval lies against this suite's bars: wholly on one side of a bar decides
 * that side; straddling a bar leaves both sides possible. One seed gives no interval: everything stays possible.
 */
import jStat from 'jstat';

export const CONFIDENCE = 0.95;

export interface Interval {
  /** seeds the values came from */
  n: number;
  /** mean (geometric mean on the log scale) */
  mean: number;
  /** the 95 % interval; −∞ / +∞ (0 / +∞ on the log scale) with fewer than 2 seeds */
  lo: number;
  hi: number;
  scale: 'linear' | 'log';
  values: number[];
  /**
   * seeds whose value is only a bound from above (e.g. K-FAC never reached the target: its speed-up is below the
   * value recorded): the interval's lower end then says nothing
   */
  censored: number;
}

/** Student's t quantile (jstat). */
export function tQuantile(p: number, dof: number): number {
  return jStat.studentt.inv(p, dof);
}

/** The 95 % t interval of values (on the log scale for ratios; values ≤ 0 there fall back to the linear scale). */
export function tInterval(values: readonly number[], scale: 'linear' | 'log' = 'linear', censored = 0): Interval {
  const xs = values.filter(Number.isFinite);
  const useLog = scale === 'log' && xs.every((x) => x > 0);
  const ys = useLog ? xs.map(Math.log) : xs;
  const n = ys.length;
  const back = (y: number) => (useLog ? Math.exp(y) : y);
  const m = n ? ys.reduce((a, b) => a + b, 0) / n : Number.NaN;
  if (n < 2) {
    return { n, mean: back(m), lo: useLog ? 0 : Number.NEGATIVE_INFINITY, hi: Number.POSITIVE_INFINITY, scale: useLog ? 'log' : 'linear', values: [...xs], censored };
  }
  const s = Math.sqrt(ys.reduce((a, y) => a + (y - m) ** 2, 0) / (n - 1));
  const h = tQuantile(0.5 + CONFIDENCE / 2, n - 1) * (s / Math.sqrt(n));
  return { n, mean: back(m), lo: back(m - h), hi: back(m + h), scale: useLog ? 'log' : 'linear', values: [...xs], censored };
}

/** 'higher': a larger value is the claim's side (speed-ups); 'lower': a smaller one is (gaps, time ratios). */
export type Direction = 'higher' | 'lower';

/**
 * The levels the interval's true value may be at: levels 0 … bars.length, level k = k bars cleared (for 'higher',
 * x ≥ bar clears it; for 'lower', x ≤ bar). A censored seed (a bound from above) makes every lower level possible
 * for 'higher' and every higher one for 'lower'. Fewer than 2 seeds: every level.
 */
export function possibleLevels(i: Interval, bars: readonly number[], direction: Direction = 'higher'): number[] {
  const cleared = (x: number) => bars.filter((b) => (direction === 'higher' ? x >= b : x <= b)).length;
  let a = cleared(i.lo);
  let b = cleared(i.hi);
  if (a > b) [a, b] = [b, a];
  if (i.n < 2 || !Number.isFinite(i.mean)) [a, b] = [0, bars.length];
  if (i.censored > 0) {
    if (direction === 'higher') a = 0;
    else b = bars.length;
  }
  return Array.from({ length: b - a + 1 }, (_, k) => a + k);
}

/** Whether |x| ≤ tol may hold (1) or fail (0) over the interval: [1] inside, [0] wholly outside, [0, 1] across. */
export function possibleWithin(i: Interval, tol: number): number[] {
  if (i.n < 2 || !Number.isFinite(i.mean)) return [0, 1];
  if (i.lo >= -tol && i.hi <= tol) return [1];
  if (i.hi < -tol || i.lo > tol) return [0];
  return [0, 1];
}

/**
 * Applies a figure's rule (its parts' levels → a status) to every combination of the levels its intervals leave
 * possible: one outcome for all of them is the verdict; several are 'inconclusive'. This is how the suite's existing
 * bars and rules are applied to intervals: 'reproduced' only when every possible value clears the bars, 'not
 * reproduced' only when none can.
 */
export function decide<S extends string>(parts: Record<string, number[]>, rule: (levels: Record<string, number>) => S): { status: S | 'inconclusive'; outcomes: S[] } {
  const keys = Object.keys(parts);
  const outcomes = new Set<S>();
  const walk = (k: number, acc: Record<string, number>) => {
    if (k === keys.length) {
      outcomes.add(rule({ ...acc }));
      return;
    }
    for (const l of parts[keys[k]!]!) walk(k + 1, { ...acc, [keys[k]!]: l });
  };
  walk(0, {});
  const list = [...outcomes];
  return { status: list.length === 1 ? list[0]! : 'inconclusive', outcomes: list };
}

/** '1.42× (95 % CI 1.10–1.83, 3 seeds)', or '1.42× (1 seed: no interval)'. */
export function formatInterval(i: Interval | undefined, f: (x: number) => string): string {
  if (!i || i.n === 0) return 'n/a';
  const cens = i.censored ? `; ${i.censored} seed${i.censored === 1 ? '' : 's'} only a bound from above` : '';
  if (i.n < 2) return `${f(i.mean)} (1 seed: no interval${cens})`;
  return `${f(i.mean)} (95 % CI ${f(i.lo)} to ${f(i.hi)}, ${i.n} seeds${cens})`;
}

/** The interval of a bounded quantity (a fraction: [0, 1]) clipped to its range; the t interval itself is not. */
export function clampInterval(i: Interval | undefined, lo: number, hi: number): Interval | undefined {
  return i && { ...i, lo: Math.max(lo, i.lo), hi: Math.min(hi, i.hi) };
}

export const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : x > 0 ? '∞' : '−∞');
export const percent = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : x > 0 ? '+∞' : '−∞');
export const fixed = (d: number) => (x: number) => (Number.isFinite(x) ? x.toFixed(d) : x > 0 ? '+∞' : '−∞');
