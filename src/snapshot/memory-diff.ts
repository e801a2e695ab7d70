// The RAM diff of a snapshot against its parent: the pages of a child's flat
// `memory` file that differ from its parent's, so a chain of snapshots stores
// (and a pack ships) only what each child changed. A diff may arrive from the
// network inside a pack, so reading one validates all of it before a byte of
// output is written.
//
// Diff file layout, little-endian:
//
//   offset        size        field
//   0             8           magic "FORKDMD1"
//   8             4           u32 format version (1)
//   12            4           u32 page size (a power of two, 4096..65536)
//   16            8           u64 memory logical size (a multiple of the page size)
//   24            8           u64 D, the number of data pages
//   32            8           u64 Z, the number of zero pages
//   40            24          reserved, zero
//   64            8 * D       data page numbers, u64, strictly increasing
//   64 + 8D       8 * Z       zero page numbers, u64, strictly increasing
//   64 + 8(D+Z)   D * page    the data pages' bytes, in the order of their table
//
// The file is exactly 64 + 8(D+Z) + D * page size bytes; every page number is
// below size / page size and no page is in both tables. A zero page is one the
// child zeroed: applying the diff turns it back into a hole instead of storing
// a page of zeros.
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { CorruptError, InvalidArgumentError } from '../errors.js';
import { throwIfAborted } from '../util/abort.js';
import { dataExtents, type Extent } from '../util/file-extents.js';
import { run } from '../util/run.js';

export const MEMORY_DIFF_MAGIC = Buffer.from('FORKDMD1', 'ascii');
export const MEMORY_DIFF_VERSION = 1;
export const MEMORY_DIFF_HEADER_BYTES = 64;
const DEFAULT_PAGE_SIZE = 4096;
const MIN_PAGE_SIZE = 4096;
const MAX_PAGE_SIZE = 65536;
/** Bytes read or written at a time: large enough that syscalls do not dominate. */
const CHUNK = 4 << 20;

export interface MemoryDiffStats {
  /** Changed pages, zero pages included. */
  pages: number;
  dataPages: number;
  zeroPages: number;
  pageSize: number;
  /** The memory's size (of parent and child alike). */
  logicalBytes: number;
  /** The size of the diff file. */
  diffBytes: number;
  ms: number;
}

export interface MemoryDiffHeader {
  version: number;
  pageSize: number;
  logicalBytes: number;
  dataPages: number;
  zeroPages: number;
  /** The size of the diff file (checked against the counts above). */
  diffBytes: number;
}

export interface ComputeMemoryDiffOptions {
  signal?: AbortSignal | undefined;
  pageSize?: number | undefined;
}

export interface ApplyMemoryDiffOptions {
  signal?: AbortSignal | undefined;
  /** Refuse a diff of a larger memory (it may come from the network). */
  maxLogicalBytes?: number | undefined;
}

/** A run of bytes; page-aligned wherever this file uses it. */
/**
 * Write the diff of `childPath` against `parentPath` (flat RAM files of one
 * size) to `outPath`. Durability is the caller's: sync before committing.
 */
export async function computeMemoryDiff(
  parentPath: string,
  childPath: string,
  outPath: string,
  opts: ComputeMemoryDiffOptions = {},
): Promise<MemoryDiffStats> {
  const started = performance.now();
  const pageSize = opts.pageSize ?? DEFAULT_PAGE_SIZE;
  if (!validPageSize(pageSize)) {
    throw new InvalidArgumentError(
      `page size ${pageSize} is not a power of two between ${MIN_PAGE_SIZE} and ${MAX_PAGE_SIZE}`,
      'pageSize',
    );
  }
  const [parentStat, childStat] = await Promise.all([stat(parentPath), stat(childPath)]);
  const [parentBytes, childBytes] = [parentStat.size, childStat.size];
  if (parentBytes !== childBytes) {
    throw new InvalidArgumentError(
      `cannot diff memory of different sizes: ${parentPath} is ${parentBytes} bytes, ${childPath} is ${childBytes}`,
      'childPath',
    );
  }
  const logicalBytes = parentBytes;
  if (logicalBytes % pageSize !== 0) {
    throw new InvalidArgumentError(
      `${childPath} is ${logicalBytes} bytes, not a whole number of ${pageSize}-byte pages`,
      'pageSize',
    );
  }
  const { data, zero } = await changedPages(parentPath, childPath, logicalBytes, pageSize, opts.signal);
  const partial = `${outPath}.partial`;
  try {
    const diffBytes = await writeDiff(
      partial,
      childPath,
      { pageSize, logicalBytes },
      data,
      zero,
      opts.signal,
    );
    await rename(partial, outPath);
    return {
      pages: data.length + zero.length,
      dataPages: data.length,
      zeroPages: zero.length,
      pageSize,
      logicalBytes,
      diffBytes,
      ms: Math.round(performance.now() - started),
    };
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}

/**
 * Rebuild the child's flat RAM file at `outPath` from its parent's
 * (`basePath`) and a diff. The output is sparse: holes stay holes (a reflink
 * where the filesystem has them) and zero pages become holes.
 */
export async function applyMemoryDiff(
  basePath: string,
  diffPath: string,
  outPath: string,
  opts: ApplyMemoryDiffOptions = {},
): Promise<void> {
  const { signal } = opts;
  const diff = await open(diffPath, 'r');
  try {
    const header = await readHeader(diff, diffPath);
    const fail = (message: string) => new CorruptError(`memory diff ${diffPath} ${message}`, diffPath);
    if (opts.maxLogicalBytes !== undefined && header.logicalBytes > opts.maxLogicalBytes) {
      throw fail(`is of ${header.logicalBytes} bytes of memory, over the limit of ${opts.maxLogicalBytes}`);
    }
    const baseBytes = (await stat(basePath)).size;
    if (header.logicalBytes !== baseBytes) {
      throw fail(
        `is of ${header.logicalBytes} bytes of memory but its base ${basePath} is ${baseBytes} bytes`,
      );
    }
    const { data, zero } = await readTables(diff, diffPath, header);
    throwIfAborted(signal);
    const partial = `${outPath}.partial`;
    try {
      // cp tries a reflink first and otherwise copies only the data extents.
      // (copyFile's COPYFILE_FICLONE falls back to a dense copy.)
      await run(['cp', '--reflink=auto', '--sparse=always', '--', basePath, partial], { signal });
      await patch(partial, diff, diffPath, header, data, zero, signal);
      // The zero pages were written as zeros; one pass punches them out.
      if (zero.length > 0) await run(['fallocate', '--dig-holes', '--', partial], { signal });
      await rename(partial, outPath);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
  } finally {
    await diff.close();
  }
}

/** The header of a diff file, checked against the file's size (page tables are not read). */
export async function readMemoryDiffHeader(path: string): Promise<MemoryDiffHeader> {
  const handle = await open(path, 'r');
  try {
    return await readHeader(handle, path);
  } finally {
    await handle.close();
  }
}

function validPageSize(pageSize: number): boolean {
  return (
    Number.isInteger(pageSize) &&
    pageSize >= MIN_PAGE_SIZE &&
    pageSize <= MAX_PAGE_SIZE &&
    (pageSize & (pageSize - 1)) === 0
  );
}

/** Page numbers that differ: `data` holds non-zero pages of the child, `zero` pages it zeroed. */
async function changedPages(
  parentPath: string,
  childPath: string,
  logicalBytes: number,
  pageSize: number,
  signal: AbortSignal | undefined,
): Promise<{ data: number[]; zero: number[] }> {
  const [parentExtents, childExtents] = await Promise.all([
    dataExtents(parentPath, logicalBytes, signal),
    dataExtents(childPath, logicalBytes, signal),
  ]);
  // Where both files are holes both read as zeros: only the union is read.
  const regions = pageAlignedUnion([...parentExtents, ...childExtents], pageSize, logicalBytes);
  const data: number[] = [];
  const zero: number[] = [];
  const zeroPage = Buffer.alloc(pageSize);
  const parentBuf = Buffer.allocUnsafe(CHUNK);
  const childBuf = Buffer.allocUnsafe(CHUNK);
  const parent = await open(parentPath, 'r');
  try {
    const child = await open(childPath, 'r');
    try {
      for (const region of regions) {
        const end = region.offset + region.length;
        for (let at = region.offset; at < end; at += CHUNK) {
          throwIfAborted(signal);
          const length = Math.min(CHUNK, end - at);
          const [p, c] = await Promise.all([
            readExactly(parent, parentBuf, length, at, parentPath),
            readExactly(child, childBuf, length, at, childPath),
          ]);
          if (p.equals(c)) continue;
          for (let off = 0; off < length; off += pageSize) {
            const page = c.subarray(off, off + pageSize);
            if (page.equals(p.subarray(off, off + pageSize))) continue;
            (page.equals(zeroPage) ? zero : data).push((at + off) / pageSize);
          }
        }
      }
    } finally {
      await child.close();
    }
  } finally {
    await parent.close();
  }
  return { data, zero };
}

/** Sorted, merged extents widened to whole pages. */
function pageAlignedUnion(extents: Extent[], pageSize: number, size: number): Extent[] {
  const aligned = extents
    .map((e) => {
      const offset = Math.floor(e.offset / pageSize) * pageSize;
      return { offset, end: Math.min(size, Math.ceil((e.offset + e.length) / pageSize) * pageSize) };
    })
    .sort((a, b) => a.offset - b.offset);
  const merged: Extent[] = [];
  for (const { offset, end } of aligned) {
    const last = merged[merged.length - 1];
    if (last && offset <= last.offset + last.length) {
      last.length = Math.max(last.length, end - last.offset);
    } else merged.push({ offset, length: end - offset });
  }
  return merged;
}

/** Write header, tables and the child's data pages to `path`; returns the file's size. */
async function writeDiff(
  path: string,
  childPath: string,
  memory: { pageSize: number; logicalBytes: number },
  data: readonly number[],
  zero: readonly number[],
  signal: AbortSignal | undefined,
): Promise<number> {
  const { pageSize } = memory;
  const head = Buffer.alloc(MEMORY_DIFF_HEADER_BYTES + 8 * (data.length + zero.length));
  MEMORY_DIFF_MAGIC.copy(head, 0);
  head.writeUInt32LE(MEMORY_DIFF_VERSION, 8);
  head.writeUInt32LE(pageSize, 12);
  head.writeBigUInt64LE(BigInt(memory.logicalBytes), 16);
  head.writeBigUInt64LE(BigInt(data.length), 24);
  head.writeBigUInt64LE(BigInt(zero.length), 32);
  let at = MEMORY_DIFF_HEADER_BYTES;
  for (const page of [...data, ...zero]) {
    head.writeBigUInt64LE(BigInt(page), at);
    at += 8;
  }
  const out = await open(path, 'w');
  try {
    await writeAll(out, head, 0);
    let position = head.length;
    const child = await open(childPath, 'r');
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      for (const { first, count } of pageRuns(data, CHUNK / pageSize)) {
        throwIfAborted(signal);
        const bytes = await readExactly(child, buf, count * pageSize, first * pageSize, childPath);
        await writeAll(out, bytes, position);
        position += bytes.length;
      }
    } finally {
      await child.close();
    }
    return position;
  } finally {
    await out.close();
  }
}

/** Parse and check the 64-byte header against the file's size. */
async function readHeader(handle: FileHandle, path: string): Promise<MemoryDiffHeader> {
  const fail = (message: string) => new CorruptError(`memory diff ${path} ${message}`, path);
  const diffBytes = (await handle.stat()).size;
  if (diffBytes < MEMORY_DIFF_HEADER_BYTES) {
    throw fail(`is ${diffBytes} bytes, shorter than its ${MEMORY_DIFF_HEADER_BYTES}-byte header`);
  }
  const head = await readExactly(
    handle,
    Buffer.alloc(MEMORY_DIFF_HEADER_BYTES),
    MEMORY_DIFF_HEADER_BYTES,
    0,
    path,
  );
  if (!head.subarray(0, 8).equals(MEMORY_DIFF_MAGIC)) throw fail('is not a forkd memory diff (bad magic)');
  const version = head.readUInt32LE(8);
  if (version !== MEMORY_DIFF_VERSION) {
    throw fail(`has format version ${version}; this forkd reads version ${MEMORY_DIFF_VERSION}`);
  }
  const pageSize = head.readUInt32LE(12);
  if (!validPageSize(pageSize)) {
    throw fail(`has page size ${pageSize}, not a power of two between ${MIN_PAGE_SIZE} and ${MAX_PAGE_SIZE}`);
  }
  const u64 = (at: number, what: string): number => {
    const value = head.readBigUInt64LE(at);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`has an impossible ${what} (${value})`);
    return Number(value);
  };
  const logicalBytes = u64(16, 'memory size');
  const dataPages = u64(24, 'data page count');
  const zeroPages = u64(32, 'zero page count');
  if (head.subarray(40).some((b) => b !== 0)) throw fail('has non-zero reserved header bytes');
  if (logicalBytes % pageSize !== 0) {
    throw fail(`has a memory size of ${logicalBytes} bytes, not a whole number of ${pageSize}-byte pages`);
  }
  const tablesEnd = MEMORY_DIFF_HEADER_BYTES + 8 * (dataPages + zeroPages);
  if (tablesEnd > diffBytes) {
    throw fail(`is ${diffBytes} bytes, too short for its page tables (${tablesEnd} bytes)`);
  }
  const totalPages = logicalBytes / pageSize;
  if (dataPages + zeroPages > totalPages) {
    throw fail(`lists ${dataPages + zeroPages} changed pages of a memory of ${totalPages} pages`);
  }
  const expected = tablesEnd + dataPages * pageSize;
  if (diffBytes !== expected) throw fail(`is ${diffBytes} bytes; its header says ${expected}`);
  return { version, pageSize, logicalBytes, dataPages, zeroPages, diffBytes };
}

/** Both page tables, checked: in range, strictly increasing, disjoint. */
async function readTables(
  handle: FileHandle,
  path: string,
  header: MemoryDiffHeader,
): Promise<{ data: number[]; zero: number[] }> {
  const fail = (message: string) => new CorruptError(`memory diff ${path} ${message}`, path);
  const count = header.dataPages + header.zeroPages;
  const buf = await readExactly(handle, Buffer.alloc(8 * count), 8 * count, MEMORY_DIFF_HEADER_BYTES, path);
  const totalPages = header.logicalBytes / header.pageSize;
  const table = (name: string, first: number, length: number): number[] => {
    const pages: number[] = [];
    for (let i = 0; i < length; i++) {
      const at = 8 * (first + i);
      const page = buf.readUInt32LE(at + 4) * 2 ** 32 + buf.readUInt32LE(at);
      if (page >= totalPages) {
        throw fail(`lists ${name} page ${page}, past the memory's ${totalPages} pages`);
      }
      const prev = pages[i - 1];
      if (prev !== undefined && page <= prev) {
        throw fail(`has a ${name} page table out of order or with duplicates (${page} after ${prev})`);
      }
      pages.push(page);
    }
    return pages;
  };
  const data = table('data', 0, header.dataPages);
  const zero = table('zero', header.dataPages, header.zeroPages);
  let i = 0;
  for (const page of zero) {
    while (i < data.length && data[i]! < page) i++;
    if (data[i] === page) throw fail(`lists page ${page} as both a data page and a zero page`);
  }
  return { data, zero };
}

/** Write the diff's data pages into the copy of the base, and zeros over its zero pages. */
async function patch(
  path: string,
  diff: FileHandle,
  diffPath: string,
  header: MemoryDiffHeader,
  data: readonly number[],
  zero: readonly number[],
  signal: AbortSignal | undefined,
): Promise<void> {
  const { pageSize } = header;
  const pagesPerChunk = CHUNK / pageSize;
  const out = await open(path, 'r+');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    let from = MEMORY_DIFF_HEADER_BYTES + 8 * (data.length + zero.length);
    for (const { first, count } of pageRuns(data, pagesPerChunk)) {
      throwIfAborted(signal);
      const bytes = await readExactly(diff, buf, count * pageSize, from, diffPath);
      await writeAll(out, bytes, first * pageSize);
      from += bytes.length;
    }
    const zeros = Buffer.alloc(CHUNK);
    for (const { first, count } of pageRuns(zero, pagesPerChunk)) {
      throwIfAborted(signal);
      await writeAll(out, zeros.subarray(0, count * pageSize), first * pageSize);
    }
  } finally {
    await out.close();
  }
}

/** Runs of consecutive page numbers, at most `max` pages each. */
function* pageRuns(pages: readonly number[], max: number): Generator<{ first: number; count: number }> {
  let i = 0;
  while (i < pages.length) {
    const first = pages[i]!;
    let count = 1;
    while (count < max && pages[i + count] === first + count) count++;
    yield { first, count };
    i += count;
  }
}

/** Exactly `length` bytes at `position` (a short file is corrupt); returns the filled part of `buf`. */
async function readExactly(
  handle: FileHandle,
  buf: Buffer,
  length: number,
  position: number,
  path: string,
): Promise<Buffer> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new CorruptError(
        `${path} ends before byte ${position + length} (it changed while being read)`,
        path,
      );
    }
    done += bytesRead;
  }
  return buf.subarray(0, length);
}

async function writeAll(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}
