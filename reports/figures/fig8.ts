/**
 * Figure 8 of the paper (Appendix B): distributed K-FAC on GoogLeNet with the KL-based step size (`decayKL`: the
 * threshold c decayed ×0.96) against a fixed learning rate with exponential decay (`decayLR`: ×0.96 at the same
 * interval), training (dashed) and test (solid) cross-entropy and error against updates.
 *
 * The verdict, from the two runs' CSVs (sidecar.method 'kfac-kl' and 'kfac-lr'):
 *   - matched updates: at the last update both runs logged, each run's smoothed training loss (mean of the last
 *     SMOOTH_ROWS rows) and, at the last evaluation both made, their test loss and error;
 *   - a common target: the worse of the two final smoothed training losses, and the updates each needs to reach it
 *     (first row whose smoothed loss is at or below it); ratio = decayLR's updates / decayKL's;
 *   - reproduced when decayKL's smoothed training loss at the matched update is at least LOSS_MARGIN (relative) below
 *     decayLR's and decayKL reaches the target in fewer updates; partly when only one of the two holds, or when
 *     decayKL is ahead in test error only; not reproduced otherwise.
 */
import { SMOOTH_ROWS, smoothedRows, testAt } from './fig4';
import type { FigureSpec, LoadedRun, Verdict } from '../types';

// ---- Thresholds: this suite's choice, NOT the paper's (it states only "outperforms"). ----
/** decayKL "outperforms": its training loss at matched updates at least this much (relative) below decayLR's */
export const LOSS_MARGIN = 0.02;

/** Smoothed training loss of a run at the last row at or before `step`. */
export function smoothedLossAt(run: LoadedRun, step: number): { step: number; loss: number } | undefined {
  const p = smoothedRows(run).filter((x) => x.row.step <= step).at(-1);
  return p ? { step: p.row.step, loss: p.loss } : undefined;
}

/** First step whose smoothed training loss is at or below `target`. */
export function updatesToTarget(run: LoadedRun, target: number): number | undefined {
  return smoothedRows(run).find((p) => p.loss <= target)?.row.step;
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

export function fig8Verdict(runs: LoadedRun[]): Verdict {
  const numbers: Record<string, number> = {};
  const kl = runs.find((r) => r.sidecar.method === 'kfac-kl' && smoothedRows(r).length > 0);
  const lr = runs.find((r) => r.sidecar.method === 'kfac-lr' && smoothedRows(r).length > 0);
  if (!kl || !lr) return { status: 'no data', text: 'Needs a decayKL and a decayLR run with training loss (npm run exp:fig8).', numbers };
  const lastStep = (r: LoadedRun) => smoothedRows(r).at(-1)!.row.step;
  const matched = Math.min(lastStep(kl), lastStep(lr));
  const a = smoothedLossAt(kl, matched)!;
  const b = smoothedLossAt(lr, matched)!;
  numbers.matchedUpdates = matched;
  numbers.klLoss = a.loss;
  numbers.lrLoss = b.loss;
  const gap = (b.loss - a.loss) / b.loss;
  numbers.lossAdvantage = gap;
  const lrInit = (lr.sidecar.config as { optimizer?: { stepSize?: { lr?: number } } } | undefined)?.optimizer?.stepSize?.lr;
  const parts: string[] = [
    `At update ${matched}: training loss decayKL ${a.loss.toFixed(3)} vs decayLR ${b.loss.toFixed(3)} ` +
      `(decayKL ${pct(Math.abs(gap))} ${gap >= 0 ? 'lower' : 'higher'}; smoothed over ${SMOOTH_ROWS} rows)` +
      (lrInit !== undefined ? `; decayLR's initial learning rate ${lrInit}` : '') +
      '.',
  ];
  // test metrics at the last evaluation both made
  const lastEval = (r: LoadedRun) => r.rows.filter((x) => x.test_error !== undefined).at(-1)?.step ?? 0;
  const evalStep = Math.min(lastEval(kl), lastEval(lr));
  let testAhead = false;
  if (evalStep > 0) {
    const ta = testAt(kl, evalStep)!;
    const tb = testAt(lr, evalStep)!;
    numbers.testUpdates = evalStep;
    numbers.klTestError = ta.test_error!;
    numbers.lrTestError = tb.test_error!;
    if (ta.test_loss !== undefined) numbers.klTestLoss = ta.test_loss;
    if (tb.test_loss !== undefined) numbers.lrTestLoss = tb.test_loss;
    testAhead = ta.test_error! < tb.test_error!;
    parts.push(
      `Test error at update ${evalStep}: decayKL ${pct(ta.test_error!)} vs decayLR ${pct(tb.test_error!)}` +
        (ta.test_loss !== undefined && tb.test_loss !== undefined ? ` (test loss ${ta.test_loss.toFixed(3)} vs ${tb.test_loss.toFixed(3)})` : '') +
        '.',
    );
  }
  const target = Math.max(smoothedRows(kl).at(-1)!.loss, smoothedRows(lr).at(-1)!.loss);
  numbers.target = target;
  const ua = updatesToTarget(kl, target);
  const ub = updatesToTarget(lr, target);
  if (ua !== undefined) numbers.klUpdates = ua;
  if (ub !== undefined) numbers.lrUpdates = ub;
  const fewer = ua !== undefined && (ub === undefined || ua < ub);
  if (ua !== undefined && ub !== undefined) {
    numbers.updatesRatio = ub / ua;
    parts.push(`To reach training loss ${target.toFixed(3)} (the worse final loss): decayKL ${ua} updates, decayLR ${ub} (${(ub / ua).toFixed(2)}×).`);
  }
  const lossOk = gap >= LOSS_MARGIN;
  const status: Verdict['status'] = lossOk && fewer ? 'reproduced' : lossOk || fewer || testAhead ? 'partly' : 'not reproduced';
  parts.push(
    `This suite's bar: decayKL at least ${pct(LOSS_MARGIN)} lower in training loss at matched updates (${lossOk ? 'met' : 'not met'}) and fewer updates to the target (${fewer ? 'met' : 'not met'}).`,
  );
  return { status, text: parts.join(' '), numbers };
}

export const fig8Figure: FigureSpec = {
  id: 'fig8',
  title: 'Figure 8: dist.K-FAC on GoogLeNet, KL-based step size (decayKL) vs exponentially decayed learning rate (decayLR)',
  paperDescription:
    'GoogLeNet on ImageNet trained by distributed K-FAC at batch 256 with two step-size rules (Appendix B): ' +
    'dist.K-FAC bz256 decayKL (the KL-based step size, its threshold c decayed ×0.96) and dist.K-FAC bz256 decayLR ' +
    '(a fixed learning rate decayed ×0.96), both decayed every 3200 iterations. Cross-entropy (1.0 to 5.0) and error ' +
    '(0.40 to 0.70) against updates (0 to 3×10⁴); dashed training, solid validation.',
  paperClaim: 'KL-based step-size selection outperforms exponential learning-rate decay (Appendix B).',
  resultsDir: 'results/fig8',
  panels: [
    { x: 'step', y: 'train_loss', title: 'Training CE vs updates', xTitle: 'updates', yTitle: 'training cross-entropy' },
    { x: 'step', y: 'train_error', title: 'Training error vs updates', xTitle: 'updates', yTitle: 'training error' },
    { x: 'step', y: 'test_loss', title: 'Test CE vs updates', xTitle: 'updates', yTitle: 'test cross-entropy' },
    { x: 'step', y: 'test_error', title: 'Test error vs updates', xTitle: 'updates', yTitle: 'test error' },
    { x: 'step', y: 'learning_rate', title: 'Step size η vs updates', xTitle: 'updates', yTitle: 'η (after the KL clip for decayKL)', scaleY: 'log' },
  ],
  verdict: fig8Verdict,
};
