/** Real image files for the image-folder tests, made with sharp. */
import seedrandom from 'seedrandom';
import sharp from 'sharp';

/** A JPEG of w×h with a colour gradient and a few blocks, so that crops and flips change the pixels. */
export async function jpeg(path: string, w: number, h: number, seed: number): Promise<void> {
  const rng = seedrandom(String(seed));
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      raw[o] = (x * 255) / w;
      raw[o + 1] = (y * 255) / h;
      raw[o + 2] = Math.floor(rng() * 64) + (x < w / 3 ? 150 : 0);
    }
  }
  await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(path);
}
