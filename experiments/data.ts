/**
 * Opens the data an experiment's configuration names, as the trainer consumes it (TrainData), applying the
 * profile's training subset so that quick profiles see the same examples whichever copy of the data was found.
 */
import { openData, openInMemory, cifarAugment, type OpenedData } from '../data-pipeline';
import type { Split } from '../data-pipeline/types';
import type { DataConfig } from '../src/train/config';
import type { TrainData } from '../src/train/trainer';

function firstN(s: Split, n: number, per: number): Split {
  const m = Math.min(n, s.count);
  return { images: s.images.subarray(0, m * per), labels: s.labels.subarray(0, m), count: m };
}

export async function openTrainData(cfg: DataConfig): Promise<TrainData> {
  let d: OpenedData = await openData({
    name: cfg.name,
    dataDir: cfg.dataDir,
    download: cfg.download,
    imageSize: cfg.imageSize,
    resizeTo: cfg.resizeTo,
    onBadImage: cfg.onBadImage,
    augment: cfg.name === 'cifar10' ? true : undefined,
  });
  let epochSize = d.dataset ? d.dataset.train.count : (d.folder?.train.files.length ?? 0);
  let source = d.source;
  if (cfg.trainSubset && d.dataset && cfg.trainSubset < d.dataset.train.count) {
    const ds = d.dataset;
    const train = firstN(ds.train, cfg.trainSubset, ds.height * ds.width * ds.channels);
    source = { ...ds.source, trainCount: train.count, subset: `first ${train.count} of ${ds.train.count} training examples` };
    d = openInMemory({ ...ds, train, source }, cfg.name === 'cifar10' ? cifarAugment() : undefined);
    epochSize = train.count;
  }
  return {
    height: d.height,
    width: d.width,
    channels: d.channels,
    numClasses: d.numClasses,
    epochSize,
    train: (seed, shard) => d.train(seed, shard),
    testBatches: (bs) => d.testBatches(bs),
    testCount: d.source.testCount,
    source,
    skipped: d.skipped,
    close: () => d.close(),
  };
}
