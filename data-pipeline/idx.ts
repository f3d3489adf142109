/**
 * IDX reader (the MNIST / Fashion-MNIST file format), raw or gzip-compressed (detected by the magic bytes 1f 8b,
 * never by the file name), and the loader that turns the four files into an InMemoryDataset.
 *
 * Format: a 4-byte big-endian magic `00 00 <type> <ndim>` (type 0x08 = unsigned byte), then `ndim` big-endian u32
 * dimensions, then the data. Images are `0x00000803` [n, rows, cols]; labels are `0x00000801` [n].
 */
import { promisify } from 'node:util';
import { constants as zc, gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { downloadVerified } from './download';
import { locate, sha256File, sha256Hex, type DatasetLocation, type LocateOptions } from './locate';
import { DataError, type InMemoryDataset, type Split } from './types';

const gunzip = promisify(gunzipCb);
const gzip = promisify(gzipCb);

export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

export type IdxName = 'fashion-mnist' | 'mnist';

/** Pixels of an IDX image file: `count` images of rows×cols bytes, row-major. */
export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  pixels: Uint8Array;
}

const hex8 = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/** True when the bytes start with the gzip magic 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Returns the IDX bytes of a file's content: gunzipped when it starts with 1f 8b, as is otherwise. A gzip stream that
 * ends early yields what could be decoded (the length check then reports the truncation); other gzip corruption is
 * a DataError naming the file.
 */
export async function idxBytes(content: Uint8Array, file: string): Promise<{ bytes: Uint8Array; gz: boolean; gzNote?: string }> {
  if (!isGzip(content)) return { bytes: content, gz: false };
  try {
    return { bytes: await gunzip(content), gz: true };
  } catch (e) {
    const msg = (e as Error).message;
    let partial: Buffer;
    try {
      partial = await gunzip(content, { finishFlush: zc.Z_SYNC_FLUSH });
    } catch {
      throw new DataError(file, `corrupt gzip data: ${msg}`);
    }
    return { bytes: partial, gz: true, gzNote: `gzip stream ended early (${msg})` };
  }
}

/** Checks the 4-byte magic and the declared size; returns the dimensions. */
function readHeader(bytes: Uint8Array, file: string, magic: number, kind: string, note?: string): number[] {
  const ndim = magic & 0xff;
  const headerLen = 4 + 4 * ndim;
  const suffix = note ? ` (${note})` : '';
  if (bytes.length < 4) throw new DataError(file, `truncated: expected at least ${headerLen} bytes, got ${bytes.length}${suffix}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const got = view.getUint32(0, false);
  if (got !== magic) {
    throw new DataError(file, `bad magic number ${hex8(got)}, expected ${hex8(magic)} for an IDX ${kind} file`);
  }
  if (bytes.length < headerLen) throw new DataError(file, `truncated: expected at least ${headerLen} bytes, got ${bytes.length}${suffix}`);
  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const expected = headerLen + dims.reduce((a, b) => a * b, 1);
  if (bytes.length < expected) {
    throw new DataError(file, `truncated: expected ${expected} bytes, got ${bytes.length} for dimensions [${dims.join(', ')}]${suffix}`);
  }
  if (bytes.length > expected) {
    throw new DataError(file, `length mismatch: expected ${expected} bytes for dimensions [${dims.join(', ')}], got ${bytes.length} (trailing data)`);
  }
  return dims;
}

/** Parses IDX image bytes (already gunzipped). */
export function parseIdxImages(bytes: Uint8Array, file: string, note?: string): IdxImages {
  const [count, rows, cols] = readHeader(bytes, file, IDX_IMAGES_MAGIC, 'image', note);
  if (rows === 0 || cols === 0) throw new DataError(file, `bad image size ${rows}x${cols}`);
  return { count, rows, cols, pixels: bytes.subarray(16, 16 + count * rows * cols) };
}

/** Parses IDX label bytes (already gunzipped); every label must lie in [0, numClasses). */
export function parseIdxLabels(bytes: Uint8Array, file: string, numClasses = 10, note?: string): Uint8Array {
  const [count] = readHeader(bytes, file, IDX_LABELS_MAGIC, 'label', note);
  const labels = bytes.subarray(8, 8 + count);
  for (let i = 0; i < count; i++) {
    if (labels[i] >= numClasses) {
      throw new DataError(file, `label ${labels[i]} at index ${i} out of range [0, ${numClasses})`);
    }
  }
  return labels;
}

/** Reads an IDX image file (raw or gz). */
export async function readIdxImages(file: string): Promise<IdxImages & { sha256: string }> {
  const content = await readFile(file);
  const { bytes, gzNote } = await idxBytes(content, file);
  return { ...parseIdxImages(bytes, file, gzNote), sha256: sha256Hex(content) };
}

/** Reads an IDX label file (raw or gz). */
export async function readIdxLabels(file: string, numClasses = 10): Promise<{ labels: Uint8Array; sha256: string }> {
  const content = await readFile(file);
  const { bytes, gzNote } = await idxBytes(content, file);
  return { labels: parseIdxLabels(bytes, file, numClasses, gzNote), sha256: sha256Hex(content) };
}

/** Encodes images as IDX bytes (magic 0x00000803). */
export function encodeIdxImages(pixels: Uint8Array, count: number, rows: number, cols: number): Uint8Array {
  if (pixels.length !== count * rows * cols) throw new Error(`encodeIdxImages: ${pixels.length} != ${count}*${rows}*${cols}`);
  const out = new Uint8Array(16 + pixels.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, IDX_IMAGES_MAGIC, false);
  v.setUint32(4, count, false);
  v.setUint32(8, rows, false);
  v.setUint32(12, cols, false);
  out.set(pixels, 16);
  return out;
}

/** Encodes labels as IDX bytes (magic 0x00000801). */
export function encodeIdxLabels(labels: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + labels.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, IDX_LABELS_MAGIC, false);
  v.setUint32(4, labels.length, false);
  out.set(labels, 8);
  return out;
}

/** gzip with maximum compression (deterministic: Node writes mtime 0). */
export async function gzipBytes(bytes: Uint8Array): Promise<Uint8Array> {
  return gzip(bytes, { level: 9 });
}

/** The four files of an IDX dataset, by split; the `.gz` name is preferred, the raw name accepted. */
export const IDX_FILES = {
  trainImages: 'train-images-idx3-ubyte.gz',
  trainLabels: 'train-labels-idx1-ubyte.gz',
  testImages: 't10k-images-idx3-ubyte.gz',
  testLabels: 't10k-labels-idx1-ubyte.gz',
} as const;

/**
 * Official download sources and checksums.
 * - Fashion-MNIST: the Zalando Research release (README of github.com/zalandoresearch/fashion-mnist: the S3 bucket,
 *   with the repository's data/fashion folder as a mirror). md5 as published there; sha256 of the same files as
 *   recorded by several independent projects (e.g. torchvision's prototype datasets, tensorflow-datasets users).
 *   Debian's copy is the same data re-gzipped, so its archive checksums differ (see embedded/README.md).
 * - MNIST: the ossci-datasets mirror used by torchvision; md5 as published in torchvision, sha256 as recorded by
 *   several independent projects.
 */
export const IDX_SOURCES: Record<IdxName, { urls: string[]; files: Record<string, { sha256: string; md5: string }> }> = {
  'fashion-mnist': {
    urls: [
      'https://fashion-mnist.s3.eu-central-1.amazonaws.com/',
      'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
      'https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/',
    ],
    files: {
      'train-images-idx3-ubyte.gz': {
        sha256: '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
        md5: '8d4fb7e6c68d591d4c3dfef9ec88bf0d',
      },
      'train-labels-idx1-ubyte.gz': {
        sha256: 'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
        md5: '25c81989df183df01b3e8a0aad5dffbe',
      },
      't10k-images-idx3-ubyte.gz': {
        sha256: '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
        md5: 'bef4ecab320f06d8554ea6380940ec79',
      },
      't10k-labels-idx1-ubyte.gz': {
        sha256: '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
        md5: 'bb300cfdad3c16e7a12a480ee83cd310',
      },
    },
  },
  mnist: {
    urls: ['https://ossci-datasets.s3.amazonaws.com/mnist/'],
    files: {
      'train-images-idx3-ubyte.gz': {
        sha256: '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
        md5: 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
      },
      'train-labels-idx1-ubyte.gz': {
        sha256: '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
        md5: 'd53e105ee54ea40749a09fcbcd1e9432',
      },
      't10k-images-idx3-ubyte.gz': {
        sha256: '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
        md5: '9fb629c4189551a2d022fa330f9573f3',
      },
      't10k-labels-idx1-ubyte.gz': {
        sha256: 'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
        md5: 'ec29112dd5afa0611ce80d1b7f02629c',
      },
    },
  },
};

/** Where an IDX dataset may be found (see locate.ts for the order). */
export function idxLocation(name: IdxName): DatasetLocation {
  const files = Object.entries(IDX_FILES).map(([key, gz]) => ({ key, names: [gz, gz.replace(/\.gz$/, '')] }));
  const src = IDX_SOURCES[name];
  return {
    name,
    files,
    subdirs: name === 'mnist' ? ['mnist', 'MNIST/raw'] : ['fashion-mnist', 'FashionMNIST/raw'],
    debianName: name,
    embedded: name === 'fashion-mnist',
    download: async (cacheDir, log) => {
      for (const [file, sums] of Object.entries(src.files)) {
        const dest = join(cacheDir, file);
        if ((await sha256File(dest).catch(() => '')) === sums.sha256) continue; // kept from an interrupted download
        await downloadVerified(
          src.urls.map((u) => u + file),
          dest,
          sums,
          log,
        );
      }
    },
  };
}

/** Converts bytes to floats `v/255 - mean`, and returns the mean of v/255 when `mean` is not given. */
export function normalizeBytes(pixels: Uint8Array, mean?: number): { images: Float32Array; mean: number } {
  let m = mean;
  if (m === undefined) {
    let sum = 0;
    for (let i = 0; i < pixels.length; i++) sum += pixels[i];
    m = pixels.length > 0 ? sum / pixels.length / 255 : 0;
  }
  const images = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) images[i] = pixels[i] / 255 - m;
  return { images, mean: m };
}

function toSplit(images: Float32Array, labels: Uint8Array): Split {
  return { images, labels: Int32Array.from(labels), count: labels.length };
}

/**
 * Loads Fashion-MNIST or MNIST as an InMemoryDataset (NHWC [n, 28, 28, 1], pixel/255 minus the train-split mean).
 * Lookup order and errors: see locate.ts. `source.checksums` holds the sha256 of the four files read.
 */
export async function loadIdxDataset(name: IdxName, opts: LocateOptions = {}): Promise<InMemoryDataset> {
  const found = await locate(idxLocation(name), opts);
  const f = found.files;
  const [trI, trL, teI, teL] = await Promise.all([
    readIdxImages(f.trainImages),
    readIdxLabels(f.trainLabels),
    readIdxImages(f.testImages),
    readIdxLabels(f.testLabels),
  ]);
  const check = (img: IdxImages, lab: Uint8Array, imgFile: string, labFile: string) => {
    if (img.count !== lab.length) {
      throw new DataError(labFile, `count mismatch: ${lab.length} labels, but ${imgFile} has ${img.count} images`);
    }
  };
  check(trI, trL.labels, f.trainImages, f.trainLabels);
  check(teI, teL.labels, f.testImages, f.testLabels);
  if (teI.rows !== trI.rows || teI.cols !== trI.cols) {
    throw new DataError(f.testImages, `image size ${teI.rows}x${teI.cols} differs from the training images' ${trI.rows}x${trI.cols}`);
  }
  const train = normalizeBytes(trI.pixels);
  const test = normalizeBytes(teI.pixels, train.mean);
  const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);
  const checksums: Record<string, string> = {
    [base(f.trainImages)]: trI.sha256,
    [base(f.trainLabels)]: trL.sha256,
    [base(f.testImages)]: teI.sha256,
    [base(f.testLabels)]: teL.sha256,
  };
  const mean = [train.mean];
  return {
    name,
    height: trI.rows,
    width: trI.cols,
    channels: 1,
    numClasses: 10,
    train: toSplit(train.images, trL.labels),
    test: toSplit(test.images, teL.labels),
    mean,
    source: {
      dataset: name,
      origin: found.origin,
      path: found.dir,
      checksums,
      trainCount: trI.count,
      testCount: teI.count,
      mean,
    },
  };
}
