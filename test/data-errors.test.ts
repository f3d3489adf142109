/**
 * Unreadable data files, as a new user meets them: real JPEGs made with sharp, one cut short or not an image at all.
 *   - an experiment stops at the first data error, naming the file, and a run that never trained leaves no files;
 *     a run that trained keeps its rows and a failed sidecar; nothing but that one error line reaches stderr
 *   - `npm run data -- verify` lists exactly the unreadable files (image folders, and the IDX files)
 *   - `--on-bad-image skip` leaves the unreadable images out (the next examples take their place) and counts them
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cropParams } from '../data-pipeline/crop';
import { ImageDecodePool, ImageFolderStream, openImageFolder, SkipLog } from '../data-pipeline/image-folder';
import { openData } from '../data-pipeline/index';
import { shuffleInPlace } from '../data-pipeline/stream';
import { DataError } from '../data-pipeline/types';
import { verifyData } from '../data-pipeline/verify';
import { initBackend } from '../src/backend';
import { runTraining } from '../src/train/run';
import { checkpointPath } from '../src/train/session';
import type { TrainData } from '../src/train/trainer';
import { rows, runCfg, trainData } from './distributed-helpers';
import { jpeg } from './image-helpers';

const repo = join(import.meta.dirname, '..');
let tmp: string;
/** train/{a,b}/img0..3.jpg, val/{a,b}/img0..1.jpg: all readable */
let good: string;
/** as `good`, with train/b/img2.jpg cut in half */
let badTrain: string;
/** as `good`, with val/a/img1.jpg cut in half, and train/a/img0.jpg a damaged JPEG that decodes with libvips warnings */
let badVal: string;
let pool: ImageDecodePool;

function truncate(file: string): void {
  const full = readFileSync(file);
  writeFileSync(file, full.subarray(0, Math.floor(full.length / 2)));
}

/** Zeroes every 7th byte of the entropy-coded data: libjpeg warns ('Corrupt JPEG data: bad Huffman code'), the image decodes. */
function garble(file: string): void {
  const b = readFileSync(file);
  const sos = b.indexOf(Buffer.from([0xff, 0xda]));
  for (let i = sos + 40; i < b.length - 40; i += 7) b[i] = 0;
  writeFileSync(file, b);
}

function copyWith(name: string, damage: (dir: string) => void): string {
  const dir = join(tmp, name);
  cpSync(good, dir, { recursive: true });
  damage(dir);
  return dir;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'dkfac-dataerr-'));
  good = join(tmp, 'good');
  let seed = 0;
  for (const [split, n] of [['train', 4], ['val', 2]] as const) {
    for (const cls of ['a', 'b']) {
      mkdirSync(join(good, split, cls), { recursive: true });
      for (let i = 0; i < n; i++) await jpeg(join(good, split, cls, `img${i}.jpg`), 24 + 4 * i, 20, seed++);
    }
  }
  badTrain = copyWith('bad-train', (d) => truncate(join(d, 'train', 'b', 'img2.jpg')));
  badVal = copyWith('bad-val', (d) => truncate(join(d, 'val', 'a', 'img1.jpg')));
  await jpeg(join(badVal, 'train', 'a', 'img0.jpg'), 64, 48, 5);
  garble(join(badVal, 'train', 'a', 'img0.jpg'));
  pool = new ImageDecodePool({ threads: 2 });
});

afterAll(async () => {
  await pool?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The error line of a JPEG cut short: libvips' messages, each once, in one line. */
function truncatedLine(file: string): RegExp {
  return new RegExp(`^error: ${escape(file)}: cannot decode image: [^\n]*premature end of JPEG image(?![^\n]*premature end)[^\n]*$`);
}

const cropCenter = cropParams({ mode: 'center', imageSize: 8, resizeTo: 8 });

function node(script: string, args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repo, script), ...args], {
    cwd: repo,
    encoding: 'utf8',
    env: { ...process.env, DKFAC_QUIET: '1' },
    timeout: 300_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Figure 2's experiment on an image folder at 16×16, batch 8 (the whole training split), 2 updates per run. */
function fig2(dataDir: string, extra: string[] = []) {
  const results = mkdtempSync(join(tmpdir(), 'dkfac-dataerr-res-'));
  const sets = ['data.name=imagenet-folder', 'data.imageSize=16', 'data.resizeTo=16', 'batchSize=8', 'examples=16', 'evals=1', 'logEvery=1', 'kfac.statsBatch=4'];
  const r = node('experiments/cli.ts', ['run', 'fig2', '--data-dir', dataDir, ...sets.flatMap((s) => ['--set', s]), '--no-report', '--results', results, '--seeds', '1', ...extra]);
  return { ...r, results, dir: join(results, 'fig2') };
}

describe('a data error in an experiment', () => {
  it('stops the whole experiment at the first one, naming the file, with no files for runs that never trained', () => {
    const r = fig2(badTrain);
    const file = join(badTrain, 'train', 'b', 'img2.jpg');
    expect(r.code).toBe(1);
    // the one error line and nothing else: no libvips output, no per-run failure lines
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(truncatedLine(file))]);
    expect(r.stdout).toContain('dist.K-FAC async gpu1: stopped by a data error before its first update; no files written');
    expect(r.stdout).toContain('not started: kfac-async-gpu4-s1, kfac-sync-gpu1-s1, kfac-sync-gpu4-s1');
    expect(r.stdout).not.toMatch(/K-FAC (async gpu4|sync gpu1|sync gpu4):/);
    expect(existsSync(r.dir)).toBe(false);
  }, 300_000);

  it('a run that trained keeps its rows and a failed sidecar; the later runs do not start', () => {
    const r = fig2(badVal);
    const file = join(badVal, 'val', 'a', 'img1.jpg');
    expect(r.code).toBe(1);
    // training read the JPEG libvips warns about: its warnings are not printed either
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(truncatedLine(file))]);
    // the evaluation at update 2 met the file: update 1's row is kept
    expect(readdirSync(r.dir).sort()).toEqual(['kfac-async-gpu1-s1.csv', 'kfac-async-gpu1-s1.json']);
    const csv = readFileSync(join(r.dir, 'kfac-async-gpu1-s1.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(2);
    expect(csv[1].split(',').slice(0, 2)).toEqual(['1', '8']);
    const side = JSON.parse(readFileSync(join(r.dir, 'kfac-async-gpu1-s1.json'), 'utf8'));
    expect(side.status).toBe('failed');
    expect(`error: ${side.error}`).toMatch(truncatedLine(file));
    expect(side.summary.steps).toBe(2);
    expect(r.stdout).toContain('dist.K-FAC async gpu1: stopped by a data error after 2 updates');
  }, 300_000);

  it('--on-bad-image skip trains on the readable images and records what it skipped', () => {
    const r = fig2(badTrain, ['--on-bad-image', 'skip', '--set', 'gpus=[1]', '--set', 'schedules=["sync"]']);
    const file = join(badTrain, 'train', 'b', 'img2.jpg');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`dist.K-FAC sync gpu1: skipped 1 unreadable image \\(\\d+ examples? left out; listed in .*kfac-sync-gpu1-s1.json\\), e.g. ${file}: `));
    const side = JSON.parse(readFileSync(join(r.dir, 'kfac-sync-gpu1-s1.json'), 'utf8'));
    expect(side.status).toBe('finished');
    expect(side.summary.steps).toBe(2);
    expect(side.skippedImages).toMatchObject({ policy: 'skip', count: 1, files: [{ file }] });
    expect(`error: ${file}: ${side.skippedImages.files[0].problem}`).toMatch(truncatedLine(file));
    // the first batch holds the whole first epoch, so the training stream skipped the file at least once
    expect(side.skippedImages.skips).toBeGreaterThanOrEqual(1);
    expect(readFileSync(join(r.dir, 'kfac-sync-gpu1-s1.csv'), 'utf8').trim().split('\n')).toHaveLength(3);
  }, 300_000);

  it('rejects an unknown --on-bad-image value, naming it, and a bad data.onBadImage', () => {
    const a = fig2(good, ['--on-bad-image', 'ignore']);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--on-bad-image.*'ignore' is invalid.*stop, skip/);
    const b = fig2(good, ['--set', 'data.onBadImage=ignore']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/error: invalid fig2 profile 'quick':\s+data.onBadImage: unknown policy "ignore" \(stop or skip\)/);
    expect(existsSync(b.dir)).toBe(false);
  }, 300_000);
});

describe('a data error in a run (the session)', () => {
  /** Training data whose main stream throws a DataError at its `at`-th batch. */
  function failingData(at: number): TrainData {
    const d = trainData();
    return {
      ...d,
      train: (seed, shard) => {
        const stream = d.train(seed, shard);
        const next = stream.next.bind(stream);
        let calls = 0;
        stream.next = (n: number) => (++calls === at ? Promise.reject(new DataError('/data/x.jpg', 'cannot decode image: test')) : next(n));
        return stream;
      },
    };
  }

  it("a fresh run that fails before its first update leaves the earlier run's files as they were", async () => {
    const backend = await initBackend();
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-dataerr-session-'));
    const cfg = runCfg({ examples: 16 * 3, keepCheckpoint: true });
    const ctx = (data: TrainData) => ({ experiment: 'test', profile: 'test', resultsDir: dir, backend, data });
    const first = await runTraining(cfg, ctx(trainData()));
    expect(first.status).toBe('finished');
    const files = [first.csvPath, first.sidecarPath, checkpointPath(dir, cfg.run)];
    const sums = () => files.map((f) => createHash('sha256').update(readFileSync(f)).digest('hex'));
    const before = sums();

    await expect(runTraining(cfg, ctx(failingData(1)))).rejects.toThrow('/data/x.jpg: cannot decode image: test');
    expect(sums()).toEqual(before);

    // failing at its third batch, the run has trained two updates: its own rows, a failed sidecar, no stale checkpoint
    await expect(runTraining(cfg, ctx(failingData(3)))).rejects.toBeInstanceOf(DataError);
    expect(rows(first.csvPath).map((r) => r[0])).toEqual(['step', '1', '2']);
    const side = JSON.parse(readFileSync(first.sidecarPath, 'utf8'));
    expect(side).toMatchObject({ status: 'failed', error: '/data/x.jpg: cannot decode image: test', summary: { steps: 2 } });
    expect(existsSync(checkpointPath(dir, cfg.run))).toBe(false);
  }, 120_000);
});

describe('npm run data -- verify', () => {
  it('lists exactly the unreadable images of a folder, and exits 1', async () => {
    const dir = copyWith('many-bad', (d) => {
      truncate(join(d, 'train', 'a', 'img1.jpg'));
      writeFileSync(join(d, 'train', 'b', 'img3.jpg'), 'not a jpeg');
      writeFileSync(join(d, 'val', 'b', 'img0.jpg'), Buffer.alloc(0));
    });
    // a damaged JPEG that still decodes (libjpeg only warns) is not unreadable: listed apart, training reads it
    const warned = join(dir, 'val', 'a', 'img0.jpg');
    await jpeg(warned, 64, 48, 5);
    garble(warned);
    const bad = [
      [join(dir, 'train', 'a', 'img1.jpg'), expect.stringMatching(/^cannot decode image: .*premature end of JPEG image/)],
      [join(dir, 'train', 'b', 'img3.jpg'), 'cannot decode image: Input buffer contains unsupported image format'],
      [join(dir, 'val', 'b', 'img0.jpg'), 'cannot decode image: Input Buffer is empty'],
    ];
    const report = await verifyData({ name: 'imagenet-folder', dataDir: dir }, { threads: 2 });
    expect(report.checked).toBe(12);
    expect(report.bad.map((b) => [b.file, b.problem])).toEqual(bad);
    expect(report.warnings).toEqual([{ file: warned, warnings: expect.arrayContaining([expect.stringMatching(/Corrupt JPEG data/)]) }]);

    const r = node('data-pipeline/cli.ts', ['verify', '--data-dir', dir, '--threads', '2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').filter((l) => l.startsWith('bad:'))).toEqual(report.bad.map((b) => `bad:     ${b.file}: ${b.problem}`));
    expect(r.stdout).toContain(`warning: ${warned}: decodes, with libvips warnings: `);
    expect(r.stdout).toMatch(/result: +3 of 12 images unreadable; 1 image decodes with warnings/);
  });

  it('passes a readable folder with exit 0', () => {
    const r = node('data-pipeline/cli.ts', ['verify', '--data-dir', good]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/^bad:/m);
    expect(r.stdout).toMatch(/result: +0 of 12 images unreadable/);
  });

  it('checks each IDX file on its own: both truncated image files are listed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-dataerr-idx-'));
    // valid label files; image files whose header promises 5 images of 28×28 but that end after the header
    for (const f of ['train-labels-idx1-ubyte', 't10k-labels-idx1-ubyte']) writeFileSync(join(dir, f), Buffer.from([0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3, 4, 5]));
    for (const f of ['train-images-idx3-ubyte', 't10k-images-idx3-ubyte']) writeFileSync(join(dir, f), Buffer.from([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]));
    const r = node('data-pipeline/cli.ts', ['verify', '--name', 'fashion-mnist', '--data-dir', dir]);
    expect(r.code).toBe(1);
    const bad = r.stdout.split('\n').filter((l) => l.startsWith('bad:'));
    expect(bad).toHaveLength(2);
    expect(bad[0]).toMatch(new RegExp(`^bad: +${join(dir, 'train-images-idx3-ubyte')}: truncated: expected ${16 + 5 * 28 * 28} bytes, got 16`));
    expect(bad[1]).toMatch(new RegExp(`^bad: +${join(dir, 't10k-images-idx3-ubyte')}: truncated`));
    expect(r.stdout).toMatch(/result: +2 of 4 files unreadable/);
  });
});

describe('the decode pool', () => {
  it("names each file's own problem when many decode at once (libvips' messages are process-wide)", async () => {
    const dir = join(tmp, 'mixed');
    mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    for (let i = 0; i < 36; i++) {
      const f = join(dir, `f${i}.jpg`);
      await jpeg(f, 30 + (i % 5) * 7, 24 + (i % 3) * 9, 200 + i);
      if (i % 3 === 0) truncate(f);
      else if (i % 3 === 1) garble(f);
      files.push(f);
    }
    const params = cropCenter;
    // one at a time on one thread: each call's messages are its own
    const serial = new ImageDecodePool({ threads: 1 });
    const alone: string[] = [];
    for (const f of files) alone.push(await serial.decode(f, 's', params).then(() => 'ok', (e: Error) => e.message));
    await serial.close();
    expect(alone.filter((m) => m !== 'ok')).toHaveLength(12);
    // all at once on two threads, on a fresh pool (no failures remembered)
    const busy = new ImageDecodePool({ threads: 2 });
    const together = await Promise.all(files.map((f) => busy.decode(f, 's', params).then(() => 'ok', (e: Error) => e.message)));
    await busy.close();
    expect(together).toEqual(alone);
  });
});

describe('skipping unreadable images in a stream', () => {
  /** classes c0..c5 with one image each; c2's is unreadable: a label names the image */
  let dir: string;
  beforeAll(async () => {
    dir = join(tmp, 'one-per-class');
    for (let c = 0; c < 6; c++) {
      mkdirSync(join(dir, `c${c}`), { recursive: true });
      if (c === 2) writeFileSync(join(dir, 'c2', 'x.jpg'), 'not an image');
      else await jpeg(join(dir, `c${c}`, 'x.jpg'), 20 + c, 18, 100 + c);
    }
  });

  const open = async (skip: SkipLog | undefined, extra: object = {}) => {
    const f = await openImageFolder(dir, { valFraction: 0 });
    return new ImageFolderStream(f.train, { numClasses: 6, mode: 'center', imageSize: 8, resizeTo: 8, pool, skip, ...extra });
  };

  it('without skip, the batch holding the file fails; with skip, the next examples in stream order fill the batch', async () => {
    const stop = await open(undefined, { seed: 3 });
    await expect(stop.next(6)).rejects.toThrow(`${join(dir, 'c2', 'x.jpg')}: cannot decode image: `);
    await stop.close();

    const log = new SkipLog();
    const s = await open(log, { seed: 3 });
    const mark = log.mark();
    // stream order: epoch e is a seeded permutation of 0..5; c2 is left out wherever it falls
    const perm = (e: number) => Array.from(shuffleInPlace(Int32Array.from([0, 1, 2, 3, 4, 5]), seedrandom(`3:epoch:${e}`)));
    const order = (e: number) => perm(e).filter((i) => i !== 2);
    const expected = [...order(0), ...order(1), ...order(2)];
    const got: number[] = [];
    for (let i = 0; i < 3; i++) {
      const b = await s.next(4);
      expect(b.shape).toEqual([4, 8, 8, 3]);
      got.push(...b.labels);
    }
    expect(got).toEqual(expected.slice(0, 12));
    // 12 readable examples: epochs 0 and 1 whole (c2 skipped in each), then the first two of epoch 2, and c2 when it
    // comes before the second of them
    const skips = 2 + (perm(2).indexOf(2) < 2 ? 1 : 0);
    const skipped = log.since(mark);
    expect(skipped).toEqual({ policy: 'skip', count: 1, skips, files: [{ file: join(dir, 'c2', 'x.jpg'), problem: 'cannot decode image: Input buffer contains unsupported image format' }] });

    // a stream restored from the saved position continues with the same examples
    const saved = s.state();
    const t = await open(new SkipLog(), { seed: 3 });
    t.restore(saved);
    expect(Array.from((await t.next(5)).labels)).toEqual(Array.from((await s.next(5)).labels));
    for (const x of [s, t]) await x.close();
  });

  it('an unshuffled pass is one image shorter and the decoded pixels are those of the readable images', async () => {
    const s = await open(new SkipLog(), { shuffle: false });
    const b = await s.next(6);
    expect(Array.from(b.labels)).toEqual([0, 1, 3, 4, 5]);
    expect(s.passEnded).toBe(true);
    const f = await openImageFolder(dir, { valFraction: 0 });
    for (const [k, label] of [0, 1, 3, 4, 5].entries()) {
      const one = await pool.decode(f.train.files[label], 'x', s.params);
      expect(b.images.subarray(k * 192, (k + 1) * 192)).toEqual(one.pixels);
    }
    await s.close();
  });

  it('openData with onBadImage skip: one test pass over the readable images, with the skips counted', async () => {
    const data = await openData({ name: 'imagenet-folder', dataDir: badVal, imageSize: 16, resizeTo: 16, threads: 1, onBadImage: 'skip' });
    try {
      const mark = data.skipped!.mark();
      for (let pass = 0; pass < 2; pass++) {
        const labels: number[] = [];
        for await (const b of data.testBatches(3)) labels.push(...b.labels);
        expect(labels).toEqual([0, 1, 1]);
      }
      expect(data.skipped!.since(mark)).toMatchObject({ count: 1, skips: 2, files: [{ file: join(badVal, 'val', 'a', 'img1.jpg') }] });
    } finally {
      await data.close();
    }
  });
});
