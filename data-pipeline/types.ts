/**
 * The data contract between the pipeline and the trainer.
 *
 * Images are NHWC float32, already normalised ((pixel/255 − mean) / std per channel, the training images' statistics:
 * normalize.ts) so that a trainer can hand them to
 * tf.tensor4d without another pass. Labels are class indices in [0, numClasses).
 */
export interface Batch {
  /** N*H*W*C values, NHWC. */
  images: Float32Array;
  labels: Int32Array;
  /** N, H, W, C */
  shape: [number, number, number, number];
}

/** One split held in memory (IDX and CIFAR-10 fit easily). */
export interface Split {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

/** Where the data came from: recorded in every run's JSON sidecar. */
export interface DataSource {
  /** e.g. 'fashion-mnist', 'mnist', 'cifar10', 'imagenet-folder' */
  dataset: string;
  /** how it was found: 'flag' | 'env' | 'debian' | 'cache' | 'download' | 'embedded' | 'folder' */
  origin: string;
  /** directory or files it was read from */
  path: string;
  /** sha256 of the files that were read, keyed by file name (where cheap to compute) */
  checksums?: Record<string, string>;
  trainCount: number;
  testCount: number;
  /** per-channel mean subtracted after dividing by 255 (added by the pipeline; optional for compatibility) */
  mean?: number[];
  /** per-channel standard deviation of pixel/255 divided by after the mean is subtracted (absent: not divided) */
  std?: number[];
  /** set when only part of the training split is used, e.g. 'first 12000 training examples' */
  subset?: string;
}

export interface InMemoryDataset {
  name: string;
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  train: Split;
  test: Split;
  source: DataSource;
  /** per-channel mean (of pixel/255 over the train split) that was subtracted; added by the pipeline */
  mean?: number[];
  /** per-channel standard deviation (of pixel/255 over the train split) divided by */
  std?: number[];
}

/** How a data directory was found, in lookup order. */
export type DataOrigin = 'flag' | 'env' | 'debian' | 'cache' | 'download' | 'embedded';

/** A disjoint slice of a dataset: example i belongs to shard `i % count === index`. */
export interface Shard {
  index: number;
  count: number;
}

/** Where a stream stands, enough to continue it exactly (training checkpoints); plain structured-cloneable data. */
export interface StreamState {
  /** which kind of stream wrote it ('in-memory', 'image-folder') */
  kind: string;
  seed: string;
  epochSize: number;
  [key: string]: unknown;
}

/**
 * A stream of batches: what the trainer consumes. In-memory datasets and the ImageNet folder loader both provide
 * one, so an experiment does not care where images come from.
 */
export interface BatchStream {
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly numClasses: number;
  /** examples in one epoch of this stream */
  readonly epochSize: number;
  next(batchSize: number): Promise<Batch>;
  close(): Promise<void>;
  /**
   * Optional: the stream's position, and a restore that makes a stream created with the same seed and shard continue
   * with exactly the batches the saved one would have given next (a restored stream must not have been read yet).
   */
  state?(): StreamState;
  restore?(s: StreamState): void;
}

/** Checks that a saved stream state belongs to a stream like this one; the error names the field that differs. */
export function checkStreamState(s: StreamState, kind: string, seed: string, epochSize: number): void {
  if (s.kind !== kind) throw new Error(`stream state is of a '${s.kind}' stream, this stream is '${kind}'`);
  if (s.seed !== seed) throw new Error(`stream state has seed '${s.seed}', this stream '${seed}'`);
  if (s.epochSize !== epochSize) throw new Error(`stream state has an epoch of ${s.epochSize} examples, this stream ${epochSize}`);
}

/** What to do with an image that cannot be read or decoded: stop (the default: a DataError) or skip it. */
export type BadImagePolicy = 'stop' | 'skip';

/** The unreadable images skipped under the 'skip' policy (recorded in a run's sidecar). */
export interface SkippedImages {
  policy: 'skip';
  /** distinct files skipped */
  count: number;
  /** examples skipped (a file skipped in every epoch counts once per epoch) */
  skips: number;
  /** the first files skipped, with their problem */
  files: { file: string; problem: string }[];
  /** files left out of `files` */
  more?: number;
}

/** Counts skipped images as they happen; a run reads what was skipped since its start. */
export interface SkipCounter {
  readonly policy: BadImagePolicy;
  /** where the counts stand now */
  mark(): unknown;
  /** what was skipped since `mark` (merged with `earlier`, e.g. a resumed run's record) */
  since(mark: unknown, earlier?: SkippedImages): SkippedImages;
}

/** Every data error names the file and the problem; CLIs print `message` and exit non-zero. */
export class DataError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'DataError';
  }
}

/** A DataError, also one that crossed a thread or was rebuilt by name. */
export function isDataError(e: unknown): e is DataError {
  return e instanceof DataError || (e instanceof Error && e.name === 'DataError');
}
