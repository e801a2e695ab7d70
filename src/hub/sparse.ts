// Zero-aware file layout for packs. A snapshot's RAM file is mostly zero (the
// guest runs with init_on_free=1) and its ext4 image mostly holes, so packs
// store only the 4 KiB blocks that hold data, in tar's standard GNU sparse 1.0
// encoding: GNU tar extracts a pack into the same sparse files forkd does.
import { BackgroundHasher } from './background-hash.js';
import { open } from 'node:fs/promises';

export const SPARSE_BLOCK = 4096;
const READ_CHUNK = 1 << 20;
const ZERO_CHUNK = Buffer.alloc(READ_CHUNK);
const ZERO_BLOCK = ZERO_CHUNK.subarray(0, SPARSE_BLOCK);

/** A run of bytes that hold data; everything between runs reads as zero. */
export interface Extent {
  offset: number;
  length: number;
}

export interface FileScan {
  size: number;
  sha256: string;
  extents: Extent[];
  /** Bytes inside extents: what a pack stores for this file. */
  dataBytes: number;
}

/** Extents that cover the whole file, i.e. a file stored as is. */
export function isDense(scan: Pick<FileScan, 'size' | 'extents'>): boolean {
  return (
    scan.size === 0 ||
    (scan.extents.length === 1 && scan.extents[0]!.offset === 0 && scan.extents[0]!.length === scan.size)
  );
}

/**
 * Read a file once: its sha256 (of the logical content, zeros included, so
 * `sha256sum` agrees) and the 4 KiB-aligned runs that are not all zero.
 */
export async function scanFile(path: string, onBytes?: (n: number) => void): Promise<FileScan> {
  // Hashing runs on a worker, beside the reads and the zero checks here; a
  // zero chunk is sent as a count, not as bytes.
  const hasher = new BackgroundHasher();
  const extents: Extent[] = [];
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  const file = await open(path, 'r');
  let offset = 0;
  try {
    for (;;) {
      const { bytesRead } = await file.read(buf, 0, READ_CHUNK, offset);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      if (bytesRead === READ_CHUNK && chunk.equals(ZERO_CHUNK)) hasher.zeros(bytesRead);
      else {
        await hasher.update(chunk);
        for (let at = 0; at < bytesRead; at += SPARSE_BLOCK) {
          const block = chunk.subarray(at, Math.min(at + SPARSE_BLOCK, bytesRead));
          if (block.length === SPARSE_BLOCK ? block.equals(ZERO_BLOCK) : isZero(block)) continue;
          addExtent(extents, offset + at, block.length);
        }
      }
      offset += bytesRead;
      onBytes?.(bytesRead);
    }
    const sha256 = await hasher.finish();
    const dataBytes = extents.reduce((sum, e) => sum + e.length, 0);
    return { size: offset, sha256, extents, dataBytes };
  } finally {
    await file.close();
    await hasher.close();
  }
}

function isZero(buf: Buffer): boolean {
  return buf.equals(ZERO_BLOCK.subarray(0, buf.length));
}

function addExtent(extents: Extent[], offset: number, length: number): void {
  const last = extents[extents.length - 1];
  if (last && last.offset + last.length === offset) last.length += length;
  else extents.push({ offset, length });
}

/**
 * The sparse map that opens a GNU sparse 1.0 entry's data: decimal numbers,
 * one per line (count, then offset/length pairs), zero-padded to 512 bytes.
 * A file that ends in a hole gets a final empty region at its end, as GNU tar
 * writes it.
 */
export function encodeSparseMap(extents: readonly Extent[], size: number): Buffer {
  const regions = [...extents];
  const last = regions[regions.length - 1];
  if (!last || last.offset + last.length < size) regions.push({ offset: size, length: 0 });
  const text = [String(regions.length), ...regions.flatMap((r) => [String(r.offset), String(r.length)])]
    .map((n) => `${n}\n`)
    .join('');
  const padded = Buffer.alloc(Math.ceil(text.length / 512) * 512);
  padded.write(text, 'ascii');
  return padded;
}

export interface SparseMapLimits {
  maxRegions: number;
}

/** Thrown (with the reason) when an entry's sparse map is malformed. */
export class SparseMapError extends Error {}

/**
 * Parses a sparse map from the front of an entry's data, chunk by chunk.
 * `push` returns the regions and the bytes of that chunk that follow the map
 * (the first region's data), or null while more input is needed.
 */
export class SparseMapReader {
  private readonly numbers: number[] = [];
  private digits = '';
  private consumed = 0;
  private expected: number | null = null;
  private mapEnd: number | null = null;

  constructor(
    private readonly size: number,
    private readonly limits: SparseMapLimits,
  ) {}

  push(chunk: Buffer): { regions: Extent[]; rest: Buffer } | null {
    let at = 0;
    while (this.mapEnd === null && at < chunk.length) {
      const byte = chunk[at++]!;
      this.consumed++;
      if (byte >= 0x30 && byte <= 0x39) {
        this.digits += String.fromCharCode(byte);
        if (this.digits.length > 16) throw new SparseMapError('a number in the sparse map is too long');
        continue;
      }
      if (byte !== 0x0a || this.digits === '')
        throw new SparseMapError('the sparse map is not decimal lines');
      this.numbers.push(Number(this.digits));
      this.digits = '';
      if (this.expected === null) {
        const count = this.numbers[0]!;
        if (count > this.limits.maxRegions) {
          throw new SparseMapError(`the sparse map has ${count} regions (limit ${this.limits.maxRegions})`);
        }
        this.expected = 1 + 2 * count;
      }
      if (this.numbers.length === this.expected) this.mapEnd = Math.ceil(this.consumed / 512) * 512;
    }
    if (this.mapEnd === null) return null;
    // Skip the zero padding up to the 512-byte boundary.
    const pad = Math.min(this.mapEnd - this.consumed, chunk.length - at);
    for (let i = 0; i < pad; i++) {
      if (chunk[at + i] !== 0) throw new SparseMapError('the sparse map padding is not zero');
    }
    at += pad;
    this.consumed += pad;
    if (this.consumed < this.mapEnd) return null;
    return { regions: this.regions(), rest: chunk.subarray(at) };
  }

  /** Bytes the map itself took, padding included. */
  get mapBytes(): number {
    return this.mapEnd ?? this.consumed;
  }

  private regions(): Extent[] {
    const regions: Extent[] = [];
    let end = 0;
    for (let i = 1; i < this.numbers.length; i += 2) {
      const offset = this.numbers[i]!;
      const length = this.numbers[i + 1]!;
      if (offset < end) throw new SparseMapError('sparse regions overlap or are out of order');
      if (offset + length > this.size)
        throw new SparseMapError('a sparse region lies past the end of the file');
      end = offset + length;
      if (length > 0) regions.push({ offset, length });
    }
    return regions;
  }
}
