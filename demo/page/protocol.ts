/** Messages between the demo page and its training workers, and the demo's default run. */
export type Method = 'kfac' | 'sgd';

export const METHOD_LABEL: Record<Method, string> = { kfac: 'K-FAC', sgd: 'SGD' };

/** The default run: 300 steps of batch 64 (1.6 epochs of the 12,000-image subset), a test evaluation every 25. */
export const DEMO_DEFAULTS = { steps: 300, evalEvery: 25, batchSize: 64, sgdLr: 0.02, seed: 0, backend: 'auto' } as const;

export interface StartMessage {
  type: 'start';
  method: Method;
  steps: number;
  evalEvery: number;
  batchSize: number;
  /** 'auto' (WebGPU where offered, else wasm), 'wasm' or 'webgpu' */
  backend: string;
  seed: number;
  sgdLr: number;
}

export type ToWorker = StartMessage | { type: 'stop' };

export type FromWorker =
  | { type: 'backend'; name: string; detail: string }
  | { type: 'status'; text: string }
  /** one training step: its batch loss and accuracy, and the training seconds so far (evaluations excluded) */
  | { type: 'step'; step: number; loss: number; acc: number; seconds: number }
  /** a test evaluation (the whole test split) after `step` steps */
  | { type: 'eval'; step: number; loss: number; acc: number; seconds: number }
  | { type: 'done'; stopped: boolean; steps: number; seconds: number }
  | { type: 'error'; message: string };
