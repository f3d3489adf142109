/**
 * Finding a dataset's directory, in a fixed order, and recording how it was found.
 *
 * Order: `opts.dataDir` (the CLI's --data-dir) → env `DKFAC_DATA` → the Debian package location → the user cache
 * (`$XDG_CACHE_HOME/dkfac/<name>` or `~/.cache/dkfac/<name>`) → a download into that cache (only when
 * `opts.download === true`) → the embedded subset shipped in the repository. A directory given explicitly (flag or
 * env) that lacks a file is an error naming the directory and the file; there is never a silent fallback from it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataError, type DataOrigin } from './types';

/** Options shared by every on-disk dataset loader. */
export interface LocateOptions {
  /** explicit directory (the CLI's --data-dir); wins over everything, and must hold the files */
  dataDir?: string;
  /** allow downloading the official files into the user cache when nothing else is found */
  download?: boolean;
  /** environment to read DKFAC_DATA, XDG_CACHE_HOME and HOME from (default: process.env) */
  env?: Record<string, string | undefined>;
  /** root of Debian's dataset packages (default /usr/share/datasets); null skips it */
  debianRoot?: string | null;
  /** root of the embedded subsets (default data-pipeline/embedded); null skips it */
  embeddedRoot?: string | null;
  /** progress messages (downloads); default writes to stderr */
  log?: (message: string) => void;
}

/** One file a dataset needs: a logical key and the file names accepted for it (first match wins). */
export interface FileSpec {
  key: string;
  names: string[];
}

/** What `locate` found: the directory, how it was found, and the absolute path of every needed file. */
export interface Located {
  origin: DataOrigin;
  dir: string;
  files: Record<string, string>;
}

/** How a dataset is laid out and where it may come from. */
export interface DatasetLocation {
  /** dataset name, also the cache folder name */
  name: string;
  files: FileSpec[];
  /** sub-folders tried (before the directory itself) inside every candidate directory */
  subdirs: string[];
  /** folder name under the Debian root, or null when Debian ships no package */
  debianName: string | null;
  /** whether an embedded subset exists under the embedded root */
  embedded: boolean;
  /** fetches the files into `cacheDir` (verifying checksums); absent when no download is known */
  download?: (cacheDir: string, log: (message: string) => void) => Promise<void>;
}

export const DEFAULT_DEBIAN_ROOT = '/usr/share/datasets';
export const DEFAULT_EMBEDDED_ROOT = fileURLToPath(new URL('./embedded/', import.meta.url));

/** The user cache directory for one dataset: `$XDG_CACHE_HOME/dkfac/<name>` or `~/.cache/dkfac/<name>`. */
export function cacheDirFor(name: string, env: Record<string, string | undefined> = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg && xdg.length > 0 ? xdg : join(env.HOME && env.HOME.length > 0 ? env.HOME : homedir(), '.cache');
  return join(base, 'dkfac', name);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Matches the file specs in one directory; `missing` lists the keys' first names that were not found. */
async function matchFiles(dir: string, specs: FileSpec[]): Promise<{ files: Record<string, string>; missing: string[] }> {
  const files: Record<string, string> = {};
  const missing: string[] = [];
  for (const spec of specs) {
    let found: string | undefined;
    for (const n of spec.names) {
      const p = join(dir, n);
      if (await isFile(p)) {
        found = p;
        break;
      }
    }
    if (found) files[spec.key] = found;
    else missing.push(spec.names[0]);
  }
  return { files, missing };
}

/**
 * Looks for the files in `dir/<subdir>` for each subdir, then in `dir` itself. Returns the complete match, or the
 * closest incomplete one (most files present; ties go to `dir` itself) so that an error can name what is missing.
 */
async function searchDir(
  dir: string,
  loc: DatasetLocation,
): Promise<{ ok: true; dir: string; files: Record<string, string> } | { ok: false; dir: string; missing: string[] }> {
  const candidates = [...loc.subdirs.map((s) => join(dir, s)), dir];
  let best: { dir: string; missing: string[] } | undefined;
  for (const c of candidates) {
    if (!(await isDirectory(c))) continue;
    const m = await matchFiles(c, loc.files);
    if (m.missing.length === 0) return { ok: true, dir: c, files: m.files };
    if (!best || m.missing.length <= best.missing.length) best = { dir: c, missing: m.missing };
  }
  return { ok: false, ...(best ?? { dir, missing: loc.files.map((f) => f.names[0]) }) };
}

/** Finds a dataset following the lookup order described at the top of this file. */
export async function locate(loc: DatasetLocation, opts: LocateOptions = {}): Promise<Located> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const explicit: Array<[DataOrigin, string | undefined, string]> = [
    ['flag', opts.dataDir, '--data-dir'],
    ['env', env.DKFAC_DATA, 'DKFAC_DATA'],
  ];
  for (const [origin, given, how] of explicit) {
    if (given === undefined || given === '') continue;
    const dir = resolve(given);
    if (!(await isDirectory(dir))) throw new DataError(dir, `directory given by ${how} does not exist`);
    const r = await searchDir(dir, loc);
    if (r.ok) return { origin, dir: r.dir, files: r.files };
    const also = loc.subdirs.length > 0 ? ` (also looked in ${loc.subdirs.map((s) => join(dir, s)).join(', ')})` : '';
    throw new DataError(r.dir, `missing ${r.missing.join(', ')} for ${loc.name} (directory given by ${how})${also}`);
  }

  const looked: string[] = [];
  const debianRoot = opts.debianRoot === undefined ? DEFAULT_DEBIAN_ROOT : opts.debianRoot;
  if (debianRoot !== null && loc.debianName !== null) {
    const dir = join(debianRoot, loc.debianName);
    looked.push(dir);
    const m = await matchFiles(dir, loc.files);
    if (m.missing.length === 0) return { origin: 'debian', dir, files: m.files };
  }

  const cacheDir = cacheDirFor(loc.name, env);
  looked.push(cacheDir);
  const cached = await searchDir(cacheDir, loc);
  if (cached.ok) return { origin: 'cache', dir: cached.dir, files: cached.files };

  if (opts.download === true) {
    if (!loc.download) throw new DataError(loc.name, 'no download source is known for this dataset');
    await loc.download(cacheDir, log);
    const r = await searchDir(cacheDir, loc);
    if (!r.ok) throw new DataError(r.dir, `download finished but ${r.missing.join(', ')} is missing`);
    return { origin: 'download', dir: r.dir, files: r.files };
  }

  const embeddedRoot = opts.embeddedRoot === undefined ? DEFAULT_EMBEDDED_ROOT : opts.embeddedRoot;
  if (loc.embedded && embeddedRoot !== null) {
    const dir = join(embeddedRoot, loc.name);
    looked.push(dir);
    const m = await matchFiles(dir, loc.files);
    if (m.missing.length === 0) return { origin: 'embedded', dir, files: m.files };
  }

  const hint = loc.download ? 'pass --data-dir DIR, set DKFAC_DATA, or pass --download' : 'pass --data-dir DIR or set DKFAC_DATA';
  throw new DataError(loc.name, `dataset not found (looked in ${looked.join(', ')}); ${hint}`);
}

/** sha256 (hex) of a byte buffer. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** sha256 (hex) of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}
