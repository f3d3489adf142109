/**
 * The binary blobs the Redis transport stores under their own keys (claim-check: a stream entry carries only keys).
 * One blob is a JSON header followed by the raw bytes of every typed array of the message, little-endian, each
 * 8-byte aligned, so a Float64Array is a view on the received bytes after one copy:
 *
 *   'DKF1' | u32 header length H | H bytes of JSON header | zero padding to 8 | array 0 | pad | array 1 | pad | …
 *
 * The header: { run, kind, step, task?, body, arrays: [[dtype, length], …] }, where `body` is the message with every
 * typed array replaced by {"$a": index}. Never JSON arrays of floats, never pub/sub.
 *
 * decodeBlob checks everything a blob says about itself before any value is used: the magic, that the header fits,
 * parses and has the expected run id, kind and step (and task), that each array's dtype is float32, float64 or int32,
 * that the arrays' byte lengths add up to exactly the blob's length, that float arrays hold only finite values, and
 * that every placeholder is used once. What the arrays must be (names, shapes) is checked by validate.ts against what
 * the receiver expects.
 */

export const BLOB_MAGIC = 'DKF1';

export type Dtype = 'float32' | 'float64' | 'int32';
const SIZE: Record<Dtype, number> = { float32: 4, float64: 8, int32: 4 };
type Typed = Float32Array | Float64Array | Int32Array;

/** What a blob's header says it is. */
export interface BlobHeader {
  run: string;
  kind: string;
  step: number;
  task?: string;
}

export class MessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MessageError';
  }
}

function dtypeOf(a: ArrayBufferView): Dtype | null {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  return null;
}

const pad8 = (n: number) => (n + 7) & ~7;

/** Encodes `body` (plain data with Float32Array/Float64Array/Int32Array leaves) under `header`. */
export function encodeBlob(header: BlobHeader, body: unknown): Buffer {
  const arrays: Typed[] = [];
  const replaced = JSON.stringify(body, function (this: unknown, _k: string, v: unknown) {
    if (ArrayBuffer.isView(v)) {
      const d = dtypeOf(v);
      if (!d) throw new Error(`cannot encode a ${v.constructor.name} (float32, float64 or int32 only)`);
      arrays.push(v as Typed);
      return { $a: arrays.length - 1 };
    }
    return v;
  });
  const meta = JSON.stringify({ ...header, arrays: arrays.map((a) => [dtypeOf(a), a.length]) });
  const head = Buffer.from(`${meta.slice(0, -1)},"body":${replaced ?? 'null'}}`, 'utf8');
  const start = pad8(8 + head.length);
  let total = start;
  for (const a of arrays) total += pad8(a.byteLength);
  const out = Buffer.alloc(total);
  out.write(BLOB_MAGIC, 0, 'latin1');
  out.writeUInt32LE(head.length, 4);
  head.copy(out, 8);
  let off = start;
  for (const a of arrays) {
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(out, off);
    off += pad8(a.byteLength);
  }
  return out;
}

/** The first non-finite entry of a float array, or -1. */
export function firstNonFinite(a: Float32Array | Float64Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/**
 * Decodes a blob, checking its framing and that its header names `expect` (run, kind, step, task where given).
 * Throws MessageError naming the first problem.
 */
export function decodeBlob<T = unknown>(buf: Buffer | null, expect: BlobHeader, what: string): T {
  if (!buf) throw new MessageError(`${what}: missing (expired or never written)`);
  if (buf.length < 8 || buf.toString('latin1', 0, 4) !== BLOB_MAGIC) throw new MessageError(`${what}: not a dkfac blob (bad magic)`);
  const H = buf.readUInt32LE(4);
  if (8 + H > buf.length) throw new MessageError(`${what}: header of ${H} bytes overruns the ${buf.length}-byte blob`);
  let head: { run?: unknown; kind?: unknown; step?: unknown; task?: unknown; body?: unknown; arrays?: unknown };
  try {
    head = JSON.parse(buf.toString('utf8', 8, 8 + H));
  } catch (e) {
    throw new MessageError(`${what}: header is not JSON (${(e as Error).message})`);
  }
  if (head === null || typeof head !== 'object') throw new MessageError(`${what}: header is not an object`);
  if (head.run !== expect.run) throw new MessageError(`${what}: foreign blob: run ${JSON.stringify(head.run)}, expected ${expect.run}`);
  if (head.kind !== expect.kind) throw new MessageError(`${what}: kind ${JSON.stringify(head.kind)}, expected ${expect.kind}`);
  if (head.step !== expect.step) throw new MessageError(`${what}: step ${JSON.stringify(head.step)}, expected ${expect.step}`);
  if (expect.task !== undefined && head.task !== expect.task) throw new MessageError(`${what}: task ${JSON.stringify(head.task)}, expected ${expect.task}`);
  if (!Array.isArray(head.arrays)) throw new MessageError(`${what}: header has no array table`);
  const specs = head.arrays as unknown[];
  // exact byte length: the header, its padding and every array with its padding, nothing more, nothing less
  let off = pad8(8 + H);
  const layout: { dtype: Dtype; length: number; off: number }[] = [];
  for (const [i, s] of specs.entries()) {
    if (!Array.isArray(s) || s.length !== 2 || !(s[0] in SIZE) || !Number.isSafeInteger(s[1]) || s[1] < 0) {
      throw new MessageError(`${what}: array ${i}: bad entry ${JSON.stringify(s)} (want [float32|float64|int32, length])`);
    }
    const dtype = s[0] as Dtype;
    layout.push({ dtype, length: s[1], off });
    off += pad8(s[1] * SIZE[dtype]);
  }
  if (off !== buf.length) throw new MessageError(`${what}: byte length ${buf.length}, its header describes ${off}`);
  // one copy into an aligned buffer; the arrays are views on it
  const ab = new ArrayBuffer(buf.length);
  new Uint8Array(ab).set(buf);
  const arrays: Typed[] = layout.map(({ dtype, length, off: o }) => {
    const a = dtype === 'float32' ? new Float32Array(ab, o, length) : dtype === 'float64' ? new Float64Array(ab, o, length) : new Int32Array(ab, o, length);
    return a;
  });
  const used = new Array<boolean>(arrays.length).fill(false);
  const restore = (v: unknown, path: string): unknown => {
    if (Array.isArray(v)) return v.map((x, i) => restore(x, `${path}[${i}]`));
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    if ('$a' in o) {
      const i = o.$a;
      if (Object.keys(o).length !== 1 || !Number.isInteger(i) || (i as number) < 0 || (i as number) >= arrays.length || used[i as number]) {
        throw new MessageError(`${what}: ${path}: bad array reference ${JSON.stringify(o)}`);
      }
      used[i as number] = true;
      const a = arrays[i as number];
      if (!(a instanceof Int32Array)) {
        const bad = firstNonFinite(a);
        if (bad >= 0) throw new MessageError(`${what}: ${path}: non-finite value ${a[bad]} at index ${bad}`);
      }
      return a;
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) out[k] = restore(x, path ? `${path}.${k}` : k);
    return out;
  };
  const body = restore(head.body, '');
  const unused = used.indexOf(false);
  if (unused >= 0) throw new MessageError(`${what}: array ${unused} is not referenced by the message`);
  return body as T;
}
