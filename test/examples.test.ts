/**
 * examples/fashion-mnist-layers.ts run as a user runs it (few steps): it trains with fitKfac, evaluates, saves with
 * model.save('file://…') and reloads; the test then loads the saved files itself and recomputes the test accuracy
 * from tfjs's own predictions, which must be the accuracy the example printed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadIdxDataset } from '../data-pipeline/idx';
import { DEFAULT_EMBEDDED_ROOT } from '../data-pipeline/locate';
import { initBackend } from '../src/index';

const root = join(import.meta.dirname, '..');
const example = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(root, 'examples', 'fashion-mnist-layers.ts'), ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 240_000,
  });

beforeAll(async () => {
  await initBackend('wasm');
});

describe('examples/fashion-mnist-layers.ts', () => {
  it('trains, evaluates, saves and reloads; the saved model has the accuracy it printed', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dkfac-example-')), 'model');
    const r = example(['--epochs', '1', '--examples', '640', '--out', out]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/backend: (native|wasm)\b/); // the auto engine: native where its addon is built
    expect(r.stdout).toMatch(/640 training and 2000 test images/);
    const m = r.stdout.match(/model\.evaluate on the test set: loss ([\d.]+), accuracy ([\d.]+)/);
    expect(m).not.toBeNull();
    expect(r.stdout).toMatch(/reloaded with tf\.loadLayersModel: largest prediction difference 0\n/);
    expect(existsSync(join(out, 'model.json'))).toBe(true);
    expect(existsSync(join(out, 'weights.bin'))).toBe(true);
    // independent: tfjs loads the files and predicts; argmax accuracy on the embedded test split
    const data = await loadIdxDataset('fashion-mnist', { dataDir: join(DEFAULT_EMBEDDED_ROOT, 'fashion-mnist') });
    const model = await tf.loadLayersModel(`file://${out}/model.json`);
    const x = tf.tensor4d(data.test.images, [data.test.count, 28, 28, 1]);
    const pred = tf.tidy(() => tf.argMax(model.predict(x) as tf.Tensor, 1).dataSync());
    let right = 0;
    for (let i = 0; i < data.test.count; i++) if (pred[i] === data.test.labels[i]) right++;
    expect(right / data.test.count).toBeCloseTo(Number(m![2]), 4);
    // one epoch on 640 images is far better than chance (0.1)
    expect(right / data.test.count).toBeGreaterThan(0.4);
    x.dispose();
    model.dispose();
  });

  it('stops with one clear line and a non-zero exit on bad input', () => {
    const r = example(['--optimizer', 'adam']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/error: --optimizer must be kfac or sgd, got 'adam'/);
    const missing = example(['--data-dir', mkdtempSync(join(tmpdir(), 'dkfac-nodata-'))]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^error: .*train-images-idx3-ubyte/m);
  });
});
