/**
 * IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed (detected by the magic bytes 1f 8b, never by
 * the file name), and the loader that finds the four files and turns them into an InMemoryDataset. The format itself
 * (parsing, checks, normalisation) is in idx-format.ts, shared with the browser demo.
 */
import { promisify } from 'node:util';
import { constants as zc, gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { downloadVerified } from './download';
import { locate, sha256File, sha256Hex, type DatasetLocation, type LocateOptions } from './locate';
import { IDX_FILES, idxDataset, type IdxImages, type IdxName, isGzip, parseIdxImages, parseIdxLabels } from './idx-format';
import { DataError, type InMemoryDataset } from './types';

export * from './idx-format';

const gunzip = promisify(gunzipCb);
const gzip = promisify(gzipCb);

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

/** gzip with maximum compression (deterministic: Node writes mtime 0). */
export async function gzipBytes(bytes: Uint8Array): Promise<Uint8Array> {
  return gzip(bytes, { level: 9 });
}

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

/**
 * Loads Fashion-MNIST or MNIST as an InMemoryDataset (NHWC [n, 28, 28, 1], normalised by the training images' mean
 * and standard deviation; with `trainSubset`, the first N training examples only, which give the statistics).
 * Lookup order and errors: see locate.ts. `source.checksums` holds the sha256 of the four files read.
 */
export async function loadIdxDataset(name: IdxName, opts: LocateOptions & { trainSubset?: number } = {}): Promise<InMemoryDataset> {
  const found = await locate(idxLocation(name), opts);
  const f = found.files;
  const [trI, trL, teI, teL] = await Promise.all([
    readIdxImages(f.trainImages),
    readIdxLabels(f.trainLabels),
    readIdxImages(f.testImages),
    readIdxLabels(f.testLabels),
  ]);
  const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);
  return idxDataset(
    name,
    { trainImages: trI, trainLabels: trL.labels, testImages: teI, testLabels: teL.labels },
    { trainImages: f.trainImages, trainLabels: f.trainLabels, testImages: f.testImages, testLabels: f.testLabels },
    {
      origin: found.origin,
      path: found.dir,
      checksums: {
        [base(f.trainImages)]: trI.sha256,
        [base(f.trainLabels)]: trL.sha256,
        [base(f.testImages)]: teI.sha256,
        [base(f.testLabels)]: teL.sha256,
      },
    },
    opts.trainSubset,
  );
}
