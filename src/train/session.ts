/**
 * One run, whichever loop trains it. runTraining (single process) and runDistributedTraining (parameter server) each
 * describe their step as a TrainingLoop; everything around the step is here, once:
 *
 *   results    results/<experiment>/<run>.csv (IntervalLog: logging and evaluation schedule, running means) and the
 *              JSON sidecar (config, provenance, status, summary)
 *   stops      Ctrl-C finishes the current step, writes a checkpoint, closes the CSV interval, status 'stopped'
 *   failures   an exception in a step ends the run with status 'failed' and the message in the sidecar
 *   data errors a DataError (an unreadable data file) ends the run as a failure does and is rethrown, so that the
 *              experiment stops at the first one; a fresh run that fails so before its first update leaves no files
 *              (its CSV and sidecar are written once the first update is done)
 *   skipped    with the data's onBadImage 'skip', the images skipped during the run go to the sidecar (skippedImages)
 *   checkpoints <run>.ckpt next to the CSV (cfg.checkpointEvery; see checkpoint.ts for the format), written after the
 *              step's row and evaluation, so a resumed run evaluates nothing twice
 *   resume     ctx.resume: a finished run is skipped; a run with a checkpoint continues from it: the loop's state is
 *              restored (trainer, optimizer, data streams, clocks), the CSV is cut back to the rows written at the
 *              checkpoint (a stop's interval-closing row and rows of steps trained after it go), the log's running
 *              sums are restored; without a checkpoint the run starts over
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { engineKernels } from '../backend';
import { type BatchStream, isDataError, type StreamState } from '../../data-pipeline/types';
import { readCheckpoint, writeCheckpoint } from './checkpoint';
import type { RunConfig } from './config';
import { IntervalLog, type IntervalLogState } from './interval-log';
import { progressBar } from './progress';
import { gitInfo, machineInfo } from './provenance';
import { readSidecar, RunWriter } from './results';
import type { CsvRow, RunSidecar } from './schema';
import { yieldAndCheckStop } from './stop';
import type { RunContext, RunSummary } from './run';

/** What one step of a loop reports to the run. */
export interface LoopStep {
  /** mean training loss of the step's batch, its error count and its size */
  loss: number;
  errors: number;
  examples: number;
  /** the row's clocks, step size, staleness, … */
  fields: Partial<CsvRow>;
}

/** A training loop as the run sees it; X is what the run function returns beyond RunSummary. */
export interface TrainingLoop<X> {
  /** updates applied so far */
  readonly steps: number;
  /** real training seconds so far (evaluations excluded) */
  readonly wallSeconds: number;
  /** extra fields of the sidecar's config (Polyak decay, parameter count, distributed configuration) */
  sidecarConfig: Record<string, unknown>;
  /** trains step k (1-based: the k-th update) */
  step(k: number): Promise<LoopStep>;
  /** test loss and error at the Polyak-averaged parameters */
  evaluate(): Promise<{ loss: number; error: number }>;
  /** everything needed to continue bit for bit (structured-cloneable), and its restore into a fresh loop */
  state(): unknown;
  restore(s: unknown): Promise<void>;
  /** numbers for the sidecar's summary beyond steps, clocks and losses */
  summary(): Record<string, number>;
  /** extra top-level sidecar fields (e.g. worker faults) */
  sidecarExtra?(): Record<string, unknown>;
  result(): X;
  /** always called once the loop ends (streams, worker threads) */
  close(): Promise<void>;
  /** frees tensors, after the summary was taken */
  dispose(): void;
}

export interface SessionSpec<X> {
  /** what must match between a checkpoint and the run that continues it (normally the config and the data) */
  fingerprint: Record<string, unknown>;
  /** X of a finished run that is skipped on resume, from its sidecar */
  fromSidecar(side: RunSidecar): X;
  build(): Promise<TrainingLoop<X>> | TrainingLoop<X>;
}

export const CHECKPOINT_FORMAT = 'dkfac-run-checkpoint';
export const CHECKPOINT_VERSION = 1;

/** The file a run's checkpoint is written to. */
export interface RunCheckpoint {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  run: string;
  fingerprint: unknown;
  /** updates applied when it was taken */
  step: number;
  savedAt: string;
  log: IntervalLogState;
  loop: unknown;
}

export function checkpointPath(resultsDir: string, run: string): string {
  return join(resultsDir, `${run}.ckpt`);
}

/** The keys of a run's config that do not change what it computes (they may differ between a stop and a resume). */
const NOT_FINGERPRINTED = new Set(['checkpointEvery', 'keepCheckpoint']);

/** The fingerprint of a run: its config (less the checkpoint settings), any extra configuration and its data. */
export function runFingerprint(cfg: RunConfig, ctx: RunContext, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const config = Object.fromEntries(Object.entries(cfg).filter(([k]) => !NOT_FINGERPRINTED.has(k)));
  const s = ctx.data.source;
  return normalise({ config, ...extra, data: { dataset: s.dataset, trainCount: s.trainCount, epochSize: ctx.data.epochSize, subset: s.subset } });
}

function normalise<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** Where `saved` and `now` differ, as `path: saved …, this run …` lines (at most 8). */
export function fingerprintDiff(saved: unknown, now: unknown, path = ''): string[] {
  const out: string[] = [];
  const walk = (a: unknown, b: unknown, p: string) => {
    if (out.length >= 8) return;
    const objA = a !== null && typeof a === 'object';
    const objB = b !== null && typeof b === 'object';
    if (objA && objB && Array.isArray(a) === Array.isArray(b)) {
      const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
      for (const k of keys) walk((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], p ? `${p}.${k}` : k);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push(`${p || '(root)'}: ${JSON.stringify(a) ?? 'absent'} in the checkpoint, ${JSON.stringify(b) ?? 'absent'} in this run`);
    }
  };
  walk(saved, now, path);
  return out;
}

/**
 * A training stream whose position goes into checkpoints: natively where the stream has state()/restore() (the
 * in-memory and image-folder streams), else as the batch sizes drawn, which a restore replays on a stream created
 * with the same seed.
 */
export class TrackedStream {
  private drawn: [number, number][] = [];

  constructor(readonly stream: BatchStream) {}

  next(batchSize: number) {
    const last = this.drawn.at(-1);
    if (last && last[0] === batchSize) last[1]++;
    else this.drawn.push([batchSize, 1]);
    return this.stream.next(batchSize);
  }

  position(): { drawn: [number, number][]; native?: StreamState } {
    return { drawn: this.drawn.map(([n, c]) => [n, c]), native: this.stream.state?.() };
  }

  async seek(p: { drawn: [number, number][]; native?: StreamState }): Promise<void> {
    if (p.native) {
      if (!this.stream.restore) throw new Error(`checkpoint has the position of a '${p.native.kind}' stream; this stream cannot restore one`);
      this.stream.restore(p.native);
    } else {
      for (const [n, c] of p.drawn) for (let i = 0; i < c; i++) await this.stream.next(n);
    }
    this.drawn = p.drawn.map(([n, c]) => [n, c]);
  }

  close(): Promise<void> {
    return this.stream.close();
  }
}

function summaryOf(side: RunSidecar): RunSummary {
  const s = side.summary ?? {};
  return {
    run: side.run,
    csvPath: '',
    sidecarPath: '',
    status: side.status,
    steps: s.steps ?? 0,
    finalTrainLoss: s.finalTrainLoss ?? Number.NaN,
    finalTestLoss: s.finalTestLoss,
    finalTestError: s.finalTestError,
    wallSeconds: s.wallSeconds ?? 0,
    secondsPerStep: s.secondsPerStep ?? 0,
  };
}

/** Trains one run to its example budget through `spec`'s loop (see the top of this file). */
export async function runSession<X extends object>(cfg: RunConfig, ctx: RunContext, spec: SessionSpec<X>): Promise<RunSummary & X> {
  const ckptPath = checkpointPath(ctx.resultsDir, cfg.run);
  const sidecarPath = join(ctx.resultsDir, `${cfg.run}.json`);
  const fingerprint = normalise(spec.fingerprint);
  let resumeFrom: RunCheckpoint | null = null;
  let previous: RunSidecar | null = null;
  let staleCheckpoint = false;
  if (ctx.resume) {
    previous = readSidecar(sidecarPath);
    if (previous?.status === 'finished') {
      const saved = { config: previous.config, distributed: (previous.config as Record<string, unknown>)?.distributed };
      const diff = fingerprintDiff(pick(saved, fingerprint), pick(fingerprint, fingerprint));
      if (diff.length) throw new Error(`run '${cfg.run}' finished with another configuration (rerun it without --resume):\n  ${diff.join('\n  ')}`);
      return { ...summaryOf(previous), csvPath: join(ctx.resultsDir, `${cfg.run}.csv`), sidecarPath, skipped: true, ...spec.fromSidecar(previous) };
    }
    if (existsSync(ckptPath)) {
      resumeFrom = readCheckpoint<RunCheckpoint>(ckptPath);
      if (resumeFrom?.format !== CHECKPOINT_FORMAT) throw new Error(`${ckptPath}: not a run checkpoint`);
      if (resumeFrom.version !== CHECKPOINT_VERSION) throw new Error(`${ckptPath}: checkpoint version ${resumeFrom.version}, this version reads ${CHECKPOINT_VERSION}`);
      const diff = fingerprintDiff(resumeFrom.fingerprint, fingerprint);
      if (diff.length) throw new Error(`${ckptPath}: the checkpoint does not match run '${cfg.run}':\n  ${diff.join('\n  ')}`);
      if (!previous) throw new Error(`${ckptPath}: checkpoint without its sidecar ${sidecarPath}`);
    } else if (previous) {
      console.log(`${cfg.label}: ${previous.status} earlier with no checkpoint (${ckptPath}): starting over`);
    }
  } else if (existsSync(ckptPath)) {
    // a fresh run overwrites the CSV (once it writes its files): a checkpoint left by an earlier run of the same id
    // then no longer belongs to it
    staleCheckpoint = true;
  }

  const loop = await spec.build();
  let writer: RunWriter;
  const git = gitInfo();
  try {
    if (resumeFrom && previous) {
      await loop.restore(resumeFrom.loop);
      const resumes = [...(previous.resumes ?? []), { at: new Date().toISOString(), fromStep: resumeFrom.step, commit: git.commit }];
      writer = new RunWriter(ctx.resultsDir, { ...previous, status: 'running', error: undefined, finishedAt: undefined, resumes }, resumeFrom.log.rows);
      console.log(`${cfg.label}: resuming from step ${resumeFrom.step} (${ckptPath})`);
    } else {
      writer = new RunWriter(ctx.resultsDir, {
        experiment: ctx.experiment,
        run: cfg.run,
        label: cfg.label,
        method: cfg.method,
        batchSize: cfg.batchSize,
        group: ctx.group ?? cfg.run,
        seed: cfg.seed,
        profile: ctx.profile,
        config: { ...cfg, ...loop.sidecarConfig, ...(ctx.notes ? { notes: ctx.notes } : {}) },
        git,
        backend: { name: ctx.backend.name, version: ctx.backend.version, detail: ctx.backend.detail },
        data: ctx.data.source,
        machine: machineInfo(),
        startedAt: new Date().toISOString(),
        status: 'running',
      }, undefined, { defer: true });
    }
  } catch (e) {
    await loop.close();
    loop.dispose();
    throw e;
  }

  /** A fresh run's files are written once it has trained (or ends otherwise than by a data error before that). */
  const openFiles = () => {
    if (writer.isOpen) return;
    writer.open();
    if (staleCheckpoint) rmSync(ckptPath, { force: true });
  };
  const log = new IntervalLog(cfg, writer, () => loop.evaluate());
  if (resumeFrom) log.restore(resumeFrom.log);
  const total = log.totalSteps;
  const save = () =>
    writeCheckpoint(ckptPath, {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      run: cfg.run,
      fingerprint,
      step: loop.steps,
      savedAt: new Date().toISOString(),
      log: log.state(),
      loop: loop.state(),
    } satisfies RunCheckpoint);
  const due = (k: number) =>
    (k === total && cfg.keepCheckpoint) ||
    (k < total && (cfg.checkpointEvery === 'evals' ? log.isEvalStep(k) : cfg.checkpointEvery > 0 && k % cfg.checkpointEvery === 0));

  const bar = progressBar(cfg.label, total);
  const skipMark = ctx.data.skipped?.mark();
  let status: RunSidecar['status'] = 'finished';
  let error: string | undefined;
  let dataError: Error | undefined;
  try {
    for (let k = loop.steps + 1; k <= total; k++) {
      const r = await loop.step(k);
      openFiles();
      log.add(r.loss, r.errors, r.examples);
      const stop = await yieldAndCheckStop(k);
      await log.endStep(k, r.fields);
      if (stop || due(k)) save();
      bar.update(k, { loss: log.lastTrainLoss.toFixed(3), 's/step': (loop.wallSeconds / k).toFixed(3) });
      if (stop) {
        // the CSV ends at the last step trained (a resume cuts this row again: it is not on the schedule)
        await log.endStep(k, r.fields, true);
        status = 'stopped';
        error = stop;
        break;
      }
    }
  } catch (e) {
    status = 'failed';
    error = (e as Error).message;
    if (isDataError(e)) dataError = e;
  } finally {
    bar.stop();
    await loop.close();
  }
  if (dataError && !writer.isOpen) {
    // nothing trained: no CSV, no sidecar (an earlier run's files of this id stay as they were)
    loop.dispose();
    console.log(`${cfg.label}: stopped by a data error before its first update; no files written`);
    throw dataError;
  }
  openFiles();
  if (status === 'finished' && !cfg.keepCheckpoint && existsSync(ckptPath)) rmSync(ckptPath);

  const steps = loop.steps;
  const last = log.lastTest;
  const base: RunSummary = {
    run: cfg.run,
    csvPath: writer.csvPath,
    sidecarPath: writer.sidecarPath,
    status,
    steps,
    finalTrainLoss: log.lastTrainLoss,
    finalTestLoss: last?.loss,
    finalTestError: last?.error,
    wallSeconds: loop.wallSeconds,
    secondsPerStep: loop.wallSeconds / Math.max(1, steps),
    ...(resumeFrom ? { resumedFrom: resumeFrom.step } : {}),
  };
  const kernels = engineKernels();
  const skipped = ctx.data.skipped && skipMark !== undefined ? ctx.data.skipped.since(skipMark, writer.sidecar.skippedImages) : undefined;
  writer.update({
    status,
    error,
    finishedAt: new Date().toISOString(),
    ...(kernels ? { backend: { ...writer.sidecar.backend, kernels } } : {}),
    ...(skipped ? { skippedImages: skipped } : {}),
    summary: {
      steps,
      wallSeconds: base.wallSeconds,
      secondsPerStep: base.secondsPerStep,
      finalTrainLoss: log.lastTrainLoss,
      ...loop.summary(),
      ...(last ? { finalTestLoss: last.loss, finalTestError: last.error } : {}),
    },
    ...loop.sidecarExtra?.(),
  });
  const result = loop.result();
  loop.dispose();
  if (skipped?.count) {
    const first = skipped.files[0];
    console.log(
      `${cfg.label}: skipped ${skipped.count} unreadable image${skipped.count === 1 ? '' : 's'} (${skipped.skips} example${skipped.skips === 1 ? '' : 's'} left out; ` +
        `listed in ${writer.sidecarPath}), e.g. ${first.file}: ${first.problem}`,
    );
  }
  if (dataError) {
    console.log(`${cfg.label}: stopped by a data error after ${steps} updates; its CSV rows and sidecar (status failed) are kept\n  csv: ${writer.csvPath}`);
    throw dataError;
  }
  if (status === 'failed') console.error(`run ${cfg.run} failed: ${error}`);
  return { ...base, ...result };
}

/** The keys of `v` that `shape` has (top level and one level into objects), so an older sidecar compares fairly. */
function pick(v: Record<string, unknown>, shape: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(shape)) {
    if (k === 'data') continue; // a finished run's sidecar records its data source in another form
    const sv = shape[k];
    const vv = v?.[k];
    out[k] =
      sv && typeof sv === 'object' && !Array.isArray(sv) && vv && typeof vv === 'object'
        ? Object.fromEntries(Object.keys(sv).map((j) => [j, (vv as Record<string, unknown>)[j]]))
        : vv;
  }
  return normalise(out);
}
