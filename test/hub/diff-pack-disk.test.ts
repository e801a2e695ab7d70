// A diff pack of a link with a disk (python-numpy): the pack carries the
// link's disk diff (a qcow2 layer over its parent's), and unpacking it over
// the parent installed from a full pack flattens that diff onto the base
// image, so a child of the unpacked link reads the file its source wrote.
// A link made from a change (forkd snapshot diff) leaves out the blocks of
// files the change deleted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diffFromChange, type ChildResult, type Engine } from '../../src/engine/index.js';
import type { TrustPolicy } from '../../src/hub/signing.js';
import { SNAPSHOT_FILES } from '../../src/snapshot/manifest.js';
import { inspectDiskImage } from '../../src/vmm/disk.js';
import { inChildOf, qemuProcessesUsing, shOk, testEngine } from '../support/engine.js';

const TAG = 'test-dpack-numpy';
const LINK = `${TAG}-d1`;
const TRIMMED = `${TAG}-trimmed`;
const trust: TrustPolicy = { keys: new Map(), allowUnsigned: true };

let engine: Engine;
let work: string;
let written: string;

before(async () => {
  engine = testEngine();
  work = await mkdtemp(join(tmpdir(), 'forkd-dpack-disk-'));
  for (const tag of [TRIMMED, LINK]) await engine.store.remove(tag).catch(() => undefined);
  await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', replace: true });
  const forked = await engine.fork({ tag: TAG, n: 1 });
  const child = forked.children[0] as ChildResult;
  if (!child.ok) throw child.error;
  try {
    written = await shOk(
      child.sandbox,
      'head -c 3000000 /dev/urandom > /root/changed && sync && sha256sum /root/changed',
    );
    await engine.branch(child.sandbox, { tag: LINK, diff: true });
  } finally {
    await child.sandbox.kill();
  }
});

after(async () => {
  for (const tag of [TRIMMED, LINK, TAG]) await engine.store.remove(tag).catch(() => undefined);
  assert.deepEqual(qemuProcessesUsing(work), []);
  await rm(work, { recursive: true, force: true });
});

void test('a diff pack carries the disk diff, and unpacking flattens it over the local parent', async () => {
  const fullRoot = join(work, 'root.forkd.tar.zst');
  const diffPack = join(work, 'link.forkd.tar.zst');
  await engine.pack(TAG, { output: fullRoot });
  const diff = await engine.pack(LINK, { output: diffPack });
  assert.deepEqual(
    diff.manifest.files.map((f) => [f.path, f.diff_of ?? null]),
    [
      [SNAPSHOT_FILES.diskDiff, SNAPSHOT_FILES.disk],
      [SNAPSHOT_FILES.memoryDiff, SNAPSHOT_FILES.memory],
      [SNAPSHOT_FILES.vmstate, null],
      ['snapshot.json', null],
    ],
  );
  const other = testEngine(join(work, 'data'));
  await other.unpack({ source: createReadStream(fullRoot), sourceName: fullRoot, trust });
  const result = await other.unpack({ source: createReadStream(diffPack), sourceName: diffPack, trust });
  const layer = await inspectDiskImage(join(result.dir, SNAPSHOT_FILES.disk), 'qcow2');
  assert.equal(layer.backingFile, SNAPSHOT_FILES.rootfs, 'the flat layer is over the base image beside it');
  const diffLayer = await inspectDiskImage(join(result.dir, SNAPSHOT_FILES.diskDiff), 'qcow2');
  assert.equal(diffLayer.backingFile, `../${TAG}/${SNAPSHOT_FILES.disk}`);
  assert.equal(await inChildOf(other, LINK, 'sha256sum /root/changed'), written);
});

void test('a link made from a change leaves out the blocks of the files the change deleted', async () => {
  const { manifest } = await diffFromChange(engine, {
    from: TAG,
    tag: TRIMMED,
    change: async (sandbox) =>
      void (await shOk(
        sandbox,
        'head -c 24000000 /dev/urandom > /root/scratch && sync && rm /root/scratch && echo kept > /root/kept',
      )),
  });
  const disk = manifest.diff?.disk;
  assert.ok(disk, 'a disk diff');
  assert.ok(
    disk.physicalBytes < 8_000_000,
    `24 MB written and deleted are not in the diff (${disk.physicalBytes} bytes)`,
  );
  assert.equal(
    await inChildOf(engine, TRIMMED, 'cat /root/kept; test -e /root/scratch || echo gone'),
    'kept\ngone\n',
  );
});
