/**
 * CIFAR-10, binary version: `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`, each a sequence of 3073-byte
 * records (1 label byte, then 1024 red, 1024 green and 1024 blue bytes, each plane row-major 32×32). Records are
 * converted to NHWC floats `(pixel/255 − mean[channel]) / std[channel]`, the statistics of the training images used
 * (normalize.ts).
 *
 * Lookup: as in locate.ts (flag, env, cache folder `cifar10`, each also tried with a `cifar-10-batches-bin`
 * sub-folder); with `download: true`, the official tarball is fetched into the cache, its md5 checked, and the six
 * batch files extracted by streaming the archive through zlib and tar-stream.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { downloadVerified } from './download';
import { locate, sha256Hex, type DatasetLocation, type LocateOptions } from './locate';
import { channelStats, normalizePixels, subsetText } from './normalize';
import { padCropFlip, type AugmentFn } from './stream';
import { DataError, type InMemoryDataset } from './types';

export const CIFAR_SIDE = 32;
export const CIFAR_PIXELS = CIFAR_SIDE * CIFAR_SIDE;
export const CIFAR_RECORD = 1 + 3 * CIFAR_PIXELS;
export const CIFAR_TRAIN_FILES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
export const CIFAR_TEST_FILES = ['test_batch.bin'];
export const CIFAR_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** The official tarball (https://www.cs.toronto.edu/~kriz/cifar.html) and the md5 published there. */
export const CIFAR_TARBALL = {
  urls: ['https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'],
  name: 'cifar-10-binary.tar.gz',
  md5: 'c32a1d4ab5d03f1284b67883e8d87530',
};

/** One batch file's content as bytes: NHWC pixels and labels. */
export interface CifarRecords {
  count: number;
  /** count*32*32*3 bytes, NHWC */
  pixels: Uint8Array;
  labels: Uint8Array;
}

/** Parses the records of one batch file; `file` names it in errors. */
export function parseCifarBatch(bytes: Uint8Array, file: string): CifarRecords {
  if (bytes.length === 0 || bytes.length % CIFAR_RECORD !== 0) {
    throw new DataError(file, `length ${bytes.length} is not a positive multiple of the ${CIFAR_RECORD}-byte CIFAR-10 record`);
  }
  const count = bytes.length / CIFAR_RECORD;
  const pixels = new Uint8Array(count * CIFAR_PIXELS * 3);
  const labels = new Uint8Array(count);
  for (let r = 0; r < count; r++) {
    const rec = r * CIFAR_RECORD;
    const label = bytes[rec];
    if (label > 9) throw new DataError(file, `record ${r}: label ${label} out of range [0, 10)`);
    labels[r] = label;
    const out = r * CIFAR_PIXELS * 3;
    for (let p = 0; p < CIFAR_PIXELS; p++) {
      pixels[out + 3 * p] = bytes[rec + 1 + p];
      pixels[out + 3 * p + 1] = bytes[rec + 1 + CIFAR_PIXELS + p];
      pixels[out + 3 * p + 2] = bytes[rec + 1 + 2 * CIFAR_PIXELS + p];
    }
  }
  return { count, pixels, labels };
}

/** Encodes NHWC bytes and labels as CIFAR-10 binary records (for tests and tools). */
export function encodeCifarBatch(pixels: Uint8Array, labels: Uint8Array): Uint8Array {
  const count = labels.length;
  if (pixels.length !== count * CIFAR_PIXELS * 3) throw new RangeError(`encodeCifarBatch: ${pixels.length} pixels for ${count} labels`);
  const out = new Uint8Array(count * CIFAR_RECORD);
  for (let r = 0; r < count; r++) {
    const rec = r * CIFAR_RECORD;
    out[rec] = labels[r];
    for (let p = 0; p < CIFAR_PIXELS; p++) {
      for (let c = 0; c < 3; c++) out[rec + 1 + c * CIFAR_PIXELS + p] = pixels[(r * CIFAR_PIXELS + p) * 3 + c];
    }
  }
  return out;
}

/** Entries of a gzipped tar archive, streamed (the 170 MB tarball is never held uncompressed). */
export async function* tarGzEntries(tgz: Uint8Array, file: string): AsyncGenerator<{ name: string; type: string; data: Buffer }> {
  const gunzip = createGunzip();
  const ex = extract();
  let gzipError: Error | undefined;
  gunzip.on('error', (e) => {
    gzipError = e;
    ex.destroy(e);
  });
  Readable.from([Buffer.from(tgz.buffer, tgz.byteOffset, tgz.byteLength)]).pipe(gunzip).pipe(ex);
  try {
    for await (const entry of ex) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      yield { name: entry.header.name, type: entry.header.type ?? 'file', data: Buffer.concat(chunks) };
    }
  } catch (e) {
    if (gzipError) throw new DataError(file, `corrupt gzip data: ${gzipError.message}`);
    throw new DataError(file, `corrupt tar archive: ${(e as Error).message}`);
  }
  if (gzipError) throw new DataError(file, `corrupt gzip data: ${gzipError.message}`);
}

/** Extracts the batch files from the official .tar.gz bytes into `outDir` (only known names; paths are ignored). */
export async function extractCifarTarball(tgz: Uint8Array, file: string, outDir: string): Promise<string[]> {
  const wanted = new Set([...CIFAR_TRAIN_FILES, ...CIFAR_TEST_FILES, 'batches.meta.txt', 'readme.html']);
  await mkdir(outDir, { recursive: true });
  const written: string[] = [];
  for await (const entry of tarGzEntries(tgz, file)) {
    const name = basename(entry.name);
    if (entry.type !== 'file' || !wanted.has(name)) continue;
    await writeFile(join(outDir, name), entry.data);
    written.push(name);
  }
  const missing = [...CIFAR_TRAIN_FILES, ...CIFAR_TEST_FILES].filter((n) => !written.includes(n));
  if (missing.length > 0) throw new DataError(file, `archive lacks ${missing.join(', ')}`);
  return written;
}

/** Where CIFAR-10 may be found (see locate.ts for the order). */
export function cifarLocation(): DatasetLocation {
  return {
    name: 'cifar10',
    files: [...CIFAR_TRAIN_FILES, ...CIFAR_TEST_FILES].map((n) => ({ key: n, names: [n] })),
    subdirs: ['cifar-10-batches-bin', 'cifar10/cifar-10-batches-bin', 'cifar10'],
    debianName: null,
    embedded: false,
    download: async (cacheDir, log) => {
      const tgzPath = join(cacheDir, CIFAR_TARBALL.name);
      await downloadVerified(CIFAR_TARBALL.urls, tgzPath, { md5: CIFAR_TARBALL.md5 }, log);
      log(`extracting ${tgzPath}`);
      await extractCifarTarball(await readFile(tgzPath), tgzPath, join(cacheDir, 'cifar-10-batches-bin'));
      await rm(tgzPath, { force: true });
    },
  };
}

/** Reads and concatenates batch files. */
async function readBatches(paths: string[], checksums: Record<string, string>): Promise<CifarRecords> {
  const parts: CifarRecords[] = [];
  for (const p of paths) {
    const bytes = await readFile(p);
    checksums[basename(p)] = sha256Hex(bytes);
    parts.push(parseCifarBatch(bytes, p));
  }
  const count = parts.reduce((a, b) => a + b.count, 0);
  const pixels = new Uint8Array(count * CIFAR_PIXELS * 3);
  const labels = new Uint8Array(count);
  let n = 0;
  for (const part of parts) {
    pixels.set(part.pixels, n * CIFAR_PIXELS * 3);
    labels.set(part.labels, n);
    n += part.count;
  }
  return { count, pixels, labels };
}

/** Loads CIFAR-10 as an InMemoryDataset (NHWC [n, 32, 32, 3]). */
export async function loadCifar10(opts: LocateOptions & { trainSubset?: number } = {}): Promise<InMemoryDataset> {
  const found = await locate(cifarLocation(), opts);
  const checksums: Record<string, string> = {};
  const train = await readBatches(CIFAR_TRAIN_FILES.map((n) => found.files[n]), checksums);
  const test = await readBatches(CIFAR_TEST_FILES.map((n) => found.files[n]), checksums);
  const n = Math.min(opts.trainSubset ?? train.count, train.count);
  const trainPixels = train.pixels.subarray(0, n * CIFAR_PIXELS * 3);
  const norm = channelStats(trainPixels, 3);
  const subset = subsetText(n, train.count);
  return {
    name: 'cifar10',
    height: CIFAR_SIDE,
    width: CIFAR_SIDE,
    channels: 3,
    numClasses: 10,
    train: { images: normalizePixels(trainPixels, norm), labels: Int32Array.from(train.labels.subarray(0, n)), count: n },
    test: { images: normalizePixels(test.pixels, norm), labels: Int32Array.from(test.labels), count: test.count },
    mean: norm.mean,
    std: norm.std,
    source: {
      dataset: 'cifar10',
      origin: found.origin,
      path: found.dir,
      checksums,
      trainCount: n,
      testCount: test.count,
      mean: norm.mean,
      std: norm.std,
      ...(subset ? { subset } : {}),
    },
  };
}

/** The standard CIFAR-10 training augmentation: random crop with 4-pixel zero padding and horizontal flip. */
export function cifarAugment(opts: { pad?: number; flip?: boolean } = {}): AugmentFn {
  return padCropFlip({ pad: opts.pad ?? 4, flip: opts.flip ?? true });
}
