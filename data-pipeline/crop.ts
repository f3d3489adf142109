/**
 * Crop geometry of the image-folder pipeline, as pure functions shared by the main thread (tests) and the decode
 * worker. All boxes are integer pixel boxes inside the image they refer to.
 */

/** How a training or evaluation image is cut to `imageSize`². */
export type CropMode = 'paper' | 'jitter' | 'center';

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Everything the decode worker needs besides the file. */
export interface CropParams {
  mode: CropMode;
  /** output side (default 224) */
  imageSize: number;
  /** 'paper': side of the square resize; 'center': shorter side after resize (default imageSize·256/224: 256 for 224) */
  resizeTo: number;
  /** 'jitter': range of the crop's area as a fraction of the image (default [0.08, 1]) */
  scale: [number, number];
  /** 'jitter': range of the crop's aspect ratio width/height (default [3/4, 4/3]) */
  ratio: [number, number];
  /** mirror with probability 1/2 ('jitter' default true, 'paper' default false, never for 'center') */
  flip: boolean;
  /** per-channel mean of pixel/255 subtracted from the output */
  mean: [number, number, number];
  /** per-channel standard deviation of pixel/255 the output is divided by */
  std: [number, number, number];
}

/**
 * ImageNet's RGB mean and standard deviation of pixel/255 over its training set (the constants torchvision's
 * Normalize is used with). An image folder's own statistics would take a decoding pass over every training image (an
 * epoch's work) before the first step; the published ImageNet training-set values are used instead.
 */
export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

/** Fills in defaults and checks the parameters. */
export function cropParams(p: Partial<CropParams> & { mode: CropMode }): CropParams {
  const imageSize = p.imageSize ?? 224;
  const resizeTo = p.resizeTo ?? Math.round((imageSize * 256) / 224);
  const out: CropParams = {
    mode: p.mode,
    imageSize,
    resizeTo,
    scale: p.scale ?? [0.08, 1],
    ratio: p.ratio ?? [3 / 4, 4 / 3],
    flip: p.mode === 'center' ? false : (p.flip ?? p.mode === 'jitter'),
    mean: p.mean ?? IMAGENET_MEAN,
    std: p.std ?? IMAGENET_STD,
  };
  if (!['paper', 'jitter', 'center'].includes(out.mode)) throw new RangeError(`unknown crop mode "${out.mode}"`);
  if (!Number.isInteger(imageSize) || imageSize < 1) throw new RangeError(`bad imageSize ${imageSize}`);
  if (!Number.isInteger(resizeTo) || resizeTo < imageSize) throw new RangeError(`resizeTo ${resizeTo} must be an integer >= imageSize ${imageSize}`);
  const [s0, s1] = out.scale;
  if (!(s0 > 0 && s0 <= s1 && s1 <= 1)) throw new RangeError(`bad scale range [${s0}, ${s1}]`);
  const [r0, r1] = out.ratio;
  if (!(r0 > 0 && r0 <= r1)) throw new RangeError(`bad ratio range [${r0}, ${r1}]`);
  return out;
}

/** 'paper': top-left corner of a random `imageSize` crop of the `resizeTo`² image. */
export function paperCropOffset(resizeTo: number, imageSize: number, rng: () => number): { left: number; top: number } {
  const span = resizeTo - imageSize + 1;
  return { left: Math.floor(rng() * span), top: Math.floor(rng() * span) };
}

/**
 * 'jitter': a random box of area fraction in `scale` and aspect ratio (w/h) log-uniform in `ratio` (the
 * random-resized-crop of Szegedy et al. 2015, as in torchvision): ten tries, then a centred box of the clamped ratio.
 */
export function randomResizedCropBox(
  width: number,
  height: number,
  scale: [number, number],
  ratio: [number, number],
  rng: () => number,
): Box {
  const area = width * height;
  const logR0 = Math.log(ratio[0]);
  const logR1 = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (scale[0] + rng() * (scale[1] - scale[0]));
    const aspect = Math.exp(logR0 + rng() * (logR1 - logR0));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { left: Math.floor(rng() * (width - w + 1)), top: Math.floor(rng() * (height - h + 1)), width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < ratio[0]) {
    w = width;
    h = Math.min(height, Math.round(w / ratio[0]));
  } else if (inRatio > ratio[1]) {
    h = height;
    w = Math.min(width, Math.round(h * ratio[1]));
  } else {
    w = width;
    h = height;
  }
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: Math.max(1, w), height: Math.max(1, h) };
}

/** 'center': size after resizing the shorter side to `resizeTo`, and the centred `imageSize`² box in it. */
export function centerCropPlan(width: number, height: number, resizeTo: number, imageSize: number): { resizeWidth: number; resizeHeight: number; box: Box } {
  const s = resizeTo / Math.min(width, height);
  const resizeWidth = Math.max(imageSize, Math.round(width * s));
  const resizeHeight = Math.max(imageSize, Math.round(height * s));
  return {
    resizeWidth,
    resizeHeight,
    box: {
      left: Math.floor((resizeWidth - imageSize) / 2),
      top: Math.floor((resizeHeight - imageSize) / 2),
      width: imageSize,
      height: imageSize,
    },
  };
}
