import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDir } from '../../src/snapshot/data-dir.js';
import { SnapshotStore } from '../../src/snapshot/store.js';
import { MANIFEST_FILE, type SnapshotManifest } from '../../src/snapshot/manifest.js';
import { AlreadyExistsError, ConflictError, CorruptError, NotFoundError } from '../../src/errors.js';

function manifest(tag: string): SnapshotManifest {
  return {
    formatVersion: 1,
    tag,
    status: 'writing',
    createdAt: new Date().toISOString(),
    forkdVersion: '0.0.0',
    qemu: { version: '7.2.22', versionLine: 'QEMU emulator version 7.2.22' },
    machine: {
      machineType: 'microvm',
      accel: 'tcg',
      cpuModel: 'max',
      vcpus: 1,
      memoryMib: 256,
      hasDisk: false,
      hasNetwork: true,
    },
    accelReason: 'test',
    kernel: { version: 'k', sha256: 'x', cmdline: '' },
    initrd: { sha256: 'y' },
    image: { recipe: 'tiny', contentHash: 'h' },
    disk: null,
    memory: { file: 'memory', logicalBytes: 1, physicalBytes: 1 },
    vmstate: { file: 'vmstate', bytes: 1, sha256: 'z' },
    runtime: null,
    timings: { bootToReadyMs: 1, freezeMs: 1, totalMs: 2 },
  };
}

async function withStore(fn: (store: SnapshotStore, root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'forkd-store-'));
  try {
    await fn(new SnapshotStore(new DataDir(root)), root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test('a committed snapshot is ready and listed', () =>
  withStore(async (store) => {
    const writer = await store.begin('one');
    await writer.commit(manifest('one'));
    const ready = await store.getReady('one');
    assert.equal(ready.manifest.status, 'ready');
    assert.deepEqual(
      (await store.list()).map((r) => r.tag),
      ['one'],
    );
  }));

test('an aborted snapshot leaves nothing behind and frees the tag', () =>
  withStore(async (store, root) => {
    const writer = await store.begin('gone');
    await writeFile(writer.path('memory'), 'x');
    await writer.abort();
    assert.deepEqual(await readdir(join(root, 'snapshots')).then((n) => n.filter((x) => x !== '.locks')), []);
    assert.deepEqual(await readdir(join(root, 'snapshots', '.locks')), []);
    await (await store.begin('gone')).abort();
  }));

test('a tag being written cannot be written twice at once, and is not restorable', () =>
  withStore(async (store) => {
    const writer = await store.begin('busy');
    await writeFile(join(writer.dir, MANIFEST_FILE), JSON.stringify(manifest('busy')));
    await assert.rejects(store.begin('busy'), ConflictError);
    await assert.rejects(store.getReady('busy'), (err: ConflictError) =>
      /writing, not ready/.test(err.message),
    );
    await writer.abort();
  }));

test('an existing tag is refused unless replacing', () =>
  withStore(async (store) => {
    await (await store.begin('dup')).commit(manifest('dup'));
    await assert.rejects(store.begin('dup'), AlreadyExistsError);
    const writer = await store.begin('dup', { replace: true });
    await writer.abort();
  }));

test('missing and damaged snapshots give typed errors naming the fix', () =>
  withStore(async (store) => {
    await assert.rejects(store.getReady('nope'), NotFoundError);
    const writer = await store.begin('broken');
    await writer.commit(manifest('broken'));
    await writeFile(join(writer.dir, MANIFEST_FILE), '{"tag": ');
    await assert.rejects(
      store.getReady('broken'),
      (err: CorruptError) => /damaged/.test(err.message) && /rmi/.test(err.oneLine()),
    );
  }));

test('a snapshot left writing by a dead process is abandoned; a stale lock is taken over', () =>
  withStore(async (store, root) => {
    const writer = await store.begin('crashed');
    await writeFile(join(writer.dir, MANIFEST_FILE), JSON.stringify(manifest('crashed')));
    // Simulate the writer dying: its lock names a pid that no longer exists.
    await writeFile(join(root, 'snapshots', '.locks', 'crashed.lock'), '999999999');
    assert.deepEqual(
      (await store.abandoned()).map((r) => r.tag),
      ['crashed'],
    );
    await store.remove('crashed');
    assert.equal(await store.exists('crashed'), false);
    assert.equal(await readFile(join(root, 'snapshots', '.locks', 'crashed.lock')).catch(() => null), null);
  }));

test('a link becomes ready only over its parent as it names it, and a parent with a link is not removed', () =>
  withStore(async (store) => {
    const parent = await store.begin('parent');
    await parent.commit({ ...manifest('parent'), contentHash: 'a'.repeat(64) });
    const named = { tag: 'parent', contentHash: 'a'.repeat(64) };

    // The parent removed while the link was written: the link is refused, and aborting it leaves nothing.
    const orphan = await store.begin('orphan');
    await store.remove('parent');
    await assert.rejects(
      orphan.commit({ ...manifest('orphan'), parent: named }),
      (err: unknown) =>
        err instanceof ConflictError && /parent of this diff link, was removed or replaced/.test(err.message),
    );
    await orphan.abort();
    assert.deepEqual(await store.list(), []);

    // Replaced by another snapshot of that tag: refused too.
    const other = await store.begin('parent');
    await other.commit({ ...manifest('parent'), contentHash: 'b'.repeat(64) });
    const stale = await store.begin('stale');
    await assert.rejects(stale.commit({ ...manifest('stale'), parent: named }), ConflictError);
    await stale.abort();

    // Over the parent it names: ready, and the parent refuses removal while the link is there.
    const link = await store.begin('link');
    await link.commit({ ...manifest('link'), parent: { tag: 'parent', contentHash: 'b'.repeat(64) } });
    assert.equal((await store.getReady('link')).manifest.status, 'ready');
    await assert.rejects(
      store.remove('parent', { unlessDependents: true }),
      (err: unknown) => err instanceof ConflictError && /has dependents: link/.test(err.message),
    );
    await store.remove('link', { unlessDependents: true });
    await store.remove('parent', { unlessDependents: true });
    assert.deepEqual(await store.list(), []);
  }));
