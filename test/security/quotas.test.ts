// Quotas, tried as a hostile guest would: a sandbox capped at a quarter of a
// core spins every vCPU and forks without end; its QEMU stays inside its
// CPU and pids quota, its usage is accounted, and a neighbour keeps
// answering. Real VMs, the host's real cgroups (v1 here, v2 elsewhere).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Engine, type Sandbox } from '../../src/engine/index.js';
import { detectCgroups, findSandboxCgroup } from '../../src/engine/cgroups.js';
import { qemuProcessesUsing, runDirEntries, testEngine } from '../support/engine.js';

const TAG = 'test-quotas-tiny';
let engine: Engine;

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
});

after(async () => {
  await engine.store.remove(TAG).catch(() => undefined);
});

async function one(limits: Parameters<Engine['fork']>[0]['limits'] = {}): Promise<Sandbox> {
  const result = await engine.fork({ tag: TAG, n: 1, limits });
  const child = result.children[0];
  assert.ok(child?.ok, child && !child.ok ? String(child.error) : '');
  return child.sandbox;
}

async function execMs(sandbox: Sandbox): Promise<number> {
  const started = performance.now();
  await sandbox.agent.exec({ args: ['true'] });
  return performance.now() - started;
}

async function medianExecMs(sandbox: Sandbox, n = 7): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) samples.push(await execMs(sandbox));
  return samples.sort((a, b) => a - b)[Math.floor(n / 2)]!;
}

test('quotas are written to the sandbox’s own cgroups before it runs, and removed with it', async () => {
  const sandbox = await one({
    cpuCores: 0.25,
    cpuWeight: 50,
    pidsMax: 64,
    memoryMib: 300,
    ioReadBps: 1 << 20,
  });
  const cgroup = await findSandboxCgroup(sandbox.id);
  assert.ok(cgroup);
  const layout = (await detectCgroups())!;
  const file = (controller: 'cpu' | 'pids' | 'blkio' | 'unified', name: string) =>
    readFile(`${cgroup.dirs[controller]}/${name}`, 'utf8').then((t) => t.trim());
  if (layout.version === 'v1') {
    assert.equal(await file('cpu', 'cpu.cfs_quota_us'), '25000');
    assert.equal(await file('cpu', 'cpu.shares'), '512');
    assert.equal(await file('pids', 'pids.max'), '64');
    assert.match(await file('blkio', 'blkio.throttle.read_bps_device'), /^\d+:\d+ 1048576$/m);
  } else {
    assert.equal(await file('unified', 'cpu.max'), '25000 100000');
    assert.equal(await file('unified', 'cpu.weight'), '50');
    assert.equal(await file('unified', 'pids.max'), '64');
    assert.match(await file('unified', 'io.max'), /rbps=1048576/);
  }
  const procs = (dir: string | undefined) => readFile(`${dir}/cgroup.procs`, 'utf8');
  assert.match(await procs(cgroup.path), new RegExp(`^${sandbox.pid}$`, 'm'), 'QEMU is in it');
  await sandbox.kill();
  assert.equal(await findSandboxCgroup(sandbox.id), null, 'removed with the sandbox');
});

test('a guest spinning and fork-bombing stays within its CPU and pids quota; its neighbour keeps answering', async () => {
  const neighbour = await one();
  const idleMs = await medianExecMs(neighbour);
  const hostile = await one({ cpuCores: 0.25, pidsMax: 64 });
  const cgroup = (await findSandboxCgroup(hostile.id))!;
  await hostile.agent.exec({
    shell:
      '(while :; do :; done) </dev/null >/dev/null 2>&1 & (b() { b | b & }; b) </dev/null >/dev/null 2>&1 &',
  });
  // The window starts once the attack runs: how long the exec itself took to return is not part of it.
  const before = await cgroup.usage();
  const windowStarted = performance.now();
  await new Promise((r) => setTimeout(r, 3000));
  const loadedMs = await medianExecMs(neighbour);
  const after = await cgroup.usage();
  const wallMs = performance.now() - windowStarted;
  const layout = (await detectCgroups())!;
  const usedMs = after.cpuMs - before.cpuMs;
  // 0.25 core, plus what CFS lets a period overrun by (up to a scheduler tick
  // per 100 ms period: 0.31 core was measured here); uncapped, the spinning
  // vCPU alone would take a whole core.
  assert.ok(usedMs <= wallMs * 0.4, `the capped QEMU used ${usedMs} ms of CPU in ${wallMs.toFixed(0)} ms`);
  const cpuStat = await readFile(
    `${layout.version === 'v2' ? cgroup.dirs.unified : cgroup.dirs.cpu}/cpu.stat`,
    'utf8',
  );
  assert.ok(Number(/nr_throttled (\d+)/.exec(cpuStat)?.[1]) > 0, 'the kernel throttled it');
  assert.ok(usedMs > 0, 'its CPU time is accounted');
  assert.ok(after.memoryBytes > 0, 'its memory is accounted');

  const pidsCurrent = Number(
    await readFile(
      `${layout.version === 'v2' ? cgroup.dirs.unified : cgroup.dirs.pids}/pids.current`,
      'utf8',
    ),
  );
  assert.ok(pidsCurrent <= 64, `QEMU has ${pidsCurrent} threads`);
  // Twice its idle latency, and a few ms of this noisy host's jitter.
  assert.ok(
    loadedMs <= idleMs * 2 + 5,
    `neighbour exec went from ${idleMs.toFixed(1)} to ${loadedMs.toFixed(1)} ms`,
  );
  await Promise.all([hostile.kill(), neighbour.kill()]);
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
});

test('bad quotas are refused by name before anything starts', async () => {
  for (const limits of [{ cpuCores: 0 }, { cpuWeight: 20000 }, { pidsMax: 3 }, { ioWriteIops: 1.5 }]) {
    await assert.rejects(
      engine.fork({ tag: TAG, n: 1, limits }),
      InvalidArgumentError,
      JSON.stringify(limits),
    );
  }
  assert.deepEqual(runDirEntries(engine), []);
});
