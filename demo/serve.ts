/**
 * `npm run demo`: builds the demo and serves it on http://127.0.0.1:PORT with esbuild's server (the bundles are
 * rebuilt on reload when a source file changed). `--check` instead opens the page in headless Chromium, runs the
 * default training run to the end and prints both optimizers' test accuracy (and writes demo/dist/check.json and a
 * screenshot).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { runDemoInBrowser, serveDemo } from './run-in-browser';

const opts = new Command()
  .name('demo')
  .description('the K-FAC vs SGD browser demo')
  .option('--port <n>', 'port on 127.0.0.1 (0: any free port)', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port number');
    return n;
  }, 8040)
  .option('--check', 'run the default training run in headless Chromium and report the test accuracies')
  .option('--query <params>', 'URL parameters for --check, e.g. steps=100&batch=32', '')
  .parse()
  .opts<{ port: number; check?: boolean; query: string }>();

const server = await serveDemo(opts.port);
if (!opts.check) {
  console.log(`demo: serving ${server.url} (Ctrl-C to stop)`);
} else {
  console.log(`demo: checking ${server.url} in headless Chromium (the default run takes a few minutes)`);
  try {
    const r = await runDemoInBrowser(server.url, {
      query: opts.query,
      screenshot: join(server.dir, 'check.png'),
      onProgress: (s) => process.stdout.write(`\r  K-FAC ${s.kfac} / SGD ${s.sgd} of ${s.target} steps   `),
    });
    process.stdout.write('\n');
    for (const m of ['kfac', 'sgd'] as const) {
      const e = r.runs[m].evals.at(-1);
      console.log(`  ${m === 'kfac' ? 'K-FAC' : 'SGD  '}: ${r.runs[m].steps.length} steps in ${r.runs[m].seconds.toFixed(1)} s, final test accuracy ${e ? (100 * e.acc).toFixed(1) : '?'} %, test loss ${e?.loss.toFixed(4)}`);
    }
    console.log(`  backend: ${r.backend?.name} (${r.backend?.detail})`);
    if (r.consoleErrors.length) console.log(`  console errors:\n    ${r.consoleErrors.join('\n    ')}`);
    const out = join(server.dir, 'check.json');
    writeFileSync(out, JSON.stringify(r, null, 1));
    console.log(`demo: results in ${out}, screenshot ${r.screenshot}`);
    process.exitCode = r.consoleErrors.length ? 1 : 0;
  } finally {
    await server.close();
  }
}
