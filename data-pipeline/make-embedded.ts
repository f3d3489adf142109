/**
 * Writes the embedded Fashion-MNIST subset shipped in the repository: 1,200 training and 200 test images per class,
 * the first ones of each class in file order (kept in file order), as IDX gz files with the official names, plus a
 * README recording the source files' sha256.
 *
 *   npx tsx data-pipeline/make-embedded.ts [--src DIR] [--out DIR]
 *
 * Without --src, the full dataset is looked up as for training (DKFAC_DATA, the Debian package, the user cache), never
 * from the embedded copy itself. The output is deterministic for a given zlib (gzip mtime is 0).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  IDX_FILES,
  encodeIdxImages,
  encodeIdxLabels,
  gzipBytes,
  idxLocation,
  readIdxImages,
  readIdxLabels,
  type IdxImages,
} from './idx';
import { locate, sha256Hex } from './locate';
import { DataError } from './types';

export const EMBEDDED_TRAIN_PER_CLASS = 1200;
export const EMBEDDED_TEST_PER_CLASS = 200;

/** Indices of the first `perClass` examples of each class, in file order. */
export function firstPerClass(labels: Uint8Array, perClass: number, numClasses = 10): number[] {
  const seen = new Array<number>(numClasses).fill(0);
  const picked: number[] = [];
  for (let i = 0; i < labels.length; i++) {
    if (seen[labels[i]] < perClass) {
      seen[labels[i]]++;
      picked.push(i);
    }
  }
  for (let c = 0; c < numClasses; c++) {
    if (seen[c] < perClass) throw new DataError('labels', `class ${c} has only ${seen[c]} examples, need ${perClass}`);
  }
  return picked;
}

function subset(img: IdxImages, labels: Uint8Array, idx: number[]): { pixels: Uint8Array; labels: Uint8Array } {
  const d = img.rows * img.cols;
  const pixels = new Uint8Array(idx.length * d);
  const lab = new Uint8Array(idx.length);
  idx.forEach((i, k) => {
    pixels.set(img.pixels.subarray(i * d, (i + 1) * d), k * d);
    lab[k] = labels[i];
  });
  return { pixels, labels: lab };
}

/** Builds the subset from the four files in `files` (keys as in IDX_FILES) and writes it to `outDir`. */
export async function makeEmbedded(files: Record<string, string>, outDir: string, sourceDescription: string): Promise<Record<string, string>> {
  await mkdir(outDir, { recursive: true });
  const sourceSums: Record<string, string> = {};
  const outSums: Record<string, string> = {};
  const splits: Array<['train' | 'test', number]> = [
    ['train', EMBEDDED_TRAIN_PER_CLASS],
    ['test', EMBEDDED_TEST_PER_CLASS],
  ];
  for (const [split, perClass] of splits) {
    const imgKey = split === 'train' ? 'trainImages' : 'testImages';
    const labKey = split === 'train' ? 'trainLabels' : 'testLabels';
    const img = await readIdxImages(files[imgKey]);
    const lab = await readIdxLabels(files[labKey]);
    sourceSums[IDX_FILES[imgKey]] = img.sha256;
    sourceSums[IDX_FILES[labKey]] = lab.sha256;
    const idx = firstPerClass(lab.labels, perClass);
    const sub = subset(img, lab.labels, idx);
    const outputs: Array<[string, Uint8Array]> = [
      [IDX_FILES[imgKey], encodeIdxImages(sub.pixels, idx.length, img.rows, img.cols)],
      [IDX_FILES[labKey], encodeIdxLabels(sub.labels)],
    ];
    for (const [name, raw] of outputs) {
      const gz = await gzipBytes(raw);
      await writeFile(join(outDir, name), gz);
      outSums[name] = sha256Hex(gz);
    }
  }
  await writeFile(join(outDir, '..', 'README.md'), readme(sourceSums, outSums, sourceDescription));
  return outSums;
}

function readme(source: Record<string, string>, out: Record<string, string>, from: string): string {
  const rows = (m: Record<string, string>) =>
    Object.entries(m)
      .map(([k, v]) => `| ${k} | \`${v}\` |`)
      .join('\n');
  return `# Embedded Fashion-MNIST subset

\`fashion-mnist/\` holds a real, class-balanced subset of Fashion-MNIST in the original IDX gz format, with the
official file names, so that the project trains and its tests run on a fresh clone with no download:

- training: 12,000 images, 1,200 per class: the first 1,200 images of each class in the order of the official
  \`train-images-idx3-ubyte.gz\`, kept in that order;
- test: 2,000 images, 200 per class: the first 200 of each class in \`t10k-images-idx3-ubyte.gz\`, in order.

It is the last resort of the lookup in \`data-pipeline/locate.ts\` (origin \`embedded\`); runs that use it record
that origin in their data source, and its results are not comparable with full-dataset results.

## How it was made

\`\`\`
npx tsx data-pipeline/make-embedded.ts            # or: --src DIR holding the four official files
\`\`\`

Source: ${from}.

Source files' sha256:

| file | sha256 |
|---|---|
${rows(source)}

When the source is Debian's \`dataset-fashion-mnist\` (0.0~git20200523.55506a9-1), its archive checksums differ from
those of the files published by Zalando Research (recorded in \`IDX_SOURCES\` in \`data-pipeline/idx.ts\`): Debian's
gzip headers carry no original-file-name field (flags 0, a 2020 mtime), and each Debian file is shorter than the
official one by exactly the length of that name plus its terminator (23 or 24 bytes), so the compressed data are
presumably the same. The decompressed content could not be compared with the official files offline; the image and
label counts (60,000 / 10,000) and the label balance match the published description.

Output files' sha256 (gzip level 9 from Node's zlib, mtime 0; another zlib version may compress differently while
the decompressed content stays identical):

| file | sha256 |
|---|---|
${rows(out)}

## Licence

Fashion-MNIST is © 2017 Zalando SE, https://tech.zalando.com, released under the MIT licence
(https://github.com/zalandoresearch/fashion-mnist/blob/master/LICENSE). Han Xiao, Kashif Rasul, Roland Vollgraf,
"Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms", arXiv:1708.07747 (2017).
`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { src: { type: 'string' }, out: { type: 'string' } } });
  const outDir = resolve(values.out ?? fileURLToPath(new URL('./embedded/fashion-mnist/', import.meta.url)));
  const found = await locate(idxLocation('fashion-mnist'), { dataDir: values.src, embeddedRoot: null });
  const desc = found.origin === 'debian' ? `Debian package dataset-fashion-mnist, ${found.dir}` : `${found.dir} (origin ${found.origin})`;
  const sums = await makeEmbedded(found.files, outDir, desc);
  console.log(`wrote ${outDir} from ${desc}`);
  for (const [k, v] of Object.entries(sums)) console.log(`  ${k}  ${v}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    if (e instanceof DataError) {
      console.error(`error: ${e.message}`);
      process.exit(1);
    }
    throw e;
  });
}
