/**
 * Run configuration: plain data, validated with zod before any work starts. Unknown keys, wrong types and impossible
 * values are errors that name the key.
 */
import { z } from 'zod';
import { KfacConfig } from '../kfac/optimizer';
import { ModelConfig } from '../nn/zoo';
import { DecaySchedule } from './update';

export const SgdConfig = z.strictObject({
  kind: z.literal('sgd'),
  /** initial learning rate */
  lr: z.number().positive().max(100),
  momentum: z.number().min(0).lt(1).default(0.9),
  decay: DecaySchedule.default({ rate: 0.96, every: 'half-epoch' }),
  weightDecay: z.number().min(0).default(0),
});
export type SgdConfig = z.infer<typeof SgdConfig>;

/** Optimizers known to the runner: SGD (with momentum) and K-FAC (src/kfac/optimizer.ts). */
export const OptimizerConfig = z.discriminatedUnion('kind', [SgdConfig, KfacConfig]);
export type OptimizerConfig = z.infer<typeof OptimizerConfig>;

export const DataConfig = z.strictObject({
  name: z.enum(['fashion-mnist', 'mnist', 'cifar10', 'imagenet-folder']).default('fashion-mnist'),
  /** a directory that holds the dataset's files (the CLI's --data-dir; DKFAC_DATA otherwise) */
  dataDir: z.string().optional(),
  /** allow downloading from the official source into the user cache */
  download: z.boolean().default(false),
  /** use only the first N training examples */
  trainSubset: z.number().int().positive().optional(),
  /**
   * the epoch the schedules count in, in examples ('half-epoch' decays, 'epoch' Polyak averaging; default: the
   * training set's size): the quick profiles fix it at 12,000 so that they train on the same schedule on the
   * embedded 12,000-image subset and on the full 60,000 (only the pool the batches are drawn from differs)
   */
  scheduleEpoch: z.number().int().positive().optional(),
  /** ImageNet folders: input resolution and resize-before-crop size */
  imageSize: z.number().int().min(8).max(512).optional(),
  resizeTo: z.number().int().min(8).max(1024).optional(),
  /** ImageNet folders: an unreadable image stops the experiment naming the file ('stop', the default), or is skipped and counted */
  onBadImage: z.enum(['stop', 'skip'], { error: (iss) => `unknown policy ${JSON.stringify(iss.input)} (stop or skip)` }).optional(),
});
export type DataConfig = z.infer<typeof DataConfig>;

export const RunConfig = z
  .strictObject({
    /** legend text, as in the paper's figure */
    label: z.string().min(1),
    /** file-name-safe run id */
    run: z.string().regex(/^[A-Za-z0-9._+-]+$/, 'use letters, digits, . _ + - only'),
    method: z.string().min(1),
    batchSize: z.number().int().positive().max(65536),
    /** training budget in examples consumed */
    examples: z.number().int().positive(),
    /** the paper's rbz: batch-norm statistics over chunks of this many examples (default: whole batch) */
    bnChunk: z.number().int().positive().optional(),
    model: ModelConfig,
    optimizer: OptimizerConfig,
    /**
     * Polyak decay ξ, 'epoch' for ξ = exp(−1/steps per epoch) as in KFC, or { examples: n } for ξ = exp(−1/steps
     * per n examples) (an averaging window that does not change with the training set's size)
     */
    polyak: z
      .union([z.number().gt(0).lt(1), z.literal('epoch'), z.strictObject({ examples: z.number().int().positive() })])
      .default('epoch'),
    /** steps between CSV rows */
    logEvery: z.number().int().positive().default(10),
    /** test evaluations spread evenly over the run (plus one at the end) */
    evals: z.number().int().min(0).max(1000).default(10),
    /** test examples per evaluation (default: the whole test split) */
    evalExamples: z.number().int().positive().optional(),
    seed: z.number().int().min(0).default(0),
    /**
     * Checkpoints (<run>.ckpt next to the CSV, written atomically) that `--resume` continues from: 'evals' after every
     * test evaluation, N every N steps, 0 never; a stop request (Ctrl-C) always writes one.
     */
    checkpointEvery: z.union([z.literal('evals'), z.number().int().min(0)]).default('evals'),
    /** keep the checkpoint of a finished run (its final state); by default it is removed when the run finishes */
    keepCheckpoint: z.boolean().default(false),
  })
  .superRefine((c, ctx) => {
    if (c.bnChunk !== undefined && c.bnChunk > c.batchSize) {
      ctx.addIssue({ code: 'custom', path: ['bnChunk'], message: `bnChunk ${c.bnChunk} exceeds batchSize ${c.batchSize}` });
    }
    if (c.examples < c.batchSize) {
      ctx.addIssue({ code: 'custom', path: ['examples'], message: `examples ${c.examples} is less than one batch (${c.batchSize})` });
    }
  });
export type RunConfig = z.infer<typeof RunConfig>;
export type RunConfigInput = z.input<typeof RunConfig>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Formats zod issues as `key.path: problem` lines. */
export function formatIssues(err: z.ZodError, prefix = ''): string {
  return err.issues
    .map((i) => {
      const path = [prefix, ...i.path.map(String)].filter(Boolean).join('.');
      const keys = 'keys' in i && Array.isArray(i.keys) ? ` (${(i.keys as string[]).join(', ')})` : '';
      return `  ${path || '(root)'}: ${i.message}${keys}`;
    })
    .join('\n');
}

export function parseConfig<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ConfigError(`invalid ${what}:\n${formatIssues(r.error)}`);
  return r.data;
}
