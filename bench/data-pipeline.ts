/**
 * Data-pipeline throughput: the 'jitter' image pipeline at 224×224 (sharp on a piscina pool of 1 and 2 workers) over
 * 64 generated 500×375 JPEGs, and the in-memory Fashion-MNIST stream.
 *
 *   npx tsx bench/data-pipeline.ts
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { loadIdxDataset } from '../data-pipeline/idx';
import { ImageDecodePool, ImageFolderStream, openImageFolder } from '../data-pipeline/image-folder';
import { InMemoryStream } from '../data-pipeline/stream';

/** Writes `count` JPEGs of width×height (noise plus a few random shapes) in `classes` class folders. */
export async function writeSyntheticJpegs(dir: string, count: number, width = 500, height = 375, classes = 4, seed = 1): Promise<void> {
  const rng = seedrandom(String(seed));
  for (let i = 0; i < count; i++) {
    const cls = join(dir, `class${i % classes}`);
    await mkdir(cls, { recursive: true });
    const noise = Buffer.alloc(width * height * 3);
    let state = (rng() * 0xffffffff) >>> 0 || 1;
    for (let k = 0; k < noise.length; k++) {
      // xorshift32: seedrandom per byte would dominate the set-up time
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      noise[k] = state & 0xff;
    }
    const shapes: string[] = [];
    for (let s = 0; s < 6; s++) {
      const colour = `rgb(${Math.floor(rng() * 256)},${Math.floor(rng() * 256)},${Math.floor(rng() * 256)})`;
      const x = Math.floor(rng() * width);
      const y = Math.floor(rng() * height);
      const r = 10 + Math.floor(rng() * 80);
      shapes.push(
        s % 2 === 0
          ? `<circle cx="${x}" cy="${y}" r="${r}" fill="${colour}"/>`
          : `<rect x="${x}" y="${y}" width="${r * 2}" height="${r}" fill="${colour}"/>`,
      );
    }
    const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes.join('')}</svg>`);
    await sharp(noise, { raw: { width, height, channels: 3 } })
      .composite([{ input: svg }])
      .jpeg({ quality: 90 })
      .toFile(join(cls, `img${String(i).padStart(3, '0')}.jpg`));
  }
}

/** images/s of a stream over `batches` batches, after one warm-up batch (worker start-up). */
async function timeStream(stream: { next(b: number): Promise<unknown> }, batchSize: number, batches: number): Promise<number> {
  await stream.next(batchSize);
  const t0 = performance.now();
  for (let i = 0; i < batches; i++) await stream.next(batchSize);
  return (batches * batchSize) / ((performance.now() - t0) / 1000);
}

export async function benchDataPipeline(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const dir = await mkdtemp(join(tmpdir(), 'dkfac-bench-data-'));
  try {
    await writeSyntheticJpegs(dir, 64);
    const folder = await openImageFolder(dir, { valFraction: 0 });
    const sizes = await Promise.all(folder.train.files.map(async (f) => (await stat(f)).size));
    out.jpeg_avg_kb = sizes.reduce((a, b) => a + b, 0) / sizes.length / 1024;
    for (const threads of [1, 2]) {
      const pool = new ImageDecodePool({ threads });
      const stream = new ImageFolderStream(folder.train, { numClasses: folder.classes.length, mode: 'jitter', imageSize: 224, pool, seed: 1, prefetch: 2 });
      out[`jitter224_pool${threads}_images_per_s`] = await timeStream(stream, 16, 12);
      out[`jitter224_pool${threads}_wait_s`] = stream.waitSeconds;
      await stream.close();
      await pool.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const fm = await loadIdxDataset('fashion-mnist');
  const s = new InMemoryStream(fm.train, { height: 28, width: 28, channels: 1, numClasses: 10, seed: 1 });
  out.fashion_mnist_stream_images_per_s = await timeStream(s, 256, 100);
  const rows: Array<[string, string]> = [
    ['jitter 224², 500×375 JPEG, pool 1', out.jitter224_pool1_images_per_s.toFixed(0)],
    ['jitter 224², 500×375 JPEG, pool 2', out.jitter224_pool2_images_per_s.toFixed(0)],
    [`in-memory Fashion-MNIST stream (${fm.source.origin}), batch 256`, out.fashion_mnist_stream_images_per_s.toFixed(0)],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`${'data pipeline'.padEnd(w)}  images/s`);
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v.padStart(8)}`);
  console.log(`(64 generated JPEGs, ${out.jpeg_avg_kb.toFixed(0)} KB on average; batch 16, 2 batches prefetched)`);
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await benchDataPipeline();
}
