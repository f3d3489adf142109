/**
 * One CSV schema for every run of every experiment (results/<experiment>/<run>.csv), and the JSON sidecar beside it
 * (results/<experiment>/<run>.json). Reports read only these two files.
 *
 * Empty cells mean "not measured at this row" (test metrics are evaluated every `evalEvery` steps; the KL threshold
 * exists only for K-FAC; staleness only where inverses are used; the stats columns only in the distributed runtime).
 * Readers select columns by name; new columns are only ever appended.
 */
export const CSV_COLUMNS = [
  'step', // updates applied so far
  'examples', // training examples consumed so far (step * batch size)
  'wall_seconds', // real wall-clock seconds since the run started, evaluation time excluded
  'sim_seconds', // simulated cluster clock (distributed runtime); equals wall_seconds for single-process runs
  'train_loss', // running mean of the training cross-entropy over the rows' interval (with the model in train mode)
  'train_error', // running mean of the training error over the same interval
  'test_loss', // cross-entropy on the test split, evaluated at the Polyak-averaged parameters
  'test_error',
  'learning_rate', // the step size actually used at this step (K-FAC: the KL-clipped eta)
  'kl_threshold', // K-FAC's c_k, empty for SGD
  'inverse_staleness', // steps since the inverses in use were computed, empty for SGD
  'stats_batches', // distributed K-FAC: stats batches folded into the factors at this step (async: 0, 1, 2, …)
  'stats_staleness', // their mean parameter staleness (this step minus the step of the parameters they used)
  'bytes_gradient', // distributed runtime: payload bytes the gradient workers exchanged with the parameter server at this step
  'bytes_stats', // … the stats worker (the statistics folded at this step, with their parameters and examples)
  'bytes_inverse', // … the inverse workers (snapshot and inverses of the jobs installed at this step)
  'comm_seconds', // simulated seconds of modelled communication on the critical path so far (part of sim_seconds)
] as const;

export type CsvColumn = (typeof CSV_COLUMNS)[number];
export type CsvRow = Partial<Record<CsvColumn, number>> & { step: number; examples: number };

export interface RunSidecar {
  experiment: string;
  run: string;
  /** legend label as in the paper, e.g. 'SGD+BN bz256 rbz32' */
  label: string;
  method: 'sgd' | 'sgd+bn' | 'kfac' | 'kfac+bn' | string;
  batchSize: number;
  /**
   * the figure line this run is one seed of (`exp run --seeds N` writes <group>-s<seed>.csv); absent in results written
   * before seeds were recorded, where the run id is the line and config.seed its only seed
   */
  group?: string;
  /** the run's seed: model initialisation, data order and K-FAC's sampled targets */
  seed?: number;
  profile: string;
  config: unknown;
  git: { commit: string; dirty: boolean };
  backend: { name: string; version: string; detail?: string; /** native engine: the oneDNN implementation of each kernel kind that ran, e.g. conv_fwd: brgconv:avx512_core */ kernels?: Record<string, string> };
  data: import('../../data-pipeline/types').DataSource;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; node: string; platform: string };
  startedAt: string;
  finishedAt?: string;
  status: 'running' | 'finished' | 'stopped' | 'failed';
  /** each time the run was continued from its checkpoint (`exp run --resume`): when, from which step, at which commit */
  resumes?: { at: string; fromStep: number; commit: string }[];
  error?: string;
  /** summary numbers computed at the end of the run */
  summary?: Record<string, number>;
  /** image folders read with onBadImage 'skip': the unreadable images this run skipped */
  skippedImages?: import('../../data-pipeline/types').SkippedImages;
}
