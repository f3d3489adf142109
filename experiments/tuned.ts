/**
 * How the tuning grid keys its choices (results/grid/<experiment>/best-<method>.json), and how a figure looks one up.
 *
 * Two keys are written for every grid:
 *   - `<batch>`            the best setting at that batch size over every chunk size tried: for experiments where the
 *                          batch-norm chunk (rbz) is itself a tuned setting (Figure 6, updates);
 *   - `<batch>-rbz<rbz>`   the best learning rate at that batch size AND chunk size: for experiments whose chunk sizes
 *                          are different lines of the figure (Figure 3's improved BN rbz128 vs standard BN rbz32), each
 *                          of which needs its own tuned learning rate.
 */
import type { TunedSettings } from './registry';

export type TunedChoice = TunedSettings['best'][string];

/** The key of a tuned choice: by batch size alone, or by (batch size, rbz). */
export function tunedKey(batchSize: number, rbz?: number): string {
  return rbz === undefined ? String(batchSize) : `${batchSize}-rbz${rbz}`;
}

/** One grid point's outcome, as the summary CSV has it ('' = not measured). */
export interface GridOutcome {
  batch_size: number;
  lr: number;
  rbz: number | '';
  final_train_loss: number | '';
  run: string;
}

/** The best (lowest final training loss) point per batch size and per (batch size, rbz); unmeasured points are skipped. */
export function pickBest(rows: readonly GridOutcome[]): TunedSettings['best'] {
  const best: TunedSettings['best'] = {};
  const offer = (k: string, r: GridOutcome) => {
    const value = r.final_train_loss as number;
    if (!best[k] || value < best[k].value) {
      best[k] = { lr: r.lr, rbz: r.rbz === '' ? undefined : r.rbz, value, run: r.run };
    }
  };
  for (const r of rows) {
    if (r.final_train_loss === '' || !Number.isFinite(r.final_train_loss)) continue;
    offer(tunedKey(r.batch_size), r);
    if (r.rbz !== '') offer(tunedKey(r.batch_size, r.rbz), r);
  }
  return best;
}

/**
 * The grid's choice for one baseline line of a figure: at (batch, rbz) when `rbz` is given (a figure whose lines
 * differ in rbz), else at the batch size. Undefined where the grid has not run that line.
 */
export function tunedChoice(t: TunedSettings | undefined, batchSize: number, rbz?: number): TunedChoice | undefined {
  return t?.best[tunedKey(batchSize, rbz)];
}
