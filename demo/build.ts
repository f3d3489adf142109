/**
 * Builds the demo page into a folder: the page and worker scripts bundled by esbuild for the browser (dkfac's own
 * src/, data-pipeline/ and examples/ code; a Node module anywhere in their import graph fails the build), the page,
 * tfjs-backend-wasm's binaries (served for setWasmPaths) and the embedded Fashion-MNIST files.
 */
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { DEFAULT_EMBEDDED_ROOT } from '../data-pipeline/locate';

const here = dirname(fileURLToPath(import.meta.url));
export const DEMO_OUT = join(here, 'dist');

/** The esbuild options of the page and worker bundles (for a build or a serve context). */
export function bundleOptions(outdir: string): esbuild.BuildOptions & { metafile: true } {
  return {
    entryPoints: { main: join(here, 'page', 'main.ts'), worker: join(here, 'page', 'worker.ts') },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outdir,
    sourcemap: true,
    minify: true,
    metafile: true,
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  };
}

/** Copies the page, the wasm binaries and the data next to the bundles. */
export function copyAssets(outdir: string): void {
  mkdirSync(join(outdir, 'wasm'), { recursive: true });
  mkdirSync(join(outdir, 'data'), { recursive: true });
  copyFileSync(join(here, 'page', 'index.html'), join(outdir, 'index.html'));
  const wasmDir = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  for (const f of readdirSync(join(wasmDir, 'dist')).filter((f) => f.endsWith('.wasm'))) copyFileSync(join(wasmDir, 'dist', f), join(outdir, 'wasm', f));
  const data = join(DEFAULT_EMBEDDED_ROOT, 'fashion-mnist');
  for (const f of readdirSync(data).filter((f) => f.endsWith('.gz'))) copyFileSync(join(data, f), join(outdir, 'data', f));
}

/** Builds everything into `outdir`; returns esbuild's metafile (what went into each bundle). */
export async function buildDemo(outdir = DEMO_OUT): Promise<esbuild.Metafile> {
  copyAssets(outdir);
  const r = await esbuild.build(bundleOptions(outdir));
  return r.metafile;
}
