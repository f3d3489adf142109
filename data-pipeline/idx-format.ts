/**
 * The IDX format (MNIST / Fashion-MNIST) as pure functions of bytes: header checks, parsing, encoding and the assembly of the four files into an InMemoryDataset. No Node modules, so the browser demo
 * reads the embedded subset with exactly this code (idx.ts adds files, gzip and the lookup order).
 *
 * Format: a 4-byte big-endian magic `00 00 <type> <ndim>` (type 0x08 = unsigned byte), then `ndim` big-endian u32
 * dimensions, then the data. Images are `0x00000803` [n, rows, cols]; labels are `0x00000801` [n].
 */
import { channelStats, normalizePixels, subsetText } from './normalize';
import { DataError, type DataSource, type InMemoryDataset, type Split } from './types';

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

/** The four files of an IDX dataset, by split; the `.gz` name is preferred, the raw name accepted. */
export const IDX_FILES = {
  trainImages: 'train-images-idx3-ubyte.gz',
  trainLabels: 'train-labels-idx1-ubyte.gz',
  testImages: 't10k-images-idx3-ubyte.gz',
  testLabels: 't10k-labels-idx1-ubyte.gz',
} as const;

function toSplit(images: Float32Array, labels: Uint8Array): Split {
  return { images, labels: Int32Array.from(labels), count: labels.length };
}

/**
 * The four parsed files as an InMemoryDataset (NHWC [n, rows, cols, 1], normalised by the training images' mean and
 * standard deviation, which the test split shares: normalize.ts). Counts and image sizes must agree; `names` are the
 * file names the errors cite. `trainSubset`: only the first N training examples are kept (and give the statistics).
 */
export function idxDataset(
  name: IdxName,
  parts: { trainImages: IdxImages; trainLabels: Uint8Array; testImages: IdxImages; testLabels: Uint8Array },
  names: { trainImages: string; trainLabels: string; testImages: string; testLabels: string },
  source: Pick<DataSource, 'origin' | 'path' | 'checksums'>,
  trainSubset?: number,
): InMemoryDataset {
  const { trainImages: trI, trainLabels: trL, testImages: teI, testLabels: teL } = parts;
  const check = (img: IdxImages, lab: Uint8Array, imgFile: string, labFile: string) => {
    if (img.count !== lab.length) {
      throw new DataError(labFile, `count mismatch: ${lab.length} labels, but ${imgFile} has ${img.count} images`);
    }
  };
  check(trI, trL, names.trainImages, names.trainLabels);
  check(teI, teL, names.testImages, names.testLabels);
  if (teI.rows !== trI.rows || teI.cols !== trI.cols) {
    throw new DataError(names.testImages, `image size ${teI.rows}x${teI.cols} differs from the training images' ${trI.rows}x${trI.cols}`);
  }
  const n = Math.min(trainSubset ?? trI.count, trI.count);
  const trainPixels = trI.pixels.subarray(0, n * trI.rows * trI.cols);
  const norm = channelStats(trainPixels, 1);
  const subset = subsetText(n, trI.count);
  return {
    name,
    height: trI.rows,
    width: trI.cols,
    channels: 1,
    numClasses: 10,
    train: toSplit(normalizePixels(trainPixels, norm), trL.subarray(0, n)),
    test: toSplit(normalizePixels(teI.pixels, norm), teL),
    mean: norm.mean,
    std: norm.std,
    source: { dataset: name, ...source, trainCount: n, testCount: teI.count, mean: norm.mean, std: norm.std, ...(subset ? { subset } : {}) },
  };
}
