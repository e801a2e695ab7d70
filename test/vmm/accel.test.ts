// Accelerator choice: an explicit choice is never probed; a probe result is
// reused only for the same QEMU build, kernel and host kernel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeAccelerator, resolveAccelerator } from '../../src/vmm/accel.js';
import type { QemuInstallation } from '../../src/vmm/qemu-binary.js';

// A QEMU that cannot run: any attempt to probe with it would not say "cached".
const qemu: QemuInstallation = {
  binary: '/nonexistent/qemu',
  version: '7.2.22',
  versionLine: 'QEMU emulator version 7.2.22',
};

test('an explicit accelerator is used as given, without a probe', async () => {
  for (const accel of ['kvm', 'tcg'] as const) {
    const r = await resolveAccelerator(accel, { qemu, kernelPath: '/nonexistent/vmlinux' });
    assert.equal(r.accel, accel);
    assert.match(r.reason, new RegExp(`--accel ${accel}`));
  }
});

test('a cached probe is reused for the same QEMU, kernel and host; anything else probes again', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-accel-'));
  try {
    const cacheFile = join(dir, 'accel.json');
    const cached = { accel: 'kvm', reason: 'cached', kvmUsable: true, probedAt: 'then' };
    await writeFile(
      cacheFile,
      JSON.stringify({ key: `${qemu.versionLine}|/k/vmlinux|${release()}`, probe: cached }),
    );
    assert.deepEqual(await probeAccelerator({ qemu, kernelPath: '/k/vmlinux', cacheFile }), cached);
    // Another kernel: the cache does not apply, a real probe runs (and with
    // this QEMU missing, KVM cannot be shown to work).
    const fresh = await probeAccelerator({ qemu, kernelPath: '/other/vmlinux', cacheFile, timeoutMs: 2000 });
    assert.equal(fresh.accel, 'tcg');
    assert.notEqual(fresh.reason, 'cached');
    const rewritten = JSON.parse(await readFile(cacheFile, 'utf8')) as { key: string };
    assert.match(rewritten.key, /\/other\/vmlinux/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
