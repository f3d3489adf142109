/**
 * ImageNet-style image folders: `root/<class>/*.jpg|jpeg|png`, classes sorted by name give the label indices, with
 * optional `train/` and `val/` sub-folders. Images are decoded with sharp on a piscina worker pool
 * (image-worker.ts, run through tsx's loader so that no build step is needed), and `ImageFolderStream` keeps a
 * queue of batches in flight so that the trainer waits only when the pool cannot keep up.
 */
import { readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import seedrandom from 'seedrandom';
import { cropParams, type CropMode, type CropParams } from './crop';
import type { DecodeResult, DecodeTask, VerifyResult, VerifyTask } from './image-worker';
import { isDirectory } from './locate';
import { shardIndices, shuffleInPlace } from './stream';
import {
  checkStreamState,
  DataError,
  isDataError,
  type Batch,
  type BatchStream,
  type Shard,
  type SkipCounter,
  type SkippedImages,
  type StreamState,
} from './types';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png']);

/** The images of one split: file paths and their labels, in class-then-name order. */
export interface ImageList {
  dir: string;
  files: string[];
  labels: Int32Array;
}

/** A whole folder: its class names (label = index) and its train and validation lists. */
export interface ImageFolder {
  root: string;
  layout: 'train-val' | 'flat';
  classes: string[];
  train: ImageList;
  val: ImageList;
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function subdirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort(byName);
}

async function imagesIn(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => (e.isFile() || e.isSymbolicLink()) && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort(byName);
}

/**
 * Lists `dir/<class>/*` for every class folder in `dir`. With `classes` given (the training classes), every class
 * folder must be one of them and keeps that label. An empty class folder or a folder without class folders is an
 * error naming it.
 */
export async function scanClassFolders(dir: string, classes?: string[]): Promise<{ classes: string[]; list: ImageList }> {
  if (!(await isDirectory(dir))) throw new DataError(dir, 'image folder does not exist');
  const found = await subdirs(dir);
  if (found.length === 0) throw new DataError(dir, 'no class folders (expected <root>/<class>/*.jpg)');
  const names = classes ?? found;
  const index = new Map(names.map((c, i) => [c, i]));
  const files: string[] = [];
  const labels: number[] = [];
  for (const c of found) {
    const label = index.get(c);
    if (label === undefined) throw new DataError(join(dir, c), `class folder not among the ${names.length} training classes`);
    const imgs = await imagesIn(join(dir, c));
    if (imgs.length === 0) throw new DataError(join(dir, c), 'empty class folder (no .jpg, .jpeg or .png files)');
    for (const f of imgs) {
      files.push(join(dir, c, f));
      labels.push(label);
    }
  }
  return { classes: names, list: { dir, files, labels: Int32Array.from(labels) } };
}

/**
 * Opens an image folder. With `root/train` (and optionally `root/val`) those are the splits; otherwise `root` holds
 * the class folders and the last `floor(n * valFraction)` images (by name) of each class are held out for validation.
 */
export async function openImageFolder(root: string, opts: { valFraction?: number } = {}): Promise<ImageFolder> {
  const dir = resolve(root);
  if (!(await isDirectory(dir))) throw new DataError(dir, 'image folder does not exist');
  if (await isDirectory(join(dir, 'train'))) {
    const train = await scanClassFolders(join(dir, 'train'));
    const valDir = join(dir, 'val');
    const val = (await isDirectory(valDir))
      ? (await scanClassFolders(valDir, train.classes)).list
      : { dir: valDir, files: [], labels: new Int32Array(0) };
    return { root: dir, layout: 'train-val', classes: train.classes, train: train.list, val };
  }
  const all = await scanClassFolders(dir);
  const frac = opts.valFraction ?? 0.02;
  const tr: ImageList = { dir, files: [], labels: new Int32Array(0) };
  const va: ImageList = { dir, files: [], labels: new Int32Array(0) };
  const trL: number[] = [];
  const vaL: number[] = [];
  for (let c = 0, i = 0; c < all.classes.length; c++) {
    let j = i;
    while (j < all.list.files.length && all.list.labels[j] === c) j++;
    const nVal = Math.floor((j - i) * frac);
    for (let k = i; k < j; k++) {
      const toVal = k >= j - nVal;
      (toVal ? va.files : tr.files).push(all.list.files[k]);
      (toVal ? vaL : trL).push(c);
    }
    i = j;
  }
  tr.labels = Int32Array.from(trL);
  va.labels = Int32Array.from(vaL);
  return { root: dir, layout: 'flat', classes: all.classes, train: tr, val: va };
}

/** Running from compiled JavaScript (a build of this folder), the worker is the .js next to this file. */
const COMPILED = import.meta.url.endsWith('.js');
const WORKER_FILE = fileURLToPath(new URL(COMPILED ? './image-worker.js' : './image-worker.ts', import.meta.url));

/**
 * Worker arguments: from TypeScript, `--import <tsx loader>` as an absolute URL (not the bare name `tsx`), so the
 * workers load the .ts worker whatever the current directory is, under tsx and under vitest alike.
 */
function workerExecArgv(): string[] {
  if (COMPILED) return [];
  const loader = createRequire(import.meta.url).resolve('tsx');
  return ['--import', pathToFileURL(loader).href];
}

interface Waiting {
  task: DecodeTask | VerifyTask;
  /** the worker's export that runs the task (default: decodeImage) */
  name?: 'verifyImage';
  owner: object | undefined;
  /** run with no other task in flight: libvips' messages are then the task's own (image-worker.ts FAIL_ON) */
  alone?: boolean;
  resolve: (r: never) => void;
  reject: (e: Error) => void;
}

/** Files listed in a sidecar's record of skipped images; the count covers them all. */
const SKIPPED_LISTED = 20;

/**
 * The images skipped under `onBadImage: 'skip'`, shared by the streams of one dataset: which files, their problem,
 * and how often each was skipped. A run takes a `mark()` at its start and records `since(mark)` in its sidecar.
 */
export class SkipLog implements SkipCounter {
  readonly policy = 'skip' as const;
  private readonly byFile = new Map<string, { problem: string; skips: number }>();
  private total = 0;

  record(e: DataError): void {
    const f = this.byFile.get(e.file);
    if (f) f.skips++;
    else this.byFile.set(e.file, { problem: e.problem, skips: 1 });
    this.total++;
  }

  mark(): { total: number; perFile: Map<string, number> } {
    return { total: this.total, perFile: new Map([...this.byFile].map(([f, v]) => [f, v.skips])) };
  }

  since(mark: unknown, earlier?: SkippedImages): SkippedImages {
    const m = mark as ReturnType<SkipLog['mark']>;
    const seen = new Map((earlier?.files ?? []).map((f) => [f.file, f.problem]));
    for (const [file, v] of this.byFile) if (v.skips > (m.perFile.get(file) ?? 0) && !seen.has(file)) seen.set(file, v.problem);
    // the earlier record's files (listed, and `more` unlisted) and this stretch's new ones
    const count = seen.size + (earlier?.more ?? 0);
    const files = [...seen].slice(0, SKIPPED_LISTED).map(([file, problem]) => ({ file, problem }));
    const out: SkippedImages = { policy: 'skip', count, skips: (earlier?.skips ?? 0) + this.total - m.total, files };
    if (out.count > files.length) out.more = out.count - files.length;
    return out;
  }
}

/**
 * A pool of sharp decode workers; share one between the train and test streams. At most two tasks per thread are
 * handed to piscina at a time; the rest wait here, so that a stream can drop its queued work (`cancel`) and the pool
 * can close without abandoning tasks inside the workers.
 */
export class ImageDecodePool {
  readonly threads: number;
  private readonly pool: Piscina<DecodeTask | VerifyTask, DecodeResult | VerifyResult>;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private waiting: Waiting[] = [];
  /** tasks to run alone (before any waiting one): failed ones rerun for their own message, and verify's second look */
  private aloneQueue: Waiting[] = [];
  private runningAlone = false;
  private idle: Array<() => void> = [];
  private closed = false;
  /** files whose decode failed, with their error: asked again (a skipped file comes up every epoch), they fail at once */
  private readonly bad = new Map<string, DataError>();

  constructor(opts: { threads?: number } = {}) {
    this.threads = Math.max(1, opts.threads ?? Math.max(1, availableParallelism() - 1));
    this.maxInFlight = 2 * this.threads;
    this.pool = new Piscina<DecodeTask | VerifyTask, DecodeResult | VerifyResult>({
      filename: WORKER_FILE,
      execArgv: workerExecArgv(),
      minThreads: this.threads,
      maxThreads: this.threads,
      idleTimeout: 60_000,
    });
    // Task failures reject their own promises; a pool-level error must not crash the process.
    this.pool.on('error', () => {});
  }

  /** Decodes one file; a failure is a DataError naming the file. `owner` lets `cancel` drop it while queued. */
  decode(file: string, seed: string, params: CropParams, owner?: object): Promise<DecodeResult> {
    return this.submit({ task: { file, seed, params }, owner });
  }

  /**
   * Reads and fully decodes one file (image-worker.ts verifyImage): at the training decoder's sensitivity, or
   * `strict`ly (libvips' warnings fail it too); `alone`, with no other task in flight, so that the warnings it
   * returns are its own. A failure is a DataError.
   */
  verify(file: string, opts: { strict?: boolean; alone?: boolean } = {}): Promise<VerifyResult> {
    return this.submit({ task: { file, strict: opts.strict }, name: 'verifyImage', owner: undefined, alone: opts.alone });
  }

  private submit<R>(w: Omit<Waiting, 'resolve' | 'reject'>): Promise<R> {
    if (this.closed) return Promise.reject(new Error('decode pool is closed'));
    const known = w.name ? undefined : this.bad.get(w.task.file);
    if (known) return Promise.reject(known);
    return new Promise<R>((resolve, reject) => {
      (w.alone ? this.aloneQueue : this.waiting).push({ ...w, resolve: resolve as (r: never) => void, reject });
      this.pump();
    });
  }

  /** Starts what may start: a task to run alone once nothing is in flight (nothing else meanwhile), else waiting ones. */
  private pump(): void {
    if (this.runningAlone) return;
    if (this.aloneQueue.length > 0) {
      if (this.inFlight === 0) this.start(this.aloneQueue.shift()!);
      return;
    }
    while (this.inFlight < this.maxInFlight && this.waiting.length > 0) this.start(this.waiting.shift()!);
  }

  private start(w: Waiting): void {
    this.inFlight++;
    if (w.alone) this.runningAlone = true;
    this.pool
      .run(w.task, w.name ? { name: w.name } : undefined)
      .then(
        (r) => w.resolve(r as never),
        (e: Error) => {
          // with other decodes in flight, libvips' message may be another's: a decode reruns alone for its own
          if (!w.alone && !w.name && this.threads > 1) {
            this.aloneQueue.push({ ...w, alone: true });
            return;
          }
          // the worker's message says what went wrong ('cannot read file: …', 'cannot decode image: …')
          const err = new DataError(w.task.file, /^cannot /.test(e.message) ? e.message : `cannot decode image: ${e.message}`);
          if (!w.name) this.bad.set(w.task.file, err);
          w.reject(err);
        },
      )
      .finally(() => {
        this.inFlight--;
        if (w.alone) this.runningAlone = false;
        this.pump();
        if (this.inFlight === 0 && this.aloneQueue.length === 0) for (const f of this.idle.splice(0)) f();
      });
  }

  /** Drops the queued (not yet started) tasks of `owner`, or all of them; their promises reject. */
  cancel(owner?: object): void {
    const drop = (q: Waiting[]) => {
      const keep: Waiting[] = [];
      for (const w of q) {
        if (owner === undefined || w.owner === owner) w.reject(new Error('cancelled'));
        else keep.push(w);
      }
      return keep;
    };
    this.waiting = drop(this.waiting);
    this.aloneQueue = drop(this.aloneQueue);
  }

  /** Cancels queued tasks, waits for the running ones, and stops the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancel();
    if (this.inFlight > 0) await new Promise<void>((r) => this.idle.push(r));
    await this.pool.destroy();
  }
}

export interface ImageFolderStreamOptions {
  numClasses: number;
  mode: CropMode;
  imageSize?: number;
  resizeTo?: number;
  scale?: [number, number];
  ratio?: [number, number];
  flip?: boolean;
  mean?: [number, number, number];
  std?: [number, number, number];
  /** seed of the epoch shuffles and of every image's crop (default 0) */
  seed?: number | string;
  shard?: Shard;
  /** shuffle each epoch (default true); false gives in-order passes with a short last batch (evaluation) */
  shuffle?: boolean;
  /** batches kept in flight ahead of the trainer (default 2; 0 decodes only on demand) */
  prefetch?: number;
  /** a shared pool; without one the stream creates its own and closes it with the stream */
  pool?: ImageDecodePool;
  threads?: number;
  /**
   * skip unreadable images (each is recorded here, and the next example in stream order takes its place) instead
   * of failing the batch with a DataError naming the file
   */
  skip?: SkipLog;
}

interface Pending {
  index: number;
  label: number;
  result: Promise<DecodeResult>;
}

/**
 * A BatchStream over an image list. Image `i` of epoch `e` is cropped with the seed `<seed>:<e>:<i>`, so a run is
 * repeatable whatever the pool size. `waitSeconds` is the total time `next()` spent waiting for decodes. An image that
 * cannot be read fails its batch with a DataError naming the file, or, with `skip`, is left out: a shuffled batch is
 * filled with the examples after it, an unshuffled pass is that much shorter.
 */
export class ImageFolderStream implements BatchStream {
  readonly height: number;
  readonly width: number;
  readonly channels = 3;
  readonly numClasses: number;
  readonly epochSize: number;
  readonly params: CropParams;
  /** seconds `next()` spent waiting for the pool */
  waitSeconds = 0;
  imagesDelivered = 0;
  private readonly members: Int32Array;
  private readonly seed: string;
  private readonly shuffle: boolean;
  private readonly prefetch: number;
  private readonly pool: ImageDecodePool;
  private readonly ownsPool: boolean;
  private order: Int32Array = new Int32Array(0);
  private epoch = 0;
  private pos = 0;
  private queue: Pending[] = [];
  private lastBatchSize = 0;
  private closed = false;
  private readonly skip?: SkipLog;
  /** examples of the stream order used up: delivered or skipped */
  private consumed = 0;

  constructor(
    private readonly list: ImageList,
    opts: ImageFolderStreamOptions,
  ) {
    this.params = cropParams(opts);
    this.height = this.width = this.params.imageSize;
    this.numClasses = opts.numClasses;
    this.members = shardIndices(list.files.length, opts.shard);
    this.epochSize = this.members.length;
    this.seed = String(opts.seed ?? 0);
    this.shuffle = opts.shuffle ?? true;
    this.prefetch = Math.max(0, opts.prefetch ?? 2);
    this.ownsPool = !opts.pool;
    this.pool = opts.pool ?? new ImageDecodePool({ threads: opts.threads });
    this.skip = opts.skip;
  }

  /** An unshuffled stream at the end of its pass (its next call starts the following one). */
  get passEnded(): boolean {
    return !this.shuffle && this.epoch > 0 && this.pos === this.order.length && this.queue.length === 0;
  }

  /** The next example in stream order as a decode task; null at the end of an unshuffled pass. */
  private submitNext(): Pending | null {
    if (this.epoch === 0 || this.pos === this.order.length) {
      if (!this.shuffle && this.epoch > 0 && this.pos === this.order.length) return null;
      this.order = this.shuffle ? shuffleInPlace(this.members.slice(), seedrandom(`${this.seed}:epoch:${this.epoch}`)) : this.members;
      this.epoch++;
      this.pos = 0;
    }
    const index = this.order[this.pos++];
    const result = this.pool.decode(this.list.files[index], `${this.seed}:${this.epoch - 1}:${index}`, this.params, this);
    result.catch(() => {}); // observed when the batch is assembled; avoids unhandled rejections while queued
    return { index, label: this.list.labels[index], result };
  }

  /** Tops the queue up to `prefetch` batches (of the last batch size) in flight ahead of the trainer. */
  private fill(): void {
    const target = this.prefetch * this.lastBatchSize;
    while (this.queue.length < target) {
      const p = this.submitNext();
      if (!p) break;
      this.queue.push(p);
    }
  }

  async next(batchSize: number): Promise<Batch> {
    if (this.closed) throw new Error('stream is closed');
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`bad batch size ${batchSize}`);
    if (this.epochSize === 0) throw new DataError(this.list.dir, 'no images in this split');
    this.lastBatchSize = batchSize;
    // An unshuffled pass ends with a short batch; the next call starts the following pass.
    if (!this.shuffle && this.queue.length === 0 && this.epoch > 0 && this.pos === this.order.length) this.pos = 0;
    while (this.queue.length < batchSize) {
      const p = this.submitNext();
      if (!p) break;
      this.queue.push(p);
    }
    const take = this.queue.splice(0, Math.min(batchSize, this.queue.length));
    this.fill(); // an unshuffled stream prefetches only up to the end of its pass
    const S = this.params.imageSize;
    const d = S * S * 3;
    const images = new Float32Array(take.length * d);
    const labels = new Int32Array(take.length);
    const t0 = performance.now();
    let n = 0;
    let skipped = 0;
    for (let k = 0; k < take.length; k++) {
      let r: DecodeResult;
      try {
        r = await take[k].result;
      } catch (e) {
        if (!this.skip || !isDataError(e)) throw e;
        this.skip.record(e);
        this.consumed++;
        if (++skipped > this.epochSize) throw new DataError(this.list.dir, `every image tried is unreadable (${skipped} in a row; last: ${e.message})`);
        // the next example in stream order takes its place (none at the end of an unshuffled pass)
        const more = this.queue.shift() ?? this.submitNext();
        if (more) take.push(more);
        this.fill();
        continue;
      }
      images.set(r.pixels, n * d);
      labels[n++] = take[k].label;
    }
    this.waitSeconds += (performance.now() - t0) / 1000;
    this.imagesDelivered += n;
    this.consumed += n;
    return n === labels.length ? { images, labels, shape: [n, S, S, 3] } : { images: images.slice(0, n * d), labels: labels.slice(0, n), shape: [n, S, S, 3] };
  }

  /**
   * The position in stream order: examples used up so far (handed out, or skipped as unreadable). Image i of epoch e
   * is always cropped with the same seed, and epoch e's order depends only on the seed, so this is all a restore needs.
   */
  state(): StreamState {
    return { kind: 'image-folder', seed: this.seed, epochSize: this.epochSize, shuffle: this.shuffle, delivered: this.consumed };
  }

  /** Continues from a saved position (queued prefetches are dropped and the stream refills from there). */
  restore(s: StreamState): void {
    checkStreamState(s, 'image-folder', this.seed, this.epochSize);
    if (s.shuffle !== this.shuffle) throw new Error(`stream state is ${s.shuffle ? '' : 'not '}shuffled, this stream is${this.shuffle ? '' : ' not'}`);
    const d = s.delivered as number;
    const E = this.epochSize;
    this.pool.cancel(this);
    this.queue = [];
    const e = this.shuffle ? Math.floor(d / E) : 0;
    this.order = this.shuffle ? shuffleInPlace(this.members.slice(), seedrandom(`${this.seed}:epoch:${e}`)) : this.members;
    this.epoch = e + 1;
    this.pos = d % E;
    this.consumed = d;
    this.imagesDelivered = d;
  }

  /** Drops the queued work and starts again from the first example of epoch 0 (e.g. before an evaluation pass). */
  rewind(): void {
    this.pool.cancel(this);
    this.queue = [];
    this.epoch = 0;
    this.pos = 0;
    this.consumed = 0;
    this.order = new Int32Array(0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pool.cancel(this);
    this.queue = [];
    if (this.ownsPool) await this.pool.close();
  }
}
