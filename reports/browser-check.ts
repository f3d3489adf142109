/**
 * Opens a generated report page in real headless Chromium (file:// URL, no network) and checks it: no console
 * errors, no page errors, no failed requests, every <img>/<object> loaded with a non-zero size. Saves a full-page
 * screenshot next to the page as <name>.screenshot.png.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

/** Where Chromium is expected (Debian package `chromium`); override with CHROMIUM_PATH. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface BrowserCheck {
  ok: boolean;
  /** console errors, page errors and failed requests, in the order seen */
  consoleErrors: string[];
  /** every <img> (natural width) and <object> (rendered width) on the page */
  images: { src: string; naturalWidth: number }[];
  /** path of the screenshot PNG */
  screenshot: string;
}

/** True when the Chromium binary is present. */
export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM_PATH);
}

/**
 * Debian's Chromium, headless, no network services, with a new empty profile (--user-data-dir, removed by `close`).
 */
export async function launchChromium(viewport = { width: 1366, height: 900 }): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  if (!chromiumAvailable()) throw new Error(`Chromium not found at ${CHROMIUM_PATH} (apt-get install chromium, or set CHROMIUM_PATH)`);
  const profile = mkdtempSync(path.join(tmpdir(), 'dkfac-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, viewport });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Appends every console error, page error and failed request of `page` (and of its workers) to `errors`. */
export function collectErrors(page: Page, errors: string[]): void {
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => errors.push(`request failed: ${req.url()} (${req.failure()?.errorText ?? '?'})`));
  page.on('worker', (w) => w.on('console', (msg) => msg.type() === 'error' && errors.push(`worker console: ${msg.text()}`)));
}

/** Loads `htmlPath` in headless Chromium and reports what went wrong, if anything. */
export async function checkInBrowser(htmlPath: string): Promise<BrowserCheck> {
  const absolute = path.resolve(htmlPath);
  const screenshot = absolute.replace(/\.html?$/i, '') + '.screenshot.png';
  const browser = await launchChromium();
  const consoleErrors: string[] = [];
  try {
    const page = await browser.context.newPage();
    collectErrors(page, consoleErrors);
    const response = await page.goto(pathToFileURL(absolute).href, { waitUntil: 'load' });
    if (response && !response.ok()) consoleErrors.push(`page load: HTTP-like status ${response.status()}`);
    // <picture>/<img> may still be decoding after 'load' on slow machines: wait until every image is complete.
    // (Browser-side code is passed as strings: this project's tsconfig has no DOM types.)
    await page.waitForFunction('[...document.images].every((img) => img.complete)', undefined, { timeout: 15_000 });
    const images = (await page.evaluate(`[
      ...[...document.images].map((img) => ({ src: img.currentSrc || img.src, naturalWidth: img.naturalWidth })),
      ...[...document.querySelectorAll('object')].map((o) => ({
        src: o.data,
        naturalWidth: Math.round(o.getBoundingClientRect().width),
      })),
    ]`)) as { src: string; naturalWidth: number }[];
    await page.screenshot({ path: screenshot, fullPage: true });
    const ok = consoleErrors.length === 0 && images.every((i) => i.naturalWidth > 0);
    return { ok, consoleErrors, images, screenshot };
  } finally {
    await browser.close();
  }
}
