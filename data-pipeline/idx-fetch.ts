/**
 * Fashion-MNIST / MNIST IDX files over HTTP, for the browser (the demo page's workers): fetch, gunzip with the
 * platform's DecompressionStream, then the same parsing, checks and normalisation as the Node loader (idx-format.ts).
 * No Node modules.
 */
import { IDX_FILES, idxDataset, type IdxName, isGzip, parseIdxImages, parseIdxLabels } from './idx-format';
import { DataError, type InMemoryDataset } from './types';

async function gunzip(bytes: Uint8Array, file: string): Promise<Uint8Array> {
  if (!isGzip(bytes)) return bytes;
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new DataError(file, `corrupt gzip data: ${(e as Error).message}`);
  }
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new DataError(url, `HTTP ${r.status} ${r.statusText}`);
  return gunzip(new Uint8Array(await r.arrayBuffer()), url);
}

/** Loads the four IDX files of `name` from the folder URL `base` (ending in '/') as an InMemoryDataset. */
export async function fetchIdxDataset(name: IdxName, base: string): Promise<InMemoryDataset> {
  const urls = {
    trainImages: new URL(IDX_FILES.trainImages, base).href,
    trainLabels: new URL(IDX_FILES.trainLabels, base).href,
    testImages: new URL(IDX_FILES.testImages, base).href,
    testLabels: new URL(IDX_FILES.testLabels, base).href,
  };
  const [trI, trL, teI, teL] = await Promise.all([urls.trainImages, urls.trainLabels, urls.testImages, urls.testLabels].map(fetchBytes));
  return idxDataset(
    name,
    {
      trainImages: parseIdxImages(trI!, urls.trainImages),
      trainLabels: parseIdxLabels(trL!, urls.trainLabels),
      testImages: parseIdxImages(teI!, urls.testImages),
      testLabels: parseIdxLabels(teL!, urls.testLabels),
    },
    urls,
    { origin: 'embedded', path: base },
  );
}
