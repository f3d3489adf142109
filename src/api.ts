/**
 * The platform-neutral part of the public API, shared by the Node entry (index.ts) and the browser entry
 * (browser.ts), which add their own `initBackend`.
 */
export { kfac, sgd, type KfacOptions, type SgdOptions, type FitOptions, type DatasetFitOptions, type FitCallbacks, type Logs } from './fit/options';
export { fitKfac, fitDatasetKfac, type KfacHistory } from './fit/fit';
export { fromLayersModel, writeBackWeights, type FromLayersResult } from './nn/from-layers';
export { KfacOptimizer, KfacConfig, KfacStopError, type KfacEvent } from './kfac/optimizer';
export { Model, crossEntropy, errorCount } from './nn/model';
export { SgdConfig, ConfigError } from './train/config';
