#!/usr/bin/env node
// Builds the native engine's addon (native/build/Release/dkfac_native.node) with node-gyp. Run by `npm ci` / `npm
// install` (the package's `install` script) and by `npm run build:native`.
//
// It never fails the install: where the addon cannot be built (no C++ compiler, no oneDNN/OpenBLAS development
// files, no Node headers, another OS) it prints one line saying why, keeps the compiler's output in native/build.log,
// and exits 0; every run then uses the wasm engine and says so. It never downloads anything: node-gyp gets Node's own
// headers from Node's install prefix (`--nodedir`), and the build is skipped when they are not there.
//
// DKFAC_NATIVE=0 skips the build. `--require` (or DKFAC_NATIVE=required) makes a failed build an error (exit 1).
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const required = process.argv.includes('--require') || process.env.DKFAC_NATIVE === 'required';
const log = join(here, 'build.log');

function skip(reason) {
  const line = `dkfac: native engine not built (${reason}); runs will use the wasm engine`;
  if (required) {
    console.error(`error: ${line}`);
    process.exit(1);
  }
  console.log(line);
  process.exit(0);
}

if (process.env.DKFAC_NATIVE === '0') skip('DKFAC_NATIVE=0');
if (process.platform !== 'linux' || process.arch !== 'x64') skip(`${process.platform}-${process.arch} is not supported yet (linux-x64 only)`);

/** Node's headers: `<prefix>/include/node/node_api.h` next to the running node binary. */
const nodedir = dirname(dirname(process.execPath));
if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
  skip(`Node's headers are not installed under ${nodedir}/include/node (node-gyp would download them)`);
}

/** node-gyp: npm's own (npm sets npm_config_node_gyp in lifecycle scripts), else the copy bundled with npm. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(nodedir, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed as a package
  }
  return candidates.find((c) => c && existsSync(c));
}
const gyp = findNodeGyp();
if (!gyp) skip('node-gyp not found (it comes with npm)');

const which = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
if (!which('c++') && !which('g++')) skip('no C++ compiler (apt-get install g++)');
const missing = [
  ['/usr/include/oneapi/dnnl/dnnl.hpp', 'libdnnl-dev'],
  ['/usr/lib/x86_64-linux-gnu/libopenblas.so', 'libopenblas-dev'],
].filter(([f]) => !existsSync(f) && !existsSync(f.replace('/usr/', '/usr/local/')));
if (missing.length) skip(`missing development files: apt-get install ${missing.map(([, p]) => p).join(' ')}`);

const t0 = Date.now();
const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`], { cwd: here, encoding: 'utf8' });
writeFileSync(log, `${r.stdout ?? ''}\n${r.stderr ?? ''}`);
if (r.status !== 0) {
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim());
  const why =
    lines.find((l) => /fatal error|cannot find -l|undefined reference/.test(l)) ??
    lines.find((l) => /\berror\b/.test(l) && !/^gyp ERR!/.test(l)) ??
    `node-gyp exited with ${r.status}`;
  skip(`${why.slice(0, 160)}; see native/build.log`);
}
console.log(`dkfac: native engine built in ${((Date.now() - t0) / 1000).toFixed(1)} s (native/build/Release/dkfac_native.node)`);
