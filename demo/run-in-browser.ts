/**
 * The demo served on 127.0.0.1 (esbuild's server over the built folder) and driven in headless Chromium (the
 * report check's launcher, reports/browser-check.ts): click Start, follow both runs, optionally click Stop, and
 * collect the page's state, its console errors and a screenshot. Used by `npm run demo -- --check` and the test.
 */
import * as esbuild from 'esbuild';
import { collectErrors, launchChromium } from '../reports/browser-check';
import { bundleOptions, copyAssets, DEMO_OUT } from './build';
import type { Method } from './page/protocol';

export interface DemoServer {
  url: string;
  dir: string;
  /** the project files that went into the page and worker bundles */
  inputs: string[];
  close(): Promise<void>;
}

/** Builds the demo into `dir` and serves it on 127.0.0.1:`port` (0: a free port). */
export async function serveDemo(port = 0, dir = DEMO_OUT): Promise<DemoServer> {
  copyAssets(dir);
  const ctx = await esbuild.context(bundleOptions(dir));
  try {
    const built = await ctx.rebuild();
    const served = await ctx.serve({ servedir: dir, host: '127.0.0.1', port: port || undefined });
    return {
      url: `http://127.0.0.1:${served.port}/`,
      dir,
      inputs: Object.keys(built.metafile.inputs),
      close: () => ctx.dispose(),
    };
  } catch (e) {
    await ctx.dispose();
    throw e;
  }
}

interface Row {
  step: number;
  loss: number;
  acc: number;
}

export interface DemoRun {
  backend: { name: string; detail: string } | null;
  target: number;
  runs: Record<Method, { status: string; steps: Row[]; evals: Row[]; seconds: number; error?: string }>;
  consoleErrors: string[];
  /** the longest a page.evaluate round trip took while training (ms): the main thread stayed responsive */
  maxLatencyMs: number;
  /** the page state when Stop was clicked, if it was */
  atStop?: Record<Method, number>;
  screenshot: string;
}

export interface DemoRunOptions {
  /** URL parameters, e.g. 'steps=30&evalEvery=10' */
  query?: string;
  /** click Stop once both runs have made this many steps (otherwise wait for both to finish) */
  stopAfter?: number;
  screenshot: string;
  onProgress?(s: { kfac: number; sgd: number; target: number }): void;
  /** give up after this long (ms) */
  timeoutMs?: number;
}

type PageState = Omit<DemoRun, 'consoleErrors' | 'maxLatencyMs' | 'screenshot' | 'atStop'> & { running: boolean };

/** Opens the page, starts training with the Start button and follows it to the end (or to a Stop). */
export async function runDemoInBrowser(url: string, o: DemoRunOptions): Promise<DemoRun> {
  const browser = await launchChromium({ width: 1280, height: 1000 });
  const consoleErrors: string[] = [];
  try {
    const page = await browser.context.newPage();
    collectErrors(page, consoleErrors);
    await page.goto(`${url}${o.query ? `?${o.query}` : ''}`, { waitUntil: 'load' });
    await page.waitForFunction('window.demo !== undefined', undefined, { timeout: 60_000 });
    await page.click('#start');
    const read = () => page.evaluate('window.demo') as Promise<PageState>;
    const deadline = Date.now() + (o.timeoutMs ?? 30 * 60_000);
    let maxLatencyMs = 0;
    let atStop: Record<Method, number> | undefined;
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      const t = Date.now();
      const s = await read();
      maxLatencyMs = Math.max(maxLatencyMs, Date.now() - t);
      const n = { kfac: s.runs.kfac.steps.length, sgd: s.runs.sgd.steps.length };
      o.onProgress?.({ ...n, target: s.target });
      if (!s.running) break;
      if (consoleErrors.length) break;
      if (o.stopAfter !== undefined && !atStop && n.kfac >= o.stopAfter && n.sgd >= o.stopAfter) {
        atStop = n;
        await page.click('#stop');
      }
      if (Date.now() > deadline) throw new Error(`the demo did not finish within ${(o.timeoutMs ?? 0) / 1000} s (K-FAC ${n.kfac}, SGD ${n.sgd} steps)`);
    }
    // let the charts draw the last rows
    await new Promise((r) => setTimeout(r, 600));
    await page.screenshot({ path: o.screenshot, fullPage: true });
    const s = await read();
    return { backend: s.backend, target: s.target, runs: s.runs, consoleErrors, maxLatencyMs, atStop, screenshot: o.screenshot };
  } finally {
    await browser.close();
  }
}
