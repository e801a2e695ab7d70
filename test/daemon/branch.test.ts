// POST /v1/sandboxes/:id/branch over real HTTP (tiny guest): 201 with the
// snapshot, 202 "writing" that turns "ready" with wait:false, and the error
// statuses API-v1 names. Children of a branch start from the branch point.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { jsonCaller } from '../support/http.js';
import { runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-daemon-branch';
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;
let id: string;
const created: string[] = [];

const call = jsonCaller(() => daemon.url);

type Info = { tag: string; status: string; pause_ms?: number; branched_from?: string; warning?: string };

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-daemon-branch-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  const res = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG });
  id = (res.json as { id: string }[])[0]!.id;
});

after(async () => {
  const sandboxes = (await call('GET', '/v1/sandboxes')).json as { id: string }[];
  for (const s of sandboxes) await call('DELETE', `/v1/sandboxes/${s.id}`);
  await daemon.close();
  for (const tag of [...created, TAG]) await engine.store.remove(tag).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
  assert.deepEqual(runDirEntries(engine), []);
});

void test('a branch answers 201 with the snapshot; its children start from the branch point', async () => {
  await call('POST', `/v1/sandboxes/${id}/exec`, { args: ['sh', '-c', 'echo before > /tmp/mark'] });
  const res = await call('POST', `/v1/sandboxes/${id}/branch`, { tag: `${TAG}-b1` });
  assert.equal(res.status, 201, JSON.stringify(res.json));
  created.push(`${TAG}-b1`);
  const info = res.json as Info;
  assert.equal(info.status, 'ready');
  assert.equal(info.branched_from, id, 'as the original: the sandbox it was branched from');
  assert.equal(typeof info.pause_ms, 'number');
  await call('POST', `/v1/sandboxes/${id}/exec`, { args: ['sh', '-c', 'echo after > /tmp/mark'] });
  const child = await call('POST', '/v1/sandboxes', { snapshot_tag: `${TAG}-b1` });
  assert.equal(child.status, 201, JSON.stringify(child.json));
  const childId = (child.json as { id: string }[])[0]!.id;
  const read = await call('POST', `/v1/sandboxes/${childId}/exec`, { args: ['cat', '/tmp/mark'] });
  assert.equal((read.json as { stdout: string }).stdout, 'before\n');
  const source = await call('GET', `/v1/sandboxes/${id}`);
  assert.equal((source.json as { branch_count: number }).branch_count, 1);
  assert.equal((source.json as { has_branched: boolean }).has_branched, true);
});

void test('wait:false answers 202 "writing", and the snapshot turns ready', async () => {
  const res = await call('POST', `/v1/sandboxes/${id}/branch`, { tag: `${TAG}-b2`, wait: false });
  created.push(`${TAG}-b2`);
  assert.equal(res.status, 202);
  assert.equal((res.json as Info).status, 'writing');
  const again = await call('POST', `/v1/sandboxes/${id}/branch`, { tag: `${TAG}-b2` });
  assert.equal(again.status, 409, 'a tag in flight is a conflict');
  const early = await call('POST', '/v1/sandboxes', { snapshot_tag: `${TAG}-b2` });
  assert.equal(early.status, 409, 'a snapshot that is writing is never restored');
  let status = 'writing';
  for (let i = 0; i < 600 && status === 'writing'; i++) {
    const list = (await call('GET', '/v1/snapshots')).json as Info[];
    status = list.find((s) => s.tag === `${TAG}-b2`)?.status ?? 'missing';
    if (status === 'writing') await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 'ready');
});

void test('branch errors: 400 conflicting options or bad tag, 404 unknown sandbox, 409 existing tag', async () => {
  assert.equal((await call('POST', `/v1/sandboxes/${id}/branch`, { mode: 'full', live: true })).status, 400);
  assert.equal((await call('POST', `/v1/sandboxes/${id}/branch`, { diff: true, live: true })).status, 400);
  assert.equal((await call('POST', `/v1/sandboxes/${id}/branch`, { tag: '../x' })).status, 400);
  assert.equal((await call('POST', '/v1/sandboxes/sb-000000000000/branch', {})).status, 404);
  assert.equal((await call('POST', `/v1/sandboxes/${id}/branch`, { tag: TAG })).status, 409);
  const diff = await call('POST', `/v1/sandboxes/${id}/branch`, { tag: `${TAG}-b3`, mode: 'diff' });
  created.push(`${TAG}-b3`);
  assert.equal(diff.status, 201);
  // mode diff writes a diff link of the sandbox's snapshot.
  const link = diff.json as Info & { diff_ms?: number; diff_physical_bytes?: number };
  assert.equal(link.warning, undefined);
  assert.equal(typeof link.diff_ms, 'number');
  const details = (await call('GET', `/v1/snapshots/${TAG}-b3/info`)).json as Record<string, unknown>;
  assert.equal(details.parent_tag, TAG);
  assert.equal(details.chain_depth, 1);
  assert.deepEqual(details.ancestors, [TAG]);
  assert.match(String(details.parent_content_hash), /^[0-9a-f]{64}$/);
  const parent = (await call('GET', `/v1/snapshots/${TAG}/info`)).json as Record<string, unknown>;
  assert.deepEqual(parent.dependents, [`${TAG}-b3`]);
  assert.equal(parent.content_hash, details.parent_content_hash);
  const refused = await call('DELETE', `/v1/snapshots/${TAG}`);
  assert.equal(refused.status, 409);
  assert.match(String((refused.json as { error: string }).error), new RegExp(`has dependents: ${TAG}-b3`));
});

void test('past the concurrency cap a branch answers 503; the others finish', async () => {
  const more = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG, n: 4 });
  const ids = [id, ...(more.json as { id: string }[]).map((s) => s.id)];
  const tags = ids.map((_, i) => `${TAG}-cap${i}`);
  created.push(...tags);
  const first = await Promise.all(
    ids
      .slice(0, 4)
      .map((sid, i) => call('POST', `/v1/sandboxes/${sid}/branch`, { tag: tags[i], wait: false })),
  );
  assert.deepEqual(
    first.map((r) => r.status),
    [202, 202, 202, 202],
  );
  const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
  assert.match(metrics, /forkd_branches_in_flight 4/);
  const fifth = await call('POST', `/v1/sandboxes/${ids[4]}/branch`, { tag: tags[4] });
  assert.equal(fifth.status, 503);
  created.pop();
  let mine: (Info | undefined)[] = [];
  for (let i = 0; i < 1800; i++) {
    const list = (await call('GET', '/v1/snapshots')).json as Info[];
    mine = tags.slice(0, 4).map((t) => list.find((s) => s.tag === t));
    if (mine.every((s) => s && s.status !== 'writing')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(
    mine.map((s) => s?.status),
    ['ready', 'ready', 'ready', 'ready'],
    JSON.stringify(mine),
  );
});
