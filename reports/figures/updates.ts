/**
 * Not a figure of the paper, but its central measurement at CIFAR scale: K-FAC against tuned SGD+momentum and SGD+BN
 * on the paper's CIFAR net, at one batch size, as training loss against updates. The verdict counts the updates each
 * method needs to reach a common training-loss target (the best baseline's final smoothed training loss), and states
 * the ratio. The paper's own headline for this comparison is on GoogLeNet/ImageNet (Figure 3: 3.5× faster than
 * standard BN, 1.5–2× faster than improved BN). Beside the update ratio, the real-time ratio on this machine.
 *
 * Over seeds (reports/seeds.ts): the 95 % interval (log scale) of the best baseline's update ratio is judged against
 * the same bars (reproduced: ≥ 1.5 for every value allowed; not reproduced: ≤ 1; partly between; inconclusive
 * otherwise). A seed where K-FAC never reached the target gives only a bound from above.
 */
import { seededVerdict } from '../seeds';
import { decide, formatInterval, type Interval, possibleLevels, times } from '../stats';
import type { FigureSpec, LoadedRun, Verdict } from '../types';
import { ratiosText, ratiosToTarget, recordRatios, smoothedRows } from './speed';

/** "far fewer updates": reproduced from this ratio up; 'partly' above 1 */
export const RATIO_MIN = 1.5;

export { SMOOTH_ROWS } from './speed';

/** (step, smoothed train_loss) of a run. */
export function smoothedLoss(run: LoadedRun): { step: number; loss: number }[] {
  return smoothedRows(run).map((p) => ({ step: p.row.step, loss: p.loss }));
}

/** First step at which the smoothed training loss is at or below `target` (undefined if never). */
export function updatesTo(run: LoadedRun, target: number): number | undefined {
  return smoothedLoss(run).find((p) => p.loss <= target)?.step;
}

/** One seed's runs, measured (its status is the single-seed reading of the bars). */
export function updatesSeed(runs: LoadedRun[]): Verdict {
  const kfac = runs.find((r) => r.sidecar.method === 'kfac');
  const baselines = runs.filter((r) => r.sidecar.method === 'sgd' || r.sidecar.method === 'sgd+bn');
  if (!kfac || baselines.length === 0) {
    return { status: 'no data', text: 'Needs a K-FAC run and at least one SGD baseline (npm run exp:updates).', numbers: {} };
  }
  const finals = baselines.map((b) => {
    const s = smoothedLoss(b);
    return s.length ? s[s.length - 1].loss : Number.POSITIVE_INFINITY;
  });
  const target = Math.min(...finals);
  const numbers: Record<string, number> = { target };
  const k = updatesTo(kfac, target);
  const parts: string[] = [`Target: training loss ${target.toFixed(3)} (the best baseline's final smoothed loss)`];
  const best0 = baselines[finals.indexOf(target)]!;
  const censored = recordRatios(numbers, 'kfac_', ratiosToTarget(best0, kfac, target));
  if (k === undefined) {
    parts.push(`K-FAC did not reach it in ${kfac.rows.at(-1)?.step ?? 0} updates.`);
    const last = kfac.rows.at(-1)?.step ?? 0;
    const u = updatesTo(best0, target);
    if (u !== undefined && last > 0) {
      numbers.bestBaselineRatio = u / last;
      censored.push('bestBaselineRatio');
    }
    return { status: 'not reproduced', text: parts.join(' '), numbers, censored };
  }
  numbers.kfacUpdates = k;
  parts.push(`K-FAC reached it after ${k} updates`);
  let best = Number.POSITIVE_INFINITY;
  for (const b of baselines) {
    const u = updatesTo(b, target);
    const key = b.sidecar.method === 'sgd' ? 'sgdUpdates' : 'sgdBnUpdates';
    if (u === undefined) {
      parts.push(`${b.sidecar.label} did not reach it in ${b.rows.at(-1)?.step ?? 0} updates`);
      continue;
    }
    numbers[key] = u;
    numbers[`${key.replace('Updates', '')}Ratio`] = u / k;
    best = Math.min(best, u);
    parts.push(`${b.sidecar.label} after ${u} (${(u / k).toFixed(2)}× K-FAC's)`);
  }
  const ratio = best / k;
  numbers.bestBaselineRatio = ratio;
  const status = ratio >= RATIO_MIN ? 'reproduced' : ratio > 1 ? 'partly' : 'not reproduced';
  return { status, text: `${parts.join('; ')}.`, numbers, censored };
}

/** The rule on levels: ratio 0 (≤ 1), 1 (> 1), 2 (≥ RATIO_MIN). */
export function updatesRule(l: Record<string, number>): Verdict['status'] {
  return l.ratio === 2 ? 'reproduced' : l.ratio === 1 ? 'partly' : 'not reproduced';
}

function judge(iv: Record<string, Interval>): { status: Verdict['status']; text: string; summary: string } {
  const r = iv.bestBaselineRatio!;
  const parts = [`Updates the best baseline needs ÷ K-FAC's to the best baseline's final training loss: ${formatInterval(r, times)} (reproduced from ${RATIO_MIN}×).`];
  for (const [key, name] of [
    ['sgdRatio', 'SGD+momentum'],
    ['sgdBnRatio', 'SGD+BN'],
  ] as const) {
    if (iv[key]) parts.push(`${name} ÷ K-FAC: ${formatInterval(iv[key], times)}.`);
  }
  const same = ratiosText(iv, 'kfac_');
  if (same) parts.push(`K-FAC vs the best baseline to the same target: faster ${same}.`);
  const { status } = decide({ ratio: possibleLevels(r, [1 + 1e-9, RATIO_MIN], 'higher') }, updatesRule);
  return { status, text: parts.join(' '), summary: `updates ratio ${formatInterval(r, times)}` };
}

export function updatesVerdict(runs: LoadedRun[]): Verdict {
  return seededVerdict(runs, { measure: updatesSeed, judge });
}

export const updatesFigure: FigureSpec = {
  id: 'updates',
  title: "K-FAC vs tuned SGD+momentum and SGD+BN on the paper's CIFAR net (updates to a training-loss target)",
  paperDescription:
    'The paper compares distributed K-FAC with SGD and SGD+BN baselines whose hyper-parameters were tuned, plotting training and validation curves against updates (Figures 2–5). This run does the same on the CIFAR net of section 6.1 at one batch size.',
  paperClaim:
    'K-FAC needs far fewer updates than the tuned first-order baselines: on GoogLeNet it is "3.5 times faster than SGD with standard BN baseline and 1.5-2 times faster than the enhanced BN baseline" (Figure 3).',
  resultsDir: 'results/updates',
  panels: [
    { x: 'step', y: 'train_loss', title: 'Training cross-entropy', xTitle: 'updates', yTitle: 'training cross-entropy', scaleY: 'log' },
    { x: 'step', y: 'test_error', title: 'Test error', xTitle: 'updates', yTitle: 'test error' },
  ],
  verdict: updatesVerdict,
};
