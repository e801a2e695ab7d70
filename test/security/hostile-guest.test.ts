// The hostile guest: root inside real VMs, spawned through a real daemon
// (bound to loopback with no token, the configuration that used to be wide
// open), tries to reach the daemon, the host's other services and addresses,
// private ranges and the metadata address, under each egress policy; and the
// QEMU behind it is checked for what a guest that escaped into it would be.
// Every address dialled is this host's own or inside a network namespace
// the test creates (test/support/test-hosts.ts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { qemuProcessesUsing, runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';
import { jsonCaller } from '../support/http.js';
import {
  createTestHosts,
  HOST_VETH_ADDR,
  METADATA_HOST,
  PRIVATE_HOST,
  PUBLIC_HOST,
  TEST_PORT,
  type TestHosts,
} from '../support/test-hosts.js';

const TAG = 'test-security-tiny';
let engine: Engine;
let daemon: RunningDaemon;
let hosts: TestHosts;
let hostService: Server;
let scratch: string;
const call = jsonCaller(() => daemon.url);

interface Sandbox {
  id: string;
  pid: number;
  egress: string;
  netns: string | null;
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-security-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  hosts = await createTestHosts();
  // A service on every host address (loopback and the veth end): what a guest must never reach.
  hostService = createServer((s) => s.end('hello from the host\n'));
  await new Promise<void>((resolve) => hostService.listen(0, '0.0.0.0', resolve));
});

after(async () => {
  hostService.close();
  hosts.close();
  await daemon.close();
  await engine.cleanup({ killRunning: true });
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
});

async function spawn(egress?: string): Promise<Sandbox> {
  const r = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG, ...(egress ? { egress } : {}) });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return (r.json as Sandbox[])[0]!;
}

/** Runs `nc` in the guest; returns what the far end said (nc's error if nothing answered). */
async function dial(sandbox: Sandbox, address: string, port: number): Promise<string> {
  const r = await call('POST', `/v1/sandboxes/${sandbox.id}/exec`, {
    // An HTTP request: a daemon reached would answer it (and audit it).
    args: [
      'sh',
      '-c',
      `printf 'GET /v1/sandboxes HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${address} ${port} 2>&1; true`,
    ],
    timeout_secs: 20,
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return (r.json as { stdout: string }).stdout;
}

function daemonPort(): number {
  return Number(new URL(daemon.url).port);
}

/** Every place a guest must never reach, whatever its policy. */
function forbidden(): { name: string; address: string; port: number }[] {
  const service = (hostService.address() as AddressInfo).port;
  return [
    { name: 'the daemon through the user-network gateway', address: '10.0.2.2', port: daemonPort() },
    { name: "a listener on the host's 127.0.0.1", address: '10.0.2.2', port: service },
    { name: 'the host on another interface', address: HOST_VETH_ADDR, port: service },
    { name: 'a private-range host', address: PRIVATE_HOST, port: TEST_PORT },
    { name: 'the cloud metadata address', address: METADATA_HOST, port: TEST_PORT },
    { name: 'a name the guest points at the gateway', address: 'evil.test', port: service },
  ];
}

async function assertNothingForbidden(sandbox: Sandbox): Promise<void> {
  await call('POST', `/v1/sandboxes/${sandbox.id}/exec`, {
    args: ['sh', '-c', 'echo "10.0.2.2 evil.test" >> /etc/hosts'],
  });
  for (const target of forbidden()) {
    const answer = await dial(sandbox, target.address, target.port);
    assert.doesNotMatch(answer, /hello|HTTP\//, `${sandbox.egress}: reached ${target.name}: ${answer}`);
  }
}

test('a default sandbox reaches nothing: not the daemon (which has no token), the host, private ranges or metadata', async () => {
  const sandbox = await spawn();
  assert.equal(sandbox.egress, 'none');
  assert.equal(sandbox.netns, `/proc/${sandbox.pid}/ns/net`, 'a network namespace of its own');
  await assertNothingForbidden(sandbox);
  assert.doesNotMatch(await dial(sandbox, PUBLIC_HOST, TEST_PORT), /hello/, 'nor a public host');
  // The daemon never saw the guest's GET /v1/sandboxes (this test never sends one itself).
  const audit = await readFile(join(scratch, 'audit.jsonl'), 'utf8');
  assert.doesNotMatch(audit, /"method":"GET","path":"\/v1\/sandboxes"/, 'a guest request got through');
  assert.equal((await call('DELETE', `/v1/sandboxes/${sandbox.id}`)).status, 204);
});

test('egress internet reaches a public host and still nothing on the host or in private ranges', async () => {
  const sandbox = await spawn('internet');
  assert.equal(sandbox.egress, 'internet');
  assert.equal(sandbox.netns, null, 'it shares the host network, behind the uid firewall');
  assert.match(await dial(sandbox, PUBLIC_HOST, TEST_PORT), new RegExp(`hello from ${PUBLIC_HOST}`));
  await assertNothingForbidden(sandbox);
  assert.equal((await call('DELETE', `/v1/sandboxes/${sandbox.id}`)).status, 204);
});

test('an allow-list admits its CIDRs only; the policy changes on a running sandbox', async () => {
  const sandbox = await spawn('allow:198.51.100.0/24');
  assert.equal(sandbox.egress, 'allow:198.51.100.0/24');
  assert.doesNotMatch(await dial(sandbox, PUBLIC_HOST, TEST_PORT), /hello/, 'not on the list');
  const widened = await call('PUT', `/v1/sandboxes/${sandbox.id}/egress`, {
    egress: `allow:${PUBLIC_HOST}/32`,
  });
  assert.equal(widened.status, 200, JSON.stringify(widened.json));
  assert.match(await dial(sandbox, PUBLIC_HOST, TEST_PORT), /hello/, 'on the list now');
  await assertNothingForbidden(sandbox);
  const closed = await call('PUT', `/v1/sandboxes/${sandbox.id}/egress`, { egress: 'none' });
  assert.equal((closed.json as Sandbox).egress, 'none');
  assert.doesNotMatch(await dial(sandbox, PUBLIC_HOST, TEST_PORT), /hello/, 'closed again');
  assert.equal((await call('DELETE', `/v1/sandboxes/${sandbox.id}`)).status, 204);
});

test('a domain allow-list: the name asked for is checked and resolved by the host, never the guest', async () => {
  // The host resolves the test names (its /etc/hosts).
  const marker = '# forkd hostile-guest test';
  const hostsLines = [
    `${PUBLIC_HOST} allowed.forkd.test ${marker}`,
    `${PRIVATE_HOST} private.forkd.test ${marker}`,
    `127.0.0.1 loopback.forkd.test ${marker}`,
  ];
  const original = await readFile('/etc/hosts', 'utf8');
  await writeFile('/etc/hosts', `${original.trimEnd()}\n${hostsLines.join('\n')}\n`);
  let sandbox: Sandbox | undefined;
  try {
    sandbox = await spawn('allow:allowed.forkd.test,private.forkd.test,loopback.forkd.test');
    const id = sandbox.id;
    // An HTTP request for `name`, sent to an address of the guest's choosing (a private one:
    // were it used, the firewall would refuse it).
    const get = async (name: string) => {
      const r = await call('POST', `/v1/sandboxes/${id}/exec`, {
        args: [
          'sh',
          '-c',
          `printf 'GET / HTTP/1.0\\r\\nHost: ${name}\\r\\n\\r\\n' | nc -w 5 ${PRIVATE_HOST} 80 2>&1; true`,
        ],
        timeout_secs: 20,
      });
      return (r.json as { stdout: string }).stdout;
    };
    assert.match(
      await get('allowed.forkd.test'),
      new RegExp(`hello from ${PUBLIC_HOST} host=allowed.forkd.test`),
      'proxied to the address the host resolved',
    );
    assert.doesNotMatch(await get('denied.forkd.test'), /hello/, 'a name not on the list');
    assert.doesNotMatch(
      await get('private.forkd.test'),
      /hello/,
      'a listed name the host resolves to a private address',
    );
    assert.doesNotMatch(
      await get('loopback.forkd.test'),
      /hello|HTTP\//,
      'a listed name the host resolves to 127.0.0.1',
    );
    assert.doesNotMatch(
      await dial(sandbox, PUBLIC_HOST, TEST_PORT),
      /hello/,
      'the raw address of a listed name, on another port',
    );
    await assertNothingForbidden(sandbox);
  } finally {
    if (sandbox) await call('DELETE', `/v1/sandboxes/${sandbox.id}`);
    const now = await readFile('/etc/hosts', 'utf8');
    await writeFile(
      '/etc/hosts',
      now
        .split('\n')
        .filter((l) => !l.includes(marker))
        .join('\n'),
    );
  }
});

test('bad egress requests are 4xx with a clear error, and leave nothing behind', async () => {
  const bad = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG, egress: 'everything' });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.json), /invalid egress policy/);
  const badRule = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG, egress: 'allow:-x.org' });
  assert.equal(badRule.status, 400, 'a rule that is neither a domain nor a CIDR');
  const sealed = await spawn();
  const reopen = await call('PUT', `/v1/sandboxes/${sealed.id}/egress`, { egress: 'internet' });
  assert.equal(reopen.status, 409, 'a sandbox spawned with none has no network to open');
  assert.equal((await call('DELETE', `/v1/sandboxes/${sealed.id}`)).status, 204);
  assert.deepEqual(runDirEntries(engine), []);
});

test('every QEMU runs as a uid of its own with no capabilities, under seccomp, seeing only its files', async () => {
  const [a, b] = [await spawn(), await spawn('internet')];
  const uids = new Set<string>();
  for (const sandbox of [a, b]) {
    const status = await readFile(`/proc/${sandbox.pid}/status`, 'utf8');
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
    const uid = field('Uid').split(/\s+/);
    assert.ok(
      uid.every((u) => u !== '0'),
      `QEMU runs as root: ${field('Uid')}`,
    );
    uids.add(uid[0]!);
    assert.equal(field('Seccomp'), '2', 'seccomp filter mode');
    for (const caps of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
      assert.equal(field(caps), '0000000000000000', `${caps} is empty`);
    }
    assert.equal(field('NoNewPrivs'), '1');
  }
  assert.equal(uids.size, 2, 'two sandboxes never share a uid');

  // What a guest that took over QEMU could ask of it, through QMP.
  // QEMU serves one QMP client at a time: use the daemon's own connection.
  const qmp = daemon.context.registry.get(a.id).vmHandle.qmp;
  {
    await assert.rejects(
      qmp.execute('blockdev-add', {
        driver: 'file',
        'node-name': 'stolen',
        filename: '/etc/passwd',
        'read-only': true,
      }),
      /No such file|Permission denied|Could not open/,
      'the host filesystem is not in its view',
    );
    const marker = join(scratch, 'spawned');
    await qmp.execute('migrate', { uri: `exec:touch ${marker}` }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(existsSync(marker), false, 'QEMU cannot start a process');
  }
  for (const sandbox of [a, b]) await call('DELETE', `/v1/sandboxes/${sandbox.id}`);
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
});

test('policies hold in a live branch’s children: they start with none unless spawned otherwise', async () => {
  const source = await spawn('internet');
  const branch = await call('POST', `/v1/sandboxes/${source.id}/branch`, { tag: 'test-security-branch' });
  assert.equal(branch.status, 201, JSON.stringify(branch.json));
  assert.match(await dial(source, PUBLIC_HOST, TEST_PORT), /hello/, 'the source keeps its policy');
  const r = await call('POST', '/v1/sandboxes', { snapshot_tag: 'test-security-branch' });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const child = (r.json as Sandbox[])[0]!;
  assert.equal(child.egress, 'none');
  await assertNothingForbidden(child);
  assert.doesNotMatch(await dial(child, PUBLIC_HOST, TEST_PORT), /hello/);
  const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
  assert.match(status, /^Seccomp:\s*2$/m);
  for (const s of [source, child]) await call('DELETE', `/v1/sandboxes/${s.id}`);
  await engine.store.remove('test-security-branch');
});

test('quotas through the API: echoed in SandboxInfo with live usage; a bad one is a 400 naming the field', async () => {
  const r = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG, cpu_cores: 0.5, pids_max: 128 });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const info = (
    r.json as (Sandbox & { quotas: object; usage: { cpu_ms: number; memory_bytes: number } })[]
  )[0]!;
  assert.deepEqual(info.quotas, { cpu_cores: 0.5, pids_max: 128 });
  assert.ok(info.usage.memory_bytes > 0, 'memory use is reported');
  const metrics = await fetch(`${daemon.url}/metrics`).then((res) => res.text());
  assert.match(metrics, new RegExp(`forkd_sandbox_cpu_seconds\\{sandbox="${info.id}"\\} \\d`));
  const bad = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG, cpu_cores: 0 });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.json), /cpu_cores/);
  assert.equal((await call('DELETE', `/v1/sandboxes/${info.id}`)).status, 204);
});
