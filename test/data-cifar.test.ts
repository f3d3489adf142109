import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CIFAR_RECORD,
  CIFAR_TARBALL,
  cifarAugment,
  encodeCifarBatch,
  extractCifarTarball,
  loadCifar10,
  parseCifarBatch,
  tarGzEntries,
} from '../data-pipeline/cifar10';
import { DataError, type Batch } from '../data-pipeline/types';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'dkfac-cifar-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A pixel value that differs for every (record, y, x, channel) up to mod 256: catches any transposition. */
const pattern = (r: number, y: number, x: number, c: number) => (r * 97 + y * 31 + x * 7 + c * 101 + ((x * y) % 5)) & 255;

/** Writes raw CHW records the way the official files lay them out (label, R plane, G plane, B plane). */
function chwRecords(count: number, first: number, labelOf: (r: number) => number): Uint8Array {
  const out = new Uint8Array(count * CIFAR_RECORD);
  for (let k = 0; k < count; k++) {
    const r = first + k;
    const rec = k * CIFAR_RECORD;
    out[rec] = labelOf(r);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) out[rec + 1 + c * 1024 + y * 32 + x] = pattern(r, y, x, c);
  }
  return out;
}

async function writeCifarDir(dir: string, perFile = 2): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 1; i <= 5; i++) await writeFile(join(dir, `data_batch_${i}.bin`), chwRecords(perFile, (i - 1) * perFile, (r) => r % 10));
  await writeFile(join(dir, 'test_batch.bin'), chwRecords(3, 100, (r) => (r * 3) % 10));
}

const isolated = { env: { XDG_CACHE_HOME: '/nonexistent-xdg', HOME: '/nonexistent-home' }, debianRoot: null };

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<DataError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error('expected a DataError');
}

describe('CIFAR-10 binary reader', () => {
  it('reads records back exactly, as NHWC', () => {
    const recs = chwRecords(3, 0, (r) => r + 4);
    const parsed = parseCifarBatch(recs, 'x.bin');
    expect(parsed.count).toBe(3);
    expect(Array.from(parsed.labels)).toEqual([4, 5, 6]);
    for (let r = 0; r < 3; r++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          for (let c = 0; c < 3; c++) expect(parsed.pixels[((r * 32 + y) * 32 + x) * 3 + c]).toBe(pattern(r, y, x, c));
        }
      }
    }
    expect(encodeCifarBatch(parsed.pixels, parsed.labels)).toEqual(recs);
  });

  it('loads a directory: six files in order, per-channel train mean and std, checksums', async () => {
    const dir = join(tmp, 'ok');
    await writeCifarDir(dir);
    const ds = await loadCifar10({ ...isolated, dataDir: dir });
    expect(ds.source.origin).toBe('flag');
    expect([ds.train.count, ds.test.count, ds.height, ds.width, ds.channels]).toEqual([10, 3, 32, 32, 3]);
    expect(Array.from(ds.train.labels)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const mean = [0, 1, 2].map((c) => {
      let s = 0;
      for (let r = 0; r < 10; r++) for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) s += pattern(r, y, x, c);
      return s / (10 * 1024) / 255;
    });
    // population standard deviation of pixel/255 per channel over the training records, computed here directly
    const std = [0, 1, 2].map((c) => {
      let s = 0;
      for (let r = 0; r < 10; r++) for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) s += (pattern(r, y, x, c) / 255 - mean[c]) ** 2;
      return Math.sqrt(s / (10 * 1024));
    });
    ds.mean!.forEach((m, c) => expect(m).toBeCloseTo(mean[c], 10));
    ds.std!.forEach((v, c) => expect(v).toBeCloseTo(std[c], 10));
    expect(ds.source.std).toEqual(ds.std);
    // Record 7 is the second record of data_batch_4.bin; check a non-symmetric position in every channel.
    for (const [y, x] of [[0, 1], [1, 0], [5, 30], [31, 2]]) {
      for (let c = 0; c < 3; c++) {
        expect(ds.train.images[((7 * 32 + y) * 32 + x) * 3 + c]).toBeCloseTo((pattern(7, y, x, c) / 255 - mean[c]) / std[c], 5);
        expect(ds.test.images[((1 * 32 + y) * 32 + x) * 3 + c]).toBeCloseTo((pattern(101, y, x, c) / 255 - mean[c]) / std[c], 5);
      }
    }
    expect(Object.keys(ds.source.checksums!).sort()).toEqual([1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`).concat('test_batch.bin').sort());
  });

  it('finds the cifar-10-batches-bin sub-folder of the given directory', async () => {
    const root = join(tmp, 'parent');
    await writeCifarDir(join(root, 'cifar-10-batches-bin'), 1);
    const ds = await loadCifar10({ ...isolated, dataDir: root });
    expect(ds.source.path).toBe(join(root, 'cifar-10-batches-bin'));
  });

  it('rejects a length that is not a multiple of 3073, naming the file', async () => {
    const dir = join(tmp, 'badlen');
    await writeCifarDir(dir);
    const file = join(dir, 'data_batch_3.bin');
    await writeFile(file, chwRecords(2, 0, () => 1).subarray(0, 2 * CIFAR_RECORD - 5));
    const e = await rejection(loadCifar10({ ...isolated, dataDir: dir }));
    expect(e.message).toBe(`${file}: length ${2 * CIFAR_RECORD - 5} is not a positive multiple of the 3073-byte CIFAR-10 record`);
  });

  it('rejects a label above 9, naming the file and the record', async () => {
    const dir = join(tmp, 'badlabel');
    await writeCifarDir(dir);
    const file = join(dir, 'test_batch.bin');
    await writeFile(file, chwRecords(3, 0, (r) => (r === 2 ? 10 : 1)));
    const e = await rejection(loadCifar10({ ...isolated, dataDir: dir }));
    expect(e.message).toBe(`${file}: record 2: label 10 out of range [0, 10)`);
  });

  it('rejects a missing batch file, naming it and the directory', async () => {
    const dir = join(tmp, 'missing');
    await writeCifarDir(dir);
    await rm(join(dir, 'data_batch_4.bin'));
    const e = await rejection(loadCifar10({ ...isolated, dataDir: dir }));
    expect(e.message).toContain(`${dir}: missing data_batch_4.bin`);
  });

  it('reports where it looked when nothing is found', async () => {
    const e = await rejection(loadCifar10(isolated));
    expect(e.message).toMatch(/^cifar10: dataset not found .*nonexistent-xdg\/dkfac\/cifar10.*--download/);
  });
});

/** A minimal ustar writer for the tests (long paths use the prefix field). */
function tarOf(entries: Array<{ name: string; data: Uint8Array; type?: string }>): Uint8Array {
  const blocks: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const e of entries) {
    const h = new Uint8Array(512);
    let name = e.name;
    let prefix = '';
    if (name.length > 100) {
      const cut = name.lastIndexOf('/', name.length - 1 - 0);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    }
    const put = (s: string, off: number) => h.set(enc.encode(s), off);
    put(name, 0);
    put('0000644\0', 100);
    put('0000000\0', 108);
    put('0000000\0', 116);
    put(e.data.length.toString(8).padStart(11, '0') + '\0', 124);
    put('00000000000\0', 136);
    put('        ', 148);
    put(e.type ?? '0', 156);
    put('ustar\0', 257);
    put('00', 263);
    put(prefix, 345);
    const sum = h.reduce((a, b) => a + b, 0);
    put(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h);
    const padded = new Uint8Array(Math.ceil(e.data.length / 512) * 512);
    padded.set(e.data);
    blocks.push(padded);
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((a, b) => a + b.length, 0));
  let off = 0;
  for (const b of blocks) {
    out.set(b, off);
    off += b.length;
  }
  return out;
}

async function entriesOf(tgz: Uint8Array, file: string) {
  const out: { name: string; type: string; data: Buffer }[] = [];
  for await (const e of tarGzEntries(tgz, file)) out.push(e);
  return out;
}

describe('tarball reading (tar-stream) and extraction', () => {
  it('reads ustar entries, including prefix-split long paths', async () => {
    const long = `${'d'.repeat(80)}/${'e'.repeat(40)}/file.bin`;
    const tgz = gzipSync(
      tarOf([
        { name: 'dir/', data: new Uint8Array(0), type: '5' },
        { name: 'dir/a.txt', data: new TextEncoder().encode('hello') },
        { name: long, data: new Uint8Array(700).fill(7) },
      ]),
    );
    const entries = await entriesOf(tgz, 't.tar.gz');
    expect(entries.map((e) => [e.name, e.type, e.data.length])).toEqual([
      ['dir/', 'directory', 0],
      ['dir/a.txt', 'file', 5],
      [long, 'file', 700],
    ]);
    expect(entries[1].data.toString()).toBe('hello');
    expect(entries[2].data.every((b) => b === 7)).toBe(true);
  });

  it('rejects a corrupt header, a truncated archive and corrupt gzip, naming the archive', async () => {
    const tar = tarOf([{ name: 'a', data: new Uint8Array(3) }]);
    tar[150] ^= 0x07; // the checksum field
    expect((await rejection(entriesOf(gzipSync(tar), 'bad.tar.gz'))).message).toMatch(/^bad\.tar\.gz: corrupt tar archive/);
    const whole = tarOf([{ name: 'a', data: new Uint8Array(2000) }]);
    expect((await rejection(entriesOf(gzipSync(whole.subarray(0, 1024)), 'short.tar.gz'))).message).toMatch(/^short\.tar\.gz: corrupt tar archive/);
    const gz = gzipSync(whole);
    expect((await rejection(entriesOf(gz.subarray(0, gz.length - 40), 'cut.tar.gz'))).message).toMatch(/^cut\.tar\.gz: corrupt gzip data/);
  });

  it('extracts the official layout from a .tar.gz', async () => {
    const files = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`).concat('test_batch.bin');
    const content = (i: number) => chwRecords(1, i, () => i);
    const tgz = gzipSync(
      tarOf([
        { name: 'cifar-10-batches-bin/', data: new Uint8Array(0), type: '5' },
        ...files.map((f, i) => ({ name: `cifar-10-batches-bin/${f}`, data: content(i) })),
        { name: 'cifar-10-batches-bin/../../evil.bin', data: new Uint8Array(1) },
      ]),
    );
    const out = join(tmp, 'extract', 'cifar-10-batches-bin');
    const written = await extractCifarTarball(tgz, 'c.tar.gz', out);
    expect(written.sort()).toEqual([...files].sort());
    for (let i = 0; i < files.length; i++) expect(new Uint8Array(await readFile(join(out, files[i])))).toEqual(content(i));
    const ds = await loadCifar10({ ...isolated, dataDir: join(tmp, 'extract') });
    expect([ds.train.count, ds.test.count]).toEqual([5, 1]);
  });

  it('downloads the tarball (md5 checked) and extracts it into the cache only with download: true', async () => {
    const files = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`).concat('test_batch.bin');
    const tgz = gzipSync(tarOf(files.map((f, i) => ({ name: `cifar-10-batches-bin/${f}`, data: chwRecords(2, i, () => i) }))));
    const server = createServer((req, res) => {
      if (req.url === '/cifar-10-binary.tar.gz') res.end(tgz);
      else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const saved = { ...CIFAR_TARBALL };
    CIFAR_TARBALL.urls = [`http://127.0.0.1:${(server.address() as AddressInfo).port}/cifar-10-binary.tar.gz`];
    CIFAR_TARBALL.md5 = createHash('md5').update(tgz).digest('hex');
    try {
      const opts = { env: { XDG_CACHE_HOME: join(tmp, 'xdg') }, debianRoot: null, log: () => {} };
      const ds = await loadCifar10({ ...opts, download: true });
      expect(ds.source.origin).toBe('download');
      expect(ds.source.path).toBe(join(tmp, 'xdg', 'dkfac', 'cifar10', 'cifar-10-batches-bin'));
      expect([ds.train.count, ds.test.count]).toEqual([10, 2]);
      expect((await loadCifar10(opts)).source.origin).toBe('cache');
      CIFAR_TARBALL.md5 = '0'.repeat(32);
      const e = await rejection(loadCifar10({ ...opts, env: { XDG_CACHE_HOME: join(tmp, 'xdg2') }, download: true }));
      expect(e.message).toContain('md5 mismatch');
    } finally {
      Object.assign(CIFAR_TARBALL, saved);
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('reads an archive made by the system tar, when there is one', async (ctx) => {
    const dir = join(tmp, 'systar');
    await mkdir(join(dir, 'src', 'cifar-10-batches-bin'), { recursive: true });
    await writeFile(join(dir, 'src', 'cifar-10-batches-bin', 'test_batch.bin'), chwRecords(1, 0, () => 3));
    try {
      execFileSync('tar', ['-czf', join(dir, 'a.tar.gz'), '-C', join(dir, 'src'), 'cifar-10-batches-bin']);
    } catch {
      ctx.skip();
    }
    const entries = await entriesOf(await readFile(join(dir, 'a.tar.gz')), 'a.tar.gz');
    const f = entries.find((e) => e.name.endsWith('test_batch.bin'))!;
    expect(f.data.length).toBe(CIFAR_RECORD);
    expect(f.data[0]).toBe(3);
  });
});

describe('CIFAR augmentation', () => {
  /** A batch whose values encode their position: 1 + ((b*H + y)*W + x)*C + c. */
  function positional(n: number, h: number, w: number, c: number): Batch {
    const images = Float32Array.from({ length: n * h * w * c }, (_, i) => i + 1);
    return { images, labels: new Int32Array(n), shape: [n, h, w, c] };
  }

  it('is the identity with no padding and no flip', () => {
    const b = positional(2, 5, 6, 3);
    const out = cifarAugment({ pad: 0, flip: false })(b, seedrandom('1'));
    expect(out.images).toEqual(b.images);
  });

  it('shifts within the padding, fills with zeros, mirrors, and is repeatable for a seed', () => {
    const [n, h, w, c] = [16, 8, 8, 3];
    const b = positional(n, h, w, c);
    const aug = cifarAugment({ pad: 4, flip: true });
    const out = aug(b, seedrandom('seed'));
    expect(aug(b, seedrandom('seed')).images).toEqual(out.images);
    expect(aug(b, seedrandom('other')).images).not.toEqual(out.images);
    let flips = 0;
    let shifted = 0;
    for (let i = 0; i < n; i++) {
      // Recover (dy, dx, mirror) from a non-zero output pixel and check every pixel against it.
      const at = (y: number, x: number, ch: number) => out.images[((i * h + y) * w + x) * c + ch];
      let found: [number, number, boolean] | undefined;
      for (let y = 0; y < h && !found; y++) {
        for (let x = 0; x < w && !found; x++) {
          const v = at(y, x, 0);
          if (v === 0) continue;
          const p = (v - 1) / c - i * h * w;
          const sy = Math.floor(p / w);
          const sx = p % w;
          for (const mirror of [false, true]) {
            const dx = sx - (mirror ? w - 1 - x : x);
            if (Math.abs(dx) <= 4 && Math.abs(sy - y) <= 4) {
              const ok = [...Array(h).keys()].every((yy) =>
                [...Array(w).keys()].every((xx) => {
                  const sy2 = yy + (sy - y);
                  const sx2 = (mirror ? w - 1 - xx : xx) + dx;
                  const expected = sy2 < 0 || sy2 >= h || sx2 < 0 || sx2 >= w ? 0 : ((i * h + sy2) * w + sx2) * c + 2 + 1;
                  return at(yy, xx, 2) === expected;
                }),
              );
              if (ok) found = [sy - y, dx, mirror];
            }
          }
        }
      }
      expect(found).toBeDefined();
      if (found![2]) flips++;
      if (found![0] !== 0 || found![1] !== 0) shifted++;
    }
    expect(flips).toBeGreaterThan(0);
    expect(flips).toBeLessThan(n);
    expect(shifted).toBeGreaterThan(n / 2);
  });
});
