// /v1/workspaces over real HTTP (tiny guest), and the CLI over it: create,
// suspend (state saved, sandbox gone), resume (state back, memory limit
// kept), suspend again (a diff of the previous state, which stays its
// parent; after three states the next starts over from the source and the
// old ones go), stale when its sandbox is killed directly, and delete (states
// gone, source snapshot kept).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { WORKSPACE_STATE_HISTORY } from '../../src/daemon/workspaces.js';
import type { Engine } from '../../src/engine/index.js';
import { runCliAsync } from '../support/cli.js';
import { jsonCaller } from '../support/http.js';
import { runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-workspaces';
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;

type Workspace = {
  name: string;
  status: string;
  live_sandbox_id?: string;
  current_state_tag?: string;
  source_snapshot_tag: string;
};

const call = jsonCaller(() => daemon.url);

async function sh(id: string, script: string): Promise<string> {
  const r = await call('POST', `/v1/sandboxes/${id}/exec`, { args: ['sh', '-c', script] });
  assert.equal(r.status, 200);
  return (r.json as { stdout: string }).stdout;
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-ws-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  await deleteAllWorkspaces(); // the state database outlives an interrupted earlier run
});

async function deleteAllWorkspaces(): Promise<void> {
  for (const w of (await call('GET', '/v1/workspaces')).json as Workspace[]) {
    await call('DELETE', `/v1/workspaces/${w.name}`);
  }
}

after(async () => {
  await deleteAllWorkspaces();
  await daemon.close();
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
  assert.deepEqual(runDirEntries(engine), []);
});

void test('a workspace suspends with its state and resumes where it was, keeping its memory limit', async () => {
  const created = await call('POST', '/v1/workspaces', {
    name: 'w1',
    snapshot_tag: TAG,
    memory_limit_mib: 512,
    egress: 'internet',
  });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const w = created.json as Workspace;
  assert.equal(w.status, 'running');
  await sh(w.live_sandbox_id!, 'echo kept > /tmp/state');
  assert.equal((await call('POST', '/v1/workspaces', { name: 'w1', snapshot_tag: TAG })).status, 409);

  const suspend = await call('POST', '/v1/workspaces/w1/suspend', {});
  assert.equal(suspend.status, 200, JSON.stringify(suspend.json));
  const suspended = suspend.json as Workspace;
  assert.equal(suspended.status, 'suspended');
  assert.equal(suspended.live_sandbox_id, undefined);
  const firstState = suspended.current_state_tag!;
  assert.ok(await engine.store.exists(firstState));
  assert.equal((await call('GET', `/v1/sandboxes/${w.live_sandbox_id}`)).status, 404, 'its sandbox is gone');
  assert.equal((await call('POST', '/v1/workspaces/w1/suspend', {})).status, 409, 'not running');

  const resume = await call('POST', '/v1/workspaces/w1/resume', {});
  assert.equal(resume.status, 200, JSON.stringify(resume.json));
  const resumed = resume.json as Workspace;
  assert.equal(resumed.status, 'running');
  assert.equal(await sh(resumed.live_sandbox_id!, 'cat /tmp/state'), 'kept\n');
  const sandbox = (await call('GET', `/v1/sandboxes/${resumed.live_sandbox_id}`)).json as {
    memory_limit_mib: number;
    egress: string;
  };
  assert.equal(sandbox.memory_limit_mib, 512);
  assert.equal(sandbox.egress, 'internet', 'the egress policy is kept across resumes');
  const running = (await engine.sandboxes()).find((s) => s.id === resumed.live_sandbox_id);
  assert.equal(running?.egress.mode, 'internet');
  assert.equal((await call('POST', '/v1/workspaces/w1/resume', {})).status, 409, 'already running');

  // The next state is a diff of the previous one, which stays as its parent.
  const second = await suspendAndResume('w1', 'echo later > /tmp/later');
  assert.notEqual(second.state, firstState);
  assert.equal(second.info.parent_tag, firstState);
  assert.deepEqual(second.info.ancestors, [TAG, firstState]);
  assert.ok(
    second.info.diff_physical_bytes! < 64 * 2 ** 20,
    `a small diff (${second.info.diff_physical_bytes})`,
  );
  assert.equal(await sh(second.sandboxId, 'cat /tmp/state /tmp/later'), 'kept\nlater\n');
  const removeSource = await call('DELETE', `/v1/snapshots/${TAG}`);
  assert.equal(removeSource.status, 409, 'the source has the states as dependents');
  assert.match((removeSource.json as { error: string }).error, new RegExp(firstState));

  // After WORKSPACE_STATE_HISTORY states the next starts over from the source, and the old ones go.
  const third = await suspendAndResume('w1', 'echo third > /tmp/third');
  assert.deepEqual(third.info.ancestors, [TAG, firstState, second.state]);
  assert.equal(WORKSPACE_STATE_HISTORY, 3);
  const fourth = await suspendAndResume('w1', 'true');
  assert.equal(fourth.info.parent_tag, TAG);
  for (const old of [firstState, second.state, third.state]) {
    assert.equal(await engine.store.exists(old), false, `${old} is gone`);
  }
  assert.equal(await sh(fourth.sandboxId, 'cat /tmp/state /tmp/later /tmp/third'), 'kept\nlater\nthird\n');

  assert.equal((await call('DELETE', '/v1/workspaces/w1')).status, 204);
  assert.equal(await engine.store.exists(fourth.state), false, 'its state goes with it');
  assert.ok(await engine.store.exists(TAG), 'the source snapshot stays');
  assert.equal((await call('GET', '/v1/workspaces/w1')).status, 404);
});

/** Suspend a running workspace, resume it, then run `script` in it: its state, that state's info, and its sandbox. */
async function suspendAndResume(
  name: string,
  script: string,
): Promise<{ state: string; info: SnapshotInfo; sandboxId: string }> {
  const suspended = await call('POST', `/v1/workspaces/${name}/suspend`, {});
  assert.equal(suspended.status, 200, JSON.stringify(suspended.json));
  const state = (suspended.json as Workspace).current_state_tag!;
  const info = await call('GET', `/v1/snapshots/${state}/info`);
  assert.equal(info.status, 200, JSON.stringify(info.json));
  const resumed = await call('POST', `/v1/workspaces/${name}/resume`, {});
  assert.equal(resumed.status, 200, JSON.stringify(resumed.json));
  const sandboxId = (resumed.json as Workspace).live_sandbox_id!;
  await sh(sandboxId, script);
  return { state, info: info.json as SnapshotInfo, sandboxId };
}

type SnapshotInfo = { parent_tag?: string | null; ancestors?: string[]; diff_physical_bytes?: number | null };

void test('a workspace whose sandbox was killed directly is stale, and resumes', async () => {
  const w = (await call('POST', '/v1/workspaces', { name: 'w2', snapshot_tag: TAG })).json as Workspace;
  await call('DELETE', `/v1/sandboxes/${w.live_sandbox_id}`);
  assert.equal(((await call('GET', '/v1/workspaces/w2')).json as Workspace).status, 'stale');
  const resumed = (await call('POST', '/v1/workspaces/w2/resume', {})).json as Workspace;
  assert.equal(resumed.status, 'running');
  // {diff: false} (the original's option) writes the state whole; the state before it goes.
  const first = await suspendAndResume('w2', 'true');
  assert.equal(first.info.parent_tag, TAG);
  const whole = await call('POST', '/v1/workspaces/w2/suspend', { diff: false });
  assert.equal(whole.status, 200, JSON.stringify(whole.json));
  const wholeState = (whole.json as Workspace).current_state_tag!;
  const info = (await call('GET', `/v1/snapshots/${wholeState}/info`)).json as SnapshotInfo;
  assert.equal(info.parent_tag ?? null, null);
  assert.equal(await engine.store.exists(first.state), false);
  assert.equal((await call('POST', '/v1/workspaces', { name: '../x', snapshot_tag: TAG })).status, 400);
  assert.equal((await call('POST', '/v1/workspaces/nope/resume', {})).status, 404);
});

void test('forkd workspace drives the same API', async () => {
  const url = daemon.url;
  const create = await runCliAsync(['workspace', 'create', 'w3', '--tag', TAG, '--url', url, '--json']);
  assert.equal(create.status, 0, create.stderr);
  assert.equal((JSON.parse(create.stdout) as Workspace).status, 'running');
  const suspend = await runCliAsync(['workspace', 'suspend', 'w3', '--url', url]);
  assert.equal(suspend.status, 0, suspend.stderr);
  assert.match(suspend.stdout, /^workspace w3: suspended \(state ws-w3-/);
  const list = await runCliAsync(['workspace', 'list', '--url', url]);
  assert.match(list.stdout, /w3\s+suspended/);
  const del = await runCliAsync(['workspace', 'delete', 'w3', '--url', url]);
  assert.equal(del.status, 0, del.stderr);
  const missing = await runCliAsync(['workspace', 'resume', 'w3', '--url', url]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /workspace w3 not found/);
});
