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

/**
 * How sensitive decoding is to damaged pixel data (sharp's failOn): 'error' stops on truncation and on the decoder's
 * errors (a file cut short, a broken stream), and decodes through what libjpeg/libpng only warn about (a few stray
 * bytes before a marker, as some real ImageNet files have). libvips' warnings are never printed (sharp hands them to
 * its 'warning' event and to NODE_DEBUG=sharp only).
 *
 * sharp keeps libvips' warnings and error text in process-wide buffers: while several workers decode at once, one
 * call's message may carry another's lines, or lose its own. Pass or fail is always the call's own; the pool reruns a
 * failed task alone to get its clean message (image-folder.ts), and verifyImage's warnings are its own only alone.
 */
export const FAIL_ON = 'error' as const;

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

/** The file's bytes; a read failure says what went wrong without repeating the path (the caller names the file). */
async function readInput(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const what = err.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '');
    throw new Error(`cannot read file: ${what}${err.code && !what.includes(err.code) ? ` (${err.code})` : ''}`);
  }
}

/**
 * A decoder failure as one line: libvips' messages (one a line, often repeated as loaders retry) each once, without
 * trailing separators.
 */
function decodeProblem(e: unknown): Error {
  const kept: string[] = [];
  for (const raw of String((e as Error)?.message ?? e).split('\n')) {
    const line = raw.trim().replace(/[\s:]+$/, '');
    if (line && !kept.some((k) => k.endsWith(line))) kept.push(line);
  }
  return new Error(`cannot decode image: ${kept.join('; ') || 'unknown decoder error'}`);
}

/** Opens `input` with sharp (at FAIL_ON unless told), collecting libvips' warnings into `warnings`. */
function opener(input: Buffer, warnings: string[], failOn: 'error' | 'warning' = FAIL_ON): () => ReturnType<typeof sharp> {
  // Oriented by its EXIF tag on input; sharp applies extract() before or after resize() as they are called.
  return () =>
    sharp(input, { failOn, autoOrient: true }).on('warning', (w: string) => {
      for (const line of String(w).split('\n')) if (line.trim()) warnings.push(line.trim());
    });
}

/** A verify task: `strict` fails on libvips' warnings too (failOn 'warning'), else at the training level. */
export interface VerifyTask {
  file: string;
  strict?: boolean;
}

/** What `verifyImage` found in a readable image. */
export interface VerifyResult {
  width: number;
  height: number;
  /** libvips' warnings (its own only when no other decode ran at the same time) */
  warnings: string[];
}

/**
 * Reads and fully decodes one image (every pixel, at its own size) at the training decoder's sensitivity, or
 * `strict`ly: what `npm run data -- verify` runs on every file. Throws with the problem as decodeImage would.
 */
export async function verifyImage(task: VerifyTask): Promise<VerifyResult> {
  const input = await readInput(task.file);
  const warnings: string[] = [];
  const open = opener(input, warnings, task.strict ? 'warning' : FAIL_ON);
  try {
    const meta = await open().metadata();
    const width = meta.autoOrient?.width ?? meta.width ?? 0;
    const height = meta.autoOrient?.height ?? meta.height ?? 0;
    if (!width || !height) throw new Error('image has no size');
    const { info } = await open().removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { width, height, warnings };
  } catch (e) {
    throw decodeProblem(e);
  }
}

/**
 * Decodes, crops and normalises one image. Errors say what went wrong ('cannot read file: …', 'cannot decode
 * image: …'); the caller names the file.
 */
export default async function decodeImage(task: DecodeTask): Promise<DecodeResult> {
  const input = await readInput(task.file);
  try {
    return await decodeInput(task, input);
  } catch (e) {
    throw decodeProblem(e);
  }
}

async function decodeInput(task: DecodeTask, input: Buffer): Promise<DecodeResult> {
  const { params: p } = task;
  const S = p.imageSize;
  const rng = seedrandom(task.seed);
  const open = opener(input, []);
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
