// A daemon killed (SIGKILL) while a branch is being written: the restarted
// daemon lists that branch as failed, nothing of it is left (no snapshot dir,
// no writer QEMU), and the sandbox that was being branched is re-attached,
// running and answering.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import type { Engine } from '../../src/engine/index.js';
import { jsonCaller } from '../support/http.js';
import { qemuProcessesUsing, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-branch-restart';
let engine: Engine;
let daemon: ChildProcess | null = null;
let url = '';

async function startServe(): Promise<void> {
  const child = spawn(
    process.execPath,
    ['dist/src/cli/main.js', '--data-dir', TEST_DATA_DIR, 'serve', '--bind', '127.0.0.1:0'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  daemon = child;
  url = await new Promise<string>((resolve, reject) => {
    let log = '';
    child.stderr.on('data', (d: Buffer) => {
      log += d.toString();
      const match = /listening on (http:\/\/\S+)/.exec(log);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`forkd serve exited ${code}: ${log}`)));
  });
}

const call = jsonCaller(() => url);

async function writerRunDirs(): Promise<string[]> {
  return (await readdir(engine.dataDir.runDir).catch(() => [] as string[])).filter((n) => n.startsWith('w-'));
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  await startServe();
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon!.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  await engine.cleanup({ killRunning: true });
  await engine.store.remove(TAG).catch(() => undefined);
});

void test('a daemon killed mid-branch: the branch is failed and gone, the source keeps running', async () => {
  const created = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG });
  const id = (created.json as { id: string }[])[0]!.id;
  await call('POST', `/v1/sandboxes/${id}/exec`, {
    args: [
      'sh',
      '-c',
      'dd if=/dev/urandom of=/tmp/ballast bs=1048576 count=96 2>/dev/null; echo x > /tmp/mark',
    ],
  });
  const branch = await call('POST', `/v1/sandboxes/${id}/branch`, { tag: `${TAG}-b`, wait: false });
  assert.equal(branch.status, 202);
  for (let i = 0; i < 300 && (await writerRunDirs()).length === 0; i++)
    await new Promise((r) => setTimeout(r, 20));
  assert.equal((await writerRunDirs()).length, 1, 'the writer started');
  const killed = new Promise((resolve) => daemon!.once('exit', resolve));
  daemon!.kill('SIGKILL');
  await killed;

  await startServe();
  const listed = (await call('GET', '/v1/snapshots')).json as {
    tag: string;
    status: string;
    warning?: string;
  }[];
  const entry = listed.find((s) => s.tag === `${TAG}-b`);
  assert.equal(entry?.status, 'failed');
  assert.match(entry?.warning ?? '', /interrupted/);
  assert.equal(await engine.store.exists(`${TAG}-b`), false, 'no snapshot dir');
  assert.deepEqual(await writerRunDirs(), [], 'no writer run dir');
  const sandboxes = (await call('GET', '/v1/sandboxes')).json as { id: string }[];
  assert.deepEqual(
    sandboxes.map((s) => s.id),
    [id],
  );
  const read = await call('POST', `/v1/sandboxes/${id}/exec`, { args: ['cat', '/tmp/mark'] });
  assert.equal((read.json as { stdout: string }).stdout, 'x\n');
  assert.equal((await call('POST', '/v1/sandboxes', { snapshot_tag: `${TAG}-b` })).status, 404);
  await call('DELETE', `/v1/sandboxes/${id}`);
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
});
