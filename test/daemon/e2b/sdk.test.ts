// The official E2B SDK (`e2b` from npm, unchanged) against a real daemon and
// real tiny guests: create with metadata and environment, commands
// (foreground, streamed, failing, background then kill, stdin), info and
// list, the deadline killing a sandbox, pause and resume keeping state,
// fork({count: 5}) where every fork sees the source's state and the fork
// past the concurrency limit comes back as a RateLimitError while the others
// run, a server in the sandbox at its host name, a flooding command held
// back, a daemon restart (records, tokens and deadlines survive), kill, and
// the refusals (bad key, unknown template, wrong sandbox
// token) with nothing left behind.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { AuthenticationError, CommandExitError, RateLimitError, Sandbox, SandboxError } from 'e2b';
import type { RunningDaemon } from '../../../src/daemon/server.js';
import type { Engine } from '../../../src/engine/index.js';
import { runDirEntries, testEngine } from '../../support/engine.js';
import { startE2bDaemon, type E2bTestDaemon } from '../../support/e2b-daemon.js';

const TAG = 'test-e2b-sdk';
/** The source plus four forks: the fifth fork is past the limit. */
const MAX_SANDBOXES = 5;
let engine: Engine;
let e2b: E2bTestDaemon;
let daemon: RunningDaemon;
const opts = (extra: Record<string, unknown> = {}) => e2b.opts(extra);

async function killAll(): Promise<void> {
  for (const s of await Sandbox.list(opts()).nextItems()) await Sandbox.kill(s.sandboxId, opts());
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  e2b = await startE2bDaemon('e2b-sdk', { e2bMaxSandboxes: MAX_SANDBOXES });
  daemon = e2b.daemon;
});

// Each test starts with none running: the concurrency limit counts them.
beforeEach(killAll);

after(async () => {
  await killAll();
  await e2b.close();
  await engine.store.remove(TAG).catch(() => undefined);
  assert.deepEqual(runDirEntries(engine), []);
  const left = (await engine.store.list()).map((s) => s.tag).filter((t) => t.startsWith('e2b-'));
  assert.deepEqual(left, [], 'no pause or fork snapshot outlives its sandboxes');
});

test('create, commands (foreground, streamed, failing, background + kill, stdin), info and list', async () => {
  const sbx = await Sandbox.create(TAG, opts({ metadata: { suite: 'sdk' }, envs: { GREETING: 'hello' } }));
  const ran = await sbx.commands.run('echo "$GREETING from $(pwd)"');
  assert.equal(ran.exitCode, 0);
  assert.equal(ran.stdout, 'hello from /home/user\n');

  const lines: string[] = [];
  const streamed = await sbx.commands.run('for i in 1 2 3; do echo line$i; sleep 0.2; done', {
    onStdout: (d) => void lines.push(d),
  });
  assert.equal(streamed.stdout, 'line1\nline2\nline3\n');
  assert.ok(lines.join('').includes('line3'), 'stdout reached the callback');

  await assert.rejects(
    sbx.commands.run('echo out; echo oops >&2; exit 3', { envs: { X: '1' } }),
    (err: unknown) => {
      assert.ok(err instanceof CommandExitError, String(err));
      assert.equal(err.exitCode, 3);
      assert.equal(err.stdout, 'out\n');
      assert.equal(err.stderr, 'oops\n');
      return true;
    },
  );

  const bg = await sbx.commands.run('sleep 300', { background: true, timeoutMs: 0 });
  const listed = await sbx.commands.list();
  assert.ok(
    listed.some((p) => p.pid === bg.pid),
    JSON.stringify(listed),
  );
  assert.equal(await sbx.commands.kill(bg.pid), true);
  await assert.rejects(bg.wait());
  assert.ok(!(await sbx.commands.list()).some((p) => p.pid === bg.pid));
  assert.equal(await sbx.commands.kill(999_999), false, 'an unknown pid is not found');

  const cat = await sbx.commands.run('cat', { background: true, stdin: true });
  await sbx.commands.sendStdin(cat.pid, 'from stdin');
  await sbx.commands.closeStdin(cat.pid);
  assert.equal((await cat.wait()).stdout, 'from stdin');

  const info = await sbx.getInfo();
  assert.equal(info.sandboxId, sbx.sandboxId);
  assert.equal(info.templateId, TAG);
  assert.equal(info.state, 'running');
  assert.deepEqual(info.metadata, { suite: 'sdk' });
  assert.ok(info.endAt.getTime() > Date.now());

  const found = await Sandbox.list(opts({ query: { metadata: { suite: 'sdk' } } })).nextItems();
  assert.deepEqual(
    found.map((s) => s.sandboxId),
    [sbx.sandboxId],
  );
  assert.equal(await sbx.isRunning(), true);
  await sbx.kill();
  assert.equal(await Sandbox.kill(sbx.sandboxId, opts()), false, 'a killed sandbox is gone');
});

test('a sandbox is killed at its deadline; setTimeout moves the deadline', async () => {
  const sbx = await Sandbox.create(TAG, opts({ timeoutMs: 600_000 }));
  await sbx.setTimeout(2_000);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && (await sbx.isRunning().catch(() => false))) {
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(await Sandbox.kill(sbx.sandboxId, opts()), false, 'it was killed at its deadline');
  assert.ok(!daemon.context.registry.list().some((s) => s.info.snapshotTag === TAG));
});

test('pause and connect keep the sandbox id and its state', async () => {
  const sbx = await Sandbox.create(TAG, opts());
  await sbx.files.write('/home/user/kept.txt', 'before pause');
  await sbx.commands.run('echo running > /tmp/mem-state');
  assert.equal(await sbx.pause(), true);
  assert.equal((await Sandbox.getInfo(sbx.sandboxId, opts())).state, 'paused');
  assert.equal(await Sandbox.pause(sbx.sandboxId, opts()), false, 'already paused');
  const again = await Sandbox.connect(sbx.sandboxId, opts());
  assert.equal(again.sandboxId, sbx.sandboxId);
  assert.equal(
    (await again.commands.run('cat /home/user/kept.txt /tmp/mem-state')).stdout,
    'before pauserunning\n',
  );
  await again.kill();
});

test('fork({count: 5}): every fork has the source state; the one past the limit is a RateLimitError', async () => {
  const source = await Sandbox.create(TAG, opts({ metadata: { role: 'source' } }));
  await source.commands.run('echo warm > /home/user/state.txt');
  const forks = await source.fork({ count: 5 });
  assert.equal(forks.length, 5);
  const ok = forks.filter((f): f is Sandbox => f instanceof Sandbox);
  const failed = forks.filter((f) => f instanceof Error);
  assert.equal(ok.length, MAX_SANDBOXES - 1);
  assert.equal(failed.length, 1);
  assert.ok(failed[0] instanceof RateLimitError, String(failed[0]));
  const ids = new Set([source.sandboxId, ...ok.map((f) => f.sandboxId)]);
  assert.equal(ids.size, MAX_SANDBOXES, 'each fork is its own sandbox');
  const seen = await Promise.all(ok.map((f) => f.commands.run('cat /home/user/state.txt')));
  assert.deepEqual(
    seen.map((r) => r.stdout),
    ok.map(() => 'warm\n'),
  );
  // Each fork is independent: a write in one is not seen by another or the source.
  await ok[0]!.commands.run('echo mine > /home/user/state.txt');
  assert.equal((await ok[1]!.commands.run('cat /home/user/state.txt')).stdout, 'warm\n');
  assert.equal((await source.commands.run('cat /home/user/state.txt')).stdout, 'warm\n');
  // The source keeps its id and runs on.
  assert.equal((await source.getInfo()).state, 'running');
  await Promise.all([source, ...ok].map((s) => s.kill()));
});

/** GET through the daemon with a Host header naming the sandbox's port, as `sandbox.getHost(port)` does. */
function getByHost(
  host: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const { port } = new URL(daemon.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test("a server in the sandbox answers at sandbox.getHost(port); a private sandbox's ports need its traffic token", async () => {
  const sbx = await Sandbox.create(TAG, opts({ domain: 'localhost' }));
  await sbx.files.write('/home/user/www/index.html', 'hello from port 8000');
  await sbx.commands.run('busybox httpd -p 127.0.0.1:8000 -h /home/user/www');
  const host = sbx.getHost(8000);
  assert.equal(host, `8000-${sbx.sandboxId}.localhost`);
  assert.deepEqual(await getByHost(host, '/index.html'), { status: 200, body: 'hello from port 8000' });
  const byHeader = await fetch(`${daemon.url}/e2b-sandbox/index.html`, {
    headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000' },
  });
  assert.equal(await byHeader.text(), 'hello from port 8000');
  const closed = await getByHost(sbx.getHost(8001), '/');
  assert.equal(closed.status, 409, closed.body);
  assert.match(closed.body, /nothing listens on port 8001/);

  const closedOff = await Sandbox.create(
    TAG,
    opts({ domain: 'localhost', network: { allowPublicTraffic: false } }),
  );
  await closedOff.commands.run('echo private > /tmp/i.html && busybox httpd -p 127.0.0.1:8000 -h /tmp');
  const refused = await getByHost(closedOff.getHost(8000), '/i.html');
  assert.equal(refused.status, 403, refused.body);
  const info = await Sandbox.getInfo(closedOff.sandboxId, opts());
  assert.equal(info.network?.allowPublicTraffic, false);
  const allowed = await getByHost(closedOff.getHost(8000), '/i.html', {
    'e2b-traffic-access-token': closedOff.trafficAccessToken ?? '',
  });
  assert.deepEqual(allowed, { status: 200, body: 'private\n' });
  await Promise.all([sbx.kill(), closedOff.kill()]);
});

/** A Connect server-streaming request body: one enveloped JSON message. */
function envelope(message: object): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(json.length, 1);
  return Buffer.concat([head, json]);
}

test("a guest flooding a command's output is held back while the client reads nothing", async () => {
  const sbx = await Sandbox.create(TAG, opts());
  const token = (sbx as unknown as { envdAccessToken: string }).envdAccessToken;
  const res = await fetch(`${daemon.url}/e2b-sandbox/process.Process/Start`, {
    method: 'POST',
    headers: {
      'content-type': 'application/connect+json',
      'e2b-sandbox-id': sbx.sandboxId,
      'x-access-token': token,
      'connect-timeout-ms': '60000',
    },
    body: envelope({ process: { cmd: '/bin/sh', args: ['-c', 'yes flood-flood-flood-flood-flood-flood'] } }),
  });
  assert.equal(res.status, 200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  assert.ok((await reader.read()).value, 'the stream started');
  global.gc?.();
  const before = process.memoryUsage().rss;
  // The guest can write far more than this in the time: it must be made to wait instead.
  await new Promise((r) => setTimeout(r, 4000));
  const grown = process.memoryUsage().rss - before;
  assert.ok(grown < 64 * 1024 * 1024, `the daemon grew by ${grown} bytes while nobody read`);
  let received = 0;
  const until = Date.now() + 1000;
  while (Date.now() < until) {
    const chunk: Uint8Array | undefined = (await reader.read()).value;
    received += chunk?.length ?? 0;
  }
  assert.ok(received > 64 * 1024, `reading again lets the command go on (${received} bytes in 1 s)`);
  await reader.cancel();
  await sbx.kill();
});

test('a restarted daemon still answers for its E2B sandboxes, and kills them at their deadline', async () => {
  const sbx = await Sandbox.create(TAG, opts());
  await sbx.files.write('/home/user/r.txt', 'kept across the restart');
  await e2b.restart();
  daemon = e2b.daemon;
  const again = await Sandbox.connect(sbx.sandboxId, opts());
  assert.equal(await again.files.read('/home/user/r.txt'), 'kept across the restart');
  assert.equal((await again.commands.run('echo still here')).stdout, 'still here\n');
  await again.setTimeout(3_000);
  await e2b.restart();
  daemon = e2b.daemon;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && (await Sandbox.list(opts()).nextItems()).length > 0) {
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(await Sandbox.kill(sbx.sandboxId, opts()), false, 'the new daemon killed it at its deadline');
  assert.ok(!daemon.context.registry.list().some((s) => s.info.snapshotTag === TAG));
});

test('refusals: a wrong API key, an unknown template, a wrong sandbox token', async () => {
  await assert.rejects(Sandbox.create(TAG, opts({ apiKey: 'wrong' })), AuthenticationError);
  await assert.rejects(Sandbox.create('no-such-template', opts()), (err: unknown) => {
    assert.ok(err instanceof SandboxError);
    assert.match(err.message, /404.*template no-such-template not found/);
    return true;
  });
  const sbx = await Sandbox.create(TAG, opts());
  const res = await fetch(`${daemon.url}/e2b-sandbox/process.Process/List`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'e2b-sandbox-id': sbx.sandboxId,
      'x-access-token': 'nope',
    },
    body: '{}',
  });
  assert.equal(res.status, 401);
  assert.equal(((await res.json()) as { code: string }).code, 'unauthenticated');
  await sbx.kill();
  const leftover = daemon.context.registry.list().filter((s) => s.info.snapshotTag === TAG);
  assert.deepEqual(leftover, []);
});
