// The E2B-shaped Sandbox against a real daemon and a real tiny VM:
// create/connect/list/kill, commands (streamed, background, stdin, exit
// errors), files (text and binary round trips) and eval.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import {
  CommandExitError,
  ConflictError,
  CommandHandle,
  Controller,
  ControllerError,
  Sandbox,
  SandboxEvalError,
} from '../../src/sdk/index.js';
import { qemuProcessesUsing, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = `test-sdk-sbx-${process.pid}`;
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;
let sandbox: Sandbox;
const pids: number[] = [];

async function track(s: Sandbox): Promise<Sandbox> {
  const pid = (await s.getInfo()).pid;
  if (pid !== null) pids.push(pid);
  return s;
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-sdk-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  sandbox = await track(await Sandbox.create({ snapshotTag: TAG, url: daemon.url }));
});

after(async () => {
  const ctl = new Controller({ url: daemon.url });
  for (const s of await ctl.listSandboxes().catch(() => []))
    if (s.snapshot_tag === TAG) await ctl.deleteSandbox(s.id).catch(() => undefined);
  await daemon.close();
  await engine.cleanup({ killRunning: true });
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
  const alive = qemuProcessesUsing(engine.dataDir.runDir).filter((pid) => pids.includes(pid));
  assert.deepEqual(alive, [], 'no QEMU left from this file');
});

test('Sandbox.create, list, connect, ping, kill', async () => {
  const other = await track(await Sandbox.create({ snapshotTag: TAG, url: daemon.url }));
  assert.match(other.id, /^sb-/);
  const ids = (await Sandbox.list({ url: daemon.url })).map((s) => s.id);
  assert.ok(ids.includes(other.id) && ids.includes(sandbox.id));
  const again = await Sandbox.connect(other.id, { url: daemon.url });
  assert.equal(again.id, other.id);
  assert.equal((await again.ping()).pong, true);
  await again.kill();
  const gone = await Sandbox.connect(other.id, { url: daemon.url }).catch((err: unknown) => err);
  assert.ok(gone instanceof ControllerError && gone.status === 404);
});

test('commands.run returns stdout, stderr and exit code, with envs and cwd', async () => {
  const r = await sandbox.commands.run('echo "$GREETING"; pwd; echo warn >&2', {
    envs: { GREETING: 'hello sdk' },
    cwd: '/tmp',
  });
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, 'hello sdk\n/tmp\n');
  assert.equal(r.stderr, 'warn\n');
});

test('a non-zero exit throws CommandExitError that keeps the output', async () => {
  const err = await sandbox.commands.run('echo out; echo err >&2; exit 3').catch((e: unknown) => e);
  assert.ok(err instanceof CommandExitError, String(err));
  assert.equal(err.exitCode, 3);
  assert.equal(err.stdout, 'out\n');
  assert.equal(err.stderr, 'err\n');
  assert.match(err.message, /code 3/);
});

test('onStdout and onStderr receive chunks as they arrive', async () => {
  const out: { chunk: string; at: number }[] = [];
  const err: string[] = [];
  const started = Date.now();
  const r = await sandbox.commands.run('for i in 1 2 3; do echo line$i; sleep 0.4; done; echo done >&2', {
    onStdout: (chunk) => out.push({ chunk, at: Date.now() - started }),
    onStderr: (chunk) => err.push(chunk),
  });
  assert.equal(out.map((o) => o.chunk).join(''), 'line1\nline2\nline3\n');
  assert.equal(r.stdout, 'line1\nline2\nline3\n');
  assert.equal(err.join(''), 'done\n');
  assert.ok(out.length >= 2, `streamed in several chunks: ${JSON.stringify(out)}`);
  assert.ok(out[0]!.at < out[out.length - 1]!.at - 300, 'the first chunk came before the command ended');
});

test('commands.run timeoutMs: the daemon kills the command and it throws', async () => {
  const err = await sandbox.commands
    .run('echo started; sleep 30', { timeoutMs: 1000 })
    .catch((e: unknown) => e);
  assert.ok(err instanceof CommandExitError, String(err));
  assert.equal(err.timedOut, true);
  assert.equal(err.stdout, 'started\n');
});

test('aborting a foreground run kills the command in the sandbox', async () => {
  const abort = new AbortController();
  let pid = '';
  const run = sandbox.commands.run('echo $$; exec sleep 30', {
    signal: abort.signal,
    onStdout: (chunk) => {
      pid += chunk;
      abort.abort();
    },
  });
  await assert.rejects(run, { name: 'AbortError' });
  pid = pid.trim();
  assert.match(pid, /^\d+$/);
  const alive = async () =>
    (await sandbox.controller.exec(sandbox.id, ['sh', '-c', `kill -0 ${pid}`])).exit_code === 0;
  const deadline = Date.now() + 10_000;
  while ((await alive()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await alive(), false, `process ${pid} was killed`);
});

test('a background wait can time out and be retried; disconnect leaves the command running', async () => {
  const handle = await sandbox.commands.run('sleep 1; echo finally', { background: true });
  await assert.rejects(handle.wait({ timeoutMs: 100 }), { name: 'TimeoutError' });
  assert.equal((await handle.wait()).stdout, 'finally\n');
  assert.equal((await handle.wait()).stdout, 'finally\n', 'a finished handle answers at once');

  const chunks: string[] = [];
  const followed = await sandbox.commands.run('echo one; sleep 1; echo two', {
    background: true,
    onStdout: (c) => chunks.push(c),
  });
  while (!chunks.length) await new Promise((r) => setTimeout(r, 20));
  followed.disconnect();
  await assert.rejects(followed.wait(), { name: 'AbortError' });
  const again = sandbox.commands.connect(followed.commandId);
  assert.equal((await again.wait()).stdout, 'one\ntwo\n', 'the command ran on and its output replays');
});

test('background commands: wait, output replay, kill', async () => {
  const handle = await sandbox.commands.run('echo begin; sleep 0.5; echo end', { background: true });
  assert.ok(handle instanceof CommandHandle);
  assert.match(handle.commandId, /^cmd-/);
  const done = await handle.wait();
  assert.equal(done.stdout, 'begin\nend\n');
  assert.equal(done.exitCode, 0);

  const seen: string[] = [];
  const sleeper = await sandbox.commands.run('echo up; sleep 60', {
    background: true,
    onStdout: (c) => seen.push(c),
  });
  const waited = sleeper.wait().catch((e: unknown) => e);
  while (!seen.join('').includes('up')) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await sleeper.kill(), true);
  const killed = await waited;
  assert.ok(killed instanceof CommandExitError, String(killed));
  assert.notEqual(killed.signal, null);
  assert.equal(killed.stdout, 'up\n');

  const failing = await sandbox.commands.run('exit 4', { background: true });
  const result = await failing.wait({ allowNonZeroExit: true });
  assert.equal(result.exitCode, 4);

  assert.equal(await sandbox.commands.kill('cmd-doesnotexist'), false);
});

test('stdin: a background command reads what sendStdin writes until closeStdin', async () => {
  const handle = await sandbox.commands.run('cat | tr a-z A-Z', { background: true, stdin: true });
  await handle.sendStdin('hello ');
  await handle.sendStdin('stdin\n');
  await handle.closeStdin();
  const r = await handle.wait();
  assert.equal(r.stdout, 'HELLO STDIN\n');

  const closed = await sandbox.commands.run('true', { background: true });
  await closed.wait();
  const refused = await closed.sendStdin('x').catch((e: unknown) => e);
  assert.ok(refused instanceof ControllerError && refused.status === 409, String(refused));
});

test('Controller command endpoints: argv, initial stdin, events replay', async () => {
  const ctl = sandbox.controller;
  const events = await ctl.runCommand(sandbox.id, { args: ['cat'], stdin: 'fed\n' });
  const seen = [];
  for await (const e of events) seen.push(e);
  assert.equal(seen[0]?.type, 'start');
  assert.deepEqual(seen[seen.length - 1], { type: 'exit', exit_code: 0, signal: null, timed_out: false });
  assert.equal(seen.flatMap((e) => (e.type === 'stdout' ? [e.data] : [])).join(''), 'fed\n');
  const id = await ctl.startCommand(sandbox.id, { args: ['echo', 'later'] });
  const first = [];
  for await (const e of await ctl.commandEvents(sandbox.id, id)) first.push(e);
  const replay = [];
  for await (const e of await ctl.commandEvents(sandbox.id, id)) replay.push(e);
  assert.deepEqual(replay, first, 'a finished command replays the same events');
  const bad = await ctl.runCommand(sandbox.id, { args: [] }).catch((e: unknown) => e);
  assert.ok(bad instanceof ControllerError && bad.status === 400, String(bad));
  const both = await ctl.runCommand(sandbox.id, { args: ['true'], cmd: 'true' }).catch((e: unknown) => e);
  assert.ok(both instanceof ControllerError && both.status === 400, String(both));
  const unknown = await ctl.commandEvents(sandbox.id, 'cmd-nope').catch((e: unknown) => e);
  assert.ok(unknown instanceof ControllerError && unknown.status === 404, String(unknown));
});

test('files: text and binary round trips, list, stat, exists, remove, makeDir', async () => {
  await sandbox.files.write('/tmp/sdk/a/hello.txt', 'héllo wörld\n');
  assert.equal(await sandbox.files.read('/tmp/sdk/a/hello.txt'), 'héllo wörld\n');
  assert.equal((await sandbox.commands.run('cat /tmp/sdk/a/hello.txt')).stdout, 'héllo wörld\n');

  const bytes = new Uint8Array(256 * 3);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256;
  await sandbox.files.write('/tmp/sdk/bin.dat', bytes, { mode: 0o600 });
  const back = await sandbox.files.read('/tmp/sdk/bin.dat', { format: 'bytes' });
  assert.ok(back instanceof Uint8Array);
  assert.deepEqual([...back], [...bytes]);
  const info = await sandbox.files.stat('/tmp/sdk/bin.dat');
  assert.equal(info.type, 'file');
  assert.equal(info.size, bytes.length);
  assert.equal(info.mode & 0o777, 0o600);
  assert.equal(info.path, '/tmp/sdk/bin.dat');

  await sandbox.files.makeDir('/tmp/sdk/made/deep');
  const listed = await sandbox.files.list('/tmp/sdk');
  assert.deepEqual(listed.map((e) => [e.name, e.type, e.path]).sort(), [
    ['a', 'dir', '/tmp/sdk/a'],
    ['bin.dat', 'file', '/tmp/sdk/bin.dat'],
    ['made', 'dir', '/tmp/sdk/made'],
  ]);
  assert.equal(await sandbox.files.exists('/tmp/sdk/made/deep'), true);
  assert.equal(await sandbox.files.exists('/tmp/sdk/nope'), false);
  const missing = await sandbox.files.read('/tmp/sdk/nope').catch((e: unknown) => e);
  assert.ok(missing instanceof ControllerError && missing.status === 404, String(missing));
  const relative = await sandbox.files.read('tmp/x').catch((e: unknown) => e);
  assert.ok(relative instanceof ControllerError && relative.status === 400, String(relative));

  await sandbox.files.remove('/tmp/sdk/bin.dat');
  await sandbox.files.remove('/tmp/sdk');
  assert.equal(await sandbox.files.exists('/tmp/sdk'), false);
});

test('eval on the tiny image (no runtime) is a ControllerError; an eval error would be SandboxEvalError', async () => {
  const err = await sandbox.eval('1+1').catch((e: unknown) => e);
  assert.ok(err instanceof ConflictError, String(err));
  assert.equal(err.status, 409);
  assert.match(err.message, /no eval runtime/);

  // The error path on a runtime-bearing image, with the wire answer stubbed.
  const stub: typeof fetch = () =>
    Promise.resolve(
      Response.json({
        result: null,
        error: 'Traceback...\nZeroDivisionError: division by zero',
        exit_code: 1,
      }),
    );
  const fake = new Sandbox(new Controller({ url: 'http://stub.invalid', fetch: stub }), 'sb-stub');
  const raised = await fake.eval('1/0').catch((e: unknown) => e);
  assert.ok(raised instanceof SandboxEvalError, String(raised));
  assert.equal(raised.message, 'ZeroDivisionError: division by zero');
  assert.match(raised.traceback, /^Traceback/);
});

test('eval returns the JSON value from forkd, and the repr() string from an original forkd', async () => {
  const answering = (body: object) =>
    new Sandbox(
      new Controller({ url: 'http://stub.invalid', fetch: () => Promise.resolve(Response.json(body)) }),
      'sb-stub',
    );
  const ours = answering({ result: '[0, 2]', value: [0, 2], error: null, exit_code: 0 });
  assert.deepEqual(await ours.eval('[0, 2]'), [0, 2]);
  const original = answering({ result: '[0, 2]', error: null, exit_code: 0 });
  assert.equal(await original.eval('[0, 2]'), '[0, 2]');
});
