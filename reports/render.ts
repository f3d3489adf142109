/**
 * Renders one figure: a Vega-Lite spec (one panel per PanelSpec, at most PANELS_PER_ROW side by side, one line per
 * figure line coloured by its label: the mean over its seeds, with a Vega-Lite `errorband` for the 95 % t interval of
 * the seeds at each logged step where two or more seeds logged it) compiled with vega-lite, drawn headless by vega into
 * SVG, rasterised to PNG by sharp (librsvg). On a time axis the x of a point is the seeds' mean time at that step.
 *
 * As in the paper's figures, training metrics are dashed and test metrics solid.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { View, parse as parseVega } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { CsvColumn } from '../src/train/schema';
import { linesOf } from './seeds';
import { tInterval } from './stats';
import type { FigureSpec, LoadedRun, PanelSpec, RenderedFiles } from './types';

/** Panel size in CSS pixels. */
const PANEL_WIDTH = 380;
const PANEL_HEIGHT = 260;
/** Panels wrap into rows of this many (figures with panels against updates and against time have up to 8). */
export const PANELS_PER_ROW = 4;
/** Lines longer than this are thinned evenly (keeping the last point) so the SVG stays small. */
export const MAX_POINTS_PER_LINE = 2000;
/** PNG scale relative to the SVG's CSS pixels (sharp's density is in dpi; 72 dpi = 1x). */
const PNG_SCALE = 2;
const FONT = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';
const TRAIN_DASH = [6, 3];

/** Train-metric columns are drawn dashed, everything else (test metrics, step sizes, ...) solid. */
export function isTrainMetric(column: CsvColumn): boolean {
  return column.startsWith('train_');
}

/** One point of a line over seeds: the seeds' mean x and y at one logged step, the 95 % interval of y (n ≥ 2). */
export interface BandPoint {
  x: number;
  y: number;
  n: number;
  lo?: number;
  hi?: number;
}

/**
 * A line's points over its seeds (runs): for each step logged with both x and y by at least one seed, the mean x,
 * the mean y and, with two or more seeds, the 95 % t interval of y (reports/stats.ts; on a log axis the geometric
 * mean and the interval of log y); lines longer than MAX_POINTS_PER_LINE are thinned
 * evenly, keeping the last point.
 */
export function bandPoints(runs: LoadedRun[], panel: PanelSpec): BandPoint[] {
  const bySteps = new Map<number, { xs: number[]; ys: number[] }>();
  for (const run of runs) {
    for (const row of run.rows) {
      const x = row[panel.x];
      const y = row[panel.y];
      if (x === undefined || y === undefined || !Number.isFinite(x) || !Number.isFinite(y)) continue;
      if (panel.scaleY === 'log' && y <= 0) continue;
      const e = bySteps.get(row.step) ?? { xs: [], ys: [] };
      e.xs.push(x);
      e.ys.push(y);
      bySteps.set(row.step, e);
    }
  }
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const points = [...bySteps.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([, e]): BandPoint => {
      // on a log axis, the geometric mean and the interval of log y (positive, symmetric on the axis)
      const i = tInterval(e.ys, panel.scaleY === 'log' ? 'log' : 'linear');
      const p: BandPoint = { x: mean(e.xs), y: i.mean, n: e.ys.length };
      if (e.ys.length >= 2) {
        p.lo = i.lo;
        p.hi = i.hi;
      }
      return p;
    });
  if (points.length <= MAX_POINTS_PER_LINE) return points;
  const stride = Math.ceil(points.length / MAX_POINTS_PER_LINE);
  return points.filter((_, i) => i % stride === 0 || i === points.length - 1);
}

/** Unique labels in run order: the colour domain, so every panel (and the legend) agrees. */
function labelDomain(runs: LoadedRun[]): string[] {
  return [...new Set(runs.map((r) => r.sidecar.label))];
}

/** A panel that only carries a message (no runs, or nothing measured for this column). */
function messagePanel(title: string, message: string): Record<string, unknown> {
  return {
    title,
    width: PANEL_WIDTH,
    height: PANEL_HEIGHT,
    data: { values: [{ message }] },
    mark: { type: 'text', fontSize: 14, color: '#666', align: 'center', baseline: 'middle' },
    encoding: {
      text: { field: 'message', type: 'nominal' },
      x: { value: PANEL_WIDTH / 2 },
      y: { value: PANEL_HEIGHT / 2 },
    },
  };
}

function linePanel(panel: PanelSpec, runs: LoadedRun[], domain: string[]): Record<string, unknown> {
  const values: Record<string, string | number>[] = [];
  for (const line of linesOf(runs)) {
    for (const p of bandPoints(line.runs, panel)) {
      values.push({
        label: line.label,
        line: line.line,
        [panel.x]: p.x,
        [panel.y]: p.y,
        seeds: p.n,
        ...(p.lo !== undefined && p.hi !== undefined ? { lo: p.lo, hi: p.hi } : {}),
      });
    }
  }
  if (values.length === 0) return messagePanel(panel.title, `no ${panel.y} measured yet`);
  const dashed = isTrainMetric(panel.y);
  const x = {
    field: panel.x,
    type: 'quantitative',
    title: panel.xTitle,
    // SI-prefixed counts (500k, 1M, 1.5M), with a plain 0 at the origin.
    axis: panel.x === 'examples' || panel.x === 'step' ? { labelExpr: "datum.value == 0 ? '0' : format(datum.value, '~s')" } : {},
  };
  const color = { field: 'label', type: 'nominal', title: 'Run (mean over seeds)', scale: { domain } };
  const band = values.some((v) => v.lo !== undefined)
    ? [
        {
          transform: [{ filter: 'isValid(datum.lo) && isValid(datum.hi)' }],
          mark: { type: 'errorband', opacity: 0.18, clip: true },
          encoding: {
            x,
            y: { field: 'lo', type: 'quantitative', title: panel.yTitle, scale: yScale(panel) },
            y2: { field: 'hi' },
            color,
            detail: { field: 'line', type: 'nominal' },
          },
        },
      ]
    : [];
  return {
    title: panel.title,
    width: PANEL_WIDTH,
    height: PANEL_HEIGHT,
    data: { values },
    layer: [
      ...band,
      {
        mark: { type: 'line', strokeWidth: 1.8, clip: true, ...(dashed ? { strokeDash: TRAIN_DASH } : {}) },
        encoding: lineEncoding(panel, x, color),
      },
    ],
  };
}

/** The y scale of a panel (a log scale has no zero to leave out). */
function yScale(panel: PanelSpec): Record<string, unknown> {
  return panel.scaleY === 'log' ? { type: 'log', nice: true } : { type: 'linear', zero: false, nice: true };
}

function lineEncoding(panel: PanelSpec, x: Record<string, unknown>, color: Record<string, unknown>): Record<string, unknown> {
  return {
    x,
    y: {
      field: panel.y,
      type: 'quantitative',
      title: panel.yTitle,
      scale: yScale(panel),
    },
    color,
    // Two lines with the same label are still separate lines.
    detail: { field: 'line', type: 'nominal' },
    order: { field: panel.x, type: 'quantitative' },
    tooltip: [
      { field: 'label', type: 'nominal', title: 'Run' },
      { field: panel.x, type: 'quantitative', title: panel.xTitle, format: ',' },
      { field: panel.y, type: 'quantitative', title: `${panel.yTitle} (mean)`, format: '.4f' },
      { field: 'seeds', type: 'quantitative', title: 'seeds' },
    ],
  };
}

/** Builds the Vega-Lite spec of a figure, with the data inlined. */
export function buildVegaLiteSpec(spec: FigureSpec, runs: LoadedRun[]): TopLevelSpec {
  const plotted = runs.filter((r) => r.rows.length > 0);
  const domain = labelDomain(plotted);
  const subtitle =
    plotted.length === 0
      ? `No runs with data in ${spec.resultsDir}`
      : `Dashed: training metrics; solid: test metrics. Each line: the mean over its seeds; band: their 95 % t interval. Data: ${spec.resultsDir} (${linesOf(plotted).length} line${linesOf(plotted).length === 1 ? '' : 's'}, ${plotted.length} run${plotted.length === 1 ? '' : 's'})`;
  const panels =
    plotted.length === 0
      ? [messagePanel('No data', `No runs found in ${spec.resultsDir} yet`)]
      : spec.panels.map((p) => linePanel(p, plotted, domain));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${spec.id}: ${spec.title}`, subtitle, anchor: 'start', fontSize: 16, subtitleFontSize: 12 },
    background: 'white',
    padding: 12,
    concat: panels,
    columns: PANELS_PER_ROW,
    spacing: 28,
    resolve: { scale: { color: 'shared' }, legend: { color: 'shared' } },
    config: {
      font: FONT,
      axis: { titleFontSize: 13, labelFontSize: 11, titleFontWeight: 'normal', grid: true, gridColor: '#e6e6e6' },
      legend: { titleFontSize: 12, labelFontSize: 12, labelLimit: 320, titleLimit: 320, symbolType: 'stroke', symbolStrokeWidth: 2.5, symbolOpacity: 1 },
      header: { titleFontSize: 13 },
      title: { subtitleColor: '#555' },
      view: { stroke: '#bbb' },
      range: { category: { scheme: 'tableau10' } },
    },
  } as unknown as TopLevelSpec;
}

/**
 * JSON text of a spec: indented, except that each inlined data row takes one line (a run can have thousands of
 * rows, and one number per line would make the file unreadable and large).
 */
export function stringifySpec(vlSpec: TopLevelSpec): string {
  const blocks: unknown[][] = [];
  const text = JSON.stringify(
    vlSpec,
    (key, value: unknown) => {
      if (key === 'values' && Array.isArray(value)) {
        blocks.push(value);
        return `__inline_values_${blocks.length - 1}__`;
      }
      return value;
    },
    2,
  );
  const withData = text.replace(/"__inline_values_(\d+)__"/g, (_, i: string) => {
    const rows = blocks[Number(i)]!.map((v) => JSON.stringify(v));
    return rows.length === 0 ? '[]' : `[\n${rows.join(',\n')}\n]`;
  });
  return `${withData}\n`;
}

/** Compiles a Vega-Lite spec and renders it to an SVG string with vega's headless view. */
export async function vegaLiteToSvg(vlSpec: TopLevelSpec): Promise<string> {
  const { spec } = compile(vlSpec);
  const view = new View(parseVega(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterises an SVG string to PNG at PNG_SCALE times its CSS-pixel size. */
export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 72 * PNG_SCALE }).png().toBuffer();
}

/**
 * Renders a figure from its runs and writes <outDir>/<id>.svg, <id>.png and <id>.vl.json. Runs without rows are
 * left out of the plot; with none left, the figure says that there is no data yet.
 */
export async function renderFigure(spec: FigureSpec, runs: LoadedRun[], outDir = 'reports'): Promise<RenderedFiles> {
  await mkdir(outDir, { recursive: true });
  const vlSpec = buildVegaLiteSpec(spec, runs);
  const svg = await vegaLiteToSvg(vlSpec);
  const png = await svgToPng(svg);
  const files: RenderedFiles = {
    svg: path.join(outDir, `${spec.id}.svg`),
    png: path.join(outDir, `${spec.id}.png`),
    vlSpecPath: path.join(outDir, `${spec.id}.vl.json`),
  };
  await Promise.all([
    writeFile(files.vlSpecPath, stringifySpec(vlSpec)),
    writeFile(files.svg, svg),
    writeFile(files.png, png),
  ]);
  return files;
}
