// A sandbox's ports through the daemon, with a real tiny guest running a
// busybox echo server: what the guest server receives (its own Host, never
// the daemon's token), bytes both ways after the upgrade, the refusals
// (token, sandbox, port, nothing listening, a sandbox without a browser),
// and a killed sandbox closing its connections.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { qemuProcessesUsing, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-daemon-ports';
const TOKEN = 'ports-test-token-0123456789';
const ECHO_PORT = 7000;
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;
let sandboxId: string;

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(daemon.url + path, {
    method,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Sends a raw upgrade request to the daemon; resolves with the socket and the first bytes back. */
async function upgrade(
  path: string,
  extra: string[] = [],
  token: string | null = TOKEN,
): Promise<{ socket: Socket; first: string }> {
  const url = new URL(daemon.url);
  const socket = connect(Number(url.port), url.hostname);
  await once(socket, 'connect');
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${url.host}`,
    ...(token ? [`Authorization: Bearer ${token}`] : []),
    'Connection: Upgrade',
    'Upgrade: websocket',
    ...extra,
  ];
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return { socket, first: chunk.toString('latin1') };
}

/** Reads from the socket until `text` has arrived. */
async function readUntil(socket: Socket, text: string, have = ''): Promise<string> {
  let got = have;
  while (!got.includes(text)) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    got += chunk.toString('latin1');
  }
  return got;
}

function errorOf(raw: string): { status: number; body: { error: string; code: string } } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1]);
  return {
    status,
    body: JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { error: string; code: string },
  };
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-ports-'));
  await writeFile(join(scratch, 'token'), TOKEN, { mode: 0o600 });
  daemon = await startDaemon({
    dataDir: TEST_DATA_DIR,
    port: 0,
    tokenFile: join(scratch, 'token'),
    auditLog: join(scratch, 'audit.jsonl'),
  });
  const created = await api('POST', '/v1/sandboxes', { snapshot_tag: TAG });
  assert.equal(created.status, 201);
  sandboxId = (created.body as Array<{ id: string }>)[0]!.id;
  // An echo server in the guest (busybox nc cannot bind loopback only; the guest has no network anyway).
  const started = await api('POST', `/v1/sandboxes/${sandboxId}/exec`, {
    args: [
      'sh',
      '-c',
      `nc -ll -p ${ECHO_PORT} -e cat </dev/null >/dev/null 2>&1 &
       while ! netstat -ltn | grep -q ':${ECHO_PORT} '; do sleep 0.1; done`,
    ],
  });
  assert.equal(started.status, 200, JSON.stringify(started.body));
});

after(async () => {
  try {
    await daemon?.close();
    assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  } finally {
    await engine?.store.remove(TAG);
    await rm(scratch, { recursive: true, force: true });
  }
});

test('an upgrade reaches the guest server with the guest’s Host and without the daemon’s token, then carries bytes both ways', async () => {
  const path = `/v1/sandboxes/${sandboxId}/ports/${ECHO_PORT}/echo/here?x=1`;
  const { socket, first } = await upgrade(path, ['X-Mark: m1']);
  try {
    const head = await readUntil(socket, '\r\n\r\n', first);
    assert.match(head, /^GET \/echo\/here\?x=1 HTTP\/1\.1\r\nHost: 127\.0\.0\.1:7000\r\n/);
    assert.match(head, /\r\nX-Mark: m1\r\n/);
    assert.match(head, /\r\nUpgrade: websocket\r\n/);
    assert.doesNotMatch(head, new RegExp(TOKEN));
    assert.doesNotMatch(head, /authorization/i);
    socket.write('ping-1');
    await readUntil(socket, 'ping-1');
  } finally {
    socket.destroy();
  }
  const audit = await readFile(join(scratch, 'audit.jsonl'), 'utf8');
  assert.ok(
    audit
      .split('\n')
      .some((l) => l.includes(`"path":"/v1/sandboxes/${sandboxId}/ports/${ECHO_PORT}/echo/here"`)),
    'the upgrade has its audit line, without its query',
  );
});

test('upgrades are refused with the API’s status and JSON error: no token, no sandbox, a bad port, nothing listening', async () => {
  const cases: Array<[string, string | null, number, RegExp]> = [
    [`/v1/sandboxes/${sandboxId}/ports/${ECHO_PORT}/`, null, 401, /missing bearer token/],
    [`/v1/sandboxes/${sandboxId}/ports/${ECHO_PORT}/`, 'wrong-token-0123456789', 401, /invalid bearer token/],
    [`/v1/sandboxes/sb-nosuch/ports/${ECHO_PORT}/`, TOKEN, 404, /sandbox "sb-nosuch" not found/],
    [`/v1/sandboxes/${sandboxId}/ports/0/`, TOKEN, 400, /port must be an integer from 1 to 65535/],
    [`/v1/sandboxes/${sandboxId}/ports/70000/`, TOKEN, 400, /port must be an integer from 1 to 65535/],
    [`/v1/sandboxes/${sandboxId}/ports/7001/`, TOKEN, 409, /nothing listens on port 7001 in sandbox/],
    ['/v1/snapshots', TOKEN, 404, /no route for upgrade/],
  ];
  for (const [path, token, status, message] of cases) {
    const { socket, first } = await upgrade(path, [], token);
    const raw = await readUntil(socket, '}', first);
    socket.destroy();
    const err = errorOf(raw);
    assert.equal(err.status, status, `${path}: ${raw}`);
    assert.match(err.body.error, message);
  }
});

test('GET /browser on a sandbox without a browser is a 409 that says what to fork instead', async () => {
  const r = await api('GET', `/v1/sandboxes/${sandboxId}/browser`);
  assert.equal(r.status, 409);
  assert.match(
    (r.body as { error: string }).error,
    /has no browser answering CDP on port 9222.*runtime: browser/,
  );
});

test('killing the sandbox closes the connections into it', async () => {
  const { socket, first } = await upgrade(`/v1/sandboxes/${sandboxId}/ports/${ECHO_PORT}/`);
  await readUntil(socket, '\r\n\r\n', first);
  const closed = once(socket, 'close');
  assert.equal((await api('DELETE', `/v1/sandboxes/${sandboxId}`)).status, 204);
  await closed;
});
