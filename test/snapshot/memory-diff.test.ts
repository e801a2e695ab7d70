// The RAM diff of a snapshot against its parent: on synthetic sparse files,
// the diff holds exactly the changed pages, applying it rebuilds the child
// byte for byte and sparse, and a malformed diff is refused before anything
// is written.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortedError, CorruptError, InvalidArgumentError } from '../../src/errors.js';
import {
  applyMemoryDiff,
  computeMemoryDiff,
  MEMORY_DIFF_HEADER_BYTES,
  readMemoryDiffHeader,
} from '../../src/snapshot/memory-diff.js';
import { pathExists, sha256File } from '../../src/util/files.js';

const PAGE = 4096;
const LOGICAL = 64 << 20;
const TOTAL_PAGES = LOGICAL / PAGE;

let dir = '';
let parentPath = '';
let childPath = '';
let diffPath = '';
/** Pages of the child that hold data, for the sparseness check. */
let childDataPages = 0;

/** A file of `size` bytes with the given pages written and holes elsewhere. */
async function sparseFile(path: string, pages: ReadonlyMap<number, Buffer>, size = LOGICAL): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(size);
    for (const [page, bytes] of pages) await handle.write(bytes, 0, bytes.length, page * PAGE);
  } finally {
    await handle.close();
  }
}

function range(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

// Parent: three runs of data, one across the 4 MiB read-chunk boundary (page 1024).
const PARENT_PAGES = [...range(0, 100), ...range(1000, 50), ...range(5000, 100), TOTAL_PAGES - 2];
const CHANGED = [10, 11, 12, 1023, 1024, 5050]; // (a) new content
const NEW_IN_HOLE = [2000, 2001, TOTAL_PAGES - 1]; // (b) written where the parent has a hole
const ZEROED_HOLE = [21, 5090]; // (c) punched in the child
const ZEROED_WRITTEN = [20]; // (c) overwritten with zeros (allocated)
const REWRITTEN_SAME = [30, 31, 1030]; // (d) written again with the same bytes
const ZEROS_IN_HOLE = [3000]; // zeros written over a hole: still equal

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'forkd-memory-diff-'));
  parentPath = join(dir, 'parent');
  childPath = join(dir, 'child');
  diffPath = join(dir, 'diff');
  const parent = new Map(PARENT_PAGES.map((p) => [p, randomBytes(PAGE)]));
  const child = new Map(parent);
  for (const p of CHANGED) {
    const bytes = Buffer.from(parent.get(p)!);
    bytes[p % PAGE] = bytes[p % PAGE]! ^ 0xff; // one byte differs: still a changed page
    child.set(p, bytes);
  }
  for (const p of NEW_IN_HOLE) child.set(p, randomBytes(PAGE));
  for (const p of ZEROED_HOLE) child.delete(p);
  for (const p of ZEROED_WRITTEN) child.set(p, Buffer.alloc(PAGE));
  for (const p of REWRITTEN_SAME) child.set(p, Buffer.from(parent.get(p)!));
  for (const p of ZEROS_IN_HOLE) child.set(p, Buffer.alloc(PAGE));
  childDataPages = [...child.values()].filter((b) => b.some((x) => x !== 0)).length;
  await sparseFile(parentPath, parent);
  await sparseFile(childPath, child);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function assertNoOutput(out: string): Promise<void> {
  assert.equal(await pathExists(out), false, `${out} exists`);
  assert.equal(await pathExists(`${out}.partial`), false, `${out}.partial exists`);
}

test('the diff holds the changed, new and zeroed pages, nothing else', async () => {
  const stats = await computeMemoryDiff(parentPath, childPath, diffPath);
  assert.equal(stats.dataPages, CHANGED.length + NEW_IN_HOLE.length);
  assert.equal(stats.zeroPages, ZEROED_HOLE.length + ZEROED_WRITTEN.length);
  assert.equal(stats.pages, stats.dataPages + stats.zeroPages);
  assert.equal(stats.logicalBytes, LOGICAL);
  const expectedBytes = MEMORY_DIFF_HEADER_BYTES + 8 * stats.pages + stats.dataPages * PAGE;
  assert.equal(stats.diffBytes, expectedBytes);
  assert.equal((await stat(diffPath)).size, expectedBytes);
  assert.equal(await pathExists(`${diffPath}.partial`), false);
  assert.deepEqual(await readMemoryDiffHeader(diffPath), {
    version: 1,
    pageSize: PAGE,
    logicalBytes: LOGICAL,
    dataPages: stats.dataPages,
    zeroPages: stats.zeroPages,
    diffBytes: expectedBytes,
  });
  // The tables list the pages in order.
  const bytes = await readFile(diffPath);
  const table = (first: number, count: number) =>
    range(first, count).map((i) => Number(bytes.readBigUInt64LE(MEMORY_DIFF_HEADER_BYTES + 8 * i)));
  assert.deepEqual(
    table(0, stats.dataPages),
    [...CHANGED, ...NEW_IN_HOLE].sort((a, b) => a - b),
  );
  assert.deepEqual(
    table(stats.dataPages, stats.zeroPages),
    [...ZEROED_HOLE, ...ZEROED_WRITTEN].sort((a, b) => a - b),
  );
});

test('applying the diff to the parent rebuilds the child, sparse', async () => {
  const out = join(dir, 'rebuilt');
  await applyMemoryDiff(parentPath, diffPath, out);
  assert.equal(await sha256File(out), await sha256File(childPath));
  const st = await stat(out);
  assert.equal(st.size, LOGICAL);
  // Holes stayed holes and zeroed pages became holes: allocated ≈ the child's data.
  assert.ok(st.blocks * 512 <= childDataPages * PAGE + (256 << 10), `allocated ${st.blocks * 512} bytes`);
  assert.equal(await pathExists(`${out}.partial`), false);
});

test('the diff of identical files is empty and applies to a copy', async () => {
  const empty = join(dir, 'empty.diff');
  const stats = await computeMemoryDiff(parentPath, parentPath, empty);
  assert.deepEqual(
    { pages: stats.pages, dataPages: stats.dataPages, zeroPages: stats.zeroPages, bytes: stats.diffBytes },
    { pages: 0, dataPages: 0, zeroPages: 0, bytes: MEMORY_DIFF_HEADER_BYTES },
  );
  const out = join(dir, 'same');
  await applyMemoryDiff(parentPath, empty, out);
  assert.equal(await sha256File(out), await sha256File(parentPath));
});

test('without an extent map (no filefrag) the whole file is read, with the same result', async () => {
  const out = join(dir, 'no-extents.diff');
  const path = process.env.PATH;
  process.env.PATH = join(dir, 'no-such-dir');
  try {
    await computeMemoryDiff(parentPath, childPath, out);
  } finally {
    process.env.PATH = path;
  }
  assert.deepEqual(await readFile(out), await readFile(diffPath));
});

test('files of different sizes or an invalid page size are refused', async () => {
  const small = join(dir, 'small');
  await sparseFile(small, new Map(), LOGICAL / 2);
  const out = join(dir, 'refused.diff');
  await assert.rejects(computeMemoryDiff(parentPath, small, out), (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, new RegExp(`${LOGICAL}.*${LOGICAL / 2}`));
    return true;
  });
  await assertNoOutput(out);
  await assert.rejects(
    computeMemoryDiff(parentPath, childPath, out, { pageSize: 3000 }),
    InvalidArgumentError,
  );
  await assertNoOutput(out);
});

test('an aborted diff or apply leaves nothing behind', async () => {
  const controller = new AbortController();
  controller.abort();
  const out = join(dir, 'aborted');
  await assert.rejects(
    computeMemoryDiff(parentPath, childPath, out, { signal: controller.signal }),
    AbortedError,
  );
  await assertNoOutput(out);
  await assert.rejects(
    applyMemoryDiff(parentPath, diffPath, out, { signal: controller.signal }),
    AbortedError,
  );
  await assertNoOutput(out);
});

/** A copy of the good diff with `edit` applied; returns its path. */
async function damaged(name: string, edit: (bytes: Buffer) => Buffer): Promise<string> {
  const path = join(dir, `${name}.diff`);
  await writeFile(path, edit(Buffer.from(await readFile(diffPath))));
  return path;
}

/** Offset of entry `i` of the page tables (data table first, then zero table). */
const entry = (i: number) => MEMORY_DIFF_HEADER_BYTES + 8 * i;
const dataCount = CHANGED.length + NEW_IN_HOLE.length;

const invalid: [string, (b: Buffer) => Buffer, RegExp][] = [
  ['bad-magic', (b) => (b.write('FORKDXX1', 0, 'ascii'), b), /bad magic/],
  ['version', (b) => (b.writeUInt32LE(2, 8), b), /format version 2/],
  ['page-size', (b) => (b.writeUInt32LE(3000, 12), b), /page size 3000/],
  ['reserved', (b) => ((b[50] = 1), b), /reserved/],
  ['truncated-header', (b) => b.subarray(0, 40), /shorter than its 64-byte header/],
  ['truncated-tables', (b) => b.subarray(0, entry(3)), /too short for its page tables/],
  ['truncated-data', (b) => b.subarray(0, b.length - 100), /its header says/],
  ['trailing-bytes', (b) => Buffer.concat([b, Buffer.alloc(1)]), /its header says/],
  ['huge-count', (b) => (b.writeBigUInt64LE(1n << 60n, 24), b), /impossible data page count/],
  ['out-of-range', (b) => (b.writeBigUInt64LE(BigInt(TOTAL_PAGES), entry(dataCount - 1)), b), /past the/],
  ['duplicate', (b) => (b.writeBigUInt64LE(b.readBigUInt64LE(entry(0)), entry(1)), b), /duplicates/],
  [
    'unsorted',
    (b) => {
      const first = b.readBigUInt64LE(entry(0));
      b.writeBigUInt64LE(b.readBigUInt64LE(entry(1)), entry(0));
      b.writeBigUInt64LE(first, entry(1));
      return b;
    },
    /out of order/,
  ],
  // Zero table [20, 21, 5090] becomes [10, 21, 5090]; 10 is a data page.
  [
    'in-both-tables',
    (b) => (b.writeBigUInt64LE(10n, entry(dataCount)), b),
    /both a data page and a zero page/,
  ],
];

for (const [name, edit, message] of invalid) {
  test(`a diff with ${name} is corrupt and nothing is written`, async () => {
    const path = await damaged(name, edit);
    const out = join(dir, `${name}.out`);
    await assert.rejects(applyMemoryDiff(parentPath, path, out), (err: unknown) => {
      assert.ok(err instanceof CorruptError, String(err));
      assert.match(err.message, message);
      assert.ok(err.message.includes(path), err.message);
      return true;
    });
    await assertNoOutput(out);
  });
}

test('a diff of a memory of another size than the base, or over the limit, is refused', async () => {
  const small = join(dir, 'small-base');
  await sparseFile(small, new Map(), LOGICAL / 2);
  const out = join(dir, 'mismatch.out');
  await assert.rejects(applyMemoryDiff(small, diffPath, out), (err: unknown) => {
    assert.ok(err instanceof CorruptError);
    assert.match(
      err.message,
      new RegExp(`${LOGICAL} bytes of memory but its base .* is ${LOGICAL / 2} bytes`),
    );
    return true;
  });
  await assertNoOutput(out);
  await assert.rejects(
    applyMemoryDiff(parentPath, diffPath, out, { maxLogicalBytes: LOGICAL - 1 }),
    /over the limit/,
  );
  await assertNoOutput(out);
  // A header that only says so is caught too, before the tables are read.
  await assert.rejects(
    readMemoryDiffHeader(await damaged('header-only', (b) => b.subarray(0, 64))),
    CorruptError,
  );
});

test('a stale partial file from a crash is overwritten, not trusted', async () => {
  const out = join(dir, 'stale');
  await writeFile(`${out}.partial`, 'left over');
  await applyMemoryDiff(parentPath, diffPath, out);
  assert.equal(await pathExists(`${out}.partial`), false);
  assert.equal(await sha256File(out), await sha256File(childPath));
});
