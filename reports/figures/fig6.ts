/**
 * Figure 6 of the paper: mini-batch scaling. K-FAC and SGD+BN at batch sizes B, 4B, 8B (the paper: 256, 1024, 2048
 * on GoogLeNet/ImageNet), training cross-entropy and training error against the number of examples consumed.
 *
 * The claim is about data efficiency: per example, K-FAC's progress should barely depend on the batch size, while
 * SGD+BN's should fall off beyond the smallest batch. The verdict measures exactly that from the runs' CSVs.
 * Beside it, at each batch size both methods ran, how many times fewer updates and real seconds K-FAC needs to reach
 * SGD+BN's final training loss (the same target).
 *
 * Over seeds (reports/seeds.ts): the 95 % intervals of K-FAC's worst gap and of SGD+BN's gap beyond its bar (SGD+BN's
 * largest-batch gap minus max(SGD_OVER_KFAC_RATIO × K-FAC's, SGD_MIN_GAP), paired by seed) are judged against the same
 * bars: reproduced when every value allowed meets both, not reproduced when none meets either, partly when every
 * allowed value meets exactly one, inconclusive otherwise.
 */
import { seededVerdict } from '../seeds';
import { decide, formatInterval, type Interval, percent, possibleLevels } from '../stats';
import type { FigureSpec, LoadedRun, Verdict } from '../types';
import { ratiosText, ratiosToTarget, recordRatios } from './speed';

// ---- Thresholds: this suite's choice, NOT the paper's (the paper states the claim only qualitatively). ----
/** K-FAC "close to ideal": no larger batch more than this much worse (relative training loss) than the smallest. */
export const KFAC_MAX_GAP = 0.1;
/** SGD+BN "rapidly loses data efficiency": its largest batch's gap must be at least this many times K-FAC's ... */
export const SGD_OVER_KFAC_RATIO = 2;
/** ... and at least this large in absolute terms (so a 0.5 % gap does not count as "rapidly losing"). */
export const SGD_MIN_GAP = 0.05;
/** Losses are compared as the mean over the last this-fraction of the examples up to the common horizon. */
export const WINDOW_FRACTION = 0.1;

/** Method families compared in Figure 6 (sidecar.method values). */
export const FAMILIES = [
  { key: 'kfac', name: 'K-FAC', methods: ['kfac', 'kfac+bn'] },
  { key: 'sgdbn', name: 'SGD+BN', methods: ['sgd+bn'] },
] as const;

type Point = { x: number; y: number };

/** (examples, train_loss) points of a run, finite values only, in examples order. */
export function lossPoints(run: LoadedRun): Point[] {
  const pts: Point[] = [];
  for (const row of run.rows) {
    const y = row.train_loss;
    if (y !== undefined && Number.isFinite(y) && Number.isFinite(row.examples)) pts.push({ x: row.examples, y });
  }
  return pts.sort((a, b) => a.x - b.x);
}

/** Linear interpolation of the points at x (clamped to the end values outside their range). */
export function interpolate(pts: Point[], x: number): number {
  if (x <= pts[0]!.x) return pts[0]!.y;
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1]!;
    const b = pts[i]!;
    if (x <= b.x) return b.x === a.x ? b.y : a.y + ((b.y - a.y) * (x - a.x)) / (b.x - a.x);
  }
  return pts[pts.length - 1]!.y;
}

/**
 * Mean of the piecewise-linear curve through `pts` over [lo, hi] (its integral divided by the width), i.e. the
 * training loss averaged over an examples window, independent of how densely each run logged. The window is cut to
 * start no earlier than the first point; an empty window gives the value at hi.
 */
export function windowMean(pts: Point[], lo: number, hi: number): number {
  const start = Math.max(lo, pts[0]!.x);
  if (hi <= start) return interpolate(pts, hi);
  const xs = [start, ...pts.map((p) => p.x).filter((x) => x > start && x < hi), hi];
  let area = 0;
  for (let i = 1; i < xs.length; i++) {
    area += ((interpolate(pts, xs[i - 1]!) + interpolate(pts, xs[i]!)) / 2) * (xs[i]! - xs[i - 1]!);
  }
  return area / (hi - start);
}

/** One family's comparison at its common horizon. */
export interface FamilyScaling {
  key: string;
  name: string;
  /** the largest examples count every compared run of the family reached */
  horizon: number;
  baseBatch: number;
  /** per batch size, ascending: window-mean training loss and relative gap to the smallest batch */
  byBatch: { batchSize: number; label: string; loss: number; gap: number }[];
  /** the largest gap over the larger batches (the worst loss of data efficiency) */
  worstGap: number;
  largestBatch: number;
  /** the gap of the largest batch */
  largestGap: number;
  /** notes such as duplicate runs at one batch size */
  notes: string[];
}

/**
 * Compares one family's runs: undefined when fewer than two batch sizes have training-loss data. When several runs
 * share a batch size, the one that consumed the most examples is used.
 */
export function familyScaling(key: string, name: string, runs: LoadedRun[]): FamilyScaling | undefined {
  const notes: string[] = [];
  const chosen = new Map<number, { run: LoadedRun; pts: Point[] }>();
  for (const run of runs) {
    const pts = lossPoints(run);
    if (pts.length === 0) continue;
    const bs = run.sidecar.batchSize;
    const prev = chosen.get(bs);
    if (prev) {
      notes.push(`several ${name} runs at bz${bs}; using the one that consumed the most examples`);
      if (pts[pts.length - 1]!.x <= prev.pts[prev.pts.length - 1]!.x) continue;
    }
    chosen.set(bs, { run, pts });
  }
  if (chosen.size < 2) return undefined;
  const entries = [...chosen.entries()].sort((a, b) => a[0] - b[0]);
  const horizon = Math.min(...entries.map(([, e]) => e.pts[e.pts.length - 1]!.x));
  const lo = horizon * (1 - WINDOW_FRACTION);
  const losses = entries.map(([bs, e]) => ({ batchSize: bs, label: e.run.sidecar.label, loss: windowMean(e.pts, lo, horizon) }));
  const base = losses[0]!.loss;
  const byBatch = losses.map((l) => ({ ...l, gap: (l.loss - base) / base }));
  const larger = byBatch.slice(1);
  return {
    key,
    name,
    horizon,
    baseBatch: byBatch[0]!.batchSize,
    byBatch,
    worstGap: Math.max(...larger.map((b) => b.gap)),
    largestBatch: byBatch[byBatch.length - 1]!.batchSize,
    largestGap: byBatch[byBatch.length - 1]!.gap,
    notes: [...new Set(notes)],
  };
}

/** 1234567 → '1.23M'; 12345 → '12.3k'. */
export function formatExamples(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return `${Math.round(n)}`;
}

/** 0.0391 → '3.9 % worse'; -0.02 → '2.0 % better'. */
export function formatGap(gap: number): string {
  return `${(Math.abs(gap) * 100).toFixed(1)} % ${gap > 0 ? 'worse' : 'better'}`;
}

function describeFamily(f: FamilyScaling): string {
  const parts = f.byBatch.slice(1).map((b) => `bz${b.batchSize} is ${formatGap(b.gap)} than bz${f.baseBatch}`);
  const losses = f.byBatch.map((b) => `bz${b.batchSize} ${b.loss.toFixed(4)}`).join(', ');
  return (
    `At ${formatExamples(f.horizon)} examples (the most every ${f.name} run reached), ${f.name} ${parts.join(', ')} ` +
    `in training loss (mean over the last ${WINDOW_FRACTION * 100} % of examples: ${losses}).`
  );
}

/** One seed's runs, measured (its status is the single-seed reading of the bars). */
export function fig6Seed(runs: LoadedRun[]): Verdict {
  const numbers: Record<string, number> = {};
  const fam = new Map<string, FamilyScaling | undefined>();
  for (const f of FAMILIES) {
    const members = runs.filter((r) => (f.methods as readonly string[]).includes(r.sidecar.method));
    const s = familyScaling(f.key, f.name, members);
    fam.set(f.key, s);
    if (!s) continue;
    numbers[`${f.key}.horizon_examples`] = s.horizon;
    for (const b of s.byBatch) {
      numbers[`${f.key}.loss_bz${b.batchSize}`] = b.loss;
      if (b.batchSize !== s.baseBatch) numbers[`${f.key}.gap_bz${b.batchSize}`] = b.gap;
    }
    numbers[`${f.key}.worst_gap`] = s.worstGap;
    numbers[`${f.key}.largest_gap`] = s.largestGap;
  }
  const kfac = fam.get('kfac');
  const sgd = fam.get('sgdbn');
  if (!kfac && !sgd) {
    return {
      status: 'no data',
      text: 'No K-FAC or SGD+BN runs with training loss at two or more batch sizes yet.',
      numbers,
    };
  }

  const sentences: string[] = [];
  for (const f of [kfac, sgd]) if (f) sentences.push(describeFamily(f), ...f.notes.map((n) => `Note: ${n}.`));

  const kfacOk = kfac !== undefined && kfac.worstGap <= KFAC_MAX_GAP;
  const sgdFloor = kfac ? Math.max(SGD_OVER_KFAC_RATIO * Math.max(kfac.largestGap, 0), SGD_MIN_GAP) : SGD_MIN_GAP;
  const sgdOk = sgd !== undefined && sgd.largestGap >= sgdFloor;
  if (kfac) {
    sentences.push(
      `K-FAC's worst gap (${formatGap(kfac.worstGap)}) is ${kfacOk ? 'within' : 'beyond'} this suite's ${KFAC_MAX_GAP * 100} % tolerance.`,
    );
  } else {
    sentences.push('K-FAC lines are not yet measured (no K-FAC runs with training loss at two or more batch sizes).');
  }
  if (sgd) {
    const need = kfac
      ? `at least ${SGD_OVER_KFAC_RATIO}× K-FAC's bz${kfac.largestBatch} gap and at least ${SGD_MIN_GAP * 100} %`
      : `at least ${SGD_MIN_GAP * 100} %`;
    sentences.push(
      `SGD+BN's bz${sgd.largestBatch} gap (${formatGap(sgd.largestGap)}) ${sgdOk ? 'meets' : 'does not meet'} the bar of ${need} worse.`,
    );
  } else {
    sentences.push('SGD+BN lines are not yet measured (no SGD+BN runs with training loss at two or more batch sizes).');
  }

  if (sgd) numbers['sgdbn.excess_gap'] = sgd.largestGap - sgdFloor;
  // the same target at each batch size both ran: SGD+BN's final smoothed training loss
  const censored: string[] = [];
  const byBz = (methods: readonly string[], bz: number) => runs.find((r) => methods.includes(r.sidecar.method) && r.sidecar.batchSize === bz && lossPoints(r).length > 0);
  for (const bz of [...new Set(runs.map((r) => r.sidecar.batchSize))].sort((a, b) => a - b)) {
    const k = byBz(FAMILIES[0].methods, bz);
    const s = byBz(FAMILIES[1].methods, bz);
    if (!k || !s) continue;
    const pts = lossPoints(s);
    const target = finalSmoothedOf(pts);
    const r = ratiosToTarget(s, k, target);
    censored.push(...recordRatios(numbers, `bz${bz}.kfac_`, r));
  }

  let status: Verdict['status'];
  if (kfac && sgd) status = kfacOk && sgdOk ? 'reproduced' : kfacOk || sgdOk ? 'partly' : 'not reproduced';
  else status = (kfac ? kfacOk : sgdOk) ? 'partly' : 'not reproduced';
  return { status, text: sentences.join(' '), numbers, censored };
}

/** The mean training loss of the last 3 rows (as speed.ts smooths). */
function finalSmoothedOf(pts: Point[]): number {
  const w = pts.slice(-3);
  return w.reduce((a, p) => a + p.y, 0) / w.length;
}

/** The figure's rule on levels: kfac / sgd 0/1 (met), each absent where the family was not measured. */
export function fig6Rule(l: Record<string, number>): Verdict['status'] {
  if (l.kfac !== undefined && l.sgd !== undefined) return l.kfac === 1 && l.sgd === 1 ? 'reproduced' : l.kfac === 1 || l.sgd === 1 ? 'partly' : 'not reproduced';
  return (l.kfac ?? l.sgd) === 1 ? 'partly' : 'not reproduced';
}

function judge(iv: Record<string, Interval>): { status: Verdict['status']; text: string; summary: string } {
  const parts: string[] = [];
  const levels: Record<string, number[]> = {};
  const summary: string[] = [];
  for (const f of FAMILIES) {
    const gaps = Object.keys(iv)
      .filter((k) => k.startsWith(`${f.key}.gap_bz`))
      .sort((a, b) => Number(a.slice(a.indexOf('bz') + 2)) - Number(b.slice(b.indexOf('bz') + 2)));
    if (!gaps.length) continue;
    const horizon = iv[`${f.key}.horizon_examples`];
    parts.push(
      `${f.name}${horizon ? ` at ${formatExamples(horizon.mean)} examples` : ''}: training loss relative to its smallest batch ${gaps.map((k) => `${k.slice(k.indexOf('bz'))} ${formatInterval(iv[k], percent)}`).join(', ')} (> 0: worse).`,
    );
  }
  const kw = iv['kfac.worst_gap'];
  if (kw) {
    levels.kfac = possibleLevels(kw, [KFAC_MAX_GAP], 'lower');
    parts.push(`K-FAC's worst gap ${formatInterval(kw, percent)} (this suite's tolerance: at most ${KFAC_MAX_GAP * 100} %).`);
    summary.push(`K-FAC worst gap ${formatInterval(kw, percent)}`);
  } else parts.push('K-FAC lines are not yet measured at two or more batch sizes.');
  const ex = iv['sgdbn.excess_gap'];
  const sl = iv['sgdbn.largest_gap'];
  if (ex && sl) {
    levels.sgd = possibleLevels(ex, [0], 'higher');
    parts.push(
      `SGD+BN's largest-batch gap ${formatInterval(sl, percent)}; beyond its bar (at least ${SGD_OVER_KFAC_RATIO}× K-FAC's largest-batch gap and at least ${SGD_MIN_GAP * 100} %, per seed) by ${formatInterval(ex, percent)} (≥ 0: the bar is met).`,
    );
    summary.push(`SGD+BN gap ${formatInterval(sl, percent)}`);
  } else parts.push('SGD+BN lines are not yet measured at two or more batch sizes.');
  const same = Object.keys(iv)
    .filter((k) => /^bz\d+\.kfac_updates_ratio$/.test(k))
    .map((k) => k.slice(0, k.indexOf('.')))
    .sort((a, b) => Number(a.slice(2)) - Number(b.slice(2)))
    .map((bz) => `${bz}: ${ratiosText(iv, `${bz}.kfac_`)}`);
  if (same.length) parts.push(`K-FAC vs SGD+BN to SGD+BN's final training loss at the same batch size (> 1: K-FAC sooner): ${same.join('; ')}.`);
  const { status } = decide(levels, fig6Rule);
  return { status, text: parts.join(' '), summary: summary.join('; ') };
}

/** The Figure 6 verdict over seeds. */
export function fig6Verdict(runs: LoadedRun[]): Verdict {
  return seededVerdict(runs, { measure: fig6Seed, judge });
}

export const fig6: FigureSpec = {
  id: 'fig6',
  title: 'Mini-batch scaling: training progress per example consumed',
  paperDescription:
    'GoogLeNet on ImageNet trained by distributed K-FAC and by SGD+BN at mini-batch sizes 256, 1024 and 2048 ' +
    '(legend: SGD+BN bz256/bz1024/bz2048, dist.K-FAC bz256/bz1024/bz2048). The x-axis is the number of training ' +
    'examples consumed (0 to 50 million, about 39 epochs), not updates or wall-clock time; the y-axes are the ' +
    'training cross-entropy (1.0 to 2.4) and the training error (0.25 to 0.50). Per example, the K-FAC curves for ' +
    'bz1024 and bz2048 nearly coincide (train CE about 1.33, error about 0.32 at 50M) with bz256 slightly better, ' +
    'while SGD+BN falls behind as the batch grows (bz256 about 1.50 / 0.357, bz1024 about 1.63 / 0.383, bz2048 worst).',
  paperClaim:
    'Distributed K-FAC exhibits something close to this ideal behavior [per-training-case progress constant in the ' +
    'mini-batch size], while SGD+BN rapidly loses data efficiency when moving beyond a mini-batch size of 256.',
  resultsDir: 'results/fig6',
  panels: [
    {
      x: 'examples',
      y: 'train_loss',
      title: 'Training cross-entropy',
      xTitle: 'Examples consumed',
      yTitle: 'Training cross-entropy',
    },
    {
      x: 'examples',
      y: 'train_error',
      title: 'Training error',
      xTitle: 'Examples consumed',
      yTitle: 'Training error',
    },
  ],
  verdict: fig6Verdict,
};
