import { test } from 'node:test';
import assert from 'node:assert/strict';
import { probeJail } from '../../src/engine/jail.js';
import { PROBE_UID, VM_UID_RANGE } from '../../src/engine/vm-uid.js';

test('the accelerator probe is jailed like a VM: its own uid, the kernel read-only, /dev/kvm, no network', () => {
  const spec = probeJail('/data/kernels/vmlinux')?.('/tmp/forkd-kvm-probe-x');
  assert.ok(spec, 'confinement is on by default');
  assert.deepEqual(spec.readOnlyPaths, ['/data/kernels/vmlinux']);
  assert.deepEqual(spec.writablePaths, ['/tmp/forkd-kvm-probe-x']);
  assert.deepEqual(spec.devices, ['/dev/kvm']);
  assert.equal(spec.network, 'isolated');
  if (process.getuid?.() === 0) {
    assert.equal(spec.identity?.uid, PROBE_UID);
    assert.equal(PROBE_UID, VM_UID_RANGE[1], 'the one uid of the range that is never claimed for a VM');
  }
});
