/**
 * The static report page (reports/index.html): a table of every claim with its status, then one section per figure
 * with the paper's description and claim, the rendered figure, the verdict and a table of the runs behind it.
 *
 * Self-contained: inline CSS, no scripts, no network; images are referenced relative to the page.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { lastValue } from './load';
import { lineOf, seedOf } from './seeds';
import type { Interval } from './stats';
import { budgetStatement, type GridTable, lineTunings } from './tuning';
import type { FigureSpec, LoadedRun, RenderedFiles, Verdict, VerdictStatus } from './types';

/** What the page needs to know about one figure. */
export interface FigureResult {
  spec: FigureSpec;
  runs: LoadedRun[];
  verdict: Verdict;
  files: RenderedFiles;
  /** the tuning grids run for the figure (results/grid/<id>/) */
  grids?: GridTable[];
}

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(text: unknown): string {
  return String(text)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** A path relative to the page, with forward slashes, each segment URL-encoded. */
function href(from: string, file: string): string {
  return path
    .relative(from, file)
    .split(path.sep)
    .map((s) => encodeURIComponent(s))
    .join('/');
}

function fmt(value: number | undefined, digits = 4): string {
  if (value === undefined) return '—';
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) >= 1000) return value.toLocaleString('en-US');
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 1000 ? value.toLocaleString('en-US', { maximumFractionDigits: 1 }) : value.toPrecision(digits);
}

const STATUS_CLASS: Record<VerdictStatus, string> = {
  reproduced: 'ok',
  partly: 'partly',
  'not reproduced': 'bad',
  inconclusive: 'unsure',
  'no data': 'none',
};

function badge(status: VerdictStatus): string {
  return `<span class="badge ${STATUS_CLASS[status]}">${escapeHtml(status)}</span>`;
}

function runRow(run: LoadedRun): string {
  const s = run.sidecar;
  const last = run.rows[run.rows.length - 1];
  const backend = s.backend ? `${s.backend.name ?? '?'} ${s.backend.version ?? ''}`.trim() : '—';
  const data = s.data ? `${s.data.origin ?? '?'}: ${s.data.dataset ?? '?'}` : '—';
  const commit = s.git?.commit ? `${s.git.commit.slice(0, 8)}${s.git.dirty ? ' (dirty)' : ''}` : '—';
  const status = s.error ? `${s.status}: ${s.error}` : s.status;
  const cells = [
    escapeHtml(s.label),
    fmt(seedOf(run)),
    escapeHtml(s.method),
    fmt(s.batchSize),
    escapeHtml(backend),
    escapeHtml(data),
    fmt(last?.step),
    fmt(last?.examples),
    fmt(lastValue(run, 'train_loss')),
    fmt(lastValue(run, 'train_error')),
    fmt(lastValue(run, 'test_loss')),
    fmt(lastValue(run, 'test_error')),
    fmt(lastValue(run, 'wall_seconds'), 5),
    escapeHtml(status),
    `<code>${escapeHtml(commit)}</code>`,
  ];
  const numeric = new Set([1, 3, 6, 7, 8, 9, 10, 11, 12]);
  return `<tr>${cells.map((c, i) => `<td${numeric.has(i) ? ' class="num"' : ''}>${c}</td>`).join('')}</tr>`;
}

function runsTable(runs: LoadedRun[]): string {
  if (runs.length === 0) return '<p class="muted">No runs recorded yet.</p>';
  const head = [
    'Label',
    'Seed',
    'Method',
    'Batch size',
    'Backend',
    'Data (origin: dataset)',
    'Steps',
    'Examples',
    'Final train loss',
    'Final train error',
    'Final test loss',
    'Final test error',
    'Wall seconds',
    'Status',
    'Commit',
  ];
  return `<table class="runs"><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>
<tbody>
${runs.map(runRow).join('\n')}
</tbody></table>`;
}

function ciCell(i: Interval | undefined): string {
  if (!i || i.n < 2) return '—';
  return `${fmt(i.lo, 4)} to ${fmt(i.hi, 4)}${i.censored ? ` (${i.censored} bound${i.censored === 1 ? '' : 's'})` : ''}`;
}

function numbersTable(numbers: Record<string, number>, intervals?: Record<string, Interval>): string {
  const keys = Object.keys(numbers);
  if (keys.length === 0) return '';
  if (!intervals) {
    return `<table class="numbers"><tbody>
${keys.map((k) => `<tr><th>${escapeHtml(k)}</th><td class="num">${escapeHtml(fmt(numbers[k], 5))}</td></tr>`).join('\n')}
</tbody></table>`;
  }
  return `<table class="numbers"><thead><tr><th>Quantity</th><th>Mean over seeds</th><th>95 % interval</th><th>Seeds</th><th>Scale</th></tr></thead><tbody>
${keys
  .map((k) => {
    const i = intervals[k];
    return `<tr><th>${escapeHtml(k)}</th><td class="num">${escapeHtml(fmt(numbers[k], 5))}</td><td class="num">${escapeHtml(ciCell(i))}</td><td class="num">${i?.n ?? '—'}</td><td>${i?.scale === 'log' ? 'log (geometric mean)' : 'linear'}</td></tr>`;
  })
  .join('\n')}
</tbody></table>`;
}

function perSeedList(v: Verdict): string {
  if (!v.perSeed?.length) return '';
  return `<details><summary>Each seed's own measurement (${v.perSeed.length})</summary><ul>
${v.perSeed.map((p) => `<li>seed ${escapeHtml(p.seed)}: ${badge(p.status)} ${escapeHtml(p.text)}</li>`).join('\n')}
</ul></details>`;
}

const GRID_SETTINGS = ['lr', 'rbz', 'damping', 'c0'] as const;

function gridTable(g: GridTable): string {
  const used = GRID_SETTINGS.filter((k) => g.rows.some((r) => (r[k] ?? '') !== ''));
  const chosen = new Set(Object.values(g.best?.best ?? {}).map((c) => c.run));
  const head = ['batch size', ...used, 'final train loss', 'status', 'chosen'];
  const rows = g.rows.map((r) => {
    const cells = [r.batch_size, ...used.map((k) => r[k] ?? ''), r.final_train_loss ? fmt(Number(r.final_train_loss), 4) : '—', r.status, chosen.has(r.run) ? '★' : ''];
    return `<tr>${cells.map((c, i) => `<td${i < used.length + 2 ? ' class="num"' : ''}>${escapeHtml(c ?? '')}</td>`).join('')}</tr>`;
  });
  const choices = Object.entries(g.best?.best ?? {})
    .map(([k, c]) => `bz${k}: ${GRID_SETTINGS.filter((s) => c[s] !== undefined).map((s) => `${s} ${c[s]}`).join(', ')} (${c.trials ?? '?'} trials)`)
    .join('; ');
  return `<p><strong>${escapeHtml(g.method)}</strong> grid (${g.rows.length} points; <code>${escapeHtml(g.summaryPath)}</code>)${choices ? `: chosen ${escapeHtml(choices)}` : ''}.</p>
<table class="grid"><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>
${rows.join('\n')}
</tbody></table>`;
}

function tuningSection(r: FigureResult): string {
  const lines = lineTunings(r.runs);
  const b = budgetStatement(lines, r.spec.tuned !== false);
  const table = lines.some((l) => l.note)
    ? `<table class="tuning"><thead><tr><th>Line</th><th>Method</th><th>Settings used</th><th>From</th><th>Trials</th></tr></thead><tbody>
${lines
  .map((l) => {
    const n = l.note;
    const settings = n ? Object.entries(n.settings).map(([k, v]) => `${k} ${v}`).join(', ') : '—';
    const from = n ? (n.source === 'grid' ? `grid, key ${n.key}` : 'profile defaults') : 'not recorded';
    return `<tr><td>${escapeHtml(l.label)}</td><td>${escapeHtml(l.method)}</td><td>${escapeHtml(settings)}</td><td>${escapeHtml(from)}</td><td class="num">${escapeHtml(n?.trials ?? '—')}</td></tr>`;
  })
  .join('\n')}
</tbody></table>`
    : '';
  const grids = (r.grids ?? []).map(gridTable).join('\n');
  return `<h3>Tuning</h3>
<p class="budget ${b.kind}">${escapeHtml(b.text)}</p>
${table}
${grids || (r.spec.tuned === false ? '' : '<p class="muted">No tuning grid has been run for this figure.</p>')}`;
}

function figureSection(r: FigureResult, outDir: string): string {
  const { spec, verdict, files } = r;
  const svg = escapeHtml(href(outDir, files.svg));
  const png = escapeHtml(href(outDir, files.png));
  const vl = escapeHtml(href(outDir, files.vlSpecPath));
  return `<section id="${escapeHtml(spec.id)}">
<h2>${escapeHtml(spec.id)}: ${escapeHtml(spec.title)}</h2>
<p><strong>The paper's figure.</strong> ${escapeHtml(spec.paperDescription)}</p>
<blockquote><strong>Claim.</strong> ${escapeHtml(spec.paperClaim)}</blockquote>
<figure>
<a href="${png}"><picture><source srcset="${svg}" type="image/svg+xml"><img src="${png}" alt="${escapeHtml(`${spec.id}: ${spec.title}`)}"></picture></a>
<figcaption>Rendered from <code>${escapeHtml(spec.resultsDir)}</code>. Files: <a href="${svg}">SVG</a> · <a href="${png}">PNG</a> · <a href="${vl}">Vega-Lite spec (data inlined)</a></figcaption>
</figure>
<h3>Verdict ${badge(verdict.status)}</h3>
<p>${escapeHtml(verdict.text)}</p>
${numbersTable(verdict.numbers, verdict.intervals)}
${perSeedList(verdict)}
${tuningSection(r)}
<h3>Runs</h3>
${runsTable(r.runs)}
</section>`;
}

const CSS = `
body{font-family:"DejaVu Sans","Liberation Sans",Arial,Helvetica,sans-serif;margin:24px auto;max-width:1280px;padding:0 16px;color:#222;line-height:1.45}
h1{margin-bottom:4px}h2{margin-top:40px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.runs{display:block;overflow-x:auto;max-width:100%}
blockquote{margin:8px 0;padding:8px 12px;border-left:4px solid #4c78a8;background:#f4f7fb}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#555}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;font-weight:bold;color:#fff;vertical-align:middle}
.ok{background:#2e7d32}.partly{background:#ef8f00}.bad{background:#c62828}.unsure{background:#5c6bc0}.none{background:#888}
p.budget.differs{color:#c62828}p.budget.same{color:#2e7d32}details{margin:8px 0;font-size:13px}
.muted{color:#777}code{font-size:12px}
`;

/**
 * Writes <outDir>/index.html for the given figures and returns its path. `generatedAt` is shown at the top (default
 * now).
 */
export async function buildIndex(
  results: FigureResult[],
  outDir = 'reports',
  generatedAt: Date = new Date(),
): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const claims = results
    .map(
      (r) =>
        `<tr><td><a href="#${escapeHtml(r.spec.id)}">${escapeHtml(r.spec.id)}</a></td><td>${escapeHtml(r.spec.paperClaim)}</td><td>${badge(r.verdict.status)}</td><td>${escapeHtml(r.verdict.summary ?? '—')}</td><td class="num">${r.verdict.seeds?.length ?? '—'}</td><td class="num">${new Set(r.runs.map(lineOf)).size} lines, ${r.runs.length} runs</td></tr>`,
    )
    .join('\n');
  const html = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dkfac: reproduction of Ba, Grosse &amp; Martens (ICLR 2017)</title>
<style>${CSS}</style>
</head>
<body>
<h1>dkfac reproduction report</h1>
<p>"Distributed Second-Order Optimization using Kronecker-Factored Approximations" (Ba, Grosse, Martens, ICLR 2017),
reproduced with TensorFlow.js. Every figure, number and table below is regenerated from <code>results/</code> alone; the
paper's descriptions and claims are quoted from the paper. Thresholds used by the verdicts are this suite's choice.</p>
<p class="muted">Generated ${escapeHtml(generatedAt.toISOString())}.</p>
<h2>Claims</h2>
<p>Each claim is judged on 95 % intervals over seeds (Student's t; ratios on the log scale): <strong>reproduced</strong>
only when every value the intervals allow clears this suite's bars, <strong>not reproduced</strong> only when none
does, <strong>partly</strong> when every allowed value meets part of the claim and misses the rest, and
<strong>inconclusive</strong> otherwise (one seed always is).</p>
<table class="claims"><thead><tr><th>Figure</th><th>Claim</th><th>Status</th><th>Measured (mean, 95 % interval over seeds)</th><th>Seeds</th><th>Runs</th></tr></thead>
<tbody>
${claims}
</tbody></table>
${results.map((r) => figureSection(r, outDir)).join('\n')}
</body>
</html>
`;
  const file = path.join(outDir, 'index.html');
  await writeFile(file, html);
  return file;
}
