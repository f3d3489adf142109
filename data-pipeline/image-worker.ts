/**
 * Piscina worker: decodes one image file with sharp, crops and resizes it as the crop mode says, and returns NHWC
 * float32 pixels (`(v/255 − mean) / std`) whose buffer is transferred to the caller, not copied. The randomness of the crop
 * comes from a per-image seed chosen by the caller, so results do not depend on which worker ran the task.
 */
import { readFile } from 'node:fs/promises';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { centerCropPlan, paperCropOffset, randomResizedCropBox, type Box, type CropParams } from './crop';

// One libvips thread per worker: the pool size is the parallelism.
sharp.concurrency(1);
sharp.cache(false);

export interface DecodeTask {
  file: string;
  /** seed of this image's crop and flip */
  seed: string;
  params: CropParams;
}

export interface DecodeResult {
  /** imageSize*imageSize*3 floats, HWC */
  pixels: Float32Array;
  /** source image size (0 in 'paper' mode, which does not need it) */
  width: number;
  height: number;
  /** the crop box, in the coordinates of the image it was cut from (the resized one for 'paper' and 'center') */
  box: Box;
  flipped: boolean;
}

/** Decodes, crops and normalises one image. Errors carry the decoder's message; the caller names the file. */
export default async function decodeImage(task: DecodeTask): Promise<DecodeResult> {
  const { params: p } = task;
  const S = p.imageSize;
  const rng = seedrandom(task.seed);
  const input = await readFile(task.file);
  // Oriented by its EXIF tag on input; sharp applies extract() before or after resize() as they are called.
  const open = () => sharp(input, { failOn: 'truncated', autoOrient: true });
  let width = 0;
  let height = 0;
  if (p.mode !== 'paper') {
    const meta = await open().metadata();
    width = meta.autoOrient?.width ?? meta.width ?? 0;
    height = meta.autoOrient?.height ?? meta.height ?? 0;
    if (!width || !height) throw new Error('image has no size');
  }
  let box: Box;
  let resized: { width: number; height: number } | undefined;
  if (p.mode === 'paper') {
    box = { ...paperCropOffset(p.resizeTo, S, rng), width: S, height: S };
    resized = { width: p.resizeTo, height: p.resizeTo };
  } else if (p.mode === 'center') {
    const plan = centerCropPlan(width, height, p.resizeTo, S);
    box = plan.box;
    resized = { width: plan.resizeWidth, height: plan.resizeHeight };
  } else {
    box = randomResizedCropBox(width, height, p.scale, p.ratio, rng);
  }
  const flipped = p.flip && rng() < 0.5;
  let img = open();
  if (resized) {
    // sharp mirrors before a post-resize extract: cut the mirrored box so that the output shows `box`, mirrored.
    const left = flipped ? resized.width - box.left - box.width : box.left;
    img = img.resize(resized.width, resized.height, { fit: 'fill' }).extract({ ...box, left });
  } else {
    img = img.extract(box).resize(S, S, { fit: 'fill' });
  }
  if (flipped) img = img.flop();
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.width !== S || info.height !== S || info.channels !== 3) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${S}x${S}x3`);
  }
  const pixels = new Float32Array(S * S * 3);
  const [m0, m1, m2] = p.mean;
  const [s0, s1, s2] = p.std;
  for (let i = 0; i < pixels.length; i += 3) {
    pixels[i] = (data[i] / 255 - m0) / s0;
    pixels[i + 1] = (data[i + 1] / 255 - m1) / s1;
    pixels[i + 2] = (data[i + 2] / 255 - m2) / s2;
  }
  const result: DecodeResult = { pixels, width, height, box, flipped };
  // Transfer the pixel buffer with the result instead of copying it.
  return move({ [transferableSymbol]: pixels.buffer, [valueSymbol]: result } as never) as unknown as DecodeResult;
}
