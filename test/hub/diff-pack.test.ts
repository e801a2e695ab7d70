// Diff packs on the tiny guest: a pack of a diff link carries only its diff
// and names its parent by tag and content hash; it unpacks into a data dir
// that has that parent (installed there from a full pack) and rebuilds the
// link's flat RAM exactly, so its children see what the link's source wrote.
// `--self-contained` packs a link whole. A missing parent, a parent with
// another content hash or not ready, a chain that is not the local one, a
// memory diff of another RAM size and a forged content hash are each refused
// with one clear error, leaving no snapshot and no staging dir.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildResult, Engine } from '../../src/engine/index.js';
import { ConflictError, CorruptError, ForkdError, NotFoundError } from '../../src/errors.js';
import type { PackManifest } from '../../src/hub/pack-manifest.js';
import { PackRejectedError } from '../../src/hub/unpack.js';
import type { TrustPolicy } from '../../src/hub/signing.js';
import { diffContentHash, snapshotContentHash } from '../../src/snapshot/content-hash.js';
import {
  readManifest,
  SNAPSHOT_FILES,
  writeManifest,
  type SnapshotManifest,
} from '../../src/snapshot/manifest.js';
import { STAGING_PREFIX } from '../../src/snapshot/store.js';
import { sha256File } from '../../src/util/files.js';
import { runCli } from '../support/cli.js';
import { editPack } from '../support/pack-edit.js';
import { inChildOf, qemuProcessesUsing, shOk, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-dpack';
const LINK = `${TAG}-d1`;
const LINK2 = `${TAG}-d2`;
const MARKER = 'diff-pack-marker-7f3a';
const trust: TrustPolicy = { keys: new Map(), allowUnsigned: true };

let engine: Engine;
let work: string;
let fullRoot: string;
let diffPack: string;
let flatPack: string;
let rootHash: string;
const otherDirs: string[] = [];

async function otherEngine(): Promise<Engine> {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-dpack-'));
  otherDirs.push(dir);
  return testEngine(dir);
}

const unpack = (into: Engine, path: string, opts: { tag?: string; force?: boolean } = {}) =>
  into.unpack({ source: createReadStream(path), sourceName: path, trust, ...opts });

/** The snapshots and staging dirs of a data dir. */
async function snapshotDirs(on: Engine): Promise<string[]> {
  const names = await readdir(on.dataDir.snapshotsDir).catch(() => [] as string[]);
  return names.filter((n) => n !== '.locks').sort();
}

/** Unpacking fails with `cls` and a message matching `message`, and the data dir is as it was. */
async function assertRefused(
  on: Engine,
  path: string,
  cls: abstract new (...args: never[]) => ForkdError,
  message: RegExp,
  opts: { tag?: string; force?: boolean } = {},
): Promise<ForkdError> {
  const before = await snapshotDirs(on);
  const err = await unpack(on, path, { tag: 'bad', ...opts }).then(
    () => assert.fail(`${path} was installed`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
  assert.match(err.message, message);
  assert.doesNotMatch(err.message, /\n/, 'one line');
  const after = await snapshotDirs(on);
  assert.deepEqual(after, before, 'nothing left behind');
  assert.ok(!after.some((n) => n.startsWith(STAGING_PREFIX)));
  return err;
}

before(async () => {
  engine = testEngine();
  work = await mkdtemp(join(tmpdir(), 'forkd-dpack-work-'));
  for (const tag of [LINK2, LINK]) await engine.store.remove(tag).catch(() => undefined); // a failed run's
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 128 });
  const forked = await engine.fork({ tag: TAG, n: 1 });
  const child = forked.children[0] as ChildResult;
  if (!child.ok) throw child.error;
  try {
    await shOk(child.sandbox, `echo ${MARKER} > /tmp/marker`);
    await engine.branch(child.sandbox, { tag: LINK, diff: true });
  } finally {
    await child.sandbox.kill();
  }
  // A link of the link: depth 2.
  const forked2 = await engine.fork({ tag: LINK, n: 1 });
  const child2 = forked2.children[0] as ChildResult;
  if (!child2.ok) throw child2.error;
  try {
    await shOk(child2.sandbox, `echo two > /tmp/marker2`);
    await engine.branch(child2.sandbox, { tag: LINK2, diff: true });
  } finally {
    await child2.sandbox.kill();
  }
  rootHash = await snapshotContentHash(engine.store, TAG);
  fullRoot = join(work, 'root.forkd.tar.zst');
  diffPack = join(work, 'link.forkd.tar.zst');
  flatPack = join(work, 'link-flat.forkd.tar.zst');
  await engine.pack(TAG, { output: fullRoot });
});

after(async () => {
  for (const tag of [LINK2, LINK, TAG]) await engine.store.remove(tag).catch(() => undefined);
  for (const dir of otherDirs) {
    assert.deepEqual(qemuProcessesUsing(dir), []);
    await rm(dir, { recursive: true, force: true });
  }
  await rm(work, { recursive: true, force: true });
});

void test('a pack of a diff link holds only its diff and names its parent; --self-contained packs it whole', async () => {
  const diff = await engine.pack(LINK, { output: diffPack });
  assert.equal(diff.manifest.format_version, 2);
  assert.deepEqual(diff.manifest.chain, [{ tag: TAG, content_hash: rootHash, files: [] }]);
  assert.deepEqual(
    diff.manifest.files.map((f) => [f.path, f.diff_of ?? null]),
    [
      [SNAPSHOT_FILES.memoryDiff, SNAPSHOT_FILES.memory],
      [SNAPSHOT_FILES.vmstate, null],
      ['snapshot.json', null],
    ],
  );
  const cli = runCli([
    '--data-dir',
    TEST_DATA_DIR,
    'pack',
    '--tag',
    LINK,
    '-o',
    flatPack,
    '--self-contained',
    '--json',
  ]);
  assert.equal(cli.status, 0, cli.stderr);
  const flat = JSON.parse(cli.stdout) as { bytes: number; manifest: PackManifest };
  assert.equal(flat.manifest.format_version, 1);
  assert.deepEqual(flat.manifest.chain, []);
  assert.ok(flat.manifest.files.some((f) => f.path === SNAPSHOT_FILES.memory));
  console.log(`diff pack ${diff.bytes} bytes, self-contained pack ${flat.bytes} bytes`);
  assert.ok(
    diff.bytes * 20 < flat.bytes,
    `the diff pack (${diff.bytes}) is much smaller than the whole (${flat.bytes})`,
  );
});

void test('a diff pack unpacks over its parent from a full pack: same RAM, same content hash, and children see the change', async () => {
  const other = await otherEngine();
  await unpack(other, fullRoot);
  assert.equal(
    await snapshotContentHash(other.store, TAG),
    rootHash,
    'the unpacked parent has the same content hash',
  );
  const result = await unpack(other, diffPack);
  assert.equal(result.tag, LINK);
  const installed = result.snapshot;
  const original = (await engine.store.getReady(LINK)).manifest;
  assert.deepEqual(installed.parent, { tag: TAG, contentHash: rootHash });
  assert.equal(installed.contentHash, original.contentHash);
  assert.deepEqual(installed.diff, original.diff);
  assert.equal(
    await sha256File(join(result.dir, SNAPSHOT_FILES.memory)),
    await sha256File(join(engine.store.dataDir.snapshotDir(LINK), SNAPSHOT_FILES.memory)),
    'the rebuilt flat RAM is the original link',
  );
  assert.equal((await other.store.list()).find((r) => r.tag === TAG)?.manifest?.status, 'ready');
  assert.equal((await inChildOf(other, LINK, 'cat /tmp/marker')).trim(), MARKER);
  assert.deepEqual(await snapshotDirs(other), [TAG, LINK]);
  // Unpacked again under another tag (the chain does not depend on the link's own tag).
  await unpack(other, diffPack, { tag: 'moved-link' });
  assert.equal((await inChildOf(other, 'moved-link', 'cat /tmp/marker')).trim(), MARKER);
  // The parent now has dependents and is not removed under them.
  await assert.rejects(other.removeSnapshot(TAG), ConflictError);

  // Depth 2: the pack names both ancestors, and installs where both are.
  const depth2 = join(work, 'link2.forkd.tar.zst');
  const packed2 = await engine.pack(LINK2, { output: depth2 });
  const linkHash = (await engine.store.getReady(LINK)).manifest.contentHash;
  assert.deepEqual(packed2.manifest.chain, [
    { tag: TAG, content_hash: rootHash, files: [] },
    { tag: LINK, content_hash: linkHash, files: [] },
  ]);
  await unpack(other, depth2);
  assert.equal((await inChildOf(other, LINK2, 'cat /tmp/marker /tmp/marker2')).trim(), `${MARKER}\ntwo`);
  // Where only the root is, its direct parent is missing.
  const rootOnly = await otherEngine();
  await unpack(rootOnly, fullRoot);
  await assertRefused(
    rootOnly,
    depth2,
    NotFoundError,
    new RegExp(`is a diff of snapshot ${LINK} \\(content hash ${linkHash}\\), which is not installed here`),
  );
});

void test('a diff pack whose parent is missing, another snapshot, or not ready is refused and leaves nothing', async () => {
  const other = await otherEngine();
  const missing = await assertRefused(
    other,
    diffPack,
    NotFoundError,
    new RegExp(`is a diff of snapshot ${TAG} \\(content hash ${rootHash}\\), which is not installed here`),
  );
  assert.match(missing.hint ?? '', new RegExp(`pull or unpack ${TAG}`));

  // Another snapshot under the parent's tag: the link, packed whole, installed as TAG.
  await unpack(other, flatPack, { tag: TAG });
  await assertRefused(
    other,
    diffPack,
    ConflictError,
    new RegExp(
      `is a diff of snapshot ${TAG} \\(content hash ${rootHash}\\), but the local ${TAG} has content hash [0-9a-f]{64}`,
    ),
  );

  await unpack(other, fullRoot, { force: true });
  const dir = other.store.dataDir.snapshotDir(TAG);
  const ready: SnapshotManifest = await readManifest(dir);
  await writeManifest(dir, { ...ready, status: 'writing' });
  await assertRefused(other, diffPack, ConflictError, new RegExp(`snapshot "${TAG}" is writing, not ready`));
  await writeManifest(dir, ready);
});

void test('a diff pack whose chain is not the local one, or a cycle, is refused and leaves nothing', async () => {
  const other = await otherEngine();
  await unpack(other, fullRoot);
  const longer = join(work, 'longer.forkd.tar.zst');
  await editPack(diffPack, longer, {
    manifest: (m) => m.chain.unshift({ tag: 'ancient', content_hash: 'b'.repeat(64), files: [] }),
  });
  await assertRefused(
    other,
    longer,
    PackRejectedError,
    new RegExp(`its chain ancient > ${TAG} is not the local chain of ${TAG}: ${TAG}$`),
  );
  const cycle = join(work, 'cycle.forkd.tar.zst');
  await editPack(diffPack, cycle, { manifest: (m) => m.chain.push({ ...m.chain[0]! }) });
  await assertRefused(other, cycle, CorruptError, /chain of ancestors with a cycle/);
  // Installed under its own parent's tag, it would replace what it needs.
  await assertRefused(other, diffPack, ConflictError, /cannot be installed as its own ancestor/, {
    tag: TAG,
    force: true,
  });
});

void test('a memory diff of another RAM size, or a forged content hash, is refused and leaves nothing', async () => {
  const other = await otherEngine();
  await unpack(other, fullRoot);
  const bigger = join(work, 'bigger.forkd.tar.zst');
  // A consistent forger: the diff's header claims twice the RAM, and the
  // link's content hash is recomputed over the changed diff.
  const forgeDir = await mkdtemp(join(work, 'forge-'));
  await editPack(diffPack, bigger, {
    files: {
      [SNAPSHOT_FILES.memoryDiff]: (data) => {
        const out = Buffer.from(data);
        out.writeBigUInt64LE(out.readBigUInt64LE(16) * 2n, 16); // the header's memory size
        writeFileSync(join(forgeDir, SNAPSHOT_FILES.memoryDiff), out);
        return out;
      },
    },
  });
  const link = (await engine.store.getReady(LINK)).manifest;
  const forgedHash = await diffContentHash(forgeDir, link);
  assert.notEqual(forgedHash, link.contentHash);
  await editPack(bigger, bigger, {
    files: {
      'snapshot.json': (data) =>
        Buffer.from(JSON.stringify({ ...(JSON.parse(data.toString()) as object), contentHash: forgedHash })),
    },
  });
  await assertRefused(
    other,
    bigger,
    PackRejectedError,
    /memory\.diff is of 268435456 bytes of RAM; the machine declares 134217728 and test-dpack's RAM is 134217728/,
  );
  const forged = join(work, 'forged.forkd.tar.zst');
  await editPack(diffPack, forged, {
    files: {
      'snapshot.json': (data) => {
        const m = JSON.parse(data.toString()) as SnapshotManifest;
        return Buffer.from(JSON.stringify({ ...m, contentHash: 'c'.repeat(64) }));
      },
    },
  });
  await assertRefused(
    other,
    forged,
    PackRejectedError,
    /content hash c{64} is not the hash of its parent and diff files/,
  );
  assert.deepEqual(await snapshotDirs(other), [TAG]);
});
