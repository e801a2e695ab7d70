// The guest controls every byte on its agent channel. Each attack here runs
// in a real guest behind a real daemon: floods through the real agent
// (/dev/zero through exec, file reads and streams, a client that never
// reads), and a hostile agent (test/security/fixtures/hostile-agent.c) that
// takes the port from forkd-agent as root and answers the host itself. Each
// test asserts that the daemon's memory stays bounded, that the bad sandbox
// is reported or its caller told why, that a neighbour keeps answering, and
// that nothing is left behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { run } from '../../src/util/run.js';
import { runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';
import { jsonCaller } from '../support/http.js';

const TAG = 'test-hostile-agent-tiny';
const MIB = 1024 * 1024;
/** How much the daemon's memory may grow under any one attack. */
const RSS_BOUND = 256 * MIB;

let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;
let hostileBinary: Buffer;
let neighbour: string;
const call = jsonCaller(() => daemon.url);

interface SandboxView {
  id: string;
  agent_health: { healthy: boolean; reason: string | null; channel_errors: number; broken: boolean };
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-hostile-agent-'));
  const binary = join(scratch, 'hostile-agent');
  await run(['gcc', '-static', '-O1', '-o', binary, 'test/security/fixtures/hostile-agent.c']);
  hostileBinary = await readFile(binary);
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  neighbour = await spawn();
});

after(async () => {
  await daemon.close();
  await engine.cleanup({ killRunning: true });
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
});

async function spawn(): Promise<string> {
  const r = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return (r.json as SandboxView[])[0]!.id;
}

async function info(id: string): Promise<SandboxView> {
  const r = await call('GET', `/v1/sandboxes/${id}`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json as SandboxView;
}

/** Runs an attack and asserts the daemon's memory stayed within RSS_BOUND of where it started. */
async function bounded<T>(attack: () => Promise<T>): Promise<T> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  try {
    return await attack();
  } finally {
    clearInterval(sampler);
    peak = Math.max(peak, process.memoryUsage().rss);
    assert.ok(peak - before < RSS_BOUND, `the daemon grew by ${Math.round((peak - before) / MIB)} MiB`);
  }
}

/** The neighbour still answers, and killing the attacker leaves nothing of it behind. */
async function endAttack(id: string): Promise<void> {
  const ping = await call('POST', `/v1/sandboxes/${neighbour}/ping`);
  assert.equal(ping.status, 200, 'the neighbour keeps answering');
  assert.equal((await call('DELETE', `/v1/sandboxes/${id}`)).status, 204);
  assert.ok(!runDirEntries(engine).includes(id), 'its run dir is gone');
}

async function exec(id: string, args: string[], extra: object = {}) {
  return call('POST', `/v1/sandboxes/${id}/exec`, { args, ...extra });
}

/** Puts the hostile agent in the guest and lets it take the port; resolves once it holds it. */
async function takeOver(id: string, mode: string): Promise<void> {
  const put = await fetch(`${daemon.url}/v1/sandboxes/${id}/files?path=/tmp/hostile-agent&mode=755`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: hostileBinary,
  });
  assert.equal(put.status, 204);
  const started = await exec(id, ['sh', '-c', `/tmp/hostile-agent ${mode} </dev/null >/dev/null 2>&1 &`]);
  assert.equal(started.status, 200, JSON.stringify(started.json));
  const console = join(engine.dataDir.runDir, id, 'q', 'console.log');
  for (let i = 0; i < 300; i++) {
    const log = await readFile(console, 'utf8').catch(() => '');
    if (log.includes('HOSTILE-AGENT READY')) return;
    assert.doesNotMatch(log, /HOSTILE-AGENT FAILED/, 'the hostile agent could not take the port');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail('the hostile agent never took the port');
}

test('exec of 1 GiB of zeros keeps 64 MiB, kills the command and says truncated; a cap is settable per call', async () => {
  const id = await spawn();
  await bounded(async () => {
    // Read as a stream: the test's own copy of a 384 MiB JSON body would count against the bound.
    const res = await fetch(`${daemon.url}/v1/sandboxes/${id}/exec`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ args: ['head', '-c', '1073741824', '/dev/zero'], timeout_secs: 300 }),
    });
    assert.equal(res.status, 200);
    let bytes = 0;
    let tail = '';
    for await (const chunk of res.body! as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      tail = (tail + Buffer.from(chunk).toString('latin1')).slice(-200);
    }
    // 64 MiB of NULs, each escaped as \u0000.
    assert.ok(bytes > 6 * 64 * MIB && bytes < 6 * 64 * MIB + 200, `${bytes} bytes`);
    assert.match(tail, /"exit_code":137,"truncated":true\}$/, 'killed, and the result says truncated');
  });
  const small = await exec(id, ['head', '-c', '100000', '/dev/zero'], { max_output_bytes: 100 });
  assert.equal(small.status, 200);
  assert.equal((small.json as { stdout: string }).stdout.length, 100);
  assert.equal((small.json as { truncated: boolean }).truncated, true);
  const whole = await exec(id, ['echo', 'hi'], { max_output_bytes: 100 });
  assert.deepEqual(whole.json, { stdout: 'hi\n', stderr: '', exit_code: 0 }, 'v1 shape when nothing was cut');
  const tooMuch = await exec(id, ['true'], { max_output_bytes: 1024 * MIB });
  assert.equal(tooMuch.status, 400);
  assert.match(JSON.stringify(tooMuch.json), /max_output_bytes must be at most/);
  await endAttack(id);
});

test('reading /dev/zero is refused at the read limit with a 413, not read forever', async () => {
  const id = await spawn();
  await bounded(async () => {
    const r = await call('GET', `/v1/sandboxes/${id}/files?path=/dev/zero`);
    assert.equal(r.status, 413, JSON.stringify(r.json));
    assert.match(JSON.stringify(r.json), /larger than the 67108864-byte read limit/);
  });
  await endAttack(id);
});

test('a background cat /dev/zero keeps only its replay buffer', async () => {
  const id = await spawn();
  await bounded(async () => {
    const r = await call('POST', `/v1/sandboxes/${id}/commands`, {
      args: ['cat', '/dev/zero'],
      background: true,
      timeout_secs: 0,
    });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const cid = (r.json as { command_id: string }).command_id;
    assert.equal((await call('POST', `/v1/sandboxes/${id}/commands/${cid}/kill`, {})).status, 204);
  });
  await endAttack(id);
});

test('a streaming client that never reads pauses the command; the sandbox keeps answering', async () => {
  const id = await spawn();
  await bounded(async () => {
    const url = new URL(`${daemon.url}/v1/sandboxes/${id}/commands`);
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' } });
    const response = new Promise<import('node:http').IncomingMessage>((resolve) =>
      req.once('response', resolve),
    );
    req.on('error', () => undefined);
    req.end(JSON.stringify({ args: ['cat', '/dev/zero'], timeout_secs: 60 }));
    const res = await response;
    assert.equal(res.statusCode, 200);
    res.pause(); // and never read
    await new Promise((resolve) => setTimeout(resolve, 4000));
    // The stalled command holds back its own output only: the channel is free.
    assert.equal((await exec(id, ['echo', 'still here'])).status, 200);
    req.destroy();
  });
  await endAttack(id);
});

test('an agent that sends an impossible frame is reported, its caller told why, and the host reconnects', async () => {
  const id = await spawn();
  await takeOver(id, 'garbage-once');
  const ping = await call('POST', `/v1/sandboxes/${id}/ping`);
  assert.equal(ping.status, 502, JSON.stringify(ping.json));
  assert.match(JSON.stringify(ping.json), /broke the protocol: agent channel corrupt: bad frame length/);
  const health = (await info(id)).agent_health;
  assert.equal(health.healthy, false);
  assert.equal(health.channel_errors, 1);
  const metrics = await fetch(`${daemon.url}/metrics`).then((r) => r.text());
  assert.match(metrics, new RegExp(`forkd_sandbox_agent_healthy\\{sandbox="${id}"\\} 0`));
  // The hostile agent handed the port back: after the reconnect the real agent answers again.
  let answered = false;
  for (let i = 0; i < 50 && !answered; i++) {
    answered = (await call('POST', `/v1/sandboxes/${id}/ping`)).status === 200;
    if (!answered) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(answered, 'the real agent answers after the reconnect');
  assert.equal((await info(id)).agent_health.healthy, true);
  await endAttack(id);
});

test('an agent that keeps sending garbage is given up on: calls say so, and the sandbox can be killed', async () => {
  const id = await spawn();
  await takeOver(id, 'garbage');
  // Every call gets garbage back; each costs a reconnect, until the host gives up.
  for (let i = 0; i < 30 && !(await info(id)).agent_health.broken; i++) {
    const ping = await call('POST', `/v1/sandboxes/${id}/ping`);
    assert.equal(ping.status, 502, JSON.stringify(ping.json));
    await new Promise((r) => setTimeout(r, 150));
  }
  const health = (await info(id)).agent_health;
  assert.equal(health.broken, true);
  assert.equal(health.healthy, false);
  assert.equal(health.channel_errors, 3);
  const after = await call('POST', `/v1/sandboxes/${id}/ping`);
  assert.equal(after.status, 502);
  assert.match(JSON.stringify(after.json), /kill the sandbox/);
  await endAttack(id);
});

test('file-read slices that claim size 0 end at the read limit; a slice longer than asked is refused', async () => {
  const zero = await spawn();
  await takeOver(zero, 'zero-slices');
  await bounded(async () => {
    const r = await call('GET', `/v1/sandboxes/${zero}/files?path=/etc/hostname`);
    assert.equal(r.status, 413, JSON.stringify(r.json));
  });
  await endAttack(zero);
  const big = await spawn();
  await takeOver(big, 'big-slice');
  const r = await call('GET', `/v1/sandboxes/${big}/files?path=/etc/hostname`);
  assert.equal(r.status, 502, JSON.stringify(r.json));
  assert.match(JSON.stringify(r.json), /was answered with/);
  await endAttack(big);
});

test('an eval result nested 100000 deep is answered without a stack overflow', async () => {
  const id = await spawn();
  await takeOver(id, 'deep-eval');
  const r = await call('POST', `/v1/sandboxes/${id}/eval`, { code: '1' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal((r.json as { result: unknown }).result, 'deep', 'too deep for JSON: the repr stands in');
  await endAttack(id);
});

test('an agent that floods exec output and ignores the kill still gets its caller a truncated answer', async () => {
  const id = await spawn();
  await takeOver(id, 'flood');
  await bounded(async () => {
    const r = await exec(id, ['true'], { max_output_bytes: 4 * MIB, timeout_secs: 30 });
    // The cap ends it: the kill is ignored, so the answer comes after the grace period.
    assert.equal(r.status, 200, JSON.stringify(r.json).slice(0, 200));
    assert.equal((r.json as { truncated: boolean }).truncated, true);
    assert.equal((r.json as { stdout: string }).stdout.length, 4 * MIB);
  });
  await endAttack(id);
});

test('user mistakes are 4xx with the reason: NUL in args, a missing command, a long path, a path the guest refuses', async () => {
  const id = await spawn();
  const nul = await exec(id, ['echo', 'a\u0000b']);
  assert.equal(nul.status, 400, JSON.stringify(nul.json));
  assert.match(JSON.stringify(nul.json), /NUL/);
  const missing = await exec(id, ['no-such-command']);
  assert.equal(missing.status, 404, JSON.stringify(missing.json));
  assert.match(JSON.stringify(missing.json), /command not found/);
  const long = await call('GET', `/v1/sandboxes/${id}/files/stat?path=/${'a'.repeat(5000)}`);
  assert.equal(long.status, 400, JSON.stringify(long.json));
  const refused = await call('DELETE', `/v1/sandboxes/${id}/files?path=/proc/version`);
  assert.ok(refused.status === 403, `${refused.status} ${JSON.stringify(refused.json)}`);
  const absent = await call('GET', `/v1/sandboxes/${id}/files?path=/no/such/file`);
  assert.equal(absent.status, 404);
  await endAttack(id);
});
