/**
 * Data checks:
 *
 *   npm run data -- inspect --name fashion-mnist [--data-dir D] [--download]
 *   npm run data -- verify --data-dir D [--name imagenet-folder|fashion-mnist|mnist|cifar10] [--threads N]
 *
 * inspect prints where the dataset was found, the files' sha256, the split sizes, the per-class counts and the mean;
 * for imagenet-folder it also decodes one batch. verify reads every file (every image of an image folder, decoded in
 * parallel) and lists each unreadable one with its problem, then the count; it exits with status 1 when any file is
 * bad (verify.ts). A DataError prints `error: <message>` and exits with status 1.
 */
import { parseArgs } from 'node:util';
import { progressBar } from '../src/train/progress';
import { openData, type DatasetName } from './index';
import { DataError, type Split } from './types';
import { verifyData } from './verify';

const NAMES: DatasetName[] = ['fashion-mnist', 'mnist', 'cifar10', 'imagenet-folder'];
const USAGE = `usage: npm run data -- inspect --name ${NAMES.join('|')} [--data-dir DIR] [--download]
       [--image-size N] [--resize-to N] [--threads N]   (imagenet-folder)
       npm run data -- verify [--name ${NAMES.join('|')}] --data-dir DIR [--threads N]   (default name: imagenet-folder)`;

function classCounts(labels: Int32Array, numClasses: number): number[] {
  const c = new Array<number>(numClasses).fill(0);
  for (const l of labels) c[l]++;
  return c;
}

function describeSplit(name: string, s: Split, numClasses: number): string {
  return `${name}: ${s.count} examples; per class ${classCounts(s.labels, numClasses).join(' ')}`;
}

async function inspect(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      name: { type: 'string' },
      'data-dir': { type: 'string' },
      download: { type: 'boolean', default: false },
      'image-size': { type: 'string' },
      'resize-to': { type: 'string' },
      threads: { type: 'string' },
    },
  });
  const name = values.name as DatasetName | undefined;
  if (!name || !NAMES.includes(name)) throw new UsageError(`--name must be one of ${NAMES.join(', ')}`);
  const num = (v: string | undefined) => (v === undefined ? undefined : Number.parseInt(v, 10));
  const t0 = performance.now();
  const data = await openData({
    name,
    dataDir: values['data-dir'],
    download: values.download,
    imageSize: num(values['image-size']),
    resizeTo: num(values['resize-to']),
    threads: num(values.threads),
  });
  try {
    const s = data.source;
    console.log(`dataset: ${s.dataset}`);
    console.log(`origin:  ${s.origin}`);
    console.log(`path:    ${s.path}`);
    console.log(`shape:   ${data.height}x${data.width}x${data.channels}, ${data.numClasses} classes`);
    console.log(`counts:  train ${s.trainCount}, test ${s.testCount}`);
    if (s.mean) console.log(`mean:    [${s.mean.map((m) => m.toFixed(6)).join(', ')}] (of pixel/255 over the training images, subtracted)`);
    if (s.std) console.log(`std:     [${s.std.map((m) => m.toFixed(6)).join(', ')}] (of pixel/255 over the training images, divided by)`);
    for (const [file, sum] of Object.entries(s.checksums ?? {})) console.log(`sha256:  ${sum}  ${file}`);
    if (data.dataset) {
      console.log(describeSplit('train', data.dataset.train, data.numClasses));
      console.log(describeSplit('test ', data.dataset.test, data.numClasses));
    }
    if (data.folder) {
      const f = data.folder;
      console.log(`layout:  ${f.layout}; classes: ${f.classes.length} (${f.classes.slice(0, 5).join(', ')}${f.classes.length > 5 ? ', …' : ''})`);
      const stream = data.train(0);
      const t1 = performance.now();
      const b = await stream.next(Math.min(8, stream.epochSize));
      console.log(`decoded: batch [${b.shape.join(', ')}] in ${((performance.now() - t1) / 1000).toFixed(2)} s (includes worker start-up)`);
      await stream.close();
    }
    console.log(`time:    ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  } finally {
    await data.close();
  }
}

/** Lists every unreadable file of a dataset; exit status 1 when there is one. */
async function verify(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      name: { type: 'string', default: 'imagenet-folder' },
      'data-dir': { type: 'string' },
      threads: { type: 'string' },
    },
  });
  const name = values.name as DatasetName;
  if (!NAMES.includes(name)) throw new UsageError(`--name must be one of ${NAMES.join(', ')}`);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw new UsageError(`--threads must be a positive integer, got "${values.threads}"`);
  const t0 = performance.now();
  let bar: ReturnType<typeof progressBar> | undefined;
  const r = await verifyData(
    { name, dataDir: values['data-dir'] },
    {
      threads,
      onProgress: (done, total) => {
        bar ??= progressBar('verify', total, 'images');
        bar.update(done);
      },
    },
  );
  bar?.stop();
  console.log(`verify:  ${r.dataset} at ${r.path}${r.detail ? ` (${r.detail})` : ''}`);
  for (const [file, sum] of Object.entries(r.checksums ?? {})) console.log(`sha256:  ${sum}  ${file}`);
  for (const w of r.warnings) console.log(`warning: ${w.file}: decodes, with libvips warnings: ${w.warnings.join('; ')}`);
  for (const b of r.bad) console.log(`bad:     ${b.file}: ${b.problem}`);
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  const warned = r.warnings.length ? `; ${plural(r.warnings.length, r.unit)} ${r.warnings.length === 1 ? 'decodes' : 'decode'} with warnings` : '';
  console.log(`result:  ${r.bad.length} of ${plural(r.checked, r.unit)} unreadable${warned} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
  if (r.bad.length > 0) process.exitCode = 1;
}

class UsageError extends Error {}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'inspect') await inspect(rest);
  else if (cmd === 'verify') await verify(rest);
  else throw new UsageError(cmd ? `unknown command "${cmd}"` : 'missing command');
}

main().catch((e: unknown) => {
  if (e instanceof DataError) {
    console.error(`error: ${e.message}`);
    process.exit(1);
  }
  if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  throw e;
});
