import { describe, expect, it } from 'vitest';
import { openInMemory } from '../data-pipeline/index';
import { evalBatches, InMemoryStream, padCropFlip, shardIndices } from '../data-pipeline/stream';
import type { InMemoryDataset, Split } from '../data-pipeline/types';

const dims = { height: 2, width: 3, channels: 1, numClasses: 10 };
const D = 6;

/** Example i has every value equal to i and label i % 10, so a batch tells which examples it holds. */
function split(count: number): Split {
  const images = new Float32Array(count * D);
  for (let i = 0; i < count; i++) images.fill(i, i * D, (i + 1) * D);
  return { images, labels: Int32Array.from({ length: count }, (_, i) => i % 10), count };
}

const ids = (images: Float32Array) => Array.from({ length: images.length / D }, (_, k) => images[k * D]);

describe('InMemoryStream', () => {
  it('covers every example exactly once per epoch, in a new order each epoch', async () => {
    const s = new InMemoryStream(split(103), { ...dims, seed: 3 });
    expect(s.epochSize).toBe(103);
    const drawn: number[] = [];
    // Batch size 10 does not divide 103: batches run on into the next epoch.
    while (drawn.length < 3 * 103) drawn.push(...ids((await s.next(10)).images));
    const epochs = [0, 1, 2].map((e) => drawn.slice(e * 103, (e + 1) * 103));
    for (const e of epochs) expect([...e].sort((a, b) => a - b)).toEqual([...Array(103).keys()]);
    expect(epochs[0]).not.toEqual(epochs[1]);
    expect(epochs[0]).not.toEqual([...Array(103).keys()]);
  });

  it('returns fresh arrays with the right shape and labels', async () => {
    const sp = split(20);
    const s = new InMemoryStream(sp, { ...dims, seed: 1 });
    const b = await s.next(8);
    expect(b.shape).toEqual([8, 2, 3, 1]);
    expect(b.images.buffer).not.toBe(sp.images.buffer);
    expect(b.images.byteOffset).toBe(0);
    expect(b.images.buffer.byteLength).toBe(8 * D * 4);
    ids(b.images).forEach((id, k) => expect(b.labels[k]).toBe(id % 10));
  });

  it('is repeatable for a seed and differs between seeds', async () => {
    const draw = async (seed: number) => ids((await new InMemoryStream(split(50), { ...dims, seed }).next(50)).images);
    expect(await draw(5)).toEqual(await draw(5));
    expect(await draw(5)).not.toEqual(await draw(6));
  });

  it('gives disjoint shards that together cover the split', async () => {
    const sp = split(101);
    const seen = new Set<number>();
    let total = 0;
    for (let index = 0; index < 3; index++) {
      const s = new InMemoryStream(sp, { ...dims, seed: 9, shard: { index, count: 3 } });
      const mine = new Set<number>();
      while (mine.size < s.epochSize) for (const id of ids((await s.next(7)).images)) mine.add(id);
      expect(mine.size).toBe(s.epochSize);
      for (const id of mine) {
        expect(id % 3).toBe(index);
        expect(seen.has(id)).toBe(false);
        seen.add(id);
      }
      total += s.epochSize;
    }
    expect(total).toBe(101);
    expect(seen.size).toBe(101);
    expect(() => shardIndices(10, { index: 3, count: 3 })).toThrow(RangeError);
  });

  it('unshuffled: in order, short last batch, then the next pass', async () => {
    const s = new InMemoryStream(split(7), { ...dims, shuffle: false });
    expect(ids((await s.next(3)).images)).toEqual([0, 1, 2]);
    expect(ids((await s.next(3)).images)).toEqual([3, 4, 5]);
    expect(ids((await s.next(3)).images)).toEqual([6]);
    expect(ids((await s.next(3)).images)).toEqual([0, 1, 2]);
  });

  it('applies the augmentation callback with its own seeded generator', async () => {
    const seen: number[] = [];
    const s = new InMemoryStream(split(10), {
      ...dims,
      seed: 2,
      augment: (b, rng) => {
        seen.push(rng());
        return { ...b, images: b.images.map((v) => -v) };
      },
    });
    const b = await s.next(4);
    expect(ids(b.images).every((v) => v <= 0)).toBe(true);
    expect(seen).toHaveLength(1);
  });
});

describe('InMemoryStream state and restore (checkpoints)', () => {
  it('a restored stream continues with exactly the batches the saved one gives next, across epochs and with augmentation', async () => {
    // values vary within an image so that crops and flips change them
    const sp = split(23);
    for (let i = 0; i < sp.images.length; i++) sp.images[i] += (i % D) * 0.01;
    const opts = { ...dims, seed: 'r', augment: padCropFlip({ pad: 1 }) };
    const a = new InMemoryStream(sp, opts);
    for (let i = 0; i < 4; i++) await a.next(7); // 28 examples: into the second epoch
    const saved = structuredClone(a.state());
    const b = new InMemoryStream(sp, opts);
    b.restore(saved);
    for (let i = 0; i < 5; i++) {
      const [x, y] = [await a.next(7), await b.next(7)];
      expect(y.images).toEqual(x.images);
      expect(y.labels).toEqual(x.labels);
    }
    // a fresh stream without the restore gives other batches (the test can fail)
    const c = new InMemoryStream(sp, opts);
    const fresh = await c.next(7);
    b.restore(saved);
    expect((await b.next(7)).images).not.toEqual(fresh.images);
  });

  it('a state from another seed or split is refused, naming the difference', () => {
    const a = new InMemoryStream(split(20), { ...dims, seed: 1 });
    expect(() => new InMemoryStream(split(20), { ...dims, seed: 2 }).restore(a.state())).toThrow(/seed '1', this stream '2'/);
    expect(() => new InMemoryStream(split(21), { ...dims, seed: 1 }).restore(a.state())).toThrow(/epoch of 20 examples, this stream 21/);
  });
});

describe('evalBatches and openInMemory', () => {
  it('walks the test split in order with a short last batch', () => {
    const batches = [...evalBatches(split(10), 4, dims)];
    expect(batches.map((b) => b.shape[0])).toEqual([4, 4, 2]);
    expect(batches.flatMap((b) => ids(b.images))).toEqual([...Array(10).keys()]);
  });

  it('wraps an InMemoryDataset as stream factories', async () => {
    const ds: InMemoryDataset = {
      name: 'fashion-mnist',
      ...dims,
      train: split(30),
      test: split(5),
      source: { dataset: 'fashion-mnist', origin: 'flag', path: '/x', trainCount: 30, testCount: 5 },
    };
    const data = openInMemory(ds);
    expect(data.test).toBe(ds.test);
    const a = await data.train(1).next(30);
    const b = await data.train(1, { index: 1, count: 2 }).next(15);
    expect(new Set(ids(a.images)).size).toBe(30);
    expect(ids(b.images).every((i) => i % 2 === 1)).toBe(true);
    const test: number[] = [];
    for await (const t of data.testBatches(2)) test.push(...ids(t.images));
    expect(test).toEqual([0, 1, 2, 3, 4]);
    await data.close();
  });
});
