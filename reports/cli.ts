/**
 * Regenerates the reports from results/ alone:
 *
 *   npx tsx reports/cli.ts [--only fig6[,fig7]] [--results results] [--out reports] [--check]
 *
 * Every figure in the registry is loaded and judged; the selected ones (all by default) are re-rendered, the others
 * only when their files are missing, then reports/index.html is rebuilt. --check opens the page in headless
 * Chromium and exits non-zero on console errors or broken images. Experiments call generateReports() after a run.
 */
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { checkInBrowser, type BrowserCheck } from './browser-check';
import { FIGURES, figureById } from './figures/index';
import { buildIndex, type FigureResult } from './index-page';
import { loadRuns } from './load';
import { renderFigure } from './render';
import { loadGrids } from './tuning';
import type { FigureSpec, LoadedRun, RenderedFiles, Verdict } from './types';

/** The repository root (the parent of reports/), so defaults do not depend on the working directory. */
export const REPO_ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

export interface GenerateOptions {
  /** root of the results tree (default <repo>/results); a figure's 'results/fig6' maps to <resultsRoot>/fig6 */
  resultsRoot?: string;
  /** where figures and index.html are written (default <repo>/reports) */
  outDir?: string;
  /** figure ids to re-render (default: all) */
  only?: string[];
  /** open the page in headless Chromium afterwards */
  check?: boolean;
  /** progress lines (default console.log) */
  log?: (message: string) => void;
  /** loader warnings (default console.warn) */
  warn?: (message: string) => void;
  /** the generation date shown on the page (default now) */
  generatedAt?: Date;
  /** the figures to report (default the registry FIGURES) */
  figures?: FigureSpec[];
}

export interface GenerateResult {
  figures: FigureResult[];
  indexPath: string;
  /** every file written, in order */
  written: string[];
  check?: BrowserCheck;
}

/** The results directory of a figure under a results root ('results/fig6' → <root>/fig6). */
export function figureResultsDir(spec: FigureSpec, resultsRoot: string): string {
  const rel = path.relative('results', spec.resultsDir);
  return path.resolve(resultsRoot, rel.startsWith('..') ? spec.resultsDir : rel);
}

function judge(spec: FigureSpec, runs: LoadedRun[]): Verdict {
  if (spec.verdict) return spec.verdict(runs);
  return { status: 'no data', text: 'This figure has no verdict rule yet.', numbers: {} };
}

function expectedFiles(spec: FigureSpec, outDir: string): RenderedFiles {
  return {
    svg: path.join(outDir, `${spec.id}.svg`),
    png: path.join(outDir, `${spec.id}.png`),
    vlSpecPath: path.join(outDir, `${spec.id}.vl.json`),
  };
}

/** Loads, judges and renders the figures, then writes the index page (and checks it in Chromium when asked). */
export async function generateReports(opts: GenerateOptions = {}): Promise<GenerateResult> {
  const resultsRoot = path.resolve(opts.resultsRoot ?? path.join(REPO_ROOT, 'results'));
  const outDir = path.resolve(opts.outDir ?? path.join(REPO_ROOT, 'reports'));
  const log = opts.log ?? ((m: string) => console.log(m));
  const figures = opts.figures ?? FIGURES;
  const only = opts.only && opts.only.length > 0 ? new Set(opts.only) : undefined;
  if (only) for (const id of only) if (!figures.some((f) => f.id === id)) figureById(id); // throws, listing known ids

  const results: FigureResult[] = [];
  const written: string[] = [];
  for (const spec of figures) {
    const all = await loadRuns(figureResultsDir(spec, resultsRoot), { warn: opts.warn });
    const runs = spec.select ? spec.select(all) : all;
    const grids = await loadGrids(path.join(resultsRoot, 'grid', spec.gridId ?? spec.id));
    const verdict = judge(spec, runs);
    let files = expectedFiles(spec, outDir);
    const missing = !Object.values(files).every((f) => existsSync(f));
    if (!only || only.has(spec.id) || missing) {
      files = await renderFigure(spec, runs, outDir);
      written.push(files.svg, files.png, files.vlSpecPath);
      log(`${spec.id}: ${runs.length} run(s), verdict '${verdict.status}' → ${path.relative(process.cwd(), files.svg)}`);
    }
    results.push({ spec, runs, verdict, files, grids });
  }
  const indexPath = await buildIndex(results, outDir, opts.generatedAt);
  written.push(indexPath);
  const out: GenerateResult = { figures: results, indexPath, written };
  if (opts.check) {
    out.check = await checkInBrowser(indexPath);
    written.push(out.check.screenshot);
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string', multiple: true },
      results: { type: 'string' },
      out: { type: 'string' },
      check: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log('usage: npx tsx reports/cli.ts [--only fig6[,fig7]] [--results results] [--out reports] [--check]');
    return 0;
  }
  const result = await generateReports({
    only: values.only?.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean),
    resultsRoot: values.results,
    outDir: values.out,
    check: values.check,
  });
  for (const file of result.written) console.log(`wrote ${path.relative(process.cwd(), file) || file}`);
  if (result.check) {
    const c = result.check;
    for (const e of c.consoleErrors) console.error(`browser: ${e}`);
    for (const i of c.images) if (i.naturalWidth <= 0) console.error(`browser: image did not load: ${i.src}`);
    console.log(`browser check: ${c.ok ? 'ok' : 'FAILED'} (${c.images.length} image(s); screenshot ${path.relative(process.cwd(), c.screenshot)})`);
    if (!c.ok) return 1;
  }
  return 0;
}

const invokedDirectly = (() => {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
