// The extension endpoints over real HTTP: streamed and background commands,
// stdin, kill, and binary-safe files.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';
import type { Engine } from '../../src/engine/index.js';

const TAG = 'test-daemon-ext';
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;
let id: string;

type Event = { type: string; data?: string; exit_code?: number; command_id?: string; signal?: string | null };

async function post(path: string, body: unknown): Promise<Response> {
  return fetch(daemon.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function events(res: Response): Promise<Event[]> {
  assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
  return (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Event);
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-daemon-ext-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  const res = await post('/v1/sandboxes', { snapshot_tag: TAG });
  id = ((await res.json()) as { id: string }[])[0]!.id;
});

after(async () => {
  await fetch(`${daemon.url}/v1/sandboxes/${id}`, { method: 'DELETE' });
  await daemon.close();
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
  assert.deepEqual(runDirEntries(engine), []);
});

test('a foreground command streams start, output in order, then exit', async () => {
  const list = await events(
    await post(`/v1/sandboxes/${id}/commands`, {
      cmd: 'echo one; echo two >&2; echo three; exit 5',
      envs: { X: 'y' },
    }),
  );
  assert.equal(list[0]?.type, 'start');
  assert.match(list[0]?.command_id ?? '', /^cmd-/);
  const out = list
    .filter((e) => e.type === 'stdout')
    .map((e) => e.data)
    .join('');
  const err = list
    .filter((e) => e.type === 'stderr')
    .map((e) => e.data)
    .join('');
  assert.equal(out, 'one\nthree\n');
  assert.equal(err, 'two\n');
  assert.deepEqual(list.at(-1), { type: 'exit', exit_code: 5, signal: null, timed_out: false });
});

test('a background command takes stdin, replays its events, and can be killed', async () => {
  const started = await post(`/v1/sandboxes/${id}/commands`, {
    args: ['cat'],
    stdin_open: true,
    background: true,
  });
  assert.equal(started.status, 201);
  const { command_id } = (await started.json()) as { command_id: string };
  assert.equal(
    (await post(`/v1/sandboxes/${id}/commands/${command_id}/stdin`, { data: 'piped\n', eof: true })).status,
    204,
  );
  const replay = await events(await fetch(`${daemon.url}/v1/sandboxes/${id}/commands/${command_id}/events`));
  assert.equal(
    replay
      .filter((e) => e.type === 'stdout')
      .map((e) => e.data)
      .join(''),
    'piped\n',
  );
  assert.equal(replay.at(-1)?.exit_code, 0);

  const sleeper = (await (
    await post(`/v1/sandboxes/${id}/commands`, { args: ['sleep', '60'], background: true })
  ).json()) as { command_id: string };
  assert.equal((await post(`/v1/sandboxes/${id}/commands/${sleeper.command_id}/kill`, {})).status, 204);
  const killed = await events(
    await fetch(`${daemon.url}/v1/sandboxes/${id}/commands/${sleeper.command_id}/events`),
  );
  assert.equal(killed.at(-1)?.signal, 'SIGKILL');
});

test('command bad input: both args and cmd, no stdin_open, unknown command', async () => {
  assert.equal((await post(`/v1/sandboxes/${id}/commands`, { args: ['true'], cmd: 'true' })).status, 400);
  assert.equal(
    (await post(`/v1/sandboxes/${id}/commands`, { cmd: 'true', timeout_secs: 99999 })).status,
    400,
  );
  const done = (await (
    await post(`/v1/sandboxes/${id}/commands`, { cmd: 'true', background: true })
  ).json()) as { command_id: string };
  assert.equal(
    (await post(`/v1/sandboxes/${id}/commands/${done.command_id}/stdin`, { data: 'x' })).status,
    409,
  );
  assert.equal((await post(`/v1/sandboxes/${id}/commands/cmd-nope/kill`, {})).status, 404);
});

test('files: binary round trip, list, stat, mkdir, remove, and 404/400s', async () => {
  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const put = await fetch(`${daemon.url}/v1/sandboxes/${id}/files?path=/tmp/d/all.bin&mode=600`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  assert.equal(put.status, 204);
  const got = Buffer.from(
    await (await fetch(`${daemon.url}/v1/sandboxes/${id}/files?path=/tmp/d/all.bin`)).arrayBuffer(),
  );
  assert.deepEqual(got, bytes);
  const stat = (await (
    await fetch(`${daemon.url}/v1/sandboxes/${id}/files/stat?path=/tmp/d/all.bin`)
  ).json()) as { size: number; mode: number; type: string };
  assert.deepEqual([stat.type, stat.size, stat.mode], ['file', 256, 0o600]);
  assert.equal(
    (await post(`/v1/sandboxes/${id}/files/mkdir`, { path: '/tmp/d/sub/deeper', parents: true })).status,
    204,
  );
  const list = (await (await fetch(`${daemon.url}/v1/sandboxes/${id}/files/list?path=/tmp/d`)).json()) as {
    name: string;
    type: string;
  }[];
  assert.deepEqual(
    list.map((f) => [f.name, f.type]),
    [
      ['all.bin', 'file'],
      ['sub', 'dir'],
    ],
  );
  assert.equal(
    (await fetch(`${daemon.url}/v1/sandboxes/${id}/files?path=/tmp/d&recursive=true`, { method: 'DELETE' }))
      .status,
    204,
  );
  assert.equal((await fetch(`${daemon.url}/v1/sandboxes/${id}/files/stat?path=/tmp/d`)).status, 404);
  assert.equal((await fetch(`${daemon.url}/v1/sandboxes/${id}/files?path=relative`)).status, 400);
  const wrongType = await fetch(`${daemon.url}/v1/sandboxes/${id}/files?path=/tmp/t`, {
    method: 'PUT',
    headers: { 'content-type': 'text/plain' },
    body: 'x',
  });
  assert.equal(wrongType.status, 415);
});
