/**
 * The experiment CLI as a user meets it: bad input stops before any training with one clear line naming the problem
 * and a non-zero exit, and nothing is written.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

function exp(args: string[]) {
  const results = mkdtempSync(join(tmpdir(), 'dkfac-cli-'));
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'experiments', 'cli.ts'), ...args, '--results', results], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, DKFAC_QUIET: '1' },
    timeout: 120_000,
  });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout, results };
}

describe('experiment CLI', () => {
  it('rejects an unknown profile key, naming it, before any work', () => {
    const r = exp(['run', 'fig6', '--set', 'lerning_rate=0.1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: invalid fig6 profile 'quick'/);
    expect(r.stderr).toMatch(/lerning_rate/);
    expect(existsSync(join(r.results, 'fig6'))).toBe(false);
  });

  it('rejects an impossible value, naming the key', () => {
    const r = exp(['run', 'fig6', '--set', 'examples=-5']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/examples/);
  });

  it('rejects an unknown experiment and an unknown profile', () => {
    expect(exp(['run', 'fig99']).stderr).toMatch(/unknown experiment 'fig99' \(known: .*fig6/);
    expect(exp(['run', 'fig6', '--profile', 'fast']).stderr).toMatch(/unknown profile 'fast'/);
  });

  it('names the missing file of a data directory given explicitly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-nodata-'));
    const r = exp(['run', 'fig6', '--data-dir', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: .*train-images-idx3-ubyte/);
    expect(existsSync(join(r.results, 'fig6'))).toBe(false);
  });

  it('names a corrupt data file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkfac-baddata-'));
    mkdirSync(dir, { recursive: true });
    // valid label files; image files whose header promises 5 images of 28×28 but that end after the header
    for (const f of ['train-labels-idx1-ubyte', 't10k-labels-idx1-ubyte']) writeFileSync(join(dir, f), Buffer.from([0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3, 4, 5]));
    for (const f of ['train-images-idx3-ubyte', 't10k-images-idx3-ubyte']) writeFileSync(join(dir, f), Buffer.from([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]));
    const r = exp(['run', 'fig6', '--data-dir', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: .*idx3-ubyte: .*truncated/);
  });

  it('--resume skips a finished run and says so', () => {
    const results = mkdtempSync(join(tmpdir(), 'dkfac-cli-resume-'));
    const args = ['run', 'fig6', '--only', 'sgd-bn-bz32', '--seeds', '1', '--set', 'examples=64', '--set', 'evals=1', '--set', 'evalExamples=64', '--no-report', '--resume', '--results', results];
    const run = () =>
      spawnSync(process.execPath, ['--import', 'tsx', join(root, 'experiments', 'cli.ts'), ...args], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, DKFAC_QUIET: '1' },
        timeout: 300_000,
      });
    const first = run();
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/finished, 2 steps/);
    const csv = readFileSync(join(results, 'fig6', 'sgd-bn-bz32-s1.csv'), 'utf8');
    const second = run();
    expect(second.status).toBe(0);
    expect(second.stdout).toMatch(/finished earlier, skipped \(--resume\)/);
    expect(readFileSync(join(results, 'fig6', 'sgd-bn-bz32-s1.csv'), 'utf8')).toBe(csv);
  }, 600_000);
});
