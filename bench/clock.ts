/**
 * The calibrated cost clock's drift removal (src/distributed/calibration.ts), measured: one process alternates the
 * reference workload (the faster of two runs, as the clock takes it) and a gradient shard of Figure 3's quick
 * GoogLeNet (batch 32, one engine thread), both timed by CPU time, for DKFAC_BENCH_CLOCK_S seconds (default 90). The
 * run is cut into 6 windows; per window, the shard's median CPU time and its median calibrated time (the shard's CPU
 * time × nominal ÷ the median of the last 15 reference timings, exactly the clock's rule). The spread (slowest ÷
 * fastest window) of each is what the calibration removes: a spread of 1.00 would be a drift-free clock.
 */
import { initBackend, setEngineThreads } from '../src/backend';
import { CalibratedClock, median } from '../src/distributed/calibration';
import { cpuMs } from '../src/distributed/roles';
import { benchTrainer } from './kfac';
import { QUICK_MODELS } from './models';

export async function benchClock(seconds = Number(process.env.DKFAC_BENCH_CLOCK_S ?? 90)) {
  const backend = await initBackend();
  const restore = setEngineThreads(1);
  const m = QUICK_MODELS.find((q) => q.model.arch === 'googlenet')!;
  const { trainer, model, batch } = benchTrainer(m, 32, 10, 'sgd', { kind: 'sgd', lr: 0.01 });
  const clock = new CalibratedClock();
  const raw: number[] = [];
  const cal: number[] = [];
  try {
    for (let i = 0; i < 5; i++) trainer.trainStep(batch); // warm-up
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      clock.calibrate();
      const r0 = cpuMs();
      const c0 = clock.now();
      trainer.trainStep(batch);
      cal.push(clock.now() - c0);
      raw.push(cpuMs() - r0);
    }
  } finally {
    trainer.dispose();
    model.dispose();
    if (restore !== undefined) setEngineThreads(restore);
  }
  const W = 6;
  const per = Math.floor(raw.length / W);
  const rows: Record<string, string | number>[] = [];
  const rawMed: number[] = [];
  const calMed: number[] = [];
  for (let w = 0; w < W; w++) {
    const r = median(raw.slice(w * per, (w + 1) * per));
    const c = median(cal.slice(w * per, (w + 1) * per));
    rawMed.push(r);
    calMed.push(c);
    rows.push({ window: w + 1, shards: per, 'CPU ms (median)': r.toFixed(2), 'calibrated ms (median)': c.toFixed(2) });
  }
  const spread = (xs: number[]) => Math.max(...xs) / Math.min(...xs);
  const s = clock.summary()!;
  console.log(
    `\n## Calibrated cost clock (backend ${backend.name}; ${m.name} gradient shard, batch 32, one engine thread; ${raw.length} shards in ${seconds} s; reference median ${s.medianMs.toFixed(2)} ms, range ${s.minMs.toFixed(2)}–${s.maxMs.toFixed(2)}, nominal ${s.nominalMs} ms)`,
  );
  console.table(rows);
  console.log(`spread over windows (slowest ÷ fastest): CPU time ${spread(rawMed).toFixed(3)}, calibrated ${spread(calMed).toFixed(3)}`);
  return { rawSpread: spread(rawMed), calibratedSpread: spread(calMed) };
}
