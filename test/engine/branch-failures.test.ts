// Live branch failure paths (tiny guest): the writer dying mid-copy, the
// source dying mid-branch, and the disk filling up. Each ends with the branch
// refused, its files gone, no writer QEMU left, and a surviving source still
// running and answering.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ResourceExhaustedError,
  type ChildResult,
  type Engine,
  type Sandbox,
} from '../../src/engine/index.js';
import { readVmRecord, VM_SUBDIR } from '../../src/engine/run-dir.js';
import type { QmpEvent } from '../../src/vmm/qmp.js';
import { qemuProcessesUsing, testEngine } from '../support/engine.js';

const TAG = 'test-branch-fail';
let engine: Engine;
const live: Sandbox[] = [];

async function forkOne(from: Engine, tag: string): Promise<Sandbox> {
  const child = (await from.fork({ tag, n: 1 })).children[0] as ChildResult;
  if (!child.ok) throw child.error;
  live.push(child.sandbox);
  return child.sandbox;
}

/** Dirty guest memory so the live copy takes a while (the tiny guest's / is RAM). */
async function dirty(sandbox: Sandbox, mib: number): Promise<void> {
  const r = await sandbox.agent.exec({
    shell: `dd if=/dev/urandom of=/tmp/ballast bs=1048576 count=${mib} 2>/dev/null`,
  });
  assert.equal(r.exitCode, 0, r.stderr.toString());
}

/** Calls `act` once the source's live copy is under way. */
function whenCopying(sandbox: Sandbox, act: () => void): void {
  const qmp = sandbox.vmHandle.qmp;
  const onEvent = (e: QmpEvent) => {
    if (e.event === 'MIGRATION' && e.data?.status === 'active') {
      qmp.off('event', onEvent);
      act();
    }
  };
  qmp.on('event', onEvent);
}

async function writerPids(from: Engine): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir(from.dataDir.runDir).catch(() => [] as string[])) {
    if (!name.startsWith('w-')) continue;
    const record = await readVmRecord(join(from.dataDir.runDir, name));
    if (record) pids.push(record.pid);
  }
  return pids;
}

async function listFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

async function assertBranchGone(from: Engine, tag: string): Promise<void> {
  assert.equal(await from.store.exists(tag), false, 'no snapshot dir');
  assert.deepEqual(
    (await readdir(from.dataDir.runDir)).filter((n) => n.startsWith('w-')),
    [],
    'no writer run dir',
  );
}

/** The socket directory a branch made in the source's VM dir goes with the branch. */
async function assertNoTransferDir(source: Sandbox): Promise<void> {
  const entries = await readdir(join(source.info.runDir, VM_SUBDIR));
  assert.deepEqual(
    entries.filter((n) => n.startsWith('x-')),
    [],
    'no transfer dir left in the source',
  );
}

async function assertAnswers(sandbox: Sandbox): Promise<void> {
  assert.ok(sandbox.isAlive);
  const r = await sandbox.agent.exec({ shell: 'echo still here' });
  assert.equal(r.stdout.toString(), 'still here\n');
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
});

after(async () => {
  await Promise.all(live.map((s) => s.kill()));
  await engine.store.remove(TAG).catch(() => undefined);
});

void test('the writer dying mid-copy fails the branch; the source keeps running', async () => {
  const source = await forkOne(engine, TAG);
  await dirty(source, 96);
  whenCopying(source, () => {
    void writerPids(engine).then((pids) => pids.forEach((pid) => process.kill(pid, 'SIGKILL')));
  });
  await assert.rejects(engine.branch(source, { tag: `${TAG}-w` }));
  await assertBranchGone(engine, `${TAG}-w`);
  await assertNoTransferDir(source);
  await assertAnswers(source);
});

void test('the source dying mid-branch fails the branch and stops the writer', async () => {
  const source = await forkOne(engine, TAG);
  await dirty(source, 96);
  whenCopying(source, () => process.kill(source.pid, 'SIGKILL'));
  await assert.rejects(engine.branch(source, { tag: `${TAG}-s` }));
  await assertBranchGone(engine, `${TAG}-s`);
  assert.deepEqual(await writerPids(engine), []);
  await source.kill();
});

void test('a full disk fails the branch, frees what it wrote, and the source keeps running', async (t) => {
  // A data dir on its own small ext4 (a loop device), then filled up but for
  // 16 MiB: room for the snapshot and its child, not for a branch of a dirtied child.
  const scratch = join(engine.dataDir.root, 'disk-full');
  const image = `${scratch}.img`;
  await mkdir(scratch, { recursive: true });
  execFileSync('truncate', ['-s', '1G', image]);
  execFileSync('mkfs.ext4', ['-q', '-F', image]);
  execFileSync('mount', ['-o', 'loop', image, scratch]);
  t.after(async () => {
    execFileSync('umount', ['-l', scratch]);
    await rm(image, { force: true });
  });
  const small = testEngine(scratch);
  await small.createSnapshot({ tag: TAG, recipe: 'tiny', memoryMib: 256 });
  const source = await forkOne(small, TAG);
  await dirty(source, 96);
  const free = await statfs(scratch);
  execFileSync('fallocate', [
    '-l',
    String(free.bavail * free.bsize - 16 * 2 ** 20),
    join(scratch, 'ballast'),
  ]);
  const filesBefore = await listFiles(join(scratch, 'snapshots'));
  await assert.rejects(
    small.branch(source, { tag: `${TAG}-full` }),
    (err: unknown) => err instanceof ResourceExhaustedError && /disk is full/.test(err.message),
  );
  await assertBranchGone(small, `${TAG}-full`);
  await assertNoTransferDir(source);
  assert.deepEqual(await listFiles(join(scratch, 'snapshots')), filesBefore, 'nothing of the branch is left');
  const after = await statfs(scratch);
  assert.ok(after.bavail * after.bsize >= 15 * 2 ** 20, 'its space is free again');
  await assertAnswers(source);
  await source.kill();
  assert.deepEqual(qemuProcessesUsing(scratch), []);
});
