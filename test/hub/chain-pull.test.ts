// Diff chains through packs and the hub, on the tiny guest (root > d1 > d2):
// a pack made --with-ancestors installs the whole chain where none of it is,
// keeping ancestors already present with the same content hash; `forkd pull`
// of a diff finds its missing ancestors on the hub by content hash, pulls
// them first, and moves only the diff when they are present. An ancestor the
// hub lacks, a local snapshot with the ancestor's tag but another content
// hash, and a hub entry whose pack is not the snapshot it claims are each
// refused with one clear error, leaving nothing behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diffFromChange, type Engine } from '../../src/engine/index.js';
import { ConflictError, ForkdError, NotFoundError } from '../../src/errors.js';
import { chainEntryName, type PackManifest } from '../../src/hub/pack-manifest.js';
import { publishPack } from '../../src/hub/publish.js';
import type { RegistryIndex } from '../../src/hub/registry-index.js';
import { startHubServer, type HubServer } from '../../src/hub/server.js';
import type { TrustPolicy } from '../../src/hub/signing.js';
import { PackRejectedError } from '../../src/hub/unpack.js';
import { snapshotContentHash } from '../../src/snapshot/content-hash.js';
import { STAGING_PREFIX } from '../../src/snapshot/store.js';
import { runCli, runCliAsync } from '../support/cli.js';
import { editPack } from '../support/pack-edit.js';
import { inChildOf, qemuProcessesUsing, shOk, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const ROOT = 'test-cpull';
const D1 = `${ROOT}-d1`;
const D2 = `${ROOT}-d2`;
const trust: TrustPolicy = { keys: new Map(), allowUnsigned: true };

let engine: Engine;
let work: string;
const hashes = new Map<string, string>();
const packs = { root: '', d1: '', d2: '', d1Flat: '', d2Carrying: '' };
let hub: HubServer;
let hubDir: string;
const otherDirs: string[] = [];

async function otherEngine(): Promise<Engine> {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-cpull-'));
  otherDirs.push(dir);
  return testEngine(dir);
}

/** The snapshots, staging dirs and downloads of a data dir. */
async function leftovers(on: Engine): Promise<{ snapshots: string[]; downloads: string[] }> {
  const list = (dir: string) => readdir(dir).catch(() => [] as string[]);
  return {
    snapshots: (await list(on.dataDir.snapshotsDir)).filter((n) => n !== '.locks').sort(),
    downloads: (await list(join(on.dataDir.cacheDir, 'downloads'))).sort(),
  };
}

/** `work` fails with `cls` and one line matching `message`, and the data dir is as it was. */
async function assertRefused(
  on: Engine,
  work: () => Promise<unknown>,
  cls: abstract new (...args: never[]) => ForkdError,
  message: RegExp,
): Promise<void> {
  const before = await leftovers(on);
  const err = await work().then(
    () => assert.fail('it was installed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
  assert.match(err.message, message);
  assert.doesNotMatch(err.message, /\n/, 'one line');
  const after = await leftovers(on);
  assert.deepEqual(after, before, 'nothing left behind');
  assert.ok(!after.snapshots.some((n) => n.startsWith(STAGING_PREFIX)));
}

/** A loopback hub serving `dir` for the length of `fn`. */
async function withHub(dir: string, fn: (url: string) => Promise<void>): Promise<void> {
  const server = await startHubServer({ dir });
  try {
    await fn(server.url);
  } finally {
    await server.close();
  }
}

const pull = (into: Engine, ref: string, opts: { hub?: string; tag?: string } = {}) =>
  into.pull({ ref, hub: opts.hub ?? hub.url, tag: opts.tag, trust });

before(async () => {
  engine = testEngine();
  work = await mkdtemp(join(tmpdir(), 'forkd-cpull-work-'));
  for (const tag of [D2, D1]) await engine.store.remove(tag).catch(() => undefined); // a failed run's
  await engine.createSnapshot({ tag: ROOT, recipe: 'tiny', replace: true, memoryMib: 128 });
  await diffFromChange(engine, {
    from: ROOT,
    tag: D1,
    change: async (sandbox) => void (await shOk(sandbox, 'echo one > /tmp/m1')),
  });
  await diffFromChange(engine, {
    from: D1,
    tag: D2,
    change: async (sandbox) => void (await shOk(sandbox, 'echo two > /tmp/m2')),
  });
  for (const tag of [ROOT, D1, D2]) hashes.set(tag, await snapshotContentHash(engine.store, tag));
  packs.root = (await engine.pack(ROOT, { output: join(work, 'root.forkd.tar.zst') })).path;
  packs.d1 = (await engine.pack(D1, { output: join(work, 'd1.forkd.tar.zst') })).path;
  packs.d2 = (await engine.pack(D2, { output: join(work, 'd2.forkd.tar.zst') })).path;
  packs.d1Flat = (
    await engine.pack(D1, { output: join(work, 'd1-flat.forkd.tar.zst'), selfContained: true })
  ).path;
  packs.d2Carrying = join(work, 'd2-all.forkd.tar.zst');
  hubDir = join(work, 'hub');
  hub = await startHubServer({ dir: hubDir });
});

after(async () => {
  await hub?.close().catch(() => undefined);
  for (const tag of [D2, D1, ROOT]) await engine.store.remove(tag).catch(() => undefined);
  for (const dir of otherDirs) {
    assert.deepEqual(qemuProcessesUsing(dir), []);
    await rm(dir, { recursive: true, force: true });
  }
  await rm(work, { recursive: true, force: true });
});

void test('pack --with-ancestors carries the root whole and each later link as a diff, under chain/<i>/', () => {
  const cli = runCli([
    '--data-dir',
    TEST_DATA_DIR,
    'pack',
    '--tag',
    D2,
    '--with-ancestors',
    '-o',
    packs.d2Carrying,
    '--json',
  ]);
  assert.equal(cli.status, 0, cli.stderr);
  const manifest = (JSON.parse(cli.stdout) as { manifest: PackManifest }).manifest;
  assert.deepEqual(
    manifest.chain.map((l) => [l.tag, l.content_hash]),
    [
      [ROOT, hashes.get(ROOT)],
      [D1, hashes.get(D1)],
    ],
  );
  assert.ok(manifest.chain[0]!.files.some((f) => f.path === 'memory' && f.diff_of === undefined));
  assert.deepEqual(
    manifest.chain[1]!.files.map((f) => f.path),
    ['memory.diff', 'vmstate', 'snapshot.json'],
  );
  assert.ok(manifest.files.every((f) => f.path !== 'memory'));
  assert.equal(manifest.content_hash, hashes.get(D2));
  // Both ways of packing a link whole at once is a usage error.
  const both = runCli([
    '--data-dir',
    TEST_DATA_DIR,
    'pack',
    '--tag',
    D2,
    '--with-ancestors',
    '--self-contained',
  ]);
  assert.equal(both.status, 2, both.stderr);
  assert.match(both.stderr, /either self-contained or carries its ancestors/);
});

void test('a pack with its ancestors installs the chain where none of it is, and keeps ancestors already here', async () => {
  const empty = await otherEngine();
  const result = await empty.unpack({
    source: createReadStream(packs.d2Carrying),
    sourceName: packs.d2Carrying,
    trust,
  });
  assert.deepEqual(
    result.ancestors.map((a) => [a.tag, a.installed]),
    [
      [ROOT, true],
      [D1, true],
    ],
  );
  for (const tag of [ROOT, D1, D2]) {
    assert.equal(await snapshotContentHash(empty.store, tag), hashes.get(tag), `${tag}'s content hash`);
  }
  assert.equal(await inChildOf(empty, D2, 'cat /tmp/m1 /tmp/m2'), 'one\ntwo\n');

  // Where the root is already, only the links are installed.
  const withRoot = await otherEngine();
  await withRoot.unpack({ source: createReadStream(packs.root), sourceName: packs.root, trust });
  const cli = runCli(['--data-dir', withRoot.dataDir.root, 'unpack', packs.d2Carrying, '--allow-unsigned']);
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, new RegExp(`ancestor ${ROOT}: here already \\(same content hash\\)`));
  assert.match(cli.stdout, new RegExp(`ancestor ${D1}: installed from the pack`));
  assert.equal(await snapshotContentHash(withRoot.store, D2), hashes.get(D2));
});

void test('a carried ancestor whose tag is taken here by another snapshot is refused before a byte is written', async () => {
  const other = await otherEngine();
  // Another snapshot under the root's tag: d1 whole.
  await other.unpack({ source: createReadStream(packs.d1Flat), sourceName: packs.d1Flat, trust, tag: ROOT });
  await assertRefused(
    other,
    () => other.unpack({ source: createReadStream(packs.d2Carrying), sourceName: packs.d2Carrying, trust }),
    ConflictError,
    new RegExp(`carries ancestor ${ROOT} with content hash ${hashes.get(ROOT)}, but the local ${ROOT} has`),
  );
});

void test('pull of a diff finds its missing ancestors on the hub by content hash and pulls them first', async () => {
  for (const [name, file] of [
    ['root', packs.root],
    ['d1', packs.d1],
    ['d2', packs.d2],
  ] as const) {
    await publishPack({ hubDir, file, name: `forkd/cpull-${name}`, version: '1' });
  }
  const index = JSON.parse(await readFile(join(hubDir, 'index.json'), 'utf8')) as RegistryIndex;
  const d2Entry = index.packages['forkd/cpull-d2']!.versions['1']!;
  assert.equal(d2Entry.content_hash, hashes.get(D2));
  assert.deepEqual(d2Entry.chain, [
    { tag: ROOT, content_hash: hashes.get(ROOT) },
    { tag: D1, content_hash: hashes.get(D1) },
  ]);
  assert.equal(index.packages['forkd/cpull-root']!.versions['1']!.chain, undefined);

  const empty = await otherEngine();
  const pulled = await pull(empty, 'forkd/cpull-d2', { tag: D2 });
  assert.deepEqual(
    pulled.ancestors.map((a) => [a.tag, a.installed, a.from]),
    [
      [ROOT, true, 'forkd/cpull-root@1'],
      [D1, true, 'forkd/cpull-d1@1'],
    ],
  );
  assert.equal(await snapshotContentHash(empty.store, D2), hashes.get(D2));
  assert.equal(await inChildOf(empty, D2, 'cat /tmp/m1 /tmp/m2'), 'one\ntwo\n');
  assert.deepEqual((await leftovers(empty)).downloads, [], 'downloads are removed once installed');

  // Ancestors present: only the diff moves.
  await empty.removeSnapshot(D2);
  const again = await runCliAsync([
    '--data-dir',
    empty.dataDir.root,
    'pull',
    'forkd/cpull-d2',
    '--tag',
    D2,
    '--hub',
    hub.url,
    '--allow-unsigned',
    '--json',
  ]);
  assert.equal(again.status, 0, again.stderr);
  const result = JSON.parse(again.stdout) as {
    download_bytes: number;
    ancestors: { tag: string; installed: boolean }[];
  };
  assert.equal(result.download_bytes, d2Entry.size_bytes, 'the download is the diff pack alone');
  assert.deepEqual(
    result.ancestors.map((a) => [a.tag, a.installed]),
    [
      [ROOT, false],
      [D1, false],
    ],
  );
});

void test('an ancestor the hub lacks, or taken here by another snapshot, stops the pull before any download', async () => {
  const lacking = join(work, 'lacking-hub');
  await publishPack({ hubDir: lacking, file: packs.d2, name: 'forkd/cpull-d2', version: '1' });
  await withHub(lacking, async (url) => {
    const empty = await otherEngine();
    await assertRefused(
      empty,
      () => pull(empty, 'forkd/cpull-d2', { hub: url }),
      NotFoundError,
      new RegExp(
        `is a diff over ${ROOT} \\(content hash [0-9a-f]{16}…\\), which is neither installed here nor published`,
      ),
    );
  });
  const taken = await otherEngine();
  await taken.unpack({ source: createReadStream(packs.d1Flat), sourceName: packs.d1Flat, trust, tag: ROOT });
  await assertRefused(
    taken,
    () => pull(taken, 'forkd/cpull-d2'),
    ConflictError,
    new RegExp(`is a diff over ${ROOT} .*, but the local ${ROOT} has content hash`),
  );
});

void test('a hub entry whose pack is not the snapshot its content hash claims is refused, leaving nothing', async () => {
  // A hub that says d1 whole is the root: the chain's hash finds it, the unpack sees through it.
  const forged = join(work, 'forged-hub');
  await publishPack({ hubDir: forged, file: packs.d1Flat, name: 'forkd/cpull-root', version: '1' });
  await publishPack({ hubDir: forged, file: packs.d2, name: 'forkd/cpull-d1', version: '1' });
  const indexPath = join(forged, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as RegistryIndex;
  for (const version of Object.values(index.packages['forkd/cpull-root']!.versions)) {
    version.content_hash = hashes.get(ROOT)!;
  }
  for (const version of Object.values(index.packages['forkd/cpull-d1']!.versions)) {
    version.chain = [{ tag: ROOT, content_hash: hashes.get(ROOT)! }];
  }
  await writeFile(indexPath, JSON.stringify(index));
  await withHub(forged, async (url) => {
    const empty = await otherEngine();
    await assertRefused(
      empty,
      () => pull(empty, 'forkd/cpull-d1', { hub: url }),
      PackRejectedError,
      new RegExp(`${ROOT} has content hash [0-9a-f]{64}, not the ${hashes.get(ROOT)} it was named by`),
    );
  });
});

void test('a carried link forged under a consistent manifest is refused; the verified links before it stay', async () => {
  const forged = join(work, 'd2-forged.forkd.tar.zst');
  await editPack(packs.d2Carrying, forged, {
    files: {
      [chainEntryName(1, 'memory.diff')]: (data) => {
        const copy = Buffer.from(data);
        copy[copy.length - 1]! ^= 1;
        return copy;
      },
    },
  });
  const other = await otherEngine();
  const err = await other.unpack({ source: createReadStream(forged), sourceName: forged, trust }).then(
    () => assert.fail('installed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof PackRejectedError, String(err));
  assert.match(err.message, /content hash [0-9a-f]{64} is not the hash of its parent and diff files/);
  // Each link is verified and installed on its own: the root was whole and true.
  assert.deepEqual((await leftovers(other)).snapshots, [ROOT]);
  assert.equal(await snapshotContentHash(other.store, ROOT), hashes.get(ROOT));

  // A later link's files before an earlier one's: refused at the first out of place.
  const shuffled = join(work, 'd2-shuffled.forkd.tar.zst');
  await editPack(packs.d2Carrying, shuffled, {
    order: (names) => [
      ...names.filter((n) => n.startsWith('chain/1/')),
      ...names.filter((n) => !n.startsWith('chain/1/')),
    ],
  });
  const fresh = await otherEngine();
  await assertRefused(
    fresh,
    () => fresh.unpack({ source: createReadStream(shuffled), sourceName: shuffled, trust }),
    PackRejectedError,
    /entry "chain\/1\/memory\.diff" comes before vmlinux, .* of ancestor test-cpull: each snapshot.s files come together, root first/,
  );
});
