/**
 * `npm run exp:all`: every figure in paper order, each in its own process, then one report. The end-to-end case runs
 * the real fig2 experiment (distributed runtime, real threads) at one update per run into a temporary results root.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { figureOrder, formatDuration } from '../experiments/all';
import type { Experiment } from '../experiments/registry';

const root = join(import.meta.dirname, '..');

function all(args: string[]) {
  const results = mkdtempSync(join(tmpdir(), 'dkfac-all-'));
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'experiments', 'all.ts'), ...args, '--results', results], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, DKFAC_QUIET: '1' },
    timeout: 280_000,
  });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout, results };
}

describe('exp:all', () => {
  it('orders figures by number (fig2 before fig10) and leaves extras out unless asked', () => {
    const e = (name: string) => ({ name }) as Experiment;
    expect(figureOrder([e('fig10'), e('updates'), e('fig6'), e('fig2')]).map((x) => x.name)).toEqual(['fig2', 'fig6', 'fig10']);
    expect(figureOrder([e('updates'), e('fig6')], true).map((x) => x.name)).toEqual(['fig6', 'updates']);
    expect(formatDuration(3725)).toBe('1h02m');
    expect(formatDuration(95)).toBe('1m35s');
  });

  it('rejects an unknown experiment, naming the known ones, before running anything', () => {
    const r = all(['--only', 'fig99']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown experiment\(s\) fig99 \(known: .*fig6/);
    expect(existsSync(join(r.results, `exp-all-quick.json`))).toBe(false);
  });

  it('runs the selected figure through its experiment, records its time and writes the report', () => {
    const r = all(['--only', 'fig2', '--seeds', '1', '--set', 'examples=128', '--set', 'evals=1', '--set', 'evalExamples=100']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const log = JSON.parse(readFileSync(join(r.results, 'exp-all-quick.json'), 'utf8'));
    expect(log.experiments.map((x: { name: string }) => x.name)).toEqual(['fig2']);
    expect(log.experiments[0].exitCode).toBe(0);
    for (const run of ['kfac-async-gpu1', 'kfac-sync-gpu4']) {
      const csv = readFileSync(join(r.results, 'fig2', `${run}-s1.csv`), 'utf8').trim().split('\n');
      expect(csv.length).toBe(2); // header + the one update
    }
    expect(existsSync(join(r.results, 'report', 'fig2.png'))).toBe(true);
    expect(existsSync(join(r.results, 'report', 'index.html'))).toBe(true);
    expect(r.stdout).toMatch(/claims:\n\s+fig2/);
  });
});
