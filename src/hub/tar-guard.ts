// A pass-through check of a pack's raw tar structure, before tar-stream reads
// it. tar-stream and GNU tar disagree on some headers (tar-stream ignores a
// global pax header's `path` for entries without a pax header of their own;
// GNU tar applies it), so `tar -x` and forkd could see different files in one
// pack. Such packs are refused outright: global pax headers, numeric header
// fields that are not plain octal (base-256 sizes and times), and pax records
// whose numbers are not plain decimal.
import { Transform, type TransformCallback } from 'node:stream';

const BLOCK = 512;
/** A pax header bigger than this is not one of ours (ours are a few hundred bytes). */
const MAX_PAX_BYTES = 64 * 1024;
/** Pax keys whose values are numbers. */
const NUMERIC_PAX_KEYS = new Set([
  'size',
  'uid',
  'gid',
  'GNU.sparse.major',
  'GNU.sparse.minor',
  'GNU.sparse.realsize',
  'GNU.sparse.size',
  'GNU.sparse.numblocks',
  'GNU.sparse.offset',
  'GNU.sparse.numbytes',
]);
/** Header fields (offset, length) that hold octal numbers: mode, uid, gid, size, mtime. */
const OCTAL_FIELDS: ReadonlyArray<readonly [string, number, number]> = [
  ['mode', 100, 8],
  ['uid', 108, 8],
  ['gid', 116, 8],
  ['size', 124, 12],
  ['mtime', 136, 12],
];

export class TarStructureError extends Error {}

function octalField(block: Buffer, name: string, offset: number, length: number): number {
  const raw = block.subarray(offset, offset + length);
  if (raw[0]! & 0x80) throw new TarStructureError(`a tar header's ${name} is base-256, not octal`);
  const text = raw
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text))
    throw new TarStructureError(`a tar header's ${name} is not octal: ${JSON.stringify(text)}`);
  return Number.parseInt(text, 8);
}

/** Parses pax records (`LEN key=value\n`), refusing malformed ones and non-decimal numbers. */
export function parsePaxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break;
    const space = data.indexOf(0x20, at);
    const lengthText = space > at ? data.toString('latin1', at, space) : '';
    const length = Number(lengthText);
    if (!/^[1-9][0-9]*$/.test(lengthText) || at + length > data.length || data[at + length - 1] !== 0x0a) {
      throw new TarStructureError('a pax header has a malformed record');
    }
    const record = data.toString('utf8', space + 1, at + length - 1);
    const eq = record.indexOf('=');
    if (eq <= 0) throw new TarStructureError('a pax header has a record without a key');
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (NUMERIC_PAX_KEYS.has(key) && !/^(0|[1-9][0-9]{0,15})$/.test(value)) {
      throw new TarStructureError(
        `the pax record ${key} is not a plain decimal number: ${JSON.stringify(value.slice(0, 40))}`,
      );
    }
    records.set(key, value);
    at += length;
  }
  return records;
}

/** Passes the decompressed tar stream through unchanged, failing (with `refuse`'s error) on a structure forkd refuses. */
export function tarStructureGuard(refuse: (message: string) => Error): Transform {
  let pending: Buffer = Buffer.alloc(0);
  /** Data bytes (padded to whole blocks) left to skip in the current entry. */
  let skip = 0;
  /** While reading a pax header's data: its bytes so far and how many it has. */
  let pax: { left: number; padded: number } | null = null;
  /** A pax `size` record for the next entry. */
  let nextSize: number | null = null;
  let ended = false;

  const step = (): void => {
    for (;;) {
      if (ended) return;
      if (pax) {
        if (pending.length < pax.padded) return;
        const data = pending.subarray(0, pax.left);
        pending = pending.subarray(pax.padded);
        const records = parsePaxRecords(data);
        const size = records.get('size');
        nextSize = size === undefined ? null : Number(size);
        pax = null;
        continue;
      }
      if (skip > 0) {
        const n = Math.min(skip, pending.length);
        pending = pending.subarray(n);
        skip -= n;
        if (skip > 0) return;
      }
      if (pending.length < BLOCK) return;
      const block = pending.subarray(0, BLOCK);
      pending = pending.subarray(BLOCK);
      if (block.every((b) => b === 0)) {
        ended = true; // the end-of-archive blocks; what follows is not read as entries
        return;
      }
      const fields = Object.fromEntries(
        OCTAL_FIELDS.map(([name, off, len]) => [name, octalField(block, name, off, len)]),
      );
      const type = String.fromCharCode(block[156]!);
      if (type === 'g')
        throw new TarStructureError(
          'the archive has a global pax header, which forkd and tar read differently',
        );
      const size = nextSize ?? fields.size!;
      nextSize = null;
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      if (type === 'x') {
        if (size > MAX_PAX_BYTES) throw new TarStructureError(`a pax header of ${size} bytes is too large`);
        pax = { left: size, padded };
        continue;
      }
      skip = padded;
    }
  };

  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      try {
        step();
      } catch (err) {
        return done(err instanceof TarStructureError ? refuse(err.message) : (err as Error));
      }
      done(null, chunk);
    },
  });
}
