// Real VMs: snapshot the tiny guest, fork children, and check isolation,
// reseeding and that every path (success, failure, kill) leaves nothing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readdir, stat, truncate, writeFile, readFile } from 'node:fs/promises';
import { linkOrCopy } from '../../src/util/files.js';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  AgentError,
  CorruptError,
  IncompatibleError,
  InvalidArgumentError,
  NotFoundError,
  QmpError,
  TimeoutError,
  VmExitedError,
  Engine,
} from '../../src/engine/index.js';
import { MANIFEST_FILE } from '../../src/snapshot/manifest.js';
import { qemuProcessesUsing, runDirEntries, testEngine } from '../support/engine.js';

let engine: Engine;
const TAG = 'test-fork-tiny';

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
});

after(async () => {
  await engine.store.remove(TAG).catch(() => undefined);
});

function assertNothingLeft(): void {
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), [], 'no QEMU left running');
  assert.deepEqual(runDirEntries(engine), [], 'no run dir left');
}

test('a snapshot records its machine, QEMU and accelerator', async () => {
  const { manifest } = await engine.store.getReady(TAG);
  assert.equal(manifest.status, 'ready');
  assert.equal(manifest.machine.machineType, 'microvm');
  assert.equal(manifest.machine.memoryMib, 256);
  assert.match(manifest.qemu.version, /^\d+\.\d+\.\d+$/);
  assert.ok(['kvm', 'tcg'].includes(manifest.machine.accel));
  assert.ok(manifest.vmstate.bytes > 1000, 'device state written');
  assert.ok(manifest.memory.physicalBytes < manifest.memory.logicalBytes, 'RAM file is sparse');
});

test('children resume warm, are distinct, and leave nothing behind', async () => {
  const result = await engine.fork({ tag: TAG, n: 8 });
  assert.equal(result.children.filter((c) => c.ok).length, 8);
  const outputs = await Promise.all(
    result.children.map(async (c) => {
      assert.ok(c.ok);
      const r = await c.sandbox.agent.exec({
        shell: 'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; cat /proc/uptime',
      });
      assert.equal(r.exitCode, 0);
      return r.stdout.toString().trim().split('\n');
    }),
  );
  const randoms = outputs.map((o) => o[0]);
  assert.equal(new Set(randoms).size, 8, 'each child was reseeded');
  for (const c of result.children) if (c.ok) await c.sandbox.kill();
  assertNothingLeft();
});

test('a file written in one child is invisible to its siblings', async () => {
  const result = await engine.fork({ tag: TAG, n: 2 });
  const [a, b] = result.children;
  assert.ok(a?.ok && b?.ok);
  await a.sandbox.agent.writeFile('/tmp/mine', Buffer.from('a'));
  await assert.rejects(b.sandbox.agent.readFile('/tmp/mine'), AgentError);
  await Promise.all([a.sandbox.kill(), b.sandbox.kill()]);
  assertNothingLeft();
});

test('children get the host clock, not the parent’s', async () => {
  const result = await engine.fork({ tag: TAG, n: 1 });
  const child = result.children[0];
  assert.ok(child?.ok);
  const r = await child.sandbox.agent.exec({ args: ['date', '+%s'] });
  const guest = Number(r.stdout.toString().trim());
  assert.ok(Math.abs(guest - Date.now() / 1000) < 5, `guest clock ${guest} is near host clock`);
  await child.sandbox.kill();
});

test('bad tags and child counts are refused before anything starts', async () => {
  await assert.rejects(engine.fork({ tag: '../etc', n: 1 }), InvalidArgumentError);
  await assert.rejects(engine.fork({ tag: TAG, n: 0 }), InvalidArgumentError);
  await assert.rejects(engine.fork({ tag: TAG, n: 1001 }), InvalidArgumentError);
  await assert.rejects(engine.fork({ tag: TAG, n: 1.5 }), InvalidArgumentError);
  await assert.rejects(engine.fork({ tag: 'no-such-snapshot', n: 1 }), NotFoundError);
  assertNothingLeft();
});

test('a snapshot from another QEMU is refused with both versions named', async () => {
  const dir = engine.dataDir.snapshotDir(TAG);
  const original = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  try {
    const m = JSON.parse(original) as { qemu: { version: string } };
    m.qemu.version = '1.0.0';
    await writeFile(join(dir, MANIFEST_FILE), JSON.stringify(m));
    await assert.rejects(engine.fork({ tag: TAG, n: 1 }), (err: IncompatibleError) => {
      assert.ok(err instanceof IncompatibleError);
      assert.match(err.message, /QEMU 1\.0\.0.*QEMU \d+\.\d+\.\d+/);
      return true;
    });
  } finally {
    await writeFile(join(dir, MANIFEST_FILE), original);
  }
  assertNothingLeft();
});

/** A copy of the tiny snapshot whose device state `spoil` changed; removed afterwards. */
async function withSpoiledState(
  tag: string,
  spoil: (vmstate: string) => Promise<void>,
  check: (errors: Error[]) => void,
): Promise<void> {
  const src = engine.dataDir.snapshotDir(TAG);
  await engine.store.remove(tag).catch(() => undefined);
  const writer = await engine.store.begin(tag);
  try {
    for (const name of await readdir(src)) {
      if (name === 'vmstate' || name === MANIFEST_FILE) continue;
      await linkOrCopy(join(src, name), writer.path(name));
    }
    await copyFile(join(src, 'vmstate'), writer.path('vmstate'));
    await spoil(writer.path('vmstate'));
    const m = JSON.parse(await readFile(join(src, MANIFEST_FILE), 'utf8')) as { tag: string };
    m.tag = tag;
    await writer.commit(m as never);
    const result = await engine.fork({ tag, n: 2 });
    check(result.children.map((c) => (c.ok ? new Error('a child restored from spoiled state') : c.error)));
    assertNothingLeft();
  } finally {
    await writer.abort();
    await engine.store.remove(tag).catch(() => undefined);
  }
}

test('a truncated device state fails the child cleanly', async () => {
  await withSpoiledState(
    'test-fork-truncated',
    async (vmstate) => truncate(vmstate, Math.floor((await stat(vmstate)).size / 2)),
    (errors) => {
      for (const err of errors) {
        assert.ok(
          err instanceof QmpError || err instanceof VmExitedError || err instanceof CorruptError,
          String(err),
        );
      }
    },
  );
});

test('a device state QEMU refuses fails with QEMU’s own reason', async () => {
  await withSpoiledState(
    'test-fork-refused',
    async (vmstate) => {
      const bytes = await readFile(vmstate);
      const at = bytes.indexOf('cpu_common');
      assert.ok(at > 0, 'the device state names its sections');
      bytes.write('ZZZZ', at, 'latin1');
      await writeFile(vmstate, bytes);
    },
    (errors) => {
      for (const err of errors) {
        assert.ok(err instanceof QmpError, String(err));
        assert.match(err.message, /QEMU said: .*Unknown savevm section or instance 'ZZZZcommon'/);
      }
    },
  );
});

test('a child killed mid-exec fails the exec with an agent error and cleans up', async () => {
  const result = await engine.fork({ tag: TAG, n: 1 });
  const child = result.children[0];
  assert.ok(child?.ok);
  const running = child.sandbox.agent.exec({ args: ['sleep', '30'] });
  await new Promise((r) => setTimeout(r, 300));
  process.kill(child.sandbox.pid, 'SIGKILL');
  await assert.rejects(running, AgentError);
  await child.sandbox.kill();
  assertNothingLeft();
});

test('a guest that never becomes ready times out and leaves no snapshot', async () => {
  const tag = 'test-never-ready';
  await assert.rejects(
    engine.createSnapshot({ tag, recipe: 'tiny', bootTimeoutMs: 50 }),
    (err: Error) => err instanceof TimeoutError && /never became ready/.test(err.message),
  );
  assert.equal(await engine.store.exists(tag), false);
  assertNothingLeft();
});

test('an existing tag is refused before any work', async () => {
  await assert.rejects(
    engine.createSnapshot({ tag: TAG, recipe: 'tiny' }),
    (err: Error) => err.name === 'AlreadyExistsError',
  );
  await assert.rejects(engine.createSnapshot({ tag: 'bad/tag', recipe: 'tiny' }), InvalidArgumentError);
});

test('a warm pool hands out restored children, reseeded, and refills; close leaves nothing', async () => {
  const pool = await engine.prewarm(TAG, 3);
  assert.equal(pool.available, 3);
  const result = await engine.fork({ tag: TAG, n: 5, prewarm: true });
  const ok = result.children.filter((c) => c.ok);
  assert.equal(ok.length, 5);
  assert.deepEqual(
    result.children.map((c) => c.index),
    [0, 1, 2, 3, 4],
  );
  const fromPool = ok.filter((c) => c.ok && c.timings.launchMs === 0);
  assert.equal(fromPool.length, 3, 'three came from the pool');
  const randoms = await Promise.all(
    ok.map(async (c) =>
      c.ok ? (await c.sandbox.agent.readFile('/proc/sys/kernel/random/uuid')).toString() : '',
    ),
  );
  assert.equal(new Set(randoms).size, 5, 'pooled children are reseeded when handed out');
  for (const c of ok) if (c.ok) await c.sandbox.kill();
  await pool.fill();
  assert.equal(pool.available, 3, 'the pool refilled');
  await engine.close();
  assertNothingLeft();
});

test('a memory limit puts each child in its own cgroup, removed with the child', async () => {
  const result = await engine.fork({ tag: TAG, n: 1, memoryLimitMib: 300 });
  const child = result.children[0];
  assert.ok(child?.ok, child && !child.ok ? String(child.error) : '');
  const cgroup = (await readFile(`/proc/${child.sandbox.pid}/cgroup`, 'utf8'))
    .split('\n')
    .find((l) => /memory/.test(l) || l.startsWith('0::'));
  assert.match(cgroup ?? '', new RegExp(`/forkd/${child.sandbox.id}$`));
  const v1 = `/sys/fs/cgroup/memory/forkd/${child.sandbox.id}/memory.limit_in_bytes`;
  const v2 = `/sys/fs/cgroup/forkd/${child.sandbox.id}/memory.max`;
  const limit = await readFile(v1, 'utf8').catch(() => readFile(v2, 'utf8'));
  assert.equal(Number(limit), 300 * 1024 * 1024);
  await child.sandbox.kill();
  await assert.rejects(stat(v1.replace('/memory.limit_in_bytes', '')));
  await assert.rejects(stat(v2.replace('/memory.max', '')));
  assertNothingLeft();
});

test('the default egress policy (none) cuts the child off from the host; the policy is in SandboxInfo', async () => {
  const server = createServer((socket) => socket.end('hello from the host\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const result = await engine.fork({ tag: TAG, n: 1 });
    const child = result.children[0];
    assert.ok(child?.ok);
    assert.deepEqual(child.sandbox.info.egress, { mode: 'none' });
    const blocked = await child.sandbox.agent.exec({
      shell: `echo | nc -w 3 10.0.2.2 ${port}`,
      timeoutMs: 10_000,
    });
    assert.doesNotMatch(blocked.stdout.toString(), /hello/);
    await child.sandbox.kill();
  } finally {
    server.close();
  }
  assertNothingLeft();
});

test('--accel kvm works where KVM works, and fails cleanly with QEMU’s own words where it does not', async () => {
  const kernel = join(engine.dataDir.snapshotDir(TAG), 'vmlinux');
  const probe = await engine.accelerator(kernel);
  const kvmEngine = new Engine({ dataDir: engine.dataDir.root, accel: 'kvm' });
  const tag = 'test-forced-kvm';
  const attempt = kvmEngine.createSnapshot({ tag, recipe: 'tiny', memoryMib: 256, bootTimeoutMs: 60_000 });
  if (probe.kvmUsable) {
    assert.equal((await attempt).machine.accel, 'kvm');
    await engine.store.remove(tag);
  } else {
    await assert.rejects(
      attempt,
      (err: Error) => err instanceof VmExitedError || err instanceof TimeoutError,
    );
    assert.equal(await engine.store.exists(tag), false);
  }
  assertNothingLeft();
});

test('the snapshot keeps the parent’s boot console', async () => {
  const log = await readFile(join(engine.dataDir.snapshotDir(TAG), 'boot.log'), 'utf8');
  assert.match(log, /forkd-init/);
});

test('a held sandbox is re-attached by another engine, keeps its state, and is killed cleanly', async () => {
  const result = await engine.fork({ tag: TAG, n: 1, detach: true });
  const child = result.children[0];
  assert.ok(child?.ok);
  const id = child.sandbox.id;
  await child.sandbox.agent.writeFile('/tmp/kept', 'state before the hand-off');
  await child.sandbox.detach();

  const other = new Engine({ dataDir: engine.dataDir.root });
  assert.deepEqual(
    (await other.sandboxes()).map((s) => s.id),
    [id],
  );
  const again = await other.attach(id);
  assert.equal(again.info.snapshotTag, TAG);
  assert.equal((await again.agent.readFile('/tmp/kept')).toString(), 'state before the hand-off');
  assert.equal((await again.agent.exec({ args: ['echo', 'hi'] })).stdout.toString(), 'hi\n');
  await again.kill();
  assert.deepEqual(await other.sandboxes(), []);
  await assert.rejects(other.attach(id), NotFoundError);
  await assert.rejects(other.attach('../etc'), InvalidArgumentError);
  assertNothingLeft();
});
