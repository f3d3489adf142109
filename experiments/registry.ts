/**
 * The experiments: one per paper figure. An experiment is plain data (a zod schema for its profile and the two
 * profiles) plus a function from a validated profile to the list of runs it trains.
 */
import type { z } from 'zod';
import type { DistConfigInput } from '../src/distributed/server';
import type { DataConfig, RunConfigInput } from '../src/train/config';

/** Baseline settings chosen by the tuning grid, by batch size (results/grid/<experiment>/best-<method>.json). */
export interface TunedSettings {
  experiment: string;
  profile: string;
  method: string;
  /** metric minimised to pick the best setting */
  metric: string;
  best: Record<string, { lr: number; rbz?: number; value: number; run: string }>;
  summaryCsv: string;
}

export interface Experiment<S extends z.ZodType = z.ZodType> {
  name: string;
  title: string;
  /** the figure in reports/figures this experiment's results feed */
  figure: string;
  schema: S;
  profiles: { quick: z.input<S>; paper: z.input<S> };
  data(p: z.infer<S>): z.input<typeof DataConfig>;
  /** every run of the figure; `tuned` holds the grid's choices by baseline method (absent where not run) */
  runs(p: z.infer<S>, tuned: Partial<Record<string, TunedSettings>>): RunConfigInput[];
  /** baseline methods the grid can tune (default ['sgd+bn']) */
  tunable?: string[];
  /** the baseline run for one grid point */
  baseline?(p: z.infer<S>, point: GridPoint): RunConfigInput;
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
  lr: number;
  rbz?: number;
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
