/**
 * The browser demo end to end: built by esbuild (nothing Node-only in the page's import graph, and the training
 * code is the library's own src/), served on 127.0.0.1, opened in headless Chromium; Start trains K-FAC and SGD in
 * two web workers on wasm for a few steps; both training losses fall, the test evaluations arrive, no console error
 * occurs, the page answers while training, Stop stops both runs, and a screenshot is saved.
 */
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDemoInBrowser, serveDemo, type DemoServer } from '../demo/run-in-browser';
import { chromiumAvailable, CHROMIUM_PATH } from '../reports/browser-check';

let server: DemoServer;
const dir = mkdtempSync(join(tmpdir(), 'dkfac-demo-'));

beforeAll(async () => {
  server = await serveDemo(0, dir);
});
afterAll(async () => {
  await server?.close();
});

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('demo bundle', () => {
  it("bundles the library's own training code and no Node-only module", async () => {
    const own = server.inputs.filter((f) => !f.includes('node_modules'));
    for (const f of ['src/fit/fit.ts', 'src/kfac/optimizer.ts', 'src/train/trainer.ts', 'src/backend/wasm-fixes.ts', 'data-pipeline/idx-format.ts', 'examples/convnet.ts']) {
      expect(own).toContain(f);
    }
    // the Node-side modules of the same folders stay out (they would not even bundle for the browser)
    for (const f of ['src/backend/index.ts', 'src/train/session.ts', 'src/train/run.ts', 'src/io/file-system.ts', 'data-pipeline/idx.ts', 'data-pipeline/locate.ts']) {
      expect(own).not.toContain(f);
    }
    expect(server.inputs.some((f) => f.startsWith('node:'))).toBe(false);
    // the wasm binaries are served as wasm (tfjs compiles them with instantiateStreaming)
    const r = await fetch(`${server.url}wasm/tfjs-backend-wasm-simd.wasm`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/wasm');
  });
});

describe('demo page in headless Chromium', () => {
  it('trains K-FAC and SGD side by side on wasm: both losses fall, no console error, Stop stops', async (ctx) => {
    if (!chromiumAvailable()) {
      if (process.env.CI) throw new Error(`Chromium is required in CI but missing at ${CHROMIUM_PATH}`);
      console.warn(`SKIPPED browser demo check: no Chromium at ${CHROMIUM_PATH}`);
      ctx.skip();
    }
    // kept after the run for a person to look at (demo/dist/ is not versioned)
    mkdirSync(join(import.meta.dirname, '..', 'demo', 'dist'), { recursive: true });
    const screenshot = join(import.meta.dirname, '..', 'demo', 'dist', 'test.screenshot.png');
    const r = await runDemoInBrowser(server.url, { query: 'steps=200&evalEvery=10&batch=32', stopAfter: 24, screenshot, timeoutMs: 240_000 });
    expect(r.consoleErrors).toEqual([]);
    expect(r.backend?.name).toBe('wasm');
    expect(r.backend?.detail).toMatch(/training-kernel fixes/);
    for (const m of ['kfac', 'sgd'] as const) {
      const run = r.runs[m];
      expect(run.error).toBeUndefined();
      // stopped after the click: far fewer than the 200 steps asked for
      expect(run.status).toBe('stopped');
      expect(run.steps.length).toBeGreaterThanOrEqual(24);
      expect(run.steps.length).toBeLessThan(100);
      const losses = run.steps.map((s) => s.loss);
      // from about ln 10 at the start, the mean loss of the last 8 steps is well below that of the first 4
      expect(mean(losses.slice(0, 4))).toBeGreaterThan(1.8);
      expect(mean(losses.slice(-8))).toBeLessThan(0.8 * mean(losses.slice(0, 4)));
      // test evaluations every 10 steps, on the whole test split, and better than chance
      expect(run.evals.length).toBeGreaterThanOrEqual(2);
      expect(run.evals.at(-1)!.acc).toBeGreaterThan(0.4);
    }
    // the main thread stayed responsive while both workers trained
    expect(r.maxLatencyMs).toBeLessThan(2000);
    expect(existsSync(screenshot)).toBe(true);
    const meta = await sharp(screenshot).metadata();
    expect(meta.width).toBeGreaterThan(1000);
  });
});
