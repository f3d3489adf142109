/**
 * The calibrated cost clock: this process's CPU time, rescaled by how fast this machine runs a fixed reference
 * workload at the moment.
 *
 * Why: a VM's speed drifts. On the 2-vCPU development machine the same run's CPU seconds per update varied by ±20 %
 * across seeds run minutes apart with nothing else running (the wall clock drifts with it, so it is the machine, not
 * the measurement), which put ±25 % on every time ratio between runs. Timing a small fixed workload (a convolution, its
 * filter gradient, a matrix product and an elementwise pass through the same engine) between steps and dividing by it
 * removes most of that drift: over 150 s of one process, alternating the reference and a GoogLeNet-quick gradient
 * shard, the shard's CPU time per 20 s window ranged over 27.2–34.5 ms while its ratio to the reference ranged over
 * 11.8–13.0 (scratch measurement of session 5, README "Simulated clock").
 *
 * Units: a cost is reported in milliseconds *on the nominal machine*, the one on which the reference takes
 * `NOMINAL_REFERENCE_MS[engine]`: measured ms × nominal ÷ the recent reference time (the median of the last
 * `window` reference timings, each the faster of two runs, so that one interrupted timing moves nothing). The nominal
 * values are this development machine's quiet reference times, so its quiet runs read about as on the 'cpu' clock.
 *
 * Calibrations happen between steps (ParameterServer.step calls `calibrate` before its compute phase), never inside a
 * measured role, and the reference's own time is on no clock.
 */
import * as tf from '@tensorflow/tfjs';
import { currentBackend } from '../backend';
import { type CostClock, cpuMs } from './roles';

/**
 * The reference workload's time (ms of CPU) on the development machine, quiet, one engine thread, between training
 * steps, by engine (alone in a loop it is faster: native 2.0, wasm 8.4). Other engines use native's value: their
 * absolute simulated seconds then mean nothing in particular, their ratios still hold.
 */
export const NOMINAL_REFERENCE_MS: Record<string, number> = { native: 2.4, wasm: 9 };

const X_SHAPE = [8, 16, 16, 32] as const;
const W_SHAPE = [3, 3, 32, 32] as const;
const A_SHAPE = [256, 512] as const;
const B_SHAPE = [512, 256] as const;
const E_SIZE = 1 << 18;

let inputs: { x: Float32Array; w: Float32Array; a: Float32Array; b: Float32Array; e: Float32Array } | undefined;

/** Deterministic values in [−1, 1] (the same on every machine and every call). */
function fill(n: number, phase: number): Float32Array {
  return new Float32Array(n).map((_, i) => Math.sin(i * 0.618 + phase));
}

/**
 * Runs the reference workload once and returns its cost on `clock` (ms). Its tensors are made before and freed after
 * the timed part; nothing stays allocated.
 */
export function timeReference(clock: CostClock = cpuMs): number {
  inputs ??= {
    x: fill(X_SHAPE.reduce((p: number, d) => p * d, 1), 0.1),
    w: fill(W_SHAPE.reduce((p: number, d) => p * d, 1), 0.2),
    a: fill(A_SHAPE[0] * A_SHAPE[1], 0.3),
    b: fill(B_SHAPE[0] * B_SHAPE[1], 0.4),
    e: fill(E_SIZE, 0.5),
  };
  const x = tf.tensor4d(inputs.x, [...X_SHAPE]);
  const w = tf.tensor4d(inputs.w, [...W_SHAPE]);
  const a = tf.tensor2d(inputs.a, [...A_SHAPE]);
  const b = tf.tensor2d(inputs.b, [...B_SHAPE]);
  const e = tf.tensor1d(inputs.e);
  try {
    const t0 = clock();
    tf.tidy(() => {
      const y = tf.conv2d(x, w, 1, 'same');
      const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: y }, { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', filterShape: [...W_SHAPE] }) as tf.Tensor;
      const m = tf.matMul(a, b);
      const r = tf.relu(tf.add(e, 0.5));
      // read back: the timed work is finished (and a lazy engine could not skip it)
      dw.dataSync();
      m.dataSync();
      r.dataSync();
    });
    return clock() - t0;
  } finally {
    tf.dispose([x, w, a, b, e]);
  }
}

export interface CalibrationSummary {
  /** calibrations done */
  count: number;
  /** the nominal reference time the costs are scaled to (ms) and the engine it is the value of */
  nominalMs: number;
  engine: string;
  /** the reference times measured (ms): median, fastest, slowest */
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** the scale applied at the last calibration (nominal ÷ recent median) */
  lastScale: number;
}

/**
 * A CostClock (call `now()`, as roles do with cpuMs) whose milliseconds are CPU milliseconds × the current scale,
 * integrated: the scale changes only at `calibrate()`, and a difference of two readings between calibrations is the
 * measured CPU time × that scale.
 */
export class CalibratedClock {
  private readonly clock: CostClock;
  private readonly window: number;
  private raw: number;
  private acc = 0;
  private scale = 1;
  /** every reference timing so far; the scale is the median of the last `window` */
  private readonly all: number[] = [];
  readonly nominalMs: number;
  readonly engine: string;

  constructor(
    private readonly opts: {
      /** the clock measured costs come from (CPU time by default) */
      clock?: CostClock;
      /** one reference timing, ms (timeReference by default) */
      reference?: () => number;
      /** nominal reference time; by default NOMINAL_REFERENCE_MS of the active engine */
      nominalMs?: number;
      /** reference timings the scale is the median of */
      window?: number;
    } = {},
  ) {
    this.clock = opts.clock ?? cpuMs;
    this.window = opts.window ?? 15;
    this.engine = currentBackend()?.name ?? 'unknown';
    this.nominalMs = opts.nominalMs ?? NOMINAL_REFERENCE_MS[this.engine] ?? NOMINAL_REFERENCE_MS.native;
    if (!(this.nominalMs > 0)) throw new Error(`calibrated clock: the nominal reference time must be positive, not ${this.nominalMs}`);
    this.raw = this.clock();
  }

  /** The calibrated reading (ms on the nominal machine). */
  readonly now: CostClock = () => {
    const r = this.clock();
    this.acc += (r - this.raw) * this.scale;
    this.raw = r;
    return this.acc;
  };

  /** The reference timings the current scale is the median of. */
  get recent(): number[] {
    return this.all.slice(-this.window);
  }

  /** Times the reference (the faster of two runs) and updates the scale. Call between measured work only. */
  calibrate(): number {
    this.now(); // what was measured so far keeps the old scale
    const ref = this.opts.reference ?? (() => timeReference(this.clock));
    const t = Math.min(ref(), ref());
    if (!(t > 0) || !Number.isFinite(t)) throw new Error(`calibrated clock: the reference workload timed ${t} ms`);
    this.all.push(t);
    this.scale = this.nominalMs / median(this.recent);
    // the reference's own time is on no clock
    this.raw = this.clock();
    return this.scale;
  }

  summary(): CalibrationSummary | undefined {
    if (!this.all.length) return undefined;
    return {
      count: this.all.length,
      nominalMs: this.nominalMs,
      engine: this.engine,
      medianMs: median(this.all),
      minMs: Math.min(...this.all),
      maxMs: Math.max(...this.all),
      lastScale: this.scale,
    };
  }

  /** For checkpoints: the reference timings so far (a resumed run starts from the same scale). */
  state(): { all: number[] } {
    return { all: this.all.slice() };
  }

  restore(s: ReturnType<CalibratedClock['state']>): void {
    this.all.splice(0, this.all.length, ...s.all);
    this.scale = this.all.length ? this.nominalMs / median(this.recent) : 1;
    this.raw = this.clock();
  }
}

/** The median (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
