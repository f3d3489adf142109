/**
 * Opens the data an experiment's configuration names, as the trainer consumes it (TrainData), with the profile's
 * training subset (the first N training examples of whichever copy of the data was found), whose images give the
 * input normalisation (data-pipeline/normalize.ts: per-channel mean and standard deviation, recorded in the sidecar's
 * data source).
 */
import { openData, type OpenedData } from '../data-pipeline';
import type { DataConfig } from '../src/train/config';
import type { TrainData } from '../src/train/trainer';

export async function openTrainData(cfg: DataConfig): Promise<TrainData> {
  const d: OpenedData = await openData({
    name: cfg.name,
    dataDir: cfg.dataDir,
    download: cfg.download,
    imageSize: cfg.imageSize,
    resizeTo: cfg.resizeTo,
    onBadImage: cfg.onBadImage,
    trainSubset: cfg.trainSubset,
    augment: cfg.name === 'cifar10' ? true : undefined,
  });
  // what the schedules count as an epoch (DataConfig.scheduleEpoch), not necessarily the set's size
  const epochSize = cfg.scheduleEpoch ?? (d.dataset ? d.dataset.train.count : (d.folder?.train.files.length ?? 0));
  const source = d.source;
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
