// The official E2B SDK's `sandbox.files` against a real daemon and a tiny
// guest: text, binary, streamed, gzipped and multi-file writes and reads,
// list (with depth), getInfo and exists, makeDir, rename, remove, the SDK's
// own error classes, and watchDir seeing files a command creates (polled).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FileNotFoundError,
  FilesystemEventType,
  FileType,
  InvalidArgumentError,
  Sandbox,
  type FilesystemEvent,
} from 'e2b';
import type { Engine } from '../../../src/engine/index.js';
import { runDirEntries, testEngine } from '../../support/engine.js';
import { startE2bDaemon, type E2bTestDaemon } from '../../support/e2b-daemon.js';

const TAG = 'test-e2b-files';
let engine: Engine;
let e2b: E2bTestDaemon;
let sbx: Sandbox;

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  e2b = await startE2bDaemon('e2b-files');
  sbx = await Sandbox.create(TAG, e2b.opts());
});

after(async () => {
  await sbx?.kill().catch(() => undefined);
  await e2b.close();
  await engine.store.remove(TAG).catch(() => undefined);
  assert.deepEqual(runDirEntries(engine), []);
});

function streamOf(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });
}

test('text and binary writes and reads, relative paths under /home/user', async () => {
  const info = await sbx.files.write('notes/hello.txt', 'héllo\n');
  assert.deepEqual(
    { name: info.name, type: info.type, path: info.path },
    { name: 'hello.txt', type: 'file', path: '/home/user/notes/hello.txt' },
  );
  assert.equal(await sbx.files.read('/home/user/notes/hello.txt'), 'héllo\n');
  assert.equal((await sbx.commands.run('cat /home/user/notes/hello.txt')).stdout, 'héllo\n');

  const bytes = new Uint8Array(256).map((_, i) => i);
  await sbx.files.write('/tmp/all-bytes.bin', bytes.buffer);
  assert.deepEqual(await sbx.files.read('/tmp/all-bytes.bin', { format: 'bytes' }), bytes);
  const blob = await sbx.files.read('/tmp/all-bytes.bin', { format: 'blob' });
  assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), bytes);
  const stream = await sbx.files.read('/tmp/all-bytes.bin', { format: 'stream' });
  assert.deepEqual(new Uint8Array(await new Response(stream).arrayBuffer()), bytes);

  await sbx.files.write('/tmp/empty', '');
  assert.equal(await sbx.files.read('/tmp/empty'), '');
  await assert.rejects(sbx.files.read('/tmp/no-such-file'), FileNotFoundError);
});

test('uploads from a stream, gzipped, and several files at once', async () => {
  const part = new Uint8Array(300_000).fill(7);
  await sbx.files.write('/tmp/streamed.bin', streamOf(part, part, new Uint8Array([1, 2, 3])));
  const back = await sbx.files.read('/tmp/streamed.bin', { format: 'bytes' });
  assert.equal(back.length, 600_003);
  assert.deepEqual(back.subarray(599_998), new Uint8Array([7, 7, 1, 2, 3]));

  await sbx.files.write('/tmp/zipped.txt', 'compressed on the way', { gzip: true });
  assert.equal(await sbx.files.read('/tmp/zipped.txt'), 'compressed on the way');

  const many = await sbx.files.write([
    { path: '/tmp/many/a.txt', data: 'A' },
    { path: '/tmp/many/b.txt', data: new Blob(['B']) },
  ]);
  assert.deepEqual(
    many.map((f) => f.path),
    ['/tmp/many/a.txt', '/tmp/many/b.txt'],
  );
  assert.equal((await sbx.commands.run('cat /tmp/many/a.txt /tmp/many/b.txt')).stdout, 'AB');
});

test('makeDir, list (with depth), getInfo, exists, rename, remove', async () => {
  assert.equal(await sbx.files.makeDir('/tmp/tree/sub'), true);
  assert.equal(await sbx.files.makeDir('/tmp/tree/sub'), false, 'an existing directory is not made again');
  await sbx.files.write('/tmp/tree/top.txt', '12345');
  await sbx.files.write('/tmp/tree/sub/inner.txt', 'x');

  const top = await sbx.files.list('/tmp/tree');
  assert.deepEqual(
    top.map((e) => [e.name, e.type, e.path]),
    [
      ['sub', FileType.DIR, '/tmp/tree/sub'],
      ['top.txt', FileType.FILE, '/tmp/tree/top.txt'],
    ],
  );
  const deep = await sbx.files.list('/tmp/tree', { depth: 2 });
  assert.deepEqual(
    deep.map((e) => e.path),
    ['/tmp/tree/sub', '/tmp/tree/sub/inner.txt', '/tmp/tree/top.txt'],
  );
  await assert.rejects(sbx.files.list('/tmp/tree/top.txt'), InvalidArgumentError);

  const info = await sbx.files.getInfo('/tmp/tree/top.txt');
  assert.equal(info.type, FileType.FILE);
  assert.equal(info.size, 5);
  assert.equal(info.mode, 0o644);
  assert.equal(info.permissions, '-rw-r--r--');
  assert.equal(info.owner, 'root');
  assert.ok(
    info.modifiedTime instanceof Date && Math.abs(info.modifiedTime.getTime() - Date.now()) < 600_000,
  );
  assert.equal((await sbx.files.getInfo('/tmp/tree')).permissions.startsWith('d'), true);
  assert.equal(await sbx.files.exists('/tmp/tree/sub/inner.txt'), true);
  assert.equal(await sbx.files.exists('/tmp/tree/nothing'), false);
  await assert.rejects(sbx.files.getInfo('/tmp/tree/nothing'), FileNotFoundError);

  const moved = await sbx.files.rename('/tmp/tree/sub', '/tmp/elsewhere/sub2');
  assert.deepEqual([moved.name, moved.type, moved.path], ['sub2', FileType.DIR, '/tmp/elsewhere/sub2']);
  assert.equal(await sbx.files.read('/tmp/elsewhere/sub2/inner.txt'), 'x');
  assert.equal(await sbx.files.exists('/tmp/tree/sub'), false);
  await assert.rejects(sbx.files.rename('/tmp/tree/gone', '/tmp/x'), FileNotFoundError);

  await sbx.files.remove('/tmp/elsewhere');
  assert.equal(await sbx.files.exists('/tmp/elsewhere'), false);
  await sbx.files.remove('/tmp/tree/top.txt');
  assert.deepEqual(await sbx.files.list('/tmp/tree'), []);
});

test('watchDir sees files a command creates and changes, recursively, until stopped', async () => {
  await sbx.files.makeDir('/tmp/watched');
  const events: FilesystemEvent[] = [];
  const handle = await sbx.files.watchDir('/tmp/watched', (e) => void events.push(e), { recursive: true });
  try {
    await sbx.commands.run('mkdir /tmp/watched/d && echo one > /tmp/watched/d/new.txt');
    const seen = (name: string, type: FilesystemEventType): boolean =>
      events.some((e) => e.name === name && e.type === type);
    const deadline = Date.now() + 20_000;
    while (
      !(seen('d', FilesystemEventType.CREATE) && seen('d/new.txt', FilesystemEventType.CREATE)) &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 100));
    assert.ok(seen('d/new.txt', FilesystemEventType.CREATE), JSON.stringify(events));
    await sbx.commands.run('echo two more >> /tmp/watched/d/new.txt; rm /tmp/watched/d/new.txt');
    while (!seen('d/new.txt', FilesystemEventType.REMOVE) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    assert.ok(seen('d/new.txt', FilesystemEventType.REMOVE), JSON.stringify(events));
  } finally {
    await handle.stop();
  }
  await assert.rejects(
    sbx.files.watchDir('/tmp/no-such-dir', () => undefined),
    FileNotFoundError,
  );
});
