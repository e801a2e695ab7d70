// The SDK's error classes against the real daemon, for the errors it gives
// without booting a VM: an empty data dir, a snapshot tag held by a writer in
// this process, and a daemon with a token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { Engine } from '../../src/engine/index.js';
import {
  ConflictError,
  Controller,
  ControllerError,
  InvalidArgumentError,
  NotFoundError,
  UnauthorizedError,
} from '../../src/sdk/index.js';

let scratch: string;
let daemon: RunningDaemon;
let ctl: Controller;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'forkd-sdk-errors-'));
  daemon = await startDaemon({
    dataDir: join(scratch, 'data'),
    port: 0,
    auditLog: join(scratch, 'audit.jsonl'),
  });
  ctl = new Controller({ url: daemon.url, token: '' });
});

after(async () => {
  await daemon.close();
  await rm(scratch, { recursive: true, force: true });
});

async function rejection(work: Promise<unknown>): Promise<ControllerError> {
  const err = await work.then(
    () => assert.fail('expected a rejection'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ControllerError, String(err));
  return err;
}

test('404: unknown sandbox, snapshot and command are NotFoundError with code not_found', async () => {
  const sandbox = await rejection(ctl.getSandbox('sb-nope'));
  assert.ok(sandbox instanceof NotFoundError);
  assert.deepEqual([sandbox.status, sandbox.code], [404, 'not_found']);
  assert.deepEqual(sandbox.body, { error: sandbox.message, code: 'not_found' });
  assert.equal(sandbox.url, `${daemon.url}/v1/sandboxes/sb-nope`);
  assert.ok((await rejection(ctl.snapshotInfo('no-such'))) instanceof NotFoundError);
  assert.ok((await rejection(ctl.deleteSnapshot('no-such'))) instanceof NotFoundError);
  assert.ok((await rejection(ctl.runCommand('sb-nope', { cmd: 'true' }))) instanceof NotFoundError);
  assert.ok((await rejection(ctl.getWorkspace('nope'))) instanceof NotFoundError);
});

test('400: a bad tag, conflicting options and a bad count are InvalidArgumentError', async () => {
  const calls = [
    () => ctl.createSandboxes({ snapshotTag: '../etc' }),
    () => ctl.createSandboxes({ snapshotTag: 'x', n: 0 }),
    () => ctl.deleteSnapshot('x', { cascade: true, force: true }),
    () => ctl.createSnapshot({ tag: 'x', kernel: '/boot/vmlinuz' }),
  ];
  for (const call of calls) {
    const err = await rejection(call());
    assert.ok(err instanceof InvalidArgumentError, `${err.name}: ${err.message}`);
    assert.deepEqual([err.status, err.code], [400, 'invalid_argument']);
  }
});

test('409: a tag being written is a ConflictError; code tells busy (conflict) from damaged (corrupt)', async () => {
  const engine = new Engine({ dataDir: join(scratch, 'data') });
  const writer = await engine.store.begin('being-written');
  try {
    const busy = await rejection(ctl.deleteSnapshot('being-written'));
    assert.ok(busy instanceof ConflictError, `${busy.name}: ${busy.message}`);
    assert.deepEqual([busy.status, busy.code], [409, 'conflict']);
    // No manifest yet: to a reader it is a damaged snapshot.
    const unreadable = await rejection(ctl.snapshotInfo('being-written'));
    assert.ok(unreadable instanceof ConflictError, `${unreadable.name}: ${unreadable.message}`);
    assert.deepEqual([unreadable.status, unreadable.code], [409, 'corrupt']);
  } finally {
    await writer.abort();
  }
});

test('401: a daemon with a token refuses a client without one with UnauthorizedError', async () => {
  const tokenFile = join(scratch, 'token');
  await writeFile(tokenFile, 'sdk-errors-token-0123456789abcdef\n');
  // A data dir of its own: one daemon owns a data dir.
  const guarded = await startDaemon({
    dataDir: join(scratch, 'data-auth'),
    port: 0,
    tokenFile,
    auditLog: join(scratch, 'audit-auth.jsonl'),
  });
  try {
    const err = await rejection(new Controller({ url: guarded.url, token: '' }).listSnapshots());
    assert.ok(err instanceof UnauthorizedError);
    assert.deepEqual([err.status, err.code, err.message], [401, 'unauthorized', 'missing bearer token']);
  } finally {
    await guarded.close();
  }
});
