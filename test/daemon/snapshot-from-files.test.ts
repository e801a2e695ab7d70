// POST /v1/snapshots {tag, kernel, rootfs}: the original forkd's form, sent
// exactly as its MCP create_snapshot tool sends it, against the real daemon and
// real VMs. The rootfs is an ext4 with python3 and numpy but no forkd file (made
// from python-numpy's cached bootstrapped tree); it must come out byte-identical.
// Bad paths are 400s that leave nothing behind; a kernel forkd has no modules
// for fails with an error that says what it may lack.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { ensureKernel, getRecipe } from '../../src/image/index.js';
import { ensureRootfsTree } from '../../src/image/rootfs.js';
import { TEST_DATA_DIR } from '../support/engine.js';
import { sha256File as sha256 } from '../../src/util/files.js';

const TAG = 'test-user-rootfs';
let scratch: string;
let dataDir: string;
let daemon: RunningDaemon;
let kernel: string;
let rootfs: string;
let rootfsSha: string;

/** The fields of the answers this file reads (each call reads only its own). */
interface Answer {
  error: string;
  code: string;
  tag: string;
  dir: string;
  status: string;
  bootable: boolean;
  created_at_unix: number;
  result: string | null;
  numpy_version: string | null;
  stdout: string;
  exit_code: number;
}

/** Plain fetch with the original clients' headers: JSON content type on every request. */
async function call<T = Answer>(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await fetch(daemon.url + path, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
}

/** What a failed create must not leave: a snapshot dir, or a staging dir of its files. */
function leftovers(tag: string): string[] {
  const snapshots = readdirSync(join(dataDir, 'snapshots'), { withFileTypes: true }).filter((e) =>
    e.name.startsWith(tag),
  );
  const staging = readdirSync(join(dataDir, 'images')).filter((n) => n.startsWith('.tmp-'));
  return [...snapshots.map((e) => e.name), ...staging];
}

before(async () => {
  // A data dir of this file's own (a daemon owns its data dir), with forkd's
  // kernel linked in from the shared test data dir, whose modules the guest loads.
  const shared = await ensureKernel({ dataDir: TEST_DATA_DIR });
  kernel = shared.vmlinuxPath;
  scratch = mkdtempSync(join(tmpdir(), 'forkd-user-rootfs-'));
  dataDir = join(scratch, 'data');
  for (const sub of ['kernels', 'images', 'snapshots']) spawnSync('mkdir', ['-p', join(dataDir, sub)]);
  const cp = spawnSync('cp', ['-al', shared.dir, join(dataDir, 'kernels')]);
  assert.equal(cp.status, 0, cp.stderr.toString());

  const recipe = getRecipe('python-numpy');
  const tree = await ensureRootfsTree({
    dataDir: TEST_DATA_DIR,
    suite: recipe.suite,
    packages: recipe.packages,
  });
  rootfs = join(scratch, 'user-rootfs.ext4');
  const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', '-d', tree, rootfs, '1G']);
  assert.equal(mkfs.status, 0, mkfs.stderr.toString());
  rootfsSha = await sha256(rootfs);
  daemon = await startDaemon({ dataDir, port: 0, auditLog: join(scratch, 'audit.jsonl') });
});

after(async () => {
  await daemon?.close();
  rmSync(scratch, { recursive: true, force: true });
});

test('bad kernel/rootfs requests are 400 invalid_argument naming the problem, and leave nothing', async () => {
  const text = join(scratch, 'not-a-kernel');
  writeFileSync(text, 'hello\n');
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ kernel }, /"kernel" and "rootfs" go together: "rootfs" is missing/],
    [{ rootfs }, /"kernel" and "rootfs" go together: "kernel" is missing/],
    [{ kernel: 'vmlinux', rootfs }, /kernel must be an absolute path/],
    [{ kernel, rootfs: join(scratch, 'missing.ext4') }, /rootfs .*missing\.ext4 does not exist/],
    [{ kernel, rootfs: text }, /rootfs .* is not an ext4 file system/],
    [{ kernel: text, rootfs }, /kernel .* is not a kernel image QEMU can boot/],
    [{ kernel, rootfs, image: 'python-numpy' }, /either "image" .* or "kernel" and "rootfs", not both/],
  ];
  for (const [fields, pattern] of cases) {
    const res = await call('POST', '/v1/snapshots', { tag: TAG, ...fields });
    assert.equal(res.status, 400, JSON.stringify(fields));
    assert.equal(res.body.code, 'invalid_argument');
    assert.match(res.body.error, pattern);
    assert.deepEqual(leftovers(TAG), [], JSON.stringify(fields));
  }
});

test('a snapshot of the caller’s kernel + ext4 forks sandboxes that eval, exec and import numpy', async (t) => {
  const started = Date.now();
  const created = await call('POST', '/v1/snapshots', { tag: TAG, kernel, rootfs });
  t.diagnostic(`POST /v1/snapshots {tag, kernel, rootfs}: ${Date.now() - started} ms`);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.tag, TAG);
  assert.equal(created.body.status, 'ready');
  assert.equal(created.body.bootable, true);
  assert.equal(typeof created.body.dir, 'string');
  assert.equal(typeof created.body.created_at_unix, 'number');
  assert.deepEqual(leftovers(`${TAG}-`), []); // no staging dir left

  const spawned = await call<{ id: string }[]>('POST', '/v1/sandboxes', { snapshot_tag: TAG });
  assert.equal(spawned.status, 201, JSON.stringify(spawned.body));
  const id = spawned.body[0]!.id;
  try {
    const evaluated = await call('POST', `/v1/sandboxes/${id}/eval`, { code: '1+1' });
    assert.equal(evaluated.status, 200, JSON.stringify(evaluated.body));
    assert.equal(evaluated.body.result, '2');
    const ping = await call('POST', `/v1/sandboxes/${id}/ping`);
    assert.match(ping.body.numpy_version ?? '', /^\d+\.\d+/); // the image has numpy: it was imported
    const osRelease = await call('POST', `/v1/sandboxes/${id}/exec`, { args: ['cat', '/etc/os-release'] });
    assert.equal(osRelease.body.exit_code, 0);
    assert.match(osRelease.body.stdout, /Debian/);
    // The guest may write its disk: that goes to the snapshot's layer, never to the caller's file.
    const write = await call('POST', `/v1/sandboxes/${id}/exec`, {
      args: ['sh', '-c', 'echo hi > /written-by-guest && sync'],
    });
    assert.equal(write.body.exit_code, 0);
  } finally {
    assert.equal((await call('DELETE', `/v1/sandboxes/${id}`)).status, 204);
  }

  assert.equal(await sha256(rootfs), rootfsSha, 'the caller’s rootfs is byte-identical');
  for (const path of ['/usr/bin/forkd-agent', '/written-by-guest', '/run/forkd']) {
    const stat = spawnSync('debugfs', ['-R', `stat ${path}`, rootfs], { encoding: 'utf8' });
    assert.match(stat.stderr, /not found/, `${path} is not in the caller's image`);
  }
  // The snapshot's base is its own copy, not a link to the caller's file.
  assert.notEqual(statSync(join(created.body.dir, 'rootfs.ext4')).ino, statSync(rootfs).ino);
  assert.equal((await call('DELETE', `/v1/snapshots/${TAG}`)).status, 204);
});

test('a kernel forkd has no modules for fails saying it may lack virtio drivers', async (t) => {
  // forkd's own kernel with another release in its banner: forkd then has no
  // modules for it, and this kernel has virtio only as modules.
  const image = readFileSync(kernel);
  const banner = image.indexOf('Linux version 6.');
  assert.ok(banner > 0);
  image.write('Linux version 0.', banner, 'latin1');
  const other = join(scratch, 'vmlinux-other');
  writeFileSync(other, image);
  const started = Date.now();
  const res = await call('POST', '/v1/snapshots', { tag: `${TAG}-k`, kernel: other, rootfs });
  t.diagnostic(`failed boot: ${Date.now() - started} ms, ${res.status} ${res.body.error}`);
  // The caller's kernel is their input: a 400 naming it, never a 500.
  assert.equal(res.status, 400, JSON.stringify(res.body));
  assert.equal(res.body.code, 'invalid_argument');
  assert.match(
    res.body.error,
    new RegExp(
      `the guest did not become ready: the kernel at ${other} may lack virtio drivers \\(forkd's kernel: `,
    ),
  );
  assert.deepEqual(leftovers(`${TAG}-k`), []);
});
