// Diff chains on the tiny guest: `forkd snapshot diff` makes links whose RAM
// diff rebuilds their flat RAM file exactly, children of a depth-2 link see
// every change down the chain, a parent with dependents is not removed
// (cascade removes the chain, leaves first), and compact makes a
// self-contained copy. Bad requests leave nothing behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConflictError, type Engine } from '../../src/engine/index.js';
import { chainInfo } from '../../src/snapshot/chain.js';
import { SNAPSHOT_FILES } from '../../src/snapshot/manifest.js';
import { applyMemoryDiff } from '../../src/snapshot/memory-diff.js';
import { sha256File } from '../../src/util/files.js';
import { runCli } from '../support/cli.js';
import {
  inChildOf,
  qemuProcessesUsing,
  runDirEntries,
  testEngine,
  TEST_DATA_DIR,
} from '../support/engine.js';

const TAG = 'test-chain';
let engine: Engine;
let scratch: string;

const forkd = (...args: string[]) => runCli(['--data-dir', TEST_DATA_DIR, ...args]);

async function tagsLike(prefix: string): Promise<string[]> {
  return (await engine.store.list()).map((r) => r.tag).filter((t) => t.startsWith(prefix));
}

before(async () => {
  engine = testEngine();
  scratch = await mkdtemp(join(tmpdir(), 'forkd-chain-'));
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 128 });
});

after(async () => {
  for (const tag of await tagsLike(TAG)) await engine.store.remove(tag).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  assert.deepEqual(runDirEntries(engine), []);
});

void test('forkd snapshot diff makes links whose RAM diff rebuilds the flat RAM exactly; depth 2 sees the whole chain', async () => {
  const one = forkd(
    'snapshot',
    'diff',
    '--from',
    TAG,
    '--tag',
    `${TAG}-d1`,
    '--exec',
    'echo one > /tmp/one',
    '--json',
  );
  assert.equal(one.status, 0, one.stderr);
  const link = JSON.parse(one.stdout) as {
    parent: { tag: string; contentHash: string };
    diff: { memory: { pages: number; physicalBytes: number }; ms: number };
    memory: { logicalBytes: number };
    contentHash: string;
  };
  assert.equal(link.parent.tag, TAG);
  assert.match(link.parent.contentHash, /^[0-9a-f]{64}$/);
  assert.match(link.contentHash, /^[0-9a-f]{64}$/);
  assert.ok(link.diff.memory.pages > 0, 'the change touched RAM');
  assert.ok(
    link.diff.memory.physicalBytes < link.memory.logicalBytes / 4,
    `the RAM diff (${link.diff.memory.physicalBytes} bytes) is a fraction of the RAM`,
  );
  // The diff, applied to the parent's RAM, is exactly the link's RAM.
  const parentDir = engine.dataDir.snapshotDir(TAG);
  const linkDir = engine.dataDir.snapshotDir(`${TAG}-d1`);
  const rebuilt = join(scratch, 'memory');
  await applyMemoryDiff(
    join(parentDir, SNAPSHOT_FILES.memory),
    join(linkDir, SNAPSHOT_FILES.memoryDiff),
    rebuilt,
  );
  assert.equal(await sha256File(rebuilt), await sha256File(join(linkDir, SNAPSHOT_FILES.memory)));

  const two = forkd(
    'snapshot',
    'diff',
    '--from',
    `${TAG}-d1`,
    '--tag',
    `${TAG}-d2`,
    '--exec',
    'echo two > /tmp/two',
  );
  assert.equal(two.status, 0, two.stderr);
  const chain = await chainInfo(engine.store, `${TAG}-d2`);
  assert.deepEqual(chain.ancestors, [TAG, `${TAG}-d1`]);
  assert.equal(chain.depth, 2);
  assert.equal(chain.problem, null);
  assert.deepEqual((await chainInfo(engine.store, TAG)).dependents, [`${TAG}-d1`]);

  assert.equal(await inChildOf(engine, `${TAG}-d2`, 'cat /tmp/one /tmp/two'), 'one\ntwo\n');
  const listed = forkd('images');
  assert.match(listed.stdout, new RegExp(`${TAG}-d2 .*${TAG}-d1 \\(\\+.*depth 2\\)`));
});

void test('a parent with dependents is refused by rmi and the engine alike; compact copies; cascade removes leaves first', async () => {
  await assert.rejects(
    engine.removeSnapshot(TAG),
    (err: unknown) =>
      err instanceof ConflictError && err.message === `snapshot ${TAG} has dependents: ${TAG}-d1`,
  );
  const rmi = forkd('rmi', TAG);
  assert.notEqual(rmi.status, 0);
  assert.match(rmi.stderr, new RegExp(`snapshot ${TAG} has dependents: ${TAG}-d1`));

  const compact = await engine.compactSnapshot(`${TAG}-d2`, `${TAG}-flat`);
  assert.equal(compact.parent, undefined);
  assert.equal(compact.diff, undefined);
  const files = await readdir(engine.dataDir.snapshotDir(`${TAG}-flat`));
  assert.ok(!files.includes(SNAPSHOT_FILES.memoryDiff), files.join(' '));

  const removed = await engine.removeSnapshot(TAG, { cascade: true });
  assert.deepEqual(removed, [`${TAG}-d2`, `${TAG}-d1`, TAG]);
  assert.deepEqual(await tagsLike(TAG), [`${TAG}-flat`]);
  // The compact copy stands alone.
  assert.equal(await inChildOf(engine, `${TAG}-flat`, 'cat /tmp/two'), 'two\n');
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 128 });
});

void test('snapshot diff refuses a missing parent, a taken tag, a failing change and no change, leaving nothing', async () => {
  const before = await tagsLike(TAG);
  const cases: [string[], RegExp][] = [
    [['--from', `${TAG}-nope`, '--tag', `${TAG}-x`, '--exec', 'true'], /not found/],
    [['--from', TAG, '--tag', `${TAG}-flat`, '--exec', 'true'], /already exists/],
    [['--from', TAG, '--tag', `${TAG}-x`, '--exec', 'echo bad >&2; exit 3'], /the change exited 3: bad/],
    [['--from', TAG, '--tag', `${TAG}-x`], /one of --exec, --eval or --sandbox/],
    [['--from', TAG, '--exec', 'true'], /name the new snapshot with --tag/],
  ];
  for (const [args, message] of cases) {
    const r = forkd('snapshot', 'diff', ...args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
  }
  assert.deepEqual(await tagsLike(TAG), before);
  assert.deepEqual(runDirEntries(engine), []);
});
