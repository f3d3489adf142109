/**
 * Types shared by the report generator: what a figure is (FigureSpec), what was measured (LoadedRun) and how the
 * measurement compares with the paper's claim (Verdict).
 *
 * Everything a report shows comes either from these specs (the paper's own words) or from results/ (the runs).
 */
import type { CsvColumn, CsvRow, RunSidecar } from '../src/train/schema';
import type { Interval } from './stats';

/** The x quantities a panel can be plotted against: all are CSV columns that every row carries or may carry. */
export type PanelX = 'step' | 'examples' | 'wall_seconds' | 'sim_seconds';

/** One panel of a figure: one y column against one x column, one line per run. */
export interface PanelSpec {
  x: PanelX;
  y: CsvColumn;
  title: string;
  xTitle: string;
  yTitle: string;
  /** default 'linear' */
  scaleY?: 'linear' | 'log';
}

/** One run as read back from results/<experiment>/: its sidecar and its rows (empty cells are absent keys). */
export interface LoadedRun {
  sidecar: RunSidecar;
  rows: CsvRow[];
  /** the CSV the rows came from (it may not exist yet for a run that has written only its sidecar) */
  csvPath: string;
}

/**
 * 'reproduced': every value the 95 % intervals over seeds allow clears this suite's bars; 'not reproduced': none
 * does; 'partly': every allowed value meets part of the claim and misses another part; 'inconclusive': the intervals
 * allow more than one of these (one seed always does).
 */
export type VerdictStatus = 'reproduced' | 'partly' | 'not reproduced' | 'inconclusive' | 'no data';

/**
 * The outcome of comparing the runs with the paper's claim. `numbers` are the quantities the text quotes (over seeds:
 * their means), `intervals` their 95 % intervals over seeds (reports/stats.ts), `summary` the interval(s) the status
 * rests on, for the claims table.
 */
export interface Verdict {
  status: VerdictStatus;
  text: string;
  numbers: Record<string, number>;
  intervals?: Record<string, Interval>;
  summary?: string;
  /** the seeds measured, and each seed's own measurement (its status by the single-seed reading of the bars) */
  seeds?: number[];
  perSeed?: { seed: number; status: VerdictStatus; text: string }[];
  /** number keys whose value is only a bound from above in this (single-seed) measurement */
  censored?: string[];
}

/** One paper figure: its description and claim (typed from paper-spec.md), where its runs live, what to plot. */
export interface FigureSpec {
  /** e.g. 'fig6'; also the base name of the files written (reports/fig6.svg, .png, .vl.json) */
  id: string;
  title: string;
  /** what the paper's figure shows */
  paperDescription: string;
  /** the claim, verbatim or near-verbatim from paper-spec.md section 4 */
  paperClaim: string;
  /** repository-relative results directory, e.g. 'results/fig6' */
  resultsDir: string;
  /** the runs of resultsDir this figure shows and judges (default: all; two figures may share one directory) */
  select?: (runs: LoadedRun[]) => LoadedRun[];
  /** the grid directory its tuning comes from (results/grid/<gridId>; default: the figure's id) */
  gridId?: string;
  panels: PanelSpec[];
  /** computes the verdict from the runs alone; figures without one are reported as 'no data' for the claim */
  verdict?: (runs: LoadedRun[]) => Verdict;
  /** false for figures that tune nothing (they compare K-FAC variants at one setting); default true */
  tuned?: boolean;
}

/** Paths of the files written for one figure. */
export interface RenderedFiles {
  svg: string;
  png: string;
  vlSpecPath: string;
}
