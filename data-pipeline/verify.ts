/**
 * Checking a dataset's files before training (`npm run data -- verify`): every file is read as the loaders read it,
 * and every unreadable one is listed with its problem, not just the first.
 *
 * - imagenet-folder: every image of the train and validation splits is read and fully decoded on the decode pool
 *   (image-worker.ts verifyImage): strictly, in parallel, where a libvips warning fails it too; an image that fails
 *   so is decoded again alone at the training decoder's sensitivity, which tells unreadable (training would stop on
 *   it) from readable with warnings, with libvips' own messages for that file (they are process-wide: see FAIL_ON).
 *   Warnings are listed apart; they do not make the folder bad.
 * - fashion-mnist, mnist, cifar10: the files are found as training finds them (locate.ts), then each is parsed on
 *   its own with the loaders' format checks (sizes, magic numbers, label ranges, gzip integrity), and the files are
 *   checked against each other (counts, image sizes).
 */
import { availableParallelism } from 'node:os';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { CIFAR_TEST_FILES, CIFAR_TRAIN_FILES, cifarLocation, parseCifarBatch } from './cifar10';
import { idxDataset, idxLocation, readIdxImages, readIdxLabels, type IdxName } from './idx';
import { ImageDecodePool } from './image-folder';
import { loadDataset, type DataSpec } from './index';
import { locate, sha256Hex } from './locate';
import { isDataError } from './types';

export interface VerifyReport {
  dataset: string;
  /** the folder or directory that was checked */
  path: string;
  /** what a file is here ('image' or 'file') */
  unit: string;
  /** files checked */
  checked: number;
  /** every unreadable file, in file order */
  bad: { file: string; problem: string }[];
  /** files that decode, with the warnings libvips gave on them */
  warnings: { file: string; warnings: string[] }[];
  /** sha256 of each file (in-memory datasets) */
  checksums?: Record<string, string>;
  /** e.g. the folder layout and classes */
  detail?: string;
}

export interface VerifyOptions {
  /** decode threads for image folders (default: cores - 1, at least 1) */
  threads?: number;
  /** called as files are checked: (done, total) */
  onProgress?: (done: number, total: number) => void;
}

/** The problem of a failure: a DataError's own, else the message. */
function problemOf(e: unknown): string {
  return isDataError(e) ? e.problem : String((e as Error)?.message ?? e);
}

/** Verifies an image folder: every image of both splits, fully decoded in parallel on the decode pool. */
async function verifyImages(spec: DataSpec, opts: VerifyOptions): Promise<VerifyReport> {
  const loaded = await loadDataset(spec);
  if (!('kind' in loaded)) throw new Error('unreachable: not an image folder');
  const { folder } = loaded;
  const files = [...folder.train.files, ...folder.val.files];
  const bad: (VerifyReport['bad'][number] & { i: number })[] = [];
  const warnings: (VerifyReport['warnings'][number] & { i: number })[] = [];
  const pool = new ImageDecodePool({ threads: opts.threads ?? Math.max(1, availableParallelism() - 1) });
  // a window of tasks in flight keeps every worker busy without a promise per file of a million-image folder
  const window = 4 * pool.threads;
  let next = 0;
  let done = 0;
  try {
    const worker = async () => {
      while (next < files.length) {
        const i = next++;
        try {
          // strictly first (a warning fails it), in parallel: most files pass here with one decode
          await pool.verify(files[i], { strict: true });
        } catch {
          // then alone (the messages are this file's own): strictly again for the reason, and as training reads it,
          // which tells unreadable from readable with warnings
          const strict = await pool.verify(files[i], { strict: true, alone: true }).then(
            () => undefined,
            (e: unknown) => problemOf(e).replace(/^cannot decode image: /, ''),
          );
          try {
            const r = await pool.verify(files[i], { alone: true });
            if (r.warnings.length || strict) warnings.push({ i, file: files[i], warnings: r.warnings.length ? r.warnings : [strict!] });
          } catch (e) {
            bad.push({ i, file: files[i], problem: problemOf(e) });
          }
        }
        opts.onProgress?.(++done, files.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(window, files.length) }, worker));
  } finally {
    await pool.close();
  }
  const byFile = (a: { i: number }, b: { i: number }) => a.i - b.i;
  return {
    dataset: 'imagenet-folder',
    path: folder.root,
    unit: 'image',
    checked: files.length,
    bad: bad.sort(byFile).map(({ file, problem }) => ({ file, problem })),
    warnings: warnings.sort(byFile).map(({ file, warnings: w }) => ({ file, warnings: w })),
    detail: `${folder.layout} layout, ${folder.classes.length} classes, ${folder.train.files.length} train + ${folder.val.files.length} validation images`,
  };
}

/** Verifies the four IDX files one by one, then against each other. */
async function verifyIdx(name: IdxName, spec: DataSpec): Promise<VerifyReport> {
  const found = await locate(idxLocation(name), spec);
  const f = found.files;
  const bad: VerifyReport['bad'] = [];
  const checksums: Record<string, string> = {};
  const read = async <T extends { sha256: string }>(file: string, fn: (p: string) => Promise<T>): Promise<T | undefined> => {
    try {
      const r = await fn(file);
      checksums[basename(file)] = r.sha256;
      return r;
    } catch (e) {
      bad.push({ file, problem: problemOf(e) });
      return undefined;
    }
  };
  const trI = await read(f.trainImages, readIdxImages);
  const trL = await read(f.trainLabels, (p) => readIdxLabels(p));
  const teI = await read(f.testImages, readIdxImages);
  const teL = await read(f.testLabels, (p) => readIdxLabels(p));
  if (trI && trL && teI && teL) {
    try {
      idxDataset(name, { trainImages: trI, trainLabels: trL.labels, testImages: teI, testLabels: teL.labels }, { trainImages: f.trainImages, trainLabels: f.trainLabels, testImages: f.testImages, testLabels: f.testLabels }, { origin: found.origin, path: found.dir });
    } catch (e) {
      bad.push({ file: isDataError(e) ? e.file : found.dir, problem: problemOf(e) });
    }
  }
  return { dataset: name, path: found.dir, unit: 'file', checked: 4, bad, warnings: [], checksums, detail: `found by ${found.origin}` };
}

/** Verifies the six CIFAR-10 batch files one by one. */
async function verifyCifar(spec: DataSpec): Promise<VerifyReport> {
  const found = await locate(cifarLocation(), spec);
  const names = [...CIFAR_TRAIN_FILES, ...CIFAR_TEST_FILES];
  const bad: VerifyReport['bad'] = [];
  const checksums: Record<string, string> = {};
  for (const n of names) {
    const file = found.files[n];
    try {
      const bytes = await readFile(file);
      checksums[n] = sha256Hex(bytes);
      parseCifarBatch(bytes, file);
    } catch (e) {
      bad.push({ file, problem: problemOf(e) });
    }
  }
  return { dataset: 'cifar10', path: found.dir, unit: 'file', checked: names.length, bad, warnings: [], checksums, detail: `found by ${found.origin}` };
}

/**
 * Checks every file of a dataset and lists the unreadable ones (see the top of this file). A dataset that cannot be
 * found, or a folder without class folders, is a DataError as when training.
 */
export async function verifyData(spec: DataSpec, opts: VerifyOptions = {}): Promise<VerifyReport> {
  switch (spec.name) {
    case 'imagenet-folder':
      return verifyImages(spec, opts);
    case 'fashion-mnist':
    case 'mnist':
      return verifyIdx(spec.name, spec);
    case 'cifar10':
      return verifyCifar(spec);
    default:
      return verifyImages(spec, opts);
  }
}
