/**
 * Batch streams over a Split held in memory.
 *
 * A shuffled stream draws a fresh seeded permutation of its examples every epoch (sampling without replacement);
 * batches are always full and run on into the next epoch. An unshuffled stream walks its examples in order and never
 * crosses the end of a pass: the last batch of a pass is short, and the following call starts over. Every batch is
 * made of fresh typed arrays that the caller owns (they can be transferred to another thread).
 */
import seedrandom from 'seedrandom';
import { type Batch, type BatchStream, checkStreamState, type Shard, type Split, type StreamState } from './types';

/** Rewrites a batch (e.g. random crops and flips); `rng` is the stream's own seeded generator. */
export type AugmentFn = (batch: Batch, rng: () => number) => Batch;

/** Shape of one example. */
export interface ExampleDims {
  height: number;
  width: number;
  channels: number;
}

export interface InMemoryStreamOptions extends ExampleDims {
  numClasses: number;
  /** seed of the shuffles and of the augmentation (default 0) */
  seed?: number | string;
  /** read only examples i with i % count === index (e.g. the stats worker's own shard) */
  shard?: Shard;
  /** shuffle each epoch (default true); false gives in-order passes with a short last batch */
  shuffle?: boolean;
  augment?: AugmentFn;
}

/** The example indices of a shard, in order; all indices when no shard is given. */
export function shardIndices(count: number, shard?: Shard): Int32Array {
  if (!shard) return Int32Array.from({ length: count }, (_, i) => i);
  const { index, count: n } = shard;
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(index) || index < 0 || index >= n) {
    throw new RangeError(`bad shard {index: ${index}, count: ${n}}`);
  }
  const out = new Int32Array(Math.max(0, Math.ceil((count - index) / n)));
  for (let k = 0, i = index; i < count; i += n, k++) out[k] = i;
  return out;
}

/** Fisher–Yates shuffle in place with the given generator. */
export function shuffleInPlace(a: Int32Array, rng: () => number): Int32Array {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

/** Copies the examples `idx` of a split into a fresh batch. */
export function gather(split: Split, idx: ArrayLike<number>, dims: ExampleDims): Batch {
  const d = dims.height * dims.width * dims.channels;
  const n = idx.length;
  const images = new Float32Array(n * d);
  const labels = new Int32Array(n);
  for (let k = 0; k < n; k++) {
    const i = idx[k];
    images.set(split.images.subarray(i * d, (i + 1) * d), k * d);
    labels[k] = split.labels[i];
  }
  return { images, labels, shape: [n, dims.height, dims.width, dims.channels] };
}

/** A BatchStream over a Split in memory (see the top of this file for the epoch semantics). */
export class InMemoryStream implements BatchStream {
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly numClasses: number;
  readonly epochSize: number;
  /** number of epochs started so far (1 after the first batch) */
  epoch = 0;
  private readonly members: Int32Array;
  private order: Int32Array = new Int32Array(0);
  private pos = 0;
  private readonly seed: string;
  private readonly shuffle: boolean;
  private readonly augment?: AugmentFn;
  private augRng: seedrandom.StatefulPRNG<seedrandom.State.Arc4>;
  private closed = false;

  constructor(
    private readonly split: Split,
    opts: InMemoryStreamOptions,
  ) {
    this.height = opts.height;
    this.width = opts.width;
    this.channels = opts.channels;
    this.numClasses = opts.numClasses;
    const d = opts.height * opts.width * opts.channels;
    if (split.images.length !== split.count * d || split.labels.length !== split.count) {
      throw new RangeError(`split of ${split.count} examples does not match dims ${opts.height}x${opts.width}x${opts.channels}`);
    }
    this.members = shardIndices(split.count, opts.shard);
    this.epochSize = this.members.length;
    this.seed = String(opts.seed ?? 0);
    this.shuffle = opts.shuffle ?? true;
    this.augment = opts.augment;
    this.augRng = seedrandom(`${this.seed}:augment`, { state: true });
  }

  private epochOrder(e: number): Int32Array {
    return this.shuffle ? shuffleInPlace(this.members.slice(), seedrandom(`${this.seed}:epoch:${e}`)) : this.members;
  }

  private startEpoch(): void {
    this.order = this.epochOrder(this.epoch);
    this.epoch++;
    this.pos = 0;
  }

  /** Epoch, position in it and the augmentation generator's state (the epoch's order is recomputed from the seed). */
  state(): StreamState {
    return { kind: 'in-memory', seed: this.seed, epochSize: this.epochSize, shuffle: this.shuffle, epoch: this.epoch, pos: this.pos, aug: this.augRng.state() };
  }

  restore(s: StreamState): void {
    checkStreamState(s, 'in-memory', this.seed, this.epochSize);
    if (s.shuffle !== this.shuffle) throw new Error(`stream state is ${s.shuffle ? '' : 'not '}shuffled, this stream is${this.shuffle ? '' : ' not'}`);
    const epoch = s.epoch as number;
    this.order = epoch > 0 ? this.epochOrder(epoch - 1) : new Int32Array(0);
    this.epoch = epoch;
    this.pos = s.pos as number;
    this.augRng = seedrandom('', { state: s.aug as seedrandom.State.Arc4 });
  }

  /** The indices (into the split) of the next `batchSize` examples, advancing the stream. */
  nextIndices(batchSize: number): Int32Array {
    if (this.closed) throw new Error('stream is closed');
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`bad batch size ${batchSize}`);
    if (this.epochSize === 0) throw new RangeError('stream has no examples');
    if (this.epoch === 0 || this.pos === this.order.length) this.startEpoch();
    if (!this.shuffle) {
      const n = Math.min(batchSize, this.order.length - this.pos);
      const out = this.order.slice(this.pos, this.pos + n);
      this.pos += n;
      return out;
    }
    const out = new Int32Array(batchSize);
    for (let k = 0; k < batchSize; k++) {
      if (this.pos === this.order.length) this.startEpoch();
      out[k] = this.order[this.pos++];
    }
    return out;
  }

  async next(batchSize: number): Promise<Batch> {
    const batch = gather(this.split, this.nextIndices(batchSize), this);
    return this.augment ? this.augment(batch, this.augRng) : batch;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** In-order batches over a whole split (the last one short), for test evaluation. */
export function* evalBatches(split: Split, batchSize: number, dims: ExampleDims): Generator<Batch> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`bad batch size ${batchSize}`);
  for (let start = 0; start < split.count; start += batchSize) {
    const n = Math.min(batchSize, split.count - start);
    yield gather(split, Int32Array.from({ length: n }, (_, k) => start + k), dims);
  }
}

/**
 * Random crop with zero padding and horizontal flip, for NHWC batches (the usual CIFAR-10 augmentation). Each image is
 * shifted by (dy, dx) in [-pad, pad]² (pixels shifted in from outside are 0 in the normalised values, i.e. the mean
 * colour) and mirrored with probability 1/2 when `flip` is set.
 */
export function padCropFlip(opts: { pad?: number; flip?: boolean } = {}): AugmentFn {
  const pad = opts.pad ?? 4;
  const flip = opts.flip ?? true;
  return (batch, rng) => {
    const [n, h, w, c] = batch.shape;
    const out = new Float32Array(batch.images.length);
    const src = batch.images;
    for (let b = 0; b < n; b++) {
      const dy = Math.floor(rng() * (2 * pad + 1)) - pad;
      const dx = Math.floor(rng() * (2 * pad + 1)) - pad;
      const mirror = flip && rng() < 0.5;
      const base = b * h * w * c;
      for (let y = 0; y < h; y++) {
        const sy = y + dy;
        if (sy < 0 || sy >= h) continue;
        for (let x = 0; x < w; x++) {
          const sx = (mirror ? w - 1 - x : x) + dx;
          if (sx < 0 || sx >= w) continue;
          const o = base + (y * w + x) * c;
          const s = base + (sy * w + sx) * c;
          for (let ch = 0; ch < c; ch++) out[o + ch] = src[s + ch];
        }
      }
    }
    return { images: out, labels: batch.labels, shape: batch.shape };
  };
}
