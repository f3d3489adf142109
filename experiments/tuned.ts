/**
 * How the tuning grid keys its choices (results/grid/<experiment>/best-<method>.json), and how a figure looks one up.
 *
 * Two keys are written for every grid:
 *   - `<batch>`            the best setting at that batch size over every chunk size tried: for experiments where the
 *                          batch-norm chunk (rbz) is itself a tuned setting (Figure 6, updates), and for K-FAC lines;
 *   - `<batch>-rbz<rbz>`   the best learning rate at that batch size AND chunk size: for experiments whose chunk sizes
 *                          are different lines of the figure (Figure 3's improved BN rbz128 vs standard BN rbz32), each
 *                          of which needs its own tuned learning rate.
 *
 * One rule for every method (pickBest): the lowest final training loss among the points tried at the key. Baselines
 * are tuned by learning rate (and rbz), K-FAC lines by damping λ and the KL constant c0; each choice records how many
 * points were tried for its key, so a report can show that K-FAC and each baseline had the same budget.
 */
import { ConfigError } from '../src/train/config';
import type { TunedChoice, TunedSettings, TuningNote } from './registry';

export type { TunedChoice } from './registry';

/** The key of a tuned choice: by batch size alone, or by (batch size, rbz). */
export function tunedKey(batchSize: number, rbz?: number): string {
  return rbz === undefined ? String(batchSize) : `${batchSize}-rbz${rbz}`;
}

/** One grid point's outcome, as the summary CSV has it ('' = not measured / not a setting of this method). */
export interface GridOutcome {
  batch_size: number;
  lr: number | '';
  rbz: number | '';
  damping?: number | '';
  c0?: number | '';
  final_train_loss: number | '';
  run: string;
}

const num = (v: number | '' | undefined): number | undefined => (v === '' || v === undefined ? undefined : v);

/**
 * The best (lowest final training loss) point per batch size and per (batch size, rbz); unmeasured points (failed,
 * diverged) are never chosen but count as trials of their key.
 */
export function pickBest(rows: readonly GridOutcome[]): TunedSettings['best'] {
  const best: TunedSettings['best'] = {};
  const trials = new Map<string, number>();
  const keysOf = (r: GridOutcome) => [tunedKey(r.batch_size), ...(r.rbz !== '' ? [tunedKey(r.batch_size, r.rbz)] : [])];
  for (const r of rows) for (const k of keysOf(r)) trials.set(k, (trials.get(k) ?? 0) + 1);
  for (const r of rows) {
    if (r.final_train_loss === '' || !Number.isFinite(r.final_train_loss)) continue;
    const value = r.final_train_loss;
    for (const k of keysOf(r)) {
      if (!best[k] || value < best[k].value) {
        const c: TunedChoice = { value, run: r.run };
        for (const f of ['lr', 'rbz', 'damping', 'c0'] as const) {
          const v = num(r[f]);
          if (v !== undefined) c[f] = v;
        }
        best[k] = c;
      }
    }
  }
  for (const [k, c] of Object.entries(best)) c.trials = trials.get(k);
  return best;
}

/**
 * The grid's choice for one line of a figure: at (batch, rbz) when `rbz` is given (a figure whose lines differ in
 * rbz), else at the batch size. Undefined where the grid has not run that line.
 */
export function tunedChoice(t: TunedSettings | undefined, batchSize: number, rbz?: number): TunedChoice | undefined {
  return t?.best[tunedKey(batchSize, rbz)];
}

function defined(o: Record<string, number | undefined>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).filter((e): e is [string, number] => e[1] !== undefined));
}

/** Where a line's settings came from (the sidecar's notes.tuning): the grid's choice at (batch, rbz), or the profile. */
export function tuningNote(method: string, t: TunedSettings | undefined, batchSize: number, rbz: number | undefined, used: Record<string, number | undefined>): TuningNote {
  const key = tunedKey(batchSize, rbz);
  const c = t?.best[key];
  if (!c) return { method, source: 'profile', settings: defined(used) };
  return { method, source: 'grid', ...(t.file ? { file: t.file } : {}), key, ...(c.trials !== undefined ? { trials: c.trials } : {}), settings: defined(used) };
}

/**
 * A baseline line's learning rate (and rbz): the grid's choice at (batch, `lineRbz`) when tuned (lineRbz: the rbz that
 * makes the line, for figures whose lines differ in it), else the profile's `lr` (and `rbz`).
 */
export function tunedLr(method: string, t: TunedSettings | undefined, batchSize: number, fallback: { lr: number; rbz?: number }, lineRbz?: number): { lr: number; rbz?: number; tuning: TuningNote } {
  const c = tunedChoice(t, batchSize, lineRbz);
  const lr = c?.lr ?? fallback.lr;
  const rbz = lineRbz ?? c?.rbz ?? fallback.rbz;
  return { lr, rbz, tuning: tuningNote(method, t, batchSize, lineRbz, { lr, rbz }) };
}

/** The K-FAC optimizer settings a grid point or a tuned choice changes: damping λ and the KL rule's c0 (or lr). */
export interface KfacTunables {
  damping?: number;
  c0?: number;
  lr?: number;
}

type KfacOptimizerInput = { damping?: number; stepSize?: Record<string, unknown> & { rule?: string } } & Record<string, unknown>;

/**
 * The optimizer settings with `t` applied: damping replaced, c0 set in the KL rule (created with its defaults where the
 * profile leaves the step size unset), lr set in a learning-rate rule. A c0 for a learning-rate rule, or an lr for the
 * KL rule, is a configuration error naming the line.
 */
export function withKfacTunables<O extends KfacOptimizerInput>(opt: O, t: KfacTunables, what: string): O {
  const out: KfacOptimizerInput = { ...opt };
  if (t.damping !== undefined) out.damping = t.damping;
  const rule = opt.stepSize?.rule ?? 'kl';
  if (t.c0 !== undefined) {
    if (rule !== 'kl') throw new ConfigError(`${what}: c0 tunes the KL step-size rule, this line uses the '${rule}' rule`);
    out.stepSize = { ...(opt.stepSize ?? {}), rule: 'kl', c0: t.c0 };
  }
  if (t.lr !== undefined) {
    if (rule !== 'lr') throw new ConfigError(`${what}: lr tunes a learning-rate rule, this line uses the KL rule (tune its damping and c0)`);
    out.stepSize = { ...opt.stepSize, rule: 'lr', lr: t.lr };
  }
  return out as O;
}

/**
 * A K-FAC line's optimizer: the grid's damping and c0 (lr for a learning-rate rule) at the batch size when tuned, else
 * the profile's; with the note of where they came from.
 */
export function tunedKfac<O extends KfacOptimizerInput>(method: string, t: TunedSettings | undefined, batchSize: number, opt: O): { optimizer: O; tuning: TuningNote } {
  const c = tunedChoice(t, batchSize);
  const optimizer = c ? withKfacTunables(opt, { damping: c.damping, c0: c.c0, lr: c.lr }, `${method} bz${batchSize}`) : opt;
  const step = optimizer.stepSize as { rule?: string; c0?: number; lr?: number } | undefined;
  const used = { damping: optimizer.damping, ...((step?.rule ?? 'kl') === 'kl' ? { c0: step?.c0 ?? 0.01 } : { lr: step?.lr }) };
  return { optimizer, tuning: tuningNote(method, t, batchSize, undefined, used) };
}
