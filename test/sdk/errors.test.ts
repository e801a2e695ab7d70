// The SDK's error classes against a fake daemon (node:http on 127.0.0.1):
// every status the API answers, with the daemon's `{error, code}` bodies,
// with an original daemon's `{error}` and with a proxy's text; and an error
// event in the middle of a command's NDJSON stream.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AbortedError,
  AgentUnavailableError,
  AlreadyExistsError,
  CommandExitError,
  ConflictError,
  Controller,
  ControllerError,
  ForbiddenError,
  InsufficientStorageError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  Sandbox,
  SandboxEvalError,
  TimeoutError,
  TooLargeError,
  UnauthorizedError,
} from '../../src/sdk/index.js';

type ErrorClass = abstract new (...args: never[]) => ControllerError;

/** What the fake daemon answers next: a status, and a body sent as is. */
let answer: { status: number; body: string; type: string } = { status: 200, body: '[]', type: 'json' };
let server: Server;
let base: string;

before(async () => {
  server = createServer((req, res) => {
    req.resume();
    res.writeHead(answer.status, {
      'content-type': answer.type === 'json' ? 'application/json' : answer.type,
    });
    res.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** Sets the next answer, calls `work`, and returns what it rejected with (a ControllerError). */
async function rejection(
  status: number,
  body: unknown,
  work: (ctl: Controller) => Promise<unknown>,
): Promise<ControllerError> {
  answer =
    typeof body === 'string'
      ? { status, body, type: 'text/html' }
      : { status, body: JSON.stringify(body), type: 'json' };
  try {
    await work(new Controller({ url: base }));
  } catch (err) {
    assert.ok(err instanceof ControllerError, `${status}: expected a ControllerError, got ${String(err)}`);
    assert.ok(err instanceof Error);
    return err;
  }
  return assert.fail(`${status}: expected a rejection`);
}

// Every code the daemon sends (src/daemon/http-errors.ts, src/errors.ts HTTP_STATUS).
const DAEMON_ANSWERS: [number, string, ErrorClass][] = [
  [400, 'invalid_argument', InvalidArgumentError],
  [401, 'unauthorized', UnauthorizedError],
  [403, 'forbidden', ForbiddenError],
  [403, 'untrusted', ForbiddenError],
  [404, 'not_found', NotFoundError],
  [409, 'conflict', ConflictError],
  [409, 'already_exists', AlreadyExistsError],
  [409, 'incompatible', ConflictError],
  [409, 'corrupt', ConflictError],
  [413, 'too_large', TooLargeError],
  [415, 'unsupported_media_type', InvalidArgumentError],
  [499, 'aborted', AbortedError],
  [500, 'internal', ControllerError],
  [500, 'vm_exited', ControllerError],
  [500, 'agent_error', ControllerError],
  [502, 'agent_unavailable', AgentUnavailableError],
  [502, 'remote', ControllerError],
  [503, 'resource_exhausted', ResourceExhaustedError],
  [504, 'timeout', TimeoutError],
  [507, 'insufficient_storage', InsufficientStorageError],
];

test('each daemon {error, code} answer becomes its class, with status, code, message, body and url', async () => {
  for (const [status, code, Class] of DAEMON_ANSWERS) {
    const body = { error: `it failed with ${code}`, code };
    const err = await rejection(status, body, (ctl) => ctl.getSandbox('sb-x'));
    assert.ok(err instanceof Class, `${code}: ${err.name}`);
    assert.equal(err.constructor, Class, `${code}: exactly ${Class.name}, got ${err.name}`);
    assert.equal(err.name, Class.name);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    assert.equal(err.message, body.error);
    assert.deepEqual(err.body, body);
    assert.equal(err.url, `${base}/v1/sandboxes/sb-x`);
  }
});

test('already_exists is a ConflictError too; the other 409s tell themselves apart by code', async () => {
  const exists = await rejection(409, { error: 'taken', code: 'already_exists' }, (ctl) =>
    ctl.createWorkspace({ name: 'w', snapshotTag: 't' }),
  );
  assert.ok(exists instanceof ConflictError && exists instanceof AlreadyExistsError);
  const corrupt = await rejection(409, { error: 'damaged', code: 'corrupt' }, (ctl) => ctl.snapshotInfo('t'));
  assert.ok(corrupt instanceof ConflictError && !(corrupt instanceof AlreadyExistsError));
  assert.equal(corrupt.code, 'corrupt');
});

test('an original daemon’s {error} without a code is classed by status, with the code the daemon gives it', async () => {
  const byStatus: [number, string, ErrorClass][] = [
    [400, 'invalid_argument', InvalidArgumentError],
    [401, 'unauthorized', UnauthorizedError],
    [403, 'forbidden', ForbiddenError],
    [404, 'not_found', NotFoundError],
    [409, 'conflict', ConflictError],
    [413, 'too_large', TooLargeError],
    [415, 'unsupported_media_type', InvalidArgumentError],
    [499, 'aborted', AbortedError],
    [500, 'internal', ControllerError],
    [502, 'agent_unavailable', AgentUnavailableError],
    [503, 'resource_exhausted', ResourceExhaustedError],
    [504, 'timeout', TimeoutError],
    [507, 'insufficient_storage', InsufficientStorageError],
    [418, 'internal', ControllerError],
  ];
  for (const [status, code, Class] of byStatus) {
    const err = await rejection(status, { error: 'original' }, (ctl) => ctl.listSnapshots());
    assert.equal(err.constructor, Class, `${status}: ${err.name}`);
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    assert.equal(err.message, 'original');
    assert.equal(err.url, `${base}/v1/snapshots`);
  }
});

test('a proxy’s text body is classed by status; the message is the status line', async () => {
  const err = await rejection(504, '<html>gateway timeout</html>', (ctl) => ctl.listSandboxes());
  assert.ok(err instanceof TimeoutError);
  assert.equal(err.code, 'timeout');
  assert.equal(err.body, '<html>gateway timeout</html>');
  assert.match(err.message, /^504 Gateway Timeout from http:\/\/127\.0\.0\.1:\d+\/v1\/sandboxes$/);
  const empty = await rejection(404, '', (ctl) => ctl.getSandbox('sb-x'));
  assert.ok(empty instanceof NotFoundError);
  assert.equal(empty.body, null);
});

test('a code this SDK does not know keeps the code and is classed by status', async () => {
  const err = await rejection(404, { error: 'gone for good', code: 'gone' }, (ctl) => ctl.getSandbox('sb-x'));
  assert.ok(err instanceof NotFoundError);
  assert.equal(err.code, 'gone');
  // Object.prototype's keys are not codes.
  const proto = await rejection(409, { error: 'x', code: 'constructor' }, (ctl) => ctl.getSandbox('sb-x'));
  assert.equal(proto.constructor, ConflictError);
  const notString = await rejection(400, { error: 'x', code: 7 }, (ctl) => ctl.getSandbox('sb-x'));
  assert.equal(notString.code, 'invalid_argument');
});

test('credentials in the URL never reach the error', async () => {
  answer = { status: 404, body: JSON.stringify({ error: 'nope', code: 'not_found' }), type: 'json' };
  const url = base.replace('http://', 'http://user:secret@');
  const ctl = new Controller({
    url,
    fetch: (input, init) => fetch((input as string).replace('user:secret@', ''), init),
  });
  const err = await ctl.getSandbox('sb-x').catch((e: unknown) => e);
  assert.ok(err instanceof NotFoundError);
  assert.ok(!err.url.includes('secret'), err.url);
});

/** A fake foreground command: the NDJSON lines of a 200 stream. */
function stream(...events: unknown[]): void {
  answer = {
    status: 200,
    body: events.map((e) => JSON.stringify(e) + '\n').join(''),
    type: 'application/x-ndjson',
  };
}

test('an error event mid-stream goes through the same builder: its code decides the class', async () => {
  const { commands } = new Sandbox(new Controller({ url: base }), 'sb-x');

  stream(
    { type: 'start', command_id: 'cmd-1' },
    { type: 'error', error: 'the sandbox died', code: 'vm_exited' },
  );
  const died = await commands.run('true').catch((e: unknown) => e);
  assert.ok(died instanceof ControllerError && died.constructor === ControllerError, String(died));
  assert.equal(died.code, 'vm_exited');
  assert.equal(died.status, 200);
  assert.equal(died.message, 'the sandbox died');
  assert.equal(died.url, `${base}/v1/sandboxes/sb-x`);

  stream(
    { type: 'start', command_id: 'cmd-1' },
    { type: 'error', error: 'the agent broke', code: 'agent_unavailable' },
  );
  assert.ok((await commands.run('true').catch((e: unknown) => e)) instanceof AgentUnavailableError);

  // Today's daemon sends no code in the event: a plain ControllerError, code internal.
  stream({ type: 'start', command_id: 'cmd-1' }, { type: 'error', error: 'stopped' });
  const bare = await commands.run('true').catch((e: unknown) => e);
  assert.ok(bare instanceof ControllerError);
  assert.equal(bare.code, 'internal');

  stream({ type: 'start', command_id: 'cmd-1' }, { type: 'stdout', data: 'half' });
  const cut = await commands.run('true').catch((e: unknown) => e);
  assert.ok(cut instanceof ControllerError);
  assert.match(cut.message, /ended without an exit event/);
  assert.equal(cut.code, 'internal');
});

test('CommandExitError and SandboxEvalError carry a code of their own, outside the daemon family', async () => {
  const { commands } = new Sandbox(new Controller({ url: base }), 'sb-x');
  stream(
    { type: 'start', command_id: 'cmd-1' },
    { type: 'stderr', data: 'boom\n' },
    { type: 'exit', exit_code: 3, signal: null, timed_out: false },
  );
  const exit = await commands.run('false').catch((e: unknown) => e);
  assert.ok(exit instanceof CommandExitError && !(exit instanceof ControllerError));
  assert.deepEqual([exit.code, exit.exitCode, exit.stderr], ['command_exit', 3, 'boom\n']);
  const evalError = new SandboxEvalError('Traceback\nZeroDivisionError: division by zero', 1);
  assert.equal(evalError.code, 'eval_error');
  assert.equal(evalError.message, 'ZeroDivisionError: division by zero');
});
