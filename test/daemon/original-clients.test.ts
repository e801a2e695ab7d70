// Requests shaped exactly as the original forkd's clients send them (its
// Python SDK, TypeScript SDK and MCP server: `Content-Type: application/json`
// on every request, bodiless calls with an empty body, the original's field
// names), against the real daemon and a tiny guest, asserting the original's
// response shapes (API-v1.md) field by field.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-original-clients';
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;

interface Answer {
  status: number;
  body: unknown;
}

/** One call as the original clients make it: always a JSON content type; no body is an empty body. */
async function original(method: string, path: string, body?: unknown): Promise<Answer> {
  const res = await fetch(daemon.url + path, {
    method,
    headers: { 'Content-Type': 'application/json', 'User-Agent': 'python-requests/2.31.0' },
    body: method === 'GET' ? undefined : body === undefined ? '' : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : null };
}

type Json = Record<string, unknown>;

/** Every field the original names, with its JSON type (`?` optional, `|null` nullable). */
function assertShape(value: unknown, shape: Record<string, string>, what: string): void {
  assert.ok(typeof value === 'object' && value !== null, `${what}: ${JSON.stringify(value)}`);
  const obj = value as Json;
  for (const [key, type] of Object.entries(shape)) {
    const optional = key.endsWith('?');
    const name = optional ? key.slice(0, -1) : key;
    if (!(name in obj)) {
      assert.ok(optional, `${what}: missing ${name} in ${JSON.stringify(obj)}`);
      continue;
    }
    const v = obj[name];
    const actual = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
    assert.ok(type.split('|').includes(actual), `${what}.${name} is ${actual}, want ${type}`);
  }
}

const SNAPSHOT_INFO = {
  tag: 'string',
  dir: 'string',
  created_at_unix: 'number',
  'branched_from?': 'string',
  'pause_ms?': 'number',
  'warning?': 'string',
  status: 'string',
  bootable: 'boolean',
};
const SANDBOX_INFO = {
  id: 'string',
  snapshot_tag: 'string',
  netns: 'string|null',
  guest_addr: 'string',
  created_at_unix: 'number',
  pid: 'number|null',
  memory_limit_mib: 'number|null',
  has_branched: 'boolean',
  last_branch_memory_path: 'string|null',
  branch_count: 'number',
};

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-original-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
});

after(async () => {
  const left = (await original('GET', '/v1/sandboxes')).body as { id: string }[];
  for (const s of left) await original('DELETE', `/v1/sandboxes/${s.id}`);
  await daemon.close();
  for (const tag of (await engine.store.list()).map((r) => r.tag)) {
    if (tag.startsWith(TAG)) await engine.store.remove(tag).catch(() => undefined);
  }
  await rm(scratch, { recursive: true, force: true });
  assert.deepEqual(runDirEntries(engine), []);
});

void test('health, version and snapshot listing answer the original shapes', async () => {
  assert.deepEqual(await original('GET', '/healthz'), { status: 200, body: { ok: true } });
  const version = await original('GET', '/version');
  assert.equal(version.status, 200);
  assert.equal((version.body as Json).api, 'v1');
  assert.match(String((version.body as Json).version), /^\d+\.\d+\.\d+/);
  const list = await original('GET', '/v1/snapshots');
  assert.equal(list.status, 200);
  const mine = (list.body as Json[]).find((s) => s.tag === TAG);
  assertShape(mine, SNAPSHOT_INFO, 'SnapshotInfo');
  assert.equal(mine!.status, 'ready');
  assert.equal(mine!.bootable, true);
  const info = await original('GET', `/v1/snapshots/${TAG}/info`);
  assert.equal(info.status, 200);
  assertShape(
    info.body,
    {
      tag: 'string',
      dir: 'string',
      'created_at_unix?': 'number',
      memory_logical_bytes: 'number',
      memory_physical_bytes: 'number',
      vmstate_bytes: 'number',
      chain_depth: 'number',
      dependents: 'array',
      ancestors: 'array',
    },
    'snapshot info',
  );
});

void test('a sandbox lives its whole life through the original calls: spawn, get, ping, exec, branch, delete', async () => {
  const spawned = await original('POST', '/v1/sandboxes', {
    snapshot_tag: TAG,
    n: 2,
    per_child_netns: false,
    prewarm: false,
    live_fork: false,
    hugepages: false,
  });
  assert.equal(spawned.status, 201, JSON.stringify(spawned.body));
  const children = spawned.body as Json[];
  assert.equal(children.length, 2);
  for (const child of children) assertShape(child, SANDBOX_INFO, 'SandboxInfo');
  const id = String(children[0]!.id);
  assert.match(id, /^sb-[A-Za-z0-9_-]+$/);
  // Its Python SDK splits guest_addr into host and port.
  const [host, port, ...rest] = String(children[0]!.guest_addr).split(':');
  assert.ok(host && port !== undefined && rest.length === 0 && Number.isInteger(Number(port)));

  const got = await original('GET', `/v1/sandboxes/${id}`);
  assert.equal(got.status, 200);
  assertShape(got.body, SANDBOX_INFO, 'SandboxInfo');

  const ping = await original('POST', `/v1/sandboxes/${id}/ping`);
  assert.equal(ping.status, 200, JSON.stringify(ping.body));
  assertShape(
    ping.body,
    {
      pong: 'boolean',
      numpy_version: 'string|null',
      pid: 'number',
      agent_lang: 'string',
      warmup_ready: 'boolean',
    },
    'ping',
  );
  assert.equal((ping.body as Json).pong, true);

  const exec = await original('POST', `/v1/sandboxes/${id}/exec`, {
    args: ['sh', '-c', 'echo out; echo err >&2; exit 3'],
    timeout_secs: 30,
  });
  assert.equal(exec.status, 200);
  assert.deepEqual(exec.body, { stdout: 'out\n', stderr: 'err\n', exit_code: 3 });

  await original('POST', `/v1/sandboxes/${id}/exec`, { args: ['sh', '-c', 'echo here > /tmp/mark'] });
  const branch = await original('POST', `/v1/sandboxes/${id}/branch`, { tag: `${TAG}-br` });
  assert.equal(branch.status, 201, JSON.stringify(branch.body));
  assertShape(branch.body, SNAPSHOT_INFO, 'branch SnapshotInfo');
  assert.equal((branch.body as Json).branched_from, id, 'branched_from is the source sandbox id');
  assert.equal((branch.body as Json).status, 'ready');
  const after = (await original('GET', `/v1/sandboxes/${id}`)).body as Json;
  assert.equal(after.has_branched, true);
  assert.equal(after.branch_count, 1);

  const compact = await original('POST', `/v1/snapshots/${TAG}-br/compact`, { to: `${TAG}-compact` });
  assert.equal(compact.status, 200, JSON.stringify(compact.body));
  assert.equal((compact.body as Json).branched_from, `compact:${TAG}-br`);

  for (const child of children) {
    assert.deepEqual(await original('DELETE', `/v1/sandboxes/${String(child.id)}`), {
      status: 204,
      body: null,
    });
  }
  assert.deepEqual(await original('DELETE', `/v1/snapshots/${TAG}-compact`), { status: 204, body: null });
  assert.deepEqual(await original('DELETE', `/v1/snapshots/${TAG}-br`), { status: 204, body: null });
});

void test('workspaces take the original fields, restrict_egress included', async () => {
  const created = await original('POST', '/v1/workspaces', {
    name: `${TAG}-ws`,
    snapshot_tag: TAG,
    restrict_egress: true,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assertShape(
    created.body,
    {
      id: 'string',
      name: 'string',
      source_snapshot_tag: 'string',
      'current_state_tag?': 'string|null',
      status: 'string',
      'live_sandbox_id?': 'string|null',
      created_at_unix: 'number',
      last_active_unix: 'number',
    },
    'WorkspaceInfo',
  );
  assert.equal((created.body as Json).status, 'running');
  assert.equal((await original('DELETE', `/v1/workspaces/${TAG}-ws`)).status, 204);
  const contradicting = await original('POST', '/v1/workspaces', {
    name: `${TAG}-ws2`,
    snapshot_tag: TAG,
    restrict_egress: true,
    egress: 'internet',
  });
  assert.equal(contradicting.status, 400);
  assert.match(String((contradicting.body as Json).error), /restrict_egress true contradicts egress/);
});

void test('errors are {error} with the original statuses, and a code beside it', async () => {
  const cases: [string, string, unknown, number][] = [
    ['GET', '/v1/sandboxes/sb-doesnotexist', undefined, 404],
    ['DELETE', '/v1/sandboxes/sb-doesnotexist', undefined, 404],
    ['POST', '/v1/sandboxes/sb-doesnotexist/ping', undefined, 404],
    ['POST', '/v1/sandboxes', { snapshot_tag: 'no/such' }, 400],
    ['POST', '/v1/sandboxes', { snapshot_tag: `${TAG}-missing` }, 404],
    ['POST', '/v1/sandboxes', { snapshot_tag: TAG, n: 0 }, 400],
    ['POST', '/v1/snapshots', { tag: TAG, image: 'tiny' }, 409],
    ['DELETE', `/v1/snapshots/${TAG}?cascade=true&force=true`, undefined, 400],
    ['GET', '/v1/snapshots/bad..tag/info', undefined, 400],
  ];
  for (const [method, path, body, status] of cases) {
    const answer = await original(method, path, body);
    assert.equal(answer.status, status, `${method} ${path}: ${JSON.stringify(answer.body)}`);
    const err = answer.body as Json;
    assert.equal(typeof err.error, 'string', `${method} ${path}`);
    assert.equal(typeof err.code, 'string', `${method} ${path}`);
  }
  const malformed = await fetch(`${daemon.url}/v1/sandboxes`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: '{"snapshot_tag": ',
  });
  assert.equal(malformed.status, 400);
  const wrongType = await fetch(`${daemon.url}/v1/sandboxes`, {
    method: 'POST',
    headers: { 'Content-Type': 'text/plain' },
    body: 'snapshot_tag',
  });
  assert.equal(wrongType.status, 415);
  assert.equal(typeof ((await wrongType.json()) as Json).error, 'string');
});
