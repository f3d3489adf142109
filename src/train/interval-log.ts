/**
 * The per-run bookkeeping both training loops share (single-process and distributed): the evaluation schedule,
 * running means of the training loss and error over each logging interval, and the CSV row written at the end of an
 * interval (with test metrics at the Polyak-averaged parameters on evaluation steps).
 */
import type { RunConfig } from './config';
import type { RunWriter } from './results';
import type { CsvRow } from './schema';

/** What a checkpoint keeps of the log: the open interval's sums and the last values reported. */
export interface IntervalLogState {
  lossAcc: number;
  errAcc: number;
  nAcc: number;
  lastTrainLoss: number;
  lastTest?: { loss: number; error: number };
  /** data rows written to the CSV so far */
  rows: number;
}

export class IntervalLog {
  readonly totalSteps: number;
  private readonly evalAt = new Set<number>();
  private lossAcc = 0;
  private errAcc = 0;
  private nAcc = 0;
  lastTrainLoss = Number.NaN;
  lastTest: { loss: number; error: number } | undefined;
  /** data rows written so far */
  rows = 0;

  constructor(
    private readonly cfg: Pick<RunConfig, 'examples' | 'batchSize' | 'evals' | 'logEvery'>,
    private readonly writer: RunWriter,
    private readonly evaluate: () => Promise<{ loss: number; error: number }>,
  ) {
    this.totalSteps = Math.ceil(cfg.examples / cfg.batchSize);
    for (let i = 1; i <= cfg.evals; i++) this.evalAt.add(Math.round((i * this.totalSteps) / cfg.evals));
    this.evalAt.add(this.totalSteps);
  }

  /** Whether step k (1-based) evaluates on the test split. */
  isEvalStep(k: number): boolean {
    return this.evalAt.has(k);
  }

  /** Folds one step's mean loss and error count over `n` examples into the interval. */
  add(loss: number, errors: number, n: number): void {
    this.lossAcc += loss * n;
    this.errAcc += errors;
    this.nAcc += n;
  }

  /**
   * Ends the interval at step k when it is a logging or evaluation step (or `force`, e.g. a stop request): writes the
   * row with the running means, `fields` (clocks, step size, staleness) and, on evaluation steps, the test metrics.
   */
  async endStep(k: number, fields: Partial<CsvRow>, force = false): Promise<void> {
    const isEval = this.evalAt.has(k);
    if (!(k % this.cfg.logEvery === 0 || isEval || force) || this.nAcc === 0) return;
    this.lastTrainLoss = this.lossAcc / this.nAcc;
    const row: CsvRow = {
      step: k,
      examples: k * this.cfg.batchSize,
      train_loss: this.lastTrainLoss,
      train_error: this.errAcc / this.nAcc,
      ...fields,
    };
    if (isEval) {
      this.lastTest = await this.evaluate();
      row.test_loss = this.lastTest.loss;
      row.test_error = this.lastTest.error;
    }
    this.writer.append(row);
    this.rows++;
    this.lossAcc = this.errAcc = this.nAcc = 0;
  }

  state(): IntervalLogState {
    return { lossAcc: this.lossAcc, errAcc: this.errAcc, nAcc: this.nAcc, lastTrainLoss: this.lastTrainLoss, lastTest: this.lastTest, rows: this.rows };
  }

  restore(s: IntervalLogState): void {
    ({ lossAcc: this.lossAcc, errAcc: this.errAcc, nAcc: this.nAcc, lastTrainLoss: this.lastTrainLoss, lastTest: this.lastTest, rows: this.rows } = s);
  }
}
