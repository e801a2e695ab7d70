// The SDK's Controller against a real daemon and real VMs: every v1 method,
// and ControllerError's status, body and url on 404, 400 and 401.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { ConflictError, Controller, ControllerError, type SandboxInfo } from '../../src/sdk/index.js';
import { qemuProcessesUsing, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = `test-sdk-ctl-${process.pid}`;
const CREATED_TAG = `test-sdk-ctl-new-${process.pid}`;
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;
let ctl: Controller;
const pids: number[] = [];

function remember(infos: SandboxInfo[]): SandboxInfo[] {
  for (const info of infos) if (info.pid !== null) pids.push(info.pid);
  return infos;
}

/** Runs `work`, expecting it to reject with a ControllerError; returns it. */
async function controllerError(work: Promise<unknown>): Promise<ControllerError> {
  try {
    await work;
  } catch (err) {
    assert.ok(err instanceof ControllerError, `expected a ControllerError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ControllerError');
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-sdk-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  ctl = new Controller({ url: daemon.url });
});

after(async () => {
  const leftover = await ctl.listSandboxes().catch(() => []);
  for (const s of leftover.filter((s) => s.snapshot_tag === TAG || s.snapshot_tag === CREATED_TAG))
    await ctl.deleteSandbox(s.id).catch(() => undefined);
  await daemon.close();
  await engine.cleanup({ killRunning: true });
  for (const tag of [TAG, CREATED_TAG]) await engine.store.remove(tag).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
  const alive = qemuProcessesUsing(engine.dataDir.runDir).filter((pid) => pids.includes(pid));
  assert.deepEqual(alive, [], 'no QEMU left from this file');
});

test('health and version', async () => {
  assert.deepEqual(await ctl.health(), { ok: true });
  const version = await ctl.version();
  assert.equal(version.api, 'v1');
  assert.match(version.version, /^\d+\.\d+\.\d+/);
});

test('defaults come from FORKD_URL and FORKD_TOKEN', () => {
  const saved = process.env.FORKD_URL;
  process.env.FORKD_URL = 'http://127.0.0.1:1';
  try {
    assert.equal(new Controller().url, 'http://127.0.0.1:1');
    delete process.env.FORKD_URL;
    assert.equal(new Controller().url, 'http://127.0.0.1:8889');
  } finally {
    if (saved === undefined) delete process.env.FORKD_URL;
    else process.env.FORKD_URL = saved;
  }
});

test('snapshots: create, list, info, delete (409 while in use, then force)', async () => {
  const created = await ctl.createSnapshot({ tag: CREATED_TAG, image: 'tiny', memMib: 256 });
  assert.equal(created.tag, CREATED_TAG);
  assert.equal(created.status, 'ready');
  assert.equal(created.bootable, true);
  const listed = await ctl.listSnapshots();
  assert.ok(listed.some((s) => s.tag === CREATED_TAG && s.status === 'ready'));
  const info = await ctl.snapshotInfo(CREATED_TAG);
  assert.equal(info.tag, CREATED_TAG);
  assert.ok(info.memory_logical_bytes > 0);
  assert.ok(Array.isArray(info.ancestors) && Array.isArray(info.dependents));

  const [child] = remember(await ctl.createSandboxes({ snapshotTag: CREATED_TAG }));
  const busy = await controllerError(ctl.deleteSnapshot(CREATED_TAG));
  assert.equal(busy.status, 409);
  assert.ok(busy.message.includes(child!.id), busy.message);
  const both = await controllerError(ctl.deleteSnapshot(CREATED_TAG, { cascade: true, force: true }));
  assert.equal(both.status, 400);
  await ctl.deleteSnapshot(CREATED_TAG, { force: true });
  assert.equal((await controllerError(ctl.getSandbox(child!.id))).status, 404);
  assert.ok(!(await ctl.listSnapshots()).some((s) => s.tag === CREATED_TAG));
  assert.equal((await controllerError(ctl.snapshotInfo(CREATED_TAG))).status, 404);
});

test('sandboxes: create n, list, get, ping, exec, eval, delete', async () => {
  const infos = remember(
    await ctl.createSandboxes({ snapshotTag: TAG, n: 2, perChildNetns: true, memoryLimitMib: 128 }),
  );
  assert.equal(infos.length, 2);
  for (const info of infos) {
    assert.match(info.id, /^sb-[A-Za-z0-9_-]+$/);
    assert.equal(info.snapshot_tag, TAG);
    assert.equal(info.memory_limit_mib, 128);
  }
  const id = infos[0]!.id;
  const ids = (await ctl.listSandboxes()).map((s) => s.id);
  for (const info of infos) assert.ok(ids.includes(info.id));
  assert.equal((await ctl.getSandbox(id)).id, id);
  assert.equal((await ctl.ping(id)).pong, true);

  assert.deepEqual(await ctl.exec(id, ['sh', '-c', 'echo out; echo err >&2; exit 3']), {
    stdout: 'out\n',
    stderr: 'err\n',
    exit_code: 3,
  });
  const slow = await ctl.exec(id, ['sleep', '5'], { timeoutSecs: 1 });
  assert.notEqual(slow.exit_code, 0, 'the daemon stops an exec at timeout_secs');

  // The tiny image has no eval runtime: the sandbox lacks it, a 409 conflict.
  const noRuntime = await controllerError(ctl.eval(id, '1+1'));
  assert.equal(noRuntime.status, 409);
  assert.ok(noRuntime instanceof ConflictError, String(noRuntime));
  assert.match(noRuntime.message, /no eval runtime/);

  for (const info of infos) await ctl.deleteSandbox(info.id);
  assert.equal((await controllerError(ctl.getSandbox(id))).status, 404);
});

test('ControllerError carries status, body and url for 404 and 400', async () => {
  const missing = await controllerError(ctl.getSandbox('sb-doesnotexist'));
  assert.equal(missing.status, 404);
  assert.match(missing.message, /not found/);
  assert.deepEqual(missing.body, { error: missing.message, code: 'not_found' });
  assert.equal(missing.url, `${daemon.url}/v1/sandboxes/sb-doesnotexist`);

  const badTag = await controllerError(ctl.createSandboxes({ snapshotTag: '../etc' }));
  assert.equal(badTag.status, 400);
  assert.match(badTag.message, /invalid snapshot_tag/);
  assert.equal(badTag.url, `${daemon.url}/v1/sandboxes`);

  const badN = await controllerError(ctl.createSandboxes({ snapshotTag: TAG, n: 0 }));
  assert.equal(badN.status, 400);
  assert.match(badN.message, /child count/);

  const unknown = await controllerError(ctl.createSandboxes({ snapshotTag: 'no-such-snapshot' }));
  assert.equal(unknown.status, 404);
  assert.equal((await controllerError(ctl.deleteSnapshot('nope'))).status, 404);
  assert.equal((await controllerError(ctl.exec('sb-doesnotexist', ['true']))).status, 404);
});

test('a body that is not JSON still becomes a ControllerError', async () => {
  const fakeFetch: typeof fetch = () =>
    Promise.resolve(new Response('upstream exploded', { status: 502, statusText: 'Bad Gateway' }));
  const err = await controllerError(
    new Controller({ url: 'http://proxy.invalid', fetch: fakeFetch }).version(),
  );
  assert.equal(err.status, 502);
  assert.equal(err.body, 'upstream exploded');
  assert.equal(err.url, 'http://proxy.invalid/version');
  assert.match(err.message, /502 Bad Gateway/);
});

test('signal and timeoutMs abort a request', async () => {
  const hang: typeof fetch = (_input, init) =>
    new Promise((_resolve, reject) => {
      init?.signal?.addEventListener('abort', () => reject(init.signal!.reason as Error));
    });
  const slow = new Controller({ url: 'http://hang.invalid', fetch: hang });
  await assert.rejects(slow.health({ timeoutMs: 50 }), { name: 'TimeoutError' });
  const abort = new AbortController();
  const pending = slow.health({ signal: abort.signal });
  abort.abort();
  await assert.rejects(pending, { name: 'AbortError' });
});

test('bearer auth: 401 without or with a wrong token, 200 with the right one', async () => {
  const tokenFile = join(scratch, 'token');
  const token = 'sdk-test-token-0123456789abcdef';
  await writeFile(tokenFile, `${token}\n`);
  // A data dir of its own: the test daemon owns TEST_DATA_DIR.
  const guarded = await startDaemon({
    dataDir: join(scratch, 'bearer-data'),
    port: 0,
    tokenFile,
    auditLog: join(scratch, 'audit-auth.jsonl'),
  });
  try {
    const saved = process.env.FORKD_TOKEN;
    delete process.env.FORKD_TOKEN;
    try {
      const missing = await controllerError(new Controller({ url: guarded.url }).listSnapshots());
      assert.equal(missing.status, 401);
      assert.deepEqual(missing.body, { error: 'missing bearer token', code: 'unauthorized' });
      assert.equal(missing.message, 'missing bearer token');
      assert.equal(missing.url, `${guarded.url}/v1/snapshots`);
      const wrong = await controllerError(
        new Controller({ url: guarded.url, token: 'nope' }).listSnapshots(),
      );
      assert.equal(wrong.status, 401);
      assert.equal(wrong.message, 'invalid bearer token');
      assert.deepEqual(await new Controller({ url: guarded.url }).health(), { ok: true });
      process.env.FORKD_TOKEN = token;
      assert.ok(Array.isArray(await new Controller({ url: guarded.url }).listSnapshots()));
    } finally {
      if (saved === undefined) delete process.env.FORKD_TOKEN;
      else process.env.FORKD_TOKEN = saved;
    }
  } finally {
    await guarded.close();
  }
});
