/**
 * The demo page: starts one training worker per optimizer (worker.ts), draws their steps and test evaluations as
 * live Vega-Lite charts, a progress bar per run, start/stop, the backend and a summary table. No training happens on
 * this thread, so the page stays responsive. `window.demo` holds the state (read by the headless-browser test).
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { DEMO_DEFAULTS, type FromWorker, METHOD_LABEL, type Method, type StartMessage } from './protocol';

interface Row {
  method: string;
  step: number;
  loss: number;
  acc: number;
}

interface RunState {
  status: 'idle' | 'starting' | 'training' | 'done' | 'stopped' | 'error';
  steps: Row[];
  evals: Row[];
  seconds: number;
  error?: string;
}

interface DemoState {
  backend: { name: string; detail: string } | null;
  target: number;
  runs: Record<Method, RunState>;
  running: boolean;
}

const METHODS: Method[] = ['kfac', 'sgd'];
const params = new URLSearchParams(location.search);
const num = (k: string, d: number) => {
  const v = Number(params.get(k));
  return Number.isFinite(v) && v > 0 ? Math.floor(v) : d;
};
const settings = {
  steps: num('steps', DEMO_DEFAULTS.steps),
  evalEvery: num('evalEvery', DEMO_DEFAULTS.evalEvery),
  batchSize: num('batch', DEMO_DEFAULTS.batchSize),
  backend: params.get('backend') ?? DEMO_DEFAULTS.backend,
  seed: num('seed', DEMO_DEFAULTS.seed),
};

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const startBtn = $<HTMLButtonElement>('start');
const stopBtn = $<HTMLButtonElement>('stop');
const stepsInput = $<HTMLInputElement>('steps');
const batchInput = $<HTMLInputElement>('batch');
stepsInput.value = String(settings.steps);
batchInput.value = String(settings.batchSize);

const freshRun = (): RunState => ({ status: 'idle', steps: [], evals: [], seconds: 0 });
const state: DemoState = { backend: null, target: 0, runs: { kfac: freshRun(), sgd: freshRun() }, running: false };
(window as unknown as { demo: DemoState }).demo = state;

const COLORS = { domain: METHODS.map((m) => METHOD_LABEL[m]), range: ['#2b6cb0', '#dd6b20'] };
const DASH = { domain: ['train (mean of 10 steps)', 'test'], range: [[5, 3], [1, 0]] };

/** One panel: the training metric per step (moving average) and the test metric at every evaluation. */
function panel(field: 'loss' | 'acc', title: string, yTitle: string): TopLevelSpec {
  const x = { field: 'step', type: 'quantitative', title: 'step' } as const;
  const y = { type: 'quantitative', title: yTitle, scale: field === 'loss' ? { type: 'log' as const } : { zero: false } } as const;
  const color = { field: 'method', type: 'nominal', title: 'optimizer', scale: COLORS } as const;
  const dash = { field: 'series', type: 'nominal', title: null, scale: DASH } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 360,
    height: 240,
    // re-measure axes and legends as rows stream in (the first layout sees no data)
    autosize: { type: 'pad', resize: true },
    layer: [
      {
        data: { name: 'steps' },
        transform: [
          { window: [{ op: 'mean', field, as: 'smooth' }], frame: [-9, 0], groupby: ['method'], sort: [{ field: 'step' }] },
          { calculate: "'train (mean of 10 steps)'", as: 'series' },
        ],
        mark: { type: 'line', strokeWidth: 1.5, opacity: 0.8 },
        encoding: { x, y: { ...y, field: 'smooth' }, color, strokeDash: dash },
      },
      {
        data: { name: 'evals' },
        transform: [{ calculate: "'test'", as: 'series' }],
        mark: { type: 'line', point: true, strokeWidth: 2.5 },
        encoding: { x, y: { ...y, field }, color, strokeDash: dash },
      },
    ],
  };
}

async function view(id: string, spec: TopLevelSpec): Promise<vega.View> {
  const v = new vega.View(vega.parse(compile(spec).spec), { renderer: 'svg', container: `#${id}`, hover: true });
  await v.runAsync();
  return v;
}

const views = await Promise.all([view('chart-loss', panel('loss', 'Cross-entropy', 'loss (log scale)')), view('chart-acc', panel('acc', 'Accuracy', 'accuracy'))]);

// Rows arrive many times a second from two workers: insert them into the charts in batches.
const pending: Record<'steps' | 'evals', Row[]> = { steps: [], evals: [] };
let flushScheduled = false;
function scheduleFlush(): void {
  if (flushScheduled) return;
  flushScheduled = true;
  setTimeout(async () => {
    flushScheduled = false;
    for (const name of ['steps', 'evals'] as const) {
      if (pending[name].length === 0) continue;
      const rows = pending[name].splice(0);
      for (const v of views) v.change(name, vega.changeset().insert(rows));
    }
    await Promise.all(views.map((v) => v.runAsync()));
  }, 250);
}

function renderStatus(m: Method): void {
  const r = state.runs[m];
  const done = r.steps.length;
  const bar = $<HTMLProgressElement>(`progress-${m}`);
  bar.max = state.target || 1;
  bar.value = done;
  const last = r.evals.at(-1);
  const status = $(`status-${m}`);
  status.className = r.status === 'error' ? 'status err' : 'status';
  status.textContent =
    r.status === 'error'
      ? `error: ${r.error}`
      : `${r.status}: ${done}/${state.target} steps, ${r.seconds.toFixed(1)} s${last ? `, test accuracy ${(100 * last.acc).toFixed(1)} %` : ''}`;
  const cells = $(`row-${m}`).children;
  cells[1]!.textContent = String(done);
  cells[2]!.textContent = r.seconds.toFixed(1);
  cells[3]!.textContent = done ? (r.seconds / done).toFixed(3) : '–';
  cells[4]!.textContent = last ? last.loss.toFixed(4) : '–';
  cells[5]!.textContent = last ? `${(100 * last.acc).toFixed(1)} %` : '–';
}

let workers: Worker[] = [];

function onMessage(m: Method, msg: FromWorker): void {
  const r = state.runs[m];
  const label = METHOD_LABEL[m];
  switch (msg.type) {
    case 'backend':
      state.backend = { name: msg.name, detail: msg.detail };
      $('backend').innerHTML = '';
      $('backend').append('backend: ', Object.assign(document.createElement('b'), { textContent: msg.name }), ` (${msg.detail})`);
      break;
    case 'status':
      r.status = msg.text === 'training' ? 'training' : 'starting';
      break;
    case 'step': {
      const row = { method: label, step: msg.step, loss: msg.loss, acc: msg.acc };
      r.steps.push(row);
      r.seconds = msg.seconds;
      pending.steps.push(row);
      break;
    }
    case 'eval': {
      const row = { method: label, step: msg.step, loss: msg.loss, acc: msg.acc };
      r.evals.push(row);
      pending.evals.push(row);
      break;
    }
    case 'done':
      r.status = msg.stopped ? 'stopped' : 'done';
      r.seconds = msg.seconds;
      break;
    case 'error':
      r.status = 'error';
      r.error = msg.message;
      console.error(`${label} worker: ${msg.message}`);
      break;
  }
  scheduleFlush();
  renderStatus(m);
  if (METHODS.every((k) => ['done', 'stopped', 'error', 'idle'].includes(state.runs[k].status))) finish();
}

function finish(): void {
  state.running = false;
  startBtn.disabled = false;
  stopBtn.disabled = true;
  for (const w of workers) w.terminate();
  workers = [];
}

function start(): void {
  const steps = Math.max(10, Math.floor(Number(stepsInput.value) || settings.steps));
  const batchSize = Math.max(8, Math.floor(Number(batchInput.value) || settings.batchSize));
  const evalEvery = Math.min(settings.evalEvery, steps);
  state.target = Math.ceil(steps / evalEvery) * evalEvery;
  state.running = true;
  startBtn.disabled = true;
  stopBtn.disabled = false;
  for (const v of views) v.change('steps', vega.changeset().remove(() => true)).change('evals', vega.changeset().remove(() => true));
  for (const m of METHODS) {
    state.runs[m] = { ...freshRun(), status: 'starting' };
    renderStatus(m);
    const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    w.onmessage = (e: MessageEvent<FromWorker>) => onMessage(m, e.data);
    w.onerror = (e) => onMessage(m, { type: 'error', message: e.message || 'the worker failed to start' });
    const msg: StartMessage = { type: 'start', method: m, steps: state.target, evalEvery, batchSize, backend: settings.backend, seed: settings.seed, sgdLr: DEMO_DEFAULTS.sgdLr };
    w.postMessage(msg);
    workers.push(w);
  }
}

startBtn.addEventListener('click', start);
stopBtn.addEventListener('click', () => {
  stopBtn.disabled = true;
  for (const w of workers) w.postMessage({ type: 'stop' });
});
for (const m of METHODS) renderStatus(m);
if (params.get('autostart') === '1') start();
