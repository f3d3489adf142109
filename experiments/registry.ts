/**
 * The experiments: one per paper figure. An experiment is plain data (a zod schema for its profile and the two
 * profiles) plus a function from a validated profile to the list of runs it trains.
 */
import type { z } from 'zod';
import type { DistConfigInput } from '../src/distributed/server';
import type { DataConfig, RunConfigInput } from '../src/train/config';

/**
 * One setting chosen by the grid: a baseline's learning rate (and rbz), K-FAC's damping and KL constant c0 (a K-FAC
 * line with a learning-rate rule: lr and damping), with the tuning metric's value, the winning point's run id and how
 * many points were tried for this key (the tuning budget).
 */
export interface TunedChoice {
  lr?: number;
  rbz?: number;
  damping?: number;
  c0?: number;
  value: number;
  run: string;
  /** grid points tried for this key, whatever became of them (absent in files written before it was recorded) */
  trials?: number;
}

/** Settings chosen by the tuning grid, by batch size (results/grid/<experiment>/best-<method>.json). */
export interface TunedSettings {
  experiment: string;
  profile: string;
  method: string;
  /** metric minimised to pick the best setting */
  metric: string;
  best: Record<string, TunedChoice>;
  summaryCsv: string;
  /** where it was read from (set by readTuned, not stored) */
  file?: string;
}

/** Where a run's tuned settings came from: recorded in its sidecar (config.notes.tuning). */
export interface TuningNote {
  method: string;
  /** 'grid': best-<method>.json at `key`; 'profile': the profile's defaults (the grid has not tuned this line) */
  source: 'grid' | 'profile';
  file?: string;
  key?: string;
  /** grid points tried for this key */
  trials?: number;
  /** the values the run used */
  settings: Record<string, number>;
}

/** A run as an experiment plans it: its configuration and where its tuned settings came from. */
export type PlannedRun = RunConfigInput & { tuning?: TuningNote };

export interface Experiment<S extends z.ZodType = z.ZodType> {
  name: string;
  title: string;
  /** the figure in reports/figures this experiment's results feed */
  figure: string;
  /** further figures drawn from the same results (Figure 5's doubly-factored comparison) */
  alsoFigures?: string[];
  schema: S;
  profiles: { quick: z.input<S>; paper: z.input<S> };
  /**
   * seeds per run when --seeds is not given, by profile (default 3 at quick, 1 at paper): more where the quick
   * profile's seed-to-seed spread needs them to decide the claim (Figure 7's time per update)
   */
  seeds?: Partial<Record<'quick' | 'paper', number>>;
  data(p: z.infer<S>): z.input<typeof DataConfig>;
  /** every run of the figure; `tuned` holds the grid's choices by method (absent where not run) */
  runs(p: z.infer<S>, tuned: Partial<Record<string, TunedSettings>>): PlannedRun[];
  /**
   * methods the grid can tune (default ['sgd+bn']): baselines by learning rate (and rbz), K-FAC lines ('kfac…') by
   * damping and c0 ('kfac-lr', a K-FAC line with a learning-rate rule: by lr and damping)
   */
  tunable?: string[];
  /** the run of one grid point (a baseline's or a K-FAC line's) */
  gridRun?(p: z.infer<S>, point: GridPoint): RunConfigInput;
  /** the batch sizes the grid tunes by default */
  batchSizes?(p: z.infer<S>): number[];
  /**
   * the batch-norm chunk sizes (rbz) the grid tunes by default, each with its own best learning rate (keyed
   * `<batch>-rbz<rbz>`, experiments/tuned.ts): for figures whose lines differ in rbz (Figure 3)
   */
  rbzs?(p: z.infer<S>): number[];
  /**
   * Runs trained through the distributed runtime (src/distributed): the distributed configuration of one run, or
   * undefined to train it in the single-process loop. Runs through the runtime get the simulated cluster clock
   * (sim_seconds) and inverse staleness in their CSV.
   */
  dist?(p: z.infer<S>, run: RunConfigInput): DistConfigInput | undefined;
}

export interface GridPoint {
  method?: string;
  batchSize: number;
  lr?: number;
  rbz?: number;
  /** K-FAC: damping λ and the KL rule's c0 */
  damping?: number;
  c0?: number;
}

const registry = new Map<string, Experiment>();

export function defineExperiment<S extends z.ZodType>(e: Experiment<S>): Experiment<S> {
  registry.set(e.name, e as unknown as Experiment);
  return e;
}

export async function loadExperiments(): Promise<Map<string, Experiment>> {
  await import('./fig6');
  await import('./updates');
  await import('./fig2');
  await import('./fig3');
  await import('./fig5');
  await import('./fig7');
  await import('./fig4');
  await import('./fig8');
  return registry;
}
