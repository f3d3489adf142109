/**
 * A small reader for tar archives (POSIX ustar, with the GNU long-name and pax path extensions), enough to unpack
 * the CIFAR-10 binary tarball without shelling out. Entries are yielded with their data as views into the buffer.
 */
import { DataError } from './types';

export interface TarEntry {
  /** path inside the archive */
  name: string;
  /** '0' regular file, '5' directory, ... (NUL is reported as '0') */
  type: string;
  size: number;
  data: Uint8Array;
}

const BLOCK = 512;
const decoder = new TextDecoder();

function cString(b: Uint8Array, start: number, len: number): string {
  let end = start;
  while (end < start + len && b[end] !== 0) end++;
  return decoder.decode(b.subarray(start, end));
}

/** Parses an octal numeric field (or GNU base-256 when the high bit of the first byte is set). */
function numeric(b: Uint8Array, start: number, len: number, file: string, offset: number, field: string): number {
  if (b[start] & 0x80) {
    let v = b[start] & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[start + i];
    return v;
  }
  const s = cString(b, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new DataError(file, `corrupt tar header at offset ${offset}: bad ${field} field "${s}"`);
  return parseInt(s, 8);
}

/** Parses `length key=value\n` records of a pax extended header. */
function paxRecords(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const text = decoder.decode(data);
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(' ', i);
    if (sp < 0) break;
    const len = parseInt(text.slice(i, sp), 10);
    if (!(len > 0)) break;
    const rec = text.slice(sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

/** Iterates the entries of an uncompressed tar archive; `file` names the archive in errors. */
export function* readTar(buf: Uint8Array, file: string): Generator<TarEntry> {
  let off = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  while (off + BLOCK <= buf.length) {
    const h = buf.subarray(off, off + BLOCK);
    if (h.every((x) => x === 0)) return; // end-of-archive marker
    const stored = numeric(h, 148, 8, file, off, 'checksum');
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (sum !== stored) throw new DataError(file, `corrupt tar header at offset ${off}: checksum ${sum} != stored ${stored}`);
    const size = numeric(h, 124, 12, file, off, 'size');
    const typeByte = h[156];
    const type = typeByte === 0 ? '0' : String.fromCharCode(typeByte);
    const magic = cString(h, 257, 6);
    const prefix = magic.startsWith('ustar') ? cString(h, 345, 155) : '';
    const baseName = cString(h, 0, 100);
    const dataStart = off + BLOCK;
    if (dataStart + size > buf.length) {
      throw new DataError(file, `truncated: entry "${baseName}" needs ${dataStart + size} bytes, archive has ${buf.length}`);
    }
    const data = buf.subarray(dataStart, dataStart + size);
    off = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L') {
      longName = cString(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      paxPath = paxRecords(data).path ?? paxPath;
      continue;
    }
    if (type === 'g') continue;
    const name = paxPath ?? longName ?? (prefix ? `${prefix}/${baseName}` : baseName);
    longName = undefined;
    paxPath = undefined;
    yield { name, type, size, data };
  }
  if (off < buf.length) throw new DataError(file, `truncated: ${buf.length - off} stray bytes at offset ${off}`);
}
