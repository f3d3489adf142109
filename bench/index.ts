/**
 * npm run bench [-- --only backend,models,layers,data,linalg,kfac,distributed,redis,profile,clock]
 *
 * Every speed figure of the project, measured in one run and printed as tables (ratios are what to compare: this
 * machine is noisy).
 */
import { benchBackend } from './backend';
import { benchClock } from './clock';
import { benchDataPipeline } from './data-pipeline';
import { benchDistributed } from './distributed';
import { benchLayers } from './layers';
import { benchLinalg } from './linalg';
import { benchKfac } from './kfac';
import { benchModels } from './models';
import { benchProfile } from './profile';
import { benchRedis } from './redis';

const sections: Record<string, () => Promise<unknown>> = {
  backend: () => benchBackend(),
  models: () => benchModels(),
  layers: () => benchLayers(),
  data: () => benchDataPipeline(),
  linalg: () => benchLinalg(),
  kfac: () => benchKfac(),
  distributed: () => benchDistributed(),
  redis: () => benchRedis(),
  profile: () => benchProfile(),
  clock: () => benchClock(),
};

const onlyArg = process.argv.indexOf('--only');
const only = onlyArg > 0 ? process.argv[onlyArg + 1].split(',') : Object.keys(sections);
for (const name of only) {
  const f = sections[name];
  if (!f) {
    console.error(`error: unknown bench section '${name}' (known: ${Object.keys(sections).join(', ')})`);
    process.exit(2);
  }
  const t0 = performance.now();
  await f();
  console.log(`(${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
}
