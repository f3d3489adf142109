/**
 * The Figure 6 verdict on SYNTHETIC curves built to be 'reproduced', 'partly' and 'not reproduced'. Expected numbers
 * are computed here independently: exactly by construction for curves that are scaled copies of one affine curve,
 * and by brute-force fine-grid averaging for noisy curves.
 */
import { describe, expect, it } from 'vitest';
import type { CsvRow } from '../src/train/schema';
import { KFAC_MAX_GAP, SGD_MIN_GAP, SGD_OVER_KFAC_RATIO, WINDOW_FRACTION, fig6Seed } from '../reports/figures/fig6';
import { syntheticRows, syntheticSidecar, type SyntheticRunOptions } from '../reports/synthetic';
import type { LoadedRun } from '../reports/types';

const B = 64;
const BATCHES = [B, 4 * B, 8 * B];

/** A synthetic run held in memory. */
function run(o: SyntheticRunOptions): LoadedRun {
  const rows = syntheticRows(o);
  return { sidecar: syntheticSidecar('fig6', o, rows), rows, csvPath: `${o.run}.csv` };
}

/** Runs of one family whose training loss is `scale[i]` times a common affine curve; logs at different strides. */
function family(method: string, name: string, scales: number[], totalExamples: number[]): LoadedRun[] {
  return BATCHES.map((bs, i) =>
    run({
      run: `${method}-bz${bs}`,
      label: `${name} bz${bs}`,
      method,
      batchSize: bs,
      trainLoss: (e) => scales[i]! * (3 - e / 1e6),
      steps: Math.floor(totalExamples[i]! / bs),
      logEvery: [5, 2, 1][i]!,
    }),
  );
}

/** The gap sentence for one batch size, as the verdict should write it. */
function gapText(bs: number, gap: number): string {
  return `bz${bs} is ${(Math.abs(gap) * 100).toFixed(1)} % ${gap > 0 ? 'worse' : 'better'} than bz${B}`;
}

function lastExamples(r: LoadedRun): number {
  return r.rows[r.rows.length - 1]!.examples;
}

describe('fig6 verdict', () => {
  it("is 'reproduced' when K-FAC's gaps are small and SGD+BN's largest batch falls far behind", () => {
    const kfacScales = [1, 1.02, 1.045];
    const sgdScales = [1, 1.12, 1.31];
    const kfac = family('kfac', 'dist.K-FAC', kfacScales, [200_000, 190_000, 185_000]);
    const sgd = family('sgd+bn', 'SGD+BN', sgdScales, [150_000, 150_000, 150_000]);
    const v = fig6Seed([...kfac, ...sgd]);
    expect(v.status).toBe('reproduced');

    for (const [key, runs, scales] of [
      ['kfac', kfac, kfacScales],
      ['sgdbn', sgd, sgdScales],
    ] as const) {
      // Horizon: the least examples any run of the family logged. Affine curve: the window mean is the midpoint value.
      const horizon = Math.min(...runs.map(lastExamples));
      const mid = horizon * (1 - WINDOW_FRACTION / 2);
      expect(v.numbers[`${key}.horizon_examples`]).toBe(horizon);
      BATCHES.forEach((bs, i) => {
        expect(v.numbers[`${key}.loss_bz${bs}`]).toBeCloseTo(scales[i]! * (3 - mid / 1e6), 10);
        if (i > 0) {
          const gap = scales[i]! / scales[0]! - 1;
          expect(v.numbers[`${key}.gap_bz${bs}`]).toBeCloseTo(gap, 10);
          expect(v.text).toContain(gapText(bs, gap));
        }
      });
      expect(v.text).toContain(`At ${(horizon / 1e3).toFixed(1)}k examples`);
    }
    expect(v.text).toContain("K-FAC's worst gap (4.5 % worse) is within");
    expect(v.text).toContain("SGD+BN's bz512 gap (31.0 % worse) meets the bar");
  });

  it("is 'partly' when K-FAC has not run yet, and says K-FAC lines are not measured", () => {
    const sgd = family('sgd+bn', 'SGD+BN', [1, 1.1, 1.25], [100_000, 100_000, 100_000]);
    const v = fig6Seed(sgd);
    expect(v.status).toBe('partly');
    expect(v.text).toContain('K-FAC lines are not yet measured');
    expect(v.text).toContain(gapText(8 * B, 0.25));
    expect(v.numbers['sgdbn.gap_bz512']).toBeCloseTo(0.25, 10);
    expect(Object.keys(v.numbers).some((k) => k.startsWith('kfac.'))).toBe(false);
  });

  it("is 'partly' when K-FAC scales but SGD+BN does not fall behind", () => {
    const v = fig6Seed([
      ...family('kfac', 'dist.K-FAC', [1, 1.01, 1.02], [80_000, 80_000, 80_000]),
      ...family('sgd+bn', 'SGD+BN', [1, 1.01, 1.03], [80_000, 80_000, 80_000]),
    ]);
    expect(v.status).toBe('partly');
    expect(v.text).toContain('does not meet the bar');
  });

  it("is 'not reproduced' when K-FAC loses data efficiency and SGD+BN does not lose clearly more", () => {
    const kfacScales = [1, 1.15, 1.2];
    const sgdScales = [1, 1.1, 1.3]; // 30 % < 2 × 20 %
    const v = fig6Seed([
      ...family('kfac+bn', 'dist.K-FAC+BN', kfacScales, [120_000, 120_000, 120_000]),
      ...family('sgd+bn', 'SGD+BN', sgdScales, [120_000, 120_000, 120_000]),
    ]);
    expect(v.status).toBe('not reproduced');
    expect(v.numbers['kfac.worst_gap']).toBeCloseTo(0.2, 10);
    expect(v.numbers['sgdbn.largest_gap']).toBeCloseTo(0.3, 10);
    expect(v.numbers['sgdbn.largest_gap']!).toBeLessThan(SGD_OVER_KFAC_RATIO * v.numbers['kfac.largest_gap']!);
    expect(v.numbers['kfac.worst_gap']!).toBeGreaterThan(KFAC_MAX_GAP);
    expect(v.text).toContain('is beyond this suite');
  });

  it("is 'no data' without runs, or with one batch size per family", () => {
    expect(fig6Seed([]).status).toBe('no data');
    const one = family('kfac', 'dist.K-FAC', [1, 1, 1], [10_000, 10_000, 10_000]).slice(0, 1);
    expect(fig6Seed(one).status).toBe('no data');
    expect(SGD_MIN_GAP).toBeGreaterThan(0);
  });

  it('averages noisy, unevenly logged curves over the window exactly as a brute-force average does', () => {
    // Noisy curves, logged at different strides, runs of different lengths.
    const noisy = (scale: number, phase: number) => (e: number) => scale * (1.5 + Math.exp(-e / 4e4)) + 0.05 * Math.sin(e / 2500 + phase);
    const opts = BATCHES.map((bs, i) => ({
      run: `kfac-bz${bs}`,
      label: `dist.K-FAC bz${bs}`,
      method: 'kfac',
      batchSize: bs,
      trainLoss: noisy([1, 1.03, 1.06][i]!, i),
      steps: Math.floor([100_000, 97_000, 90_000][i]! / bs),
      logEvery: [3, 2, 1][i]!,
    }));
    const runs = opts.map(run);
    const v = fig6Seed(runs);

    // Independent: sample the piecewise-linear curve through each run's (examples, train_loss) on a fine grid.
    const bruteMean = (rows: CsvRow[], lo: number, hi: number): number => {
      const xs = rows.map((r) => r.examples);
      const ys = rows.map((r) => r.train_loss!);
      const at = (x: number) => {
        let j = 0;
        while (j < xs.length - 2 && xs[j + 1]! < x) j++;
        const t = (x - xs[j]!) / (xs[j + 1]! - xs[j]!);
        return ys[j]! + t * (ys[j + 1]! - ys[j]!);
      };
      const n = 200_000;
      let sum = 0;
      for (let k = 0; k < n; k++) sum += at(lo + ((k + 0.5) / n) * (hi - lo));
      return sum / n;
    };
    const horizon = Math.min(...runs.map(lastExamples));
    const losses = runs.map((r) => bruteMean(r.rows, horizon * (1 - WINDOW_FRACTION), horizon));
    expect(v.numbers['kfac.horizon_examples']).toBe(horizon);
    BATCHES.forEach((bs, i) => {
      expect(v.numbers[`kfac.loss_bz${bs}`]).toBeCloseTo(losses[i]!, 6);
      if (i > 0) {
        const gap = (losses[i]! - losses[0]!) / losses[0]!;
        expect(v.numbers[`kfac.gap_bz${bs}`]).toBeCloseTo(gap, 6);
        expect(v.text).toContain(gapText(bs, gap));
      }
    });
    expect(v.status).toBe('partly'); // SGD+BN not measured, K-FAC within tolerance
  });
});
