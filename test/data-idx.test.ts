import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadVerified } from '../data-pipeline/download';
import { openTrainData } from '../experiments/data';
import {
  encodeIdxImages,
  encodeIdxLabels,
  IDX_FILES,
  IDX_SOURCES,
  loadIdxDataset,
  readIdxImages,
  readIdxLabels,
} from '../data-pipeline/idx';
import { cacheDirFor, sha256Hex } from '../data-pipeline/locate';
import { DataError } from '../data-pipeline/types';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'dkfac-idx-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Deterministic pseudo-random bytes. */
function bytes(n: number, seed: number, mod = 256): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 24) % mod;
  }
  return out;
}

/** Writes the four IDX files of a small dataset into `dir` and returns what was written. */
async function writeIdxSet(dir: string, opts: { train?: number; test?: number; rows?: number; cols?: number; gz?: boolean; seed?: number } = {}) {
  const { train = 6, test = 4, rows = 3, cols = 5, gz = true, seed = 1 } = opts;
  await mkdir(dir, { recursive: true });
  const d = rows * cols;
  const data = {
    trainPixels: bytes(train * d, seed),
    trainLabels: bytes(train, seed + 1, 10),
    testPixels: bytes(test * d, seed + 2),
    testLabels: bytes(test, seed + 3, 10),
  };
  const enc = (b: Uint8Array) => (gz ? gzipSync(b) : b);
  const name = (n: string) => (gz ? n : n.replace(/\.gz$/, ''));
  await writeFile(join(dir, name(IDX_FILES.trainImages)), enc(encodeIdxImages(data.trainPixels, train, rows, cols)));
  await writeFile(join(dir, name(IDX_FILES.trainLabels)), enc(encodeIdxLabels(data.trainLabels)));
  await writeFile(join(dir, name(IDX_FILES.testImages)), enc(encodeIdxImages(data.testPixels, test, rows, cols)));
  await writeFile(join(dir, name(IDX_FILES.testLabels)), enc(encodeIdxLabels(data.testLabels)));
  return data;
}

/** Options that make the lookup see only what a test sets up. */
function isolated(extra: Record<string, unknown> = {}) {
  return { env: { HOME: join(tmp, 'no-home'), XDG_CACHE_HOME: join(tmp, 'no-cache') }, debianRoot: null, ...extra };
}

async function rejection(p: Promise<unknown>): Promise<DataError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error('expected a DataError');
}

describe('IDX reader', () => {
  it.each([true, false])('round-trips images and labels pixel for pixel (gz=%s)', async (gz) => {
    const dir = join(tmp, `rt-${gz}`);
    const data = await writeIdxSet(dir, { gz, train: 7, test: 3, rows: 4, cols: 6 });
    const suffix = gz ? '.gz' : '';
    const img = await readIdxImages(join(dir, `train-images-idx3-ubyte${suffix}`));
    expect([img.count, img.rows, img.cols]).toEqual([7, 4, 6]);
    expect(Array.from(img.pixels)).toEqual(Array.from(data.trainPixels));
    const lab = await readIdxLabels(join(dir, `train-labels-idx1-ubyte${suffix}`));
    expect(Array.from(lab.labels)).toEqual(Array.from(data.trainLabels));
    expect(img.sha256).toBe(sha256Hex(await readFile(join(dir, `train-images-idx3-ubyte${suffix}`))));
  });

  it('detects gzip by its magic bytes, not by the file name', async () => {
    const px = bytes(2 * 9, 5);
    const gzNoExt = join(tmp, 'gz-content-no-ext');
    const rawWithGz = join(tmp, 'raw-content.gz');
    await writeFile(gzNoExt, gzipSync(encodeIdxImages(px, 2, 3, 3)));
    await writeFile(rawWithGz, encodeIdxImages(px, 2, 3, 3));
    expect(Array.from((await readIdxImages(gzNoExt)).pixels)).toEqual(Array.from(px));
    expect(Array.from((await readIdxImages(rawWithGz)).pixels)).toEqual(Array.from(px));
  });

  it("loads a dataset normalised by the training images' mean and standard deviation, with checksums and origin", async () => {
    const dir = join(tmp, 'load');
    const data = await writeIdxSet(dir, { train: 6, test: 4, rows: 3, cols: 5 });
    const ds = await loadIdxDataset('fashion-mnist', isolated({ dataDir: dir }));
    // mean and (population) standard deviation of pixel/255 over every training pixel, computed here directly
    const v = Array.from(data.trainPixels, (p) => p / 255);
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const std = Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / v.length);
    expect(ds.mean?.[0]).toBeCloseTo(mean, 12);
    expect(ds.std?.[0]).toBeCloseTo(std, 12);
    expect(ds.source.mean).toEqual(ds.mean);
    expect(ds.source.std).toEqual(ds.std);
    expect([ds.height, ds.width, ds.channels, ds.numClasses]).toEqual([3, 5, 1, 10]);
    expect(ds.train.count).toBe(6);
    expect(ds.test.count).toBe(4);
    for (let i = 0; i < data.trainPixels.length; i++) expect(ds.train.images[i]).toBeCloseTo((data.trainPixels[i] / 255 - mean) / std, 5);
    // the test split is normalised with the training statistics
    for (let i = 0; i < data.testPixels.length; i++) expect(ds.test.images[i]).toBeCloseTo((data.testPixels[i] / 255 - mean) / std, 5);
    // the training images come out at mean 0 and standard deviation 1
    const t = Array.from(ds.train.images);
    const tm = t.reduce((a, b) => a + b, 0) / t.length;
    expect(tm).toBeCloseTo(0, 5);
    expect(Math.sqrt(t.reduce((a, x) => a + (x - tm) ** 2, 0) / t.length)).toBeCloseTo(1, 5);
    expect(Array.from(ds.test.labels)).toEqual(Array.from(data.testLabels));
    expect(ds.source.origin).toBe('flag');
    expect(ds.source.path).toBe(dir);
    expect(ds.source.checksums?.[IDX_FILES.trainImages]).toBe(sha256Hex(await readFile(join(dir, IDX_FILES.trainImages))));
    expect(Object.keys(ds.source.checksums ?? {}).sort()).toEqual(Object.values(IDX_FILES).sort());
  });
});

describe('IDX errors name the file and the problem', () => {
  const write = async (name: string, content: Uint8Array) => {
    const p = join(tmp, name);
    await writeFile(p, content);
    return p;
  };

  it('rejects a bad image magic number', async () => {
    const bad = encodeIdxImages(bytes(4, 1), 1, 2, 2);
    bad[3] = 0x02;
    const p = await write('bad-magic-images', bad);
    const e = await rejection(readIdxImages(p));
    expect(e.message).toContain(p);
    expect(e.message).toContain('bad magic number 0x00000802, expected 0x00000803');
  });

  it('rejects a label file given as images and vice versa', async () => {
    const labels = await write('labels-as-images', encodeIdxLabels(bytes(3, 1, 10)));
    expect((await rejection(readIdxImages(labels))).message).toMatch(/labels-as-images: bad magic number 0x00000801, expected 0x00000803/);
    const images = await write('images-as-labels', encodeIdxImages(bytes(4, 1), 1, 2, 2));
    expect((await rejection(readIdxLabels(images))).message).toMatch(/images-as-labels: bad magic number 0x00000803, expected 0x00000801/);
  });

  it('rejects a truncated raw file with the expected and actual sizes', async () => {
    const full = encodeIdxImages(bytes(3 * 28 * 28, 2), 3, 28, 28);
    const p = await write('trunc-raw', full.subarray(0, full.length - 100));
    const e = await rejection(readIdxImages(p));
    expect(e.message).toContain(p);
    expect(e.message).toContain(`truncated: expected ${16 + 3 * 784} bytes, got ${16 + 3 * 784 - 100}`);
  });

  it('rejects a truncated gz file with the expected and actual sizes', async () => {
    const full = encodeIdxImages(bytes(50 * 28 * 28, 3), 50, 28, 28);
    const gz = gzipSync(full);
    const p = await write('trunc.gz', gz.subarray(0, Math.floor(gz.length / 2)));
    const e = await rejection(readIdxImages(p));
    expect(e.message).toContain(p);
    expect(e.message).toMatch(new RegExp(`truncated: expected ${full.length} bytes, got \\d+`));
  });

  it('rejects a file shorter than its header, trailing data and corrupt gzip', async () => {
    const short = await write('short', new Uint8Array([0, 0, 8, 3, 0, 0]));
    expect((await rejection(readIdxImages(short))).message).toContain('truncated: expected at least 16 bytes, got 6');
    const long = await write('long', new Uint8Array([...encodeIdxLabels(new Uint8Array([1, 2])), 7]));
    expect((await rejection(readIdxLabels(long))).message).toMatch(/long: length mismatch: expected 10 bytes .* got 11/);
    const corrupt = await write('corrupt.gz', new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    const e = await rejection(readIdxImages(corrupt));
    expect(e.message).toContain(corrupt);
    expect(e.message).toMatch(/gzip|truncated/);
  });

  it('rejects labels out of range [0, 10)', async () => {
    const p = await write('labels-out-of-range', encodeIdxLabels(new Uint8Array([3, 9, 10, 1])));
    const e = await rejection(readIdxLabels(p));
    expect(e.message).toBe(`${p}: label 10 at index 2 out of range [0, 10)`);
  });

  it('rejects an image/label count mismatch', async () => {
    const dir = join(tmp, 'count-mismatch');
    await writeIdxSet(dir, { train: 5 });
    await writeFile(join(dir, IDX_FILES.trainLabels), gzipSync(encodeIdxLabels(new Uint8Array([1, 2, 3, 4]))));
    const e = await rejection(loadIdxDataset('fashion-mnist', isolated({ dataDir: dir })));
    expect(e.message).toContain(join(dir, IDX_FILES.trainLabels));
    expect(e.message).toContain(`count mismatch: 4 labels, but ${join(dir, IDX_FILES.trainImages)} has 5 images`);
  });
});

describe('lookup order', () => {
  let root: string;
  const dirs = { flag: '', env: '', debianRoot: '', xdg: '' };
  beforeAll(async () => {
    root = join(tmp, 'lookup');
    dirs.flag = join(root, 'flag');
    dirs.env = join(root, 'env');
    dirs.debianRoot = join(root, 'debian');
    dirs.xdg = join(root, 'xdg');
    // Distinct training-set sizes tell which copy was read.
    await writeIdxSet(dirs.flag, { train: 1 });
    await writeIdxSet(join(dirs.env, 'fashion-mnist'), { train: 2, gz: false });
    await writeIdxSet(join(dirs.debianRoot, 'fashion-mnist'), { train: 3 });
    await writeIdxSet(cacheDirFor('fashion-mnist', { XDG_CACHE_HOME: dirs.xdg }), { train: 4 });
  });
  const opts = (o: { flag?: boolean; env?: boolean; debian?: boolean; cache?: boolean }) => ({
    dataDir: o.flag ? dirs.flag : undefined,
    env: { DKFAC_DATA: o.env ? dirs.env : undefined, XDG_CACHE_HOME: o.cache ? dirs.xdg : join(root, 'empty-xdg'), HOME: join(root, 'home') },
    debianRoot: o.debian ? dirs.debianRoot : join(root, 'no-debian'),
  });

  it('flag beats env beats debian beats cache beats embedded', async () => {
    const all = { flag: true, env: true, debian: true, cache: true };
    const cases: Array<[object, string, number]> = [
      [all, 'flag', 1],
      [{ ...all, flag: false }, 'env', 2],
      [{ debian: true, cache: true }, 'debian', 3],
      [{ cache: true }, 'cache', 4],
      [{}, 'embedded', 12000],
    ];
    for (const [o, origin, count] of cases) {
      const ds = await loadIdxDataset('fashion-mnist', opts(o));
      expect(ds.source.origin).toBe(origin);
      expect(ds.train.count).toBe(count);
    }
  });

  it('an explicit directory that lacks a file is an error naming the directory and the file', async () => {
    const dir = join(root, 'partial');
    await writeIdxSet(dir);
    await rm(join(dir, IDX_FILES.testLabels));
    const e = await rejection(loadIdxDataset('fashion-mnist', { ...opts({ debian: true, cache: true }), dataDir: dir }));
    expect(e.message).toContain(dir);
    expect(e.message).toContain('missing t10k-labels-idx1-ubyte.gz');
    expect(e.message).toContain('--data-dir');
    const envDir = join(root, 'empty-env');
    await mkdir(envDir, { recursive: true });
    const e2 = await rejection(loadIdxDataset('fashion-mnist', { ...opts({ debian: true }), env: { DKFAC_DATA: envDir } }));
    expect(e2.message).toContain(envDir);
    expect(e2.message).toContain('DKFAC_DATA');
    const e3 = await rejection(loadIdxDataset('fashion-mnist', { ...opts({}), dataDir: join(root, 'does-not-exist') }));
    expect(e3.message).toContain('does-not-exist: directory given by --data-dir does not exist');
  });

  it('mnist has no embedded copy: not found is an error that says where it looked', async () => {
    const e = await rejection(loadIdxDataset('mnist', opts({})));
    expect(e.message).toMatch(/^mnist: dataset not found \(looked in .*no-debian\/mnist, .*empty-xdg\/dkfac\/mnist\); .*--download/);
  });
});

describe('the normalisation an experiment gets', () => {
  it("is the mean and std of the training images it uses (the profile's subset, not the test split), in the sidecar's data source", async () => {
    const data = await openTrainData({ name: 'fashion-mnist', download: false, trainSubset: 3000, dataDir: join(import.meta.dirname, '..', 'data-pipeline', 'embedded', 'fashion-mnist') });
    try {
      // the raw bytes of the first 3,000 training images, read here without the loader's normalisation
      const raw = await readIdxImages(join(import.meta.dirname, '..', 'data-pipeline', 'embedded', 'fashion-mnist', 'train-images-idx3-ubyte.gz'));
      const px = raw.pixels.subarray(0, 3000 * 784);
      let sum = 0;
      for (const p of px) sum += p / 255;
      const mean = sum / px.length;
      let sq = 0;
      for (const p of px) sq += (p / 255 - mean) ** 2;
      const std = Math.sqrt(sq / px.length);
      expect(data.epochSize).toBe(3000);
      expect(data.source.subset).toBe('first 3000 of 12000 training examples');
      expect(data.source.mean![0]).toBeCloseTo(mean, 12);
      expect(data.source.std![0]).toBeCloseTo(std, 10);
      // Fashion-MNIST's spread: std ≈ 0.35 of pixel/255, which the inputs are now divided by
      expect(std).toBeGreaterThan(0.3);
      expect(std).toBeLessThan(0.4);
      // every input the trainer is handed is (byte/255 − mean) / std for a whole byte: mapped back with the statistics
      // computed here, each lands on an integer
      const batch = await data.train(1).next(64);
      let worst = 0;
      for (const x of batch.images) {
        const byte = (x * std + mean) * 255;
        worst = Math.max(worst, Math.abs(byte - Math.round(byte)));
      }
      expect(worst).toBeLessThan(1e-3);
    } finally {
      await data.close();
    }
  });
});

describe('embedded subset', () => {
  it('loads 12,000 / 2,000 real examples, balanced over the 10 classes', async () => {
    const ds = await loadIdxDataset('fashion-mnist', isolated());
    expect(ds.source.origin).toBe('embedded');
    expect([ds.train.count, ds.test.count]).toEqual([12000, 2000]);
    expect([ds.height, ds.width, ds.channels]).toEqual([28, 28, 1]);
    const hist = (l: Int32Array) => Array.from({ length: 10 }, (_, c) => l.filter((x) => x === c).length);
    expect(hist(ds.train.labels)).toEqual(new Array(10).fill(1200));
    expect(hist(ds.test.labels)).toEqual(new Array(10).fill(200));
    expect(ds.mean?.[0]).toBeGreaterThan(0.2);
    expect(ds.mean?.[0]).toBeLessThan(0.4);
    expect(Object.keys(ds.source.checksums ?? {})).toHaveLength(4);
  });

  it.skipIf(!existsSync('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz'))(
    'is the first 1,200 / 200 of each class of the full dataset, in file order',
    async () => {
      const full = await loadIdxDataset('fashion-mnist', { env: {} });
      expect(full.source.origin).toBe('debian');
      expect([full.train.count, full.test.count]).toEqual([60000, 10000]);
      const emb = await loadIdxDataset('fashion-mnist', isolated());
      const check = (fullSplit: typeof full.train, embSplit: typeof emb.train, per: number, probe: number[]) => {
        const seen = new Array(10).fill(0);
        const picked: number[] = [];
        for (let i = 0; i < fullSplit.count; i++) if (seen[fullSplit.labels[i]]++ < per) picked.push(i);
        expect(Array.from(embSplit.labels)).toEqual(picked.map((i) => fullSplit.labels[i]));
        for (const k of probe) {
          const a = fullSplit.images.subarray(picked[k] * 784, picked[k] * 784 + 784);
          const b = embSplit.images.subarray(k * 784, k * 784 + 784);
          // Same bytes; the two copies are normalised by their own training statistics: back to pixel/255 they agree
          const px = (x: number, d: typeof full) => x * d.std![0] + d.mean![0];
          for (let j = 0; j < 784; j += 37) expect(px(b[j], emb)).toBeCloseTo(px(a[j], full), 5);
        }
      };
      check(full.train, emb.train, 1200, [0, 5000, 11999]);
      check(full.test, emb.test, 200, [0, 1999]);
    },
  );
});

describe('download', () => {
  let server: Server;
  let base: string;
  const payload = Buffer.from('official bytes');
  const served = new Map<string, Buffer>();
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/good/file.gz') res.end(payload);
      else if (req.url === '/bad/file.gz') res.end(Buffer.from('tampered bytes'));
      else if (req.url && served.has(req.url)) res.end(served.get(req.url));
      else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  const quiet = () => {};

  it('verifies the sha256 and falls back to the next mirror', async () => {
    const dest = join(tmp, 'dl', 'file.gz');
    const sum = await downloadVerified([`${base}/missing/file.gz`, `${base}/good/file.gz`], dest, { sha256: sha256Hex(payload) }, quiet);
    expect(sum).toBe(sha256Hex(payload));
    expect(await readFile(dest)).toEqual(payload);
  });

  it('downloads a whole IDX dataset into the cache only with download: true, then finds it there', async () => {
    const src = join(tmp, 'dl-src');
    await writeIdxSet(src, { train: 5, test: 2 });
    const files: Record<string, { sha256: string; md5: string }> = {};
    for (const name of Object.values(IDX_FILES)) {
      const content = await readFile(join(src, name));
      served.set(`/mnist/${name}`, content);
      files[name] = { sha256: sha256Hex(content), md5: createHash('md5').update(content).digest('hex') };
    }
    const saved = IDX_SOURCES.mnist;
    IDX_SOURCES.mnist = { urls: [`${base}/missing/`, `${base}/mnist/`], files };
    try {
      const opts = { env: { XDG_CACHE_HOME: join(tmp, 'dl-xdg') }, debianRoot: null, log: quiet };
      await rejection(loadIdxDataset('mnist', opts));
      const ds = await loadIdxDataset('mnist', { ...opts, download: true });
      expect(ds.source.origin).toBe('download');
      expect(ds.source.path).toBe(join(tmp, 'dl-xdg', 'dkfac', 'mnist'));
      expect(ds.train.count).toBe(5);
      const again = await loadIdxDataset('mnist', { ...opts, download: true });
      expect(again.source.origin).toBe('cache');
      expect(again.source.checksums).toEqual(ds.source.checksums);
    } finally {
      IDX_SOURCES.mnist = saved;
    }
  });

  it('rejects content whose checksum differs, leaving no file', async () => {
    const dest = join(tmp, 'dl2', 'file.gz');
    const e = await rejection(downloadVerified([`${base}/bad/file.gz`], dest, { sha256: sha256Hex(payload), md5: 'x' }, quiet));
    expect(e.message).toContain(dest);
    expect(e.message).toContain('sha256 mismatch');
    expect(existsSync(dest) || existsSync(`${dest}.part`)).toBe(false);
  });
});

describe('cli inspect', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'data-pipeline/cli.ts', 'inspect', ...args], { encoding: 'utf8', env: { ...process.env, DKFAC_DATA: '' } });

  it('prints what it found', async () => {
    const dir = join(tmp, 'cli-ok');
    await writeIdxSet(dir, { train: 6, test: 4 });
    const r = run(['--name', 'fashion-mnist', '--data-dir', dir]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('origin:  flag');
    expect(r.stdout).toContain('counts:  train 6, test 4');
    expect(r.stdout).toMatch(/sha256:  [0-9a-f]{64}  train-images-idx3-ubyte.gz/);
  });

  it('prints "error: <message>" and exits 1 on a DataError, without a stack trace', async () => {
    const dir = join(tmp, 'cli-bad');
    await mkdir(dir, { recursive: true });
    const r = run(['--name', 'fashion-mnist', '--data-dir', dir]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(new RegExp(`^error: ${dir}: missing train-images-idx3-ubyte.gz`));
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
