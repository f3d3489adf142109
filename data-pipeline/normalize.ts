/**
 * The input normalisation every model gets, in one place: per channel, x = (pixel/255 − mean) / std, the mean and the
 * standard deviation taken over the training images a run uses (after any training subset; never the test split),
 * as torchvision's `Normalize` is used with dataset statistics. The test split is normalised with the training
 * statistics. No Node modules (the browser demo reads the embedded subset with this code too).
 *
 * The standard deviation is the population one (divisor N) over every pixel of every training image of the channel,
 * computed in float64; a channel with no spread (std 0) is left unscaled.
 */

/** Per-channel mean and standard deviation of pixel/255. */
export interface Normalization {
  mean: number[];
  std: number[];
}

/** Mean and standard deviation of pixel/255 per channel over interleaved bytes (HWC order, `channels` per pixel). */
export function channelStats(pixels: Uint8Array, channels: number): Normalization {
  const sum = new Float64Array(channels);
  const sq = new Float64Array(channels);
  for (let i = 0; i < pixels.length; i += channels) {
    for (let c = 0; c < channels; c++) {
      const v = pixels[i + c]!;
      sum[c]! += v;
      sq[c]! += v * v;
    }
  }
  const per = pixels.length / channels;
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < channels; c++) {
    const m = per > 0 ? sum[c]! / per : 0;
    const variance = per > 0 ? Math.max(0, sq[c]! / per - m * m) : 0;
    mean.push(m / 255);
    std.push(Math.sqrt(variance) / 255);
  }
  return { mean, std };
}

/** Interleaved bytes as floats (pixel/255 − mean[c]) / std[c]. */
export function normalizePixels(pixels: Uint8Array, norm: Normalization): Float32Array {
  const c = norm.mean.length;
  const scale = norm.std.map((s) => (s > 0 ? 1 / s : 1));
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i += c) {
    for (let k = 0; k < c; k++) out[i + k] = (pixels[i + k]! / 255 - norm.mean[k]!) * scale[k]!;
  }
  return out;
}

/** The description of a training subset for the sidecar: 'first 12000 of 60000 training examples'. */
export function subsetText(used: number, total: number): string | undefined {
  return used < total ? `first ${used} of ${total} training examples` : undefined;
}
