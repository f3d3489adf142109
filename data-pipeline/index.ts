/**
 * The data pipeline's entry point for experiments:
 *
 *   const data = await openData({ name: 'fashion-mnist', dataDir });
 *   const stream = data.train(seed);                // BatchStream; data.train(seed, { index, count }) for a shard
 *   for await (const b of data.testBatches(1000)) …  // in-order test batches, whatever the dataset
 *   await data.close();
 *
 * `data.source` is the DataSource to record in a run's sidecar.
 */
import { cifarAugment, loadCifar10 } from './cifar10';
import { IMAGENET_MEAN, IMAGENET_STD, type CropMode } from './crop';
import { loadIdxDataset } from './idx';
import { ImageDecodePool, ImageFolderStream, openImageFolder, SkipLog, type ImageFolder } from './image-folder';
import { isDirectory, type LocateOptions } from './locate';
import { evalBatches, InMemoryStream, type AugmentFn } from './stream';
import {
  DataError,
  type BadImagePolicy,
  type Batch,
  type BatchStream,
  type DataSource,
  type InMemoryDataset,
  type Shard,
  type SkipCounter,
  type Split,
} from './types';

export * from './types';
export { evalBatches, InMemoryStream, padCropFlip, type AugmentFn } from './stream';
export { loadIdxDataset } from './idx';
export { loadCifar10, cifarAugment } from './cifar10';
export { ImageDecodePool, ImageFolderStream, openImageFolder, SkipLog } from './image-folder';
export type { CropMode } from './crop';

export type DatasetName = 'fashion-mnist' | 'mnist' | 'cifar10' | 'imagenet-folder';

/** What to open. Options that do not apply to the dataset are ignored. */
export interface DataSpec extends LocateOptions {
  name: DatasetName;
  /** in-memory datasets: augmentation of training batches (cifar10: true gives the 4-pixel crop + flip) */
  augment?: boolean | AugmentFn;
  /** imagenet-folder: training crop mode (default 'paper': 256² resize, random 224 crop); tests use 'center' */
  mode?: CropMode;
  imageSize?: number;
  resizeTo?: number;
  scale?: [number, number];
  ratio?: [number, number];
  flip?: boolean;
  /** imagenet-folder: per-channel mean and std of pixel/255 (default ImageNet's training-set values, crop.ts) */
  mean?: [number, number, number];
  std?: [number, number, number];
  /** in-memory datasets: keep only the first N training examples (they give the normalisation statistics) */
  trainSubset?: number;
  /** imagenet-folder: decode threads (default: cores - 1, at least 1) */
  threads?: number;
  /** imagenet-folder: batches in flight ahead of the trainer (default 2) */
  prefetch?: number;
  /** imagenet-folder without train/ and val/: fraction of each class held out for validation (default 0.02) */
  valFraction?: number;
  /** imagenet-folder: an unreadable image stops with a DataError naming it (default), or is skipped and counted */
  onBadImage?: BadImagePolicy;
}

/** An opened dataset: stream factories plus what a run records. */
export interface OpenedData {
  name: DatasetName;
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  source: DataSource;
  /** a fresh shuffled training stream; `shard` restricts it to examples i % count === index */
  train(seed: number | string, shard?: Shard): BatchStream;
  /** the test split in memory, or an in-order evaluation stream (its last batch of a pass is short) */
  test: Split | BatchStream;
  /** one in-order pass over the test set */
  testBatches(batchSize: number): AsyncGenerator<Batch>;
  /** the in-memory dataset, when there is one */
  dataset?: InMemoryDataset;
  /** the scanned folder, for imagenet-folder */
  folder?: ImageFolder;
  /** imagenet-folder with onBadImage 'skip': the images skipped so far */
  skipped?: SkipCounter;
  /** releases worker threads (image folders); safe to call more than once */
  close(): Promise<void>;
}

/** An image folder found and scanned, not yet opened as streams. */
export interface ImageFolderDataset {
  kind: 'image-folder';
  folder: ImageFolder;
  source: DataSource;
}

export function isInMemory(d: InMemoryDataset | ImageFolderDataset): d is InMemoryDataset {
  return !('kind' in d);
}

/** Finds the image folder: --data-dir, else `$DKFAC_DATA/imagenet`. */
async function findImageFolder(spec: DataSpec): Promise<{ dir: string; origin: 'flag' | 'env' }> {
  if (spec.dataDir) return { dir: spec.dataDir, origin: 'flag' };
  const env = spec.env ?? process.env;
  if (env.DKFAC_DATA) {
    const dir = `${env.DKFAC_DATA.replace(/\/$/, '')}/imagenet`;
    if (!(await isDirectory(dir))) throw new DataError(dir, 'imagenet-folder: no such directory under DKFAC_DATA');
    return { dir, origin: 'env' };
  }
  throw new DataError('imagenet-folder', 'needs --data-dir DIR (root/<class>/*.jpg, or root/train and root/val)');
}

/** Loads an in-memory dataset, or scans an image folder. */
export async function loadDataset(spec: DataSpec): Promise<InMemoryDataset | ImageFolderDataset> {
  switch (spec.name) {
    case 'fashion-mnist':
    case 'mnist':
      return loadIdxDataset(spec.name, spec);
    case 'cifar10':
      return loadCifar10(spec);
    case 'imagenet-folder': {
      const { dir, origin } = await findImageFolder(spec);
      const folder = await openImageFolder(dir, { valFraction: spec.valFraction });
      return {
        kind: 'image-folder',
        folder,
        source: {
          dataset: 'imagenet-folder',
          origin,
          path: folder.root,
          trainCount: folder.train.files.length,
          testCount: folder.val.files.length,
          mean: [...(spec.mean ?? IMAGENET_MEAN)],
          std: [...(spec.std ?? IMAGENET_STD)],
        },
      };
    }
    default:
      throw new DataError(String((spec as { name: unknown }).name), 'unknown dataset (fashion-mnist, mnist, cifar10, imagenet-folder)');
  }
}

/** Wraps an InMemoryDataset as OpenedData. */
export function openInMemory(ds: InMemoryDataset, augment?: AugmentFn): OpenedData {
  const dims = { height: ds.height, width: ds.width, channels: ds.channels };
  return {
    name: ds.name as DatasetName,
    ...dims,
    numClasses: ds.numClasses,
    source: ds.source,
    dataset: ds,
    test: ds.test,
    train: (seed, shard) => new InMemoryStream(ds.train, { ...dims, numClasses: ds.numClasses, seed, shard, augment }),
    async *testBatches(batchSize) {
      yield* evalBatches(ds.test, batchSize, dims);
    },
    close: async () => {},
  };
}

/** Opens any dataset as stream factories (see the example at the top of this file). */
export async function openData(spec: DataSpec): Promise<OpenedData> {
  const loaded = await loadDataset(spec);
  if (isInMemory(loaded)) {
    if (spec.augment === true && spec.name !== 'cifar10') throw new DataError(spec.name, 'augment: true is defined only for cifar10');
    const augment = typeof spec.augment === 'function' ? spec.augment : spec.augment === true ? cifarAugment() : undefined;
    return openInMemory(loaded, augment);
  }
  const { folder, source } = loaded;
  const pool = new ImageDecodePool({ threads: spec.threads });
  const skip = spec.onBadImage === 'skip' ? new SkipLog() : undefined;
  const common = {
    numClasses: folder.classes.length,
    imageSize: spec.imageSize,
    resizeTo: spec.resizeTo,
    mean: spec.mean,
    std: spec.std,
    prefetch: spec.prefetch,
    pool,
    skip,
  };
  const test = new ImageFolderStream(folder.val, { ...common, mode: 'center', shuffle: false });
  let closed = false;
  return {
    name: 'imagenet-folder',
    height: test.height,
    width: test.width,
    channels: 3,
    numClasses: folder.classes.length,
    source,
    folder,
    skipped: skip,
    test,
    train: (seed, shard) =>
      new ImageFolderStream(folder.train, {
        ...common,
        mode: spec.mode ?? 'paper',
        scale: spec.scale,
        ratio: spec.ratio,
        flip: spec.flip,
        seed,
        shard,
      }),
    async *testBatches(batchSize) {
      test.rewind();
      if (test.epochSize === 0) return;
      // one pass; with skipped images a batch may be short, or empty (not yielded)
      do {
        const b = await test.next(batchSize);
        if (b.shape[0] > 0) yield b;
      } while (!test.passEnded);
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await test.close();
      await pool.close();
    },
  };
}
