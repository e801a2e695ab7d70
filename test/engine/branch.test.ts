// Live branch correctness probes on the python-numpy guest (a disk and a warm
// runtime): a grandchild of a branch sees exactly the branch point, at depth 1
// and at depth 5, and every sandbox that was branched keeps running with its
// own later changes, which never leak into the branch.
import { VM_SUBDIR } from '../../src/engine/run-dir.js';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import { InvalidArgumentError } from '../../src/errors.js';
import { SNAPSHOT_FILES } from '../../src/snapshot/manifest.js';
import { applyMemoryDiff } from '../../src/snapshot/memory-diff.js';
import { sha256File } from '../../src/util/files.js';
import { execFileSync } from 'node:child_process';
import type { ChildResult, Engine, Sandbox } from '../../src/engine/index.js';
import { qemuProcessesUsing, runDirEntries, shOk, testEngine } from '../support/engine.js';

const TAG = 'test-branch-numpy';
const DEPTH = 5;
let engine: Engine;
const live: Sandbox[] = [];
const branchTags: string[] = [];

async function forkOne(tag: string): Promise<Sandbox> {
  const result = await engine.fork({ tag, n: 1 });
  const child = result.children[0] as ChildResult;
  if (!child.ok) throw child.error;
  live.push(child.sandbox);
  return child.sandbox;
}

const sh = shOk;

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', replace: true });
});

after(async () => {
  await Promise.all(live.map((s) => s.kill()));
  for (const tag of [...branchTags, TAG]) await engine.store.remove(tag).catch(() => undefined);
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  assert.deepEqual(runDirEntries(engine), []);
});

void test(`a grandchild sees exactly the branch point, at depth 1 and at depth ${DEPTH}`, async () => {
  let tag = TAG;
  const branched: Sandbox[] = [];
  for (let depth = 1; depth <= DEPTH; depth++) {
    const sandbox = await forkOne(tag);
    await sandbox.agent.eval(`x${depth} = ${depth * 11}`);
    await sh(
      sandbox,
      `echo ${depth} > /root/before${depth}; sleep 100000 >/dev/null 2>&1 & echo $! > /root/pid${depth}`,
    );
    const result = await engine.branch(sandbox, { tag: `${TAG}-d${depth}` });
    branchTags.push(result.manifest.tag);
    assert.equal(result.manifest.status, 'ready');
    assert.equal(result.manifest.branch?.depth, depth);
    assert.equal(result.manifest.branchedFrom, tag);
    assert.ok(result.timings.pauseMs >= 0 && result.timings.pauseMs < result.timings.totalMs);
    // After the branch point: must never reach the branch.
    await sh(sandbox, `echo after > /root/after${depth}`);
    await sandbox.agent.eval(`x${depth} = -1`);
    branched.push(sandbox);
    tag = result.manifest.tag;

    if (depth === 1 || depth === DEPTH) {
      const grandchild = await forkOne(tag);
      const vars = await grandchild.agent.eval(
        `[${Array.from({ length: depth }, (_, i) => `x${i + 1}`).join(', ')}]`,
      );
      assert.equal(vars.error, null);
      assert.deepEqual(
        vars.result,
        Array.from({ length: depth }, (_, i) => (i + 1) * 11),
      );
      const files = (await sh(grandchild, 'ls /root')).split('\n').filter(Boolean);
      for (let i = 1; i <= depth; i++) {
        assert.ok(files.includes(`before${i}`), `before${i} present at depth ${depth}`);
        assert.ok(!files.includes(`after${i}`), `after${i} absent at depth ${depth}`);
      }
      const alive = await sh(
        grandchild,
        `for i in $(seq 1 ${depth}); do kill -0 $(cat /root/pid$i) && echo $i; done`,
      );
      assert.deepEqual(
        alive.trim().split('\n'),
        Array.from({ length: depth }, (_, i) => String(i + 1)),
        'processes started before the branch still run',
      );
    }
  }
  // Every sandbox that was branched is still running, with its own later state.
  for (const [i, sandbox] of branched.entries()) {
    assert.ok(sandbox.isAlive);
    assert.deepEqual((await sandbox.agent.eval(`x${i + 1}`)).result, -1);
    assert.match(await sh(sandbox, `cat /root/after${i + 1}`), /after/);
  }
});

void test('a tag that exists, or a second branch of a sandbox in flight, is refused and nothing is left', async () => {
  const sandbox = await forkOne(TAG);
  await assert.rejects(engine.branch(sandbox, { tag: TAG }), /already exists/);
  const first = engine.branch(sandbox, { tag: `${TAG}-once` });
  await assert.rejects(engine.branch(sandbox, { tag: `${TAG}-twice` }), /already being branched/);
  branchTags.push((await first).manifest.tag);
  assert.equal(await engine.store.exists(`${TAG}-twice`), false);
  assert.ok(sandbox.isAlive);
});

void test('branching one sandbox again and again keeps its disk chain short and its run dir tidy', async () => {
  const sandbox = await forkOne(TAG);
  for (let i = 0; i < 3; i++) {
    await sh(sandbox, `echo ${i} > /root/round${i}`);
    const result = await engine.branch(sandbox, { tag: `${TAG}-again${i}` });
    branchTags.push(result.manifest.tag);
  }
  type Image = { filename: string; 'backing-image'?: Image };
  const blocks = await sandbox.vmHandle.qmp.execute<{ inserted?: { image: Image } }[]>('query-block');
  const chain: string[] = [];
  for (let image = blocks.find((b) => b.inserted)?.inserted?.image; image; image = image['backing-image']) {
    chain.push(image.filename);
  }
  assert.equal(chain.length, 3, `overlay → snapshot layer → base, got ${chain.join(' → ')}`);
  // QEMU writes (and so keeps its overlays) only in its run dir's VM subdirectory.
  const layers = (await readdir(join(sandbox.info.runDir, VM_SUBDIR))).filter((n) => n.endsWith('.qcow2'));
  assert.equal(layers.length, 1, `one overlay in the run dir, got ${layers.join(', ')}`);
  assert.equal(
    await sh(sandbox, 'cat /root/round0 /root/round1 /root/round2'),
    '0\n1\n2\n',
    'its own data survived the merges',
  );
  const grandchild = await forkOne(`${TAG}-again2`);
  assert.equal(await sh(grandchild, 'cat /root/round0 /root/round2'), '0\n2\n');
});

void test("a diff branch keeps the disk written since its parent as a layer over the parent's, reading as its flat disk", async () => {
  const sandbox = await forkOne(TAG);
  await sh(sandbox, 'head -c 3000000 /dev/urandom > /root/changed && sync');
  const tag = `${TAG}-diff`;
  const { manifest } = await engine.branch(sandbox, { tag, diff: true });
  branchTags.push(tag);
  assert.equal(manifest.parent?.tag, TAG);
  const disk = manifest.diff?.disk;
  assert.ok(disk, 'a disk image gets a disk diff');
  assert.ok(disk.physicalBytes >= 3_000_000, `the 3 MB written are in the diff (${disk.physicalBytes})`);
  const dir = engine.dataDir.snapshotDir(tag);
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '--output=json', '-U', join(dir, disk.file)], { encoding: 'utf8' }),
  ) as { 'backing-filename'?: string };
  assert.equal(info['backing-filename'], `../${TAG}/disk.qcow2`);
  // Over the parent's layer, the diff reads as exactly the link's own flat disk.
  execFileSync('qemu-img', ['compare', '-U', join(dir, 'disk.qcow2'), join(dir, disk.file)], { cwd: dir });
});

void test('a diff branch may be written against another snapshot of its machine, never one of another', async () => {
  const sandbox = await forkOne(TAG);
  await sh(sandbox, 'echo again > /root/again && sync');
  const parent = `${TAG}-diff`; // the test before made it from TAG
  const tag = `${TAG}-diff-other`;
  const { manifest } = await engine.branch(sandbox, { tag, diff: true, diffParent: parent });
  branchTags.push(tag);
  assert.equal(manifest.parent?.tag, parent);
  const dir = engine.dataDir.snapshotDir(tag);
  // Not the sandbox's own chain: the whole disk was compared, and the diff still reads as the flat disk.
  execFileSync('qemu-img', ['compare', '-U', join(dir, 'disk.qcow2'), join(dir, SNAPSHOT_FILES.diskDiff)], {
    cwd: dir,
  });
  const rebuilt = join(dir, 'rebuilt-memory');
  await applyMemoryDiff(
    join(engine.dataDir.snapshotDir(parent), SNAPSHOT_FILES.memory),
    join(dir, SNAPSHOT_FILES.memoryDiff),
    rebuilt,
  );
  assert.equal(await sha256File(rebuilt), await sha256File(join(dir, SNAPSHOT_FILES.memory)));
  await rm(rebuilt);

  const other = 'test-branch-other-machine';
  await engine.createSnapshot({ tag: other, recipe: 'tiny', replace: true, memoryMib: 128 });
  try {
    await assert.rejects(
      engine.branch(sandbox, { tag: `${TAG}-bad`, diff: true, diffParent: other }),
      (err: unknown) =>
        err instanceof InvalidArgumentError &&
        /cannot diff against test-branch-other-machine/.test(err.message),
    );
    assert.equal(await engine.store.exists(`${TAG}-bad`), false);
  } finally {
    await engine.store.remove(other);
  }
});
