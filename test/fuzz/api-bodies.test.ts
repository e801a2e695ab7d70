// Property test of the daemon's request parsing: arbitrary JSON bodies,
// query strings and ids against every route that takes them, on a daemon
// with no snapshots. A user's input is answered with a 4xx and an error body,
// never a 500 (nothing here can reach a VM: every tag and id is unknown;
// snapshot and workspace creation are left out, as a valid body builds one).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { fuzzParams } from './settings.js';

let daemon: RunningDaemon;
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'forkd-fuzz-api-'));
  daemon = await startDaemon({ dataDir: dir, port: 0, auditLog: join(dir, 'audit.jsonl') });
});

after(async () => {
  await daemon.close();
  await rm(dir, { recursive: true, force: true });
});

const routes: Array<{ method: 'POST' | 'PUT' | 'GET' | 'DELETE'; url: (id: string) => string }> = [
  { method: 'POST', url: () => '/v1/sandboxes' },
  { method: 'POST', url: (id) => `/v1/sandboxes/${id}/exec` },
  { method: 'POST', url: (id) => `/v1/sandboxes/${id}/eval` },
  { method: 'POST', url: (id) => `/v1/sandboxes/${id}/commands` },
  { method: 'POST', url: (id) => `/v1/sandboxes/${id}/branch` },
  { method: 'PUT', url: (id) => `/v1/sandboxes/${id}/egress` },
  { method: 'POST', url: (id) => `/v1/sandboxes/${id}/files/mkdir` },
  { method: 'GET', url: (id) => `/v1/sandboxes/${id}/files?path=${encodeURIComponent(id)}` },
  { method: 'DELETE', url: (id) => `/v1/snapshots/${id}` },
];

const body = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.record(
    {
      snapshot_tag: fc.oneof(fc.string(), fc.constantFrom('../x', 'nope', '')),
      n: fc.oneof(fc.integer({ min: -5, max: 2000 }), fc.string()),
      args: fc.array(fc.string(), { maxLength: 3 }),
      egress: fc.oneof(fc.string(), fc.constantFrom('none', 'internet', 'allow:', 'allow:10.0.0.0/8')),
      timeout_secs: fc.oneof(fc.double(), fc.integer()),
      max_output_bytes: fc.oneof(fc.integer(), fc.double()),
      cpu_cores: fc.oneof(fc.double(), fc.integer()),
      memory_limit_mib: fc.integer(),
      tag: fc.string(),
      code: fc.string(),
      path: fc.string(),
    },
    { requiredKeys: [] },
  ),
);

test('arbitrary request bodies and ids get a 4xx with an error body, never a 500', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...routes),
      fc.oneof(fc.string({ maxLength: 80 }), fc.constantFrom('sb-nope', '..', '%2e%2e')),
      body,
      async (route, id, payload) => {
        const res = await daemon.app.inject({
          method: route.method,
          url: route.url(encodeURIComponent(id)),
          ...(route.method === 'GET' || route.method === 'DELETE'
            ? {}
            : { payload: JSON.stringify(payload), headers: { 'content-type': 'application/json' } }),
        });
        assert.ok(
          res.statusCode >= 400 && res.statusCode < 500,
          `${route.method} ${res.statusCode} ${res.body}`,
        );
        assert.equal(typeof (JSON.parse(res.body) as { error?: unknown }).error, 'string', res.body);
      },
    ),
    fuzzParams(150),
  );
});
