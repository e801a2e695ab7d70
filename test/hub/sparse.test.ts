// Pins the zero-aware file layout of packs: which blocks count as data, the
// GNU sparse 1.0 map encoding, and the map reader's refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SPARSE_BLOCK,
  SparseMapError,
  SparseMapReader,
  encodeSparseMap,
  isDense,
  scanFile,
} from '../../src/hub/sparse.js';

async function withFile(write: (path: string) => Promise<void>, check: (path: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-sparse-'));
  try {
    const path = join(dir, 'f');
    await write(path);
    await check(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

void test('scanFile finds the 4 KiB blocks that hold data and hashes the logical content', async () => {
  const size = 3 * 1024 * 1024 + 100; // ends in a partial block
  const content = Buffer.alloc(size);
  content.fill(7, 5000, 6000); // inside block 1
  content.fill(9, 2 * 1024 * 1024, 2 * 1024 * 1024 + 3 * SPARSE_BLOCK); // 3 blocks
  content[size - 1] = 1; // the partial last block
  await withFile(
    async (path) => {
      const f = await open(path, 'w');
      await f.write(content, 0, size, 0);
      await f.close();
    },
    async (path) => {
      const scan = await scanFile(path);
      assert.equal(scan.size, size);
      assert.equal(scan.sha256, createHash('sha256').update(content).digest('hex'));
      assert.deepEqual(scan.extents, [
        { offset: SPARSE_BLOCK, length: SPARSE_BLOCK },
        { offset: 2 * 1024 * 1024, length: 3 * SPARSE_BLOCK },
        { offset: 3 * 1024 * 1024, length: 100 },
      ]);
      assert.equal(scan.dataBytes, 4 * SPARSE_BLOCK + 100);
      assert.equal(isDense(scan), false);
    },
  );
});

void test('a file without zero blocks is one extent (stored dense); an all-zero file has none', async () => {
  await withFile(
    async (path) => {
      const f = await open(path, 'w');
      await f.write(Buffer.alloc(10_000, 1));
      await f.close();
    },
    async (path) => {
      const scan = await scanFile(path);
      assert.deepEqual(scan.extents, [{ offset: 0, length: 10_000 }]);
      assert.equal(isDense(scan), true);
    },
  );
  await withFile(
    async (path) => {
      const f = await open(path, 'w');
      await f.truncate(5 * 1024 * 1024);
      await f.close();
    },
    async (path) => {
      const scan = await scanFile(path);
      assert.deepEqual(scan.extents, []);
      assert.equal(
        scan.sha256,
        createHash('sha256')
          .update(Buffer.alloc(5 * 1024 * 1024))
          .digest('hex'),
      );
    },
  );
});

void test('the sparse map is GNU 1.0: decimal lines, a closing empty region for a trailing hole, 512-byte padded', () => {
  const map = encodeSparseMap([{ offset: 4096, length: 8192 }], 65536);
  assert.equal(map.length, 512);
  assert.equal(map.toString('ascii').replace(/\0+$/, ''), '2\n4096\n8192\n65536\n0\n');
  const full = encodeSparseMap([{ offset: 0, length: 100 }], 100);
  assert.equal(full.toString('ascii').replace(/\0+$/, ''), '1\n0\n100\n');
});

void test('SparseMapReader reads a map split across chunks and hands back the data after it', () => {
  const regions = [
    { offset: 0, length: 10 },
    { offset: 8192, length: 5 },
  ];
  const map = encodeSparseMap(regions, 9000);
  const data = Buffer.from('0123456789abcde');
  const stream = Buffer.concat([map, data]);
  const reader = new SparseMapReader(9000, { maxRegions: 100 });
  assert.equal(reader.push(stream.subarray(0, 3)), null);
  const parsed = reader.push(stream.subarray(3));
  assert.ok(parsed);
  assert.deepEqual(parsed.regions, regions);
  assert.equal(parsed.rest.toString(), '0123456789abcde');
  assert.equal(reader.mapBytes, 512);
});

void test('SparseMapReader refuses overlapping, out-of-range, oversized and non-decimal maps', () => {
  const cases: [string, number, RegExp][] = [
    ['2\n0\n100\n50\n10\n', 1000, /overlap/],
    ['1\n900\n200\n', 1000, /past the end/],
    ['5000\n', 1000, /regions \(limit 100\)/],
    ['1\n-5\n10\n', 1000, /not decimal/],
    ['1\n00000000000000000000001\n', 1000, /too long/],
  ];
  for (const [text, size, message] of cases) {
    const buf = Buffer.alloc(512);
    buf.write(text, 'ascii');
    const reader = new SparseMapReader(size, { maxRegions: 100 });
    assert.throws(
      () => reader.push(buf),
      (err: unknown) => err instanceof SparseMapError && message.test(err.message),
      text,
    );
  }
  const padded = Buffer.alloc(512);
  padded.write('1\n0\n10\n', 'ascii');
  padded[300] = 1;
  assert.throws(() => new SparseMapReader(10, { maxRegions: 10 }).push(padded), /padding is not zero/);
});
