/**
 * The package as a user gets it: `npm pack` (which builds dist/ through `prepare`), a new empty project outside the
 * repository installs the tarball, and the README's "Use K-FAC in your tfjs code" example runs there with plain
 * Node: it trains, saves to file://, and the saved model reloads with the same predictions. TypeScript (strict,
 * nodenext resolution) type-checks a use of the package's types in that project.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
let work: string;
let project: string;

/** The first ```js block of the README section "Use K-FAC in your tfjs code". */
function readmeExample(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Use K-FAC in your tfjs code'));
  if (!section) throw new Error('README.md has no section "Use K-FAC in your tfjs code"');
  const m = section.match(/```js\n([\s\S]*?)```/);
  if (!m) throw new Error('the README section has no ```js example');
  return m[1]!;
}

const npm = (args: string[], cwd: string) =>
  execFileSync('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd, encoding: 'utf8', timeout: 300_000 });

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'dkfac-package-'));
  npm(['pack', '--pack-destination', work], root);
  project = join(work, 'project');
  execFileSync('mkdir', [project]);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'a-tfjs-project', private: true, type: 'module' }));
  const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'))!;
  npm(['install', join(work, tarball)], project);
}, 600_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the packed package in a new project', () => {
  it('holds dist/ and the README, not the suite', () => {
    const pkg = join(project, 'node_modules', 'dkfac');
    expect(existsSync(join(pkg, 'dist', 'src', 'index.js'))).toBe(true);
    expect(existsSync(join(pkg, 'dist', 'src', 'browser.js'))).toBe(true);
    expect(existsSync(join(pkg, 'README.md'))).toBe(true);
    for (const dir of ['experiments', 'results', 'reports', 'test', 'src/index.ts']) expect(existsSync(join(pkg, dir))).toBe(false);
    // the user's @tensorflow/tfjs is the one dkfac uses (a peer dependency: one copy)
    expect(existsSync(join(pkg, 'node_modules', '@tensorflow', 'tfjs'))).toBe(false);
    expect(existsSync(join(project, 'node_modules', '@tensorflow', 'tfjs'))).toBe(true);
  });

  it("runs the README example with plain Node: trains, saves, and the saved model reloads", () => {
    const check = `
const back = await tf.loadLayersModel('file://./my-model/model.json');
const diff = tf.max(tf.abs(tf.sub(model.predict(xs), back.predict(xs)))).dataSync()[0];
console.log('RESULT ' + JSON.stringify({ backend: tf.getBackend(), loss: history.history.loss, diff }));
`;
    writeFileSync(join(project, 'train.mjs'), readmeExample() + check);
    const r = spawnSync(process.execPath, ['train.mjs'], { cwd: project, encoding: 'utf8', timeout: 300_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const res = JSON.parse(r.stdout.split('RESULT ')[1]!) as { backend: string; loss: number[]; diff: number };
    expect(res.backend).toBe('wasm');
    expect(res.loss.length).toBeGreaterThan(1);
    expect(res.loss.at(-1)!).toBeLessThan(res.loss[0]! * 0.8);
    expect(res.diff).toBe(0);
    expect(existsSync(join(project, 'my-model', 'model.json'))).toBe(true);
    expect(existsSync(join(project, 'my-model', 'weights.bin'))).toBe(true);
  });

  it('type-checks a TypeScript use of the package (strict, nodenext)', () => {
    writeFileSync(
      join(project, 'check.ts'),
      `import * as tf from '@tensorflow/tfjs';
import { fitKfac, kfac, sgd, type KfacHistory } from 'dkfac';
const m = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 3, activation: 'softmax' })] });
const h: Promise<KfacHistory> = fitKfac(m, tf.zeros([2, 4]), tf.tensor1d([0, 1]), { optimizer: sgd({ lr: 0.1 }), epochs: 2 });
// @ts-expect-error: options are typed, so a misspelt key does not compile (an untyped 'any' would fail this check)
kfac({ dampnig: 1 });
void h;
`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, skipLibCheck: true, types: [] }, files: ['check.ts'] }),
    );
    const r = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
