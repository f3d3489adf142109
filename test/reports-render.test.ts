/**
 * Rendering and the report page, end to end on a SYNTHETIC results directory: figure files written, SVG carries the
 * labels and axis titles, the PNG decodes, the page escapes hostile labels, and the page renders in real headless
 * Chromium with no console errors and every image loaded.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumAvailable, checkInBrowser, CHROMIUM_PATH } from '../reports/browser-check';
import { generateReports, type GenerateResult } from '../reports/cli';
import { fig6 } from '../reports/figures/fig6';
import { buildIndex, escapeHtml } from '../reports/index-page';
import { loadRuns } from '../reports/load';
import { buildVegaLiteSpec, renderFigure } from '../reports/render';
import type { FigureSpec } from '../reports/types';
import { writeSyntheticRun } from '../reports/synthetic';

let root: string;
let results: string;
let out: string;
const LABELS: string[] = [];
const HOSTILE = 'SGD+BN bz2048 <script>alert("x")</script> & co';
const SEEDS = [1, 2, 3];

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'dkfac-reports-render-'));
  results = path.join(root, 'results');
  out = path.join(root, 'reports');
  const dir = path.join(results, 'fig6');
  const curve = (scale: number) => (e: number) => scale * (1.3 + Math.exp(-e / 2e5));
  for (const [method, name, scales] of [
    ['kfac', 'dist.K-FAC', [1, 1.02, 1.03]],
    ['sgd+bn', 'SGD+BN', [1, 1.1, 1.3]],
  ] as const) {
    for (const [i, bs] of [128, 512, 1024].entries()) {
      const label = method === 'sgd+bn' && bs === 1024 ? HOSTILE : `${name} bz${bs}`;
      LABELS.push(label);
      const group = `${method.replace('+', '')}-bz${bs}`;
      // three seeds per line, each a little off the line's curve
      for (const [k, seed] of SEEDS.entries()) {
        await writeSyntheticRun(dir, {
          run: `${group}-s${seed}`,
          group,
          seed,
          label,
          method,
          batchSize: bs,
          trainLoss: curve(scales[i]! * (1 + 0.004 * (k - 1))),
          steps: Math.floor(1_000_000 / bs),
          logEvery: 4,
        });
      }
    }
  }
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('renderFigure', () => {
  it('writes SVG, PNG and the Vega-Lite spec; the SVG names every run and axis', async () => {
    const runs = await loadRuns(path.join(results, 'fig6'));
    const files = await renderFigure(fig6, runs, out);
    for (const f of Object.values(files)) expect(existsSync(f)).toBe(true);
    expect(path.basename(files.svg)).toBe('fig6.svg');

    const svg = await readFile(files.svg, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    for (const label of LABELS) expect(svg).toContain(escapeXml(label));
    expect(svg).not.toContain('<script>');
    // the legend shows the short labels as text
    for (const label of LABELS.filter((l) => l !== HOSTILE)) expect(svg).toContain(`>${label}</text>`);
    for (const p of fig6.panels) {
      expect(svg).toContain(p.xTitle);
      expect(svg).toContain(p.yTitle);
    }
    // training-metric panels are dashed
    expect(svg).toContain('stroke-dasharray="6,3"');

    const meta = await sharp(files.png).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThan(1200);
    expect(meta.height).toBeGreaterThan(400);
    expect(meta.width! / meta.height!).toBeGreaterThan(1.5); // two panels side by side

    const vl = JSON.parse(await readFile(files.vlSpecPath, 'utf8'));
    expect(vl.concat).toHaveLength(fig6.panels.length);
    expect(vl.concat[0].data.values.length).toBeGreaterThan(100);
    // each line: the mean over its three seeds, with a Vega-Lite errorband of their 95 % interval under it
    const [band, line] = vl.concat[0].layer;
    expect(band.mark.type).toBe('errorband');
    expect(band.encoding.y.field).toBe('lo');
    expect(band.encoding.y2.field).toBe('hi');
    expect(line.mark.type).toBe('line');
    expect(line.encoding.y.field).toBe('train_loss');
    // one point per line and logged step (6 lines), not one per run (18)
    const steps = (bs: number) => Math.floor(Math.floor(1_000_000 / bs) / 4);
    expect(vl.concat[0].data.values).toHaveLength(2 * (steps(128) + steps(512) + steps(1024)));
    // the mean and the band of one point, computed here from the three seeds' rows
    const p = vl.concat[0].data.values.find((v: { line: string; examples: number }) => v.line === 'kfac-bz128' && v.examples === 400 * 128);
    const ys = [-1, 0, 1].map((d) => (1 + 0.004 * d) * (1.3 + Math.exp(-(400 * 128) / 2e5)));
    const m = ys.reduce((a, b) => a + b, 0) / 3;
    const sd = Math.sqrt(ys.reduce((a, y) => a + (y - m) ** 2, 0) / 2);
    const t2 = 0.95 * Math.sqrt(2 / (1 - 0.95 ** 2)); // t(0.975, 2) in closed form: the df = 2 CDF is 1/2 + t / (2√(t² + 2))
    expect(p.train_loss).toBeCloseTo(m, 12);
    expect(p.seeds).toBe(3);
    expect(p.lo).toBeCloseTo(m - (t2 * sd) / Math.sqrt(3), 9);
    expect(p.hi).toBeCloseTo(m + (t2 * sd) / Math.sqrt(3), 9);
    expect(svg).toContain('band: their 95 % t interval');
  });

  it('draws train metrics dashed and test metrics solid, dropping rows where y was not measured', async () => {
    const runs = await loadRuns(path.join(results, 'fig6'));
    const spec = {
      ...fig6,
      id: 'figtest',
      panels: [
        { x: 'step', y: 'train_error', title: 'train', xTitle: 'Updates', yTitle: 'Training error' },
        { x: 'wall_seconds', y: 'test_loss', title: 'test', xTitle: 'Seconds', yTitle: 'Test NLL', scaleY: 'log' },
      ],
    } satisfies FigureSpec;
    type Layer = { mark: { type: string; strokeDash?: number[] }; encoding: { y: { scale: { type: string } } } };
    const vl = buildVegaLiteSpec(spec, runs) as unknown as { concat: { layer: Layer[]; data: { values: Record<string, number>[] } }[] };
    const line = (i: number) => vl.concat[i]!.layer.at(-1)!;
    expect(line(0).mark.strokeDash).toEqual([6, 3]);
    expect(line(1).mark.strokeDash).toBeUndefined();
    expect(line(1).encoding.y.scale.type).toBe('log');
    // test metrics exist on every 5th logged row only: exactly those steps are plotted, once per line (3 seeds each)
    const measured = runs.reduce((n, r) => n + r.rows.filter((row) => row.test_loss !== undefined).length, 0);
    expect(measured).toBeGreaterThan(0);
    expect(vl.concat[1]!.data.values).toHaveLength(measured / SEEDS.length);
    expect(vl.concat[1]!.data.values.every((v) => Number.isFinite(v.test_loss))).toBe(true);
    const files = await renderFigure(spec, runs, out);
    expect(await readFile(files.svg, 'utf8')).toContain('Test NLL');
  });

  it('draws a figure that says there is no data when there are no runs', async () => {
    const files = await renderFigure(fig6, [], path.join(root, 'empty'));
    const svg = await readFile(files.svg, 'utf8');
    expect(svg).toContain('No runs found in results/fig6');
    expect((await sharp(files.png).metadata()).width).toBeGreaterThan(100);
  });
});

describe('index page', () => {
  let gen: GenerateResult;
  beforeAll(async () => {
    // only Figure 6: the synthetic results dir holds its runs alone
    gen = await generateReports({ resultsRoot: results, outDir: out, figures: [fig6], log: () => {}, generatedAt: new Date('2017-02-19T00:00:00Z') });
  });

  it('lists the claim with its status, the verdict, and a run table from the files; escapes labels', async () => {
    const html = await readFile(gen.indexPath, 'utf8');
    expect(gen.figures[0]!.verdict.status).toBe('reproduced');
    expect(gen.figures[0]!.verdict.seeds).toEqual(SEEDS);
    // the claims table carries the intervals the status rests on
    expect(html).toContain(escapeHtml(gen.figures[0]!.verdict.summary!));
    expect(gen.figures[0]!.verdict.summary).toMatch(/K-FAC worst gap .*95 % CI .*3 seeds/);
    expect(html).toContain('2017-02-19T00:00:00.000Z');
    expect(html).toContain('<span class="badge ok">reproduced</span>');
    expect(html).toContain(escapeHtml(fig6.paperClaim));
    expect(html).toContain(escapeHtml(gen.figures[0]!.verdict.text));
    expect(html).not.toContain('<script>');
    expect(html).toContain('SGD+BN bz2048 &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co');
    expect(html).toContain('src="fig6.png"');
    expect(html).toContain('srcset="fig6.svg"');
    // one run row per run, with the synthetic data source recorded in the sidecars
    expect(html.match(/<td>synthetic: synthetic<\/td>/g)).toHaveLength(18);
  });

  it('escapes every special character', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });

  it('writes a page for figures without runs too', async () => {
    const dir = path.join(root, 'no-runs');
    const files = await renderFigure(fig6, [], dir);
    const page = await buildIndex([{ spec: fig6, runs: [], verdict: fig6.verdict!([]), files }], dir);
    const html = await readFile(page, 'utf8');
    expect(html).toContain('<span class="badge none">no data</span>');
    expect(html).toContain('No runs recorded yet.');
  });

  it('renders in headless Chromium with no console errors and every image loaded', async (ctx) => {
    if (!chromiumAvailable()) {
      if (process.env.CI) throw new Error(`Chromium is required in CI but missing at ${CHROMIUM_PATH}`);
      console.warn(`SKIPPED browser check: no Chromium at ${CHROMIUM_PATH} (apt-get install chromium)`);
      ctx.skip();
    }
    const check = await checkInBrowser(gen.indexPath);
    expect(check.consoleErrors).toEqual([]);
    expect(check.images.length).toBe(1);
    for (const img of check.images) expect(img.naturalWidth).toBeGreaterThan(0);
    expect(check.ok).toBe(true);
    const shot = await sharp(check.screenshot).metadata();
    expect(shot.width).toBeGreaterThan(1000);
    expect(path.basename(check.screenshot)).toBe('index.screenshot.png');
  });

  it('reports a broken image as not ok', async (ctx) => {
    if (!chromiumAvailable()) ctx.skip();
    const dir = path.join(root, 'broken');
    const files = await renderFigure(fig6, [], dir);
    const page = await buildIndex(
      [{ spec: fig6, runs: [], verdict: fig6.verdict!([]), files: { ...files, svg: path.join(dir, 'missing.svg'), png: path.join(dir, 'missing.png') } }],
      dir,
    );
    const check = await checkInBrowser(page);
    expect(check.ok).toBe(false);
    expect(check.images.some((i) => i.naturalWidth === 0)).toBe(true);
  });
});

/** How vega's SVG renderer escapes attribute values (each line's aria-label names its run's label in full). */
function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
