/**
 * Checksum-verified downloads into the user cache. A file is streamed to `<dest>.part`, hashed on the way, and renamed
 * to `dest` only when its checksum matches the constant it was checked against; otherwise the next mirror is tried.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DataError } from './types';

/** Expected checksums (hex, lower case); at least one must be given. */
export interface Expected {
  sha256?: string;
  md5?: string;
}

/**
 * Downloads the first of `urls` that answers with the expected content to `dest`. Returns the sha256 of the file.
 * Throws a DataError naming `dest` and every URL's failure when none matched.
 */
export async function downloadVerified(
  urls: string[],
  dest: string,
  expected: Expected,
  log: (message: string) => void = (m) => process.stderr.write(`${m}\n`),
): Promise<string> {
  if (!expected.sha256 && !expected.md5) throw new Error('downloadVerified: no checksum given');
  await mkdir(dirname(dest), { recursive: true });
  const part = `${dest}.part`;
  const failures: string[] = [];
  for (const url of urls) {
    log(`downloading ${url}`);
    try {
      const res = await fetch(url, { redirect: 'follow' });
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status} ${res.statusText}`);
      const sha = createHash('sha256');
      const md5 = createHash('md5');
      const fh = await open(part, 'w');
      let bytes = 0;
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          sha.update(chunk);
          md5.update(chunk);
          bytes += chunk.length;
          await fh.write(chunk);
        }
      } finally {
        await fh.close();
      }
      const got = { sha256: sha.digest('hex'), md5: md5.digest('hex') };
      if (expected.sha256 && got.sha256 !== expected.sha256.toLowerCase()) {
        throw new Error(`sha256 mismatch: expected ${expected.sha256}, got ${got.sha256} (${bytes} bytes)`);
      }
      if (expected.md5 && got.md5 !== expected.md5.toLowerCase()) {
        throw new Error(`md5 mismatch: expected ${expected.md5}, got ${got.md5} (${bytes} bytes)`);
      }
      await rename(part, dest);
      log(`  ok: ${bytes} bytes, sha256 ${got.sha256}`);
      return got.sha256;
    } catch (e) {
      await rm(part, { force: true });
      const cause = (e as { cause?: { message?: string } }).cause?.message;
      failures.push(`${url}: ${(e as Error).message}${cause ? ` (${cause})` : ''}`);
    }
  }
  throw new DataError(dest, `download failed: ${failures.join('; ')}`);
}
