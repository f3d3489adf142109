import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { centerCropPlan, cropParams, paperCropOffset, randomResizedCropBox } from '../data-pipeline/crop';
import { ImageDecodePool, ImageFolderStream, openImageFolder, scanClassFolders, type ImageFolder } from '../data-pipeline/image-folder';
import { openData } from '../data-pipeline/index';
import { DataError } from '../data-pipeline/types';
import { jpeg } from './image-helpers';

let tmp: string;
let root: string;
let folder: ImageFolder;
let pool: ImageDecodePool;

const sizes: Array<[number, number]> = [
  [96, 64],
  [64, 96],
  [120, 90],
  [50, 50],
];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'dkfac-folder-'));
  root = join(tmp, 'imagenet');
  let seed = 0;
  for (const split of ['train', 'val']) {
    for (const cls of ['n02', 'n01', 'n03']) {
      await mkdir(join(root, split, cls), { recursive: true });
      const count = split === 'train' ? 4 : 2;
      for (let i = 0; i < count; i++) {
        const [w, h] = sizes[(i + seed) % sizes.length];
        await jpeg(join(root, split, cls, `img${i}.${i === 1 ? 'JPEG' : 'jpg'}`), w, h, seed++);
      }
    }
  }
  // A greyscale PNG with alpha and a stray non-image file: decoded as RGB, and ignored.
  await sharp(Buffer.alloc(40 * 30 * 2, 200), { raw: { width: 40, height: 30, channels: 2 } })
    .png()
    .toFile(join(root, 'train', 'n03', 'grey.png'));
  await writeFile(join(root, 'train', 'n03', 'notes.txt'), 'not an image');
  folder = await openImageFolder(root);
  pool = new ImageDecodePool({ threads: 2 });
});

afterAll(async () => {
  await pool?.close();
  await rm(tmp, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<DataError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error('expected a DataError');
}

describe('image folder scan', () => {
  it('sorts classes by name into labels and reads train/ and val/', () => {
    expect(folder.layout).toBe('train-val');
    expect(folder.classes).toEqual(['n01', 'n02', 'n03']);
    expect(folder.train.files).toHaveLength(13);
    expect(folder.val.files).toHaveLength(6);
    expect(folder.train.files[0]).toBe(join(root, 'train', 'n01', 'img0.jpg'));
    expect(Array.from(folder.train.labels)).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    expect(folder.train.files.some((f) => f.endsWith('notes.txt'))).toBe(false);
  });

  it('holds out the last images of each class in a flat folder', async () => {
    const flat = await openImageFolder(join(root, 'train'), { valFraction: 0.25 });
    expect(flat.layout).toBe('flat');
    expect(flat.val.files.map((f) => f.slice(f.indexOf('train/') + 6))).toEqual(['n01/img3.jpg', 'n02/img3.jpg', 'n03/img3.jpg']);
    expect(flat.train.files.length + flat.val.files.length).toBe(13);
  });

  it('rejects an empty class folder and a root without class folders', async () => {
    const bad = join(tmp, 'bad');
    await mkdir(join(bad, 'cat'), { recursive: true });
    await mkdir(join(bad, 'dog'), { recursive: true });
    await writeFile(join(bad, 'cat', 'a.txt'), 'x');
    await jpeg(join(bad, 'dog', 'a.jpg'), 20, 20, 1);
    const e = await rejection(openImageFolder(bad));
    expect(e.message).toBe(`${join(bad, 'cat')}: empty class folder (no .jpg, .jpeg or .png files)`);
    const empty = join(tmp, 'no-classes');
    await mkdir(empty, { recursive: true });
    await writeFile(join(empty, 'x.jpg'), 'x');
    expect((await rejection(openImageFolder(empty))).message).toBe(`${empty}: no class folders (expected <root>/<class>/*.jpg)`);
    expect((await rejection(openImageFolder(join(tmp, 'nope')))).message).toContain('nope: image folder does not exist');
  });

  it('rejects a validation class that is not a training class', async () => {
    const e = await rejection(scanClassFolders(join(root, 'train'), ['n01', 'n02']));
    expect(e.message).toContain(`${join(root, 'train', 'n03')}: class folder not among the 2 training classes`);
  });
});

describe('crop geometry', () => {
  it('random-resized crops stay inside the image and respect scale and ratio', () => {
    const rng = seedrandom('geom');
    for (let t = 0; t < 2000; t++) {
      const w = 1 + Math.floor(rng() * 600);
      const h = 1 + Math.floor(rng() * 600);
      const b = randomResizedCropBox(w, h, [0.08, 1], [3 / 4, 4 / 3], rng);
      expect(b.left).toBeGreaterThanOrEqual(0);
      expect(b.top).toBeGreaterThanOrEqual(0);
      expect(b.width).toBeGreaterThanOrEqual(1);
      expect(b.height).toBeGreaterThanOrEqual(1);
      expect(b.left + b.width).toBeLessThanOrEqual(w);
      expect(b.top + b.height).toBeLessThanOrEqual(h);
    }
    for (let t = 0; t < 500; t++) {
      const b = randomResizedCropBox(500, 375, [0.08, 1], [3 / 4, 4 / 3], rng);
      const frac = (b.width * b.height) / (500 * 375);
      expect(frac).toBeGreaterThan(0.07);
      expect(frac).toBeLessThanOrEqual(1);
    }
  });

  it('paper and centre crops', () => {
    const rng = seedrandom('p');
    for (let t = 0; t < 200; t++) {
      const { left, top } = paperCropOffset(256, 224, rng);
      expect(left).toBeGreaterThanOrEqual(0);
      expect(top).toBeLessThanOrEqual(32);
    }
    const plan = centerCropPlan(500, 375, 256, 224);
    expect(plan).toEqual({ resizeWidth: 341, resizeHeight: 256, box: { left: 58, top: 16, width: 224, height: 224 } });
    expect(() => cropParams({ mode: 'center', imageSize: 64, resizeTo: 32 })).toThrow(RangeError);
    expect(cropParams({ mode: 'paper' })).toMatchObject({ imageSize: 224, resizeTo: 256, flip: false });
    expect(cropParams({ mode: 'jitter', imageSize: 32 })).toMatchObject({ resizeTo: 37, flip: true, scale: [0.08, 1] });
  });
});

describe('decoding on the worker pool', () => {
  it('decodes every mode to imageSize² RGB with crops inside the image', async () => {
    for (const mode of ['paper', 'jitter', 'center'] as const) {
      const params = cropParams({ mode, imageSize: 32, resizeTo: 40 });
      for (let i = 0; i < folder.train.files.length; i++) {
        const r = await pool.decode(folder.train.files[i], `s:${i}`, params);
        expect(r.pixels).toBeInstanceOf(Float32Array);
        expect(r.pixels.length).toBe(32 * 32 * 3);
        const [w, h] = mode === 'paper' ? [40, 40] : mode === 'center' ? [Infinity, Infinity] : [r.width, r.height];
        expect(r.box.left + r.box.width).toBeLessThanOrEqual(w);
        expect(r.box.top + r.box.height).toBeLessThanOrEqual(h);
        expect(Math.min(r.box.left, r.box.top)).toBeGreaterThanOrEqual(0);
        if (mode === 'center') expect(r.flipped).toBe(false);
      }
    }
  });

  it('centre crops are deterministic and ignore the seed', async () => {
    const params = cropParams({ mode: 'center', imageSize: 32, resizeTo: 36 });
    const a = await pool.decode(folder.train.files[2], 'a', params);
    const b = await pool.decode(folder.train.files[2], 'b', params);
    expect(b.pixels).toEqual(a.pixels);
    expect(a.box).toEqual(centerCropPlan(a.width, a.height, 36, 32).box);
  });

  it('normalises with the mean and std: a grey PNG decodes to RGB (200/255 - mean) / std', async () => {
    const params = cropParams({ mode: 'center', imageSize: 16, resizeTo: 16, mean: [0.5, 0.25, 0], std: [1, 0.5, 1] });
    const file = join(tmp, 'grey-opaque.png');
    await sharp(Buffer.alloc(40 * 30, 200), { raw: { width: 40, height: 30, channels: 1 } }).png().toFile(file);
    const r = await pool.decode(file, 'x', params);
    for (let i = 0; i < r.pixels.length; i += 3) {
      expect(r.pixels[i]).toBeCloseTo(200 / 255 - 0.5, 5);
      expect(r.pixels[i + 1]).toBeCloseTo((200 / 255 - 0.25) / 0.5, 5);
      expect(r.pixels[i + 2]).toBeCloseTo(200 / 255, 5);
    }
    // With an alpha channel, the alpha is dropped (resizing premultiplies, so values may move by a level or two).
    const withAlpha = await pool.decode(join(root, 'train', 'n03', 'grey.png'), 'x', params);
    expect(withAlpha.pixels.length).toBe(16 * 16 * 3);
    expect(Math.abs(withAlpha.pixels[0] - (200 / 255 - 0.5))).toBeLessThan(4 / 255);
  });

  it('rejects a corrupt or truncated JPEG with a DataError naming the file', async () => {
    const bad = join(tmp, 'corrupt.jpg');
    await writeFile(bad, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    const e = await rejection(pool.decode(bad, 's', cropParams({ mode: 'jitter', imageSize: 16 })));
    expect(e.message).toMatch(new RegExp(`^${bad}: cannot decode image: `));
    const full = await readFile(folder.train.files[0]);
    const truncated = join(tmp, 'truncated.jpg');
    await writeFile(truncated, full.subarray(0, Math.floor(full.length / 2)));
    const e2 = await rejection(pool.decode(truncated, 's', cropParams({ mode: 'paper', imageSize: 16, resizeTo: 20 })));
    expect(e2.message).toMatch(new RegExp(`^${truncated}: cannot decode image: `));
  });

  it('a corrupt image in a folder fails the batch that holds it, naming the file', async () => {
    const dir = join(tmp, 'with-corrupt');
    await mkdir(join(dir, 'a'), { recursive: true });
    await jpeg(join(dir, 'a', 'good.jpg'), 30, 30, 3);
    await writeFile(join(dir, 'a', 'zbad.jpg'), Buffer.from('not a jpeg at all'));
    const f = await openImageFolder(dir, { valFraction: 0 });
    const s = new ImageFolderStream(f.train, { numClasses: 1, mode: 'center', imageSize: 16, resizeTo: 16, shuffle: false, pool });
    const e = await rejection(s.next(2));
    expect(e.message).toContain(join(dir, 'a', 'zbad.jpg'));
    await s.close();
  });
});

describe('ImageFolderStream', () => {
  const make = (seed: number, extra: object = {}) =>
    new ImageFolderStream(folder.train, { numClasses: 3, mode: 'jitter', imageSize: 24, seed, pool, ...extra });

  it('gives batches of the right shape; same seed, same batch; different seed, different batch', async () => {
    const a = make(7);
    const b = make(7);
    const c = make(8);
    const [ba, bb, bc] = [await a.next(5), await b.next(5), await c.next(5)];
    expect(ba.shape).toEqual([5, 24, 24, 3]);
    expect(ba.images.length).toBe(5 * 24 * 24 * 3);
    expect(bb.images).toEqual(ba.images);
    expect(bb.labels).toEqual(ba.labels);
    expect(bc.images).not.toEqual(ba.images);
    for (const s of [a, b, c]) await s.close();
  });

  it('covers the epoch once with disjoint shards, and repeats across pool sizes', async () => {
    const s0 = make(1, { shard: { index: 0, count: 2 } });
    const s1 = make(1, { shard: { index: 1, count: 2 } });
    expect(s0.epochSize + s1.epochSize).toBe(13);
    const l0 = await s0.next(s0.epochSize);
    const l1 = await s1.next(s1.epochSize);
    const count = (l: Int32Array) => [0, 1, 2].map((c) => l.filter((x) => x === c).length);
    const sum = count(l0.labels).map((v, i) => v + count(l1.labels)[i]);
    expect(sum).toEqual([4, 4, 5]);
    const own = new ImageFolderStream(folder.train, { numClasses: 3, mode: 'jitter', imageSize: 24, seed: 1, shard: { index: 0, count: 2 }, threads: 1 });
    expect((await own.next(s0.epochSize)).images).toEqual(l0.images);
    for (const s of [s0, s1, own]) await s.close();
  });

  it('keeps batches in flight: after a pause, next() hardly waits', async () => {
    const s = make(3, { prefetch: 2 });
    await s.next(4);
    const before = s.waitSeconds;
    await new Promise((r) => setTimeout(r, 800));
    await s.next(4);
    expect(s.waitSeconds - before).toBeLessThan(0.05);
    expect(s.waitSeconds).toBeGreaterThan(0);
    await s.close();
  });

  it('state/restore: a restored stream continues with the same crops and order, across an epoch boundary', async () => {
    const a = make(5, { prefetch: 2 });
    await a.next(5);
    await a.next(5); // 10 of 12 examples, and prefetching into the next epoch
    const saved = a.state();
    const b = make(5);
    b.restore(saved);
    for (let i = 0; i < 2; i++) {
      const [x, y] = [await a.next(5), await b.next(5)];
      expect(y.labels).toEqual(x.labels);
      expect(y.images).toEqual(x.images);
    }
    expect(() => make(6).restore(saved)).toThrow(/seed '5', this stream '6'/);
    for (const s of [a, b]) await s.close();
  });

  it('unshuffled evaluation passes end with a short batch and start over', async () => {
    const s = new ImageFolderStream(folder.val, { numClasses: 3, mode: 'center', imageSize: 16, resizeTo: 20, shuffle: false, pool });
    const sizes = [];
    for (let i = 0; i < 4; i++) sizes.push((await s.next(4)).shape[0]);
    expect(sizes).toEqual([4, 2, 4, 2]);
    await s.close();
  });
});

describe('openData on an image folder', () => {
  it('opens train and test streams that share a pool', async () => {
    const data = await openData({ name: 'imagenet-folder', dataDir: root, imageSize: 32, resizeTo: 36, threads: 1 });
    try {
      expect(data.source).toMatchObject({ dataset: 'imagenet-folder', origin: 'flag', path: root, trainCount: 13, testCount: 6 });
      expect([data.height, data.width, data.channels, data.numClasses]).toEqual([32, 32, 3, 3]);
      const train = data.train(1);
      expect((await train.next(3)).shape).toEqual([3, 32, 32, 3]);
      await train.close();
      for (let pass = 0; pass < 2; pass++) {
        const labels: number[] = [];
        for await (const b of data.testBatches(4)) labels.push(...b.labels);
        expect(labels).toEqual([0, 0, 1, 1, 2, 2]);
      }
    } finally {
      await data.close();
    }
  });

  it('needs a directory', async () => {
    const e = await rejection(openData({ name: 'imagenet-folder', env: {} }));
    expect(e.message).toMatch(/^imagenet-folder: needs --data-dir/);
  });
});
