// The daemon over real HTTP with real VMs: the v1 wire contract, auth,
// bad input, and sandboxes surviving a daemon restart.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { qemuProcessesUsing, runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';
import type { Engine } from '../../src/engine/index.js';

const TAG = 'test-daemon-tiny';
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;

async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  base = daemon.url,
): Promise<{ status: number; body: unknown; text: string }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed, text };
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-daemon-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
});

after(async () => {
  await daemon.close();
  await engine.cleanup({ killRunning: true });
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
});

test('health, version and metrics answer in the documented shapes', async () => {
  assert.deepEqual((await call('GET', '/healthz')).body, { ok: true });
  assert.deepEqual((await call('GET', '/healthz/')).body, { ok: true });
  const version = (await call('GET', '/version')).body as { version: string; api: string };
  assert.equal(version.api, 'v1');
  assert.match(version.version, /^\d+\.\d+\.\d+/);
  const metrics = (await call('GET', '/metrics')).text;
  for (const name of [
    'forkd_snapshots_total',
    'forkd_sandboxes_active',
    'forkd_branches_in_flight',
    'forkd_branch_concurrency_cap',
    'forkd_build_info{version=',
  ]) {
    assert.ok(metrics.includes(name), name);
  }
});

test('a sandbox lifecycle over HTTP: create, list, get, ping, exec, eval, delete', async () => {
  const created = await call('POST', '/v1/sandboxes', {
    snapshot_tag: TAG,
    n: 2,
    per_child_netns: true,
    hugepages: true,
  });
  assert.equal(created.status, 201, created.text);
  const infos = created.body as {
    id: string;
    snapshot_tag: string;
    guest_addr: string;
    netns: string | null;
    egress: string;
    pid: number;
  }[];
  assert.equal(infos.length, 2);
  for (const info of infos) {
    assert.match(info.id, /^sb-[A-Za-z0-9_-]+$/);
    assert.equal(info.snapshot_tag, TAG);
    // per_child_netns answered truthfully: egress none puts each child's QEMU in a namespace of its own.
    assert.equal(info.egress, 'none');
    assert.equal(info.netns, `/proc/${info.pid}/ns/net`);
    assert.equal(info.guest_addr, '10.0.2.15:0');
  }
  const id = infos[0]!.id;
  const listed = (await call('GET', '/v1/sandboxes')).body as { id: string }[];
  assert.deepEqual(listed.map((s) => s.id).sort(), infos.map((s) => s.id).sort());
  assert.equal(((await call('GET', `/v1/sandboxes/${id}`)).body as { id: string }).id, id);
  assert.equal(((await call('POST', `/v1/sandboxes/${id}/ping`)).body as { pong: boolean }).pong, true);
  const exec = await call('POST', `/v1/sandboxes/${id}/exec`, {
    args: ['sh', '-c', 'echo out; echo err >&2; exit 3'],
  });
  assert.deepEqual(exec.body, { stdout: 'out\n', stderr: 'err\n', exit_code: 3 });
  const evalTiny = await call('POST', `/v1/sandboxes/${id}/eval`, { code: '1+1' });
  assert.equal(evalTiny.status, 409, 'the sandbox lacks a runtime: not a daemon fault');
  assert.match((evalTiny.body as { error: string }).error, /no eval runtime/);
  for (const info of infos) assert.equal((await call('DELETE', `/v1/sandboxes/${info.id}`)).status, 204);
  assert.equal((await call('GET', `/v1/sandboxes/${id}`)).status, 404);
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  assert.deepEqual(runDirEntries(engine), []);
});

test('bad input gets the documented status and an {"error"} body, and changes nothing', async () => {
  const before = runDirEntries(engine);
  const cases: [string, string, unknown, number, RegExp, Record<string, string>?][] = [
    ['POST', '/v1/sandboxes', '{"snapshot_tag": ', 400, /JSON/],
    ['POST', '/v1/sandboxes', 'snapshot_tag=x', 415, /content type/, { 'content-type': 'text/plain' }],
    ['POST', '/v1/sandboxes', { snapshot_tag: '../etc' }, 400, /invalid snapshot_tag/],
    ['POST', '/v1/sandboxes', { snapshot_tag: 'no-such-snapshot' }, 404, /not found/],
    ['POST', '/v1/sandboxes', { snapshot_tag: TAG, n: 0 }, 400, /child count/],
    ['POST', '/v1/sandboxes', { snapshot_tag: TAG, n: 1001 }, 400, /child count/],
    ['POST', '/v1/sandboxes', { n: 1 }, 400, /invalid request/],
    [
      'POST',
      '/v1/sandboxes',
      JSON.stringify({ snapshot_tag: TAG, pad: 'x'.repeat(2 * 1024 * 1024) }),
      413,
      /too large/,
    ],
    ['GET', '/v1/sandboxes/sb-doesnotexist', undefined, 404, /not found/],
    ['POST', '/v1/sandboxes/sb-doesnotexist/exec', { args: ['true'] }, 404, /not found/],
    ['DELETE', '/v1/sandboxes/sb-doesnotexist', undefined, 404, /not found/],
    ['GET', '/v1/snapshots/..%2Fetc/info', undefined, 400, /invalid tag/],
    ['DELETE', `/v1/snapshots/${TAG}?cascade=true&force=true`, undefined, 400, /either/],
    ['DELETE', '/v1/snapshots/nope', undefined, 404, /not found/],
    ['POST', '/v1/snapshots', { tag: TAG, image: 'tiny' }, 409, /already exists/],
    ['POST', '/v1/snapshots', { tag: 'x/y' }, 400, /invalid tag/],
    ['GET', '/v1/nothing-here', undefined, 404, /no route/],
  ];
  for (const [method, path, body, status, message, headers] of cases) {
    const r = await call(method, path, body, headers);
    assert.equal(r.status, status, `${method} ${path}: ${r.text}`);
    assert.match((r.body as { error: string }).error, message, `${method} ${path}`);
    const code = (r.body as { code?: string }).code;
    assert.ok(typeof code === 'string' && code.length > 0, `${method} ${path}: a code to branch on`);
    if (status === 404) assert.equal(code, 'not_found');
    if (status === 400) assert.equal(code, 'invalid_argument');
  }
  // An exec with empty args, on a real sandbox.
  const [info] = (await call('POST', '/v1/sandboxes', { snapshot_tag: TAG })).body as { id: string }[];
  const empty = await call('POST', `/v1/sandboxes/${info!.id}/exec`, { args: [] });
  assert.equal(empty.status, 400);
  assert.match((empty.body as { error: string }).error, /args must not be empty/);
  await call('DELETE', `/v1/sandboxes/${info!.id}`);
  assert.deepEqual(runDirEntries(engine), before);
  assert.equal(await engine.store.exists('x'), false);
});

test('bodiless calls sent as the original clients send them (JSON content type, empty body) are served', async () => {
  const [info] = (await call('POST', '/v1/sandboxes', { snapshot_tag: TAG })).body as { id: string }[];
  const ping = await call('POST', `/v1/sandboxes/${info!.id}/ping`, '');
  assert.equal(ping.status, 200, ping.text);
  const pong = ping.body as Record<string, unknown>;
  // The original's fields, on an image without a runtime.
  assert.deepEqual(
    [pong.pong, pong.numpy_version, pong.agent_lang, pong.warmup_ready, typeof pong.pid],
    [true, null, 'none', false, 'number'],
  );
  const killed = await call('DELETE', `/v1/sandboxes/${info!.id}`, '');
  assert.equal(killed.status, 204, killed.text);
  assert.equal((await call('GET', `/v1/sandboxes/${info!.id}`)).status, 404);
  // A body-taking call with no body is still the caller's mistake.
  const noBody = await call('POST', '/v1/sandboxes', '');
  assert.equal(noBody.status, 400, noBody.text);
});

test('bearer auth: missing and wrong tokens are 401, /healthz stays open, weak tokens refuse to start', async () => {
  const tokenFile = join(scratch, 'token');
  await writeFile(tokenFile, 'a-very-secret-token-0123456789\n');
  // A data dir of its own: the test daemon owns TEST_DATA_DIR.
  const guarded = await startDaemon({
    dataDir: join(scratch, 'bearer-data'),
    port: 0,
    tokenFile,
    auditLog: join(scratch, 'audit2.jsonl'),
  });
  try {
    assert.deepEqual(
      await call('GET', '/v1/snapshots', undefined, {}, guarded.url).then((r) => [r.status, r.body]),
      [401, { error: 'missing bearer token', code: 'unauthorized' }],
    );
    const wrong = await call(
      'GET',
      '/v1/snapshots',
      undefined,
      { authorization: 'Bearer nope' },
      guarded.url,
    );
    assert.deepEqual(
      [wrong.status, wrong.body],
      [401, { error: 'invalid bearer token', code: 'unauthorized' }],
    );
    const right = await call(
      'GET',
      '/v1/snapshots',
      undefined,
      { authorization: 'Bearer a-very-secret-token-0123456789' },
      guarded.url,
    );
    assert.equal(right.status, 200);
    assert.equal((await call('GET', '/healthz', undefined, {}, guarded.url)).status, 200);
  } finally {
    await guarded.close();
  }
  const audit = (await readFile(join(scratch, 'audit2.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(
    audit.some((e) => e.status === 401 && e.path === '/v1/snapshots'),
    'unauthorised requests are audited',
  );
  for (const key of ['ts', 'method', 'path', 'status', 'latency_us', 'ua', 'remote'])
    assert.ok(key in audit[0]!, key);
  for (const weak of ['short', 'REPLACE_ME-0123456789abcdef']) {
    await writeFile(tokenFile, weak);
    await assert.rejects(
      startDaemon({ dataDir: TEST_DATA_DIR, port: 0, tokenFile }),
      /too weak or a placeholder/,
    );
  }
  await assert.rejects(startDaemon({ dataDir: TEST_DATA_DIR, host: '0.0.0.0', port: 0 }), /without a token/);
});

test('sandboxes survive a daemon restart and answer the new daemon', async () => {
  const created = (await call('POST', '/v1/sandboxes', { snapshot_tag: TAG, n: 2 })).body as { id: string }[];
  await call('POST', `/v1/sandboxes/${created[0]!.id}/exec`, {
    args: ['sh', '-c', 'echo kept > /tmp/state'],
  });
  await daemon.close();
  assert.equal(qemuProcessesUsing(engine.dataDir.runDir).length, 2, 'children keep running without a daemon');
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  const listed = ((await call('GET', '/v1/sandboxes')).body as { id: string }[]).map((s) => s.id).sort();
  assert.deepEqual(listed, created.map((s) => s.id).sort());
  const r = await call('POST', `/v1/sandboxes/${created[0]!.id}/exec`, { args: ['cat', '/tmp/state'] });
  assert.deepEqual(r.body, { stdout: 'kept\n', stderr: '', exit_code: 0 });
  for (const s of created) assert.equal((await call('DELETE', `/v1/sandboxes/${s.id}`)).status, 204);
  assert.deepEqual(runDirEntries(engine), []);
});

test('/openapi.json documents every route from the schemas that validate them', async () => {
  const doc = (await call('GET', '/openapi.json')).body as {
    openapi: string;
    paths: Record<string, Record<string, { requestBody?: unknown }>>;
  };
  assert.match(doc.openapi, /^3\./);
  for (const path of [
    '/v1/snapshots',
    '/v1/sandboxes',
    '/v1/sandboxes/{id}/exec',
    '/v1/sandboxes/{id}/eval',
    '/v1/sandboxes/{id}/commands',
    '/v1/sandboxes/{id}/files',
    '/version',
  ]) {
    assert.ok(doc.paths[path], `missing ${path}`);
  }
  assert.ok(doc.paths['/v1/sandboxes']?.post?.requestBody, 'request bodies come from the route schemas');
});

test('the state database records sandboxes; one that died while the daemon was down is marked dead and its files removed', async () => {
  const created = (await call('POST', '/v1/sandboxes', { snapshot_tag: TAG, n: 2 })).body as {
    id: string;
    pid: number;
  }[];
  const [survivor, victim] = created;
  const running = daemon.context.db.sandboxes('running').map((r) => r.id);
  for (const s of created) assert.ok(running.includes(s.id), `${s.id} recorded as running`);
  assert.ok(daemon.context.db.snapshotTags().includes(TAG), 'snapshots mirrored in the database');

  await daemon.close();
  process.kill(victim!.pid, 'SIGKILL'); // dies while no daemon watches
  await new Promise((r) => setTimeout(r, 300));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });

  const rows = new Map(daemon.context.db.sandboxes().map((r) => [r.id, r]));
  assert.equal(rows.get(victim!.id)?.state, 'dead');
  assert.ok(rows.get(victim!.id)?.ended_at_unix);
  assert.equal(rows.get(survivor!.id)?.state, 'running');
  assert.ok(!runDirEntries(engine).includes(victim!.id), 'the dead sandbox’s run dir is gone');
  assert.equal((await call('GET', `/v1/sandboxes/${victim!.id}`)).status, 404);
  assert.equal((await call('DELETE', `/v1/sandboxes/${survivor!.id}`)).status, 204);
  assert.equal(daemon.context.db.sandboxes().find((r) => r.id === survivor!.id)?.state, 'killed');
});

test('with --tls-cert/--tls-key the daemon serves HTTPS', async () => {
  const key = join(scratch, 'key.pem');
  const cert = join(scratch, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const tls = await startDaemon({
    dataDir: join(scratch, 'tls-data'),
    port: 0,
    tls: { certFile: cert, keyFile: key },
    auditLog: join(scratch, 'audit-tls.jsonl'),
  });
  try {
    assert.match(tls.url, /^https:\/\//);
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(`${tls.url}/version`, { ca: readFileSync(cert) }, (res) => {
          let data = '';
          res.on('data', (c: Buffer) => (data += c.toString()));
          res.on('end', () => resolve(data));
        })
        .on('error', reject);
    });
    assert.equal((JSON.parse(body) as { api: string }).api, 'v1');
  } finally {
    await tls.close();
  }
});

test('scripts/v1-curl.sh makes every v1 call with curl alone', async () => {
  // Asynchronously: the daemon answering the script lives in this process.
  const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('bash', ['scripts/v1-curl.sh', 'test-daemon'], {
      env: { ...process.env, FORKD_URL: daemon.url },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /all v1 calls ok/);
});

test('compact copies a (flat) snapshot to a new tag that forks like the original', async () => {
  const to = 'test-daemon-compacted';
  const r = await call('POST', `/v1/snapshots/${TAG}/compact`, { to });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(
    [(r.body as { tag: string }).tag, (r.body as { branched_from: string }).branched_from],
    [to, `compact:${TAG}`],
  );
  assert.equal((await call('POST', `/v1/snapshots/${TAG}/compact`, { to })).status, 409);
  assert.equal((await call('POST', `/v1/snapshots/${TAG}/compact`, { to: '../x' })).status, 400);
  const [sb] = (await call('POST', '/v1/sandboxes', { snapshot_tag: to })).body as { id: string }[];
  assert.deepEqual((await call('POST', `/v1/sandboxes/${sb!.id}/exec`, { args: ['echo', 'ok'] })).body, {
    stdout: 'ok\n',
    stderr: '',
    exit_code: 0,
  });
  assert.equal((await call('DELETE', `/v1/snapshots/${to}?force=true`)).status, 204);
  assert.equal((await call('GET', `/v1/sandboxes/${sb!.id}`)).status, 404, 'force killed its sandbox');
});
